"""The ``planted-sparse`` family (issue 12, item 5): structure, rewards, and θ* failing its sparse group."""

from __future__ import annotations

import numpy as np

from policygradex import tasks
from policygradex.rl.evaluate import evaluate
from policygradex.rl.policy import PolicyConfig, build_policy
from policygradex.rl.ppo import ppo_config_for, train
from policygradex.tasks.sparse import EPISODE_STEPS, RAW_OBS_DIM
from policygradex.tasks.toy import CONTEXT_DIM, task_weights

SPARSE = (2, 5)
DENSE = (0, 1, 3, 4)


def test_family_is_registered_with_planted_groups_and_budgets() -> None:
    family = tasks.make("planted-sparse")
    assert "planted-sparse" in tasks.names() and tasks.make("planted-sparse-v1").name == "planted-sparse"
    shape = (family.n, family.raw_obs_dim, family.obs_dim, family.describe_action_space())
    assert shape == (6, 6, 12, "Discrete(4)")
    assert family.planted_groups == ((0, 3), (1, 4), (2, 5))
    assert family.train_steps == {"default": 200_000, "smoke": 40_000}
    assert [t.params["sparse"] for t in family.tasks] == [0.0, 0.0, 1.0, 0.0, 0.0, 1.0]
    # Same rules as planted-toy: within a group nearly the same W, across groups permuted labels.
    for i in range(6):
        np.testing.assert_array_equal(family.make_env(i).weights, task_weights(i))


def _right_actions(obs: np.ndarray, task_index: np.ndarray) -> np.ndarray:
    rows = zip(obs, task_index, strict=True)
    return np.array([int(np.argmax(task_weights(int(i)) @ o[:CONTEXT_DIM])) for o, i in rows])


def test_steps_ids_and_rewards_of_an_oracle_and_of_one_mistake() -> None:
    family = tasks.make("planted-sparse")
    venv = family.make_vec(range(family.n), 1)
    try:
        obs = venv.reset(seed=0)
        ids = obs[:, RAW_OBS_DIM:]
        np.testing.assert_array_equal(ids, np.eye(6, dtype=np.float32))
        # t/8 = 0, streak = 1
        np.testing.assert_array_equal(obs[:, CONTEXT_DIM : RAW_OBS_DIM], [[0.0, 1.0]] * 6)
        rewards, ends = [], []
        for t in range(EPISODE_STEPS):
            actions = _right_actions(obs, venv.task_index)
            if t == 3:
                actions[[3, 5]] = (actions[[3, 5]] + 1) % 4  # one mistake on dense task 3 and sparse task 5
            res = venv.step(actions)
            rewards.append(res.reward)
            ends.append(res.terminated.copy())
            assert not res.truncated.any()
            if t < EPISODE_STEPS - 1:
                assert res.obs[0, CONTEXT_DIM] == (t + 1) / EPISODE_STEPS
                assert res.obs[5, CONTEXT_DIM + 1] == (0.0 if t >= 3 else 1.0)  # the streak is broken
            np.testing.assert_array_equal(res.obs[:, RAW_OBS_DIM:], ids)
            obs = res.obs
        r = np.array(rewards)  # [8, 6]
        assert np.all(np.array(ends)[:-1] == 0) and np.all(ends[-1])  # every episode ends after 8 steps
        np.testing.assert_array_equal(r.sum(0), [8, 8, 8, 7, 8, 0])
        np.testing.assert_array_equal(r[:-1, list(SPARSE)], 0)  # sparse: nothing before the last step
        np.testing.assert_array_equal(r[:, [0, 1, 4]], 1)
        np.testing.assert_array_equal(obs[:, CONTEXT_DIM : RAW_OBS_DIM], [[0.0, 1.0]] * 6)  # the next episode
    finally:
        venv.close()


def test_meta_policy_fails_the_sparse_group_and_learns_the_dense_ones() -> None:
    """Multitask PPO, smoke budget: the sparse group stays at the floor (0), the others beat random (2)."""
    family = tasks.make("planted-sparse")
    res = train(family, range(family.n), ppo_config_for(family, "smoke"), seed=0)
    assert not any(e.ret > 0 for e in res.episodes if e.task in SPARSE)  # no rewarded sparse episode
    trained = evaluate(res.policy, family, range(family.n), episodes=100, seed=1).mean_return
    sampled = evaluate(res.policy, family, range(family.n), 100, seed=1, deterministic=False).mean_return
    untrained = build_policy(family.obs_dim, family.action_dim, True, PolicyConfig(), seed=0)
    rand = evaluate(untrained, family, DENSE, episodes=100, seed=1, deterministic=False).mean_return
    for i in SPARSE:
        assert trained[i] == 0.0 and sampled[i] == 0.0, (i, trained[i], sampled[i])
    for i in DENSE:
        assert rand[i] < 2.6
        assert trained[i] > rand[i] + 1.5, (i, trained[i], rand[i])
