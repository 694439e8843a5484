from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from policygradex.errors import ConfigError
from policygradex.gradex.surrogate import fit_logistic, fit_subsets, logistic_objective


def _task(rows: int, d: int, seed: int, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = scale * torch.randn(rows, d, generator=gen, dtype=torch.float64)
    beta = torch.randn(d, generator=gen, dtype=torch.float64)
    adv = x @ beta / scale + 1.5 * torch.randn(rows, generator=gen, dtype=torch.float64)
    adv[::7] = 0.0  # zero advantages carry no weight
    return x, adv


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.mark.parametrize("l2", [1e-3, 0.05, 1.0])
def test_fit_logistic_matches_sklearn(l2: float) -> None:
    x, adv = _task(300, 8, seed=0)
    w = fit_logistic(x, adv, l2)
    y = np.where(adv.numpy() < 0, -1, 1)
    s = np.abs(adv.numpy())
    # sklearn minimises C·Σ s_t ℓ_t + ½‖w‖², which equals our L(w) scaled by C·Σs when C = 1/(λ·Σs).
    ref = LogisticRegression(
        fit_intercept=False, C=1.0 / (l2 * s.sum()), solver="lbfgs", tol=1e-12, max_iter=100_000
    )
    ref.fit(x.numpy(), y, sample_weight=s)
    assert ref.classes_.tolist() == [-1, 1]
    assert _relative(w, torch.from_numpy(ref.coef_[0])) < 1e-5


def test_fit_logistic_is_the_minimiser_and_keeps_dtype() -> None:
    x, adv = _task(200, 5, seed=1)
    w = fit_logistic(x.float(), adv.float(), 0.1)
    assert w.dtype == torch.float32 and w.shape == (5,)
    w = fit_logistic(x, adv, 0.1)
    best = logistic_objective(x, adv, 0.1, w)
    gen = torch.Generator().manual_seed(0)
    nearby = w + 1e-3 * torch.randn(20, 5, generator=gen, dtype=torch.float64)
    assert bool((logistic_objective(x, adv, 0.1, nearby) > best).all())
    # Weight-0 rows are irrelevant: dropping them gives the same fit.
    keep = adv != 0
    torch.testing.assert_close(fit_logistic(x[keep], adv[keep], 0.1), w, rtol=1e-7, atol=1e-9)


def test_fit_subsets_matches_single_fits() -> None:
    d = 6
    tasks = [_task(rows, d, seed=10 + i) for i, rows in enumerate([40, 75, 60, 90, 55])]
    features = [x for x, _ in tasks]
    advantages = [a for _, a in tasks]
    subsets = [[0, 1], [2, 0], [0, 2], [4], [1, 2, 3, 4], [3, 1], [0, 1, 2, 3, 4]]
    for l2 in (1e-3, 0.1):
        batched = fit_subsets(features, advantages, subsets, l2)
        assert batched.shape == (len(subsets), d)
        for row, subset in zip(batched, subsets, strict=True):
            x = torch.cat([features[i] for i in subset])
            a = torch.cat([advantages[i] for i in subset])
            assert _relative(row, fit_logistic(x, a, l2)) < 1e-6
        # Subsets with the same tasks in another order are the same fit.
        torch.testing.assert_close(batched[1], batched[2], rtol=0, atol=0)
        blocked = fit_subsets(features, advantages, subsets, l2, block_size=2)
        torch.testing.assert_close(blocked, batched, rtol=1e-6, atol=1e-9)


def test_fit_subsets_float32_and_ill_conditioned() -> None:
    # Large features with a tiny λ push the preconditioner past the float32 threshold (float64 path).
    d = 5
    tasks = [_task(120, d, seed=20 + i, scale=100.0) for i in range(3)]
    features = [x.float() for x, _ in tasks]
    advantages = [a.float() for _, a in tasks]
    subsets = [[0, 1], [1, 2], [0, 1, 2]]
    out = fit_subsets(features, advantages, subsets, 1e-6)
    assert out.dtype == torch.float32
    for row, subset in zip(out, subsets, strict=True):
        x = torch.cat([features[i] for i in subset]).double()
        a = torch.cat([advantages[i] for i in subset])
        assert _relative(row, fit_logistic(x, a, 1e-6)) < 1e-5


def test_bad_input_raises() -> None:
    x, adv = _task(30, 3, seed=2)
    with pytest.raises(ConfigError, match="l2"):
        fit_logistic(x, adv, 0.0)
    with pytest.raises(ConfigError, match="l2"):
        fit_logistic(x, adv, float("nan"))
    with pytest.raises(ConfigError, match="advantage"):
        fit_logistic(x, adv[:-1], 0.1)
    with pytest.raises(ConfigError, match="2-D"):
        fit_logistic(x[0], adv, 0.1)
    with pytest.raises(ConfigError, match="zero"):
        fit_logistic(x, torch.zeros(30, dtype=torch.float64), 0.1)
    bad = x.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ConfigError, match="NaN"):
        fit_logistic(bad, adv, 0.1)
    features, advantages = [x, x], [adv, adv]
    with pytest.raises(ConfigError, match="outside"):
        fit_subsets(features, advantages, [[0, 2]], 0.1)
    with pytest.raises(ConfigError, match="empty"):
        fit_subsets(features, advantages, [[0], []], 0.1)
    with pytest.raises(ConfigError, match="empty"):
        fit_subsets(features, advantages, [], 0.1)
    with pytest.raises(ConfigError, match="repeats"):
        fit_subsets(features, advantages, [[1, 1]], 0.1)
    with pytest.raises(ConfigError, match="one of each"):
        fit_subsets(features, [adv], [[0]], 0.1)
    with pytest.raises(ConfigError, match="d="):
        fit_subsets([x, x[:, :2]], advantages, [[0, 1]], 0.1)
    with pytest.raises(ConfigError, match="zero advantages"):
        fit_subsets([x, x], [adv, torch.zeros(30, dtype=torch.float64)], [[0, 1], [1]], 0.1)
    with pytest.raises(ConfigError, match="l2"):
        fit_subsets(features, advantages, [[0, 1]], -1.0)
