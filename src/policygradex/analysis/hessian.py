"""The trace of the Hessian of a policy's loss by Hutchinson probes (issue 13, item 5).

The paper bounds the generalisation error of a group policy (PAC-Bayes) with the trace of the Hessian
of its loss. Tr H = E_v[vᵀHv] for Rademacher probes v (entries ±1 with probability ½ each); every
vᵀHv is one Hessian-vector product, forward-over-reverse through ``torch.func`` (``jvp`` of ``grad``),
so the p×p Hessian is never formed.

We report the mean over a fixed number of probes with its standard error (sd/√P, ddof 1). No
relative-change stopping rule as in PyHessian: the policy-gradient loss's Hessian is indefinite, so
its trace can be near zero and a relative rule may stop arbitrarily late or early.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import grad, jvp, vmap

from policygradex.errors import ConfigError
from policygradex.gradex.features import flatten, unflatten
from policygradex.rl.policy import Actor, log_prob


@dataclass(frozen=True)
class TraceEstimate:
    """Hutchinson's estimate of Tr H.

    Attributes:
        mean: the mean of the probes' vᵀHv.
        stderr: their standard deviation / √probes (NaN for one probe).
        samples: vᵀHv of each probe, [P].
        params: p, the number of parameters (Tr H / p is the mean curvature per parameter).
    """

    mean: float
    stderr: float
    samples: list[float]
    params: int


def rademacher(p: int, probes: int, seed: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Probe vectors with entries ±1, [probes, p], from a generator seeded with ``seed``."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 2, (probes, p), generator=g) * 2 - 1).to(dtype)


def hvp(loss: Callable[[Tensor], Tensor], theta: Tensor, v: Tensor) -> Tensor:
    """H v with H = ∇²loss(θ): ``jvp`` of ``grad`` (forward over reverse). theta, v: [p] → [p]."""
    return jvp(grad(loss), (theta,), (v,))[1]


def hutchinson_trace(
    loss: Callable[[Tensor], Tensor], theta: Tensor, probes: int, seed: int, chunk: int = 64
) -> TraceEstimate:
    """Tr ∇²loss(θ) ≈ mean_j v_jᵀ H v_j over ``probes`` Rademacher probes.

    Args:
        loss: a scalar function of the flat parameters [p] (pure: usable under ``torch.func``).
        theta: [p] where the Hessian is taken.
        probes: P ≥ 1.
        seed: seeds the probes.
        chunk: probes per ``vmap`` call (memory: chunk × the cost of one Hessian-vector product).

    Returns:
        The :class:`TraceEstimate`.

    Raises:
        ConfigError: ``probes < 1``.
    """
    if isinstance(probes, bool) or not isinstance(probes, int) or probes < 1:
        raise ConfigError(f"probes={probes!r} must be a positive integer (Hutchinson probe vectors), e.g. 32")
    vs = rademacher(theta.numel(), probes, seed, theta.dtype)
    batched = vmap(lambda v: hvp(loss, theta, v))
    samples = [float(x) for s in range(0, probes, chunk) for x in (vs[s : s + chunk] * batched(vs[s : s + chunk])).sum(1)]
    mean = sum(samples) / probes
    if probes < 2:
        return TraceEstimate(mean, math.nan, samples, theta.numel())
    var = sum((s - mean) ** 2 for s in samples) / (probes - 1)
    return TraceEstimate(mean, math.sqrt(var / probes), samples, theta.numel())


def policy_gradient_loss(
    actor: Actor, like: dict[str, Tensor], obs: Tensor, actions: Tensor, adv: Tensor
) -> Callable[[Tensor], Tensor]:
    """The policy-gradient loss L(θ) = −mean_t log π_θ(a_t|s_t)·Â_t as a function of the flat θ [p].

    Args:
        actor: the architecture.
        like: parameter names and shapes (e.g. ``policy.actor_params()``).
        obs: [N, obs_dim]; actions: [N] or [N, A]; adv: [N] (fixed data, e.g. a rollout of the policy).
    """

    def loss(theta: Tensor) -> Tensor:
        return -(log_prob(actor, unflatten(theta, like), obs, actions) * adv).mean()

    return loss


def policy_hessian_trace(
    actor: Actor, params: dict[str, Tensor], obs: Tensor, actions: Tensor, adv: Tensor, probes: int, seed: int
) -> TraceEstimate:
    """Hutchinson's Tr H of :func:`policy_gradient_loss` at ``params`` on the given rows."""
    return hutchinson_trace(policy_gradient_loss(actor, params, obs, actions, adv), flatten(params), probes, seed)
