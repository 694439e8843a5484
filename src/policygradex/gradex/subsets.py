"""Seeded random task subsets with a pair-coverage guarantee (paper §2.5).

Subset l draws its tasks and its own seed from ``np.random.SeedSequence([seed, l])`` alone, so it
never depends on the other subsets, on m, or on the order in which subsets are evaluated. If some
pair of tasks is held by fewer than ``min_coverage`` subsets, deterministic top-up subsets (seeded
the same way by their index) are appended, each holding a least-covered pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from policygradex.errors import ConfigError


@dataclass(frozen=True)
class Subset:
    """One task subset S_l.

    Attributes:
        index: position l in the list of subsets (also what seeds it).
        tasks: the task indices, sorted and distinct.
        seed: the subset's own seed, for anything random done on its behalf (e.g. evaluation rollouts).
    """

    index: int
    tasks: tuple[int, ...]
    seed: int


def _rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, index]))


def _own_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))


def default_num_subsets(n: int) -> int:
    """Default number of subsets m = max(50, 2·n²).

    Why: a subset of size k holds a given pair with probability q = k(k−1)/(n(n−1)), so m = 2n² gives
    each pair about 2k(k−1)·n/(n−1) subsets on average, independent of n (≈ 13 for k = 3, 27 for
    k = 4 when n = 10), and the chance that some pair is missed, (n²/2)·(1−q)^m ≈ (n²/2)·e^{−2k(k−1)},
    stays below 1% for k ≥ 3 up to n ≈ 50 (the top-up in :func:`sample_subsets` covers the rest).
    For n = 10 this is 200, the upper end of the 100–200 subsets of size 3–5 suggested for the paper's
    families (paper §2.5: m = O(n²)); the floor of 50 keeps tiny families from averaging too few scores.

    Args:
        n: number of tasks (≥ 2).

    Returns:
        The default m.

    Raises:
        ConfigError: if n < 2.
    """
    if n < 2:
        raise ConfigError(f"n={n} tasks cannot be grouped; a task family needs at least 2 tasks.")
    return max(50, 2 * n * n)


def sample_subsets(
    n: int,
    m: int,
    size: int,
    seed: int,
    min_coverage: int = 1,
    max_extra: int | None = None,
) -> list[Subset]:
    """Sample m seeded subsets of ``size`` tasks, topped up until every pair is covered.

    Args:
        n: number of tasks.
        m: number of random subsets.
        size: tasks per subset, 2 ≤ size ≤ n.
        seed: non-negative base seed; subset l uses ``SeedSequence([seed, l])``.
        min_coverage: every pair i < j must be held by at least this many subsets.
        max_extra: most top-up subsets to append (default m).

    Returns:
        The subsets, indices 0..m−1 random, then any top-ups with indices m, m+1, ...

    Raises:
        ConfigError: on invalid arguments, or if ``max_extra`` top-ups do not reach ``min_coverage``.
    """
    if n < 2:
        raise ConfigError(f"n={n} tasks cannot be grouped; a task family needs at least 2 tasks.")
    if not 2 <= size <= n:
        raise ConfigError(f"subset size={size} must be between 2 and n={n}; 3–5 suits n = 10.")
    if m < 1:
        raise ConfigError(
            f"m={m} subsets is too few; use at least 1 (default_num_subsets(n) suggests {2 * n * n})."
        )
    if seed < 0:
        raise ConfigError(f"seed={seed} must be non-negative.")
    if min_coverage < 0:
        raise ConfigError(f"min_coverage={min_coverage} must be non-negative.")
    if max_extra is None:
        max_extra = m
    if max_extra < 0:
        raise ConfigError(f"max_extra={max_extra} must be non-negative.")

    subsets: list[Subset] = []
    for index in range(m):
        rng = _rng(seed, index)
        tasks = tuple(sorted(int(t) for t in rng.choice(n, size=size, replace=False)))
        subsets.append(Subset(index=index, tasks=tasks, seed=_own_seed(rng)))

    counts = coverage(subsets, n)
    upper = np.triu_indices(n, k=1)
    for extra in range(max_extra + 1):
        pair_counts = counts[upper]
        lowest = int(pair_counts.min())
        if lowest >= min_coverage:
            return subsets
        # The first least-covered pair in (i, j) order: deterministic given the subsets so far.
        at = int(np.argmin(pair_counts))
        i, j = int(upper[0][at]), int(upper[1][at])
        if extra == max_extra:
            raise ConfigError(
                f"task pair ({i}, {j}) is held by {lowest} subsets, fewer than min_coverage={min_coverage}, "
                f"after {max_extra} top-up subsets; raise m (now {m}) or size (now {size}), or max_extra."
            )
        index = m + extra
        rng = _rng(seed, index)
        others = np.setdiff1d(np.arange(n), [i, j])
        picked = rng.choice(others, size=size - 2, replace=False) if size > 2 else np.empty(0, dtype=int)
        tasks = tuple(sorted([i, j, *(int(t) for t in picked)]))
        subset = Subset(index=index, tasks=tasks, seed=_own_seed(rng))
        subsets.append(subset)
        held = np.array(tasks)
        counts[np.ix_(held, held)] += 1
    raise AssertionError("unreachable")  # pragma: no cover


def task_lists(subsets: Sequence[Subset] | Sequence[Sequence[int]], n: int) -> list[tuple[int, ...]]:
    """Validate subsets and return each as a sorted tuple of task indices.

    Raises:
        ConfigError: no subsets, an empty subset, a task outside [0, n), or a repeated task.
    """
    if len(subsets) == 0:
        raise ConfigError("subsets is empty; pass at least one subset of task indices.")
    out = []
    for position, subset in enumerate(subsets):
        members: Sequence[int] = subset.tasks if isinstance(subset, Subset) else subset  # type: ignore[assignment]
        tasks = tuple(int(t) for t in members)
        if not tasks:
            raise ConfigError(f"subset {position} is empty; every subset needs at least one task.")
        bad = [t for t in tasks if not 0 <= t < n]
        if bad:
            raise ConfigError(
                f"subset {position} holds task {bad[0]}, outside [0, {n}); use indices of the {n} tasks."
            )
        if len(set(tasks)) != len(tasks):
            raise ConfigError(f"subset {position} = {list(tasks)} repeats a task; list each task once.")
        out.append(tuple(sorted(tasks)))
    return out


def membership(subsets: Sequence[Subset] | Sequence[Sequence[int]], n: int) -> np.ndarray:
    """Which tasks each subset holds.

    Args:
        subsets: m subsets (``Subset`` objects or sequences of task indices).
        n: number of tasks.

    Returns:
        Bool array of shape ``[m, n]``.

    Raises:
        ConfigError: on out-of-range or repeated task indices.
    """
    out = np.zeros((len(subsets), n), dtype=bool)
    for row, tasks in enumerate(task_lists(subsets, n)):
        out[row, list(tasks)] = True
    return out


def coverage(subsets: Sequence[Subset] | Sequence[Sequence[int]], n: int) -> np.ndarray:
    """How many subsets hold each pair of tasks.

    Args:
        subsets: m subsets (``Subset`` objects or sequences of task indices).
        n: number of tasks.

    Returns:
        Int array of shape ``[n, n]``: entry (i, j) counts subsets holding both i and j; the
        diagonal counts subsets holding i.

    Raises:
        ConfigError: on out-of-range or repeated task indices.
    """
    held = membership(subsets, n).astype(np.int64)
    return held.T @ held


def expected_pair_coverage(n: int, m: int, size: int) -> float:
    """Mean number of random subsets holding a given pair: m·size(size−1)/(n(n−1)).

    Args:
        n: number of tasks (≥ 2).
        m: number of subsets.
        size: tasks per subset.

    Returns:
        The expected coverage of every pair (before top-ups).
    """
    if n < 2:
        raise ConfigError(f"n={n} tasks cannot be grouped; a task family needs at least 2 tasks.")
    return m * size * (size - 1) / (n * (n - 1))


def first_occurrences(subsets: Sequence[Sequence[int]]) -> dict[tuple[int, ...], int]:
    """Each distinct subset (as a tuple) → the index of its first occurrence, in order of appearance.

    Equal subsets have equal fits and, with common random numbers, equal scores: callers score each
    distinct subset once.
    """
    first: dict[tuple[int, ...], int] = {}
    for index, s in enumerate(subsets):
        first.setdefault(tuple(s), index)
    return first
