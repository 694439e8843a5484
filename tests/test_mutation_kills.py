"""Tests written against the mutants that survived the first mutation run (issue 17, item 5).

``benchmarks/bench_mutation.py`` lists every survivor and the test here that now kills it. Each test
states a property of the code that a user could rely on: exact error sentences (the CLI shows them
as they are), behaviour at edge sizes (one task, one subset per block, a task with no weight), the
scale invariances of the surrogate, and how fast the batched solver converges.
"""

from __future__ import annotations

import math
import re
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch

from policygradex.errors import ConfigError, PolicyGradExError
from policygradex.gradex.affinity import affinity, subset_scores, task_zscores
from policygradex.gradex.features import TaskFeatures, collect_features, flatten, perturbed_policy, unflatten
from policygradex.gradex.projection import CHUNK_ROWS, GaussianProjection
from policygradex.gradex.scores import scale_deltas, score_surrogate
from policygradex.gradex.subsets import (
    coverage,
    default_num_subsets,
    expected_pair_coverage,
    first_occurrences,
    membership,
    sample_subsets,
)
from policygradex.gradex.surrogate import fit_logistic, fit_subsets, logistic_objective
from policygradex.grouping.baselines import gradient_similarity, random_partition, task_mean_gradients
from policygradex.grouping.cluster import (
    exhaustive_cluster,
    partition_objective,
    sdp_cluster,
    spectral_cluster,
)
from policygradex.rl.policy import PolicyConfig, build_policy


def raises_exactly(message: str):
    """``pytest.raises(ConfigError)`` whose message is exactly ``message``."""
    return pytest.raises(ConfigError, match=f"^{re.escape(message)}$")


# ---- grouping.baselines --------------------------------------------------------------------------
def test_random_partition_refuses_bad_k_and_sizes_with_exact_messages() -> None:
    with raises_exactly("k=5 must lie in [1, 4]"):
        random_partition(4, 5, seed=0)
    with raises_exactly("k=0 must lie in [1, 4]"):
        random_partition(4, 0, seed=0)
    # Each condition on its own: wrong length, wrong sum, an empty group.
    with raises_exactly("group sizes [1, 1, 2] must be 2 positive numbers summing to 4"):
        random_partition(4, 2, seed=0, sizes=[1, 1, 2])
    with raises_exactly("group sizes [1, 1] must be 2 positive numbers summing to 4"):
        random_partition(4, 2, seed=0, sizes=[1, 1])
    with raises_exactly("group sizes [0, 4] must be 2 positive numbers summing to 4"):
        random_partition(4, 2, seed=0, sizes=[0, 4])


def test_gradient_similarity_and_task_mean_gradients_by_hand() -> None:
    grads = [
        torch.tensor([[1.0, 0.0], [3.0, 0.0]]),  # mean (2, 0)
        torch.tensor([[0.0, 2.0], [0.0, -4.0], [0.0, 8.0]]),  # mean (0, 2)
        torch.tensor([[1.0, 1.0]]),
    ]
    torch.testing.assert_close(task_mean_gradients(grads), torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]]))
    adv = [torch.tensor([1.0, -1.0]), torch.tensor([1.0, 1.0, 0.5]), torch.tensor([-2.0])]
    # Advantage-weighted: mean_t Â_t g_t = ((1 − 3)/2, 0), (0, (2 − 4 + 4)/3), (−2, −2).
    weighted = task_mean_gradients(grads, adv)
    torch.testing.assert_close(weighted, torch.tensor([[-1.0, 0.0], [0.0, 2.0 / 3.0], [-2.0, -2.0]]))
    sim = gradient_similarity(weighted)
    r = 1 / np.sqrt(2)
    np.testing.assert_allclose(sim, [[1, 0, r], [0, 1, -r], [r, -r, 1]], atol=1e-12)
    assert sim.dtype == np.float64
    # A zero gradient has similarity 0 with everything, not NaN.
    zero = gradient_similarity(torch.tensor([[0.0, 0.0], [1.0, 0.0]]))
    np.testing.assert_array_equal(zero, [[0.0, 0.0], [0.0, 1.0]])


# ---- gradex.subsets ------------------------------------------------------------------------------
def test_subset_counts_for_two_tasks_and_too_few_tasks() -> None:
    assert default_num_subsets(2) == 50 and default_num_subsets(5) == 50 and default_num_subsets(6) == 72
    assert expected_pair_coverage(2, 7, 2) == 7.0
    assert expected_pair_coverage(10, 200, 3) == pytest.approx(200 * 6 / 90)
    message = "n=1 tasks cannot be grouped; a task family needs at least 2 tasks."
    with raises_exactly(message):
        default_num_subsets(1)
    with raises_exactly(message):
        expected_pair_coverage(1, 10, 2)


def test_first_occurrences_by_hand() -> None:
    subsets = [(0, 1), (2,), (0, 1), (1, 2), (2,), (0, 1)]
    first = first_occurrences(subsets)
    assert first == {(0, 1): 0, (2,): 1, (1, 2): 3}
    assert list(first) == [(0, 1), (2,), (1, 2)]  # in order of appearance
    assert first_occurrences([[3, 4], [3, 4]]) == {(3, 4): 0}


# ---- gradex.scores -------------------------------------------------------------------------------
def test_scale_deltas_edge_cases() -> None:
    with raises_exactly("relative_norm=0 must be positive (e.g. 0.01 for 1% of ‖θ*‖)"):
        scale_deltas(torch.ones(1, 3), 1.0, 0)
    # Rows shorter than 1 are rescaled too (the clamp only guards a zero row).
    small = torch.tensor([[3e-4, 4e-4], [0.0, 0.0]])
    out = scale_deltas(small, theta_norm=10.0, relative_norm=0.1)
    torch.testing.assert_close(out[0], torch.tensor([0.6, 0.8]))
    torch.testing.assert_close(out[1], torch.zeros(2))


def test_surrogate_scores_when_the_first_task_is_in_no_subset() -> None:
    grads = [torch.ones(1, 1)] * 3
    adv = [torch.ones(1)] * 3
    w = torch.tensor([[0.0], [np.log(2.0)]])
    # Task 0 is in no subset: the loop must go on to tasks 1 and 2, which are.
    out = score_surrogate(w, [(1,), (1, 2)], grads, adv, [0.0, 1.0, 2.0])
    assert np.isnan(out[:, 0]).all()
    assert out[0, 1] == pytest.approx(1.0) and out[1, 1] == pytest.approx(2.0) and out[1, 2] == pytest.approx(3.0)


# ---- gradex.features / projection ----------------------------------------------------------------
def test_task_features_to_dict_names_every_tensor() -> None:
    t = {k: torch.full((2,), float(i)) for i, k in enumerate(("grads", "advantages", "logp", "obs", "actions"))}
    f = TaskFeatures(**t)
    d = f.to_dict()
    assert list(d) == ["grads", "advantages", "logp", "obs", "actions"]
    assert all(d[k] is t[k] for k in t)


def test_unflatten_keeps_each_parameters_dtype_and_checks_length() -> None:
    like = {"a": torch.zeros(2, dtype=torch.float32), "b": torch.zeros(1, 2, dtype=torch.float64)}
    out = unflatten(torch.arange(4, dtype=torch.float64), like)
    assert out["a"].dtype == torch.float32 and out["b"].dtype == torch.float64
    assert out["b"].tolist() == [[2.0, 3.0]]
    with raises_exactly("parameter vector has 5 entries, the actor has 4"):
        unflatten(torch.zeros(5), like)


def test_perturbed_policy_accepts_a_float64_delta() -> None:
    pol = build_policy(3, 2, True, PolicyConfig(depth=2, width=4), seed=0)
    theta = flatten(pol.actor_params())
    delta = torch.full((theta.numel(),), 1e-9, dtype=torch.float64)
    new = perturbed_policy(pol, delta)
    assert all(p.dtype == torch.float32 for p in new.actor.parameters())
    torch.testing.assert_close(flatten(new.actor_params()), theta + delta.float())


def test_lift_and_matrix_with_an_explicit_device_and_bad_shapes() -> None:
    for p in (50, CHUNK_ROWS + 3):  # the cached and the chunk-by-chunk path
        proj = GaussianProjection(p=p, d=4, seed=1, cache_bytes=10**9 if p == 50 else 0)
        assert proj.matrix("cpu").device.type == "cpu"
        w = torch.randn(2, 3, 4)
        lifted = proj.lift(w)
        assert lifted.shape == (2, 3, p)
        torch.testing.assert_close(lifted, w @ proj.matrix().T)
    with raises_exactly(
        "coefficient last dimension 5 does not match projection d=4; pass vectors fitted with this projection."
    ):
        proj.lift(torch.zeros(2, 3, 5))


# ---- gradex.surrogate ----------------------------------------------------------------------------
def _problem(seed: int = 0, d: int = 20, n: int = 5, rows: int = 150):
    gen = torch.Generator().manual_seed(seed)
    feats, advs = [], []
    for _ in range(n):
        x = torch.randn(rows, d, generator=gen, dtype=torch.float64)
        beta = torch.randn(d, generator=gen, dtype=torch.float64)
        feats.append(x)
        advs.append(x @ beta + torch.randn(rows, generator=gen, dtype=torch.float64))
    return feats, advs, [[0, 1], [1, 2, 3], [0, 4], [2], [0, 1, 2, 3, 4], [3, 4], [1, 4]]


def _same_fits(a: torch.Tensor, b: torch.Tensor) -> None:
    """Fits agree to the solver's tolerance (relative error of each w below 1e-6, so 1e-5 between two)."""
    assert a.shape == b.shape
    rel = (a.double() - b.double()).norm(dim=-1) / b.double().norm(dim=-1)
    assert float(rel.max()) < 1e-5, rel


def test_logistic_objective_is_float64_and_batched() -> None:
    x, adv = torch.randn(30, 4), torch.randn(30)
    w = torch.randn(3, 4)
    out = logistic_objective(x, adv, 0.1, w)
    assert out.dtype == torch.float64 and out.shape == (3,)
    rows = torch.stack([logistic_objective(x.double(), adv.double(), 0.1, w[b].double()) for b in range(3)])
    torch.testing.assert_close(out, rows, rtol=1e-12, atol=0)
    # float32 inputs are promoted before the sum: the value equals the float64 computation exactly.
    assert logistic_objective(x, adv, 0.1, w[0]).item() == logistic_objective(x.double(), adv.double(), 0.1, w[0].double()).item()


def test_fit_subsets_on_a_single_task_and_exact_messages() -> None:
    feats, advs, _ = _problem(n=1, rows=80, d=4)
    w = fit_subsets(feats, advs, [[0]], 0.1)
    _same_fits(w[0], fit_logistic(feats[0], advs[0], 0.1))
    with raises_exactly("memory=0 must be at least 1 (the L-BFGS history length)."):
        fit_subsets(feats, advs, [[0]], 0.1, memory=0)
    with raises_exactly("got 0 feature tensors and 0 advantage tensors; pass one of each per task (n ≥ 1)."):
        fit_subsets([], [], [[0]], 0.1)
    with raises_exactly("block_size=0 must be at least 1."):
        fit_subsets(feats, advs, [[0]], 0.1, block_size=0)
    two = [feats[0], feats[0][:, :2]]
    with raises_exactly("task 1 features have d=2 but task 0 has d=4; project all tasks alike."):
        fit_subsets(two, [advs[0], advs[0]], [[0, 1]], 0.1)
    with raises_exactly(
        "subset [1] has only zero advantages, so its surrogate has no data; check the advantage estimates."
    ):
        fit_subsets([feats[0], feats[0]], [advs[0], torch.zeros(80, dtype=torch.float64)], [[0], [1]], 0.1)
    with raises_exactly("task 1 advantages have shape (79,) but features have 80 rows; pass one advantage per feature row."):
        fit_subsets([feats[0], feats[0]], [advs[0], advs[0][:-1]], [[0]], 0.1)


def test_fit_subsets_one_subset_per_block_and_memory_one() -> None:
    feats, advs, subsets = _problem(d=6, rows=60)
    reference = fit_subsets(feats, advs, subsets, 0.01)
    _same_fits(fit_subsets(feats, advs, subsets, 0.01, block_size=1), reference)
    _same_fits(fit_subsets(feats, advs, subsets, 0.01, memory=1), reference)


def test_fit_subsets_ignores_the_scale_of_the_advantages() -> None:
    """The loss is normalised by Σ|Â|: scaling every advantage by c > 0 changes nothing, however small."""
    feats, advs, subsets = _problem(d=6, rows=60)
    reference = fit_subsets(feats, advs, subsets, 0.01)
    for c in (1e-4, 1e3):
        _same_fits(fit_subsets(feats, [a * c for a in advs], subsets, 0.01), reference)


def test_fit_subsets_with_a_weightless_task_in_a_subset() -> None:
    """A task whose advantages are all zero contributes nothing to the subsets that hold it."""
    feats, advs, _ = _problem(d=6, rows=60, n=3)
    advs[1] = torch.zeros_like(advs[1])
    out = fit_subsets(feats, advs, [[0, 1], [0], [1, 2], [2]], 0.01)
    assert torch.isfinite(out).all()
    _same_fits(out[0], out[1])
    _same_fits(out[2], out[3])


def test_fit_subsets_converges_in_few_iterations() -> None:
    """The Böhning-preconditioned L-BFGS solves these 20-dimensional fits in 25 iterations (measured);
    28 leaves a margin for other BLAS builds. A wrong two-loop recursion, a wrong history order or a
    wrong initial scaling still converges, but slower, and warns at this budget."""
    feats, advs, subsets = _problem()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        fast = fit_subsets(feats, advs, subsets, 1e-3, max_iter=28)
    for row, subset in zip(fast, subsets, strict=True):
        x = torch.cat([feats[i] for i in subset])
        a = torch.cat([advs[i] for i in subset])
        ref = fit_logistic(x, a, 1e-3)
        assert float((row - ref).norm() / ref.norm()) < 1e-5


# Small, badly scaled problems on which a full Newton step from the second iterate on overshoots, so
# fit_logistic's Armijo backtracking must work (found by a random search over 400 problems; on the
# well-scaled problems of test_surrogate.py every full step is accepted and backtracking never runs).
HARD_LOGISTIC = [
    ([[177.54006168644602, 390.46037257419033], [3.008617162067387, 0.7789298336043092],
      [-462.543179626005, -509.12626654465754], [-0.03700851489969424, -0.7346007471016784],
      [-42.594432752483485, 18.673441207112532]],
     [-3.8627254602197842, 12.65138186935583, -0.03673392845015899, 0.02176512305937405, -0.08917858568061268],
     1.478880897902711e-07),
    ([[-0.8498167908061296, 6.380473344451432], [17.800191429474456, -2.230087574660542],
      [-0.15106906301578296, -0.060845710730239796], [0.22132636328320623, 0.17464687161139877]],
     [-0.32632538245766796, -0.021199161647983685, -0.04619025362985069, -6.636544464518645],
     1.5602610326235678e-08),
    ([[-0.013950331635151325, 0.014620894175443053], [0.22521892293499154, -0.2240690880246685],
      [22.768689135676198, 23.29757703034313], [0.1206844666727477, -4.302672134849963]],
     [17.745951827114702, 6.939588594030617, 1.454644225338507, -0.05316301273849094],
     6.446693955784967e-06),
    ([[1.0050366245134426, -1.1495993548847618], [194.03268916913106, -23.806911106420067],
      [20.849730779993212, 9.49362876239963]],
     [99.92354247640706, -0.031172295921788776, -0.6931588681644727],
     1.2330527254586044e-07),
]


@pytest.mark.parametrize("case", range(len(HARD_LOGISTIC)))
def test_fit_logistic_reaches_the_minimiser_where_newton_overshoots(case: int) -> None:
    """The documented guarantee, ‖∇L(w)‖ ≤ tol·λ·‖w‖, checked with autograd on the objective."""
    rows, advantages, l2 = HARD_LOGISTIC[case]
    x, adv = torch.tensor(rows, dtype=torch.float64), torch.tensor(advantages, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        w = fit_logistic(x, adv, l2, tol=1e-10, max_iter=100)
    w = w.clone().requires_grad_(True)
    logistic_objective(x, adv, l2, w).backward()
    assert float(w.grad.norm()) <= 1e-10 * l2 * float(w.detach().norm())


def test_solvers_warn_with_exact_messages_when_max_iter_is_too_small() -> None:
    feats, advs, subsets = _problem(d=6, rows=60)
    with pytest.warns(RuntimeWarning) as record:
        fit_subsets(feats, advs, subsets, 0.01, max_iter=1)
    assert len(record) == 1
    assert str(record[0].message) == (
        "fit_subsets: 7 subsets did not reach tol=1e-06 in max_iter=1 iterations; raise max_iter or tol."
    )
    with pytest.warns(RuntimeWarning) as record:
        fit_logistic(feats[0], advs[0], 1e-3, max_iter=1)
    assert len(record) == 1
    assert re.fullmatch(
        r"fit_logistic stopped after max_iter=1 Newton steps with gradient norm [0-9.e+-]+; raise max_iter or tol\.",
        str(record[0].message),
    )
    # One iteration is a valid budget, and so is one transition per task.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert fit_logistic(feats[0][:1], advs[0][:1], 0.1, max_iter=1).shape == (6,)
        assert fit_subsets([feats[0][:1]], [advs[0][:1]], [[0]], 0.1, max_iter=1).shape == (1, 6)


def test_solver_arguments_are_checked_with_exact_messages() -> None:
    x, adv = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    with raises_exactly("tol=0 must be a positive number, e.g. tol=1e-6."):
        fit_logistic(x, adv, 0.1, tol=0)
    with raises_exactly("tol=inf must be a positive number, e.g. tol=1e-6."):
        fit_logistic(x, adv, 0.1, tol=float("inf"))
    with raises_exactly("max_iter=0 must be at least 1."):
        fit_subsets([x], [adv], [[0]], 0.1, max_iter=0)
    with raises_exactly("l2='abc' must be a positive finite number (the surrogate needs λ > 0), e.g. l2=0.1."):
        fit_logistic(x, adv, "abc")
    with raises_exactly("the data set has no rows; collect at least one transition per task."):
        fit_logistic(x[:0], adv[:0], 0.1)
    with raises_exactly("task 0 has no rows; collect at least one transition per task."):
        fit_subsets([x[:0]], [adv[:0]], [[0]], 0.1)
    with raises_exactly("every advantage is zero, so the surrogate has no data; check the advantage estimates."):
        fit_logistic(x, torch.zeros(5, dtype=torch.float64), 0.1)
    # Tiny advantages are data, not "zero": the normalised loss does not care about their scale.
    _same_fits(fit_logistic(x, adv * 1e-3, 0.1), fit_logistic(x, adv, 0.1))
    # Zero columns are allowed (d ≥ 1 with rows is all that is needed).
    assert fit_logistic(torch.zeros(5, 1, dtype=torch.float64), adv, 0.1).tolist() == [0.0]


def test_fits_are_accurate_beyond_float32_when_asked() -> None:
    """With tol = 1e-12 the batched fit is accurate far below float32 round-off (the fit is float64)."""
    feats, advs, subsets = _problem(d=6, rows=60)
    out = fit_subsets(feats, advs, subsets, 0.01, tol=1e-12, max_iter=2000)
    for row, subset in zip(out, subsets, strict=True):
        ref = fit_logistic(torch.cat([feats[i] for i in subset]), torch.cat([advs[i] for i in subset]), 0.01, tol=1e-13)
        assert float((row - ref).norm() / ref.norm()) < 1e-10


def test_newton_converges_quadratically_on_a_separable_problem() -> None:
    """Damped Newton needs 16 steps here (measured; the last ones shrink the gradient quadratically,
    1.5e-6 → 2.3e-10 → converged): a wrong Hessian still converges, but linearly, and misses 18."""
    gen = torch.Generator().manual_seed(0)
    x = 30 * torch.randn(200, 5, generator=gen, dtype=torch.float64)
    beta = torch.randn(5, generator=gen, dtype=torch.float64)
    adv = torch.sign(x @ beta) * (0.5 + torch.rand(200, generator=gen, dtype=torch.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        w = fit_logistic(x, adv, 1e-4, tol=1e-10, max_iter=18)
    # Two steps earlier the gradient is still far above the tolerance: the warning must come.
    with pytest.warns(RuntimeWarning, match="max_iter=14 Newton steps"):
        fit_logistic(x, adv, 1e-4, tol=1e-10, max_iter=14)
    w = w.clone().requires_grad_(True)
    logistic_objective(x, adv, 1e-4, w).backward()
    assert float(w.grad.norm()) <= 1e-10 * 1e-4 * float(w.detach().norm())


def test_batched_fits_at_float64_precision_stay_put() -> None:
    """Asked for an unreachable tolerance, the batched solver keeps taking (no-op) steps at float64 precision:
    the line search's 1e-15·|L| slack accepts them, so no subset gives up; every subset exhausts max_iter, the
    warning says so, and the fits equal those of a reachable tolerance."""
    feats, advs, subsets = _problem(d=6, rows=60)
    reference = fit_subsets(feats, advs, subsets, 0.01, tol=1e-12, max_iter=2000)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        stuck = fit_subsets(feats, advs, subsets, 0.01, tol=1e-300, max_iter=300)
    assert [str(r.message) for r in record] == [
        f"fit_subsets: {len(subsets)} subsets did not reach tol=1e-300 in max_iter=300 iterations; "
        "raise max_iter or tol."
    ]
    assert torch.isfinite(stuck).all()
    rel = (stuck - reference).norm(dim=1) / reference.norm(dim=1)
    assert float(rel.max()) < 1e-10


# Iterations fit_subsets needs on HARD_LOGISTIC at tol = 1e-8 (measured; the test allows 5 more).
HARD_ITERATIONS = [40, 26, 21, 33]


@pytest.mark.parametrize("case", range(len(HARD_LOGISTIC)))
def test_fit_subsets_reaches_the_minimiser_where_full_steps_overshoot(case: int) -> None:
    """The batched solver's line search on the badly scaled problems above: it must shorten steps that
    overshoot, never stop short of the minimiser, and still converge in a few dozen iterations."""
    rows, advantages, l2 = HARD_LOGISTIC[case]
    x, adv = torch.tensor(rows, dtype=torch.float64), torch.tensor(advantages, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        w = fit_subsets([x], [adv], [[0]], l2, tol=1e-8, max_iter=HARD_ITERATIONS[case] + 5)[0]
    ref = fit_logistic(x, adv, l2, tol=1e-12, max_iter=1000)  # damped Newton (checked against sklearn)
    assert float((w - ref).norm() / ref.norm()) < 1e-7
    w = w.clone().requires_grad_(True)
    logistic_objective(x, adv, l2, w).backward()
    assert float(w.grad.norm()) <= 1e-8 * l2 * float(w.detach().norm())


def test_fit_subsets_sizes_its_blocks_for_any_number_of_rows() -> None:
    """The default block size comes from an estimate of one subset's memory (d, the history length and the
    pooled rows); it must be positive for every size (one task of d = 6, history 1 or 10, 10 to 56 rows)."""
    feats, advs, _ = _problem(n=1, rows=56, d=6)
    reference = {rows: fit_logistic(feats[0][:rows], advs[0][:rows], 0.1) for rows in range(10, 57)}
    for memory, sizes in ((1, range(10, 25)), (10, range(40, 57))):
        for rows in sizes:
            w = fit_subsets([feats[0][:rows]], [advs[0][:rows]], [[0]], 0.1, memory=memory)
            _same_fits(w[0], reference[rows])


def test_a_subset_that_meets_tol_is_left_alone_while_its_block_goes_on() -> None:
    """Features of scale 100 with λ = 1e-6 (the float64 preconditioner): the three subsets meet tol after
    different numbers of iterations, all within 20 (measured). Each is frozen once it does, so the default
    budget ends without a warning; iterating a converged fit on at this conditioning lets round-off undo
    its tolerance."""
    feats, advs = [], []
    for seed in (20, 21, 22):  # the tasks of test_surrogate.py::test_fit_subsets_float32_and_ill_conditioned
        gen = torch.Generator().manual_seed(seed)
        x = 100 * torch.randn(120, 5, generator=gen, dtype=torch.float64)
        beta = torch.randn(5, generator=gen, dtype=torch.float64)
        adv = x @ beta / 100 + 1.5 * torch.randn(120, generator=gen, dtype=torch.float64)
        adv[::7] = 0.0
        feats.append(x.float())
        advs.append(adv.float())
    subsets = [[0, 1], [1, 2], [0, 1, 2]]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        out = fit_subsets(feats, advs, subsets, 1e-6)
    for row, subset in zip(out, subsets, strict=True):
        x = torch.cat([feats[i] for i in subset]).double()
        _same_fits(row, fit_logistic(x, torch.cat([advs[i] for i in subset]), 1e-6))


def test_the_max_iter_warning_counts_exactly_the_subsets_that_miss_tol() -> None:
    """For every budget, the warning names as many subsets as miss ‖∇L(w)‖ ≤ tol·λ·‖w‖ at the fits returned
    (checked with autograd); a subset that gets there in the very last iteration is not counted, and once
    every subset gets there no warning comes (here the closest gradient is 24% away from its bound)."""
    feats, advs, subsets = _problem(d=6, rows=60)
    pooled = [(torch.cat([feats[i] for i in s]), torch.cat([advs[i] for i in s])) for s in subsets]
    for budget in range(1, 30):
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            out = fit_subsets(feats, advs, subsets, 0.01, max_iter=budget)
        message = str(record[0].message) if record else "fit_subsets: 0 subsets"
        warned = int(re.match(r"fit_subsets: (\d+) subsets", message).group(1))
        missed = 0
        for row, (x, a) in zip(out, pooled, strict=True):
            w = row.clone().requires_grad_(True)
            logistic_objective(x, a, 0.01, w).backward()
            missed += float(w.grad.norm()) > 1e-6 * 0.01 * float(row.norm())
        assert warned == missed, (budget, warned, missed)
        if not record:
            break
    assert not record, "every subset should meet tol within 30 iterations"


def test_a_subset_already_at_its_minimiser_takes_no_iteration(monkeypatch) -> None:
    """All-zero features (a task whose policy gradient vanishes) give ∇L_S(0) = 0, so w = 0 is the minimiser
    and meets the stopping rule ‖∇L‖ ≤ tol·λ·‖w‖ (0 ≤ 0): the fit stops before its first L-BFGS step."""
    from policygradex.gradex import surrogate

    solves: list[int] = []
    real = surrogate._apply
    monkeypatch.setattr(surrogate, "_apply", lambda *args: solves.append(1) or real(*args))
    adv = torch.randn(10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    w = fit_subsets([torch.zeros(10, 3, dtype=torch.float64)], [adv], [[0]], 0.1)
    assert w.tolist() == [[0.0, 0.0, 0.0]]
    assert solves == []


def test_subsets_that_give_up_short_of_tol_are_named_in_a_warning(monkeypatch) -> None:
    """The line search's give-up path (no decrease in 30 halvings) stops a subset where it is. An Armijo
    constant of 2 asks a convex loss for more than twice its linear decrease, which no step gives: every subset
    gives up at w = 0, far from tol, and the warning must say how many (it used to stop them silently)."""
    from policygradex.gradex import surrogate

    feats, advs, subsets = _problem(d=6, rows=60)
    monkeypatch.setattr(surrogate, "_ARMIJO", 2.0)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        out = fit_subsets(feats, advs, subsets, 0.01)
    assert [str(r.message).split(":")[1] for r in record] == [f" {len(subsets)} subsets stopped short of tol=1e-06"]
    assert out.abs().max().item() == 0.0


def _block_preconditioner(d: int, l2: float):
    """The preconditioner of three subsets of three tasks with their own feature scales and label directions
    (so their Gram matrices differ and the tasks couple directions of the common eigenbasis)."""
    from policygradex.gradex import surrogate

    gen = torch.Generator().manual_seed(11)
    features, weights = [], []
    for _ in range(3):
        scales = torch.exp(torch.randn(d, generator=gen, dtype=torch.float64))
        x = torch.randn(300, d, generator=gen, dtype=torch.float64) * scales / d**0.5
        beta = torch.randn(d, generator=gen, dtype=torch.float64)
        adv = x @ beta / (x @ beta).std() + 0.7 * torch.randn(300, generator=gen, dtype=torch.float64)
        adv[::9] = 0.0
        features.append(x)
        weights.append(adv.abs())
    task_weight = torch.stack([s.sum() for s in weights])
    basis = surrogate._task_basis(surrogate._task_grams(features, weights, l2), task_weight, l2)
    member = torch.tensor([[True, False, True], [True, True, True], [False, True, False]])
    return basis, surrogate._preconditioners(basis, member, member.double() @ task_weight, task_weight, l2)


def test_conjugate_gradients_stop_as_soon_as_every_residual_is_small(monkeypatch) -> None:
    """_apply's stopping rule, counted in products with H_S: with every direction dense the preconditioner is
    H_S⁻¹ itself and one step suffices, also when a right-hand side is 0 (the y of a rejected curvature pair);
    with the 128 most coupled of 150 directions dense, 7 steps (measured; 10 allowed). A dense block on other
    directions (the least coupled, or all of them ranked alike) needs 22 to 32."""
    from policygradex.gradex import surrogate

    products: list[int] = []
    real = surrogate._majoriser
    monkeypatch.setattr(surrogate, "_majoriser", lambda *args: products.append(1) or real(*args))
    rows = torch.arange(3)
    basis, pre = _block_preconditioner(d=6, l2=1e-2)
    assert basis.k == 6
    v = torch.randn(3, 2, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    v[1, 1] = 0.0
    x = surrogate._apply(pre, v, rows)
    assert len(products) == 1
    assert x[1, 1].tolist() == [0.0] * 6
    basis, pre = _block_preconditioner(d=150, l2=1e-3)
    assert basis.k == surrogate._DENSE_MAX
    products.clear()
    v = torch.randn(3, 2, 150, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    surrogate._apply(pre, v, rows)
    assert len(products) <= 10, len(products)


# ---- definitions pinned: a run's subsets and projection are part of what its seed means ------------------
def test_sampled_subsets_and_their_seeds_are_pinned() -> None:
    """The first three subsets are random, the other seven are top-ups of size 2 (each with its own seed)."""
    got = [(s.tasks, s.seed) for s in sample_subsets(5, 3, 2, seed=0, min_coverage=1, max_extra=20)]
    assert got == [
        ((3, 4), 579362555), ((2, 4), 1196444851), ((0, 3), 864228577), ((0, 1), 1081993678),
        ((0, 2), 967688993), ((0, 4), 1495516104), ((1, 2), 968622013), ((1, 3), 1710807515),
        ((1, 4), 679961800), ((2, 3), 554931898),
    ]
    got = [(s.tasks, s.seed) for s in sample_subsets(5, 2, 3, seed=7, min_coverage=1, max_extra=20)]
    assert got == [
        ((2, 3, 4), 1665772334), ((2, 3, 4), 406084289), ((0, 1, 2), 596936635), ((0, 3, 4), 2093868611),
        ((1, 2, 3), 439092812), ((1, 2, 4), 40807559),
    ]
    # The default asks for every pair once: here the 25 random subsets of 10 tasks already cover every
    # pair once, but not twice, so no top-up is added.
    subsets = sample_subsets(10, 25, 4, seed=0)
    pairs = coverage(subsets, 10)[np.triu_indices(10, 1)]
    assert len(subsets) == 25 and pairs.min() == 1


def test_sample_subsets_refuses_bad_arguments_with_exact_messages() -> None:
    cases = [
        (dict(n=1, m=5, size=2, seed=0), "n=1 tasks cannot be grouped; a task family needs at least 2 tasks."),
        (dict(n=4, m=5, size=5, seed=0), "subset size=5 must be between 2 and n=4; 3–5 suits n = 10."),
        (dict(n=4, m=0, size=2, seed=0),
         "m=0 subsets is too few; use at least 1 (default_num_subsets(n) suggests 32)."),
        (dict(n=4, m=5, size=2, seed=-1), "seed=-1 must be non-negative."),
        (dict(n=4, m=5, size=2, seed=0, min_coverage=-1), "min_coverage=-1 must be non-negative."),
        (dict(n=4, m=5, size=2, seed=0, max_extra=-1), "max_extra=-1 must be non-negative."),
    ]
    for kwargs, message in cases:
        with raises_exactly(message):
            sample_subsets(**kwargs)
    with raises_exactly("subsets is empty; pass at least one subset of task indices."):
        membership([], 3)


def test_membership_and_coverage_types() -> None:
    held = membership([(0, 1), (1, 2)], 3)
    assert held.dtype == np.bool_
    cov = coverage([(0, 1), (1, 2)], 3)
    assert cov.dtype == np.int64 and cov.tolist() == [[1, 1, 0], [1, 2, 1], [0, 1, 1]]


def test_projection_values_are_pinned() -> None:
    P = GaussianProjection(p=CHUNK_ROWS + 2, d=2, seed=0).matrix()
    torch.testing.assert_close(P[:2], torch.tensor([[0.31432849168777466, -0.78785240650177],
                                                     [-0.13820767402648926, -0.34494540095329285]]))
    # The last two rows come from the second chunk's own generator.
    torch.testing.assert_close(P[-2:], torch.tensor([[-0.23123310506343842, -0.8627861142158508],
                                                      [-0.18541985750198364, -0.01148892380297184]]))


def test_projection_edges_and_exact_messages() -> None:
    one = GaussianProjection(p=1, d=1, seed=0)  # the smallest valid projection
    assert one.matrix().shape == (1, 1)
    for kwargs, message in (
        (dict(p=0), "projection p=0 must be a positive parameter count."),
        (dict(p=3, d=0), "projection d=0 must be positive; the paper uses d=400."),
        (dict(p=3, seed=-2), "projection seed=-2 must be non-negative."),
        (dict(p=3, dtype=torch.int32),
         "projection dtype=torch.int32 must be a floating-point dtype such as torch.float32."),
    ):
        with raises_exactly(message):
            GaussianProjection(**kwargs)
    proj = GaussianProjection(p=CHUNK_ROWS + 3, d=4, seed=1, cache_bytes=0)
    with raises_exactly("chunk index 2 is outside [0, 2); pass a valid chunk index."):
        proj.chunk(2)
    with raises_exactly(
        "gradient last dimension 7 does not match projection p=2051; build the projection with the policy's "
        "parameter count."
    ):
        proj.project(torch.zeros(2, 3, 7))
    # [..., p] inputs on the chunk-by-chunk path keep their leading dimensions.
    g = torch.randn(2, 3, CHUNK_ROWS + 3)
    out = proj.project(g)
    assert out.shape == (2, 3, 4)
    torch.testing.assert_close(out, g @ proj.matrix(), rtol=1e-5, atol=1e-4)


# ---- gradex.affinity -------------------------------------------------------------------------------------
def test_affinity_edges_with_exact_messages() -> None:
    scores = np.array([[1.0, 2.0, np.nan], [np.nan, 3.0, 5.0], [4.0, np.nan, 6.0]])
    held = ~np.isnan(scores)
    # The default mode is the paper's aggregate mode.
    np.testing.assert_array_equal(affinity(scores, held)[0], affinity(scores, held, "aggregate")[0])
    assert affinity(scores, held)[1].dtype == np.int64
    bad = scores.copy()
    bad[1, 1] = np.nan
    with raises_exactly(
        "score f(S_1, 1) is nan although task 1 is in subset 1; re-evaluate that subset or drop it from the table."
    ):
        affinity(bad, held)
    lonely = held.copy()
    lonely[:, 0] = False
    with raises_exactly(
        "task 0 is in no subset, so its affinity is undefined; sample subsets with min_coverage >= 1 "
        "(sample_subsets guarantees every pair is covered) or raise m."
    ):
        affinity(np.where(lonely, scores, np.nan), lonely)
    # A subset with no tasks has no score (NaN), not 0.
    empty = np.vstack([held, np.zeros((1, 3), dtype=bool)])
    assert np.isnan(subset_scores(np.vstack([scores, np.full((1, 3), np.nan)]), empty)[-1])


def test_task_zscores_of_rarely_held_and_nearly_constant_tasks() -> None:
    held = np.array([[True, True], [False, True], [False, True]])
    # Task 0 is in one subset: a single score has no spread, so its z-score is 0.
    z = task_zscores(np.array([[5.0, 1.0], [np.nan, 2.0], [np.nan, 3.0]]), held)
    assert z[0, 0] == 0.0
    np.testing.assert_allclose(z[:, 1], [-np.sqrt(1.5), 0.0, np.sqrt(1.5)])
    # "Constant" is relative to the size of the scores: spread below 1e-12 of max(|mean|, 1) is noise.
    big = np.array([[1e6, 1e6], [np.nan, 1e6 + 1e-7], [np.nan, 1e6 + 2e-7]])
    assert np.all(task_zscores(big, held)[:, 1] == 0.0)
    small = np.array([[0.0, 0.0], [np.nan, 1.8e-12], [np.nan, 3.6e-12]])  # std 1.5e-12 around a mean near 0
    assert np.all(task_zscores(small, held)[:, 1] != 0.0) or np.all(task_zscores(small, held)[[0, 2], 1] != 0.0)


def test_task_affinity_by_loops_with_pairs_held_several_times() -> None:
    """U = (T + Tᵀ)/2 with T_ij = mean over subsets holding i and j of z(S, i), zero diagonal."""
    rng = np.random.default_rng(3)
    subsets = [(0, 1), (0, 1, 2), (1, 2), (0, 2), (0, 1), (1, 2, 3), (0, 3), (2, 3), (0, 1, 3)]
    held = membership(subsets, 4)
    scores = np.where(held, rng.normal(size=held.shape), np.nan)
    z = task_zscores(scores, held)
    t = np.zeros((4, 4))
    for i in range(4):
        for j in range(4):
            rows = [l for l in range(len(subsets)) if held[l, i] and held[l, j]]
            t[i, j] = np.mean([z[l, i] for l in rows])
    expected = (t + t.T) / 2
    np.fill_diagonal(expected, 0.0)
    u, cov = affinity(scores, held, "task")
    assert cov.max() > 1
    np.testing.assert_allclose(u, expected, rtol=1e-12, atol=1e-12)


# ---- gradex.features: defaults, edges, and continuous actions clipped for the environment only -------------
class _ClipProbe(gym.Env):
    """One-step episodes whose reward is the action the environment received (no clipping of its own)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action):
        return np.zeros(1, dtype=np.float32), float(np.asarray(action).reshape(-1)[0]), True, False, {}


def _clip_probe_family():
    from policygradex import tasks

    if "policygradex-test/ClipProbe-v0" not in gym.registry:
        gym.register(id="policygradex-test/ClipProbe-v0", entry_point=_ClipProbe)
    return tasks.from_gymnasium("policygradex-test/ClipProbe-v0", params=[{}, {}], name="clip-probe")


def test_continuous_actions_are_clipped_for_the_env_and_stored_unclipped() -> None:
    family = _clip_probe_family()
    pol = build_policy(family.obs_dim, 1, False, PolicyConfig(depth=1, width=4), seed=0)
    with torch.no_grad():
        pol.actor.net[-1].bias.fill_(3.0)  # mean action 3, far outside [-1, 1]
    proj = GaussianProjection(p=flatten(pol.actor_params()).numel(), d=4, seed=0)
    feats = collect_features(pol, family, proj, samples_per_task=32, seed=1, envs_per_task=4, gamma=0.0)
    for i in range(2):
        f = feats[i]
        assert (f.actions > 1).any()  # stored as sampled
        with torch.no_grad():
            received = f.advantages + pol.value(f.obs)  # γ = 0: Â = r − V, and r is what the env received
        torch.testing.assert_close(received, f.actions.clamp(-1, 1).reshape(-1), rtol=0, atol=1e-5)


def test_collect_features_defaults_and_edges() -> None:
    from policygradex import tasks

    family = tasks.make("planted-toy")
    pol = build_policy(family.obs_dim, family.action_dim, True, PolicyConfig(depth=1, width=4), seed=0)
    p = flatten(pol.actor_params()).numel()
    proj = GaussianProjection(p=p, d=4, seed=0)
    default = collect_features(pol, family, proj, samples_per_task=16, seed=2)
    explicit = collect_features(pol, family, proj, samples_per_task=16, seed=2, envs_per_task=8, gamma=0.99, lam=0.95)
    for i in range(family.n):
        assert default[i].advantages.shape == (16,)  # 8 envs per task by default: 2 steps each
        torch.testing.assert_close(default[i].advantages, explicit[i].advantages, rtol=0, atol=0)
        torch.testing.assert_close(default[i].grads, explicit[i].grads, rtol=0, atol=0)
    one = collect_features(pol, family, proj, samples_per_task=1, seed=2, envs_per_task=1)
    assert all(one[i].grads.shape == (1, 4) for i in range(family.n))
    with raises_exactly("samples_per_task=0 must be at least 1"):
        collect_features(pol, family, proj, samples_per_task=0, seed=2)
    with raises_exactly(f"projection has p={p + 1} rows but the actor has {p} parameters"):
        collect_features(pol, family, GaussianProjection(p=p + 1, d=4), samples_per_task=4, seed=2)


def test_kronecker_features_of_no_samples_and_the_exact_refusal() -> None:
    """Both projections map [N, obs_dim] to [N, d] for N = 0 too, and refuses a projection built for
    another actor with its whole sentence (the CLI shows it as it is)."""
    from policygradex.gradex.features import projected_grads
    from policygradex.gradex.projection import make_projection

    pol = build_policy(5, 3, True, PolicyConfig(depth=2, width=8), seed=0)
    proj = make_projection("kronecker", pol.actor, 8, 0)
    obs, actions = torch.randn(3, 5, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 2, 1])
    some = projected_grads(pol.actor, pol.actor_params(), obs, actions, proj)
    none = projected_grads(pol.actor, pol.actor_params(), obs[:0], actions[:0], proj)
    assert some.shape == (3, 8) and none.shape == (0, 8) and none.dtype == some.dtype
    gaussian = GaussianProjection(p=sum(v.numel() for v in pol.actor_params().values()), d=8, seed=0)
    empty = projected_grads(pol.actor, pol.actor_params(), obs[:0], actions[:0], gaussian)
    assert empty.shape == (0, 8) and empty.dtype == some.dtype
    wider = build_policy(5, 3, True, PolicyConfig(depth=2, width=9), seed=0)
    with raises_exactly(
        "the kronecker projection was built for another architecture than this actor's; "
        "build it with kronecker_blocks(actor)"
    ):
        projected_grads(wider.actor, wider.actor_params(), obs, actions, proj)


# ---- grouping.cluster ------------------------------------------------------------------------------------
def test_method_names_and_the_documented_tie_rule_of_exhaustive_search() -> None:
    u = np.random.default_rng(0).normal(size=(5, 5))
    u = (u + u.T) / 2
    assert sdp_cluster(u, k=2).method == "sdp"
    assert spectral_cluster(u, 2).method == "spectral"
    assert exhaustive_cluster(u, 2).method == "exhaustive"
    # "Ties go to the lexicographically first labelling": with all affinities equal every partition ties.
    assert exhaustive_cluster(np.zeros((5, 5)), 2).groups == [[0, 1, 2, 3], [4]]
    assert exhaustive_cluster(np.zeros((5, 5)), 3).groups == [[0, 1, 2], [3], [4]]
    # Also across the batches of 65536 labellings the enumeration is cut into (S(12, 4) = 611501), and at
    # the documented limit n = 12.
    assert exhaustive_cluster(np.zeros((12, 12)), 4).groups == [[0, 1, 2, 3, 4, 5, 6, 7, 8], [9], [10], [11]]
    assert exhaustive_cluster(np.eye(12), 11).groups == [[0, 1], *([i] for i in range(2, 12))]


def _objective(u: np.ndarray, labels: np.ndarray) -> float:
    return sum(u[np.ix_(labels == g, labels == g)].sum() / (labels == g).sum() for g in np.unique(labels))


def test_repair_splits_off_the_cheapest_task_and_never_empties_a_group() -> None:
    """``_repair`` (reached from the public functions only through degenerate k-means results): while fewer
    than k groups exist, move to a new singleton group the task of a group of 2+ whose move keeps the
    objective highest. Checked against trying every move, on 36 random affinities and three starting
    labellings (labels need not start at 0; groups of several sizes)."""
    from policygradex.grouping.cluster import _repair

    def partition(lab: np.ndarray) -> list[list[int]]:  # splitting either task of a pair is the same move
        return sorted(np.flatnonzero(lab == g).tolist() for g in np.unique(lab))

    starts = [([3, 3, 3, 3, 8, 8, 3], 5), ([0, 0, 1, 1, 2, 2, 2, 2, 5], 6), ([0, 1, 1, 0, 1, 1, 1, 2], 6)]
    for seed in range(12):
        for start, k in starts:
            labels = np.array(start)
            n = len(labels)
            a = np.random.default_rng(seed).normal(size=(n, n))
            u = (a + a.T) / 2
            expected = np.unique(labels, return_inverse=True)[1]
            for new in range(len(np.unique(labels)), k):
                best, best_value = None, -np.inf
                for i in range(n):
                    if (expected == expected[i]).sum() < 2:
                        continue  # moving a singleton would empty its group
                    trial = expected.copy()
                    trial[i] = new
                    value = _objective(u, trial)
                    if value > best_value:
                        best, best_value = trial, value
                expected = best
            out = _repair(u, labels, k)
            assert sorted(np.unique(out).tolist()) == list(range(k)), (seed, start)
            assert partition(out) == partition(expected), (seed, start)


def _njw(u: np.ndarray, k: int, seed: int) -> list[list[int]]:
    """Ng–Jordan–Weiss on U − min U as the docstring states it, written out independently."""
    from sklearn.cluster import KMeans

    a = u - u.min()
    d = a.sum(1)
    m = a / np.sqrt(np.outer(d, d))
    vals, vecs = np.linalg.eigh(m)
    emb = vecs[:, np.argsort(vals)[::-1][:k]]
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(emb).labels_
    return sorted(sorted(np.flatnonzero(labels == g).tolist()) for g in np.unique(labels))


@pytest.mark.parametrize("seed", range(6))
def test_spectral_clustering_is_njw_on_the_shifted_affinity(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n, k = 9, 3
    a = rng.normal(size=(n, n))
    u = (a + a.T) / 2
    assert spectral_cluster(u, k, seed=seed % 2).groups == _njw(u, k, seed % 2)
    assert spectral_cluster(u, k).groups == _njw(u, k, 0)  # the default k-means seed is 0


def test_iterated_local_search_keeps_kicking_while_it_helps() -> None:
    """From a poor start (tasks dealt round-robin) one pass of kicks is not enough on this instance; the
    search must repeat passes until none helps, and then it reaches the brute-force optimum."""
    from policygradex.grouping.cluster import _iterated_local_search, _local_search

    n, k = 9, 3
    a = np.random.default_rng([n, k, 35, 77]).normal(size=(n, n))
    u = (a + a.T) / 2
    start = np.arange(n) % k
    best = exhaustive_cluster(u, k).groups
    assert best == [[0], [1, 2, 3, 4, 6, 7, 8], [5]]
    assert sorted(np.flatnonzero(_local_search(u, start, k) == g).tolist() for g in range(k)) != best
    labels = _iterated_local_search(u, start, k)
    assert sorted(np.flatnonzero(labels == g).tolist() for g in range(k)) == best


def test_affinity_checks_with_exact_messages_and_relative_symmetry_tolerance() -> None:
    with raises_exactly("affinity matrix contains NaN or inf; recompute it from fully covered subsets."):
        sdp_cluster(np.array([[0.0, np.inf], [np.inf, 0.0]]), k=1)
    with raises_exactly("affinity matrix has shape (0, 0); pass a nonempty square [n, n] array."):
        exhaustive_cluster(np.zeros((0, 0)), 1)
    # Symmetry is checked relative to the size of U (1e-8 of max(|U|, 1)).
    big = np.array([[0.0, 1e6], [1e6 + 1e-3, 0.0]])  # relative gap 1e-9: accepted
    assert exhaustive_cluster(big, 1).groups == [[0, 1]]
    small = np.array([[0.0, 0.5], [0.5 + 1.5e-8, 0.0]])  # gap 1.5e-8 > 1e-8: refused
    with pytest.raises(ConfigError, match="not symmetric"):
        exhaustive_cluster(small, 1)
    with raises_exactly(
        "groups [[0, 1]] are not a partition of the 3 tasks into nonempty groups; list every task index exactly once."
    ):
        partition_objective(np.eye(3), [[0, 1]])


def test_solver_choice_when_clarabel_is_missing_and_when_nothing_is_installed(monkeypatch) -> None:
    import cvxpy as cp

    u = np.kron(np.eye(2), np.ones((3, 3)))
    used: list[str] = []
    real_solve = cp.Problem.solve

    def record(self, *args, **kwargs):
        used.append(kwargs.get("solver"))
        return real_solve(self, *args, **kwargs)

    monkeypatch.setattr(cp.Problem, "solve", record)
    monkeypatch.setattr(cp, "installed_solvers", lambda: ["SCS", "OSQP"])
    assert sdp_cluster(u, k=2).groups == [[0, 1, 2], [3, 4, 5]]
    assert used == ["SCS"]
    monkeypatch.setattr(cp, "installed_solvers", lambda: ["OSQP"])
    with raises_exactly("neither Clarabel nor SCS is installed for the SDP; install cvxpy with its default solvers."):
        sdp_cluster(u, k=2)
    with raises_exactly("SDP solver 'scs' is not installed; use one of ['OSQP'] or leave it unset."):
        sdp_cluster(u, k=2, solver="scs")


def _answer(monkeypatch, x_value: np.ndarray, status: str) -> None:
    import cvxpy as cp

    def solve(self, *args, **kwargs):
        self.variables()[0].value = x_value
        self._status = status
        return 0.0

    monkeypatch.setattr(cp.Problem, "solve", solve)


def test_solver_answers_are_vetted(monkeypatch) -> None:
    u = np.kron(np.eye(2), np.ones((3, 3)))
    blocks = np.kron(np.eye(2), np.full((3, 3), 1 / 3))
    # A value with a failed status is not a solution.
    _answer(monkeypatch, blocks, "infeasible")
    with pytest.raises(RuntimeError, match="'infeasible'"):
        sdp_cluster(u, k=2)
    # Round-off below zero is clipped: X ≥ 0 as the relaxation requires.
    noisy = blocks.copy()
    noisy[0, 4] = noisy[4, 0] = -1e-9
    _answer(monkeypatch, noisy, "optimal_inaccurate")
    res = sdp_cluster(u, k=2)
    assert res.X.min() == 0.0 and res.groups == [[0, 1, 2], [3, 4, 5]]
    # The penalised variant reads k off Tr X, clipped to [1, n] however far off the answer is.
    _answer(monkeypatch, 2.0 * np.eye(6), "optimal_inaccurate")
    assert sdp_cluster(u, lam=1.0).k == 6
    _answer(monkeypatch, np.full((6, 6), 0.01), "optimal_inaccurate")
    assert sdp_cluster(u, lam=1.0).k == 1


def test_k_must_be_a_whole_number_not_a_bool() -> None:
    u = np.eye(3)
    for k in (True, 2.5):
        with raises_exactly(f"k={k} groups is impossible for n=3 tasks; choose 1 <= k <= 3."):
            exhaustive_cluster(u, k)
    assert exhaustive_cluster(u, 2.0).k == 2  # a whole float is fine


def test_projection_does_not_depend_on_the_default_dtype_and_uses_the_seeds_low_bit() -> None:
    """P is drawn in float32 whatever torch's default dtype is ("Samples are always drawn in float32")."""
    reference = GaussianProjection(p=3, d=2, seed=1).matrix()
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        again = GaussianProjection(p=3, d=2, seed=1).matrix()
    finally:
        torch.set_default_dtype(previous)
    assert torch.equal(again, reference)
    # Seed 1's chunk-0 generator seed is odd, so this pins the lowest bit of the derivation too.
    torch.testing.assert_close(reference[:2], torch.tensor([[1.26079523563385, 0.07806818932294846],
                                                             [0.7736055254936218, -0.9504769444465637]]))


# ---- the estimator building blocks of issue 12 (second mutation run) ----------------------------
def test_task_model_edges_one_subset_no_subset_flat_then_varying() -> None:
    from policygradex.gradex.affinity import task_model

    # Task 0 in exactly one subset: its spread is 0, so b_0 is that score and the row is zero (not NaN).
    held = np.array([[1, 1, 0], [0, 1, 1], [0, 1, 1], [0, 1, 1]], dtype=bool)
    scores = np.array([[5.0, 1.0, 0.0], [0.0, 2.0, 3.0], [0.0, 4.0, 1.0], [0.0, 3.0, 2.0]])
    model = task_model(scores, held, ridge=0.0)
    assert model.intercept[0] == 5.0 and not model.coef[0].any() and model.scale[0] == 0.0
    # A task in no subset (task 0) does not stop the fit of the tasks after it.
    held2 = held.copy()
    held2[0, 0] = False
    model = task_model(scores, held2, ridge=0.0)
    assert np.isnan(model.intercept[0]) and model.coef[1].any() and model.scale[1] > 0
    # A flat task first (task 0 held twice with the same score) does not stop the others either.
    held3 = np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1], [0, 1, 1], [1, 1, 0]], dtype=bool)
    scores3 = np.array([[7.0, 1.0, 0.0], [7.0, 0.0, 3.0], [0.0, 4.0, 1.0], [0.0, 3.0, 2.0], [7.0, 2.5, 0.0]])
    model = task_model(scores3, held3, ridge=0.0)
    assert model.intercept[0] == 7.0 and not model.coef[0].any()
    assert model.coef[1].any() and model.coef[2].any()


def test_task_model_flatness_is_relative_to_the_score_level() -> None:
    from policygradex.gradex.affinity import task_model

    held = np.array([[1, 1, 0], [1, 0, 1], [1, 1, 0], [1, 0, 1]], dtype=bool)
    # Around 1e6 a spread of 1e-8 is round-off (below 1e-12 of the level): a zero row.
    big = np.zeros((4, 3))
    big[:, 0] = 1e6 + np.array([0.0, 1e-8, 2e-8, 0.0])
    model = task_model(big, held, ridge=0.0)
    assert not model.coef[0].any() and model.intercept[0] == pytest.approx(1e6)
    # Around 0 the threshold is 1e-12 absolute: a spread of 1.5e-12 is fitted like any other.
    tiny = np.zeros((4, 3))
    tiny[:, 0] = np.array([0.0, 3e-12, 0.0, 3e-12])  # std 1.5e-12, higher whenever task 2 joins
    model = task_model(tiny, held, ridge=0.0)
    assert model.coef[0, 2] > 0 and model.scale[0] == pytest.approx(1.5e-12)


def _objective_case():
    g = torch.Generator().manual_seed(5)
    grads = [torch.randn(6, 2, generator=g, dtype=torch.float64) for _ in range(3)]
    adv = [torch.randn(6, generator=g, dtype=torch.float64) for _ in range(3)]
    weights = torch.randn(3, 2, generator=g, dtype=torch.float64)
    return weights, [[1, 2], [1, 2], [2, 1]], grads, adv


def test_objective_scores_with_a_task_in_no_subset_and_exact_messages() -> None:
    from policygradex.gradex.scores import objective_change_stderr, score_objective_change

    weights, subsets, grads, adv = _objective_case()  # task 0 is in no subset
    for fn in (score_objective_change, objective_change_stderr):
        out = fn(weights, subsets, grads, adv)
        assert np.isnan(out[:, 0]).all() and np.isfinite(out[:, 1:]).all()
    # Linear score by hand: mean_t (Â_t − mean Â) g̃_tᵀ w_S.
    centred = adv[1] - adv[1].mean()
    by_hand = [float((centred * (grads[1] @ weights[l])).mean()) for l in range(3)]
    assert score_objective_change(weights, subsets, grads, adv)[:, 1] == pytest.approx(by_hand)
    # Each shape check on its own, with its exact sentence.
    stderr_msg = "pass one advantage vector per task (3), one subset per weight row (3) and coef_scale [3]."
    with raises_exactly(stderr_msg):
        objective_change_stderr(weights, subsets, grads, adv[:2])
    with raises_exactly(stderr_msg):
        objective_change_stderr(weights, subsets[:2], grads, adv)
    with raises_exactly(stderr_msg):
        objective_change_stderr(weights, subsets, grads, adv, coef_scale=torch.ones(2))
    short = [adv[0], adv[1][:5], adv[2]]
    with raises_exactly("task 1 has 6 gradient rows and 5 advantages; they must match and be at least 2."):
        objective_change_stderr(weights, subsets, grads, short)
    with raises_exactly("task 1 has 6 gradient rows and 5 advantages; they must match."):
        score_objective_change(weights, subsets, grads, short)


def _lookahead_setup(adv_values: list[list[float]], ratio: float = 1.0):
    from policygradex.grouping.baselines import LookaheadBatch
    from policygradex.rl.policy import log_prob

    pol = build_policy(2, 2, True, PolicyConfig(depth=1, width=4), seed=3)
    params = pol.actor_params()
    batches = []
    for t, values in enumerate(adv_values):
        obs = torch.linspace(-1, 1, 2 * len(values)).reshape(len(values), 2) + t
        actions = torch.arange(len(values)) % 2
        with torch.no_grad():
            logp = log_prob(pol.actor, params, obs, actions) - math.log(ratio)
        batches.append(LookaheadBatch(obs, actions, torch.tensor(values), logp))
    return pol, params, batches


def _loss_by_hand(actor, params, batch, eps: float) -> torch.Tensor:
    from policygradex.rl.policy import log_prob

    r = torch.exp(log_prob(actor, params, batch.obs, batch.actions) - batch.logp_old)
    a = batch.advantages
    return torch.maximum(-a * r, -a * torch.clamp(r, 1 - eps, 1 + eps)).mean()


def test_ppo_surrogate_default_clip_is_0_2_and_tag_passes_its_clip_on() -> None:
    from policygradex.grouping.baselines import ppo_surrogate_loss, tag_lookahead

    pol, params, batches = _lookahead_setup([[1.0, 2.0, 0.5], [-1.0, 0.3, 2.0]], ratio=1.5)
    assert float(ppo_surrogate_loss(pol.actor, params, batches[0])) == pytest.approx(
        float(_loss_by_hand(pol.actor, params, batches[0], 0.2)), rel=1e-6
    )
    # The lookahead with ε = 0.6 by hand (ratios of 1.5 are clipped at ε = 0.2 but not at 0.6).
    eps, lr = 0.6, 0.3
    z = tag_lookahead(pol.actor, params, batches, lr=lr, clip_coef=eps)
    names = list(params)
    for i in range(2):
        leaves = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
        g = torch.autograd.grad(_loss_by_hand(pol.actor, leaves, batches[i], eps), [leaves[k] for k in names])
        stepped = {k: params[k].detach() - lr * gk for k, gk in zip(names, g, strict=True)}
        for j in range(2):
            base = float(_loss_by_hand(pol.actor, params, batches[j], eps))
            after = float(_loss_by_hand(pol.actor, stepped, batches[j], eps))
            assert float(z[i, j]) == pytest.approx((base - after) / abs(base), rel=1e-4)


def test_tag_lookahead_guard_scales_with_the_advantages_and_exact_messages() -> None:
    from policygradex.grouping.baselines import tag_lookahead

    # Task 0: mean|Â| = 100 but L_0(θ_old) = −mean Â = −1e-5, below eps·100 = 1e-3: undefined (NaN).
    pol, params, batches = _lookahead_setup([[100.0, -99.99998], [1.0, 2.0]])
    z = tag_lookahead(pol.actor, params, batches, lr=0.1, eps=1e-5)
    assert torch.isnan(z[:, 0]).all() and torch.isfinite(z[:, 1]).all()
    with raises_exactly("no task batches given; pass one LookaheadBatch per task."):
        tag_lookahead(pol.actor, params, [], lr=0.1)


def test_tag_affinity_is_float64_and_its_messages() -> None:
    from policygradex.grouping.baselines import tag_affinity

    z = [torch.tensor([[0.0, 0.1], [0.3, 0.0]], dtype=torch.float32), np.array([[0.0, 0.2], [0.2, 0.0]])]
    u = tag_affinity(z)
    assert u.dtype == np.float64
    assert u[0, 1] == u[1, 0] == pytest.approx(((0.1 + 0.2) / 2 + (0.3 + 0.2) / 2) / 2)
    # Averaged in float64 even when the matrices are float32: (1e8 + 1) / 2 is not representable in float32.
    z32 = [np.array([[0.0, 1e8], [1e8, 0.0]], dtype=np.float32), np.array([[0.0, 1.0], [1.0, 0.0]], dtype=np.float32)]
    assert tag_affinity(z32)[0, 1] == 50000000.5
    with raises_exactly("no lookahead matrices given; collect at least one with tag_lookahead."):
        tag_affinity([])
    with raises_exactly("lookahead matrices have shape (2, 3); pass square [n, n] matrices of one n."):
        tag_affinity([np.zeros((2, 3))])
    with raises_exactly(
        "Z[0, 1] is undefined in every matrix (task 1's loss was 0); collect more steps or use raw advantages."
    ):
        tag_affinity([np.array([[0.0, np.nan], [0.1, 0.0]])])


def test_no_signal_tasks_edges_types_and_relative_constancy() -> None:
    from policygradex.gradex.affinity import no_signal_tasks

    held = np.array([[1, 1, 0], [1, 0, 1], [1, 1, 1], [0, 1, 1]], dtype=bool)
    scores = np.zeros((4, 3))
    # Task 0 is held only by one distinct subset (rows 0 and 1 are the same draw), as is task 3: both
    # flagged with spread 0, and neither stops the check of tasks 1 and 2, which vary.
    once = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]], dtype=bool)
    scores1 = np.array([[0.0, 1.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0], [0.0, 5.0, 1.0, 0.0], [0.0, 0.0, 4.0, 2.0]])
    check = no_signal_tasks(scores1, once)
    assert check.flagged.tolist() == [True, False, False, True]
    assert check.spread[0] == 0.0 and check.threshold[0] == np.inf and check.distinct.tolist() == [1, 2, 2, 1]
    assert check.flagged.dtype == bool and check.distinct.dtype == np.int64
    # Constant scores are flagged even with rel_tol = 0 (spread 0 ≤ threshold 0).
    scores[:, 0] = 3.0
    scores[:, 1] = [1.0, 0.0, 2.0, 4.0]
    scores[:, 2] = [0.0, 1.0, 2.0, 3.0]
    check = no_signal_tasks(scores, held, rel_tol=0.0)
    assert check.flagged.tolist() == [True, False, False]
    # "Constant" is relative to the level: around 1e12 a spread of 1e-4 is round-off ...
    big = scores.copy()
    big[:, 0] = 1e12 + np.array([0.0, 1e-4, 2e-4, 0.0])
    assert no_signal_tasks(big, held).flagged[0]
    # ... and absolute (1e-9) around 0: a spread of 1.5e-9 is signal.
    tiny = scores.copy()
    tiny[:, 0] = np.array([0.0, 1.5e-9, 3e-9, 0.0])  # sample std 1.5e-9
    assert not no_signal_tasks(tiny, held).flagged[0]
    for alpha in (0.0, 1.0):
        with raises_exactly(f"alpha={alpha} must lie in (0, 1), e.g. 0.05."):
            no_signal_tasks(scores, held, alpha=alpha)


def test_cluster_dispatches_each_method_with_its_arguments() -> None:
    from policygradex.grouping.cluster import cluster

    a = np.random.default_rng([7, 3]).normal(size=(7, 7))
    u = (a + a.T) / 2
    assert cluster(u, 3).groups == sdp_cluster(u, k=3).groups  # the default method is the SDP
    assert cluster(u, 3, "sdp", seed=5).method == "sdp"
    assert cluster(u, 2, "exhaustive").groups == exhaustive_cluster(u, 2).groups
    for seed in range(4):  # the seed reaches spectral clustering's k-means
        assert cluster(u, 3, "spectral", seed=seed).groups == spectral_cluster(u, 3, seed=seed).groups
    assert cluster(u, 3, "spectral").groups == spectral_cluster(u, 3, seed=0).groups
    with raises_exactly("unknown clustering method 'kmeans'; use 'sdp', 'spectral' or 'exhaustive'"):
        cluster(u, 3, "kmeans")


def test_regression_affinity_passes_its_noise_floor_on() -> None:
    from policygradex.gradex.affinity import task_model

    rng = np.random.default_rng(11)
    held = np.array([rng.permutation([1, 1, 1, 0, 0]) for _ in range(30)], dtype=bool)
    scores = np.where(held, rng.normal(size=held.shape) * np.array([1.0, 1.0, 0.01, 1.0, 1.0]), 0.0)
    for noise in (0.0, 0.5):
        u, _ = affinity(scores, held, mode="regression", ridge=1.0, noise=noise)
        a = task_model(scores, held, ridge=1.0, noise=noise).coef
        expected = 0.5 * (a + a.T)
        np.fill_diagonal(expected, 0.0)
        np.testing.assert_allclose(u, expected)
    # The floor matters here: task 2's spread (≈ 0.01) is far below 0.5.
    assert not np.allclose(affinity(scores, held, "regression", ridge=1.0, noise=0.5)[0],
                           affinity(scores, held, "regression", ridge=1.0)[0])


def test_collect_features_reports_progress_per_task() -> None:
    from policygradex import tasks

    family = tasks.make("planted-toy")
    pol = build_policy(family.obs_dim, family.action_dim, True, PolicyConfig(depth=1, width=8), seed=0)
    proj = GaussianProjection(p=flatten(pol.actor_params()).numel(), d=4, seed=0)
    calls: list[tuple[int, int]] = []
    with_progress = collect_features(pol, family, proj, samples_per_task=16, seed=3, progress=lambda *a: calls.append(a))
    assert calls == [(i, family.n) for i in range(family.n + 1)]
    without = collect_features(pol, family, proj, samples_per_task=16, seed=3)
    for i in range(family.n):
        torch.testing.assert_close(with_progress[i].grads, without[i].grads, rtol=0, atol=0)


def test_score_job_with_a_family_object_scores_like_one_with_its_name(tmp_path) -> None:
    """The serial executor passes the family itself; process workers get its name and rebuild it."""
    from policygradex import tasks
    from policygradex.gradex.scores import ScoreJob, score_rollouts
    from policygradex.rl.checkpoint import save_checkpoint

    family = tasks.make("planted-toy")
    pol = build_policy(family.obs_dim, family.action_dim, True, PolicyConfig(depth=1, width=8), seed=1)
    path = tmp_path / "policy.pt"
    save_checkpoint(path, pol, family, list(range(family.n)))
    p = flatten(pol.actor_params()).numel()
    deltas = np.random.default_rng(0).normal(size=(2, p)).astype(np.float32) * 0.5
    rows = {}
    for key, fam in (("object", family), ("name", family.name)):
        job = ScoreJob(checkpoint=str(path), family=fam, subsets=((0, (0, 3)), (1, (2, 5))), deltas=deltas,
                       episodes=4, seed=2)
        rows[key] = score_rollouts(job)["rows"]
    assert rows["object"] == rows["name"] and len(rows["object"]) == 4
    # The family object is checked against the checkpoint as a name would be.
    other = tasks.make("planted-sparse")
    job = ScoreJob(checkpoint=str(path), family=other, subsets=((0, (0, 3)),), deltas=deltas[:1], episodes=1, seed=2)
    with pytest.raises(PolicyGradExError, match="planted-toy"):
        score_rollouts(job)
