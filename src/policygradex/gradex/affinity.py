"""Task affinity from subset scores (paper §2.6).

Scores come as a dense table ``scores[l, i] = f(S_l, i)`` of shape ``[m, n]`` with NaN where task i is
not in S_l, and ``membership[l, i]`` saying whether it is. Two ways to turn them into U:

- ``"aggregate"`` (paper): f(S) = mean_{i∈S} f(S, i); U_ij = mean of f(S_l) over the subsets holding
  both i and j, and U_ii the mean over the subsets holding i.
- ``"task"`` (the lab's earlier work): z-score f(S, i) per target task i over the subsets holding i
  (population std; a task whose scores never vary gets zeros), T_ij = mean over the subsets holding i
  and j of z(S, i), U = (T + Tᵀ)/2 with a zero diagonal.
- ``"regression"`` (task modeling, the lab's earlier work; issue 12): per target task i, fit
  f(S, i) = b_i + Σ_{j∈S∖{i}} a_ij by ridge least squares over the subsets holding i, and take
  U = (A + Aᵀ)/2 with a zero diagonal. Unlike ``"task"``, a_ij is the effect of j *given the other
  members* of S, so a strong partner does not lift the affinity of everyone it shares subsets with.

:func:`no_signal_tasks` flags the tasks whose scores do not vary across subsets beyond evaluation
noise (issue 12, item 5): their affinity rows are noise whatever the mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

from policygradex.errors import ConfigError

AffinityMode = Literal["aggregate", "task", "regression"]
DEFAULT_RIDGE = 1.0


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


@dataclass(frozen=True)
class TaskModel:
    """Fitted task model f(S, i) ≈ intercept_i + scale_i · Σ_{j∈S∖{i}} coef_ij (see :func:`task_model`).

    Attributes:
        coef: ``[n, n]`` a_ij in units of task i's scale (row i: target task i; zero diagonal).
        intercept: ``[n]`` b_i in the units of the scores (the fitted score of task i alone); NaN for a
            task in no subset.
        scale: ``[n]`` the per-task divisor applied to the target before the fit (1 without
            standardisation; 0 for a task whose scores never vary or that is in no subset: its row is zero).
    """

    coef: np.ndarray
    intercept: np.ndarray
    scale: np.ndarray


def task_model(
    scores: np.ndarray,
    membership: np.ndarray,
    ridge: float = DEFAULT_RIDGE,
    standardize: bool = True,
    noise: float | np.ndarray = 0.0,
) -> TaskModel:
    """Ridge fit of f(S_l, i) = b_i + Σ_{j∈S_l∖{i}} a_ij per target task i (issue 12, item 2).

    For task i the rows are the subsets holding i and the design has one 0/1 column per other task j
    (whether j is in S_l). The intercept is not penalised (columns and target are centred first); the
    ridge term λ‖a_i‖² is. Scores of subsets drawn more than once enter once per draw.

    Scale (our choice; the paper is silent): with ``standardize`` the target of task i is
    (f(S, i) − mean_i) / max(std_i, noise_i), std over the subsets holding i (population). Raw scores
    differ by orders of magnitude between tasks (evidence.md: a spread of 14–28 on solved cartpole tasks
    against 0.3–1.0 on failing ones); unscaled, the same λ would shrink the small-spread rows to nothing
    and the large-spread rows not at all, and the symmetrised affinity would be the large rows alone.
    Standardised, λ means the same for every task and a_ij reads "score standard deviations of task i
    gained when j joins". ``noise`` is a floor on the divisor: a task whose spread is only evaluation
    noise is not blown up to unit variance (evidence.md, point 3); 0 reproduces plain z-scoring.

    Args:
        scores: f(S_l, i), shape ``[m, n]`` (ignored where ``membership`` is False).
        membership: shape ``[m, n]`` bool.
        ridge: λ ≥ 0. With λ = 0 the minimum-norm least-squares solution is returned (exact when the
            design of task i has full column rank and the scores follow the model).
        standardize: divide each task's target by its scale (above) before the fit.
        noise: scalar or ``[n]`` floor on each task's scale, in score units (e.g. the standard error of
            an evaluation); used only when ``standardize``.

    Returns:
        A :class:`TaskModel`.

    Raises:
        ConfigError: on mismatched shapes, a non-finite score of a member task, λ < 0 or a negative
            noise level.
    """
    values, held = _check(scores, membership)
    if not ridge >= 0:
        raise ConfigError(f"ridge={ridge} must be non-negative (e.g. 1.0; 0 for plain least squares).")
    m, n = values.shape
    floor = np.broadcast_to(np.asarray(noise, dtype=np.float64), (n,))
    if not (np.isfinite(floor).all() and (floor >= 0).all()):
        raise ConfigError(
            f"noise={noise} must be non-negative and finite (a standard deviation in score units)."
        )
    coef = np.zeros((n, n))
    intercept = np.zeros(n)
    scale = np.zeros(n)
    for i in range(n):
        rows = np.flatnonzero(held[:, i])
        if len(rows) == 0:
            intercept[i] = np.nan
            continue
        y = values[rows, i]
        mean = y.mean()
        std = y.std()
        s = max(std, float(floor[i])) if standardize else 1.0
        # A task whose scores never vary carries no signal: a zero row, not 0/0 (as task_zscores).
        if std <= 1e-12 * max(abs(mean), 1.0):
            intercept[i] = mean
            continue
        others = np.array([j for j in range(n) if j != i])
        x = held[np.ix_(rows, others)].astype(np.float64)
        x_mean = x.mean(0)
        xc = x - x_mean
        yc = (y - mean) / s
        # Ridge as an augmented least-squares problem: stable, and the minimum-norm solution at λ = 0.
        design = np.vstack([xc, np.sqrt(ridge) * np.eye(len(others))])
        target = np.concatenate([yc, np.zeros(len(others))])
        a = np.linalg.lstsq(design, target, rcond=None)[0]
        coef[i, others] = a
        intercept[i] = mean - s * float(x_mean @ a)
        scale[i] = s
    return TaskModel(coef=coef, intercept=intercept, scale=scale)


@dataclass(frozen=True)
class SignalCheck:
    """Which tasks' scores carry no signal across subsets (see :func:`no_signal_tasks`).

    Attributes:
        flagged: ``[n]`` bool, True for a task without signal.
        spread: ``[n]`` sample standard deviation (ddof 1) of the task's score over distinct subsets.
        threshold: ``[n]`` the largest spread that is still flagged.
        distinct: ``[n]`` number of distinct subsets holding the task.
    """

    flagged: np.ndarray
    spread: np.ndarray
    threshold: np.ndarray
    distinct: np.ndarray

    @property
    def tasks(self) -> list[int]:
        """Indices of the flagged tasks."""
        return [int(i) for i in np.flatnonzero(self.flagged)]


def no_signal_tasks(
    scores: np.ndarray,
    membership: np.ndarray,
    noise: float | np.ndarray = 0.0,
    alpha: float = 0.05,
    rel_tol: float = 1e-9,
) -> SignalCheck:
    """Flag the tasks whose scores do not vary across subsets beyond evaluation noise (issue 12, item 5).

    Rule. Subsets drawn more than once are merged first (their scores averaged; with common random
    numbers or surrogate scores they are identical), leaving m_i distinct subsets for task i with
    sample standard deviation s_i of f(S, i). Task i is flagged when

    * m_i < 2 (no variation can be seen), or
    * s_i ≤ rel_tol · max(|mean_i|, 1) (constant scores: e.g. every episode at the return floor), or
    * s_i² ≤ σ_i² · χ²_{1−α}(m_i − 1) / (m_i − 1), σ_i = ``noise``: the one-sided χ² test of
      "the scores are one value plus independent evaluation noise of std σ_i" does not reject at level
      α, i.e. the spread is not significantly larger than re-evaluating the same policy would give.

    With ``noise = 0`` only the first two apply. σ_i should be the noise of the *differences* between
    subsets, not of a score's level: with common random numbers (rollouts) or shared transitions
    (rollout-free scores) the errors of one task's subsets are positively correlated, so the level's
    error overstates the noise and flags tasks that do carry signal. For rollouts, estimate it by
    re-scoring under another evaluation seed (the std over subsets of the change in the task-centred
    scores, divided by √2); for the linear objective change, by
    :func:`policygradex.gradex.scores.objective_change_stderr` (``centred=True``). Scores of merged
    duplicates have less noise than σ_i, which errs towards flagging.

    Args:
        scores: f(S_l, i), shape ``[m, n]`` (ignored where ``membership`` is False).
        membership: shape ``[m, n]`` bool.
        noise: scalar or ``[n]`` standard deviation of one score's evaluation error across subsets, in
            score units (see above).
        alpha: level of the χ² test, in (0, 1).
        rel_tol: relative tolerance for "constant".

    Returns:
        A :class:`SignalCheck`.

    Raises:
        ConfigError: on mismatched shapes, a non-finite score of a member task, a negative noise level or
            α outside (0, 1).
    """
    values, held = _check(scores, membership)
    n = values.shape[1]
    sigma = np.broadcast_to(np.asarray(noise, dtype=np.float64), (n,))
    if not (np.isfinite(sigma).all() and (sigma >= 0).all()):
        raise ConfigError(
            f"noise={noise} must be non-negative and finite (a standard deviation in score units)."
        )
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha={alpha} must lie in (0, 1), e.g. 0.05.")
    _, group = np.unique(held, axis=0, return_inverse=True)
    group = np.asarray(group).reshape(-1)
    flagged = np.zeros(n, dtype=bool)
    spread = np.zeros(n)
    threshold = np.zeros(n)
    distinct = np.zeros(n, dtype=np.int64)
    for i in range(n):
        rows = np.flatnonzero(held[:, i])
        ids = group[rows]
        uniq = np.unique(ids)
        merged = np.array([values[rows[ids == u], i].mean() for u in uniq])
        distinct[i] = len(merged)
        if len(merged) < 2:
            spread[i], threshold[i], flagged[i] = 0.0, np.inf, True
            continue
        spread[i] = merged.std(ddof=1)
        dof = len(merged) - 1
        const = rel_tol * max(abs(float(merged.mean())), 1.0)
        chi = sigma[i] * np.sqrt(stats.chi2.ppf(1 - alpha, dof) / dof)
        threshold[i] = max(const, chi)
        flagged[i] = spread[i] <= threshold[i]
    return SignalCheck(flagged=flagged, spread=spread, threshold=threshold, distinct=distinct)


def affinity(
    scores: np.ndarray,
    membership: np.ndarray,
    mode: AffinityMode = "aggregate",
    *,
    ridge: float = DEFAULT_RIDGE,
    noise: float | np.ndarray = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Task-affinity matrix U and pair coverage from subset scores.

    Args:
        scores: f(S_l, i), shape ``[m, n]``, NaN (or anything) where task i is not in S_l.
        membership: shape ``[m, n]`` bool, True where task i is in S_l.
        mode: ``"aggregate"`` (paper: mean of f(S) over subsets holding i and j), ``"task"``
            (per-target-task z-scores, symmetrised, zero diagonal) or ``"regression"`` (the fitted a_ij
            of :func:`task_model` on standardised targets, symmetrised, zero diagonal).
        ridge: λ of the ``"regression"`` fit (ignored by the other modes).
        noise: floor on each task's scale in the ``"regression"`` fit, in score units (ignored by the
            other modes); see :func:`task_model`.

    Returns:
        ``(U, coverage)``: U float64 of shape ``[n, n]``, symmetric; coverage int64 of shape ``[n, n]``
        counting the subsets holding both i and j (diagonal: holding i).

    Raises:
        ConfigError: on mismatched shapes, a non-finite score of a member task, an unknown mode,
            or a pair of tasks no subset holds (impossible after ``sample_subsets`` with
            ``min_coverage >= 1``), or a negative ``ridge`` or ``noise`` in ``"regression"`` mode.
    """
    if mode not in ("aggregate", "task", "regression"):
        raise ConfigError(f"affinity mode={mode!r} is unknown; use 'aggregate', 'task' or 'regression'.")
    values, held = _check(scores, membership)
    counts = _pair_coverage(held)
    if mode == "regression":
        a = task_model(values, held, ridge=ridge, standardize=True, noise=noise).coef
        u = 0.5 * (a + a.T)
        np.fill_diagonal(u, 0.0)
        return u, counts
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
