"""The rollout-free objective-change score (issue 12): a hand-computed case and its invariances."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from policygradex.errors import ConfigError
from policygradex.gradex.scores import ObjectiveForm, score_objective_change, score_surrogate

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
