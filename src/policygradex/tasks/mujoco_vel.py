"""``halfcheetah-vel-10``: Gymnasium MuJoCo ``HalfCheetah-v5`` running at 10 target velocities (extra
``[mujoco]``).

The reward of a task with target velocity v* is that of the meta-RL HalfCheetah-Vel benchmark (MAML,
Finn et al. 2017): r = −|v − v*| − 0.05·‖a‖², with v the forward velocity HalfCheetah reports in
``info["x_velocity"]`` and the control cost HalfCheetah computes with ``ctrl_cost_weight=0.05``.
Four targets are backwards and six forwards, so the tasks fall into two conflicting camps, with
nearby speeds helping each other inside a camp.

Episodes last exactly 200 steps (HalfCheetah never terminates): the horizon of HalfCheetah-Vel in
MAML, long enough to reach and hold a speed, and a fifth of Gymnasium's 1000, which keeps
rollouts, evaluations and features cheap: this family exists as the inexpensive continuous-action
family of the test suite.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from policygradex.tasks.base import GymnasiumTaskVecEnv, Task, TaskFamily
from policygradex.tasks.extras import dist_version, import_extra

ENV_ID = "HalfCheetah-v5"
EXTRA = "mujoco"
EPISODE_STEPS = 200
CTRL_COST_WEIGHT = 0.05
RAW_OBS_DIM = 17
ACTION_DIM = 6
# halfcheetah-vel-10, version v1: target forward velocities in m/s
TARGET_VELOCITIES: tuple[float, ...] = (-2.0, -1.5, -1.0, -0.5, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)

# CleanRL's continuous-action PPO settings (lr 3e-4, 10 epochs, no entropy bonus); one rollout is one
# 200-step episode per environment, so every batch ends on episode boundaries.
PPO_OVERRIDES: Mapping[str, Any] = {
    "num_steps": EPISODE_STEPS,
    "learning_rate": 3e-4,
    "update_epochs": 10,
    "num_minibatches": 16,
    "ent_coef": 0.0,
}
# "default": 100k steps per task, where PPO on HalfCheetah first tracks a target speed roughly;
# "smoke": two rollouts of 10 tasks × 4 envs × 200 steps.
TRAIN_STEPS: Mapping[str, int] = {"default": 1_000_000, "smoke": 16_000}


class TargetVelocityReward(gym.Wrapper[Any, Any, Any, Any]):
    """Replace HalfCheetah's reward by −|v − v*| plus its control reward (−ctrl_cost_weight·‖a‖²).

    Args:
        env: a ``HalfCheetah-v5`` environment (its ``info`` has ``x_velocity`` and ``reward_ctrl``).
        target: the target forward velocity v* in m/s.
    """

    def __init__(self, env: gym.Env[Any, Any], target: float) -> None:
        super().__init__(env)
        self.target = float(target)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, _, terminated, truncated, info = self.env.step(action)
        reward = -abs(float(info["x_velocity"]) - self.target) + float(info["reward_ctrl"])
        return obs, reward, terminated, truncated, info


def make_halfcheetah_vel_env(family: TaskFamily, i: int) -> gym.Env[Any, Any]:
    """Task ``i``: ``HalfCheetah-v5`` (200-step episodes) with the target-velocity reward."""
    import_extra("mujoco", EXTRA, family.name)
    env = gym.make(ENV_ID, ctrl_cost_weight=CTRL_COST_WEIGHT, max_episode_steps=EPISODE_STEPS)
    return TargetVelocityReward(env, family.tasks[i].params["target_velocity"])


def halfcheetah_vel_10() -> TaskFamily:
    """``halfcheetah-vel-10``: HalfCheetah at the 10 target velocities of ``TARGET_VELOCITIES``.

    Raises:
        MissingExtraError: MuJoCo is not installed.
    """
    name = "halfcheetah-vel-10"
    import_extra("mujoco", EXTRA, name)
    tasks = tuple(
        Task(i, f"{'back' if v < 0 else 'fwd'}-{abs(v):.1f}", {"target_velocity": v})
        for i, v in enumerate(TARGET_VELOCITIES)
    )
    return TaskFamily(
        name=name,
        version="v1",
        tasks=tasks,
        raw_obs_dim=RAW_OBS_DIM,
        action_space=gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), dtype=np.float32),
        metric="return",
        source=f"gymnasium {gym.__version__} {ENV_ID} (mujoco {dist_version('mujoco')}), target-velocity reward",
        make_vec_fn=GymnasiumTaskVecEnv,
        make_env_fn=make_halfcheetah_vel_env,
        train_steps=dict(TRAIN_STEPS),
        ppo_overrides=dict(PPO_OVERRIDES),
        description="HalfCheetah at 10 target velocities (4 backwards, 6 forwards), reward −|v − v*| − 0.05‖a‖², "
        "200-step episodes.",
    )
