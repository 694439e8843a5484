"""Statistics over seeds: means with 95% confidence intervals and paired comparisons (issue 12, item 4).

Each function takes one value per seed (shape ``[S]``): a task's return, or the mean over tasks, of one
method in S independent repetitions of the whole pipeline. Two intervals are offered:

* Student t (``mean_ci``): mean ± t_{1−α/2, S−1}·sd/√S. Exact for normal values; with 3–5 seeds it is
  the honest choice, because a bootstrap cannot see tails that 3–5 draws do not contain.
* percentile bootstrap (``bootstrap_ci``): quantiles α/2 and 1−α/2 of the means of ``resamples``
  resamples with replacement, from a seeded generator. Makes no normality assumption, but is too
  narrow for few seeds (with S = 3 it can never be wider than the range of the three values).

``paired_comparison`` compares two methods run on the *same* seeds (same θ*, same tasks): the per-seed
differences remove what the seeds share, which is most of the variance on LunarLander (issue 12).
With fewer than two values there is no interval: its bounds are NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

from policygradex.errors import ConfigError

IntervalMethod = Literal["t", "bootstrap"]
DEFAULT_RESAMPLES = 10_000


@dataclass(frozen=True)
class Interval:
    """A mean with its confidence interval.

    Attributes:
        mean: the sample mean.
        low, high: the interval's bounds (NaN with fewer than two values).
        n: number of values (seeds).
        confidence: the interval's level, e.g. 0.95.
    """

    mean: float
    low: float
    high: float
    n: int
    confidence: float

    @property
    def half_width(self) -> float:
        """(high − low) / 2 (for a t interval: the ± of mean ± half_width)."""
        return (self.high - self.low) / 2


@dataclass(frozen=True)
class PairedComparison:
    """Method A against method B on the same seeds.

    Attributes:
        diff: mean of the per-seed differences A − B, with its interval.
        wins: fraction of seeds where A > B.
        ties: fraction of seeds where A == B.
        p_value: two-sided paired t test of "mean difference 0" (NaN with fewer than two seeds; 0 or 1
            when every difference is the same: 0 if that difference is non-zero).
    """

    diff: Interval
    wins: float
    ties: float
    p_value: float


def _values(values: Sequence[float] | np.ndarray, name: str = "values") -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ConfigError(f"{name} has shape {x.shape}; pass one value per seed, shape [S] with S >= 1.")
    if not np.isfinite(x).all():
        raise ConfigError(f"{name} contains NaN or inf ({x.tolist()}); drop or rerun the failed seeds.")
    return x


def _check_confidence(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence={confidence} must lie in (0, 1), e.g. 0.95.")
    return float(confidence)


def mean_ci(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> Interval:
    """Mean with a Student-t confidence interval over seeds.

    Args:
        values: one value per seed, shape ``[S]``.
        confidence: level of the interval.

    Returns:
        mean ± t_{(1+confidence)/2, S−1} · sd / √S (sd with ddof 1); zero width if all values are equal.

    Raises:
        ConfigError: empty or non-finite values, or a level outside (0, 1).
    """
    x = _values(values)
    level = _check_confidence(confidence)
    mean = float(x.mean())
    if x.size < 2:
        return Interval(mean, np.nan, np.nan, 1, level)
    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return Interval(mean, mean - half, mean + half, int(x.size), level)


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """Mean with a percentile-bootstrap confidence interval over seeds.

    Args:
        values: one value per seed, shape ``[S]``.
        confidence: level of the interval.
        resamples: bootstrap resamples (each: S draws with replacement).
        seed: seeds ``numpy.random.default_rng``; the same seed gives the same interval.

    Returns:
        The sample mean and the (1−confidence)/2 and (1+confidence)/2 quantiles (linear interpolation)
        of the resampled means.

    Raises:
        ConfigError: empty or non-finite values, a level outside (0, 1) or ``resamples < 1``.
    """
    x = _values(values)
    level = _check_confidence(confidence)
    if resamples < 1:
        raise ConfigError(f"resamples={resamples} must be a positive number of bootstrap draws, e.g. 10000.")
    mean = float(x.mean())
    if x.size < 2:
        return Interval(mean, np.nan, np.nan, 1, level)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(1)
    low, high = np.quantile(means, [0.5 - level / 2, 0.5 + level / 2])
    return Interval(mean, float(low), float(high), int(x.size), level)


def paired_comparison(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    method: IntervalMethod = "t",
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> PairedComparison:
    """Compare methods A and B over the same seeds (value ``a[s]`` and ``b[s]`` come from seed s).

    Args:
        a, b: one value per seed each, shape ``[S]``, in the same seed order.
        confidence: level of the interval of the mean difference.
        method: ``"t"`` (Student t on the differences, the paired t interval) or ``"bootstrap"``
            (percentile bootstrap of the differences).
        resamples, seed: for ``"bootstrap"``.

    Returns:
        A :class:`PairedComparison` of A − B.

    Raises:
        ConfigError: shapes that differ, empty or non-finite values, or an unknown method.
    """
    x, y = _values(a, "a"), _values(b, "b")
    if x.shape != y.shape:
        raise ConfigError(
            f"a has {x.size} seeds and b has {y.size}; pass both methods' values on the same seeds."
        )
    if method not in ("t", "bootstrap"):
        raise ConfigError(f"method={method!r} is unknown; use 't' or 'bootstrap'.")
    d = x - y
    diff = mean_ci(d, confidence) if method == "t" else bootstrap_ci(d, confidence, resamples, seed)
    if d.size < 2:
        p = np.nan
    else:
        sd = d.std(ddof=1)
        if sd == 0:
            p = 0.0 if d[0] != 0 else 1.0
        else:
            t = d.mean() / (sd / np.sqrt(d.size))
            p = float(2 * stats.t.sf(abs(t), d.size - 1))
    wins, ties = float((d > 0).mean()), float((d == 0).mean())
    return PairedComparison(diff=diff, wins=wins, ties=ties, p_value=float(p))
