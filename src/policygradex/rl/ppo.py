"""Multitask PPO (clipped objective) over all tasks of a family at once.

One batched :class:`~policygradex.tasks.base.TaskVecEnv` runs ``envs_per_task`` copies of every task;
each update mixes the tasks' transitions. The same function trains the meta-policy θ* from scratch
(all n tasks) and fine-tunes a given policy on any subset of tasks.

Deterministic on CPU for a fixed seed: the environments, the action sampling and the minibatch
permutations each draw from their own stream derived from the seed.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from policygradex.errors import ConfigError, PolicyGradExError
from policygradex.metrics import MetricsLogger
from policygradex.rl.policy import ActorCritic, PolicyConfig, build_policy
from policygradex.rl.rollout import Batch, Episode, RolloutState, collect
from policygradex.tasks.base import TaskFamily, env_state
from policygradex.threads import library_threads


class TrainingDiverged(PolicyGradExError):
    """PPO's loss or weights became non-finite; nothing of the diverged policy is saved."""


@dataclass(frozen=True)
class PPOConfig:
    """PPO hyperparameters (defaults follow the common CleanRL/SB3 settings for classic control)."""

    total_steps: int = 1_000_000
    """Total environment steps over all tasks."""
    envs_per_task: int = 4
    """Parallel environments per task."""
    num_steps: int = 128
    """Steps per environment per rollout."""
    learning_rate: float = 2.5e-4
    """Adam learning rate."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to zero."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE λ."""
    num_minibatches: int = 4
    """Minibatches per epoch."""
    update_epochs: int = 4
    """Epochs over each rollout."""
    clip_coef: float = 0.2
    """PPO ratio clip."""
    ent_coef: float = 0.01
    """Entropy bonus coefficient."""
    vf_coef: float = 0.5
    """Value loss coefficient."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip."""
    norm_adv: bool = True
    """Normalise advantages per minibatch."""

    def __post_init__(self) -> None:
        for name in ("total_steps", "envs_per_task", "num_steps", "num_minibatches", "update_epochs"):
            v = getattr(self, name)
            if v < 1:
                raise ConfigError(f"{name}={v} must be a positive integer")
        for name in ("learning_rate", "clip_coef", "max_grad_norm"):
            v = getattr(self, name)
            if not 0 < v < float("inf"):
                raise ConfigError(f"{name}={v} must be a positive finite number")
        if not 0 <= self.gamma <= 1 or not 0 <= self.gae_lambda <= 1:
            raise ConfigError(f"gamma={self.gamma} and gae_lambda={self.gae_lambda} must lie in [0, 1]")
        if self.ent_coef < 0 or self.vf_coef < 0:
            raise ConfigError(f"ent_coef={self.ent_coef} and vf_coef={self.vf_coef} must be non-negative")

    def batch_size(self, num_tasks: int) -> int:
        """Rows per rollout for ``num_tasks`` tasks."""
        return num_tasks * self.envs_per_task * self.num_steps

    def num_iterations(self, num_tasks: int) -> int:
        """Rollout/update iterations; raises ConfigError when the budget is below one rollout."""
        it = self.total_steps // self.batch_size(num_tasks)
        if it < 1:
            raise ConfigError(
                f"total_steps={self.total_steps} is less than one rollout "
                f"({self.batch_size(num_tasks)} steps for {num_tasks} tasks); raise total_steps"
            )
        return it


def ppo_config_for(family: TaskFamily, preset: str, **overrides: Any) -> PPOConfig:
    """The PPO config a family suggests for a preset, with ``overrides`` applied (None values ignored)."""
    base = PPOConfig(total_steps=family.suggested_steps(preset), **dict(family.ppo_overrides))
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


@dataclass
class TrainResult:
    """The trained policy and what happened.

    Attributes:
        policy: the trained network.
        task_indices: tasks trained on.
        env_steps: environment steps taken.
        wall_seconds: wall-clock of training.
        episodes: every finished training episode.
        history: one dict of ``train/`` metrics per iteration.
    """

    policy: ActorCritic
    task_indices: list[int]
    env_steps: int
    wall_seconds: float
    episodes: list[Episode] = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)

    def recent_task_returns(self, last: int = 20) -> dict[int, float]:
        """Mean return of each task's last ``last`` training episodes."""
        out: dict[int, float] = {}
        for i in self.task_indices:
            rets = [e.ret for e in self.episodes if e.task == i][-last:]
            out[i] = float(np.mean(rets)) if rets else float("nan")
        return out


@dataclass
class TrainState:
    """Everything :func:`train` needs to continue exactly where it stopped (plain data and tensors, so
    it saves with ``torch.save`` and loads with ``weights_only=True``).

    Attributes:
        iteration: iterations finished.
        env_steps: environment steps taken.
        wall_seconds: training wall-clock so far.
        policy, optimizer: the state dicts.
        action_rng: the action-sampling ``torch.Generator`` state.
        minibatch_rng: the minibatch-order NumPy bit-generator state.
        env: the vector env's pickled state (see ``tasks.base.env_state``).
        rollout: the :class:`RolloutState` arrays (current observations, running episode counters).
        history: the ``train/`` metrics of every finished iteration.
        episodes: every finished training episode as (task, return, length, success).
        observer: the :class:`UpdateObserver`'s ``state_dict()`` (None: trained without one; states
            saved before observers existed have no such entry).
    """

    iteration: int
    env_steps: int
    wall_seconds: float
    policy: dict[str, Tensor]
    optimizer: dict[str, Any]
    action_rng: Tensor
    minibatch_rng: dict[str, Any]
    env: bytes
    rollout: dict[str, Tensor]
    history: list[dict[str, float]]
    episodes: list[tuple[int, float, int, bool]]
    observer: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``torch.save``."""
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainState:
        """The inverse of :meth:`to_dict`."""
        return cls(**d)


class UpdateObserver(Protocol):
    """Watches a training without taking part in it (the TAG lookahead of issue 12 is one).

    :func:`train` calls :meth:`observe` once per iteration, after the rollout and before the update's
    gradient steps. An observer must leave the policy and the batch as they are and draw from no random
    stream the training uses, so the trained weights are the same with or without it. Its state travels
    in :class:`TrainState`, so a resumed training continues it.
    """

    def observe(self, iteration: int, policy: ActorCritic, batch: Batch, lr: float) -> None:
        """Look at iteration ``iteration``'s fresh ``batch`` at the policy before its update (step size ``lr``)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """The observer's state as plain data and tensors (saved with ``weights_only=True``)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict`; raises ValueError for a state of another observer."""
        ...


def streams(seed: int) -> tuple[int, torch.Generator, np.random.Generator]:
    """Independent seeds/streams for (environment resets, action sampling, minibatch order)."""
    ss = np.random.SeedSequence(seed)
    env_ss, act_ss, mb_ss = ss.spawn(3)
    env_seed = int(env_ss.generate_state(1)[0] % (2**31))
    gen = torch.Generator().manual_seed(int(act_ss.generate_state(1)[0]))
    return env_seed, gen, np.random.default_rng(mb_ss)


def clipped_policy_loss(logp: Tensor, old_logp: Tensor, adv: Tensor, clip_coef: float) -> tuple[Tensor, Tensor]:
    """PPO's clipped surrogate, as a loss: mean_t max(−Â_t r_t, −Â_t clip(r_t, 1 ± ε)), r_t = π/π_old.

    Pure, so it also serves as MAML's outer objective on adapted parameters (``rl.maml``).

    Args:
        logp: [B] log π_θ(a_t|s_t) (differentiable).
        old_logp: [B] log-probabilities at collection time.
        adv: [B] advantages (normalised by the caller if wanted).
        clip_coef: ε.

    Returns:
        The loss [] and the log-ratios [B] (for the KL and clip-fraction statistics).
    """
    log_ratio = logp - old_logp
    ratio = log_ratio.exp()
    return torch.max(-adv * ratio, -adv * ratio.clamp(1 - clip_coef, 1 + clip_coef)).mean(), log_ratio


def clipped_value_loss(v: Tensor, old_v: Tensor, returns: Tensor, clip_coef: float) -> Tensor:
    """PPO's clipped value loss 0.5·mean max((V − R)², (V_clip − R)²). All [B]; returns []."""
    v_clipped = old_v + (v - old_v).clamp(-clip_coef, clip_coef)
    return 0.5 * torch.max((v - returns).pow(2), (v_clipped - returns).pow(2)).mean()


def ppo_loss(policy: ActorCritic, mb: Batch, adv: Tensor, cfg: PPOConfig) -> tuple[Tensor, dict[str, Tensor]]:
    """Clipped PPO loss on one minibatch. ``adv``: [B] (already normalised if configured)."""
    logp, entropy = policy.log_prob_entropy(mb.obs, mb.actions)
    pg_loss, log_ratio = clipped_policy_loss(logp, mb.logp, adv, cfg.clip_coef)
    ratio = log_ratio.exp()
    v_loss = clipped_value_loss(policy.value(mb.obs), mb.values, mb.returns, cfg.clip_coef)
    ent = entropy.mean()
    loss = pg_loss - cfg.ent_coef * ent + cfg.vf_coef * v_loss
    with torch.no_grad():
        stats = {
            "policy_loss": pg_loss.detach(),
            "value_loss": v_loss.detach(),
            "entropy": ent.detach(),
            "approx_kl": ((ratio - 1) - log_ratio).mean(),
            "clip_frac": ((ratio - 1).abs() > cfg.clip_coef).float().mean(),
        }
    return loss, stats


def _capture(
    iteration: int, result: TrainResult, policy: ActorCritic, optimizer: torch.optim.Optimizer,
    gen: torch.Generator, mb_rng: np.random.Generator, venv: Any, state: RolloutState, start: float,
    observer: UpdateObserver | None = None,
) -> TrainState | None:
    """The training state after ``iteration`` iterations, or None where the envs cannot be captured."""
    env = env_state(venv)
    if env is None:
        return None
    return TrainState(
        iteration=iteration, env_steps=result.env_steps, wall_seconds=time.perf_counter() - start,
        policy={k: v.detach().clone() for k, v in policy.state_dict().items()},
        optimizer=copy.deepcopy(optimizer.state_dict()), action_rng=gen.get_state(),
        minibatch_rng=copy.deepcopy(dict(mb_rng.bit_generator.state)), env=env,
        rollout={
            "obs": torch.as_tensor(state.obs.copy()), "ep_return": torch.as_tensor(state.ep_return.copy()),
            "ep_length": torch.as_tensor(state.ep_length.copy()), "ep_success": torch.as_tensor(state.ep_success.copy()),
        },
        history=list(result.history),
        episodes=[(e.task, e.ret, e.length, e.success) for e in result.episodes],
        observer=None if observer is None else copy.deepcopy(observer.state_dict()),
    )


def update_obs_norm(policy: ActorCritic, batch: Batch) -> Batch:
    """Add a fresh rollout's observations to the policy's running statistics (``PolicyConfig.obs_norm``)
    and return the batch as the update must see it; the batch itself without ``obs_norm``.

    The statistics change once per rollout, after it and before its update, so the update trains the
    weights under the statistics the next rollout acts with, and a finished training's weights were
    trained under its final statistics. The batch's log π_old and V_old are recomputed under the new
    statistics (one forward pass, no random numbers), so PPO's ratio starts at exactly 1; advantages
    and returns stay those of the collection. This is the only place that changes the statistics:
    evaluation, feature collection, scoring and MAML leave them as they are, and fine-tuning θ*
    (a ``train`` from ``init``) continues θ*'s statistics and count.

    Args:
        policy: the policy being trained (its buffers are updated in place).
        batch: the rollout just collected with it (N rows).

    Returns:
        The batch with ``logp`` [N] and ``values`` [N] under the updated statistics.
    """
    if policy.actor.obs_norm is None:
        return batch
    policy.update_obs_norm(batch.obs)
    with torch.no_grad():
        logp, _ = policy.log_prob_entropy(batch.obs, batch.actions)
        values = policy.value(batch.obs)
    return replace(batch, logp=logp, values=values)


def _minibatch(batch: Batch, idx: Tensor) -> Batch:
    return Batch(
        obs=batch.obs[idx], actions=batch.actions[idx], logp=batch.logp[idx], values=batch.values[idx],
        advantages=batch.advantages[idx], returns=batch.returns[idx], task=batch.task[idx],
    )


@library_threads
def train(
    family: TaskFamily,
    task_indices: Sequence[int],
    cfg: PPOConfig,
    seed: int,
    policy_cfg: PolicyConfig | None = None,
    init: ActorCritic | None = None,
    logger: MetricsLogger | None = None,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
    resume: TrainState | None = None,
    on_state: Callable[[TrainState], None] | None = None,
    state_every_s: float = 30.0,
    observer: UpdateObserver | None = None,
) -> TrainResult:
    """Train with multitask PPO on ``task_indices`` of ``family``.

    Args:
        family: the task family.
        task_indices: the tasks to train on (all n for the meta-policy; a subset to fine-tune).
        cfg: PPO hyperparameters and budget.
        seed: the seed of everything random in this run.
        policy_cfg: architecture for a new policy (ignored when ``init`` is given).
        init: a policy to fine-tune; it is copied, never modified.
        logger: receives ``train/`` metrics each iteration.
        progress: called as ``progress(iteration, num_iterations, metrics)`` after each iteration.
        resume: a state saved by ``on_state`` in an earlier call with the same arguments: training goes
            on from it and ends with the same weights as an uninterrupted run.
        on_state: receives the training state after an iteration, at most every ``state_every_s``
            seconds (0: after every iteration), so a killed training can resume; not called where the
            environments cannot be captured (``tasks.base.env_state`` is None).
        state_every_s: seconds between two states given to ``on_state``.
        observer: watches every iteration's batch before its update (see :class:`UpdateObserver`);
            with ``resume``, it continues from the state's ``observer`` entry.

    Returns:
        A :class:`TrainResult`.

    Raises:
        ConfigError: bad task indices, a budget below one rollout, or an observer with a ``resume``
            state that holds none.
    """
    tasks = family.check_indices(task_indices)
    iterations = cfg.num_iterations(len(tasks))
    if init is not None:
        if (
            init.obs_dim != family.obs_dim or init.action_dim != family.action_dim
            or (init.cfg.arch != "mlp" and init.task_dim != family.onehot_size)
        ):
            raise ConfigError(f"the initial policy does not fit family {family.name}; use one trained on it")
        policy = copy.deepcopy(init)
    else:
        policy = build_policy(
            family.obs_dim, family.action_dim, family.discrete, policy_cfg or PolicyConfig(), seed,
            task_dim=family.onehot_size,
        )
    env_seed, gen, mb_rng = streams(seed)
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.learning_rate, eps=1e-5)
    bounds = None
    if not family.discrete:
        bounds = (np.asarray(family.action_space.low), np.asarray(family.action_space.high))  # type: ignore[attr-defined]

    venv = family.make_vec(tasks, cfg.envs_per_task)
    result = TrainResult(policy, tasks, 0, 0.0)
    first = 0
    if resume is None:
        state = RolloutState.start(venv, env_seed)
    else:
        policy.load_state_dict(resume.policy)
        optimizer.load_state_dict(resume.optimizer)
        gen.set_state(resume.action_rng)
        mb_rng.bit_generator.state = resume.minibatch_rng
        venv.set_state(resume.env)  # type: ignore[attr-defined]
        r = resume.rollout
        state = RolloutState(r["obs"].numpy(), r["ep_return"].numpy(), r["ep_length"].numpy(), r["ep_success"].numpy())
        if observer is not None:
            if resume.observer is None:
                raise ConfigError("the training state holds no observer state; resume without the observer or restart")
            observer.load_state_dict(resume.observer)
        first = resume.iteration
        result.env_steps = resume.env_steps
        result.history = list(resume.history)
        result.episodes = [Episode(int(t), float(ret), int(n), bool(ok)) for t, ret, n, ok in resume.episodes]
    batch_size = cfg.batch_size(len(tasks))
    mb_size = max(1, batch_size // cfg.num_minibatches)
    start = time.perf_counter() - (resume.wall_seconds if resume is not None else 0.0)
    last_state = time.perf_counter()
    try:
        for it in range(first, iterations):
            if cfg.anneal_lr:
                optimizer.param_groups[0]["lr"] = cfg.learning_rate * (1.0 - it / iterations)
            batch = collect(policy, venv, state, cfg.num_steps, cfg.gamma, cfg.gae_lambda, gen, bounds)
            batch = update_obs_norm(policy, batch)
            result.env_steps += batch_size
            result.episodes.extend(batch.episodes)
            if observer is not None:
                observer.observe(it, policy, batch, float(optimizer.param_groups[0]["lr"]))
            sums: dict[str, float] = {}
            count = 0
            for _ in range(cfg.update_epochs):
                perm = torch.as_tensor(mb_rng.permutation(batch_size))
                for s in range(0, batch_size, mb_size):
                    mb = _minibatch(batch, perm[s : s + mb_size])
                    adv = mb.advantages
                    if cfg.norm_adv and len(adv) > 1:
                        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                    loss, stats = ppo_loss(policy, mb, adv, cfg)
                    optimizer.zero_grad()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
                    optimizer.step()
                    for k, v in stats.items():
                        sums[k] = sums.get(k, 0.0) + float(v)
                    count += 1
            if not all(np.isfinite(v) for v in sums.values()) or not all(
                bool(torch.isfinite(p).all()) for p in policy.parameters()
            ):
                raise TrainingDiverged(
                    f"training diverged at iteration {it + 1} of {iterations} (the loss or the weights became "
                    f"non-finite); lower the learning rate (now {cfg.learning_rate:g}) or max_grad_norm"
                )
            metrics = {f"train/{k}": v / count for k, v in sums.items()}
            rets = [e.ret for e in batch.episodes]
            if rets:
                metrics["train/episode_return"] = float(np.mean(rets))
            metrics["train/env_steps_per_s"] = result.env_steps / (time.perf_counter() - start)
            result.history.append(metrics)
            if logger is not None:
                logger.log(result.env_steps, metrics)
            if progress is not None:
                progress(it + 1, iterations, metrics)
            if on_state is not None and it + 1 < iterations and time.perf_counter() - last_state >= state_every_s:
                captured = _capture(it + 1, result, policy, optimizer, gen, mb_rng, venv, state, start, observer)
                if captured is not None:
                    on_state(captured)
                last_state = time.perf_counter()
    finally:
        venv.close()
    result.wall_seconds = time.perf_counter() - start
    return result
