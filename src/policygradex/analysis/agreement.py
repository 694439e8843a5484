"""Agreement between two score tables or two partitions: NMI (with a random-partition baseline) and
rank/linear correlations, overall and within task."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from policygradex.errors import ConfigError


def labels(groups: Sequence[Sequence[int]], n: int) -> np.ndarray:
    """Partition → label per task. [n] int.

    Raises:
        ConfigError: the partition does not cover all n tasks.
    """
    out = np.full(n, -1)
    for g, members in enumerate(groups):
        out[list(members)] = g
    if (out < 0).any():
        raise ConfigError(f"partition {groups} does not cover all {n} tasks")
    return out


def nmi(a: Sequence[Sequence[int]], b: Sequence[Sequence[int]], n: int) -> float:
    """Normalised mutual information of two partitions of n tasks (1 = identical up to relabelling)."""
    from sklearn.metrics import normalized_mutual_info_score

    return float(normalized_mutual_info_score(labels(a, n), labels(b, n)))


def random_nmi(truth: Sequence[Sequence[int]], n: int, k: int, seeds: int = 200) -> float:
    """Mean NMI of uniformly random partitions into k groups against ``truth``."""
    from policygradex.grouping.baselines import random_partition

    return float(np.mean([nmi(random_partition(n, k, s), truth, n) for s in range(seeds)]))


def centre_by_task(x: np.ndarray, task: np.ndarray) -> np.ndarray:
    """``x`` [N] with each task's mean removed (``task`` [N] gives each entry's task)."""
    out = x.astype(float).copy()
    for t in np.unique(task):
        out[task == t] -= out[task == t].mean()
    return out


def safe_correlation(fn: Callable[..., Any], a: np.ndarray, b: np.ndarray) -> float | None:
    """``fn(a, b)[0]`` (a scipy correlation), or None where it is undefined (a constant series)."""
    if np.std(a) == 0 or np.std(b) == 0:
        return None
    return float(fn(a, b)[0])


def score_agreement(est: np.ndarray, tru: np.ndarray, task: np.ndarray) -> dict[str, float | None]:
    """Spearman and Pearson correlation of two score series [N], and Spearman within task (each task's
    own level removed: estimate and truth share it trivially, and the affinity is made of the rest)."""
    from scipy.stats import pearsonr, spearmanr

    return {
        "spearman": safe_correlation(spearmanr, est, tru),
        "pearson": safe_correlation(pearsonr, est, tru),
        "spearman_within_task": safe_correlation(spearmanr, centre_by_task(est, task), centre_by_task(tru, task)),
    }
