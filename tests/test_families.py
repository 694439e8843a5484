"""The families on optional libraries: LunarLander, Highway, Meta-World MT10/MT50, HalfCheetah-Vel (issue #5).

Every family builds, steps every task, keeps one observation and one action space across its tasks,
carries the right one-hot ids, and runs through the pipeline on tiny budgets. The extras are installed
by the bootstrap (``make test``: ``.[test,all]``); a missing extra fails here rather than skipping.
"""

import dataclasses
import json
import pickle
import sys

import gymnasium as gym
import numpy as np
import pytest

from policygradex import pipeline, tasks
from policygradex.cli import main
from policygradex.errors import MissingExtraError
from policygradex.tasks import metaworld as mw_tasks
from policygradex.tasks.base import TaskFamily

# name → (module the family imports, extra)
EXTRAS = {
    "lunarlander-10": ("Box2D", "box2d"),
    "lunarlander-meta-10": ("Box2D", "box2d"),
    "lunarlander-meta-10-test": ("Box2D", "box2d"),
    "highway-10": ("highway_env", "highway"),
    "highway-meta-10": ("highway_env", "highway"),
    "highway-meta-10-test": ("highway_env", "highway"),
    "metaworld-mt10": ("metaworld", "metaworld"),
    "metaworld-mt50": ("metaworld", "metaworld"),
    "halfcheetah-vel-10": ("mujoco", "mujoco"),
}
FAST = [name for name in EXTRAS if name != "metaworld-mt50"]
HELD_OUT = {"lunarlander-meta-10-test", "highway-meta-10-test"}
EXPECTED = {  # name: (n, raw obs dim, action space, metric)
    "lunarlander-10": (10, 8, "Discrete(4)", "return"),
    "lunarlander-meta-10": (10, 8, "Discrete(4)", "return"),
    "lunarlander-meta-10-test": (50, 8, "Discrete(4)", "return"),
    "highway-10": (10, 25, "Discrete(5)", "return"),
    "highway-meta-10": (10, 25, "Discrete(5)", "return"),
    "highway-meta-10-test": (50, 25, "Discrete(5)", "return"),
    "metaworld-mt10": (10, 39, "Box(4)", "success"),
    "metaworld-mt50": (50, 39, "Box(4)", "success"),
    "halfcheetah-vel-10": (10, 17, "Box(6)", "return"),
}


def _random_actions(family: TaskFamily, rng: np.random.Generator, num_envs: int) -> np.ndarray:
    if family.discrete:
        return rng.integers(0, family.action_dim, num_envs)
    return rng.uniform(-1, 1, (num_envs, family.action_dim)).astype(np.float32)


def _expected_ids(family: TaskFamily, task_index: np.ndarray) -> np.ndarray:
    ids = np.zeros((len(task_index), family.onehot_size), dtype=np.float32)
    if family.name not in HELD_OUT:
        ids[np.arange(len(task_index)), task_index] = 1.0
    return ids


def _check_steps(family: TaskFamily, steps: int = 3) -> None:
    venv = family.make_vec(range(family.n), 1)
    try:
        assert venv.task_index.tolist() == list(range(family.n))
        obs = venv.reset(seed=0)
        assert obs.shape == (family.n, family.obs_dim) and obs.dtype == np.float32
        ids = _expected_ids(family, venv.task_index)
        np.testing.assert_array_equal(obs[:, family.raw_obs_dim :], ids)
        rng = np.random.default_rng(0)
        for _ in range(steps):
            res = venv.step(_random_actions(family, rng, venv.num_envs))
            assert res.obs.shape == (family.n, family.obs_dim)
            assert res.reward.shape == (family.n,) and np.isfinite(res.reward).all()
            np.testing.assert_array_equal(res.obs[:, family.raw_obs_dim :], ids)
            assert (res.success is not None) == (family.metric == "success")
    finally:
        venv.close()


def _check_spaces(family: TaskFamily) -> None:
    """Every task's single environment has the family's observation size and action space."""
    for i in range(family.n):
        env = family.make_env(i)
        assert env.observation_space.shape == (family.raw_obs_dim,), (family.name, i)
        if family.discrete:
            assert env.action_space == family.action_space, (family.name, i)
        else:
            assert isinstance(env.action_space, gym.spaces.Box)
            np.testing.assert_array_equal(env.action_space.low, family.action_space.low)
            np.testing.assert_array_equal(env.action_space.high, family.action_space.high)
        env.close()


# ---- registry, listing, missing extras ----------------------------------------------------------------


def test_every_family_is_registered_with_its_extra():
    assert set(EXTRAS) <= set(tasks.names())
    for name, (_, extra) in EXTRAS.items():
        assert tasks.extra_of(name) == extra
    assert tasks.extra_of("cartpole-10") is None


@pytest.mark.parametrize("name", FAST)
def test_family_info(name):
    family = tasks.make(name)
    n, raw, space, metric = EXPECTED[name]
    assert (family.n, family.raw_obs_dim, family.describe_action_space(), family.metric) == (n, raw, space, metric)
    assert family.obs_dim == raw + 10  # held-out families keep their training family's id size
    assert family.train_steps["smoke"] < family.train_steps["default"]
    assert tasks.make(family.full_name).name == name


@pytest.mark.parametrize("name", sorted({"lunarlander-10", "highway-10", "metaworld-mt10", "halfcheetah-vel-10"}))
def test_missing_extra_gives_one_line(name, monkeypatch):
    module, extra = EXTRAS[name]
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    with pytest.raises(MissingExtraError) as err:
        tasks.make(name)
    msg = str(err.value)
    assert msg == f"family {name!r} needs the {extra} extra: pip install 'policygradex[{extra}]'"
    assert "\n" not in msg


def test_missing_extra_when_building_environments(monkeypatch):
    family = tasks.make("halfcheetah-vel-10")
    monkeypatch.setitem(sys.modules, "mujoco", None)
    with pytest.raises(MissingExtraError, match=r"needs the mujoco extra: pip install 'policygradex\[mujoco\]'"):
        family.make_env(0)


def test_families_listing_shows_sources_and_survives_missing_extras(monkeypatch, capsys):
    assert main(["families"]) == 0
    out = capsys.readouterr().out
    assert "metaworld 3." in out and "reward v2" in out and "highway-env 1." in out and "LunarLander-v3" in out
    monkeypatch.setitem(sys.modules, "Box2D", None)
    assert main(["families"]) == 0
    lines = capsys.readouterr().out.splitlines()
    lunar = [line for line in lines if line.startswith("lunarlander-10 ")]
    assert lunar == [f"{'lunarlander-10':24s} (needs extra box2d)"]
    assert any(line.startswith("cartpole-10 ") and "n=10" in line for line in lines)
    assert any(line.startswith("highway-10 ") and "n=10" in line for line in lines)


# ---- building and stepping -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FAST)
def test_every_task_steps_with_its_one_hot(name):
    _check_steps(tasks.make(name))


@pytest.mark.parametrize("name", FAST)
def test_tasks_share_observation_and_action_spaces(name):
    _check_spaces(tasks.make(name))


def test_subset_keeps_full_family_one_hot():
    family = tasks.make("lunarlander-10")
    venv = family.make_vec([7, 2], envs_per_task=2)
    obs = venv.reset(seed=0)
    assert obs.shape == (4, 8 + 10)
    assert obs[:, 8:].argmax(1).tolist() == [2, 2, 7, 7] and obs[:, 8:].sum(1).tolist() == [1.0] * 4
    venv.close()


def test_task_parameters_reach_the_environments():
    lunar = tasks.make("lunarlander-10")
    storm = lunar.make_env(9).unwrapped
    assert (storm.gravity, storm.wind_power, storm.turbulence_power, storm.enable_wind) == (-10.0, 20.0, 2.0, True)
    assert lunar.make_env(0).unwrapped.enable_wind is False
    highway = tasks.make("highway-10")
    cfg = highway.make_env(7).unwrapped.config
    p = highway.tasks[7].params
    assert (cfg["lanes_count"], cfg["vehicles_count"]) == (int(p["lanes_count"]), int(p["vehicles_count"]))
    assert (cfg["collision_reward"], cfg["high_speed_reward"], cfg["duration"]) == (-3.0, 0.2, 20)
    # one normalisation for every task: observations stay in [-1, 1] on 2- and 4-lane roads alike
    for i in (1, 2):
        env = highway.make_env(i)
        obs, _ = env.reset(seed=0)
        for _ in range(3):
            obs, *_ = env.step(0)
        assert obs.shape == (25,) and np.abs(obs).max() <= 1.0
        assert env.unwrapped.observation_type.features_range["y"] == [-16.0, 16.0]


def test_highway_episodes_last_at_most_20_decisions():
    env = tasks.make("highway-10").make_env(3)
    env.reset(seed=0)
    steps, terminated, truncated = 0, False, False
    while not (terminated or truncated) and steps < 30:
        _, _, terminated, truncated, _ = env.step(1)  # IDLE
        steps += 1
    assert steps <= 20 and (terminated or steps == 20)


def test_highway_fast_observation_equals_highway_envs_own():
    """The pandas-free Kinematics observation gives highway-env's values, rewards and ends, step by step."""
    from policygradex.tasks.highway import env_config

    family = tasks.make("highway-10")
    for i in (0, 2, 4, 7):  # 3 and 4 lanes, dense and light traffic
        ours = family.make_env(i)
        ref = gym.wrappers.FlattenObservation(gym.make("highway-fast-v0", config=env_config(family.tasks[i].params)))
        o1, _ = ours.reset(seed=i)
        o2, _ = ref.reset(seed=i)
        np.testing.assert_array_equal(o1, o2)
        rng = np.random.default_rng(i)
        for t in range(40):
            a = int(rng.integers(5))
            s1, s2 = ours.step(a), ref.step(a)
            np.testing.assert_array_equal(s1[0], s2[0])
            assert s1[1:4] == s2[1:4]
            if s1[2] or s1[3]:
                np.testing.assert_array_equal(ours.reset(seed=100 + t)[0], ref.reset(seed=100 + t)[0])
        assert np.abs(o1).max() <= 1.0


def test_halfcheetah_reward_is_distance_to_target_speed():
    family = tasks.make("halfcheetah-vel-10")
    assert [t.params["target_velocity"] for t in family.tasks] == [-2.0, -1.5, -1.0, -0.5, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    env = family.make_env(8)  # v* = 2.5
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    steps = 0
    truncated = False
    while not truncated:
        a = rng.uniform(-1, 1, 6).astype(np.float32)
        x0 = env.unwrapped.data.qpos[0]
        _, r, terminated, truncated, info = env.step(a)
        steps += 1
        v = (env.unwrapped.data.qpos[0] - x0) / env.unwrapped.dt
        assert r == pytest.approx(-abs(v - 2.5) - 0.05 * float(np.sum(a.astype(np.float64) ** 2)), abs=1e-6)
        assert not terminated
    assert steps == 200


@pytest.mark.parametrize("prefix", ["lunarlander", "highway"])
def test_meta_split_is_seeded_and_disjoint(prefix):
    train, test = tasks.make(f"{prefix}-meta-10"), tasks.make(f"{prefix}-meta-10-test")
    assert (train.n, test.n) == (10, 50) and test.onehot_size == 10
    assert [t.params for t in train.tasks] == [t.params for t in tasks.make(f"{prefix}-meta-10").tasks]
    key = lambda t: tuple(sorted(t.params.items()))  # noqa: E731
    assert not {key(t) for t in train.tasks} & {key(t) for t in test.tasks}
    assert len({key(t) for t in test.tasks}) == 50


# ---- Meta-World --------------------------------------------------------------------------------------------


def _rand_vec(task) -> np.ndarray:
    return pickle.loads(task.data)["rand_vec"]


def _task_rows(venv, task: int) -> np.ndarray:
    return np.nonzero(venv.task_index == task)[0]


def test_metaworld_goals_and_ids_do_not_depend_on_the_subset():
    """A task built alone, in a subset or in the full family starts from the same goal with the same
    one-hot id for the same seed; its goals are those of Meta-World's own MT10 with the same seed."""
    family = tasks.make("metaworld-mt10")
    task = 4  # drawer-open-v3
    venvs = [family.make_vec([task], 2), family.make_vec([1, task, 8], 2), family.make_vec(range(10), 2)]
    for seed in (0, 1):
        obs, targets = [], []
        for venv in venvs:
            o = venv.reset(seed=seed)
            rows = _task_rows(venv, task)
            obs.append(o[rows])
            targets.append(np.stack([venv._env.envs[r].unwrapped._target_pos for r in rows]))
        for o, tg in zip(obs[1:], targets[1:], strict=True):
            np.testing.assert_array_equal(o, obs[0])  # whole observation: state, goal and task id
            np.testing.assert_array_equal(tg, targets[0])
        np.testing.assert_allclose(obs[0][:, 36:39], targets[0], atol=1e-6)  # the goal is observed
        ids = obs[0][:, 39:]
        assert ids.shape == (2, 10) and ids.argmax(1).tolist() == [task, task] and ids.sum() == 2
    # the goal is drawn per episode from the task's 50 goals: other seeds and copies give other goals
    goals = set()
    for seed in range(6):
        venvs[0].reset(seed=seed)
        goals |= {tuple(env.unwrapped._target_pos) for env in venvs[0]._env.envs}
    assert len(goals) > 2
    for venv in venvs:
        venv.close()

    # every environment takes its goals from the one cached benchmark object ...
    bench = mw_tasks.benchmark("MT10", mw_tasks.BENCHMARK_SEED)
    assert bench is mw_tasks.benchmark("MT10", mw_tasks.BENCHMARK_SEED)
    env = family.make_env(task)
    ours = [_rand_vec(t) for t in env.goals]
    assert len(ours) == 50 and all(t.env_name == "drawer-open-v3" for t in env.goals)
    # ... whose goals are those of Meta-World's own MT10 benchmark with the same seed
    reference = gym.make_vec("Meta-World/MT10", seed=mw_tasks.BENCHMARK_SEED)
    theirs = [_rand_vec(t) for t in reference.envs[task].get_wrapper_attr("tasks")]
    reference.close()
    np.testing.assert_array_equal(np.stack(ours), np.stack(theirs))
    assert set(family.tasks[i].name for i in range(10)) == set(bench.train_classes)


def test_metaworld_training_state_is_small_and_resumes_bit_identically():
    """A Meta-World environment pickles without its MuJoCo model and data (a training state of MT10 was
    600 MB), and the unpickled copy continues bit-identically through an episode's end and the next reset:
    on pick-place, whose init_left_pad is a view of data.xpos (a full pickle lost that, and diverged at
    once), on a task with an object and on reach."""
    import pickle

    family = tasks.make("metaworld-mt10")
    for task in (0, 2, 7):  # reach, pick-place, peg-insert-side
        env = family.make_env(task)
        env.reset(seed=3)
        actions = np.random.default_rng(task).uniform(-1, 1, (37 + 520, 4)).astype(np.float32)
        for a in actions[:37]:
            env.step(a)
        state = pickle.dumps(env)
        assert len(state) < 200_000, len(state)  # was about 42 MB
        clone = pickle.loads(state)
        ended = 0
        for a in actions[37:]:
            mine, theirs = env.step(a), clone.step(a)
            np.testing.assert_array_equal(mine[0], theirs[0])
            assert mine[1:4] == theirs[1:4] and mine[4] == theirs[4]
            if mine[2] or mine[3]:
                ended += 1
                np.testing.assert_array_equal(env.reset()[0], clone.reset()[0])
        assert ended == 1  # the 500-step limit was crossed once
        env.close()
        clone.close()
    # a training state saved before compact pickles (the whole environment, no source) still loads and saves
    old = family.make_env(2)
    old.reset(seed=1)
    del old._source, old._model_prints
    restored = pickle.loads(pickle.dumps(old))
    assert restored._source is None
    restored.step(actions[0])
    assert len(pickle.dumps(restored)) > 10_000_000  # it stays a full pickle


def test_metaworld_success_is_reported_through_the_vector_env():
    """Meta-World's scripted reach policy succeeds; the batched env reports ``success`` on that step."""
    from metaworld.policies import SawyerReachV3Policy

    family = tasks.make("metaworld-mt10")
    assert "reward v2" in family.source and family.source.startswith("metaworld 3.")
    venv = family.make_vec([0], 1)  # reach-v3
    obs = venv.reset(seed=3)
    policy = SawyerReachV3Policy()
    successes = 0
    for _ in range(200):
        res = venv.step(policy.get_action(obs[0, :39])[None].astype(np.float32))
        successes += int(res.success[0])
        obs = res.obs
    venv.close()
    assert successes > 0


# ---- pipeline smoke runs ---------------------------------------------------------------------------------

# Per family: tiny budgets through the run configuration (and, for the slow-stepping families, a
# shorter PPO rollout than the family's own, since meta-training needs at least one rollout).
SMOKE = {
    "lunarlander-10": dict(steps=10_240, score="rollout", rollout=None),
    "halfcheetah-vel-10": dict(steps=8_000, score="rollout", rollout=None),
    "highway-10": dict(steps=160, score="surrogate", rollout=dict(envs_per_task=1, num_steps=16)),
    "metaworld-mt10": dict(steps=640, score="surrogate", rollout=dict(envs_per_task=1, num_steps=64)),
}


def _smoke_family(name: str) -> TaskFamily:
    family = tasks.make(name)
    rollout = SMOKE[name]["rollout"]
    if rollout is None:
        return family
    return dataclasses.replace(family, ppo_overrides={**family.ppo_overrides, **rollout})


def _smoke_config(name: str) -> pipeline.RunConfig:
    s = SMOKE[name]
    return pipeline.RunConfig(
        preset="smoke",
        k=2,
        meta=pipeline.MetaConfig(total_steps=s["steps"], depth=2, width=32),
        features=pipeline.FeatureConfig(samples_per_task=16, d=64, envs_per_task=1),
        estimate=pipeline.EstimateConfig(num_subsets=6, subset_size=5, min_coverage=1, episodes=1, score=s["score"]),
        groups=pipeline.GroupConfig(eval_episodes=1, total_steps=s["steps"]),
    )


def _check_run(d, family: TaskFamily) -> None:
    n = family.n
    config = json.loads((d / "config.json").read_text())
    assert config["family"]["source"] == family.source and config["family"]["n"] == n
    meta_eval = json.loads((d / "meta" / "eval.json").read_text())
    assert sorted(map(int, meta_eval["mean_return"])) == list(range(n))
    if family.metric == "success":
        assert sorted(map(int, meta_eval["success_rate"])) == list(range(n))
    subsets = json.loads((d / "subsets.json").read_text())["subsets"]
    rows = [json.loads(line) for line in (d / "scores.jsonl").read_text().splitlines()]
    assert len(rows) == sum(len(s["tasks"]) for s in subsets) and all(np.isfinite(r["score"]) for r in rows)
    U = np.load(d / "affinity.npy")
    assert U.shape == (n, n) and np.isfinite(U).all()
    groups = json.loads((d / "groups.json").read_text())["groups"]
    assert len(groups) == 2 and sorted(i for g in groups for i in g) == list(range(n))


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_pipeline_smoke_until_clusters(name, tmp_path):
    family = _smoke_family(name)
    res = pipeline.run(family, _smoke_config(name), tmp_path / "run", stop_after="cluster")
    assert res.groups is not None and res.group_scores is None
    _check_run(tmp_path / "run", family)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMOKE))
def test_pipeline_smoke_with_group_policies(name, tmp_path):
    family = _smoke_family(name)
    res = pipeline.run(family, _smoke_config(name), tmp_path / "run")
    _check_run(tmp_path / "run", family)
    assert sorted(res.group_scores) == list(range(family.n)) and all(np.isfinite(list(res.group_scores.values())))
    assert (tmp_path / "run" / "report.md").exists()


@pytest.mark.slow
def test_metaworld_mt50_builds_and_steps():
    family = tasks.make("metaworld-mt50")
    assert family.n == 50 and family.obs_dim == 39 + 50
    assert {t.name for t in family.tasks} >= {t.name for t in tasks.make("metaworld-mt10").tasks}
    _check_steps(family, steps=2)
    _check_spaces(family)

