"""Hutchinson's Hessian trace (issue 13, item 5) against exact Hessians."""

import math

import pytest
import torch

from policygradex.analysis.hessian import (
    hutchinson_trace,
    hvp,
    policy_gradient_loss,
    policy_hessian_trace,
    rademacher,
)
from policygradex.errors import ConfigError
from policygradex.gradex.features import flatten
from policygradex.rl.policy import PolicyConfig, build_policy


def test_diagonal_quadratic_gives_the_trace_exactly_with_zero_error():
    d = torch.tensor([3.0, -1.0, 0.5, 2.0], dtype=torch.float64)
    est = hutchinson_trace(lambda x: 0.5 * (d * x * x).sum(), torch.randn(4, dtype=torch.float64), 5, seed=0)
    assert est.samples == pytest.approx([4.5] * 5) and est.mean == pytest.approx(4.5) and est.stderr == 0.0


def test_each_probe_is_v_h_v_of_the_exact_hessian_of_a_policy_loss():
    pol = build_policy(3, 2, True, PolicyConfig(depth=2, width=4), seed=0).double()
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(20, 3, generator=g, dtype=torch.float64)
    actions = torch.randint(0, 2, (20,), generator=g)
    adv = torch.randn(20, generator=g, dtype=torch.float64)
    params = pol.actor_params()
    theta = flatten(params)
    loss = policy_gradient_loss(pol.actor, params, obs, actions, adv)
    H = torch.autograd.functional.hessian(loss, theta)
    v = rademacher(theta.numel(), 1, seed=3, dtype=torch.float64)[0]
    torch.testing.assert_close(hvp(loss, theta, v), H @ v, rtol=1e-10, atol=1e-12)
    est = policy_hessian_trace(pol.actor, params, obs, actions, adv, probes=7, seed=3)
    vs = rademacher(theta.numel(), 7, seed=3, dtype=torch.float64)
    assert est.samples == pytest.approx([float(u @ H @ u) for u in vs], rel=1e-9, abs=1e-12)
    assert est.params == theta.numel()
    # the estimator is unbiased: with many probes it lands within 4 standard errors of the exact trace,
    # and the exact trace of this indefinite Hessian is far from every single probe's spread of zero
    many = policy_hessian_trace(pol.actor, params, obs, actions, adv, probes=3000, seed=4)
    exact = float(torch.trace(H))
    assert abs(many.mean - exact) < 4 * many.stderr
    sd = math.sqrt(sum((s - many.mean) ** 2 for s in many.samples) / 2999)
    assert many.stderr == pytest.approx(sd / math.sqrt(3000))
    assert torch.linalg.eigvalsh(H).min() < 0 < torch.linalg.eigvalsh(H).max()  # indefinite, as the module says


@pytest.mark.parametrize("probes", [0, -1, 2.5, True])
def test_bad_probe_count_is_refused(probes):
    with pytest.raises(ConfigError, match=f"probes={probes!r}"):
        hutchinson_trace(lambda x: (x * x).sum(), torch.zeros(3), probes, seed=0)
