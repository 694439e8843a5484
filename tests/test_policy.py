import pytest
import torch
from torch.func import grad, vmap

from policygradex.errors import ConfigError
from policygradex.rl.policy import PolicyConfig, build_policy, log_prob


@pytest.mark.parametrize("discrete", [True, False])
def test_functional_log_prob_equals_module(discrete):
    pol = build_policy(7, 3, discrete, PolicyConfig(depth=4, width=16), seed=0)
    obs = torch.randn(11, 7)
    actions = torch.randint(0, 3, (11,)) if discrete else torch.randn(11, 3)
    module_logp, _ = pol.log_prob_entropy(obs, actions)
    func_logp = log_prob(pol.actor, pol.actor_params(), obs, actions)
    assert torch.allclose(module_logp, func_logp, atol=1e-6)
    # and against torch.distributions
    out = pol.actor(obs)
    if discrete:
        ref = torch.distributions.Categorical(logits=out).log_prob(actions)
    else:
        ref = torch.distributions.Normal(out, pol.actor.log_std.exp()).log_prob(actions).sum(-1)
    assert torch.allclose(func_logp, ref, atol=1e-5)


@pytest.mark.parametrize("discrete", [True, False])
def test_log_prob_works_under_vmap_grad(discrete):
    pol = build_policy(5, 2, discrete, PolicyConfig(depth=2, width=8), seed=1)
    params = pol.actor_params()
    obs = torch.randn(4, 5)
    actions = torch.randint(0, 2, (4,)) if discrete else torch.randn(4, 2)
    g = vmap(grad(lambda p, o, a: log_prob(pol.actor, p, o, a)), in_dims=(None, 0, 0))(params, obs, actions)
    for j in range(4):
        p = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        lp = log_prob(pol.actor, p, obs[j : j + 1], actions[j : j + 1]).sum()
        ref = torch.autograd.grad(lp, list(p.values()))
        for (k, _), r in zip(p.items(), ref, strict=True):
            assert torch.allclose(g[k][j], r, atol=1e-6)


def test_depth_counts_linear_layers():
    pol = build_policy(4, 2, True, PolicyConfig(depth=3, width=8), seed=0)
    assert sum(isinstance(m, torch.nn.Linear) for m in pol.actor.modules()) == 3
    with pytest.raises(ConfigError):
        PolicyConfig(depth=0)


def test_same_seed_same_weights():
    a = build_policy(4, 2, True, PolicyConfig(), seed=3)
    b = build_policy(4, 2, True, PolicyConfig(), seed=3)
    c = build_policy(4, 2, True, PolicyConfig(), seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
