import pytest
import torch

from policygradex.rl.gae import gae


def test_gae_hand_computed_with_episode_boundary():
    # One env, 3 steps; the episode ends at t=1, a new one starts at t=2.
    gamma, lam = 0.9, 0.5
    r = torch.tensor([[1.0], [2.0], [3.0]])
    v = torch.tensor([[0.5], [1.0], [1.5]])
    d = torch.tensor([[0.0], [1.0], [0.0]])
    last = torch.tensor([2.0])
    # t=2: delta = 3 + 0.9*2 - 1.5 = 3.3; A2 = 3.3
    # t=1: done -> delta = 2 - 1 = 1; A1 = 1
    # t=0: delta = 1 + 0.9*1.0 - 0.5 = 1.4; A0 = 1.4 + 0.9*0.5*1 = 1.85
    adv, ret = gae(r, v, d, last, gamma, lam)
    assert adv[:, 0].tolist() == pytest.approx([1.85, 1.0, 3.3])
    assert ret[:, 0].tolist() == pytest.approx([2.35, 2.0, 4.8])


def test_gae_lambda_one_is_discounted_return_minus_value():
    torch.manual_seed(0)
    T, E, gamma = 6, 3, 0.95
    r, v = torch.rand(T, E), torch.rand(T, E)
    d = torch.zeros(T, E)
    last = torch.rand(E)
    adv, _ = gae(r, v, d, last, gamma, 1.0)
    g = last.clone()
    for t in reversed(range(T)):
        g = r[t] + gamma * g
        assert torch.allclose(adv[t], g - v[t], atol=1e-5)
