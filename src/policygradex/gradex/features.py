"""Gradient features of the meta-policy (paper §2.2).

For every task, roll out θ*, compute GAE advantages with the meta-critic, and per-sample gradients
g_t = ∇_θ log π_θ(a_t|s_t) at θ* over the actor's parameters, with ``torch.func`` (vmap over samples
of grad of the functional log-probability: no Python loop over samples), projected to d dimensions:
g̃_t = Pᵀ g_t. Samples are processed in chunks, so the full [N, p] gradient matrix never exists.

With the structured projection (:class:`~policygradex.gradex.projection.KroneckerProjection`, issue 11)
not even one per-sample gradient is formed: one batched forward/backward of Σ_t log π(a_t|s_t) gives
every Linear layer's inputs a_t and output gradients δ_t (the weight gradient of sample t is δ_t a_tᵀ,
its bias gradient δ_t), and the projection works on those factors (:func:`layer_factors`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.func import grad, vmap

from policygradex.errors import ConfigError
from policygradex.gradex.projection import KroneckerProjection, Projection, kronecker_blocks
from policygradex.rl.policy import Actor, ActorCritic, distribution_log_prob, log_prob
from policygradex.rl.rollout import RolloutState, collect
from policygradex.tasks.base import TaskFamily


@dataclass
class TaskFeatures:
    """What PolicyGradEx keeps of task i's transitions under θ*. N = transitions of the task.

    Attributes:
        grads: [N, d] projected per-sample gradients g̃_t.
        advantages: [N] GAE advantages Â_t from the meta-critic.
        logp: [N] log π_θ*(a_t|s_t).
        obs: [N, obs_dim] observations (kept for held-out checks of the approximation).
        actions: [N] or [N, A] actions.
    """

    grads: Tensor
    advantages: Tensor
    logp: Tensor
    obs: Tensor
    actions: Tensor

    def to_dict(self) -> dict[str, Tensor]:
        """Tensors by name (for ``torch.save``)."""
        return {k: getattr(self, k) for k in ("grads", "advantages", "logp", "obs", "actions")}


def flatten(params: dict[str, Tensor]) -> Tensor:
    """θ as one vector [p], in the order of the dict (the actor's ``named_parameters`` order)."""
    return torch.cat([v.reshape(-1) for v in params.values()])


def unflatten(vec: Tensor, like: dict[str, Tensor]) -> dict[str, Tensor]:
    """Inverse of :func:`flatten`: [p] → ``{name: tensor}`` shaped like ``like``."""
    out, start = {}, 0
    for k, v in like.items():
        out[k] = vec[start : start + v.numel()].reshape(v.shape).to(v.dtype)
        start += v.numel()
    if start != vec.numel():
        raise ConfigError(f"parameter vector has {vec.numel()} entries, the actor has {start}")
    return out


def per_sample_grads(
    actor: Actor, params: dict[str, Tensor], obs: Tensor, actions: Tensor, chunk: int = 512
) -> Iterator[Tensor]:
    """Per-sample gradients of log π_θ(a|s) at ``params``, flattened, ``chunk`` samples at a time.

    Args:
        actor: architecture of the actor.
        params: θ (actor parameters).
        obs: [N, obs_dim]; actions: [N] or [N, A].
        chunk: samples per vmap call.

    Yields:
        [B, p] gradient rows, in sample order (B ≤ chunk).
    """
    g_fn = vmap(grad(lambda p, o, a: log_prob(actor, p, o, a)), in_dims=(None, 0, 0))
    for s in range(0, len(obs), chunk):
        g = g_fn(params, obs[s : s + chunk], actions[s : s + chunk])
        yield torch.cat([g[k].reshape(g[k].shape[0], -1) for k in params], dim=1)


def layer_factors(
    actor: Actor, params: dict[str, Tensor], obs: Tensor, actions: Tensor
) -> list[tuple[Tensor, Tensor | None]]:
    """Every sample's per-layer gradient factors from one batched forward/backward of Σ_t log π(a_t|s_t).

    The actor is run functionally layer by layer (it must decompose: :func:`kronecker_blocks`); since
    sample t's log-probability depends only on its own row, the gradient of the sum with respect to a
    Linear layer's output row t is that sample's δ_t.

    Args:
        actor: an MLP actor (architecture only).
        params: θ.
        obs: [N, obs_dim]; actions: [N] or [N, A].

    Returns:
        One entry per block of :func:`kronecker_blocks`, in its (θ's) order: ``(δ [N, out], a [N, in])``
        per Linear layer (weight gradient δ_t a_tᵀ, bias gradient δ_t), and ``(∂ log π/∂ log_std [N, A],
        None)`` for a Gaussian head's log-std.

    Raises:
        ConfigError: the actor cannot be decomposed.
    """
    blocks = kronecker_blocks(actor)
    factors: dict[str, tuple[Tensor, Tensor | None]] = {}
    inputs: list[Tensor] = []
    outputs: list[Tensor] = []
    names: list[str] = []
    x = actor.normalize(obs.float())  # the running statistics are buffers, not part of θ
    with torch.enable_grad():
        for name, module in actor.net.named_children():
            if isinstance(module, torch.nn.Linear):
                inputs.append(x.detach())
                z = torch.nn.functional.linear(
                    x, params[f"net.{name}.weight"].detach(), params[f"net.{name}.bias"].detach()
                )
                if not z.requires_grad:
                    z.requires_grad_(True)
                outputs.append(z)
                names.append(f"net.{name}")
                x = z
            else:
                x = module(x)
        leaves = list(outputs)
        log_std = None
        if "log_std" in params:
            # one copy of log_std per sample, so its gradient comes out per sample
            log_std = params["log_std"].detach().expand(x.shape[0], -1).clone().requires_grad_(True)
            leaves.append(log_std)
        total = distribution_log_prob(actor, x, actions, log_std).sum()
        grads = torch.autograd.grad(total, leaves)
    for name, delta, a in zip(names, grads[: len(outputs)], inputs, strict=True):
        factors[name] = (delta, a)
    if log_std is not None:
        factors["log_std"] = (grads[-1], None)
    return [factors[b.name] for b in blocks]


def projected_grads(
    actor: Actor, params: dict[str, Tensor], obs: Tensor, actions: Tensor, projection: Projection,
    chunk: int = 512,
) -> Tensor:
    """g̃ = Pᵀ g for every sample. obs: [N, obs_dim] → [N, d].

    The Gaussian projection multiplies vmapped per-sample gradients ([chunk, p] at a time); the
    structured projection works on :func:`layer_factors` (``chunk`` samples per backward: 512 keeps
    the [chunk, d] products in cache, measured fastest) and never forms a p-dimensional per-sample
    gradient.
    """
    if isinstance(projection, KroneckerProjection):
        shapes = [(b.name, b.out, b.inp) for b in kronecker_blocks(actor)]
        if shapes != [(b.name, b.out, b.inp) for b in projection.blocks]:
            raise ConfigError(
                "the kronecker projection was built for another architecture than this actor's; "
                "build it with kronecker_blocks(actor)"
            )
        out = [
            projection.project_layers(layer_factors(actor, params, obs[s : s + chunk], actions[s : s + chunk]))
            for s in range(0, len(obs), chunk)
        ]
    else:
        out = [projection.project(g) for g in per_sample_grads(actor, params, obs, actions, chunk)]
    return torch.cat(out) if out else torch.zeros(0, projection.d)


def collect_features(
    policy: ActorCritic,
    family: TaskFamily,
    projection: Projection,
    samples_per_task: int,
    seed: int,
    envs_per_task: int = 8,
    gamma: float = 0.99,
    lam: float = 0.95,
    progress: Callable[[int, int], None] | None = None,
) -> dict[int, TaskFeatures]:
    """Roll out θ* on every task of ``family`` and compute each task's features.

    Args:
        policy: the meta-policy θ* (actor and critic).
        family: all n tasks are rolled out, batched.
        projection: P, with ``projection.p`` = the actor's parameter count.
        samples_per_task: transitions kept per task (the paper uses 2048); rounded up to a multiple
            of ``envs_per_task``.
        seed: seeds the environments and the action sampling.
        envs_per_task: parallel environments per task.
        gamma, lam: discount and GAE λ (use the meta-training values).
        progress: called as ``progress(done, total)``: once after the rollout (0 of n tasks) and after
            each task's projected gradients (the bulk of the work).

    Returns:
        ``{task index: TaskFeatures}``.
    """
    if samples_per_task < 1:
        raise ConfigError(f"samples_per_task={samples_per_task} must be at least 1")
    params = policy.actor_params()
    p = int(sum(v.numel() for v in params.values()))
    if projection.p != p:
        raise ConfigError(f"projection has p={projection.p} rows but the actor has {p} parameters")
    steps = -(-samples_per_task // envs_per_task)
    venv = family.make_vec(range(family.n), envs_per_task)
    gen = torch.Generator().manual_seed(seed)
    try:
        state = RolloutState.start(venv, seed)
        batch = collect(policy, venv, state, steps, gamma, lam, gen, _bounds(family))
    finally:
        venv.close()
    out = {}
    if progress is not None:
        progress(0, family.n)
    for i in range(family.n):
        rows = torch.nonzero(batch.task == i).squeeze(1)
        obs, actions = batch.obs[rows], batch.actions[rows]
        out[i] = TaskFeatures(
            grads=projected_grads(policy.actor, params, obs, actions, projection),
            advantages=batch.advantages[rows].clone(),
            logp=batch.logp[rows].clone(),
            obs=obs.clone(),
            actions=actions.clone(),
        )
        if progress is not None:
            progress(i + 1, family.n)
    return out


def _bounds(family: TaskFamily) -> tuple[np.ndarray, np.ndarray] | None:
    if family.discrete:
        return None
    space = family.action_space
    return np.asarray(space.low), np.asarray(space.high)  # type: ignore[attr-defined]


def perturbed_policy(policy: ActorCritic, delta: Tensor) -> ActorCritic:
    """A copy of ``policy`` with actor parameters θ* + Δθ. delta: [p] in :func:`flatten` order."""
    params = policy.actor_params()
    new = unflatten(flatten(params) + delta.to(torch.float32), params)
    out = copy.deepcopy(policy)
    with torch.no_grad():
        for k, v in out.actor.named_parameters():
            v.copy_(new[k])
    return out
