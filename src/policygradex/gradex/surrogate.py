"""The first-order surrogate fit: weighted logistic regression in projected gradient space (paper §2.3).

For a subset S of tasks with pooled transitions t (projected gradient x_t ∈ R^d, advantage Â_t),
the surrogate solves

    minimise_w  L(w) = (1/Σ_t s_t) Σ_t s_t·log(1 + exp(−y_t·x_tᵀw)) + (λ/2)‖w‖²,

with labels y_t = sign(Â_t) ∈ {−1, +1}, weights s_t = |Â_t| and no intercept; θ̂_S = θ* + P·w.
Transitions with Â_t = 0 have weight 0 (their label is irrelevant). L is λ-strongly convex, so
‖w − w*‖ ≤ ‖∇L(w)‖/λ; both solvers stop when ‖∇L(w)‖ ≤ tol·λ·‖w‖, which bounds the relative
error ‖w − w*‖/‖w‖ by ``tol``.

Relation to scikit-learn: ``LogisticRegression(fit_intercept=False, C=C).fit(x, y, sample_weight=s)``
minimises C·Σ_t s_t·ℓ_t + ½‖w‖²; dividing by C·Σs gives L with λ = 1/(C·Σs), i.e. C = 1/(λ·Σ_t s_t).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from policygradex.errors import ConfigError
from policygradex.gradex.subsets import task_lists

_BLOCK_BYTES = 512 * 2**20
"""Memory for the solver state of one block of subsets fitted together."""

_DENSE_COUPLING = 0.1
"""A direction of the eigenbasis of the all-task majoriser gets a dense block in the preconditioner
when, in some task, its couplings to the other directions exceed this multiple of λ (their norm);
elsewhere the majoriser's diagonal is used. Measured (issue 11): 0.1 and 0.3 need the same inner steps."""

_DENSE_MAX = 128
"""At most this many dense directions (their k×k block costs O(k³) per subset)."""

_INNER_RTOL = 1e-4
"""Conjugate gradients stop when every residual of H_S·x = v is below this fraction of ‖v‖."""

_INNER_MAX = 50
"""Safety cap on the conjugate-gradient steps of one solve (3 suffice on the measured problems)."""

_ARMIJO = 1e-4
"""Sufficient-decrease constant of the backtracking line search."""

_MAX_BACKTRACKS = 30


def _labels_and_weights(advantages: Tensor) -> tuple[Tensor, Tensor]:
    """Labels y = sign(Â) (+1 for Â = 0, which has weight 0) and weights s = |Â|.

    Args:
        advantages: shape ``[N]``.

    Returns:
        ``(y, s)``, both shape ``[N]``, float64.
    """
    adv = advantages.to(torch.float64)
    y = torch.where(adv < 0, -1.0, 1.0).to(torch.float64)
    return y, adv.abs()


def _check_l2(l2: float) -> None:
    try:
        value = float(l2)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(
            f"l2={l2!r} must be a positive finite number (the surrogate needs λ > 0), e.g. l2=0.1."
        )


def _check_solver(tol: float, max_iter: int) -> None:
    if not (math.isfinite(tol) and tol > 0):
        raise ConfigError(f"tol={tol!r} must be a positive number, e.g. tol=1e-6.")
    if max_iter < 1:
        raise ConfigError(f"max_iter={max_iter} must be at least 1.")


def _check_task(x: Tensor, advantages: Tensor, name: str) -> None:
    if x.ndim != 2:
        raise ConfigError(f"{name} features have shape {tuple(x.shape)}; pass a 2-D tensor [N, d].")
    if advantages.ndim != 1 or advantages.shape[0] != x.shape[0]:
        raise ConfigError(
            f"{name} advantages have shape {tuple(advantages.shape)} but features have {x.shape[0]} rows; "
            "pass one advantage per feature row."
        )
    if x.shape[0] == 0:
        raise ConfigError(f"{name} has no rows; collect at least one transition per task.")
    if not bool(torch.isfinite(x).all()) or not bool(torch.isfinite(advantages).all()):
        raise ConfigError(f"{name} features or advantages contain NaN or inf; fix the feature extraction.")


def logistic_objective(x: Tensor, advantages: Tensor, l2: float, w: Tensor) -> Tensor:
    """The surrogate loss L(w) on one data set.

    Args:
        x: projected gradients, shape ``[N, d]``.
        advantages: advantages Â, shape ``[N]``.
        l2: ridge strength λ > 0.
        w: coefficients, shape ``[d]`` or ``[B, d]``.

    Returns:
        L(w), float64, shape ``[]`` or ``[B]``.
    """
    y, s = _labels_and_weights(advantages)
    x64 = x.to(torch.float64)
    w64 = w.to(torch.float64)
    z = w64 @ x64.T  # [..., N]
    data = (s * F.softplus(-y * z)).sum(-1) / s.sum()
    return data + 0.5 * l2 * (w64 * w64).sum(-1)


def fit_logistic(
    x: Tensor,
    advantages: Tensor,
    l2: float,
    *,
    tol: float = 1e-6,
    max_iter: int = 100,
) -> Tensor:
    """Fit the weighted logistic surrogate on one data set with damped Newton steps.

    Exact Hessians cost O(N·d²) per step, fine for one fit; use :func:`fit_subsets` for many.

    Args:
        x: projected gradients g̃_t, shape ``[N, d]``.
        advantages: advantages Â_t, shape ``[N]``; y_t = sign(Â_t), s_t = |Â_t|.
        l2: ridge strength λ > 0 (sklearn's C = 1/(λ·Σ_t |Â_t|)).
        tol: stop when ‖∇L(w)‖ ≤ tol·λ·‖w‖, which bounds ‖w − w*‖/‖w‖ by ``tol``.
        max_iter: maximum Newton steps (a RuntimeWarning is issued if reached).

    Returns:
        The minimiser w, shape ``[d]``, in the dtype of ``x`` (computed in float64).

    Raises:
        ConfigError: on bad shapes, non-finite values, l2 ≤ 0, or all-zero advantages.
    """
    _check_l2(l2)
    _check_solver(tol, max_iter)
    _check_task(x, advantages, "the data set")
    y, s = _labels_and_weights(advantages.to(x.device))
    total = s.sum()
    if total <= 0:
        raise ConfigError(
            "every advantage is zero, so the surrogate has no data; check the advantage estimates."
        )
    xs = x.to(torch.float64)
    d = xs.shape[1]
    eye = torch.eye(d, dtype=torch.float64, device=x.device)
    w = torch.zeros(d, dtype=torch.float64, device=x.device)

    def loss_and_grad(w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        t = -y * (xs @ w)  # [N]
        loss = (s * F.softplus(t)).sum() / total + 0.5 * l2 * w.dot(w)
        prob = torch.sigmoid(t)  # σ(−y z): gradient weight of each row
        grad = -(xs.T @ (s * y * prob)) / total + l2 * w
        return loss, grad, prob

    loss, grad, prob = loss_and_grad(w)
    for _ in range(max_iter):
        if grad.norm() <= tol * l2 * w.norm():
            break
        curv = s * prob * (1 - prob) / total
        hess = (xs.T * curv) @ xs + l2 * eye
        step = torch.linalg.solve(hess, grad)
        slope = -grad.dot(step)
        alpha = 1.0
        for _ in range(_MAX_BACKTRACKS):
            new_loss, new_grad, new_prob = loss_and_grad(w - alpha * step)
            if new_loss <= loss + _ARMIJO * alpha * slope + 1e-15 * loss.abs():
                break
            alpha *= 0.5
        else:
            break  # no decrease even for tiny steps: w is optimal to float64 precision
        w = w - alpha * step
        loss, grad, prob = new_loss, new_grad, new_prob
    else:
        if grad.norm() > tol * l2 * w.norm():
            warnings.warn(
                f"fit_logistic stopped after max_iter={max_iter} Newton steps with gradient norm "
                f"{grad.norm().item():.3g}; raise max_iter or tol.",
                RuntimeWarning,
                stacklevel=2,
            )
    return w.to(x.dtype)


def fit_subsets(
    features: Sequence[Tensor],
    advantages: Sequence[Tensor],
    subsets: Sequence[Sequence[int]],
    l2: float,
    *,
    tol: float = 1e-6,
    max_iter: int = 500,
    memory: int = 10,
    block_size: int | None = None,
) -> Tensor:
    """Fit the surrogate on the pooled rows of every subset, batched across subsets.

    Each subset S minimises L_S(w) = (1/Σ_{t∈S} s_t) Σ_{t∈S} s_t·log(1 + exp(−y_t x_tᵀw)) + (λ/2)‖w‖²
    over the rows of all tasks in S. Method: a batched L-BFGS with Armijo backtracking whose initial
    inverse Hessian is the inverse of the Böhning majoriser (logistic curvature ≤ 1/4)
    H_S = Σ_{i∈S} (Σs_i / Σ_{t∈S} s_t)·G_i + λI, with per-task Gram matrices G_i = X_iᵀ diag(s) X_i / (4·Σs_i)
    computed once; its first step from w = 0 is the Newton step. H_S⁻¹ is applied by conjugate gradients
    with one matmul per task by G_i, so no d×d matrix is formed or factored per subset; they are
    preconditioned by H_S's block-diagonal part in the eigenbasis of the all-task majoriser (a dense
    block of at most ``_DENSE_MAX`` directions that the tasks couple, the diagonal elsewhere). The loss and
    gradient at w = 0 come from per-task sums; every further evaluation costs one matmul per task over the
    subsets holding it. Subsets with the same task set are fitted once. Losses and gradients are float64;
    the preconditioner is float32 unless that is ill-conditioned (it only steers the steps).

    Args:
        features: per task i, projected gradients of shape ``[N_i, d]``.
        advantages: per task i, advantages of shape ``[N_i]``.
        subsets: m subsets, each a nonempty sequence of distinct task indices in ``[0, n)``.
        l2: ridge strength λ > 0.
        tol: stop a subset when ‖∇L_S(w)‖ ≤ tol·λ·‖w‖ (relative error of w at most ``tol``).
        max_iter: maximum L-BFGS iterations per block (a RuntimeWarning is issued if reached).
        memory: L-BFGS history length.
        block_size: subsets fitted together; default keeps a block's solver state within 512 MiB.

    Returns:
        W of shape ``[m, d]``, row l the fit for ``subsets[l]``, in the dtype of ``features[0]``.

    Raises:
        ConfigError: on mismatched shapes, non-finite values, l2 ≤ 0, empty or out-of-range subsets,
            or a subset whose advantages are all zero.
    """
    _check_l2(l2)
    _check_solver(tol, max_iter)
    if memory < 1:
        raise ConfigError(f"memory={memory} must be at least 1 (the L-BFGS history length).")
    n = len(features)
    if n == 0 or len(advantages) != n:
        raise ConfigError(
            f"got {n} feature tensors and {len(advantages)} advantage tensors; pass one of each per task (n ≥ 1)."
        )
    for i in range(n):
        _check_task(features[i], advantages[i], f"task {i}")
    d = features[0].shape[1]
    for i in range(n):
        if features[i].shape[1] != d:
            raise ConfigError(
                f"task {i} features have d={features[i].shape[1]} but task 0 has d={d}; project all tasks alike."
            )
    tasks = task_lists(subsets, n)
    if block_size is not None and block_size < 1:
        raise ConfigError(f"block_size={block_size} must be at least 1.")
    device = features[0].device
    out_dtype = features[0].dtype

    unique = sorted(set(tasks))
    position = {t: u for u, t in enumerate(unique)}
    inverse = torch.tensor([position[t] for t in tasks], dtype=torch.long, device=device)
    member = torch.zeros(len(unique), n, dtype=torch.bool, device=device)
    for u, t in enumerate(unique):
        member[u, list(t)] = True

    xs, ys, ss = [], [], []
    for i in range(n):
        y, s = _labels_and_weights(advantages[i].to(device))
        xs.append(features[i].to(device=device, dtype=torch.float64))
        ys.append(y)
        ss.append(s)
    task_weight = torch.stack([s.sum() for s in ss])  # [n]
    totals = member.to(torch.float64) @ task_weight  # [U]
    empty = torch.nonzero(totals <= 0).flatten()
    if empty.numel():
        raise ConfigError(
            f"subset {list(unique[int(empty[0])])} has only zero advantages, so its surrogate has no data; "
            "check the advantage estimates."
        )
    # Σ_t s_t·y_t·x_t / 2 per task: the data gradient at w = 0 is −Σ_{i∈S} half_moment_i / Σ_{t∈S} s_t.
    half_moment = torch.stack([0.5 * ((s * y) @ x) for x, y, s in zip(xs, ys, ss, strict=True)])  # [n, d]
    basis = _task_basis(_task_grams(features, ss, l2), task_weight, l2)

    if block_size is None:
        # Per subset: its dense block, the L-BFGS history and work vectors, and its share of the
        # per-task margins [c, N_i] of one evaluation (a few float64 temporaries).
        pooled_rows = max(sum(xs[i].shape[0] for i in t) for t in unique)
        per_subset = 8 * (basis.k * basis.k + (2 * memory + 12) * d + 4 * pooled_rows)
        block_size = max(1, _BLOCK_BYTES // per_subset)
    num_blocks = math.ceil(len(unique) / block_size)
    bounds = [round(b * len(unique) / num_blocks) for b in range(num_blocks + 1)]
    fits = torch.empty(len(unique), d, dtype=torch.float64, device=device)
    for b in range(num_blocks):
        rows = slice(bounds[b], bounds[b + 1])
        fits[rows] = _lbfgs_block(
            xs, ys, ss, half_moment, basis, member[rows], totals[rows], task_weight, l2, tol, max_iter, memory
        )
    return fits[inverse].to(out_dtype)


class _Basis(NamedTuple):
    """Per-task majorisers in the eigenbasis Q of the all-task one (see :func:`_task_basis`)."""

    q: Tensor
    """Orthonormal basis, shape ``[d, d]``; its first k columns are the dense directions."""
    k: int
    """Number of dense directions."""
    dense: Tensor
    """Q_kᵀ G_i Q_k per task, shape ``[n, k, k]``."""
    diag: Tensor
    """diag(Q_restᵀ G_i Q_rest) per task, shape ``[n, d − k]``."""
    gram: Tensor
    """G_i per task, shape ``[n, d, d]``."""


def _task_grams(features: Sequence[Tensor], weights: list[Tensor], l2: float) -> Tensor:
    """Per-task weighted Gram matrices G_i = X_iᵀ diag(s) X_i / (4·Σs_i), in float32 when safe.

    They only build the preconditioner (convergence is checked on float64 gradients), so float32
    halves its cost without changing the result. For any subset, by the mediant inequality, the
    condition number of H_S = Σ_{i∈S} G_i·Σs_i/Σ_{t∈S}s_t + λI is at most 1 + max_i ‖G_i‖/λ, bounded
    with Gershgorin row sums; above 1e6 float64 is used.

    Args:
        features: per task, shape ``[N_i, d]``.
        weights: per task, s = |Â|, shape ``[N_i]``, float64.
        l2: λ.

    Returns:
        Shape ``[n, d, d]``, float32 or float64; tasks with zero total weight get zeros.
    """

    def grams(dtype: torch.dtype) -> Tensor:
        out = []
        for x, s in zip(features, weights, strict=True):
            x = x.to(device=s.device, dtype=dtype)
            total = float(s.sum())
            scale = s.to(dtype) / (4 * total) if total > 0 else torch.zeros_like(s, dtype=dtype)
            out.append((x.T * scale) @ x)
        return torch.stack(out)

    gram = grams(torch.float32)
    if float(gram.abs().sum(-1).max()) / l2 <= 1e6:
        return gram
    return grams(torch.float64)


def _task_basis(gram: Tensor, task_weight: Tensor, l2: float) -> _Basis:
    """The eigenbasis of the all-task majoriser and each task's G_i in it, split into dense and diagonal.

    Q diagonalises Σ_i Σs_i·G_i (float64 eigendecomposition). Direction j is dense when, for some task,
    ‖(QᵀG_iQ)_{j,≠j}‖ > ``_DENSE_COUPLING``·λ (at most ``_DENSE_MAX`` directions, the most coupled
    first): the preconditioner keeps every subset's H_S exactly on the dense directions and by its
    diagonal on the rest. With tasks alike (or curvature well below λ) nothing is dense.

    Args:
        gram: G_i = X_iᵀ diag(s) X_i / (4·Σs_i), shape ``[n, d, d]``.
        task_weight: Σs_i per task, shape ``[n]``.
        l2: λ.

    Returns:
        The basis; its tensors in the dtype of ``gram``.
    """
    n, d, _ = gram.shape
    pooled = (task_weight / task_weight.sum()).to(gram.dtype) @ gram.reshape(n, d * d)
    _, vectors = torch.linalg.eigh(pooled.reshape(d, d).to(torch.float64))
    q = vectors.flip(1).to(gram.dtype)  # largest eigenvalue first
    rotated = q.T @ gram @ q  # [n, d, d]: each G_i in the basis
    curvature = rotated.diagonal(dim1=-2, dim2=-1)  # [n, d]
    # How strongly direction j couples to the others in some task, relative to the ridge: the
    # diagonal approximation ignores exactly these entries.
    coupling = ((rotated * rotated).sum(-1) - curvature * curvature).clamp_min(0).sqrt().max(0).values / l2
    order = torch.argsort(coupling, descending=True)
    k = min(int((coupling > _DENSE_COUPLING).sum()), _DENSE_MAX)
    q, rotated = q[:, order], rotated[:, order][:, :, order]
    diag = rotated[:, k:, k:].diagonal(dim1=-2, dim2=-1)
    return _Basis(q=q, k=k, dense=rotated[:, :k, :k], diag=diag, gram=gram)


class _Preconditioner(NamedTuple):
    """Inverse of the approximate majoriser of each subset of a block, in the basis Q."""

    q: Tensor
    """Shape ``[d, d]``."""
    dense_inverse: Tensor
    """(Q_kᵀ H_S Q_k)⁻¹, shape ``[B, k, k]``."""
    diag_inverse: Tensor
    """1 / diag(Q_restᵀ H_S Q_rest), shape ``[B, d − k]``."""
    coef: Tensor
    """Σs_i / Σ_{t∈S} s_t for the tasks of each subset (0 for the others), shape ``[B, n]``."""
    gram: Tensor
    """G_i per task, shape ``[n, d, d]``."""
    l2: float


def _preconditioners(
    basis: _Basis, member: Tensor, totals: Tensor, task_weight: Tensor, l2: float
) -> _Preconditioner:
    """The conjugate-gradient preconditioners of a block of subsets: H_S's dense block inverted, its diagonal.

    Args:
        basis: from :func:`_task_basis`.
        member: shape ``[B, n]`` bool.
        totals: Σ_{t∈S} s_t, shape ``[B]``.
        task_weight: Σs_i per task, shape ``[n]``.
        l2: λ.

    Returns:
        The block's preconditioner, in the dtype of the basis.
    """
    n, k = basis.dense.shape[0], basis.k
    coef = (member.to(torch.float64) * task_weight / totals[:, None]).to(basis.q.dtype)  # [B, n]
    hess = (coef @ basis.dense.reshape(n, k * k)).reshape(len(coef), k, k)
    hess.diagonal(dim1=-2, dim2=-1).add_(l2)
    factor, info = torch.linalg.cholesky_ex(hess)
    if bool(info.any()):  # float32 round-off on a nearly singular block: redo in float64
        factor = torch.linalg.cholesky(hess.to(torch.float64))
    dense_inverse = torch.cholesky_inverse(factor).to(basis.q.dtype)
    diag_inverse = 1.0 / (coef @ basis.diag + l2)
    return _Preconditioner(
        q=basis.q, dense_inverse=dense_inverse, diag_inverse=diag_inverse, coef=coef, gram=basis.gram, l2=l2
    )


def _approximate_inverse(pre: _Preconditioner, v: Tensor, rows: Tensor) -> Tensor:
    """The block-diagonal approximation of H_S⁻¹ of the subsets ``rows`` applied to v, row by row.

    Args:
        pre: a block's preconditioner (B subsets).
        v: shape ``[A, d]`` or ``[A, r, d]`` (r vectors per subset).
        rows: indices into B, shape ``[A]``.

    Returns:
        The shape of ``v``, in its dtype.
    """
    k = pre.dense_inverse.shape[-1]
    u = (v if v.ndim == 3 else v[:, None]).to(pre.q.dtype) @ pre.q  # [A, r, d] in the basis
    dense = pre.dense_inverse if len(rows) == len(pre.dense_inverse) else pre.dense_inverse[rows]
    out = torch.cat([u[..., :k] @ dense, u[..., k:] * pre.diag_inverse[rows][:, None]], dim=-1) @ pre.q.T
    return (out if v.ndim == 3 else out[:, 0]).to(v.dtype)


def _majoriser(pre: _Preconditioner, v: Tensor, rows: Tensor) -> Tensor:
    """H_S·v = Σ_{i∈S} c_i·G_i·v + λ·v for the subsets ``rows``, one matmul per task.

    Args:
        pre: a block's preconditioner (B subsets).
        v: shape ``[A, r, d]``, in the dtype of the Gram matrices.
        rows: indices into B, shape ``[A]``.

    Returns:
        Shape ``[A, r, d]``.
    """
    coef = pre.coef[rows]  # [A, n]
    out = pre.l2 * v
    for i in range(coef.shape[1]):
        cols = torch.nonzero(coef[:, i]).flatten()
        if cols.numel():
            out.index_add_(0, cols, coef[cols, i, None, None] * (v[cols] @ pre.gram[i]))
    return out


def _apply(pre: _Preconditioner, v: Tensor, rows: Tensor) -> Tensor:
    """H_S⁻¹·v (the Böhning majoriser's inverse) for the subsets ``rows``, by conjugate gradients.

    Preconditioned by the block-diagonal approximation; stops when every residual is below
    ``_INNER_RTOL`` of its right-hand side (or after ``_INNER_MAX`` steps).

    Args:
        pre: a block's preconditioner (B subsets).
        v: shape ``[A, d]`` or ``[A, r, d]`` (r vectors per subset).
        rows: indices into B, shape ``[A]``.

    Returns:
        The shape of ``v``, in its dtype.
    """
    rhs = (v if v.ndim == 3 else v[:, None]).to(pre.q.dtype)
    x = torch.zeros_like(rhs)
    resid = rhs.clone()
    goal = _INNER_RTOL * rhs.norm(dim=-1)
    z = _approximate_inverse(pre, resid, rows)
    p = z
    rz = (resid * z).sum(-1)
    for _ in range(_INNER_MAX):
        hp = _majoriser(pre, p, rows)
        php = (p * hp).sum(-1)
        alpha = torch.where(php > 0, rz / php.clamp_min(torch.finfo(php.dtype).tiny), 0.0)
        x += alpha[..., None] * p
        resid -= alpha[..., None] * hp
        if bool((resid.norm(dim=-1) <= goal).all()):
            break
        z = _approximate_inverse(pre, resid, rows)
        rz_new = (resid * z).sum(-1)
        beta = torch.where(rz > 0, rz_new / rz.clamp_min(torch.finfo(rz.dtype).tiny), 0.0)
        p = z + beta[..., None] * p
        rz = rz_new
    return (x if v.ndim == 3 else x[:, 0]).to(v.dtype)


def _lbfgs_block(
    xs: list[Tensor],
    ys: list[Tensor],
    ss: list[Tensor],
    half_moment: Tensor,
    basis: _Basis,
    member: Tensor,
    totals: Tensor,
    task_weight: Tensor,
    l2: float,
    tol: float,
    max_iter: int,
    memory: int,
) -> Tensor:
    """Batched, preconditioned L-BFGS for one block of B subsets.

    Args:
        xs, ys, ss: per task, features ``[N_i, d]``, labels ``[N_i]`` and weights ``[N_i]`` (float64).
        half_moment: per task Σ_t s_t·y_t·x_t / 2, shape ``[n, d]``.
        basis: from :func:`_task_basis`.
        member: which tasks each subset holds, shape ``[B, n]`` bool.
        totals: Σ_{t∈S} s_t per subset, shape ``[B]``.
        task_weight: Σs_i per task, shape ``[n]``.

    Returns:
        Fits, shape ``[B, d]``.
    """
    num, n = member.shape
    d = half_moment.shape[1]
    device = half_moment.device
    precond = _preconditioners(basis, member, totals, task_weight, l2)

    def evaluate(w: Tensor, active: Tensor) -> tuple[Tensor, Tensor]:
        """Loss and gradient of L_S at w for the subsets in ``active`` (w: [A, d])."""
        loss = torch.zeros(len(active), dtype=torch.float64, device=device)
        grad = torch.zeros(len(active), d, dtype=torch.float64, device=device)
        held = member[active]  # [A, n]
        for i in range(n):
            cols = torch.nonzero(held[:, i]).flatten()
            if cols.numel() == 0:
                continue
            t = -ys[i] * (w[cols] @ xs[i].T)  # [c, N_i]: −y·margin
            loss.index_add_(0, cols, (ss[i] * F.softplus(t)).sum(1))
            grad.index_add_(0, cols, -(ss[i] * ys[i] * torch.sigmoid(t)) @ xs[i])
        scale = totals[active]
        loss = loss / scale + 0.5 * l2 * (w * w).sum(1)
        grad = grad / scale[:, None] + l2 * w
        return loss, grad

    w = torch.zeros(num, d, dtype=torch.float64, device=device)
    # At w = 0 every margin is 0: L_S = log 2 and ∇L_S = −Σ_{i∈S} Σ_t s_t·y_t·x_t / (2·Σ_{t∈S} s_t).
    loss = torch.full((num,), math.log(2.0), dtype=torch.float64, device=device)
    grad = -(member.to(torch.float64) @ half_moment) / totals[:, None]
    hist_s = torch.zeros(num, memory, d, dtype=torch.float64, device=device)
    hist_y = torch.zeros_like(hist_s)
    hist_rho = torch.zeros(num, memory, dtype=torch.float64, device=device)
    done = torch.zeros(num, dtype=torch.bool, device=device)
    gave_up = torch.zeros(num, dtype=torch.bool, device=device)
    for it in range(max_iter):
        done |= grad.norm(dim=1) <= tol * l2 * w.norm(dim=1)
        active = torch.nonzero(~done).flatten()
        if active.numel() == 0:
            break
        # Two-loop recursion with initial inverse Hessian γ·M_S⁻¹ (M_S the approximate majoriser), where
        # γ = sᵀy / yᵀM_S⁻¹y from the newest pair: the true curvature is often well below the 1/4 bound,
        # and γ > 1 then lengthens the steps. Empty history slots (rho = 0) are no-ops.
        q = grad[active].clone()
        hs, hy, hr = hist_s[active], hist_y[active], hist_rho[active]
        alphas = []
        order = [(it - 1 - j) % memory for j in range(min(it, memory))]  # newest first
        for k in order:
            a = hr[:, k] * (hs[:, k] * q).sum(1)
            q -= a[:, None] * hy[:, k]
            alphas.append(a)
        if order:
            newest = order[0]
            # One pass over the preconditioners for both vectors.
            both = _apply(precond, torch.stack([q, hy[:, newest]], dim=1), active)
            r, precond_y = both[:, 0], both[:, 1]
            denom = (hy[:, newest] * precond_y).sum(1)
            usable = (hr[:, newest] > 0) & (denom > 0)
            gamma = torch.where(usable, 1.0 / (hr[:, newest] * denom).clamp_min(1e-300), 1.0)
            r = r * gamma[:, None]
        else:
            r = _apply(precond, q, active)
        for k, a in zip(reversed(order), reversed(alphas), strict=True):
            beta = hr[:, k] * (hy[:, k] * r).sum(1)
            r += (a - beta)[:, None] * hs[:, k]
        direction = -r
        slope = (grad[active] * direction).sum(1)
        # A non-descent direction (numerical trouble) falls back to the preconditioned gradient step.
        bad = slope >= 0
        if bool(bad.any()):
            mm = -_apply(precond, grad[active[bad]], active[bad])
            direction[bad] = mm
            slope[bad] = (grad[active[bad]] * mm).sum(1)
        # Backtracking: re-evaluate only the subsets that failed the Armijo condition.
        step = torch.ones(len(active), dtype=torch.float64, device=device)
        new_loss = torch.empty_like(step)
        new_grad = torch.empty(len(active), d, dtype=torch.float64, device=device)
        pending = torch.arange(len(active), device=device)
        base = loss[active]
        for _ in range(_MAX_BACKTRACKS):
            sub = active[pending]
            trial = w[sub] + step[pending, None] * direction[pending]
            new_loss[pending], new_grad[pending] = evaluate(trial, sub)
            ok = (
                new_loss[pending]
                <= base[pending] + _ARMIJO * step[pending] * slope[pending] + 1e-15 * base[pending].abs()
            )
            pending = pending[~ok]
            if pending.numel() == 0:
                break
            step[pending] *= 0.5
        if pending.numel():
            # No decrease even for tiny steps: the fit is at float64 precision; stop those subsets (and
            # say so below if they stopped short of tol).
            done[active[pending]] = True
            gave_up[active[pending]] = True
            step[pending] = 0.0
            new_loss[pending] = base[pending]
            new_grad[pending] = grad[active[pending]]
        delta_w = step[:, None] * direction
        delta_g = new_grad - grad[active]
        curv = (delta_w * delta_g).sum(1)
        slot = it % memory
        keep = curv > 1e-12 * delta_w.norm(dim=1) * delta_g.norm(dim=1)
        hist_s[active, slot] = torch.where(keep[:, None], delta_w, 0.0)
        hist_y[active, slot] = torch.where(keep[:, None], delta_g, 0.0)
        hist_rho[active, slot] = torch.where(keep, 1.0 / curv.clamp_min(1e-300), 0.0)
        w[active] += delta_w
        loss[active] = new_loss
        grad[active] = new_grad
    converged = grad.norm(dim=1) <= tol * l2 * w.norm(dim=1)
    exhausted = ~(done | converged)
    if bool(exhausted.any()):
        warnings.warn(
            f"fit_subsets: {int(exhausted.sum())} subsets did not reach tol={tol} in max_iter={max_iter} "
            "iterations; raise max_iter or tol.",
            RuntimeWarning,
            stacklevel=3,
        )
    stuck = gave_up & ~converged
    if bool(stuck.any()):
        warnings.warn(
            f"fit_subsets: {int(stuck.sum())} subsets stopped short of tol={tol}: no step along the search "
            "direction lowered the loss (the fit is at float64 precision, or the features are badly scaled); "
            "raise tol.",
            RuntimeWarning,
            stacklevel=3,
        )
    return w
