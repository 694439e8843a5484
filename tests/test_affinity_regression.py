"""Task-modeling affinity (ridge fit of f(S, i) = b_i + Σ a_ij) and the no-signal check (issue 12)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from policygradex.errors import ConfigError
from policygradex.gradex.affinity import affinity, no_signal_tasks, task_model


def _all_subsets(n: int, sizes: tuple[int, ...]) -> np.ndarray:
    rows = [s for size in sizes for s in itertools.combinations(range(n), size)]
    held = np.zeros((len(rows), n), dtype=bool)
    for l, s in enumerate(rows):
        held[l, list(s)] = True
    return held


def _random_subsets(n: int, m: int, rng: np.random.Generator) -> np.ndarray:
    held = np.zeros((m, n), dtype=bool)
    for l in range(m):
        held[l, rng.choice(n, size=int(rng.integers(3, 6)), replace=False)] = True
    return held


def _planted_scores(held: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """f(S_l, i) = b_i + Σ_{j∈S_l, j≠i} a_ij for i ∈ S_l, NaN elsewhere."""
    x = held.astype(np.float64)
    f = b[None, :] + x @ a.T - x * np.diag(a)[None, :]
    return np.where(held, f, np.nan)


def _planted(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, n))
    np.fill_diagonal(a, 0.0)
    return a, rng.uniform(-5, 5, n)


def test_exact_recovery_without_noise() -> None:
    held = _all_subsets(6, (3, 4))  # 35 subsets; each task in 20, its 5 partner columns have full rank
    a, b = _planted(6, 0)
    scores = _planted_scores(held, a, b)
    raw = task_model(scores, held, ridge=0.0, standardize=False)
    np.testing.assert_allclose(raw.coef, a, atol=1e-10)
    np.testing.assert_allclose(raw.intercept, b, atol=1e-10)
    np.testing.assert_array_equal(raw.scale, np.ones(6))
    # Standardised: the same fit in units of each task's population std of its scores.
    std = task_model(scores, held, ridge=0.0, standardize=True)
    expected_scale = np.array([scores[held[:, i], i].std() for i in range(6)])
    np.testing.assert_allclose(std.scale, expected_scale)
    np.testing.assert_allclose(std.coef * std.scale[:, None], a, atol=1e-10)
    np.testing.assert_allclose(std.intercept, b, atol=1e-10)
    # The affinity is the symmetrised standardised coefficients with a zero diagonal.
    u, cov = affinity(scores, held, "regression", ridge=0.0)
    np.testing.assert_allclose(u, 0.5 * (std.coef + std.coef.T), atol=1e-12)
    assert np.all(np.diag(u) == 0) and cov[0, 0] == 20


def test_noisy_recovery_on_random_subsets() -> None:
    rng = np.random.default_rng(3)
    n = 10
    a, b = _planted(n, 1)
    held = _random_subsets(n, 200, rng)
    scores = _planted_scores(held, a, b) + 0.3 * rng.standard_normal(held.shape)
    fit = task_model(scores, held, ridge=1.0)
    off = ~np.eye(n, dtype=bool)
    assert np.corrcoef((fit.coef * fit.scale[:, None])[off], a[off])[0, 1] > 0.9
    u, _ = affinity(scores, held, "regression")
    upper = np.triu_indices(n, 1)
    assert np.corrcoef(u[upper], (0.5 * (a + a.T))[upper])[0, 1] > 0.85


def test_ridge_shrinks_and_guards() -> None:
    held = _all_subsets(6, (3,))
    a, b = _planted(6, 2)
    scores = _planted_scores(held, a, b)
    norms = [np.abs(task_model(scores, held, ridge=lam).coef).sum() for lam in (0.0, 1.0, 10.0, 1e6)]
    assert norms[0] > norms[1] > norms[2] > 1e3 * norms[3]
    with pytest.raises(ConfigError, match="ridge=-1"):
        task_model(scores, held, ridge=-1.0)
    with pytest.raises(ConfigError, match="noise"):
        task_model(scores, held, noise=-0.1)
    with pytest.raises(ConfigError, match="'regression'"):
        affinity(scores, held, "ridge")  # type: ignore[arg-type]


def test_scale_invariance_constant_task_and_noise_floor() -> None:
    held = _all_subsets(5, (3,))
    a, b = _planted(5, 4)
    scores = _planted_scores(held, a, b)
    u, _ = affinity(scores, held, "regression")
    rescaled = scores.copy()
    rescaled[:, 2] = 1000.0 * rescaled[:, 2] + 5.0  # a task in other units gets the same row
    np.testing.assert_allclose(affinity(rescaled, held, "regression")[0], u, atol=1e-9)

    flat = scores.copy()
    flat[:, 1] = np.where(held[:, 1], 7.0, np.nan)  # no signal: a zero row, not 0/0
    fit = task_model(flat, held)
    assert np.all(fit.coef[1] == 0) and fit.scale[1] == 0 and fit.intercept[1] == 7.0

    # A floor on the scale: a task whose spread is below the noise level keeps its small size.
    spread = scores[held[:, 3], 3].std()
    floored = task_model(scores, held, noise=np.array([0, 0, 0, 10 * spread, 0]))
    plain = task_model(scores, held)
    np.testing.assert_allclose(floored.coef[3], plain.coef[3] / 10, atol=1e-12)
    np.testing.assert_allclose(floored.coef[[0, 1, 2, 4]], plain.coef[[0, 1, 2, 4]])


# ---- no-signal check -----------------------------------------------------------------------------------


def test_no_signal_by_hand() -> None:
    nan = math.nan
    held = np.array(
        [[1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 0], [1, 1, 1]], dtype=bool
    )  # row 3 repeats row 0: task 0 has 3 distinct subsets
    scores = np.array(
        [[1.0, 4.0, nan], [2.0, nan, 3.0], [nan, 4.0, 3.0], [3.0, 4.0, nan], [5.0, 4.0, 3.0]]
    )
    check = no_signal_tasks(scores, held)
    # task 0: duplicates (1, 3) merge to 2 → values 2, 2, 5: std (ddof 1) = sqrt(3); tasks 1, 2 constant.
    np.testing.assert_array_equal(check.distinct, [3, 3, 3])
    np.testing.assert_allclose(check.spread, [math.sqrt(3.0), 0.0, 0.0], atol=1e-12)
    assert check.tasks == [1, 2]
    # With σ = 1: threshold sqrt(χ²_0.95(2) / 2) = sqrt(5.991465 / 2) = 1.730818; sqrt(3) = 1.7321 > it.
    with_noise = no_signal_tasks(scores, held, noise=1.0)
    np.testing.assert_allclose(with_noise.threshold[0], 1.730818, atol=1e-6)
    assert with_noise.tasks == [1, 2]
    assert no_signal_tasks(scores, held, noise=1.01).tasks == [0, 1, 2]
    # A task in a single distinct subset cannot show variation.
    single = np.array([[1, 1], [1, 0], [1, 0]], dtype=bool)
    assert no_signal_tasks(np.array([[1.0, 2.0], [2.0, nan], [3.0, nan]]), single).tasks == [1]
    with pytest.raises(ConfigError, match="alpha"):
        no_signal_tasks(scores, held, alpha=1.5)
    with pytest.raises(ConfigError, match="noise"):
        no_signal_tasks(scores, held, noise=np.array([1.0, -1.0, 0.0]))


def test_no_signal_test_has_its_level() -> None:
    """Pure evaluation noise of known σ is flagged at rate 1 − α; a real effect of 3σ is never flagged."""
    rng = np.random.default_rng(0)
    n, sigma, trials = 4, 0.5, 400
    held = _all_subsets(n, (2,))  # each task in 3 distinct subsets; pairs covered once
    held = np.vstack([held] * 4)  # repeated draws are merged: still 3 distinct per task
    a, b = _planted(n, 5)
    flags = np.zeros((trials, n), dtype=bool)
    for t in range(trials):
        distinct = held.shape[0] // 4
        # A subset's copies get the same score (as with common random numbers).
        noise = sigma * rng.standard_normal(distinct)[np.arange(held.shape[0]) % distinct]
        scores = np.where(held, 10.0 + noise[:, None], np.nan)
        scores[:, 3] = _planted_scores(held, 10 * sigma * a, b)[:, 3]  # task 3 depends on its partner
        flags[t] = no_signal_tasks(scores, held, noise=sigma).flagged
    rate = flags[:, :3].mean()
    assert abs(rate - 0.95) < 0.03, rate
    assert not flags[:, 3].any()
