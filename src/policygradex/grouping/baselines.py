"""Grouping baselines the paper compares against (§4): random grouping and gradient-similarity grouping."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from policygradex.errors import ConfigError
from policygradex.grouping.cluster import canonical_partition


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
