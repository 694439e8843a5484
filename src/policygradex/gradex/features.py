"""Gradient features of the meta-policy (paper §2.2).

For every task, roll out θ*, compute GAE advantages with the meta-critic, and per-sample gradients
g_t = ∇_θ log π_θ(a_t|s_t) at θ* over the actor's parameters, with ``torch.func`` (vmap over samples
of grad of the functional log-probability: no Python loop over samples), projected to d dimensions:
g̃_t = Pᵀ g_t. Samples are processed in chunks, so the full [N, p] gradient matrix never exists.
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
from policygradex.gradex.projection import GaussianProjection
from policygradex.rl.policy import Actor, ActorCritic, log_prob
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


def projected_grads(
    actor: Actor, params: dict[str, Tensor], obs: Tensor, actions: Tensor, projection: GaussianProjection,
    chunk: int = 512,
) -> Tensor:
    """g̃ = Pᵀ g for every sample. obs: [N, obs_dim] → [N, d]."""
    return torch.cat([projection.project(g) for g in per_sample_grads(actor, params, obs, actions, chunk)])


def collect_features(
    policy: ActorCritic,
    family: TaskFamily,
    projection: GaussianProjection,
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
