"""Highway families on highway-env's ``highway-fast-v0`` (extra ``[highway]``).

Tasks differ in traffic (``lanes_count``, ``vehicles_count``, ``vehicles_density``) and in the reward
weights the driver trades off (``collision_reward``, ``high_speed_reward``): a cautious task and a
speed-seeking one want different driving in the same traffic.

What every task shares, so that all tasks have one observation and one action space:

* observation: highway-env's ``Kinematics`` of the ego vehicle and the 4 nearest vehicles
  (presence, x, y, vx, vy; relative to the ego vehicle), flattened to 25 numbers. The normalisation
  ranges are fixed for all tasks (those highway-env derives for the widest road, 4 lanes), so a
  number means the same thing in every task; highway-env would otherwise rescale ``y`` by each
  road's lane count.
* actions: the 5 discrete meta-actions (lane left, idle, lane right, faster, slower).
* time: one decision per simulated second for 20 s, so an episode is at most 20 steps. highway-env
  steps at roughly 50 decisions per second per environment on one CPU core (its vehicles are
  Python objects), so longer episodes would make every pipeline stage slow.

The reward is highway-env's, normalised by it to [0, 1] per step, so a return lies in [0, 20].
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from policygradex.tasks.base import GymnasiumTaskVecEnv, Task, TaskFamily, meta_split, seeded_param_draws
from policygradex.tasks.extras import dist_version, import_extra

ENV_ID = "highway-fast-v0"
EXTRA = "highway"
PARAM_NAMES = ("lanes_count", "vehicles_count", "vehicles_density", "collision_reward", "high_speed_reward")
OBSERVED_VEHICLES = 5  # the ego vehicle and its 4 nearest neighbours
FEATURES = ("presence", "x", "y", "vx", "vy")
RAW_OBS_DIM = OBSERVED_VEHICLES * len(FEATURES)
NUM_ACTIONS = 5  # DiscreteMetaAction: LANE_LEFT, IDLE, LANE_RIGHT, FASTER, SLOWER
DURATION_S = 20
POLICY_FREQUENCY_HZ = 1
MAX_LANES = 4
# highway-env's own ranges (Vehicle.MAX_SPEED = 40 m/s, lane width 4 m) for a MAX_LANES-lane road.
FEATURES_RANGE: Mapping[str, list[float]] = {
    "x": [-200.0, 200.0],
    "y": [-4.0 * MAX_LANES, 4.0 * MAX_LANES],
    "vx": [-80.0, 80.0],
    "vy": [-80.0, 80.0],
}

# highway-10, version v1: (name, lanes, vehicles, density, collision_reward, high_speed_reward)
HIGHWAY_10: tuple[tuple[str, float, float, float, float, float], ...] = (
    ("default", 3, 15, 1.0, -1.0, 0.4),
    ("two-lane", 2, 10, 1.0, -1.0, 0.4),
    ("four-lane", 4, 20, 1.0, -1.0, 0.4),
    ("light-traffic", 3, 8, 0.6, -1.0, 0.4),
    ("dense-traffic", 3, 20, 1.6, -1.0, 0.4),
    ("speed-seeker", 3, 15, 1.0, -0.5, 1.0),
    ("cautious", 3, 15, 1.0, -3.0, 0.1),
    ("dense-cautious", 4, 20, 1.5, -3.0, 0.2),
    ("light-speed-seeker", 2, 8, 0.6, -0.3, 1.0),
    ("dense-speed-seeker", 3, 20, 1.5, -0.5, 1.0),
)

# The meta-RL parameter distribution (paper §3: 10 training and 50 held-out test tasks). Counts are
# drawn uniformly on the interval and rounded: lanes ∈ {2, 3, 4}, vehicles ∈ {8, ..., 20}.
META_RANGES: Mapping[str, tuple[float, float]] = {
    "lanes_count": (1.5, 4.5),
    "vehicles_count": (7.5, 20.5),
    "vehicles_density": (0.6, 1.6),
    "collision_reward": (-3.0, -0.3),
    "high_speed_reward": (0.1, 1.0),
}
META_TRAIN_SEED = 10
META_TEST_SEED = 20

# highway-env's PPO example (scripts/sb3_highway_ppo.py) uses γ = 0.8 and lr 5e-4: with 20-step
# episodes a long horizon only adds variance. Two environments per task and 64-step rollouts keep a
# batch (10 tasks × 2 × 64 = 1280 steps) affordable at ~50 steps/s per environment.
PPO_OVERRIDES: Mapping[str, Any] = {"envs_per_task": 2, "num_steps": 64, "learning_rate": 5e-4, "gamma": 0.8}
# "default": 10k decisions per task (about an hour on one core here); "smoke": one rollout.
TRAIN_STEPS: Mapping[str, int] = {"default": 100_000, "smoke": 1_280}


def env_config(params: Mapping[str, float]) -> dict[str, Any]:
    """highway-env configuration of a task: its parameters plus the settings every task shares."""
    return {
        "observation": {
            "type": "Kinematics",
            "vehicles_count": OBSERVED_VEHICLES,
            "features": list(FEATURES),
            "features_range": {k: list(v) for k, v in FEATURES_RANGE.items()},
            "absolute": False,
            "normalize": True,
            "clip": True,
        },
        "action": {"type": "DiscreteMetaAction"},
        "duration": DURATION_S,
        "policy_frequency": POLICY_FREQUENCY_HZ,
        "lanes_count": int(params["lanes_count"]),
        "vehicles_count": int(params["vehicles_count"]),
        "vehicles_density": float(params["vehicles_density"]),
        "collision_reward": float(params["collision_reward"]),
        "high_speed_reward": float(params["high_speed_reward"]),
    }


@functools.cache
def _env_class() -> type:
    """``HighwayEnvFast`` whose ``Kinematics`` observation is computed without pandas (same values).

    highway-env builds the observation through ``Vehicle.to_dict`` (13 features, lane geometry
    included) and a pandas DataFrame; that took a third of every step here. This subclass observes the
    same vehicles (highway-env's own ``close_objects_to``), the same five features, the same
    normalisation and clipping, straight into NumPy: ``tests/test_families.py`` checks that both give
    equal observations step by step. Everything else (vehicles, IDM/MOBIL traffic, rewards,
    termination) is highway-env's.
    """
    from highway_env.envs.common.observation import KinematicObservation
    from highway_env.envs.highway_env import HighwayEnvFast

    class FastKinematicObservation(KinematicObservation):
        def __init__(self, env: Any, **config: Any) -> None:
            super().__init__(env, **config)
            if list(self.features) != list(FEATURES) or self.absolute or not (self.normalize and self.clip):
                raise NotImplementedError("this observation implements env_config's Kinematics settings only")

        def observe(self) -> np.ndarray:
            if not self.env.road:
                return np.zeros(self.space().shape, dtype=np.float32)
            ego = self.observer_vehicle
            others = self.env.road.close_objects_to(
                ego, self.env.PERCEPTION_DISTANCE, count=self.vehicles_count - 1, see_behind=self.see_behind,
                sort=self.order == "sorted", vehicles_only=not self.include_obstacles,
            )[-self.vehicles_count + 1:]
            out = np.zeros((self.vehicles_count, len(FEATURES)))
            out[0] = (1.0, *ego.position, *ego.velocity)
            origin = np.concatenate([ego.position, ego.velocity])
            for row, v in enumerate(others, start=1):
                out[row, 0] = 1.0
                out[row, 1:] = np.concatenate([v.position, v.velocity]) - origin
            filled = 1 + len(others)
            for col, name in enumerate(FEATURES):  # env_config's features, in this order
                if name in self.features_range:
                    lo, hi = self.features_range[name]
                    vals = -1.0 + (out[:filled, col] - lo) * 2.0 / (hi - lo)  # highway-env's lmap to [-1, 1]
                    out[:filled, col] = np.clip(vals, -1.0, 1.0)
            return out.astype(np.float32)

    class Env(HighwayEnvFast):
        def define_spaces(self) -> None:
            super().define_spaces()
            obs_cfg = {k: v for k, v in self.config["observation"].items() if k != "type"}
            self.observation_type = FastKinematicObservation(self, **obs_cfg)
            self.observation_space = self.observation_type.space()

    return Env


def make_highway_env(family: TaskFamily, i: int) -> gym.Env[Any, Any]:
    """Task ``i`` as highway-env's ``highway-fast-v0`` with its configuration (and the pandas-free
    ``Kinematics`` observation of :func:`_env_class`), observations flattened to vectors."""
    import_extra("highway_env", EXTRA, family.name)
    env = _env_class()(config=env_config(family.tasks[i].params))
    return gym.wrappers.FlattenObservation(env)


def _family(name: str, tasks: tuple[Task, ...], description: str, **kwargs: Any) -> TaskFamily:
    import_extra("highway_env", EXTRA, name)
    return TaskFamily(
        name=name,
        version="v1",
        tasks=tasks,
        raw_obs_dim=RAW_OBS_DIM,
        action_space=gym.spaces.Discrete(NUM_ACTIONS),
        metric="return",
        source=f"highway-env {dist_version('highway-env')} {ENV_ID}",
        make_vec_fn=GymnasiumTaskVecEnv,
        make_env_fn=make_highway_env,
        train_steps=dict(TRAIN_STEPS),
        ppo_overrides=dict(PPO_OVERRIDES),
        description=description,
        **kwargs,
    )


def _as_params(values: Mapping[str, float]) -> dict[str, float]:
    out = {k: float(values[k]) for k in PARAM_NAMES}
    out["lanes_count"] = float(round(out["lanes_count"]))
    out["vehicles_count"] = float(round(out["vehicles_count"]))
    return out


def highway_10() -> TaskFamily:
    """``highway-10``: 10 hand-chosen highway tasks (see ``HIGHWAY_10``).

    Raises:
        MissingExtraError: highway-env is not installed.
    """
    tasks = tuple(
        Task(i, name, _as_params(dict(zip(PARAM_NAMES, values, strict=True))))
        for i, (name, *values) in enumerate(HIGHWAY_10)
    )
    return _family(
        "highway-10",
        tasks,
        "10 highway-env tasks varying lanes, traffic volume and density, and the collision and speed "
        "reward weights (cautious drivers vs speed seekers).",
    )


def _meta_params(count: int, seed: int) -> list[dict[str, float]]:
    return [_as_params(d) for d in seeded_param_draws(META_RANGES, count, seed)]


def highway_meta_train() -> TaskFamily:
    """``highway-meta-10``: 10 training tasks drawn from ``META_RANGES`` with ``META_TRAIN_SEED``."""
    return meta_split(_family, "highway-meta-10", "highway", _meta_params(10, META_TRAIN_SEED), held_out=False)


def highway_meta_test() -> TaskFamily:
    """``highway-meta-10-test``: 50 held-out tasks from the same distribution, seed ``META_TEST_SEED``
    (all-zero task id of size 10: they are unseen tasks)."""
    return meta_split(_family, "highway-meta-10", "highway", _meta_params(50, META_TEST_SEED), held_out=True)
