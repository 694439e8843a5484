"""LunarLander families on Gymnasium's ``LunarLander-v3`` (Box2D, extra ``[box2d]``).

Tasks differ in ``gravity`` (Gymnasium accepts (-12, 0)), ``wind_power`` (0–20) and
``turbulence_power`` (0–2), the three physical parameters that ``LunarLander-v3`` takes in its
constructor. Wind and turbulence act only when ``enable_wind`` is set, so it is set for every task
with wind or turbulence. Engine power is not varied: it is a module-level constant of Gymnasium's
``lunar_lander.py`` (shared by every environment in the process), not a per-environment parameter.

Actions are the four discrete ones (noop, left, main, right engine); observations are the 8 state
values; episodes end on landing, crashing or flying off, or after Gymnasium's 1000-step limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym

from policygradex.tasks.base import GymnasiumTaskVecEnv, Task, TaskFamily, meta_split, seeded_param_draws
from policygradex.tasks.extras import dist_version, import_extra

ENV_ID = "LunarLander-v3"
EXTRA = "box2d"
PARAM_NAMES = ("gravity", "wind_power", "turbulence_power")
RAW_OBS_DIM = 8
NUM_ACTIONS = 4

# lunarlander-10, version v1: (name, gravity, wind_power, turbulence_power)
LUNARLANDER_10: tuple[tuple[str, float, float, float], ...] = (
    ("default", -10.0, 0.0, 0.0),
    ("low-gravity", -5.0, 0.0, 0.0),
    ("moon-gravity", -2.0, 0.0, 0.0),
    ("high-gravity", -11.5, 0.0, 0.0),
    ("light-wind", -10.0, 5.0, 0.5),
    ("strong-wind", -10.0, 15.0, 1.5),
    ("turbulent", -10.0, 2.0, 2.0),
    ("low-gravity-windy", -5.0, 10.0, 1.0),
    ("high-gravity-windy", -11.5, 10.0, 1.0),
    ("storm", -10.0, 20.0, 2.0),
)

# The meta-RL parameter distribution (paper §3: 10 training and 50 held-out test tasks).
META_RANGES: Mapping[str, tuple[float, float]] = {
    "gravity": (-11.5, -3.0),
    "wind_power": (0.0, 20.0),
    "turbulence_power": (0.0, 2.0),
}
META_TRAIN_SEED = 10
META_TEST_SEED = 20

# PPO settings of the RL Baselines3 Zoo for LunarLander (γ = 0.999, λ = 0.98, longer rollouts, smaller
# minibatches): landing pays off only at the end of a long episode, so a short horizon and CartPole's
# 128-step rollouts learn to hover instead of land.
PPO_OVERRIDES: Mapping[str, Any] = {"num_steps": 256, "gamma": 0.999, "gae_lambda": 0.98, "num_minibatches": 16}
# "default": about 200k steps per task, the order of magnitude PPO needs to land reliably on the
# standard task; "smoke": one rollout (10 tasks × 4 envs × 256 steps), an untrained policy whose
# episodes end in a crash after about 100 steps, which keeps every later smoke stage cheap.
TRAIN_STEPS: Mapping[str, int] = {"default": 2_000_000, "smoke": 10_240}


def env_kwargs(params: Mapping[str, float]) -> dict[str, Any]:
    """``gymnasium.make`` keyword arguments of a task (wind is enabled where it or turbulence acts)."""
    kwargs: dict[str, Any] = {k: float(params[k]) for k in PARAM_NAMES}
    kwargs["enable_wind"] = params["wind_power"] > 0 or params["turbulence_power"] > 0
    return kwargs


def make_lunarlander_env(family: TaskFamily, i: int) -> gym.Env[Any, Any]:
    """Task ``i`` as ``gymnasium.make("LunarLander-v3", ...)`` with its parameters."""
    import_extra("Box2D", EXTRA, family.name)
    return gym.make(ENV_ID, **env_kwargs(family.tasks[i].params))


def _family(name: str, tasks: tuple[Task, ...], description: str, **kwargs: Any) -> TaskFamily:
    import_extra("Box2D", EXTRA, name)
    return TaskFamily(
        name=name,
        version="v1",
        tasks=tasks,
        raw_obs_dim=RAW_OBS_DIM,
        action_space=gym.spaces.Discrete(NUM_ACTIONS),
        metric="return",
        source=f"gymnasium {gym.__version__} {ENV_ID} (box2d {dist_version('box2d')})",
        make_vec_fn=GymnasiumTaskVecEnv,
        make_env_fn=make_lunarlander_env,
        train_steps=dict(TRAIN_STEPS),
        ppo_overrides=dict(PPO_OVERRIDES),
        description=description,
        **kwargs,
    )


def lunarlander_10() -> TaskFamily:
    """``lunarlander-10``: 10 hand-chosen LunarLander tasks (see ``LUNARLANDER_10``).

    Raises:
        MissingExtraError: Box2D is not installed.
    """
    tasks = tuple(
        Task(i, name, dict(zip(PARAM_NAMES, values, strict=True))) for i, (name, *values) in enumerate(LUNARLANDER_10)
    )
    return _family(
        "lunarlander-10",
        tasks,
        "10 LunarLander tasks varying gravity, wind power and turbulence power "
        "(calm tasks from moon to high gravity, and windy ones up to a storm).",
    )


def _meta_params(count: int, seed: int) -> list[dict[str, float]]:
    return [{k: d[k] for k in PARAM_NAMES} for d in seeded_param_draws(META_RANGES, count, seed)]


def lunarlander_meta_train() -> TaskFamily:
    """``lunarlander-meta-10``: 10 training tasks drawn from ``META_RANGES`` with ``META_TRAIN_SEED``."""
    return meta_split(_family, "lunarlander-meta-10", "LunarLander", _meta_params(10, META_TRAIN_SEED), held_out=False)


def lunarlander_meta_test() -> TaskFamily:
    """``lunarlander-meta-10-test``: 50 held-out tasks from the same distribution, seed ``META_TEST_SEED``
    (all-zero task id of size 10: they are unseen tasks)."""
    return meta_split(_family, "lunarlander-meta-10", "LunarLander", _meta_params(50, META_TEST_SEED), held_out=True)
