"""The rollout-free objective-change score (issue 12): a hand-computed case and its invariances."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from policygradex.errors import ConfigError
from policygradex.gradex.scores import (
    ObjectiveForm,
    objective_change_stderr,
    score_objective_change,
    score_surrogate,
)

# Task 0: Â = [3, 1] → centred [1, −1]; task 1: Â = [0, 0, 3] → centred [−1, −1, 2].
GRADS = [torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[1.0, 1.0], [2.0, 0.0], [0.0, -1.0]])]
ADV = [torch.tensor([3.0, 1.0]), torch.tensor([0.0, 0.0, 3.0])]
SUBSETS = [[0, 1], [1]]
WEIGHTS = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
SCALE = torch.tensor([0.5, 2.0])  # v_0 = [1, 0], v_1 = [2, 2]


def test_linear_by_hand() -> None:
    # ḡ_0 = mean(1·[1, 0], −1·[0, 1]) = [0.5, −0.5]; ḡ_1 = mean(−[1, 1], −[2, 0], 2·[0, −1]) = [−1, −1].
    f = score_objective_change(WEIGHTS, SUBSETS, GRADS, ADV, SCALE)
    expected = np.array([[0.5, -1.0], [math.nan, -4.0]])
    np.testing.assert_allclose(f, expected, atol=1e-12)
    assert f.dtype == np.float64


def test_exp_by_hand() -> None:
    # g̃ᵀv: task 0 under v_0: [1, 0]; task 1 under v_0: [1, 2, 0]; under v_1: [4, 4, −2].
    e = math.e
    f = score_objective_change(WEIGHTS, SUBSETS, GRADS, ADV, SCALE, form="exp")
    np.testing.assert_allclose(f[0, 0], (e - 1) / 2, atol=1e-12)
    np.testing.assert_allclose(f[0, 1], -((e - 1) + (e**2 - 1)) / 3, atol=1e-12)
    np.testing.assert_allclose(f[1, 1], (-2 * (e**4 - 1) + 2 * (e**-2 - 1)) / 3, atol=1e-12)
    assert math.isnan(f[1, 0])


def test_centring_scale_and_agreement_of_the_forms() -> None:
    # A constant added to a task's advantages (a task θ* solves: mean Â ≫ 0) changes nothing.
    shifted = [ADV[0] + 10.0, ADV[1] - 4.0]
    for form in ("linear", "exp"):
        kind: ObjectiveForm = form  # type: ignore[assignment]
        np.testing.assert_allclose(
            score_objective_change(WEIGHTS, SUBSETS, GRADS, shifted, SCALE, form=kind),
            score_objective_change(WEIGHTS, SUBSETS, GRADS, ADV, SCALE, form=kind),
            atol=1e-9,
        )
    # No coef_scale means c_S = 1; the linear score is linear in c_S; for tiny steps exp → linear.
    lin = score_objective_change(WEIGHTS, SUBSETS, GRADS, ADV)
    np.testing.assert_allclose(
        score_objective_change(WEIGHTS, SUBSETS, GRADS, ADV, torch.tensor([3.0, 3.0])), 3 * lin, atol=1e-12
    )
    tiny = torch.tensor([1e-6, 1e-6])
    np.testing.assert_allclose(
        score_objective_change(WEIGHTS, SUBSETS, GRADS, ADV, tiny, form="exp") / 1e-6, lin, rtol=1e-5
    )
    # With centred advantages, score_surrogate's gain (minus its base) is the exp form.
    centred = [a - a.mean() for a in ADV]
    sur = score_surrogate(WEIGHTS, SUBSETS, GRADS, centred, [0.0, 0.0], SCALE)
    np.testing.assert_allclose(sur, score_objective_change(WEIGHTS, SUBSETS, GRADS, ADV, SCALE, form="exp"))


def test_guards() -> None:
    with pytest.raises(ConfigError, match="form='quadratic'"):
        score_objective_change(WEIGHTS, SUBSETS, GRADS, ADV, form="quadratic")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="advantages"):
        score_objective_change(WEIGHTS, SUBSETS, GRADS, ADV[:1])
    with pytest.raises(ConfigError, match="2 subsets"):
        score_objective_change(WEIGHTS, SUBSETS[:1], GRADS, ADV)
    with pytest.raises(ConfigError, match="must match"):
        score_objective_change(WEIGHTS, SUBSETS, GRADS, [ADV[0], ADV[1][:2]])


def test_stderr_by_hand_and_by_redrawing_transitions() -> None:
    # Level (centred=False). Task 0 under v_0 = [1, 0]: h = Â^c·g̃ᵀv = [1, 0] → std √0.5, over √2 → 0.5.
    se = objective_change_stderr(WEIGHTS, SUBSETS, GRADS, ADV, SCALE, centred=False)
    assert se[0, 0] == pytest.approx(0.5) and math.isnan(se[1, 0])
    # Task 1 under v_1 = [2, 2]: g̃ᵀv = [4, 4, −2], Â^c = [−1, −1, 2] → h = [−4, −4, −4]: no spread.
    assert se[1, 1] == pytest.approx(0.0, abs=1e-12)
    # Centred: task 1 holds v_0 = [1, 0] and v_1 = [2, 2], mean [1.5, 1]; u_0 = [−0.5, −1] gives
    # g̃ᵀu = [−1.5, −1, 1], h = [1.5, 1, 2] → std 0.5, over √3; u_1 = −u_0 gives the same.
    centred = objective_change_stderr(WEIGHTS, SUBSETS, GRADS, ADV, SCALE)
    np.testing.assert_allclose(centred[:, 1], [0.5 / math.sqrt(3)] * 2, atol=1e-12)
    assert centred[0, 0] == 0.0  # a task in one subset has no differences
    # Monte Carlo: over independent redraws of the transitions the std of the level and of the
    # difference of two subsets' scores match the standard errors.
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(2, 3, generator=gen, dtype=torch.float64)
    levels, diffs, errs, derrs = [], [], [], []
    for _ in range(400):
        g = torch.randn(200, 3, generator=gen, dtype=torch.float64)
        adv = g[:, 0] + 0.5 * torch.randn(200, generator=gen, dtype=torch.float64) + 3.0
        f = score_objective_change(w, [[0], [0]], [g], [adv])[:, 0]
        levels.append(f[0])
        diffs.append(f[0] - f.mean())
        errs.append(objective_change_stderr(w, [[0], [0]], [g], [adv], centred=False)[0, 0])
        derrs.append(objective_change_stderr(w, [[0], [0]], [g], [adv])[0, 0])
    assert np.std(levels) == pytest.approx(np.mean(errs), rel=0.1)
    assert np.std(diffs) == pytest.approx(np.mean(derrs), rel=0.1)
    with pytest.raises(ConfigError, match="at least 2"):
        objective_change_stderr(WEIGHTS[:1], [[0]], [GRADS[0][:1]], [ADV[0][:1]])
