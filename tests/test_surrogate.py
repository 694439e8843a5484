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


# ---- fit_subsets against independent references (issue 11: the faster solver must give the same fits) ----
def _hetero_tasks(d: int, rows: int, n: int, seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Tasks with their own feature scales and their own label direction, so the tasks' Gram matrices differ."""
    gen = torch.Generator().manual_seed(seed)
    features, advantages = [], []
    for _ in range(n):
        scales = torch.exp(torch.randn(d, generator=gen, dtype=torch.float64))
        x = torch.randn(rows, d, generator=gen, dtype=torch.float64) * scales / d**0.5
        beta = torch.randn(d, generator=gen, dtype=torch.float64)
        adv = x @ beta / (x @ beta).std() + 0.7 * torch.randn(rows, generator=gen, dtype=torch.float64)
        adv[::9] = 0.0
        features.append(x)
        advantages.append(adv)
    return features, advantages


def _sklearn(x: torch.Tensor, adv: torch.Tensor, l2: float) -> torch.Tensor:
    s = np.abs(adv.numpy())
    ref = LogisticRegression(
        fit_intercept=False, C=1.0 / (l2 * s.sum()), solver="lbfgs", tol=1e-12, max_iter=100_000
    )
    ref.fit(x.numpy(), np.where(adv.numpy() < 0, -1, 1), sample_weight=s)
    return torch.from_numpy(ref.coef_[0].copy())


@pytest.mark.parametrize("l2", [1e-3, 1e-2, 1.0])
def test_fit_subsets_matches_sklearn_for_every_subset_size(l2: float) -> None:
    features, advantages = _hetero_tasks(d=12, rows=150, n=5, seed=3)
    subsets = [[2], [0, 3], [1, 2, 4], [0, 1, 2, 3, 4]]
    fits = fit_subsets(features, advantages, subsets, l2, tol=1e-10)
    for row, subset in zip(fits, subsets, strict=True):
        x = torch.cat([features[i] for i in subset])
        a = torch.cat([advantages[i] for i in subset])
        ref = _sklearn(x, a, l2)
        assert _relative(row, ref) < 1e-6, (subset, _relative(row, ref))
        # The objective values agree to float64 round-off.
        assert abs(float(logistic_objective(x, a, l2, row) - logistic_objective(x, a, l2, ref))) < 1e-12


def _newton_system_at_zero(
    x: torch.Tensor, adv: torch.Tensor, l2: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """At w = 0 every curvature σ(0)(1 − σ(0)) is 1/4, so the Newton step w₁ solves H·w₁ = b with
    H = XᵀSX/(4Σs) + λI and b = −∇L(0) = XᵀSy/(2Σs). Returns (H, b)."""
    y = torch.where(adv < 0, -1.0, 1.0).double()
    s = adv.abs().double()
    hess = (x.T * s) @ x / (4 * s.sum()) + l2 * torch.eye(x.shape[1], dtype=torch.float64)
    return hess, x.T @ (s * y) / (2 * s.sum())


@pytest.mark.parametrize(("d", "l2"), [(10, 1e-2), (10, 1.0), (160, 1e-2), (160, 1e-4)])
def test_first_step_is_the_newton_step_from_zero(d: int, l2: float) -> None:
    """The first iterate is w₁ = H_S(0)⁻¹·(−∇L_S(0)), the exact Newton step (the Böhning bound is tight at
    w = 0). With d = 10 every direction is in the dense block and the solve is direct; d = 160 exceeds its
    128 directions, so conjugate gradients solve to a residual of 1e-4 (checked on the residual)."""
    features, advantages = _hetero_tasks(d=d, rows=400, n=4, seed=d)
    subsets = [[0], [1, 3], [0, 2, 3], [0, 1, 2, 3]]
    with pytest.warns(RuntimeWarning, match="max_iter=1"):
        first = fit_subsets(features, advantages, subsets, l2, max_iter=1)
    for row, subset in zip(first, subsets, strict=True):
        x = torch.cat([features[i] for i in subset])
        a = torch.cat([advantages[i] for i in subset])
        hess, rhs = _newton_system_at_zero(x, a, l2)
        residual = float((hess @ row - rhs).norm() / rhs.norm())
        assert residual < (1e-5 if d == 10 else 2e-4), (subset, residual)
        if d == 10:
            assert _relative(row, torch.linalg.solve(hess, rhs)) < 1e-5


def test_fit_subsets_on_a_separable_problem() -> None:
    """Separable labels with a small λ: large margins, far from the quadratic regime; same minimiser as Newton."""
    gen = torch.Generator().manual_seed(4)
    features, advantages = [], []
    beta = torch.randn(8, generator=gen, dtype=torch.float64)
    for i in range(3):
        x = (1 + i) * torch.randn(120, 8, generator=gen, dtype=torch.float64)
        features.append(x)
        advantages.append(torch.sign(x @ beta) * (0.2 + torch.rand(120, generator=gen, dtype=torch.float64)))
    subsets = [[0], [0, 1], [1, 2], [0, 1, 2]]
    fits = fit_subsets(features, advantages, subsets, 1e-4, tol=1e-9, max_iter=2000)
    for row, subset in zip(fits, subsets, strict=True):
        x = torch.cat([features[i] for i in subset])
        a = torch.cat([advantages[i] for i in subset])
        ref = fit_logistic(x, a, 1e-4, tol=1e-11)
        assert float((x @ ref * torch.sign(a)).mean()) > 3  # large margins: far from quadratic
        assert _relative(row, ref) < 1e-7, (subset, _relative(row, ref))
        w = row.clone().requires_grad_(True)
        logistic_objective(x, a, 1e-4, w).backward()
        assert float(w.grad.norm()) <= 1e-9 * 1e-4 * float(row.norm()) * 1.01


def test_a_subset_fitted_alone_or_among_others_is_the_same_fit() -> None:
    """No subset's fit leaks into another's in a block (rows of the batched preconditioner and solves)."""
    features, advantages = _hetero_tasks(d=150, rows=200, n=5, seed=7)
    subsets = [[0, 1], [2, 3, 4], [1], [0, 2, 4], [3, 4]]
    together = fit_subsets(features, advantages, subsets, 1e-2, tol=1e-9)
    for row, subset in zip(together, subsets, strict=True):
        alone = fit_subsets(features, advantages, [subset], 1e-2, tol=1e-9)[0]
        assert _relative(row, alone) < 1e-8, (subset, _relative(row, alone))


def test_conjugate_gradients_solve_the_majoriser() -> None:
    """_apply returns H_S⁻¹v to the documented residual, checked against the dense H_S in float64, both with
    an empty dense block (tasks alike, curvature far below λ) and with part of the directions dense."""
    from policygradex.gradex import surrogate

    for d, l2, scale in [(150, 1.0, 1.0), (150, 1e-3, 1.0), (40, 1e-2, 3.0)]:
        features, advantages = _hetero_tasks(d=d, rows=300, n=3, seed=11)
        features = [scale * x for x in features]
        weights = [a.abs() for a in advantages]
        task_weight = torch.stack([s.sum() for s in weights])
        gram = surrogate._task_grams(features, weights, l2)
        basis = surrogate._task_basis(gram, task_weight, l2)
        member = torch.tensor([[True, False, True], [True, True, True], [False, True, False]])
        totals = member.double() @ task_weight
        pre = surrogate._preconditioners(basis, member, totals, task_weight, l2)
        v = torch.randn(3, 2, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        rows = torch.arange(3)
        x = surrogate._apply(pre, v, rows)
        for b in range(3):
            hess = sum(
                (features[i].T * weights[i]) @ features[i] / (4 * totals[b]) for i in range(3) if member[b, i]
            ) + l2 * torch.eye(d, dtype=torch.float64)
            resid = (x[b] @ hess - v[b]).norm(dim=-1) / v[b].norm(dim=-1)
            assert float(resid.max()) < 2e-4, (d, l2, b, resid)
            # The block-diagonal approximation alone is exact on a fully dense basis and inexact otherwise.
            approx = surrogate._approximate_inverse(pre, v[b : b + 1], rows[b : b + 1])[0]
            approx_resid = float(((approx @ hess - v[b]).norm(dim=-1) / v[b].norm(dim=-1)).max())
            if basis.k == d:
                assert approx_resid < 1e-4
        assert 0 <= basis.k <= min(d, surrogate._DENSE_MAX)
