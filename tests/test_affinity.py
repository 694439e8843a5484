from __future__ import annotations

import math

import numpy as np
import pytest

from policygradex.errors import ConfigError
from policygradex.gradex.affinity import affinity, subset_scores, task_zscores

NAN = math.nan
# Six subsets of four tasks, each pair held exactly once, each task in three subsets.
MEMBERS = [(0, 1), (2, 3), (0, 2), (1, 3), (0, 3), (1, 2)]
SCORES = np.array(
    [
        [1.0, 5.0, NAN, NAN],
        [NAN, NAN, 10.0, 0.0],
        [2.0, NAN, 30.0, NAN],
        [NAN, 5.0, NAN, 4.0],
        [3.0, NAN, NAN, 2.0],
        [NAN, 5.0, 20.0, NAN],
    ]
)
HELD = ~np.isnan(SCORES)


def test_membership_matches_table() -> None:
    for row, tasks in zip(HELD, MEMBERS, strict=True):
        assert set(np.flatnonzero(row)) == set(tasks)


def test_aggregate_mode_by_hand() -> None:
    # f(S) = mean of its tasks' scores: 3, 5, 16, 4.5, 2.5, 12.5.
    np.testing.assert_allclose(subset_scores(SCORES, HELD), [3, 5, 16, 4.5, 2.5, 12.5])
    u, cov = affinity(SCORES, HELD, "aggregate")
    expected = np.array(
        [
            [21.5 / 3, 3.0, 16.0, 2.5],
            [3.0, 20.0 / 3, 12.5, 4.5],
            [16.0, 12.5, 33.5 / 3, 5.0],
            [2.5, 4.5, 5.0, 4.0],
        ]
    )
    np.testing.assert_allclose(u, expected)
    np.testing.assert_array_equal(cov, np.ones((4, 4), dtype=int) + 2 * np.eye(4, dtype=int))


def test_task_mode_by_hand() -> None:
    # Task 0 scores 1, 2, 3 → z = −c, 0, c with c = sqrt(3/2); task 1 is constant → zeros;
    # task 2: 10, 30, 20 → −c, c, 0; task 3: 0, 4, 2 → −c, c, 0.
    c = math.sqrt(1.5)
    z = task_zscores(SCORES, HELD)
    np.testing.assert_allclose(z[:, 0], [-c, 0, 0, 0, c, 0], atol=1e-12)
    np.testing.assert_allclose(z[:, 1], 0.0, atol=1e-12)
    u, cov = affinity(SCORES, HELD, "task")
    expected = np.array(
        [
            [0.0, -c / 2, c / 2, c / 2],
            [-c / 2, 0.0, 0.0, c / 2],
            [c / 2, 0.0, 0.0, -c],
            [c / 2, c / 2, -c, 0.0],
        ]
    )
    np.testing.assert_allclose(u, expected, atol=1e-12)
    assert cov[0, 1] == 1


def test_repeated_subsets_average() -> None:
    # Doubling every subset (with shifted scores for the copy) doubles coverage and averages U.
    shifted = np.vstack([SCORES, SCORES + 2.0])
    held = np.vstack([HELD, HELD])
    u, cov = affinity(shifted, held, "aggregate")
    base, base_cov = affinity(SCORES, HELD, "aggregate")
    np.testing.assert_allclose(u, base + 1.0)
    np.testing.assert_array_equal(cov, 2 * base_cov)
    # Values outside the membership are ignored, NaN or not.
    filled = np.where(HELD, SCORES, 123.0)
    np.testing.assert_allclose(affinity(filled, HELD, "task")[0], affinity(SCORES, HELD, "task")[0])


def test_guards() -> None:
    with pytest.raises(ConfigError, match=r"task pair \(0, 1\) is held by no subset"):
        affinity(SCORES[1:], HELD[1:], "aggregate")
    with pytest.raises(ConfigError, match="no subset"):
        affinity(SCORES[1:], HELD[1:], "task")
    bad = SCORES.copy()
    bad[0, 0] = NAN
    with pytest.raises(ConfigError, match="f\\(S_0, 0\\)"):
        affinity(bad, HELD, "aggregate")
    with pytest.raises(ConfigError, match="shape"):
        affinity(SCORES, HELD[:, :3], "aggregate")
    with pytest.raises(ConfigError, match="bool"):
        affinity(SCORES, HELD.astype(int), "aggregate")
    with pytest.raises(ConfigError, match="mode"):
        affinity(SCORES, HELD, "mean")  # type: ignore[arg-type]
