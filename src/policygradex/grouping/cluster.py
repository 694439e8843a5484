"""Partitions of tasks from an affinity matrix U (paper §2.7).

A partition is a ``list[list[int]]`` in canonical form: each group sorted, groups sorted by their
first element. Its value is the discrete objective

    partition_objective(U, groups) = Σ_g (1/|g|) Σ_{i,j∈g} U_ij = ⟨U, X_groups⟩,

where X_groups is the normalised cluster matrix (1/|g| on the block of group g, 0 elsewhere). Such
an X is PSD, nonnegative, has rows summing to 1 and trace k, which gives the SDP relaxation solved
by :func:`sdp_cluster`. Adding a constant c to U adds c·n to every objective, so only differences
between affinities matter; the trace penalty λ is in the units of U.

cvxpy and scikit-learn are imported inside the functions that need them: each costs about a second
to import and most users of this module only call one method.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from policygradex.errors import ConfigError

_SYMMETRY_TOL = 1e-8
_EXHAUSTIVE_MAX_N = 12
_KMEANS_RESTARTS = 10


@dataclass(frozen=True, eq=False)
class ClusterResult:
    """A partition of the tasks and how it was found.

    Attributes:
        groups: the partition, canonical (groups sorted, ordered by first element).
        method: ``"sdp"``, ``"spectral"`` or ``"exhaustive"``.
        objective: ``partition_objective(U, groups)``.
        X: the SDP relaxation's optimal matrix, shape ``[n, n]`` (None for the other methods).
        k: number of groups.
        relaxation_value: ⟨U, X⟩ at the SDP optimum; for the fixed-k SDP an upper bound on the best
            objective of any k-group partition (None for the other methods).
    """

    groups: list[list[int]]
    method: str
    objective: float
    X: np.ndarray | None
    k: int
    relaxation_value: float | None = None


def canonical_partition(groups: Sequence[Sequence[int]]) -> list[list[int]]:
    """Canonical form of a partition: each group sorted, groups sorted by first element.

    Args:
        groups: disjoint nonempty groups of task indices.

    Returns:
        The same partition as a new ``list[list[int]]``.
    """
    return sorted((sorted(int(i) for i in g) for g in groups), key=lambda g: g[0] if g else -1)


def _labels_to_groups(labels: np.ndarray) -> list[list[int]]:
    groups: dict[int, list[int]] = {}
    for i, label in enumerate(labels.tolist()):
        groups.setdefault(int(label), []).append(i)
    return canonical_partition(list(groups.values()))


def _check_affinity(U: np.ndarray) -> np.ndarray:
    u = np.asarray(U, dtype=np.float64)
    if u.ndim != 2 or u.shape[0] != u.shape[1] or u.shape[0] == 0:
        raise ConfigError(f"affinity matrix has shape {u.shape}; pass a nonempty square [n, n] array.")
    if not np.isfinite(u).all():
        raise ConfigError("affinity matrix contains NaN or inf; recompute it from fully covered subsets.")
    gap = float(np.abs(u - u.T).max())
    if gap > _SYMMETRY_TOL * max(1.0, float(np.abs(u).max())):
        raise ConfigError(
            f"affinity matrix is not symmetric (max |U - Uᵀ| = {gap:.3g}); pass (U + U.T) / 2 if that is intended."
        )
    return 0.5 * (u + u.T)


def _check_k(k: int, n: int) -> int:
    if isinstance(k, bool) or int(k) != k or not 1 <= int(k) <= n:
        raise ConfigError(f"k={k} groups is impossible for n={n} tasks; choose 1 <= k <= {n}.")
    return int(k)


def partition_objective(U: np.ndarray, groups: Sequence[Sequence[int]]) -> float:
    """Σ_g (1/|g|) Σ_{i,j∈g} U_ij, i.e. ⟨U, X⟩ for the normalised cluster matrix X of ``groups``.

    Args:
        U: affinity, shape ``[n, n]`` (symmetrised).
        groups: a partition of ``range(n)``.

    Returns:
        The objective.

    Raises:
        ConfigError: if U is invalid or ``groups`` is not a partition of ``range(n)`` into nonempty groups.
    """
    u = _check_affinity(U)
    n = u.shape[0]
    flat = [int(i) for g in groups for i in g]
    if any(len(g) == 0 for g in groups) or sorted(flat) != list(range(n)):
        raise ConfigError(
            f"groups {[list(g) for g in groups]} are not a partition of the {n} tasks into nonempty groups; "
            "list every task index exactly once."
        )
    return float(sum(u[np.ix_(list(g), list(g))].sum() / len(g) for g in groups))


def _group_stats(u: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row sums R[i, g] = Σ_{j∈g} U_ij ``[n, k]``, within sums S_g ``[k]`` and sizes ``[k]``."""
    onehot = np.zeros((len(labels), k))
    onehot[np.arange(len(labels)), labels] = 1.0
    rows = u @ onehot
    return rows, (onehot * rows).sum(0), onehot.sum(0)


def _repair(u: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Relabel to 0..k'−1 and, while k' < k, split off the task whose move to a new singleton group
    costs least (deterministic). Returns labels with exactly k nonempty groups."""
    _, labels = np.unique(labels, return_inverse=True)
    labels = labels.astype(np.int64)
    used = int(labels.max()) + 1
    while used < k:
        rows, within, size = _group_stats(u, labels, used)
        own = labels
        c = size[own]
        movable = c > 1
        # Objective change of moving i from its group a into a new group {i}.
        rest = (within[own] - 2 * rows[np.arange(len(u)), own] + np.diag(u)) / np.maximum(c - 1, 1)
        delta = np.diag(u) + rest - within[own] / c
        delta[~movable] = -np.inf
        i = int(np.argmax(delta))
        labels[i] = used
        used += 1
    return labels


def _local_search(u: np.ndarray, labels: np.ndarray, k: int, max_rounds: int | None = None) -> np.ndarray:
    """Best-improvement local search over single moves and pairwise swaps, keeping k nonempty groups.

    Every accepted step raises the objective by more than a tiny tolerance, so it terminates.
    """
    n = len(labels)
    labels = labels.copy()
    tol = 1e-12 * max(1.0, float(np.abs(u).max())) * n
    diag = np.diag(u)
    idx = np.arange(n)
    for _ in range(max_rounds if max_rounds is not None else 10 * n * n):
        rows, within, size = _group_stats(u, labels, k)
        a = labels
        ca = size[a]
        removed = (within[a] - 2 * rows[idx, a] + diag) / np.maximum(ca - 1, 1)  # S_a'/c_a'
        # Moves: i from a to b.
        added = (within[None, :] + 2 * rows + diag[:, None]) / (size[None, :] + 1)  # S_b'/c_b' [n, k]
        move = removed[:, None] + added - (within[a] / ca)[:, None] - (within / size)[None, :]
        move[idx, a] = -np.inf
        move[ca == 1, :] = -np.inf
        # Swaps: i ∈ a with j ∈ b, a ≠ b (sizes unchanged).
        b = labels
        gain_a = (
            -(2 * rows[idx[:, None], a[:, None]] - diag[:, None])
            + 2 * (rows[idx[None, :], a[:, None]] - u)
            + diag[None, :]
        ) / ca[:, None]
        gain_b = (
            -(2 * rows[idx[None, :], b[None, :]] - diag[None, :])
            + 2 * (rows[idx[:, None], b[None, :]] - u)
            + diag[:, None]
        ) / size[b][None, :]
        swap = gain_a + gain_b
        swap[a[:, None] == b[None, :]] = -np.inf
        best_move = float(move.max())
        best_swap = float(swap.max())
        if max(best_move, best_swap) <= tol:
            break
        if best_move >= best_swap:
            i, g = np.unravel_index(int(np.argmax(move)), move.shape)
            labels[i] = g
        else:
            i, j = np.unravel_index(int(np.argmax(swap)), swap.shape)
            labels[i], labels[j] = labels[j], labels[i]
    return labels


def _objective_of(u: np.ndarray, labels: np.ndarray, k: int) -> float:
    _, within, size = _group_stats(u, labels, k)
    return float((within / size).sum())


def _iterated_local_search(u: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Local search, then kicks: force each single move (even a worsening one), re-run the local
    search, keep the result if it is better; repeat until no kick helps. Deterministic."""
    labels = _local_search(u, labels, k)
    best = _objective_of(u, labels, k)
    tol = 1e-12 * max(1.0, float(np.abs(u).max())) * len(u)
    improved = True
    while improved:
        improved = False
        for i in range(len(u)):
            for g in range(k):
                if labels[i] == g or np.count_nonzero(labels == labels[i]) == 1:
                    continue
                trial = labels.copy()
                trial[i] = g
                trial = _local_search(u, trial, k)
                value = _objective_of(u, trial, k)
                if value > best + tol:
                    labels, best, improved = trial, value, True
    return labels


def _kmeans(points: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    if k == 1:
        return np.zeros(len(points), dtype=np.int64)
    # Identical rows (e.g. an exactly block-structured X) make k-means warn about fewer distinct
    # clusters than k; _repair handles that case, so the warning is noise.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = KMeans(n_clusters=k, n_init=_KMEANS_RESTARTS, random_state=seed).fit(points)
    return model.labels_.astype(np.int64)


def _pick_solver(solver: str | None) -> str:
    import cvxpy as cp

    installed = cp.installed_solvers()
    if solver is not None:
        if solver.upper() not in installed:
            raise ConfigError(
                f"SDP solver {solver!r} is not installed; use one of {sorted(installed)} or leave it unset."
            )
        return solver.upper()
    for name in ("CLARABEL", "SCS"):
        if name in installed:
            return name
    raise ConfigError(
        "neither Clarabel nor SCS is installed for the SDP; install cvxpy with its default solvers."
    )


def _solve_sdp(
    u: np.ndarray, k: int | None, lam: float | None, solver: str | None
) -> tuple[np.ndarray, float]:
    """Solve the relaxation; returns (X ``[n, n]``, ⟨U, X⟩)."""
    import cvxpy as cp

    n = u.shape[0]
    x = cp.Variable((n, n), PSD=True)
    constraints = [x >= 0, cp.sum(x, axis=1) == 1]
    value = cp.sum(cp.multiply(u, x))
    if k is not None:
        constraints.append(cp.trace(x) == k)
        objective = cp.Maximize(value)
    else:
        objective = cp.Maximize(value - lam * cp.trace(x))
    problem = cp.Problem(objective, constraints)
    chosen = _pick_solver(solver)
    candidates = [chosen] if solver is not None else [chosen] + [s for s in ("SCS",) if s != chosen]
    for name in candidates:
        try:
            problem.solve(solver=name)
        except cp.error.SolverError:
            continue
        if problem.status in ("optimal", "optimal_inaccurate") and x.value is not None:
            sol = np.asarray(x.value, dtype=np.float64)
            sol = np.clip(0.5 * (sol + sol.T), 0.0, None)
            return sol, float((u * sol).sum())
    raise RuntimeError(f"the SDP relaxation was not solved (status {problem.status!r}) by {candidates}.")


def sdp_cluster(
    U: np.ndarray,
    k: int | None = None,
    lam: float | None = None,
    solver: str | None = None,
) -> ClusterResult:
    """Cluster tasks with the SDP relaxation of the partition objective (paper §2.7).

    Relaxation: maximise ⟨U, X⟩ − λ·Tr X over symmetric X ⪰ 0, X ≥ 0, X·1 = 1 (trace-penalised: the
    penalty chooses k); or maximise ⟨U, X⟩ with Tr X = k (fixed k). Rounding always returns exactly k
    nonempty groups (for the penalised variant k = round(Tr X) clipped to [1, n]): k-means
    (fixed random_state, 10 restarts) on the spectral embedding of X (top-k eigenvectors scaled by
    √eigenvalue; an X made of blocks maps each block to one point), then empty groups are repaired by
    splitting off the cheapest task, then an iterated local search (best-improvement single moves and
    pairwise swaps, restarted after forcing each single move while that helps) raises the discrete
    objective while keeping k groups; it never lowers the objective of the k-means rounding.
    Thresholding X, which can return the wrong number of groups, is avoided on purpose.

    Args:
        U: affinity, shape ``[n, n]``, symmetric up to 1e-8 (it is symmetrised).
        k: number of groups (fixed-k variant).
        lam: trace penalty λ in the units of U (penalised variant); larger λ gives fewer groups.
        solver: a cvxpy solver name; default Clarabel if installed, else SCS.

    Returns:
        A :class:`ClusterResult` with ``method="sdp"``, X the relaxation's solution.

    Raises:
        ConfigError: on an invalid U, k, lam, both or neither of k and lam, or a missing solver.
    """
    u = _check_affinity(U)
    n = u.shape[0]
    if (k is None) == (lam is None):
        raise ConfigError(
            f"pass exactly one of k (fixed number of groups) and lam (trace penalty); got k={k}, lam={lam}."
        )
    if k is not None:
        k = _check_k(k, n)
    elif lam is not None and not np.isfinite(lam):
        raise ConfigError(f"lam={lam} must be a finite number in the units of U.")
    x, value = _solve_sdp(u, k, None if lam is None else float(lam), solver)
    if k is None:
        k = int(np.clip(round(float(np.trace(x))), 1, n))
    eigvals, eigvecs = np.linalg.eigh(x)
    top = np.argsort(eigvals)[::-1][:k]
    embedding = eigvecs[:, top] * np.sqrt(np.clip(eigvals[top], 0.0, None))
    labels = _repair(u, _kmeans(embedding, k, seed=0), k)
    labels = _iterated_local_search(u, labels, k)
    groups = _labels_to_groups(labels)
    return ClusterResult(
        groups=groups,
        method="sdp",
        objective=partition_objective(u, groups),
        X=x,
        k=k,
        relaxation_value=value,
    )


def spectral_cluster(U: np.ndarray, k: int, seed: int = 0) -> ClusterResult:
    """Normalised spectral clustering (Ng–Jordan–Weiss) of the shifted affinity.

    The affinity A = U − min(U) is nonnegative (shifting U does not change which partition is best);
    the top-k eigenvectors of D^{-1/2} A D^{-1/2}, rows normalised, are clustered by k-means
    (``random_state=seed``, 10 restarts), and empty groups are repaired so there are exactly k.

    Args:
        U: affinity, shape ``[n, n]``.
        k: number of groups, 1 ≤ k ≤ n.
        seed: k-means seed.

    Returns:
        A :class:`ClusterResult` with ``method="spectral"``.

    Raises:
        ConfigError: on an invalid U or k.
    """
    u = _check_affinity(U)
    n = u.shape[0]
    k = _check_k(k, n)
    a = u - u.min()
    degree = a.sum(1)
    scale = 1.0 / np.sqrt(np.maximum(degree, 1e-12 * max(1.0, float(degree.max()))))
    normalised = scale[:, None] * a * scale[None, :]
    eigvals, eigvecs = np.linalg.eigh(normalised)
    embedding = eigvecs[:, np.argsort(eigvals)[::-1][:k]]
    norms = np.linalg.norm(embedding, axis=1, keepdims=True)
    embedding = embedding / np.where(norms > 0, norms, 1.0)
    labels = _repair(u, _kmeans(embedding, k, seed=seed), k)
    groups = _labels_to_groups(labels)
    return ClusterResult(
        groups=groups, method="spectral", objective=partition_objective(u, groups), X=None, k=k
    )


def _all_labelings(n: int, k: int) -> np.ndarray:
    """Every partition of n items into exactly k nonempty groups, as restricted growth strings.

    Returns:
        int8 array of shape ``[S(n, k), n]`` (Stirling number of the second kind), label of item 0 is 0
        and each new label is one more than the largest before it.
    """
    rows = np.zeros((1, 1), dtype=np.int8)
    used = np.ones(1, dtype=np.int64)
    for i in range(1, n):
        parts, counts = [], []
        for label in range(k):
            keep = used >= label  # label ≤ used: reuse an open group or open the next one
            new_used = np.maximum(used[keep], label + 1)
            feasible = (n - i - 1) >= (k - new_used)  # enough items left to open the remaining groups
            block = rows[keep][feasible]
            parts.append(np.hstack([block, np.full((len(block), 1), label, dtype=np.int8)]))
            counts.append(new_used[feasible])
        rows, used = np.vstack(parts), np.concatenate(counts)
    rows = rows[used == k]
    # Enumeration order: lexicographic, so the first optimum found is deterministic.
    order = np.lexsort(rows.T[::-1])
    return rows[order]


def exhaustive_cluster(U: np.ndarray, k: int) -> ClusterResult:
    """The best partition into exactly k nonempty groups, by enumerating all of them.

    Ties go to the lexicographically first labelling. Feasible up to n = 12 (S(12, 5) ≈ 1.4M partitions).

    Args:
        U: affinity, shape ``[n, n]``.
        k: number of groups, 1 ≤ k ≤ n.

    Returns:
        A :class:`ClusterResult` with ``method="exhaustive"``.

    Raises:
        ConfigError: on an invalid U or k, or n > 12.
    """
    u = _check_affinity(U)
    n = u.shape[0]
    k = _check_k(k, n)
    if n > _EXHAUSTIVE_MAX_N:
        raise ConfigError(
            f"exhaustive clustering of n={n} tasks is too expensive (limit {_EXHAUSTIVE_MAX_N}); use sdp_cluster."
        )
    labelings = _all_labelings(n, k)
    best_value, best_row = -np.inf, 0
    batch = 65536
    for start in range(0, len(labelings), batch):
        labels = labelings[start : start + batch].astype(np.int64)
        onehot = np.zeros((len(labels), n, k))
        np.put_along_axis(onehot, labels[:, :, None], 1.0, axis=2)
        within = np.einsum("pik,ij,pjk->pk", onehot, u, onehot, optimize=True)
        values = (within / onehot.sum(1)).sum(1)
        at = int(np.argmax(values))
        if values[at] > best_value:  # strict: ties keep the earliest labelling
            best_value, best_row = float(values[at]), start + at
    groups = _labels_to_groups(labelings[best_row])
    return ClusterResult(
        groups=groups, method="exhaustive", objective=partition_objective(u, groups), X=None, k=k
    )


def cluster(U: np.ndarray, k: int, method: str = "sdp", seed: int = 0) -> ClusterResult:
    """Partition by ``method``: ``"sdp"`` (the paper's relaxation), ``"spectral"`` or ``"exhaustive"``.

    Args:
        U: affinity [n, n].
        k: number of groups.
        method: the clustering method.
        seed: seed of spectral clustering's k-means (the other methods are deterministic).
    """
    if method == "sdp":
        return sdp_cluster(U, k=k)
    if method == "spectral":
        return spectral_cluster(U, k, seed=seed)
    if method == "exhaustive":
        return exhaustive_cluster(U, k)
    raise ConfigError(f"unknown clustering method {method!r}; use 'sdp', 'spectral' or 'exhaustive'")
