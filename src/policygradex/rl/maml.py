"""MAML for policies (Finn et al. 2017) with ``torch.func``, the paper's group learner on the control
families (issue 13).

One meta-iteration on a group's tasks (all of them, or ``meta_batch`` sampled ones), batched in one
vector env (``family.make_vec(tasks, envs_per_task)``, as PPO does):

1. **Inner loop** (adaptation): for k = 0..K−1, roll out every task with its own parameters φ_k^i
   (φ_0^i = θ) and take one policy-gradient step per task on its own rollout,
   φ_{k+1}^i = φ_k^i − α ∇_φ L_in(φ_k^i; D_k^i), L_in(φ; D) = −mean_t log π_φ(a_t|s_t)·Â_t.
   Advantages are GAE (``rl.gae`` through ``rl.rollout.collect``) from the policy's critic, normalised
   per task. The per-task gradients are one ``vmap`` over tasks of ``torch.func.grad`` of the
   functional ``log_prob(actor, params, obs, actions)`` (``rl.policy``), so any actor architecture
   with that functional form works.
2. **Outer loop**: roll out every task with its adapted φ_K^i(θ) (fresh rollouts) and minimise PPO's
   clipped objective of the post-adaptation policies across the tasks (``rl.ppo.clipped_policy_loss``),
   for ``outer_epochs`` Adam steps; each step recomputes φ_K^i(θ) from the current θ on the stored
   inner rollouts. Exact second order (``first_order=False``) differentiates through the inner
   gradient steps (the Hessian terms); first order (the default) treats each inner gradient as a
   constant, so the meta-gradient is the post-adaptation gradient evaluated at φ_K^i. The rollouts'
   dependence on θ through the sampled data is not differentiated (as in MAML-TRPO/PPO).
3. The critic is shared by the tasks and not adapted; it is trained on the iteration's inner and outer
   rollouts with PPO's clipped value loss (``rl.ppo.clipped_value_loss``).

**Our choice** (the issue allows a critic or a per-task linear baseline): the critic, because θ* and
the pipeline's group policies already carry one trained on these tasks, the project's rollout/GAE code
is reused unchanged, and a linear baseline needs the per-step rewards and episode times that
:class:`~policygradex.rl.rollout.Batch` does not keep.

Every rollout starts from a reset of the vector env seeded from (seed, iteration, rollout), and every
random draw of an iteration comes from streams derived from (seed, iteration): a checkpoint is the
weights, the optimizer state and the counters, and a resumed training ends with the same weights as an
uninterrupted one, also on simulators that cannot be pickled (Box2D).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.func import functional_call, grad, vmap

from policygradex.errors import ConfigError, PolicyGradExError
from policygradex.rl.policy import Actor, ActorCritic, PolicyConfig, build_policy, log_prob, sample_actions
from policygradex.rl.ppo import clipped_policy_loss, clipped_value_loss
from policygradex.rl.rollout import Batch, Episode, RolloutState, collect
from policygradex.tasks.base import TaskFamily

Params = dict[str, Tensor]
"""Actor parameters by name; "stacked" parameters carry a leading task dimension [K, ...]."""


class MAMLDiverged(PolicyGradExError):
    """The meta-loss or the weights became non-finite; nothing of the diverged policy is saved."""


@dataclass(frozen=True)
class MAMLConfig:
    """MAML hyperparameters and budget (first order by default)."""

    total_steps: int = 1_000_000
    """Env steps over all tasks, inner and outer rollouts together."""
    envs_per_task: int = 4
    """Parallel environments per task in every rollout."""
    rollout_steps: int = 128
    """Steps per environment per rollout (inner and outer), each from a fresh reset; longer episodes are
    cut and bootstrapped with the critic."""
    inner_lr: float = 0.05
    """α, the step size of the inner policy-gradient updates (plain SGD on normalised advantages)."""
    inner_steps: int = 1
    """Inner updates per task per meta-iteration (each on a fresh rollout with the current φ)."""
    outer_lr: float = 3e-4
    """Adam learning rate of the outer (meta) update."""
    outer_epochs: int = 4
    """Adam steps on each iteration's clipped post-adaptation objective (PPO-style reuse of the rollouts)."""
    meta_batch: int | None = None
    """Tasks per meta-iteration, sampled without replacement (None: every task of the group)."""
    first_order: bool = True
    """First-order MAML (no Hessian terms); False: exact second order through the inner updates."""
    clip_coef: float = 0.2
    """ε of the outer clipped objective and of the value loss."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip of the outer update."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE λ."""
    seed: int = 0
    """Seed of everything random in the meta-training."""

    def __post_init__(self) -> None:
        for name in ("total_steps", "envs_per_task", "rollout_steps", "inner_steps", "outer_epochs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"maml.{name}={v!r} must be a positive integer")
        for name in ("inner_lr", "outer_lr", "clip_coef", "max_grad_norm"):
            v = getattr(self, name)
            if not 0 < v < math.inf:
                raise ConfigError(f"maml.{name}={v} must be a positive finite number")
        if self.meta_batch is not None and self.meta_batch < 1:
            raise ConfigError(f"maml.meta_batch={self.meta_batch} must be at least 1 (or None for every task)")
        if not 0 <= self.gamma <= 1 or not 0 <= self.gae_lambda <= 1:
            raise ConfigError(f"maml.gamma={self.gamma} and maml.gae_lambda={self.gae_lambda} must lie in [0, 1]")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"maml.seed={self.seed!r} must be an integer ≥ 0")

    def tasks_per_iteration(self, num_tasks: int) -> int:
        """Tasks in each meta-batch for a group of ``num_tasks`` tasks."""
        return num_tasks if self.meta_batch is None else min(self.meta_batch, num_tasks)

    def steps_per_iteration(self, num_tasks: int) -> int:
        """Env steps of one meta-iteration: (inner steps + 1) rollouts of every task in the meta-batch."""
        return (self.inner_steps + 1) * self.tasks_per_iteration(num_tasks) * self.envs_per_task * self.rollout_steps

    def num_iterations(self, num_tasks: int) -> int:
        """Meta-iterations in the budget; raises ConfigError when it is below one."""
        it = self.total_steps // self.steps_per_iteration(num_tasks)
        if it < 1:
            raise ConfigError(
                f"maml.total_steps={self.total_steps} is less than one meta-iteration "
                f"({self.steps_per_iteration(num_tasks)} steps for {num_tasks} tasks); raise total_steps"
            )
        return it


# ---- functional pieces ---------------------------------------------------------------------------------
@dataclass
class TaskBatch:
    """One rollout of K tasks, rows grouped by task. N = rollout steps × envs per task.

    Attributes:
        obs: [K, N, obs_dim]; actions: [K, N] or [K, N, A]; logp: [K, N] at collection time;
        values: [K, N]; returns: [K, N]; advantages: [K, N] GAE, normalised per task.
    """

    obs: Tensor
    actions: Tensor
    logp: Tensor
    values: Tensor
    returns: Tensor
    advantages: Tensor


def normalise_per_task(adv: Tensor) -> Tensor:
    """(Â − mean)/(std + 1e-8) over each task's rows. adv: [K, N] → [K, N] (N = 1: centred only)."""
    centred = adv - adv.mean(1, keepdim=True)
    if adv.shape[1] < 2:
        return centred
    return centred / (adv.std(1, keepdim=True) + 1e-8)


def task_batch(batch: Batch, num_tasks: int, num_envs: int) -> TaskBatch:
    """Regroup a time-major :class:`Batch` of E = K·e environments (grouped by task, as ``make_vec``
    lays them out) into per-task rows [K, T·e, ...]; advantages normalised per task.

    Args:
        batch: N = T·E rows, row t·E + j from environment j at step t.
        num_tasks: K.
        num_envs: E (a multiple of K).
    """
    e = num_envs // num_tasks

    def regroup(x: Tensor) -> Tensor:
        t = x.shape[0] // num_envs
        return x.reshape(t, num_tasks, e, *x.shape[1:]).transpose(0, 1).reshape(num_tasks, t * e, *x.shape[1:])

    return TaskBatch(
        obs=regroup(batch.obs), actions=regroup(batch.actions), logp=regroup(batch.logp),
        values=regroup(batch.values), returns=regroup(batch.returns),
        advantages=normalise_per_task(regroup(batch.advantages)),
    )


def inner_loss(actor: Actor, params: Params, obs: Tensor, actions: Tensor, adv: Tensor) -> Tensor:
    """The inner-loop policy-gradient loss L_in(φ) = −mean_t log π_φ(a_t|s_t)·Â_t of one task.

    Args:
        actor: the architecture (its own parameters are ignored).
        params: φ (one task's parameters, no task dimension).
        obs: [N, obs_dim]; actions: [N] or [N, A]; adv: [N].

    Returns:
        [] the loss.
    """
    return -(log_prob(actor, params, obs, actions) * adv).mean()


def adapt_step(
    actor: Actor, params: Params, data: TaskBatch, lr: float, first_order: bool, shared: bool
) -> Params:
    """One inner update for every task at once: φ^i ← φ^i − α ∇L_in(φ^i; D^i), vmapped over tasks.

    Args:
        actor: the architecture.
        params: θ shared by every task (``shared``), or stacked φ [K, ...].
        data: the tasks' rollouts, [K, N, ...].
        lr: α.
        first_order: treat the inner gradient as a constant (no Hessian terms in the meta-gradient).
        shared: whether ``params`` has no task dimension.

    Returns:
        Stacked adapted parameters [K, ...], differentiable with respect to ``params``.
    """
    g_fn = vmap(grad(lambda p, o, a, adv: inner_loss(actor, p, o, a, adv)), in_dims=(None if shared else 0, 0, 0, 0))
    g = g_fn(params, data.obs, data.actions, data.advantages)
    k = data.obs.shape[0]
    out = {}
    for name, p in params.items():
        step = g[name].detach() if first_order else g[name]
        out[name] = (p.expand(k, *p.shape) if shared else p) - lr * step
    return out


def adapted_params(actor: Actor, theta: Params, inner: Sequence[TaskBatch], lr: float, first_order: bool) -> Params:
    """φ_K^i(θ): ``len(inner)`` ≥ 1 inner updates from θ (no task dimension) on each task's stored
    rollouts [K_tasks, N, ...]; returns stacked parameters [K_tasks, ...]."""
    if not inner:
        raise ConfigError("MAML needs at least one inner rollout (maml.inner_steps ≥ 1)")
    phi: Params = theta
    for k, data in enumerate(inner):
        phi = adapt_step(actor, phi, data, lr, first_order, shared=k == 0)
    return phi


def task_log_prob(actor: Actor, params: Params, obs: Tensor, actions: Tensor) -> Tensor:
    """log π_{φ^i}(a|s) for every task with its own parameters: stacked φ [K, ...], obs [K, N, obs_dim],
    actions [K, N(, A)] → [K, N]."""
    return vmap(lambda p, o, a: log_prob(actor, p, o, a))(params, obs, actions)


def meta_loss(
    actor: Actor, theta: Params, inner: Sequence[TaskBatch], outer: TaskBatch, inner_lr: float, first_order: bool,
    clip_coef: float,
) -> tuple[Tensor, Tensor]:
    """The outer objective: PPO's clipped loss of the post-adaptation policies φ_K^i(θ) on their own
    fresh rollouts, averaged over all rows of all tasks (equal rows per task: the mean over tasks of
    each task's mean).

    Args:
        actor: the architecture.
        theta: θ (differentiable leaves, or plain tensors).
        inner: the K inner rollouts, each [K_tasks, N, ...].
        outer: the post-adaptation rollout with ``logp`` recorded under φ_K(θ_old).
        inner_lr, first_order: the inner update.
        clip_coef: ε.

    Returns:
        The loss [] and the log-ratios [K_tasks, N].
    """
    phi = adapted_params(actor, theta, inner, inner_lr, first_order)
    logp = task_log_prob(actor, phi, outer.obs, outer.actions)
    loss, log_ratio = clipped_policy_loss(logp.reshape(-1), outer.logp.reshape(-1), outer.advantages.reshape(-1), clip_coef)
    return loss, log_ratio.reshape(logp.shape)


def stack(params: Params, k: int) -> Params:
    """θ repeated for k tasks: {name: [k, ...]} (a view, no copy)."""
    return {name: p.detach().expand(k, *p.shape) for name, p in params.items()}


def stacked_forward(actor: Actor, params: Params, obs: Tensor) -> Tensor:
    """The actor's output for every task with its own parameters: stacked φ [K, ...], obs [K, e, obs_dim]
    → [K, e, A].

    ``vmap`` over ``functional_call`` works for any architecture, but costs about 2 ms per call in Python
    overhead, which dominates rollouts of small networks (one call per environment step); the plain MLP
    :class:`~policygradex.rl.policy.Actor` takes a batched-matmul path with the same result
    (``tests/test_maml.py`` checks both agree).
    """
    net = getattr(actor, "net", None)
    if type(actor) is Actor and isinstance(net, torch.nn.Sequential):
        x = actor.normalize(obs)
        for j, layer in enumerate(net):
            if isinstance(layer, torch.nn.Linear):
                x = torch.baddbmm(params[f"net.{j}.bias"][:, None, :], x, params[f"net.{j}.weight"].transpose(1, 2))
            elif isinstance(layer, torch.nn.Tanh | torch.nn.ReLU):
                x = layer(x)
            else:
                break
        else:
            return x
    return vmap(lambda p, o: functional_call(actor, p, (o,)))(params, obs)


class TaskParamsPolicy:
    """A policy whose actor has one parameter copy per task: environment block i of a vector env
    (``make_vec`` groups environments by task, in sorted task order) acts with φ^i; V(s) is the shared
    critic's. Satisfies :class:`~policygradex.rl.rollout.RolloutPolicy`, so ``collect`` and
    ``evaluate`` run it unchanged.

    Args:
        policy: supplies the actor's architecture and the critic.
        params: stacked φ [K, ...], task i of the env's sorted tasks in row i.
    """

    def __init__(self, policy: ActorCritic, params: Params) -> None:
        self.policy = policy
        self.params = {k: v.detach() for k, v in params.items()}
        self.num_tasks = int(next(iter(self.params.values())).shape[0])

    @torch.no_grad()
    def act(self, obs: Tensor, generator: torch.Generator, deterministic: bool = False) -> tuple[Tensor, Tensor]:
        """Actions and log-probabilities for obs [E, obs_dim], E a multiple of K (blocks by task)."""
        e_total = obs.shape[0]
        if e_total % self.num_tasks:
            raise ConfigError(f"{e_total} environments do not split into {self.num_tasks} equal task blocks")
        blocks = obs.reshape(self.num_tasks, e_total // self.num_tasks, *obs.shape[1:])
        actor = self.policy.actor
        out = stacked_forward(actor, self.params, blocks)  # [K, e, A]
        log_std = self.params.get("log_std")
        actions, logp = sample_actions(actor, out, None if log_std is None else log_std[:, None], generator, deterministic)
        return actions.reshape(e_total, *actions.shape[2:]), logp.reshape(e_total)

    @torch.no_grad()
    def value(self, obs: Tensor) -> Tensor:
        """The shared critic's V(s) [E]."""
        return self.policy.value(obs)


# ---- meta-training ---------------------------------------------------------------------------------------
@dataclass
class MAMLState:
    """Everything :func:`meta_train` needs to continue exactly where it stopped (plain data and tensors,
    loaded with ``weights_only=True``). No RNG or environment state is needed: every iteration draws
    from streams derived from (seed, iteration) and resets its environments.

    Attributes:
        iteration: meta-iterations finished.
        env_steps: environment steps taken.
        wall_seconds: training wall-clock so far.
        policy, optimizer: the state dicts.
        history: the ``maml/`` metrics of every finished iteration.
    """

    iteration: int
    env_steps: int
    wall_seconds: float
    policy: dict[str, Tensor]
    optimizer: dict[str, Any]
    history: list[dict[str, float]]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``torch.save``."""
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MAMLState:
        """The inverse of :meth:`to_dict`."""
        return cls(**d)


@dataclass
class MAMLResult:
    """The meta-trained policy (θ and the critic) and what happened.

    Attributes:
        policy: the network.
        task_indices: the group's tasks.
        env_steps: environment steps taken.
        wall_seconds: wall-clock of the training.
        history: one dict of ``maml/`` metrics per iteration (pre- and post-adaptation episode returns
            of the rollouts, the outer loss, KL and clip fraction).
    """

    policy: ActorCritic
    task_indices: list[int]
    env_steps: int
    wall_seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def iteration_streams(seed: int, iteration: int) -> tuple[np.random.Generator, torch.Generator, int]:
    """(meta-batch sampling, action sampling, env-reset seed) of one iteration, derived from (seed, it)."""
    ss = np.random.SeedSequence([seed, iteration])
    task_ss, act_ss, env_ss = ss.spawn(3)
    gen = torch.Generator().manual_seed(int(act_ss.generate_state(1)[0]))
    return np.random.default_rng(task_ss), gen, int(env_ss.generate_state(1)[0] % (2**31))


def action_bounds(family: TaskFamily) -> tuple[np.ndarray, np.ndarray] | None:
    """(low, high) of a continuous action space (actions are clipped for the env only), else None."""
    if family.discrete:
        return None
    return np.asarray(family.action_space.low), np.asarray(family.action_space.high)  # type: ignore[attr-defined]


def rollout(
    policy: ActorCritic, params: Params, family: TaskFamily, venv: Any, steps: int, env_seed: int,
    gen: torch.Generator, gamma: float, lam: float,
) -> tuple[TaskBatch, list[Episode]]:
    """Reset ``venv`` with ``env_seed`` and collect ``steps`` steps with per-task parameters ``params``
    [K, ...]; returns the per-task rows and the episodes that finished."""
    state = RolloutState.start(venv, env_seed)
    batch = collect(TaskParamsPolicy(policy, params), venv, state, steps, gamma, lam, gen, action_bounds(family))
    k = int(next(iter(params.values())).shape[0])
    return task_batch(batch, k, venv.num_envs), batch.episodes


def _mean_return(episodes: list[Episode]) -> float:
    return float(np.mean([e.ret for e in episodes])) if episodes else float("nan")


def meta_train(
    family: TaskFamily,
    task_indices: Sequence[int],
    cfg: MAMLConfig,
    init: ActorCritic | None = None,
    policy_cfg: PolicyConfig | None = None,
    resume: MAMLState | None = None,
    on_state: Callable[[MAMLState], None] | None = None,
    state_every_s: float = 30.0,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
) -> MAMLResult:
    """Meta-train a policy with MAML on ``task_indices`` of ``family``.

    Args:
        family: the task family.
        task_indices: the group's tasks.
        cfg: hyperparameters, budget and seed.
        init: start from this policy (θ* of a run; copied, never modified); else a new policy of
            ``policy_cfg`` seeded from ``cfg.seed``.
        policy_cfg: architecture of a new policy.
        resume: a state given to ``on_state`` by an earlier call with the same arguments: training goes
            on from it and ends with the same weights as an uninterrupted run.
        on_state: receives the state after an iteration, at most every ``state_every_s`` seconds (0:
            after every iteration).
        state_every_s: seconds between two states.
        progress: ``progress(iteration, num_iterations, metrics)`` after each iteration.

    Returns:
        A :class:`MAMLResult`.

    Raises:
        ConfigError: bad task indices, a budget below one iteration, or an initial policy of another family.
        MAMLDiverged: the loss or the weights became non-finite.
    """
    tasks = family.check_indices(task_indices)
    iterations = cfg.num_iterations(len(tasks))
    if init is not None:
        if init.obs_dim != family.obs_dim or init.action_dim != family.action_dim:
            raise ConfigError(f"the initial policy does not fit family {family.name}; use one trained on it")
        policy = copy.deepcopy(init)
    else:
        policy = build_policy(family.obs_dim, family.action_dim, family.discrete, policy_cfg or PolicyConfig(), cfg.seed,
                              task_dim=family.onehot_size)
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.outer_lr, eps=1e-5)
    result = MAMLResult(policy, tasks, 0, 0.0)
    first = 0
    if resume is not None:
        policy.load_state_dict(resume.policy)
        optimizer.load_state_dict(resume.optimizer)
        first, result.env_steps, result.history = resume.iteration, resume.env_steps, list(resume.history)
    start = time.perf_counter() - (resume.wall_seconds if resume is not None else 0.0)
    last_state = time.perf_counter()
    per_it = cfg.steps_per_iteration(len(tasks))
    for it in range(first, iterations):
        metrics = meta_iteration(policy, optimizer, family, tasks, cfg, it)
        result.env_steps += per_it
        result.history.append(metrics)
        if progress is not None:
            progress(it + 1, iterations, metrics)
        if on_state is not None and it + 1 < iterations and time.perf_counter() - last_state >= state_every_s:
            on_state(MAMLState(
                iteration=it + 1, env_steps=result.env_steps, wall_seconds=time.perf_counter() - start,
                policy={k: v.detach().clone() for k, v in policy.state_dict().items()},
                optimizer=copy.deepcopy(optimizer.state_dict()), history=list(result.history),
            ))
            last_state = time.perf_counter()
    result.wall_seconds = time.perf_counter() - start
    return result


def meta_iteration(
    policy: ActorCritic, optimizer: torch.optim.Optimizer, family: TaskFamily, tasks: list[int], cfg: MAMLConfig,
    iteration: int,
) -> dict[str, float]:
    """One MAML iteration (inner rollouts and updates, outer rollout, ``outer_epochs`` meta-updates),
    changing ``policy`` and ``optimizer`` in place; returns its ``maml/`` metrics."""
    task_rng, gen, env_seed = iteration_streams(cfg.seed, iteration)
    batch_tasks = tasks
    if cfg.tasks_per_iteration(len(tasks)) < len(tasks):
        batch_tasks = sorted(int(t) for t in task_rng.choice(tasks, cfg.tasks_per_iteration(len(tasks)), replace=False))
    k = len(batch_tasks)
    actor = policy.actor
    venv = family.make_vec(batch_tasks, cfg.envs_per_task)
    inner: list[TaskBatch] = []
    try:
        theta = policy.actor_params()
        phi = stack(theta, k)
        pre: list[Episode] = []
        for j in range(cfg.inner_steps):
            data, eps = rollout(policy, phi, family, venv, cfg.rollout_steps, env_seed + j, gen, cfg.gamma, cfg.gae_lambda)
            if j == 0:
                pre = eps
            inner.append(data)
            with torch.no_grad():
                phi = adapt_step(actor, phi, data, cfg.inner_lr, True, shared=False)
        outer, post = rollout(policy, phi, family, venv, cfg.rollout_steps, env_seed + cfg.inner_steps, gen,
                              cfg.gamma, cfg.gae_lambda)
    finally:
        venv.close()
    sums: dict[str, float] = {}
    theta_live: Params = dict(actor.named_parameters())
    for _ in range(cfg.outer_epochs):
        loss, log_ratio = meta_loss(actor, theta_live, inner, outer, cfg.inner_lr, cfg.first_order, cfg.clip_coef)
        v_loss = sum(
            (clipped_value_loss(policy.value(d.obs.reshape(-1, d.obs.shape[-1])), d.values.reshape(-1),
                                d.returns.reshape(-1), cfg.clip_coef) for d in (*inner, outer)),
            torch.zeros(()),
        ) / (len(inner) + 1)
        optimizer.zero_grad()
        (loss + v_loss).backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
        optimizer.step()
        with torch.no_grad():
            ratio = log_ratio.exp()
            stats = {"outer_loss": float(loss), "value_loss": float(v_loss),
                     "approx_kl": float(((ratio - 1) - log_ratio).mean()),
                     "clip_frac": float(((ratio - 1).abs() > cfg.clip_coef).float().mean())}
        for name, v in stats.items():
            sums[name] = sums.get(name, 0.0) + v
    if not all(math.isfinite(v) for v in sums.values()) or not all(bool(torch.isfinite(p).all()) for p in policy.parameters()):
        raise MAMLDiverged(
            f"MAML diverged at iteration {iteration + 1} (the loss or the weights became non-finite); lower "
            f"maml.inner_lr (now {cfg.inner_lr:g}) or maml.outer_lr (now {cfg.outer_lr:g})"
        )
    metrics = {f"maml/{name}": v / cfg.outer_epochs for name, v in sums.items()}
    metrics["maml/pre_adaptation_return"] = _mean_return(pre)
    metrics["maml/post_adaptation_return"] = _mean_return(post)
    return metrics


# ---- adaptation on held-out tasks ------------------------------------------------------------------------
def adapt(
    policy: ActorCritic,
    family: TaskFamily,
    task_indices: Sequence[int],
    steps: int,
    cfg: MAMLConfig,
    seed: int,
    lr: float | None = None,
) -> Params:
    """Adapt ``policy`` to every listed task with ``steps`` inner-loop updates (one *adaptation step* =
    one policy-gradient update on a fresh rollout of ``cfg.rollout_steps`` steps × ``cfg.envs_per_task``
    environments of the task, advantages from the policy's critic), all tasks batched in one vector env
    with one parameter copy per task.

    Args:
        policy: the meta-trained policy (θ and critic).
        family: the tasks' family (a held-out ``*-test`` family, or the training family).
        task_indices: the tasks to adapt to.
        steps: adaptation steps (0: no adaptation, θ for every task).
        cfg: the rollout size, GAE settings and (unless ``lr``) the inner step size.
        seed: seeds the rollouts.
        lr: the step size (default ``cfg.inner_lr``).

    Returns:
        Stacked φ^i [K, ...], row i for the i-th task of ``sorted(task_indices)``.

    Raises:
        ConfigError: bad task indices, ``steps < 0`` or a bad step size.
    """
    tasks = family.check_indices(task_indices)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ConfigError(f"adaptation steps={steps!r} must be an integer ≥ 0")
    alpha = cfg.inner_lr if lr is None else lr
    if not 0 < alpha < math.inf:
        raise ConfigError(f"adaptation lr={alpha} must be a positive finite number")
    phi = stack(policy.actor_params(), len(tasks))
    if steps == 0:
        return phi
    ss = np.random.SeedSequence([seed, 31337])
    gen = torch.Generator().manual_seed(int(ss.generate_state(1)[0]))
    env_seed = int(ss.generate_state(2)[1] % (2**31))
    venv = family.make_vec(tasks, cfg.envs_per_task)
    try:
        for j in range(steps):
            data, _ = rollout(policy, phi, family, venv, cfg.rollout_steps, env_seed + j, gen, cfg.gamma, cfg.gae_lambda)
            with torch.no_grad():
                phi = adapt_step(policy.actor, phi, data, alpha, True, shared=False)
    finally:
        venv.close()
    return {k: v.detach().clone() for k, v in phi.items()}
