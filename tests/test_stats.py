"""Statistics over seeds against scipy.stats, computed independently (issue 12, item 4)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from policygradex.analysis.stats import bootstrap_ci, mean_ci, paired_comparison
from policygradex.errors import ConfigError

VALUES = np.array([74.0, 21.0, 55.5, 60.2, 38.9])


def test_t_interval_by_hand_and_against_scipy() -> None:
    ci = mean_ci(VALUES)
    # t_{0.975, 4} = 2.7764451; sd (ddof 1) of VALUES = 20.3457…
    sd = math.sqrt(((VALUES - VALUES.mean()) ** 2).sum() / 4)
    assert ci.mean == pytest.approx(49.92)
    assert ci.half_width == pytest.approx(2.7764451 * sd / math.sqrt(5), rel=1e-7)
    ref = stats.ttest_1samp(VALUES, 0.0).confidence_interval(0.95)
    assert (ci.low, ci.high) == pytest.approx((ref.low, ref.high), rel=1e-12)
    ref90 = stats.ttest_1samp(VALUES, 0.0).confidence_interval(0.90)
    ci90 = mean_ci(VALUES, 0.90)
    assert (ci90.low, ci90.high) == pytest.approx((ref90.low, ref90.high), rel=1e-12)
    assert ci.n == 5 and ci.confidence == 0.95
    # Degenerate inputs: one seed has no interval; equal values have zero width.
    one = mean_ci([3.0])
    assert one.mean == 3.0 and math.isnan(one.low) and math.isnan(one.high)
    same = mean_ci([2.0, 2.0, 2.0])
    assert (same.low, same.high) == (2.0, 2.0)


def test_percentile_bootstrap_against_scipy() -> None:
    rng = np.random.default_rng(1)
    x = rng.exponential(10.0, 12)
    ours = bootstrap_ci(x, resamples=20_000, seed=3)
    ref = stats.bootstrap(
        (x,), np.mean, confidence_level=0.95, n_resamples=20_000, method="percentile", rng=7
    )
    ci = ref.confidence_interval
    width = ci.high - ci.low
    # Two independent Monte-Carlo estimates of the same quantiles agree to a few percent of the width.
    assert abs(ours.low - ci.low) < 0.05 * width and abs(ours.high - ci.high) < 0.05 * width
    assert ours.mean == pytest.approx(x.mean())
    # Seeded: the same seed gives the same interval, another seed a slightly different one.
    assert bootstrap_ci(x, resamples=20_000, seed=3) == ours
    assert bootstrap_ci(x, resamples=20_000, seed=4).low != ours.low
    # Percentile bounds lie inside the range of the values, and are exact for a two-point case:
    # the resampled mean of [0, 1] with 2 draws is 0 (p=1/4), 0.5 (1/2) or 1 (1/4).
    two = bootstrap_ci([0.0, 1.0], confidence=0.4, resamples=40_000, seed=0)
    assert (two.low, two.high) == (0.5, 0.5)
    with pytest.raises(ConfigError, match="resamples=0"):
        bootstrap_ci(x, resamples=0)


def test_paired_comparison_against_scipy() -> None:
    a = np.array([153.5, 140.1, 160.0, 149.9, 158.2, 149.0])
    b = np.array([140.0, 141.0, 150.5, 135.2, 150.0, 149.0])
    cmp = paired_comparison(a, b)
    ref = stats.ttest_rel(a, b)
    ref_ci = ref.confidence_interval(0.95)
    assert cmp.diff.mean == pytest.approx((a - b).mean())
    assert (cmp.diff.low, cmp.diff.high) == pytest.approx((ref_ci.low, ref_ci.high), rel=1e-12)
    assert cmp.p_value == pytest.approx(ref.pvalue, rel=1e-10)
    assert cmp.wins == pytest.approx(4 / 6) and cmp.ties == pytest.approx(1 / 6)
    # Antisymmetric: B against A.
    back = paired_comparison(b, a)
    assert back.diff.mean == pytest.approx(-cmp.diff.mean) and back.wins == pytest.approx(1 / 6)
    assert back.p_value == pytest.approx(cmp.p_value)
    # The bootstrap variant is the percentile bootstrap of the differences.
    boot = paired_comparison(a, b, method="bootstrap", resamples=5000, seed=2)
    assert boot.diff == bootstrap_ci(a - b, resamples=5000, seed=2)
    # Paired beats unpaired when the seeds share variance: a shared seed effect cancels.
    shared = np.array([0.0, 50.0, -40.0, 20.0, -30.0, 10.0])
    paired = paired_comparison(a + shared, b + shared)
    assert paired.diff.half_width == pytest.approx(cmp.diff.half_width)
    # A constant non-zero difference is certain; no difference at all is not.
    assert paired_comparison([2.0, 3.0], [1.0, 2.0]).p_value == 0.0
    assert paired_comparison([2.0, 3.0], [2.0, 3.0]).p_value == 1.0


def test_guards() -> None:
    with pytest.raises(ConfigError, match="same seeds"):
        paired_comparison([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ConfigError, match="NaN"):
        mean_ci([1.0, math.nan])
    with pytest.raises(ConfigError, match="shape"):
        mean_ci([])
    with pytest.raises(ConfigError, match="confidence=95"):
        mean_ci([1.0, 2.0], confidence=95)
    with pytest.raises(ConfigError, match="method='wilcoxon'"):
        paired_comparison([1.0, 2.0], [0.0, 1.0], method="wilcoxon")  # type: ignore[arg-type]
