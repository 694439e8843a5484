"""Grouping baselines the paper compares against (§4): random grouping and gradient-similarity grouping;
and TAG's lookahead inter-task affinity (Fifty et al. 2021; issue 12, item 3)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.func import grad

from policygradex.errors import ConfigError
from policygradex.grouping.cluster import canonical_partition
from policygradex.rl.policy import Actor, log_prob


def random_partition(n: int, k: int, seed: int, sizes: Sequence[int] | None = None) -> list[list[int]]:
    """A uniformly random partition of n tasks into k nonempty groups (of the given sizes, if any)."""
    if not 1 <= k <= n:
        raise ConfigError(f"k={k} must lie in [1, {n}]")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n).tolist()
    if sizes is None:
        cuts = sorted(rng.choice(np.arange(1, n), size=k - 1, replace=False).tolist()) if k > 1 else []
        sizes = np.diff([0, *cuts, n]).tolist()
    if sum(sizes) != n or len(sizes) != k or min(sizes) < 1:
        raise ConfigError(f"group sizes {list(sizes)} must be {k} positive numbers summing to {n}")
    groups, start = [], 0
    for s in sizes:
        groups.append(perm[start : start + s])
        start += s
    return canonical_partition(groups)


def gradient_similarity(mean_grads: Tensor) -> np.ndarray:
    """Cosine similarity of per-task mean gradients. mean_grads: [n, d] → [n, n]."""
    g = mean_grads.double()
    g = g / g.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return (g @ g.T).numpy()


def task_mean_gradients(grads: Sequence[Tensor], advantages: Sequence[Tensor] | None = None) -> Tensor:
    """Per-task mean (projected) gradient at θ*; advantage-weighted — the policy-gradient direction of the
    task — when advantages are given. grads[i]: [N_i, d] → [n, d]."""
    rows = []
    for i, g in enumerate(grads):
        rows.append((g * advantages[i][:, None]).mean(0) if advantages is not None else g.mean(0))
    return torch.stack(rows)


class LookaheadBatch(NamedTuple):
    """One task's transitions for the TAG lookahead. N = transitions.

    Attributes:
        obs: [N, obs_dim] observations.
        actions: [N] (discrete) or [N, A] actions.
        advantages: [N] advantages, used as given (see :func:`tag_lookahead` on centring).
        logp_old: [N] log π_old(a|s) of the policy that collected them.
    """

    obs: Tensor
    actions: Tensor
    advantages: Tensor
    logp_old: Tensor


def ppo_surrogate_loss(
    actor: Actor, params: dict[str, Tensor], batch: LookaheadBatch, clip_coef: float = 0.2
) -> Tensor:
    """PPO clipped surrogate loss mean_t max(−Â_t r_t, −Â_t clip(r_t, 1 ± ε)), r_t = π_θ/π_old; pure in θ.

    The policy part of :func:`policygradex.rl.ppo.ppo_loss` (no value or entropy term): the loss of the
    actor's parameters θ, the ones PolicyGradEx and TAG look at.

    Args:
        actor: the architecture (its own parameters are ignored).
        params: θ as ``{name: tensor}``.
        batch: one task's transitions.
        clip_coef: ε.

    Returns:
        The scalar loss [].
    """
    ratio = torch.exp(log_prob(actor, params, batch.obs, batch.actions) - batch.logp_old)
    adv = batch.advantages
    return torch.max(-adv * ratio, -adv * ratio.clamp(1 - clip_coef, 1 + clip_coef)).mean()


def tag_lookahead(
    actor: Actor,
    params: dict[str, Tensor],
    batches: Sequence[LookaheadBatch],
    lr: float,
    clip_coef: float = 0.2,
    relative: bool = True,
    eps: float = 1e-5,
) -> Tensor:
    """TAG's lookahead inter-task affinity (Fifty et al. 2021) with the PPO surrogate loss.

    Z_{i→j} = (L_j(θ) − L_j(θ − η∇L_i(θ))) / |L_j(θ)|: the relative drop of task j's loss after one SGD
    step on task i's loss. Where L_j(θ) > 0 this is TAG's 1 − L_j(θ − η∇L_i)/L_j(θ). The PPO surrogate
    loss, unlike TAG's supervised losses, is often negative (at θ = θ_old it equals −mean Â_j); the
    absolute value keeps the meaning "positive: the step on i lowered j's loss" in both cases, where the
    plain ratio would flip its sign with the sign of L_j. With advantages centred per task,
    L_j(θ_old) = 0 and the ratio is undefined: entries with |L_j(θ)| ≤ ``eps``·mean_t |Â_t| of task j are
    NaN (:func:`tag_affinity` skips them). Near that point the ratio is large and noisy whatever the
    guard; ``relative=False`` returns the plain drop L_j(θ) − L_j(θ − η∇L_i), defined everywhere.

    The lookahead is one plain SGD step on the actor's parameters; entropy and value terms are left out.

    Args:
        actor: the actor architecture (see :mod:`policygradex.rl.policy`).
        params: θ, the actor's parameters at the current training step (not modified).
        batches: one :class:`LookaheadBatch` per task, n in all.
        lr: η, the lookahead step size (TAG: the learning rate of the training step).
        clip_coef: PPO's ε.
        relative: divide the drop by |L_j(θ)| (TAG); False: the plain drop.
        eps: with ``relative``, Z_{i→j} is NaN where |L_j(θ)| ≤ eps · mean_t |Â_t| of task j.

    Returns:
        Z, shape ``[n, n]`` float64, row i the task stepped on, column j the task measured.

    Raises:
        ConfigError: no batches, or η ≤ 0.
    """
    if not batches:
        raise ConfigError("no task batches given; pass one LookaheadBatch per task.")
    if not lr > 0:
        raise ConfigError(f"lr={lr} must be positive (the lookahead step size η).")
    theta = {k: v.detach() for k, v in params.items()}
    n = len(batches)

    def loss(p: dict[str, Tensor], j: int) -> Tensor:
        return ppo_surrogate_loss(actor, p, batches[j], clip_coef)

    with torch.no_grad():
        base = torch.stack([loss(theta, j) for j in range(n)]).double()  # [n]
    scale = torch.stack([b.advantages.abs().mean() for b in batches]).double()  # [n]
    defined = base.abs() > eps * scale if relative else torch.ones(n, dtype=torch.bool)
    denom = base.abs() if relative else torch.ones(n, dtype=torch.float64)
    z = torch.full((n, n), float("nan"), dtype=torch.float64)
    for i in range(n):
        g = grad(loss)(theta, i)
        stepped = {k: theta[k] - lr * g[k] for k in theta}
        with torch.no_grad():
            after = torch.stack([loss(stepped, j) for j in range(n)]).double()
        z[i, defined] = (base[defined] - after[defined]) / denom[defined]
    return z


def tag_affinity(lookaheads: Sequence[Tensor | np.ndarray], zero_diagonal: bool = True) -> np.ndarray:
    """Average TAG lookahead matrices collected over training into a symmetric affinity.

    Z̄_{i→j} is the mean over the collected matrices of their defined (non-NaN) entries; the affinity
    is U = (Z̄ + Z̄ᵀ)/2, with a zero diagonal (as the ``"task"`` affinity: a task's affinity with
    itself says nothing about grouping), ready for :mod:`policygradex.grouping.cluster`.

    Args:
        lookaheads: T matrices Z of shape ``[n, n]`` from :func:`tag_lookahead`.
        zero_diagonal: set U_ii = 0 (else U_ii = Z̄_{i→i}).

    Returns:
        U, shape ``[n, n]`` float64, symmetric.

    Raises:
        ConfigError: no matrices, mismatched shapes, or an entry never defined.
    """
    if len(lookaheads) == 0:
        raise ConfigError("no lookahead matrices given; collect at least one with tag_lookahead.")
    stack = np.stack([np.asarray(z, dtype=np.float64) for z in lookaheads])
    if stack.ndim != 3 or stack.shape[1] != stack.shape[2]:
        raise ConfigError(
            f"lookahead matrices have shape {stack.shape[1:]}; pass square [n, n] matrices of one n."
        )
    defined = np.isfinite(stack)
    counts = defined.sum(0)
    if (counts == 0).any():
        i, j = (int(v) for v in np.argwhere(counts == 0)[0])
        raise ConfigError(
            f"Z[{i}, {j}] is undefined in every matrix (task {j}'s loss was 0); "
            "collect more steps or use raw advantages."
        )
    mean = np.where(defined, stack, 0.0).sum(0) / counts
    u = 0.5 * (mean + mean.T)
    if zero_diagonal:
        np.fill_diagonal(u, 0.0)
    return u
