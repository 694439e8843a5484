import numpy as np
import pytest
import torch

from policygradex import tasks
from policygradex.errors import ConfigError
from policygradex.rl.evaluate import evaluate
from policygradex.rl.policy import PolicyConfig, build_policy
from policygradex.rl.ppo import PPOConfig, ppo_config_for, train

SMALL = PPOConfig(total_steps=3 * 2 * 2 * 16 * 2, envs_per_task=2, num_steps=16, num_minibatches=2, update_epochs=2)


def _params(policy):
    return {k: v.clone() for k, v in policy.state_dict().items()}


def test_same_seed_gives_identical_parameters():
    family = tasks.make("cartpole-10")
    a = train(family, [0, 5, 9], SMALL, seed=7, policy_cfg=PolicyConfig(width=16))
    b = train(family, [0, 5, 9], SMALL, seed=7, policy_cfg=PolicyConfig(width=16))
    c = train(family, [0, 5, 9], SMALL, seed=8, policy_cfg=PolicyConfig(width=16))
    pa, pb, pc = _params(a.policy), _params(b.policy), _params(c.policy)
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert not all(torch.equal(pa[k], pc[k]) for k in pa)
    assert a.env_steps == b.env_steps == SMALL.batch_size(3) * 4 == SMALL.total_steps


def test_fine_tune_copies_init_and_trains_subset():
    family = tasks.make("planted-toy")
    init = build_policy(family.obs_dim, family.action_dim, True, PolicyConfig(width=16), seed=0)
    before = _params(init)
    res = train(family, [3, 1], SMALL, seed=0, init=init)
    assert all(torch.equal(before[k], v) for k, v in init.state_dict().items())  # init untouched
    assert not all(torch.equal(before[k], v) for k, v in res.policy.state_dict().items())
    assert res.task_indices == [1, 3]
    assert {e.task for e in res.episodes} == {1, 3}


def test_budget_validation():
    with pytest.raises(ConfigError, match="total_steps=0"):
        PPOConfig(total_steps=0)
    with pytest.raises(ConfigError, match="num_steps=-1"):
        PPOConfig(num_steps=-1)
    with pytest.raises(ConfigError, match="less than one rollout"):
        PPOConfig(total_steps=10).num_iterations(3)


def test_planted_toy_is_learnable():
    """The smoke-budget meta-policy beats a uniformly random policy (expected return 2) on every task."""
    family = tasks.make("planted-toy")
    cfg = ppo_config_for(family, "smoke")
    res = train(family, range(family.n), cfg, seed=0)
    trained = evaluate(res.policy, family, range(family.n), episodes=100, seed=1).mean_return
    untrained = build_policy(family.obs_dim, family.action_dim, True, PolicyConfig(), seed=0)
    rand = evaluate(untrained, family, range(family.n), episodes=100, seed=1, deterministic=False).mean_return
    for i in range(family.n):
        assert rand[i] < 2.6
        assert trained[i] > rand[i] + 1.0, (i, trained[i], rand[i])


def test_evaluate_is_seeded_and_counts_episodes():
    family = tasks.make("cartpole-10")
    pol = build_policy(family.obs_dim, family.action_dim, True, PolicyConfig(width=16), seed=0)
    a = evaluate(pol, family, [0, 5], episodes=5, seed=3, deterministic=False)
    b = evaluate(pol, family, [0, 5], episodes=5, seed=3, deterministic=False)
    assert a.mean_return == b.mean_return
    assert a.success_rate is None and a.episodes == 5
    assert all(np.isfinite(v) and 8 <= v <= 500 for v in a.mean_return.values())
    with pytest.raises(ConfigError):
        evaluate(pol, family, [0], episodes=0, seed=0)
