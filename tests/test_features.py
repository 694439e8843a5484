import numpy as np
import pytest
import torch

from policygradex import tasks
from policygradex.gradex.features import (
    collect_features,
    flatten,
    per_sample_grads,
    perturbed_policy,
    projected_grads,
    unflatten,
)
from policygradex.gradex.projection import GaussianProjection
from policygradex.gradex.scores import scale_deltas, score_surrogate
from policygradex.rl.policy import PolicyConfig, build_policy, log_prob


@pytest.mark.parametrize("discrete", [True, False])
def test_per_sample_grads_equal_per_example_autograd_loop(discrete):
    pol = build_policy(6, 3, discrete, PolicyConfig(depth=4, width=16), seed=0)
    params = pol.actor_params()
    obs = torch.randn(37, 6)
    actions = torch.randint(0, 3, (37,)) if discrete else torch.randn(37, 3)
    G = torch.cat(list(per_sample_grads(pol.actor, params, obs, actions, chunk=10)))
    assert G.shape == (37, flatten(params).numel())
    for j in range(37):
        pol.actor.zero_grad()
        pol.log_prob_entropy(obs[j : j + 1], actions[j : j + 1])[0].sum().backward()
        ref = torch.cat([p.grad.reshape(-1) for _, p in pol.actor.named_parameters()])
        assert torch.allclose(G[j], ref, atol=1e-6), j


def test_projected_grads_and_first_order_identity():
    """With Δθ = P w, gᵀΔθ = g̃ᵀw exactly, and log π(θ*+εPw) − log π(θ*) ≈ ε g̃ᵀw for small ε."""
    pol = build_policy(6, 3, True, PolicyConfig(depth=3, width=16), seed=1)
    params = pol.actor_params()
    p = flatten(params).numel()
    proj = GaussianProjection(p=p, d=50, seed=3)
    obs, actions = torch.randn(20, 6), torch.randint(0, 3, (20,))
    gt = projected_grads(pol.actor, params, obs, actions, proj, chunk=7)
    full = torch.cat(list(per_sample_grads(pol.actor, params, obs, actions)))
    w = torch.randn(50)
    delta = proj.lift(w)
    assert torch.allclose(full @ delta, gt @ w, rtol=1e-4, atol=1e-4)
    eps = 1e-3 / delta.norm()
    new = unflatten(flatten(params) + eps * delta, params)
    diff = log_prob(pol.actor, new, obs, actions) - log_prob(pol.actor, params, obs, actions)
    assert torch.allclose(diff, eps * gt @ w, rtol=0.05, atol=1e-6)


def test_unflatten_inverts_flatten_and_perturbed_policy():
    pol = build_policy(5, 2, False, PolicyConfig(depth=2, width=8), seed=0)
    params = pol.actor_params()
    vec = flatten(params)
    back = unflatten(vec, params)
    assert all(torch.equal(back[k], params[k]) for k in params)
    delta = torch.randn_like(vec)
    new = perturbed_policy(pol, delta)
    assert torch.allclose(flatten(new.actor_params()), vec + delta)
    assert torch.equal(flatten(pol.actor_params()), vec)  # original untouched
    for a, b in zip(new.critic.parameters(), pol.critic.parameters(), strict=True):
        assert torch.equal(a, b)


def test_collect_features_shapes_and_determinism():
    family = tasks.make("planted-toy")
    pol = build_policy(family.obs_dim, family.action_dim, True, PolicyConfig(width=16), seed=0)
    p = flatten(pol.actor_params()).numel()
    proj = GaussianProjection(p=p, d=32, seed=0)
    a = collect_features(pol, family, proj, samples_per_task=64, seed=5, envs_per_task=4)
    b = collect_features(pol, family, proj, samples_per_task=64, seed=5, envs_per_task=4)
    assert sorted(a) == list(range(6))
    for i in range(6):
        assert a[i].grads.shape == (64, 32) and a[i].advantages.shape == (64,) and a[i].logp.shape == (64,)
        assert torch.equal(a[i].grads, b[i].grads) and torch.equal(a[i].advantages, b[i].advantages)
        # stored observations carry task i's one-hot id
        assert (a[i].obs[:, 4:].argmax(1) == i).all()
        # stored log-probs are the policy's
        assert torch.allclose(a[i].logp, pol.log_prob_entropy(a[i].obs, a[i].actions)[0], atol=1e-5)


def test_scale_deltas_and_surrogate_scores():
    d = torch.randn(4, 10)
    s = scale_deltas(d, theta_norm=20.0, relative_norm=0.01)
    assert torch.allclose(s.norm(dim=1), torch.full((4,), 0.2))
    assert scale_deltas(d, 20.0, None) is d
    grads = [torch.randn(30, 5), torch.randn(20, 5), torch.randn(10, 5)]
    adv = [torch.randn(30), torch.randn(20), torch.randn(10)]
    W = torch.zeros(2, 5)
    out = score_surrogate(W, [(0, 1), (1, 2)], grads, adv, [1.0, 2.0, 3.0])
    assert np.isnan(out[0, 2]) and np.isnan(out[1, 0])
    assert out[0, 0] == 1.0 and out[1, 2] == 3.0  # w = 0: no change
    W = torch.randn(2, 5)
    out = score_surrogate(W, [(0, 1), (1, 2)], grads, adv, [0.0, 0.0, 0.0])
    expect = (adv[1].double() * torch.expm1(grads[1].double() @ W[1].double())).mean().item()
    assert out[1, 1] == pytest.approx(expect)
