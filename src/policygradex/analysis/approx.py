"""How good is the first-order approximation of log π around θ*? (paper §4, issue #4)

For a direction Δθ and transitions (s_t, a_t), compare the true log π_{θ*+Δθ}(a_t|s_t) with
    first order:  log π_θ*(a_t|s_t) + g_tᵀΔθ
    zeroth order: log π_θ*(a_t|s_t)
The relative error of a prediction is ‖pred − true‖₁ / ‖true‖₁ over the transitions of a task (a
per-transition ratio would explode where the policy is nearly certain and log π ≈ 0).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import Tensor

from policygradex.errors import ConfigError

DEFAULT_DISTANCES = (0.001, 0.005, 0.01, 0.02, 0.05)


def relative_error(pred: Tensor, true: Tensor) -> float:
    """‖pred − true‖₁ / ‖true‖₁. pred, true: [N]."""
    denom = true.abs().sum().clamp_min(1e-12)
    return float((pred - true).abs().sum() / denom)


@dataclass(frozen=True)
class ApproxError:
    """Mean relative errors at one relative distance ‖Δθ‖/‖θ*‖ (over directions and tasks)."""

    distance: float
    first_order: float
    zeroth_order: float
    first_order_max: float


def approximation_errors(
    logp_at: Callable[[Tensor], Tensor],
    theta: Tensor,
    logp0: Tensor,
    directional_grads: Tensor,
    directions: Tensor,
    distances: Sequence[float] = DEFAULT_DISTANCES,
) -> list[ApproxError]:
    """Relative errors of the first- and zeroth-order predictions of log π at θ* + Δθ.

    Args:
        logp_at: θ [p] → log π_θ(a_t|s_t) [N] on fixed transitions.
        theta: θ* [p].
        logp0: [N] log π_θ*(a_t|s_t) (= ``logp_at(theta)``).
        directional_grads: [K, N] g_tᵀu_k for each unit direction u_k (for Δθ = P·w these are g̃_tᵀw/‖Pw‖).
        directions: [K, p] unit directions u_k.
        distances: relative distances r; Δθ = r·‖θ*‖·u_k.

    Returns:
        One :class:`ApproxError` per distance, averaged over the K directions.
    """
    if directions.shape[0] != directional_grads.shape[0]:
        raise ConfigError("directions and directional_grads must have one row per direction")
    if any(r <= 0 for r in distances):
        raise ConfigError(f"distances {list(distances)} must all be positive")
    norm = float(theta.norm())
    out = []
    for r in distances:
        first, zeroth = [], []
        for u, gu in zip(directions, directional_grads, strict=True):
            step = r * norm
            true = logp_at(theta + step * u)
            first.append(relative_error(logp0 + step * gu, true))
            zeroth.append(relative_error(logp0, true))
        out.append(ApproxError(r, sum(first) / len(first), sum(zeroth) / len(zeroth), max(first)))
    return out
