"""Why each surviving mutant survives (read by ``bench_mutation.py``; issue 17, item 5).

Every mutant that no test kills is explained here, by a rule on the change (for whole classes, such as
device arguments on a CPU-only machine) or by name. Each explanation says whether the mutant is
*equivalent* (no input can tell it apart), equivalent *on CPU*, or a *performance-only* change (the
result is the same within the documented tolerance, only the work or the number of iterations differs),
or a *safety net* no test reaches. A survivor that matches nothing is reported as not explained.
"""

from __future__ import annotations

import hashlib
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
    "iteration-budget tests (28 iterations, measured 25; the HARD_LOGISTIC budgets) do not resolve this one."
)
PRECOND_DTYPE = (
    "Performance only: chooses float32 or float64 for the preconditioner (or the eigenbasis it is built in), "
    "which only steers the steps (convergence is checked on float64 gradients)."
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
INT64 = "Equivalent: a tensor of Python ints is int64 (torch.long) by default."
MEMBER_FLOAT = (
    "Equivalent: the membership mask is only set with True, cast to float64 or tested for nonzero, which "
    "a float tensor of 0 and 1 does the same way."
)
BLOCKING = (
    "Performance only: changes how subsets are cut into blocks (the memory estimate of one subset, hence "
    "the block size) or which rows a block recomputes; fits do not depend on blocking (tested with one "
    "subset per block, and with one block)."
)
REJECTED_PAIR = (
    "Equivalent: for a rejected curvature pair ρ = 0 (or s = y = 0), so the history slot contributes "
    "nothing to the two-loop recursion and γ falls back to 1 either way."
)
CG_ALPHA = (
    "Equivalent in effect: pᵀH_S·p ≥ λ‖p‖² is positive unless p = 0 (a zero right-hand side: then p = H_S·p = 0) "
    "or ‖p‖ is so small (~1e-22 in float32, rows already far below their goal) that the products underflow "
    "to 0, rᵀz too; α then multiplies vectors below the float32 resolution of x (and 0 / tiny = 0)."
)
CG_BETA = (
    "Equivalent in effect: rᵀz = rᵀM⁻¹r is positive unless the residual is 0 (a zero right-hand side: then "
    "p = z = 0 from the start and β multiplies zeros; 0 / tiny = 0) or underflows; a nonpositive rᵀz with a "
    "nonzero residual did not occur on any test problem."
)
APPROX_2D = (
    "Unreachable: only the documented 2-D form v: [A, d] differs, and the only caller, _apply, always passes "
    "the 3-D residual [A, r, d] (no test or library call reaches the 2-D branch, checked by instrumenting it)."
)

# (module.function, mutant keys, explanation). mutmut numbers a function's mutants (`x_<function>__mutmut_<n>`)
# afresh whenever the function's code changes, so a number can name another mutant after any edit: each mutant
# is named here by key(its change) instead, which the table prints beside every unexplained survivor.
BY_NAME: list[tuple[str, list[str], str]] = [
    # gradex/surrogate.py
    ("gradex.surrogate.x__labels_and_weights", ["131dcf625a"], DTYPE),
    ("gradex.surrogate.x__labels_and_weights", ["e0c728408c"],
     "Equivalent: a transition with Â = 0 has weight |Â| = 0, so its label never matters."),
    ("gradex.surrogate.x_fit_logistic", ["a141e102f9"], DEFAULT_TUNING),
    ("gradex.surrogate.x_fit_logistic", ["88cb51f598", "3b8fd773fe"],
     "Equivalent: a float32 identity added to the float64 Hessian promotes exactly (its entries are 0 and 1)."),
    ("gradex.surrogate.x_fit_logistic", ["a533ad276c"], STACKLEVEL),
    ("gradex.surrogate.x_fit_logistic", ["46d52314f4"], PLUS_MINUS_ONE),
    ("gradex.surrogate.x_fit_logistic", ["ff3fcc082c", "cbedc78001", "6b688243bd"], BOUNDARY),
    ("gradex.surrogate.x_fit_logistic", ["5502814d85", "2dbe11c0b8", "59d76ec4db", "423abbe5f7", "27e78ea266"], ARMIJO_NEWTON),
    ("gradex.surrogate.x_fit_logistic", ["a1b0109e7a"],
     "Unreachable: the Armijo test has a 1e-15·|L| slack, so a tiny step is always accepted and the "
     "give-up `break` never runs (a fit asked for tol = 1e-300 exhausts max_iter and warns instead)."),
    ("gradex.surrogate.x_fit_subsets", ["cc57ef004f", "1a7be842da"], DEFAULT_TUNING),
    ("gradex.surrogate.x_fit_subsets", ["58564e8db9", "3fc5a22f53"], INT64),
    ("gradex.surrogate.x_fit_subsets", ["643215f908", "1b41c8adf8"], MEMBER_FLOAT),
    ("gradex.surrogate.x_fit_subsets", ["f4d2b461e5", "0bf3f5068c"], STRICT),
    ("gradex.surrogate.x_fit_subsets", ["a128219fdc"], PLUS_MINUS_ONE),
    # A memory estimate that can reach 0 (division by zero) is killed by a test; these only resize blocks
    # (the estimate stays positive).
    ("gradex.surrogate.x_fit_subsets",
     [
      "5d1a39b30c", "682a756ba1", "470f581a95", "4688ad7873", "6607b2dc8b", "4ed31689c5",
      "82560b98d6", "2f01d37561", "d6f21d5183", "137d80d178", "d81454b56f", "b304a01e2b",
      "a65245807b", "362438d518", "0a90d67a59", "f67b30791f",
     ], BLOCKING),
    ("gradex.surrogate.x_fit_subsets", ["6ecb42f3f0"],
     "Equivalent: the extra bound past the last block is never read (block b reads bounds[b] and bounds[b + 1], "
     "b < num_blocks)."),
    ("gradex.surrogate.x__task_basis", ["4b00c08d97"],
     "Equivalent: the pooled majoriser is multiplied by (Σ_i Σs_i)² instead of divided by Σ_i Σs_i, a positive "
     "factor that changes neither its eigenvectors nor their order (the basis only steers the preconditioner)."),
    ("gradex.surrogate.x__task_basis", ["052901e1ea", "1176710f06"],
     "Equivalent up to round-off: QᵀG_iQ is symmetric, so summing its squared entries over rows or over columns "
     "gives the same couplings."),
    ("gradex.surrogate.x__task_basis", ["fab4fde09e"], BOUNDARY),
    ("gradex.surrogate.x__task_grams", ["e318c156a2", "069630ae33", "a1c6782b83"], PRECOND_SCALE),
    ("gradex.surrogate.x__task_grams", [
      "31678e9cc6", "08fd335cfa", "4a86e90811", "d64aae5c9b", "901954462b", "68abec81a7",
     ], PRECOND_DTYPE),
    ("gradex.surrogate.x__task_basis", ["4c0e05f702"], PRECOND_DTYPE),
    ("gradex.surrogate.x__preconditioners", ["f93474d7d9"], PRECOND_DTYPE),
    ("gradex.surrogate.x__preconditioners", ["6b1df7ffdf"], DTYPE),  # bool · float64 is float64
    ("gradex.surrogate.x__preconditioners", ["1d1d924311", "f7624ec97b"], PRECOND_SCALE),
    ("gradex.surrogate.x__preconditioners", ["6fe18b87d5", "ea020dd439", "1074b94e90", "c8ce2d4ac5"], CHOLESKY),
    ("gradex.surrogate.x__approximate_inverse", ["896b53cfa6", "c9649fcc34"],
     "Equivalent: dense_inverse has shape [B, k, k], so shape[1], shape[-2] and shape[-1] are all k."),
    ("gradex.surrogate.x__approximate_inverse", ["6a3a539822"],
     "Equivalent: rows of full length B are arange(B) (the block's active subsets, in order, as _apply passes "
     "them), so indexing gives the same matrices, with one copy more."),
    ("gradex.surrogate.x__approximate_inverse", ["f234e6a5a0", "d8f6faa974", "436db00b5a"], APPROX_2D),
    ("gradex.surrogate.x__apply", ["81a469e240", "b8130dd694", "3452bd8f8d"],
     "Performance only: picks between two ways of computing the same batched product."),
    ("gradex.surrogate.x__apply", ["2e203af7ed"], PRECOND_SCALE),
    ("gradex.surrogate.x__apply", ["9b32063106"],
     "Equivalent: squeeze(2) only removes a dimension of size 1, which the stacked two-vector case does not "
     "have."),
    ("gradex.surrogate.x__apply", ["7a5eae0483", "f7f7e340ad"], CG_ALPHA),
    ("gradex.surrogate.x__apply", ["757dc33bde", "a9ef0ab2d1"], CG_BETA),
    ("gradex.surrogate.x__apply", ["4e483e857e"],
     "Performance only: β is dropped whenever rᵀz ≤ 1, which turns those conjugate-gradient steps into "
     "preconditioned steepest descent; the solves still reach their residual goal (one step later on the "
     "measured 150-dimensional problem: 8 instead of 7) and only steer the L-BFGS steps."),
    # The device arguments are explained by the rules below.
    ("gradex.surrogate.x__lbfgs_block", ["1afbd00500"], DEVICE),
    ("gradex.surrogate.x__lbfgs_block", ["9b3b89ff36"], PLUS_MINUS_ONE),
    ("gradex.surrogate.x__lbfgs_block", ["26deb15483"],
     "Equivalent: the initial loss is only the Armijo reference of the first step, which minimises the Böhning "
     "quadratic upper bound of L_S and so decreases L_S by at least ½·gᵀH_S⁻¹g, far more than the 1e-4·gᵀH_S⁻¹g "
     "asked: the full step is accepted against log 2 and against log 3 alike (the give-up path, the other "
     "reader, is not reached)."),
    ("gradex.surrogate.x__lbfgs_block", ["af22609355"],
     "Equivalent unless the give-up path ran (see GIVE_UP): a subset marked done by the gradient test is "
     "frozen (w and ∇L unchanged), so re-evaluating the test gives True again; only a give-up flag would be "
     "forgotten."),
    ("gradex.surrogate.x__lbfgs_block", ["b3d5563451", "f48934e48d", "51f2cfd82a"],
     "Equivalent on every test problem (checked by instrumenting): ρ > 0 and yᵀM⁻¹y > 0 hold together, as a "
     "kept pair has ρ > 0 and y ≠ 0 (M positive definite) and a rejected one ρ = 0 and y = 0; they could only "
     "differ for a y that underflows in the float32 preconditioner."),
    ("gradex.surrogate.x__lbfgs_block", [
      "f32c8e0eea", "4e19a079f7", "111c02eda7", "0c75ff36de", "437d53fb82", "ce3fc5f725",
     ], PERF_LBFGS),
    ("gradex.surrogate.x__lbfgs_block", [
      "cea004bcce", "f3d17f215b", "37238cdd4d", "f3a5a0d728", "890ec071b3", "a82c284933",
      "1212c2c3b0", "f083ccf048", "6551504920", "4d49080756", "f73ee70b9d", "7894f8324c",
      "52a146d1f7", "03e6f7a613", "0ba6ccf949", "38b10a3ac9",
     ], NON_DESCENT),
    ("gradex.surrogate.x__lbfgs_block", ["4eca247541"], BOUNDARY),
    ("gradex.surrogate.x__lbfgs_block", [
      "6fbeea9581", "cb16a4cebc", "1682021960", "dc1e42679d", "114db583b6", "4871007f18",
     ], GIVE_UP),
    ("gradex.surrogate.x__lbfgs_block", ["ca4b442cea"],
     "Equivalent in effect: curv equals the threshold only when Δg = 0 exactly (curv = 0 = 1e-12·‖Δw‖·0), i.e. "
     "the step left w unchanged at float64 resolution (only in the fit asked for tol = 1e-300); the pair then "
     "kept (ρ = 1e300, y = 0) makes the next direction huge, the line search finds no decrease, and the "
     "give-up path stops the subset at the same w."),
    ("gradex.surrogate.x__lbfgs_block", ["4c86ed7287", "e2705853f6", "33beb0f27e"], REJECTED_PAIR),
    ("gradex.surrogate.x__lbfgs_block", ["344b5a47ba"], BOUNDARY),
    ("gradex.surrogate.x__lbfgs_block", ["03a4da9687"], STACKLEVEL),
    # gradex/scores.py
    ("gradex.scores.x_task_eval_seed", ["eebe1f1ad1"],
     "Equivalent: SeedSequence.generate_state(n) returns the first n words of one stream, so word 0 is the "
     "same for n = 1 and n = 2 (checked for 2500 seeds)."),
    ("gradex.scores.x_objective_change_stderr", ["655b9ee04d"],
     "Equivalent: torch's std is unbiased (correction 1) by default."),
    # gradex/subsets.py
    ("gradex.subsets.x__own_seed", ["9a15aae254"], RNG_SAME),
    ("gradex.subsets.x_sample_subsets", ["6a135c3745", "40c4c26d51"], RNG_SAME),
    ("gradex.subsets.x_sample_subsets", ["57f14dd217"],
     "Equivalent: the last pass of the loop raises before the extra pass could run."),
    ("gradex.subsets.x_sample_subsets", ["af5c070895", "67c541b25a"],
     "Equivalent: a top-up of size 2 then draws 0 extra tasks, which consumes no random numbers (the pinned "
     "seeds of size-2 top-ups are unchanged)."),
    ("gradex.subsets.x_sample_subsets", ["b70489786e", "d0ef5085fb"], DTYPE),
    ("gradex.subsets.x_sample_subsets", ["3f0bd3c781", "fc47484d08", "580e60a24e"], UNREACHABLE),
    # gradex/projection.py
    ("gradex.projection.x__chunk_seed", ["8dd2337587"], DTYPE),
    ("gradex.projection.x__chunk_seed", ["2838a69d13", "531af6f464", "ba5b79abc2"], CPU_SEED_BITS),
    ("gradex.projection.xǁGaussianProjectionǁ_full", ["b6112ba576"], PERF_WORK),
    ("gradex.projection.xǁGaussianProjectionǁ_full", ["fc546b125f", "ef2e7faa99", "62c7c1f1d6"], DEVICE),
    # gradex/affinity.py
    ("gradex.affinity.x__check", ["123332bca4", "256c093fc3"], DTYPE),
    ("gradex.affinity.x_affinity", ["5ef1d9bd05"], DTYPE),
    ("gradex.affinity.x_affinity", ["50a41b267b"], "Equivalent: standardize=True is task_model's default."),
    ("gradex.affinity.x_subset_scores", ["dfe79bd506", "8da2c68ff6", "8406884ad7", "c230083951"],
     "Equivalent: the guarded division is by max(size, 1), so no invalid or divide warning can arise."),
    ("gradex.affinity.x_task_zscores", ["5712e1436a"], BOUNDARY),
    ("gradex.affinity.x_task_model", ["dc47fab06b", "cf227b7aa4", "140a9d742f"], DTYPE),
    ("gradex.affinity.x_no_signal_tasks", ["2e5f686096", "7fe8e189a9"], DTYPE),
    ("gradex.affinity.x_no_signal_tasks", ["16334f8b91", "098eeb9a8b"],
     "Equivalent with the installed numpy: np.unique(..., axis=0, return_inverse=True) returns a 1-D "
     "inverse already (the reshape guards numpy 2.0.0, whose inverse kept the reduced axis); numpy "
     "accepts reshape(None) and reshape(-2) of a 1-D array unchanged."),
    ("gradex.affinity.x_task_model", ["aad0e8226c"], "Equivalent: None stored into a float64 array is NaN."),
    ("gradex.affinity.x_task_model", ["dd71c48093"], BOUNDARY),
    ("gradex.affinity.x_task_model", ["9f4258e342"],
     "Equivalent: the design's columns are centred, so they are orthogonal to any constant added to the "
     "target; least squares gives the same coefficients (and the intercept does not use the target)."),
    ("gradex.affinity.x_task_model", ["21d0335ae6"], "Equivalent: rcond=None is numpy's default for lstsq."),
    # gradex/features.py
    ("gradex.features.x_per_sample_grads", ["ed56b8bd97"],
     "Equivalent: per-sample gradients do not depend on how many samples one vmap call takes (tested)."),
    ("gradex.features.x_projected_grads", ["48bdbd26e4"],
     "Equivalent: per-sample gradients do not depend on how many samples one vmap call takes (tested)."),
    ("gradex.features.x_perturbed_policy", ["a5299f7d15"],
     "Equivalent: unflatten casts every parameter back to its own dtype (float32), so adding a float64 Δθ "
     "first rounds the same way."),
    # grouping/baselines.py
    ("grouping.baselines.x_random_partition", ["e227e44036", "680c484cf4"],
     "Equivalent: for k = 1 the cut draw has size 0, consumes no random numbers, and gives no cuts."),
    ("grouping.baselines.x_random_partition", ["8afe471ca3"], RNG_SAME),
    ("grouping.baselines.x_tag_lookahead", ["ac338c6a71"], BOUNDARY),
    ("grouping.baselines.x_tag_lookahead", ["891b217e74", "1b8984b7b5"], DTYPE),
    ("grouping.baselines.x_tag_lookahead", ["919a995e5b"], "Equivalent: float('NAN') is NaN."),
    # grouping/cluster.py
    ("grouping.cluster.x_canonical_partition", ["93ad6ca6bf", "538e554cf4"],
     "Equivalent: disjoint nonempty sorted groups compare by their first element anyway."),
    ("grouping.cluster.x_canonical_partition", ["5e9d5132bf", "4ff037fa25", "535bb46d4a"], EMPTY_GROUP),
    ("grouping.cluster.x__check_affinity", ["a3010f522a", "82d70048b9"], DTYPE),
    ("grouping.cluster.x__check_affinity", ["6387a53e23"], SQUARE),
    ("grouping.cluster.x__check_affinity", ["3ad90c60f2"], BOUNDARY),
    ("grouping.cluster.x_partition_objective", ["a72a3be181"], SQUARE),
    ("grouping.cluster.x__local_search", ["a767420f5a", "5969f0619f", "1c3ac8e8ed", "0781834665", "3f82c05758"], BOUNDARY),
    ("grouping.cluster.x__local_search", ["cc6714aecc", "647ae686e8"],
     "Unreachable: max_rounds is never passed, and no search needs 10·n² rounds (each accepted step raises "
     "the objective)."),
    ("grouping.cluster.x__local_search", ["de02c08915"],
     "Equivalent in effect: moves out of singleton groups become NaN instead of −inf; NaN is never the "
     "maximum chosen, and the search then ends through swaps or the round cap with the same partition."),
    ("grouping.cluster.x__iterated_local_search", ["39e6941c7d", "b4f9f18606", "bab614fe77", "5dbd8ac7fc"], BOUNDARY),
    ("grouping.cluster.x__iterated_local_search", ["bda6eb65ce"], "Equivalent: None is as falsy as False."),
    ("grouping.cluster.x__iterated_local_search", ["1b575d5366", "ad419ccabe"], LOCAL_SEARCH_SAFE),
    ("grouping.cluster.x__kmeans", ["db7e244e80", "5ba6997ab3", "0d64253dcd"], DTYPE),
    ("grouping.cluster.x__kmeans", ["ddc600d45d", "4443f782a1"], KMEANS_SEED),
    ("grouping.cluster.x__solve_sdp", ["a72a3be181"], SQUARE),
    ("grouping.cluster.x__solve_sdp", ["a61ff7ed17", "e9bc348388"], DTYPE),
    ("grouping.cluster.x_sdp_cluster", ["a72a3be181"], SQUARE),
    ("grouping.cluster.x_sdp_cluster", ["a33045a484"],
     "Not resolved: scaling the embedding's columns with eigenvalue < 1 up to 1 changes distances, but "
     "k-means followed by the iterated local search ends in the same partition on every test instance."),
    ("grouping.cluster.x_sdp_cluster", ["df733d1df3", "71acc4a9b3"], KMEANS_SEED),
    ("grouping.cluster.x__all_labelings", [
      "ac656ec92d", "5f52d790cf", "bc311a8e01", "9b04b66098", "f25df18b21", "96687b9fa7",
     ], DTYPE),
    ("grouping.cluster.x__all_labelings", ["49c3f3ebf7", "49dd22b5de"],
     "Performance only: weaker pruning enumerates labellings with fewer than k groups, which the final "
     "filter drops."),
    ("grouping.cluster.x_exhaustive_cluster", ["a72a3be181"], SQUARE),
    ("grouping.cluster.x_exhaustive_cluster", ["d33c32e346"],
     "Equivalent: the first batch always replaces the initial −inf, so the initial row index is never used."),
    ("grouping.cluster.x_exhaustive_cluster", ["b8e0b3e997", "0817e99aa4"], PERF_WORK),
    ("grouping.cluster.x_exhaustive_cluster", ["ae66d102ec", "0f0be584c7"], SCALE_INVARIANT),
    ("grouping.cluster.x_exhaustive_cluster", ["1efe4fa067", "c0d19c466d", "951186d211"],
     "Equivalent: einsum's `optimize` only chooses the contraction order."),
    ("grouping.cluster.x_spectral_cluster", ["4c96365e3b", "1c9b3a4dad"], KMEANS_SEED),
    ("grouping.cluster.x_cluster", ["ab466950e8", "5f7d510905", "785177628e"], KMEANS_SEED),
    ("grouping.cluster.x_spectral_cluster", ["a72a3be181"], SQUARE),
    ("grouping.cluster.x_spectral_cluster", ["9b7243cb60"], SCALE_INVARIANT),
    ("grouping.cluster.x_spectral_cluster", ["027c06f558", "70518007d4"],
     "Equivalent: the floor only matters for a task of degree 0, whose row of the normalised matrix is 0 "
     "whatever it is divided by."),
    ("grouping.cluster.x_spectral_cluster", ["e0a0920fe7", "f94dcf9b10"],
     "Equivalent in effect: only changes rows of the embedding whose norm is 0 (0 / 2 = 0), which the "
     "top-k eigenvectors of these matrices do not have."),
    ("grouping.cluster.x_spectral_cluster", ["4959d2f1c8"],
     "Equivalent: spectral k-means always sees at least k distinct rows (the embedding has rank k), so "
     "_repair never reads U."),
]

# Rules on the change itself, tried after the names above.
RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"device=None|device = None|_full\(None\)"), DEVICE),
    (re.compile(r"stacklevel"), STACKLEVEL),
    (re.compile(r"strict=(None|False)"), STRICT),
]


def _squash(line: str) -> str:
    return line.replace(" ", "").replace(",)", ")")


def _device_to_none(diff: str) -> bool:
    """The mutant turns ``.to(<a device>)`` into ``.to(None)`` (a ``.to(<dtype>)`` changes the dtype: not this)."""
    minus = " ".join(ln for ln in diff.splitlines() if ln.startswith("-"))
    plus = " ".join(ln for ln in diff.splitlines() if ln.startswith("+"))
    return ".to(None)" in plus and re.search(r"\.to\([\w.]*device\)", minus) is not None


def _removed_device(diff: str) -> bool:
    """The mutant only drops a `device=...` argument."""
    minus = [ln[1:] for ln in diff.splitlines() if ln.startswith("-")]
    plus = [ln[1:] for ln in diff.splitlines() if ln.startswith("+")]
    if len(minus) != 1 or len(plus) != 1:
        return False
    dropped = re.sub(r"device=[\w.]+,\s*|,?\s*device=[\w.]+", "", minus[0], count=1)
    return _squash(dropped) == _squash(plus[0])


def key(diff: str) -> str:
    """A mutant's name for BY_NAME: the first 10 hex digits of the SHA-1 of its changed lines ("-" and "+",
    stripped), which stays the same when mutmut renumbers the function's mutants."""
    lines = [ln[0] + ln[1:].strip() for ln in diff.splitlines() if ln.startswith(("-", "+"))]
    return hashlib.sha1("\n".join(lines).encode()).hexdigest()[:10]


def explain(mutant: str, diff: str) -> str | None:
    """Why ``mutant`` (mutmut's name) survives, or None if it is not explained."""
    short = mutant.removeprefix("policygradex.")
    func = short.rpartition("__mutmut_")[0]
    mutant_key = key(diff)
    for name, keys, reason in BY_NAME:
        if func == name and mutant_key in keys:
            return reason
    if _removed_device(diff) or _device_to_none(diff):
        return DEVICE
    minus = " ".join(ln for ln in diff.splitlines() if ln.startswith("-"))
    plus = " ".join(ln for ln in diff.splitlines() if ln.startswith("+"))
    if "zip(" in minus and "strict=True" in minus and "strict" not in plus:
        return STRICT
    for pattern, reason in RULES:
        if any(pattern.search(ln) for ln in diff.splitlines() if ln.startswith("+")):
            return reason
    return None
