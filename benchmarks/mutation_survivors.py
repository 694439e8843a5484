"""Why each surviving mutant survives (read by ``bench_mutation.py``; issue 17, item 5).

Every mutant that no test kills is explained here, by a rule on the change (for whole classes, such as
device arguments on a CPU-only machine) or by name. Each explanation says whether the mutant is
*equivalent* (no input can tell it apart), equivalent *on CPU*, or a *performance-only* change (the
result is the same within the documented tolerance, only the work or the number of iterations differs),
or a *safety net* no test reaches. A survivor that matches nothing is reported as not explained.
"""

from __future__ import annotations

import re

DEVICE = (
    "Equivalent on CPU, the only device here: the argument only places a tensor on the device its inputs "
    "are already on (telling them apart needs a GPU run)."
)
STRICT = "Equivalent: both sequences have the same length by construction, so zip's `strict` never fires."
STACKLEVEL = (
    "Not testable under mutmut: `stacklevel` only changes the frame a warning is attributed to, and mutmut's "
    "trampolines add a frame of their own (a test of it kills every mutant of the function)."
)
DTYPE = "Equivalent: the dtype removed is the one these values get anyway (or the values are exact in both)."
PLUS_MINUS_ONE = "Equivalent: y ∈ {−1, +1}, so s / y = s · y."
BOUNDARY = (
    "Boundary of a floating-point comparison with a tolerance (< vs ≤, or a tolerance changed by a factor "
    "near 1e-12): equality or a gap that small does not occur on any test problem."
)
PERF_LBFGS = (
    "Performance only: changes how the L-BFGS step is scaled, preconditioned or safeguarded, not the "
    "minimiser; every fit still meets ‖∇L‖ ≤ tol·λ·‖w‖ (checked against Newton and scikit-learn), and the "
    "iteration-budget test (28 iterations, measured 25) does not resolve this one."
)
PERF_WORK = "Performance only: the same fits or partitions, with more (or differently batched) work."
NON_DESCENT = (
    "Unreachable in exact arithmetic: curvature pairs are kept only when sᵀy > 0 and the initial matrix "
    "γ·H_S⁻¹ is positive definite, so the two-loop direction is always a descent direction and the "
    "non-descent fallback never runs on any test problem."
)
GIVE_UP = (
    "Safety net not reached: the give-up path after 30 halvings of the step (no decrease at float64 "
    "precision) did not run on any test problem, including a fit asked for tol = 1e-300."
)
CHOLESKY = (
    "Safety net not reached: the float32 Cholesky of the Böhning majoriser never failed on a test problem "
    "(float32 is only used when the condition bound is ≤ 1e6); the float64 retry is untested."
)
ARMIJO_NEWTON = (
    "Performance only: fit_logistic's Armijo test variant accepts or rejects Newton steps differently, but "
    "every fit still reaches the documented gradient bound, including the four problems on which full "
    "Newton steps overshoot."
)
WARN_EDGE = (
    "Only changes the RuntimeWarning at exhaustion of max_iter for subsets whose `done` flag and final "
    "gradient test disagree, which happens on no test problem; the warning's text and count are tested."
)
DEFAULT_TUNING = (
    "Tuning default (iteration cap, history length, chunk size): one more changes no converged result; "
    "the tests of convergence pass their budgets explicitly."
)
PRECOND_SCALE = (
    "Performance only: a wrong scale or precision of the Böhning preconditioner is absorbed by the L-BFGS "
    "scaling γ = sᵀy / yᵀHy from the first curvature pair on; the fits are unchanged."
)
CPU_SEED_BITS = (
    "Equivalent: torch's CPU generator uses only the low 32 bits of a seed (seeds 1 and 1 + 2³² give the "
    "same stream, checked), so changing the high half of the 63-bit chunk seed changes nothing."
)
RNG_SAME = "Equivalent: numpy draws the same numbers (replace=None is falsy; integers(h) is integers(0, h))."
KMEANS_SEED = (
    "Not resolved: k-means with 10 restarts finds the same clustering from this other seed (or none) on "
    "every test instance; the result depends on the seed only on instances with near-ties."
)
LOCAL_SEARCH_SAFE = (
    "Equivalent in effect: the changed trial is either a no-op or empties a group, whose NaN objective is "
    "never accepted; only more trials are evaluated."
)
UNREACHABLE = "Unreachable: the branch is dead in the library (the argument is never passed / cannot occur)."
EMPTY_GROUP = (
    "Outside the documented contract: only differs for an empty group, and canonical_partition takes "
    "disjoint nonempty groups."
)
SQUARE = "Equivalent: the matrix is checked to be square before, so shape[1] = shape[0]."
SCALE_INVARIANT = (
    "Equivalent: a positive factor on the normalised affinity (or on every partition's value) changes no "
    "eigenvector and no argmax."
)

# (module.function, mutant numbers, explanation); numbers as in mutmut's names, `x_<function>__mutmut_<n>`.
BY_NAME: list[tuple[str, list[int], str]] = [
    # gradex/surrogate.py
    ("gradex.surrogate.x__labels_and_weights", [4], DTYPE),
    ("gradex.surrogate.x__labels_and_weights", [11],
     "Equivalent: a transition with Â = 0 has weight |Â| = 0, so its label never matters."),
    ("gradex.surrogate.x_fit_logistic", [2], DEFAULT_TUNING),
    ("gradex.surrogate.x_fit_logistic", [31, 34],
     "Equivalent: a float32 identity added to the float64 Hessian promotes exactly (its entries are 0 and 1)."),
    ("gradex.surrogate.x_fit_logistic", [120], STACKLEVEL),
    ("gradex.surrogate.x_fit_logistic", [62], PLUS_MINUS_ONE),
    ("gradex.surrogate.x_fit_logistic", [67, 112, 113], BOUNDARY),
    ("gradex.surrogate.x_fit_logistic", [87, 96, 98, 101, 102], ARMIJO_NEWTON),
    ("gradex.surrogate.x_fit_logistic", [107],
     "Unreachable: the Armijo test has a 1e-15·|L| slack, so a tiny step is always accepted and the "
     "give-up `break` never runs (a fit asked for tol = 1e-300 exhausts max_iter and warns instead)."),
    ("gradex.surrogate.x_fit_subsets", [2, 3], DEFAULT_TUNING),
    ("gradex.surrogate.x_fit_subsets", [49, 52], "Equivalent: a tensor of Python ints is int64 (torch.long) by default."),
    ("gradex.surrogate.x_fit_subsets", [57, 61],
     "Equivalent: the membership mask is only set with True, cast to float64 or tested for nonzero, which "
     "a float tensor of 0 and 1 does the same way."),
    ("gradex.surrogate.x_fit_subsets", [106, 107, 108, 109, 110, 119, 123, 135, 136, 137, 139],
     "Performance only: changes how subsets are cut into blocks or which rows a block recomputes; fits "
     "do not depend on blocking (tested with one subset per block)."),
    ("gradex.surrogate.x__task_grams", [19, 21, 24], PRECOND_SCALE),
    ("gradex.surrogate.x__task_grams", [34, 36, 37, 38, 39, 40],
     "Performance only: chooses float32 or float64 for the preconditioner, which only steers the steps "
     "(convergence is checked on float64 gradients)."),
    ("gradex.surrogate.x__preconditioners", [3, 5], PRECOND_SCALE),
    ("gradex.surrogate.x__preconditioners", [32, 33, 34, 35], CHOLESKY),
    ("gradex.surrogate.x__apply", [10, 11, 12],
     "Performance only: picks between two ways of computing the same batched product."),
    ("gradex.surrogate.x__apply", [19], PRECOND_SCALE),
    ("gradex.surrogate.x__apply", [21],
     "Equivalent: squeeze(2) only removes a dimension of size 1, which the stacked two-vector case does not "
     "have."),
    ("gradex.surrogate.x__lbfgs_block", [3], SQUARE.replace("matrix", "Gram matrix [d, d]")),
    ("gradex.surrogate.x__lbfgs_block", [62], PLUS_MINUS_ONE),
    ("gradex.surrogate.x__lbfgs_block", [127, 128, 129, 131, 134], PERF_LBFGS),
    ("gradex.surrogate.x__lbfgs_block", [186, 187, 188, 189, 203], PERF_LBFGS),
    ("gradex.surrogate.x__lbfgs_block", list(range(238, 254)), NON_DESCENT),
    ("gradex.surrogate.x__lbfgs_block", [289, 291, 293, 294, 295, 301], PERF_LBFGS),
    ("gradex.surrogate.x__lbfgs_block", [304, 305, 306, 307, 308, 309], GIVE_UP),
    ("gradex.surrogate.x__lbfgs_block", [321, 323, 325, 327], PERF_LBFGS),
    ("gradex.surrogate.x__lbfgs_block", [336, 344, 356],
     "Equivalent: for a rejected curvature pair ρ = 0 (or s = y = 0), so the history slot contributes "
     "nothing to the two-loop recursion and γ falls back to 1 either way."),
    ("gradex.surrogate.x__lbfgs_block", [363, 364, 366, 367, 368, 369], WARN_EDGE),
    ("gradex.surrogate.x__lbfgs_block", [377], STACKLEVEL),
    # gradex/scores.py
    ("gradex.scores.x_task_eval_seed", [6],
     "Equivalent: SeedSequence.generate_state(n) returns the first n words of one stream, so word 0 is the "
     "same for n = 1 and n = 2 (checked for 2500 seeds)."),
    ("gradex.scores.x_objective_change_stderr", [57],
     "Equivalent: torch's std is unbiased (correction 1) by default."),
    # gradex/subsets.py
    ("gradex.subsets.x__own_seed", [4], RNG_SAME),
    ("gradex.subsets.x_sample_subsets", [40, 99], RNG_SAME),
    ("gradex.subsets.x_sample_subsets", [66],
     "Equivalent: the last pass of the loop raises before the extra pass could run."),
    ("gradex.subsets.x_sample_subsets", [96, 106],
     "Equivalent: a top-up of size 2 then draws 0 extra tasks, which consumes no random numbers (the pinned "
     "seeds of size-2 top-ups are unchanged)."),
    ("gradex.subsets.x_sample_subsets", [109, 111], DTYPE),
    ("gradex.subsets.x_sample_subsets", [135, 136, 137], UNREACHABLE),
    # gradex/projection.py
    ("gradex.projection.x__chunk_seed", [5], DTYPE),
    ("gradex.projection.x__chunk_seed", [10, 12, 17], CPU_SEED_BITS),
    ("gradex.projection.xǁGaussianProjectionǁ_full", [9], PERF_WORK),
    ("gradex.projection.xǁGaussianProjectionǁ_full", [3, 15, 16], DEVICE),
    # gradex/affinity.py
    ("gradex.affinity.x__check", [3, 5], DTYPE),
    ("gradex.affinity.x_affinity", [44], DTYPE),
    ("gradex.affinity.x_affinity", [31], "Equivalent: standardize=True is task_model's default."),
    ("gradex.affinity.x_subset_scores", [9, 10, 11, 12],
     "Equivalent: the guarded division is by max(size, 1), so no invalid or divide warning can arise."),
    ("gradex.affinity.x_task_zscores", [41], BOUNDARY),
    ("gradex.affinity.x_task_model", [19, 21, 69], DTYPE),
    ("gradex.affinity.x_no_signal_tasks", [17, 19], DTYPE),
    ("gradex.affinity.x_no_signal_tasks", [42, 45],
     "Equivalent with the installed numpy: np.unique(..., axis=0, return_inverse=True) returns a 1-D "
     "inverse already (the reshape guards numpy 2.0.0, whose inverse kept the reduced axis); numpy "
     "accepts reshape(None) and reshape(-2) of a 1-D array unchanged."),
    ("gradex.affinity.x_task_model", [39], "Equivalent: None stored into a float64 array is NaN."),
    ("gradex.affinity.x_task_model", [53], BOUNDARY),
    ("gradex.affinity.x_task_model", [81],
     "Equivalent: the design's columns are centred, so they are orthogonal to any constant added to the "
     "target; least squares gives the same coefficients (and the intercept does not use the target)."),
    ("gradex.affinity.x_task_model", [95], "Equivalent: rcond=None is numpy's default for lstsq."),
    # gradex/features.py
    ("gradex.features.x_per_sample_grads", [1],
     "Equivalent: per-sample gradients do not depend on how many samples one vmap call takes (tested)."),
    ("gradex.features.x_projected_grads", [1, 13],
     "Equivalent: per-sample gradients do not depend on how many samples one vmap call takes (tested)."),
    ("gradex.features.x_perturbed_policy", [9],
     "Equivalent: unflatten casts every parameter back to its own dtype (float32), so adding a float64 Δθ "
     "first rounds the same way."),
    # grouping/baselines.py
    ("grouping.baselines.x_random_partition", [13, 29],
     "Equivalent: for k = 1 the cut draw has size 0, consumes no random numbers, and gives no cuts."),
    ("grouping.baselines.x_random_partition", [17], RNG_SAME),
    ("grouping.baselines.x_tag_lookahead", [35], BOUNDARY),
    ("grouping.baselines.x_tag_lookahead", [45, 47], DTYPE),
    ("grouping.baselines.x_tag_lookahead", [57], "Equivalent: float('NAN') is NaN."),
    # grouping/cluster.py
    ("grouping.cluster.x_canonical_partition", [2, 4],
     "Equivalent: disjoint nonempty sorted groups compare by their first element anyway."),
    ("grouping.cluster.x_canonical_partition", [9, 11, 12], EMPTY_GROUP),
    ("grouping.cluster.x__check_affinity", [3, 5], DTYPE),
    ("grouping.cluster.x__check_affinity", [13], SQUARE),
    ("grouping.cluster.x__check_affinity", [27], BOUNDARY),
    ("grouping.cluster.x_partition_objective", [4], SQUARE),
    ("grouping.cluster.x__local_search", [4, 5, 11, 103, 105], BOUNDARY),
    ("grouping.cluster.x__local_search", [19, 24],
     "Unreachable: max_rounds is never passed, and no search needs 10·n² rounds (each accepted step raises "
     "the objective)."),
    ("grouping.cluster.x__local_search", [63],
     "Equivalent in effect: moves out of singleton groups become NaN instead of −inf; NaN is never the "
     "maximum chosen, and the search then ends through swaps or the round cap with the same partition."),
    ("grouping.cluster.x__iterated_local_search", [16, 17, 23, 55], BOUNDARY),
    ("grouping.cluster.x__iterated_local_search", [28], "Equivalent: None is as falsy as False."),
    ("grouping.cluster.x__iterated_local_search", [32, 34], LOCAL_SEARCH_SAFE),
    ("grouping.cluster.x__kmeans", [4, 6, 18], DTYPE),
    ("grouping.cluster.x__kmeans", [14, 17], KMEANS_SEED),
    ("grouping.cluster.x__solve_sdp", [2], SQUARE),
    ("grouping.cluster.x__solve_sdp", [62, 64], DTYPE),
    ("grouping.cluster.x_sdp_cluster", [4], SQUARE),
    ("grouping.cluster.x_sdp_cluster", [60],
     "Not resolved: scaling the embedding's columns with eigenvalue < 1 up to 1 changes distances, but "
     "k-means followed by the iterated local search ends in the same partition on every test instance."),
    ("grouping.cluster.x_sdp_cluster", [70, 74], KMEANS_SEED),
    ("grouping.cluster.x__all_labelings", [3, 5, 10, 12, 41, 44], DTYPE),
    ("grouping.cluster.x__all_labelings", [31, 32],
     "Performance only: weaker pruning enumerates labellings with fewer than k groups, which the final "
     "filter drops."),
    ("grouping.cluster.x_exhaustive_cluster", [4], SQUARE),
    ("grouping.cluster.x_exhaustive_cluster", [19],
     "Equivalent: the first batch always replaces the initial −inf, so the initial row index is never used."),
    ("grouping.cluster.x_exhaustive_cluster", [21, 27], PERF_WORK),
    ("grouping.cluster.x_exhaustive_cluster", [42, 56], SCALE_INVARIANT),
    ("grouping.cluster.x_exhaustive_cluster", [49, 54, 57],
     "Equivalent: einsum's `optimize` only chooses the contraction order."),
    ("grouping.cluster.x_spectral_cluster", [1, 70], KMEANS_SEED),
    ("grouping.cluster.x_cluster", [3, 16, 19], KMEANS_SEED),
    ("grouping.cluster.x_spectral_cluster", [5], SQUARE),
    ("grouping.cluster.x_spectral_cluster", [18], SCALE_INVARIANT),
    ("grouping.cluster.x_spectral_cluster", [24, 30],
     "Equivalent: the floor only matters for a task of degree 0, whose row of the normalised matrix is 0 "
     "whatever it is divided by."),
    ("grouping.cluster.x_spectral_cluster", [58, 60],
     "Equivalent in effect: only changes rows of the embedding whose norm is 0 (0 / 2 = 0), which the "
     "top-k eigenvectors of these matrices do not have."),
    ("grouping.cluster.x_spectral_cluster", [62],
     "Equivalent: spectral k-means always sees at least k distinct rows (the embedding has rank k), so "
     "_repair never reads U."),
]

# Rules on the change itself, tried after the names above.
RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"device=None|device = None|\.to\(None\)|_full\(None\)"), DEVICE),
    (re.compile(r"stacklevel"), STACKLEVEL),
    (re.compile(r"strict=(None|False)"), STRICT),
]


def _squash(line: str) -> str:
    return line.replace(" ", "").replace(",)", ")")


def _removed_device(diff: str) -> bool:
    """The mutant only drops a `device=...` argument."""
    minus = [ln[1:] for ln in diff.splitlines() if ln.startswith("-")]
    plus = [ln[1:] for ln in diff.splitlines() if ln.startswith("+")]
    if len(minus) != 1 or len(plus) != 1:
        return False
    dropped = re.sub(r"device=[\w.]+,\s*|,?\s*device=[\w.]+", "", minus[0], count=1)
    return _squash(dropped) == _squash(plus[0])


def explain(mutant: str, diff: str) -> str | None:
    """Why ``mutant`` (mutmut's name) survives, or None if it is not explained."""
    short = mutant.removeprefix("policygradex.")
    func, _, number = short.rpartition("__mutmut_")
    for name, numbers, reason in BY_NAME:
        if func == name and int(number) in numbers:
            return reason
    if _removed_device(diff):
        return DEVICE
    minus = " ".join(ln for ln in diff.splitlines() if ln.startswith("-"))
    plus = " ".join(ln for ln in diff.splitlines() if ln.startswith("+"))
    if "zip(" in minus and "strict=True" in minus and "strict" not in plus:
        return STRICT
    for pattern, reason in RULES:
        if any(pattern.search(ln) for ln in diff.splitlines() if ln.startswith("+")):
            return reason
    return None
