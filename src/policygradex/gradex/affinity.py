"""Task affinity from subset scores (paper §2.6).

Scores come as a dense table ``scores[l, i] = f(S_l, i)`` of shape ``[m, n]`` with NaN where task i is
not in S_l, and ``membership[l, i]`` saying whether it is. Two ways to turn them into U:

- ``"aggregate"`` (paper): f(S) = mean_{i∈S} f(S, i); U_ij = mean of f(S_l) over the subsets holding
  both i and j, and U_ii the mean over the subsets holding i.
- ``"task"`` (the lab's earlier work): z-score f(S, i) per target task i over the subsets holding i
  (population std; a task whose scores never vary gets zeros), T_ij = mean over the subsets holding i
  and j of z(S, i), U = (T + Tᵀ)/2 with a zero diagonal.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from policygradex.errors import ConfigError

AffinityMode = Literal["aggregate", "task"]


def _check(scores: np.ndarray, membership: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    held = np.asarray(membership)
    if scores.ndim != 2 or held.shape != scores.shape:
        raise ConfigError(
            f"scores have shape {scores.shape} and membership {held.shape}; pass two arrays of shape [m, n]."
        )
    if held.dtype != np.bool_:
        raise ConfigError(
            f"membership has dtype {held.dtype}; pass a bool array (True where task i is in S_l)."
        )
    bad = np.argwhere(held & ~np.isfinite(scores))
    if len(bad):
        row, i = (int(v) for v in bad[0])
        raise ConfigError(
            f"score f(S_{row}, {i}) is {scores[row, i]} although task {i} is in subset {row}; "
            "re-evaluate that subset or drop it from the table."
        )
    return np.where(held, scores, 0.0), held


def _pair_coverage(held: np.ndarray) -> np.ndarray:
    counts = held.T.astype(np.int64) @ held.astype(np.int64)
    missing = np.argwhere(counts == 0)
    if len(missing):
        i, j = (int(v) for v in missing[0])
        what = f"task {i} is in no subset" if i == j else f"task pair ({i}, {j}) is held by no subset"
        raise ConfigError(
            f"{what}, so its affinity is undefined; sample subsets with min_coverage >= 1 "
            "(sample_subsets guarantees every pair is covered) or raise m."
        )
    return counts


def subset_scores(scores: np.ndarray, membership: np.ndarray) -> np.ndarray:
    """Aggregate score f(S_l) = mean_{i∈S_l} f(S_l, i).

    Args:
        scores: f(S_l, i), shape ``[m, n]`` (ignored where ``membership`` is False).
        membership: shape ``[m, n]`` bool.

    Returns:
        Shape ``[m]``; NaN for a subset with no tasks.

    Raises:
        ConfigError: on mismatched shapes or a non-finite score of a member task.
    """
    values, held = _check(scores, membership)
    size = held.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(size > 0, values.sum(1) / np.maximum(size, 1), np.nan)


def task_zscores(scores: np.ndarray, membership: np.ndarray) -> np.ndarray:
    """Per-target-task z-scores z(S_l, i) over the subsets holding i (population std; std 0 → 0).

    Args:
        scores: f(S_l, i), shape ``[m, n]`` (ignored where ``membership`` is False).
        membership: shape ``[m, n]`` bool.

    Returns:
        Shape ``[m, n]``, 0 where task i is not in S_l.

    Raises:
        ConfigError: on mismatched shapes or a non-finite score of a member task.
    """
    values, held = _check(scores, membership)
    count = np.maximum(held.sum(0), 1)  # [n]
    mean = values.sum(0) / count
    centred = np.where(held, values - mean, 0.0)
    std = np.sqrt((centred**2).sum(0) / count)
    # A task whose score is the same in every subset carries no affinity signal: zeros, not 0/0.
    scale = np.where(std > 1e-12 * np.maximum(np.abs(mean), 1.0), std, np.inf)
    return centred / scale


def affinity(
    scores: np.ndarray, membership: np.ndarray, mode: AffinityMode = "aggregate"
) -> tuple[np.ndarray, np.ndarray]:
    """Task-affinity matrix U and pair coverage from subset scores.

    Args:
        scores: f(S_l, i), shape ``[m, n]``, NaN (or anything) where task i is not in S_l.
        membership: shape ``[m, n]`` bool, True where task i is in S_l.
        mode: ``"aggregate"`` (paper: mean of f(S) over subsets holding i and j) or ``"task"``
            (per-target-task z-scores, symmetrised, zero diagonal).

    Returns:
        ``(U, coverage)``: U float64 of shape ``[n, n]``, symmetric; coverage int64 of shape ``[n, n]``
        counting the subsets holding both i and j (diagonal: holding i).

    Raises:
        ConfigError: on mismatched shapes, a non-finite score of a member task, an unknown mode,
            or a pair of tasks no subset holds (impossible after ``sample_subsets`` with
            ``min_coverage >= 1``).
    """
    if mode not in ("aggregate", "task"):
        raise ConfigError(f"affinity mode={mode!r} is unknown; use 'aggregate' or 'task'.")
    values, held = _check(scores, membership)
    counts = _pair_coverage(held)
    weights = held.astype(np.float64)
    if mode == "aggregate":
        f = np.nan_to_num(subset_scores(values, held))  # empty subsets hold no pair: their value is unused
        sums = weights.T @ (f[:, None] * weights)  # Σ_l [i∈S_l][j∈S_l] f(S_l)
        return sums / counts, counts
    z = task_zscores(values, held)
    target = z.T @ weights  # T_ij numerator: Σ_l z(S_l, i)·[j∈S_l]
    t = target / counts
    u = 0.5 * (t + t.T)
    np.fill_diagonal(u, 0.0)
    return u, counts
