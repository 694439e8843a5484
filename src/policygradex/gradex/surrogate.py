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

import torch
import torch.nn.functional as F
from torch import Tensor

from policygradex.errors import ConfigError
from policygradex.gradex.subsets import task_lists

_BLOCK_BYTES = 512 * 2**20
"""Memory for the per-subset d×d preconditioners of one block of subsets fitted together."""

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
    over the rows of all tasks in S. Method: the Böhning bound (logistic curvature ≤ 1/4) gives the
    fixed majoriser H_S = (1/4)·Σ_{i∈S} G_i / Σ_{t∈S} s_t + λI, built from the per-task weighted Gram
    matrices G_i = X_iᵀ diag(s) X_i computed once and inverted for all subsets of a block in one batched
    Cholesky. H_S⁻¹ is the initial inverse Hessian of a batched L-BFGS with Armijo backtracking (its first
    step is the monotone MM step w − H_S⁻¹∇L_S(w)); every iteration costs one matmul per task over the
    subsets holding it. Subsets with the same task set are fitted once. Losses and gradients are
    float64; the preconditioner is float32 unless that is ill-conditioned (it only steers the steps).

    Args:
        features: per task i, projected gradients of shape ``[N_i, d]``.
        advantages: per task i, advantages of shape ``[N_i]``.
        subsets: m subsets, each a nonempty sequence of distinct task indices in ``[0, n)``.
        l2: ridge strength λ > 0.
        tol: stop a subset when ‖∇L_S(w)‖ ≤ tol·λ·‖w‖ (relative error of w at most ``tol``).
        max_iter: maximum L-BFGS iterations per block (a RuntimeWarning is issued if reached).
        memory: L-BFGS history length.
        block_size: subsets fitted together; default keeps the d×d preconditioners within 512 MiB.

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
    gram = _task_grams(features, ss, l2)

    if block_size is None:
        block_size = max(1, _BLOCK_BYTES // (8 * d * d))
    if block_size < 1:
        raise ConfigError(f"block_size={block_size} must be at least 1.")
    num_blocks = math.ceil(len(unique) / block_size)
    bounds = [round(b * len(unique) / num_blocks) for b in range(num_blocks + 1)]
    fits = torch.empty(len(unique), d, dtype=torch.float64, device=device)
    for b in range(num_blocks):
        rows = slice(bounds[b], bounds[b + 1])
        fits[rows] = _lbfgs_block(
            xs, ys, ss, gram, member[rows], totals[rows], task_weight, l2, tol, max_iter, memory
        )
    return fits[inverse].to(out_dtype)


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


def _preconditioners(gram: Tensor, member: Tensor, totals: Tensor, task_weight: Tensor, l2: float) -> Tensor:
    """Inverses of the Böhning majorisers H_S = (1/4)·Σ_{i∈S} X_iᵀ diag(s) X_i / Σ_{t∈S} s_t + λI.

    Args:
        gram: G_i = X_iᵀ diag(s) X_i / (4·Σs_i), shape ``[n, d, d]``.
        member: shape ``[B, n]`` bool.
        totals: Σ_{t∈S} s_t, shape ``[B]``.
        task_weight: Σs_i per task, shape ``[n]``.
        l2: λ.

    Returns:
        H_S⁻¹, shape ``[B, d, d]``, in the dtype of ``gram``.
    """
    n, d, _ = gram.shape
    coef = member.to(torch.float64) * task_weight / totals[:, None]  # [B, n]
    hess = (coef.to(gram.dtype) @ gram.reshape(n, d * d)).reshape(-1, d, d)
    hess.diagonal(dim1=-2, dim2=-1).add_(l2)
    factor, info = torch.linalg.cholesky_ex(hess)
    if bool(info.any()):  # float32 round-off on a nearly singular block: redo in float64
        factor = torch.linalg.cholesky(hess.to(torch.float64))
    del hess
    return torch.cholesky_inverse(factor)


def _apply(precond: Tensor, v: Tensor, rows: Tensor) -> Tensor:
    """``precond[rows] @ v`` per row, without copying the selected matrices when most rows are used.

    Args:
        precond: shape ``[B, d, d]``.
        v: shape ``[A, d]`` or ``[A, d, k]``.
        rows: indices into B, shape ``[A]``.

    Returns:
        The shape of ``v``, in its dtype.
    """
    vec = v.ndim == 2
    rhs = (v.unsqueeze(2) if vec else v).to(precond.dtype)
    if len(rows) * 4 < len(precond):
        out = precond[rows] @ rhs
    else:
        full = rhs.new_zeros((len(precond), *rhs.shape[1:]))
        full[rows] = rhs
        out = (precond @ full)[rows]
    return (out.squeeze(2) if vec else out).to(v.dtype)


def _lbfgs_block(
    xs: list[Tensor],
    ys: list[Tensor],
    ss: list[Tensor],
    gram: Tensor,
    member: Tensor,
    totals: Tensor,
    task_weight: Tensor,
    l2: float,
    tol: float,
    max_iter: int,
    memory: int,
) -> Tensor:
    """Batched, Böhning-preconditioned L-BFGS for one block of B subsets.

    Args:
        xs, ys, ss: per task, features ``[N_i, d]``, labels ``[N_i]`` and weights ``[N_i]`` (float64).
        gram: per-task G_i = X_iᵀ diag(s) X_i / (4·Σs_i), shape ``[n, d, d]``.
        member: which tasks each subset holds, shape ``[B, n]`` bool.
        totals: Σ_{t∈S} s_t per subset, shape ``[B]``.
        task_weight: Σs_i per task, shape ``[n]``.

    Returns:
        Fits, shape ``[B, d]``.
    """
    num, n = member.shape
    d = gram.shape[1]
    device = gram.device
    # The Böhning majoriser's inverse is the L-BFGS initial inverse Hessian.
    precond = _preconditioners(gram, member, totals, task_weight, l2)  # [B, d, d]

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
    every = torch.arange(num, device=device)
    loss, grad = evaluate(w, every)
    hist_s = torch.zeros(num, memory, d, dtype=torch.float64, device=device)
    hist_y = torch.zeros_like(hist_s)
    hist_rho = torch.zeros(num, memory, dtype=torch.float64, device=device)
    done = torch.zeros(num, dtype=torch.bool, device=device)
    for it in range(max_iter):
        done |= grad.norm(dim=1) <= tol * l2 * w.norm(dim=1)
        active = torch.nonzero(~done).flatten()
        if active.numel() == 0:
            break
        # Two-loop recursion with initial inverse Hessian γ·H_S⁻¹, where γ = sᵀy / yᵀH_S⁻¹y from the
        # newest pair: the true curvature is often well below the 1/4 bound, and γ > 1 then lengthens
        # the steps. Empty history slots (rho = 0) are no-ops; the first step is the MM step.
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
            # One pass over the preconditioners for both vectors (the apply is memory-bound).
            both = _apply(precond, torch.stack([q, hy[:, newest]], dim=2), active)
            r, precond_y = both[..., 0], both[..., 1]
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
        # A non-descent direction (numerical trouble) falls back to the MM step.
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
            # No decrease even for tiny steps: the fit is at float64 precision; stop those subsets.
            done[active[pending]] = True
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
    else:
        unconverged = ~(done | (grad.norm(dim=1) <= tol * l2 * w.norm(dim=1)))
        if bool(unconverged.any()):
            warnings.warn(
                f"fit_subsets: {int(unconverged.sum())} subsets did not reach tol={tol} in max_iter={max_iter} "
                "iterations; raise max_iter or tol.",
                RuntimeWarning,
                stacklevel=3,
            )
    return w
