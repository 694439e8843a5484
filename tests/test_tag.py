"""TAG lookahead affinity with the PPO loss (Fifty et al. 2021; issue 12, item 3)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from policygradex.errors import ConfigError
from policygradex.grouping.baselines import LookaheadBatch, ppo_surrogate_loss, tag_affinity, tag_lookahead
from policygradex.rl.policy import PolicyConfig, build_policy, log_prob

OBS, ACTIONS, N = 5, 3, 48


def _policy():
    return build_policy(OBS, ACTIONS, True, PolicyConfig(depth=2, width=8), seed=0)


def _batch(seed: int, params, actor, adv_mean: float, old_shift: float = 0.0) -> LookaheadBatch:
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(N, OBS, generator=g)
    actions = torch.randint(0, ACTIONS, (N,), generator=g)
    adv = torch.randn(N, generator=g) + adv_mean
    with torch.no_grad():
        logp = log_prob(actor, params, obs, actions) + old_shift * torch.randn(N, generator=g)
    return LookaheadBatch(obs, actions, adv, logp)


def test_identical_tasks_have_equal_lookahead() -> None:
    pol = _policy()
    params = pol.actor_params()
    b = _batch(0, params, pol.actor, adv_mean=0.7)
    z = tag_lookahead(pol.actor, params, [b, b, _batch(1, params, pol.actor, adv_mean=-0.5)], lr=0.5)
    assert z.shape == (3, 3) and z.dtype == torch.float64
    assert z[0, 1] == pytest.approx(float(z[0, 0]), rel=1e-6)
    assert z[1, 0] == pytest.approx(float(z[1, 1]), rel=1e-6)
    assert z[1, 1] == pytest.approx(float(z[0, 0]), rel=1e-6)
    assert z[0, 2] == pytest.approx(float(z[1, 2]), rel=1e-6)
    assert torch.all(torch.diagonal(z) > 0)  # a step on a task lowers its own loss


def test_opposed_advantages_give_negative_lookahead_whatever_the_loss_sign() -> None:
    pol = _policy()
    params = pol.actor_params()
    a = _batch(2, params, pol.actor, adv_mean=0.8)  # L_a(θ_old) = −mean Â < 0
    b = a._replace(advantages=-a.advantages)  # L_b = −L_a > 0
    base = [float(ppo_surrogate_loss(pol.actor, params, x)) for x in (a, b)]
    assert base[0] < 0 < base[1]
    z = tag_lookahead(pol.actor, params, [a, b], lr=0.5)
    assert z[0, 0] > 0 and z[1, 1] > 0
    assert z[0, 1] < 0 and z[1, 0] < 0
    # The plain ratio 1 − L'/L would call a's own helpful step harmful because L_a < 0.
    g = torch.autograd.grad(_module_loss(pol.actor, a), list(pol.actor.parameters()))
    stepped = _stepped(pol.actor, g, 0.5)
    literal = 1 - _module_loss(stepped, a).item() / base[0]
    assert literal < 0 and literal == pytest.approx(-float(z[0, 0]), rel=1e-5)


def _module_loss(actor, b: LookaheadBatch, clip: float = 0.2) -> torch.Tensor:
    """The PPO clipped surrogate written out on the module (no functional call)."""
    logp = torch.log_softmax(actor(b.obs), -1).gather(-1, b.actions[:, None]).squeeze(-1)
    ratio = (logp - b.logp_old).exp()
    return torch.max(-b.advantages * ratio, -b.advantages * torch.clamp(ratio, 1 - clip, 1 + clip)).mean()


def _stepped(actor, grads, lr: float):
    out = copy.deepcopy(actor)
    with torch.no_grad():
        for p, g in zip(out.parameters(), grads, strict=True):
            p -= lr * g
    return out


def test_against_a_hand_written_autograd_loop() -> None:
    pol = _policy()
    params = pol.actor_params()
    # θ ≠ θ_old (old log-probs shifted): ratios away from 1, some clipped; mixed signs of L_j.
    means = (0.9, -0.6, 0.1)
    batches = [_batch(10 + t, params, pol.actor, adv_mean=m, old_shift=0.3) for t, m in enumerate(means)]
    lr = 0.3
    z = tag_lookahead(pol.actor, params, batches, lr=lr)
    raw = tag_lookahead(pol.actor, params, batches, lr=lr, relative=False)
    for i in range(3):
        grads = torch.autograd.grad(_module_loss(pol.actor, batches[i]), list(pol.actor.parameters()))
        stepped = _stepped(pol.actor, grads, lr)
        for j in range(3):
            before = _module_loss(pol.actor, batches[j]).item()
            after = _module_loss(stepped, batches[j]).item()
            assert float(raw[i, j]) == pytest.approx(before - after, rel=1e-4, abs=1e-7)
            assert float(z[i, j]) == pytest.approx((before - after) / abs(before), rel=1e-4, abs=1e-6)
    # The parameters passed in are not modified.
    assert all(torch.equal(v, pol.actor_params()[k]) for k, v in params.items())


def test_zero_loss_is_undefined_and_guards() -> None:
    pol = _policy()
    params = pol.actor_params()
    b = _batch(3, params, pol.actor, adv_mean=0.0)
    centred = b._replace(advantages=b.advantages - b.advantages.mean())  # L(θ_old) = 0 up to rounding
    z = tag_lookahead(pol.actor, params, [b, centred], lr=0.1)
    assert torch.isnan(z[:, 1]).all() and torch.isfinite(z[:, 0]).all()
    assert torch.isfinite(tag_lookahead(pol.actor, params, [b, centred], lr=0.1, relative=False)).all()
    with pytest.raises(ConfigError, match="lr=0"):
        tag_lookahead(pol.actor, params, [b], lr=0.0)
    with pytest.raises(ConfigError, match="no task batches"):
        tag_lookahead(pol.actor, params, [], lr=0.1)


def test_tag_affinity_averages_defined_entries_and_symmetrises() -> None:
    z1 = np.array([[1.0, 2.0], [4.0, 3.0]])
    z2 = torch.tensor([[3.0, math.nan], [0.0, 5.0]])
    np.testing.assert_allclose(tag_affinity([z1, z2]), [[0.0, 2.0], [2.0, 0.0]])  # mean [[2, 2], [2, 4]]
    np.testing.assert_allclose(tag_affinity([z1, z2], zero_diagonal=False), [[2.0, 2.0], [2.0, 4.0]])
    with pytest.raises(ConfigError, match=r"Z\[0, 1\] is undefined"):
        tag_affinity([np.array([[1.0, math.nan], [0.0, 1.0]])])
    with pytest.raises(ConfigError, match="no lookahead"):
        tag_affinity([])
    with pytest.raises(ConfigError, match="square"):
        tag_affinity([np.zeros((2, 3))])
