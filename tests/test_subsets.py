from __future__ import annotations

import numpy as np
import pytest

from policygradex.errors import ConfigError
from policygradex.gradex.subsets import (
    Subset,
    coverage,
    default_num_subsets,
    expected_pair_coverage,
    membership,
    sample_subsets,
)


def test_deterministic_and_well_formed() -> None:
    a = sample_subsets(10, 40, 4, seed=3)
    b = sample_subsets(10, 40, 4, seed=3)
    c = sample_subsets(10, 40, 4, seed=4)
    assert a == b
    assert a != c
    for position, subset in enumerate(a):
        assert subset.index == position
        assert len(subset.tasks) == 4 and list(subset.tasks) == sorted(set(subset.tasks))
        assert all(0 <= t < 10 for t in subset.tasks)
    assert len({s.seed for s in a}) == len(a)


def test_subset_does_not_depend_on_m() -> None:
    short = sample_subsets(8, 30, 3, seed=1, min_coverage=0)
    long = sample_subsets(8, 90, 3, seed=1, min_coverage=0)
    assert long[:30] == short


def test_coverage_on_hand_made_list() -> None:
    subsets = [(0, 1, 2), (1, 2), Subset(index=2, tasks=(0, 3), seed=0)]
    expected = np.array(
        [
            [2, 1, 1, 1],
            [1, 2, 2, 0],
            [1, 2, 2, 0],
            [1, 0, 0, 1],
        ]
    )
    np.testing.assert_array_equal(coverage(subsets, 4), expected)
    np.testing.assert_array_equal(
        membership(subsets, 4),
        [[True, True, True, False], [False, True, True, False], [True, False, False, True]],
    )
    with pytest.raises(ConfigError, match="outside"):
        coverage([(0, 4)], 4)
    with pytest.raises(ConfigError, match="repeats"):
        coverage([(1, 1)], 4)


def test_top_up_reaches_coverage() -> None:
    # 5 random pairs out of 45 cannot cover every pair; top-ups must.
    subsets = sample_subsets(10, 5, 2, seed=0, min_coverage=2, max_extra=200)
    counts = coverage(subsets, 10)
    assert counts[np.triu_indices(10, k=1)].min() >= 2
    assert len(subsets) > 5
    assert [s.index for s in subsets] == list(range(len(subsets)))
    # The random part is untouched and the whole list is reproducible.
    assert subsets[:5] == sample_subsets(10, 5, 2, seed=0, min_coverage=0)
    assert subsets == sample_subsets(10, 5, 2, seed=0, min_coverage=2, max_extra=200)


def test_guard_raises_when_coverage_is_impossible() -> None:
    with pytest.raises(ConfigError, match=r"task pair \(\d+, \d+\).*raise m"):
        sample_subsets(10, 5, 3, seed=0, min_coverage=1000, max_extra=0)
    with pytest.raises(ConfigError, match="raise m"):
        sample_subsets(10, 3, 2, seed=0, min_coverage=1, max_extra=10)


def test_invalid_arguments() -> None:
    for kwargs in (
        {"n": 5, "m": 10, "size": 1, "seed": 0},
        {"n": 5, "m": 10, "size": 6, "seed": 0},
        {"n": 5, "m": 0, "size": 2, "seed": 0},
        {"n": 5, "m": 10, "size": 2, "seed": 0, "min_coverage": -1},
        {"n": 5, "m": 10, "size": 2, "seed": -1},
        {"n": 1, "m": 10, "size": 1, "seed": 0},
    ):
        with pytest.raises(ConfigError):
            sample_subsets(**kwargs)


def test_default_num_subsets_covers_pairs() -> None:
    assert default_num_subsets(10) == 200
    assert default_num_subsets(3) == 50
    assert default_num_subsets(30) == 1800
    assert expected_pair_coverage(10, 200, 3) == pytest.approx(200 * 6 / 90)
    subsets = sample_subsets(10, default_num_subsets(10), 3, seed=0, min_coverage=1, max_extra=0)
    assert len(subsets) == 200
    with pytest.raises(ConfigError):
        default_num_subsets(1)
