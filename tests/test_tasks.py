import gymnasium as gym
import numpy as np
import pytest

from policygradex import tasks
from policygradex.errors import ConfigError
from policygradex.tasks.cartpole import CARTPOLE_10


def test_registry_names_and_unknown_family():
    assert {"cartpole-10", "planted-toy", "cartpole-meta-10", "cartpole-meta-10-test"} <= set(tasks.names())
    with pytest.raises(ConfigError, match="known families: .*cartpole-10"):
        tasks.make("no-such-family")
    assert tasks.make("cartpole-10-v1").name == "cartpole-10"
    with pytest.raises(ConfigError, match="cartpole-10-v1"):
        tasks.make("cartpole-10-v9")


@pytest.mark.parametrize("task", range(len(CARTPOLE_10)))
def test_cartpole_family_dynamics_equal_gymnasium(task):
    """Each task, stepped in the batched family env, equals gymnasium.make('CartPole-v1') with the same
    parameters, step for step, over whole episodes and across the same-step resets."""
    family = tasks.make("cartpole-10")
    venv = family.make_vec(range(family.n), 2)
    venv.reset(seed=123)
    rows = np.nonzero(venv.task_index == task)[0]
    ref = family.make_env(task)
    rng = np.random.default_rng(task)
    checked_resets = 0
    for row in rows:
        ref.reset(seed=0)
        ref.unwrapped.state = venv._env.state[:, row].copy()  # the exact float64 state
        for _ in range(600):
            actions = rng.integers(0, 2, venv.num_envs)
            res = venv.step(actions)
            r_obs, r_rew, r_term, r_trunc, _ = ref.step(int(actions[row]))
            done = res.terminated[row] or res.truncated[row]
            got = res.final_obs[row, :4] if done else res.obs[row, :4]
            np.testing.assert_allclose(got, r_obs, rtol=0, atol=1e-6)
            assert res.reward[row] == r_rew
            assert bool(res.terminated[row]) == r_term
            if done:
                checked_resets += 1
                ref.reset(seed=0)
                ref.unwrapped.state = venv._env.state[:, row].copy()
                assert np.all(np.abs(res.obs[row, :4]) <= 0.05)  # a fresh initial state
    assert checked_resets > 0
    # the environment really has the task's parameters
    p = family.tasks[task].params
    assert ref.unwrapped.force_mag == p["force_mag"] and ref.unwrapped.length == p["length"]


def test_one_hot_ids_use_full_family_index_in_subsets():
    family = tasks.make("cartpole-10")
    venv = family.make_vec([7, 2], envs_per_task=3)
    obs = venv.reset(seed=0)
    assert obs.shape == (6, 4 + 10)
    assert venv.task_index.tolist() == [2, 2, 2, 7, 7, 7]
    ids = obs[:, 4:]
    assert ids.sum(1).tolist() == [1.0] * 6
    assert ids.argmax(1).tolist() == [2, 2, 2, 7, 7, 7]
    res = venv.step(np.zeros(6, dtype=np.int64))
    assert res.obs[:, 4:].argmax(1).tolist() == [2, 2, 2, 7, 7, 7]


def test_task_index_validation():
    family = tasks.make("planted-toy")
    with pytest.raises(ConfigError, match="out of range"):
        family.make_vec([0, 6], 1)
    with pytest.raises(ConfigError, match="duplicates"):
        family.make_vec([1, 1], 1)
    with pytest.raises(ConfigError, match="at least 1"):
        family.make_vec([1], 0)


def test_meta_split_is_seeded_and_disjoint():
    train, test = tasks.make("cartpole-meta-10"), tasks.make("cartpole-meta-10-test")
    assert (train.n, test.n) == (10, 50)
    assert [t.params for t in train.tasks] == [t.params for t in tasks.make("cartpole-meta-10").tasks]
    train_params = {tuple(sorted(t.params.items())) for t in train.tasks}
    assert not train_params & {tuple(sorted(t.params.items())) for t in test.tasks}
    # held-out tasks keep the training id size, with no hot entry
    venv = test.make_vec([0, 49], 1)
    obs = venv.reset(seed=0)
    assert obs.shape == (2, 14) and obs[:, 4:].sum() == 0


def test_planted_toy_structure():
    family = tasks.make("planted-toy")
    assert family.planted_groups == ((0, 3), (1, 4), (2, 5))
    env = family.make_env(0)
    assert isinstance(env, gym.Env)
    obs, _ = env.reset(seed=0)
    total, steps, trunc = 0.0, 0, False
    while not trunc:
        obs, r, term, trunc, _ = env.step(env.action_space.sample())
        total += r
        steps += 1
    assert steps == 8 and 0 <= total <= 8
    # tasks of one group share the best action far more often than tasks of different groups
    from policygradex.tasks.toy import task_weights

    x = np.random.default_rng(0).standard_normal((4, 2000))
    best = {i: (task_weights(i) @ x).argmax(0) for i in range(6)}
    same = np.mean(best[0] == best[3])
    diff = np.mean(best[0] == best[1])
    assert same > 0.8 and diff < 0.35
