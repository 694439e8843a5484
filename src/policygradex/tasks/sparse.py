"""``planted-sparse``: planted-toy's conflicting groups, one group's reward made sparse (issue 12, item 5).

Synthetic, and documented as such. It exists to test what the estimator does when the meta-policy θ*
never succeeds on a whole cluster of tasks: every episode of those tasks ends at the return floor,
whatever the subset, so their rollout scores are flat and their affinity rows carry no signal.

The tasks and their rules are planted-toy's (``toy.task_weights``): each step shows a context
x ~ N(0, I_4), the right action is argmax(W x), and the three planted groups [[0, 3], [1, 4], [2, 5]]
use the same W with permuted action labels, so what is right for one group is wrong for the others
(no action keeps its place between groups). Every episode lasts exactly 8 steps and ends (terminated:
a finite horizon, not a time limit).

* Dense groups 0 and 1 (tasks 0, 1, 3, 4): reward 1 for each right action, as in planted-toy.
* Sparse group 2 (tasks 2, 5): reward 8 at the last step if all 8 actions of the episode were right,
  else 0 everywhere. Returns are 0 or 8 (the same range as the dense tasks). A uniformly random policy
  succeeds with probability 4⁻⁸ ≈ 1.5·10⁻⁵ per episode, and a policy that follows a dense group's
  rule never does. The smoke and default budgets give each sparse task 832 and 4160 training episodes
  (the policy leaves uniform within the first iterations), so θ* essentially never sees a reward there.
  Measured (multitask PPO from scratch, seeds 0–2, greedy evaluation, 200 episodes per task): sparse
  tasks 0.0 at both budgets with no rewarded training episode; dense tasks 3.4–5.3 (smoke) and 4.8–7.7
  (default) of 8, against 2 for a uniform policy. θ*'s greedy action on the sparse tasks is right on 2–3% of steps
  (smoke, seed 0): it follows the dense groups' rules, which are wrong there.

The optimal policy of every task is a stationary per-step rule, so the sparse group conflicts with the
dense ones exactly as planted-toy's groups conflict; only the feedback differs. The observation is
[x (4), t / 8, streak] with t the step index (0..7) and streak = 1 while every action of the episode so
far was right: it makes the value of either reward a function of the observation (the critic can
represent it), and is the same for dense and sparse tasks. Because the rewards propagate over the
episode, γ = 1 (planted-toy uses γ = 0: its steps are independent).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from policygradex.tasks.base import GymnasiumTaskVecEnv, Task, TaskFamily
from policygradex.tasks.toy import CONTEXT_DIM, NUM_ACTIONS, NUM_GROUPS, task_weights

EPISODE_STEPS = 8
# version v1: planted-toy's 6 tasks; group of task i is i % 3; group 2 (tasks 2, 5) has sparse reward
NUM_TASKS = 6
SPARSE_GROUP = 2
SUCCESS_REWARD = float(EPISODE_STEPS)
RAW_OBS_DIM = CONTEXT_DIM + 2


class PlantedSparseEnv(gym.Env[np.ndarray, np.int64]):
    """One planted-sparse task: 8 contextual decisions per episode, dense or all-or-nothing reward.

    Args:
        weights: [NUM_ACTIONS, CONTEXT_DIM] the task's rule W (the right action is argmax(W x)).
        sparse: reward ``SUCCESS_REWARD`` at the last step iff every action was right, instead of 1 per
            right action.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, weights: np.ndarray, sparse: bool) -> None:
        self.weights = np.asarray(weights, dtype=np.float64)
        self.sparse = bool(sparse)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(RAW_OBS_DIM,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(NUM_ACTIONS)
        self._x = np.zeros(CONTEXT_DIM)
        self._t = 0
        self._streak = True

    def _obs(self) -> np.ndarray:
        self._x = self.np_random.standard_normal(CONTEXT_DIM)
        extra = [self._t / EPISODE_STEPS, 1.0 if self._streak else 0.0]
        return np.concatenate([self._x, extra]).astype(np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._t = 0
        self._streak = True
        return self._obs(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        right = int(action) == int(np.argmax(self.weights @ self._x))
        self._streak = self._streak and right
        self._t += 1
        done = self._t >= EPISODE_STEPS
        if self.sparse:
            reward = SUCCESS_REWARD if done and self._streak else 0.0
        else:
            reward = 1.0 if right else 0.0
        return self._obs(), reward, done, False, {}


def is_sparse(i: int) -> bool:
    """Whether task ``i`` has the sparse (all-or-nothing) reward."""
    return i % NUM_GROUPS == SPARSE_GROUP


def _make_env(family: TaskFamily, i: int) -> gym.Env[Any, Any]:
    return PlantedSparseEnv(task_weights(i), is_sparse(i))


def planted_sparse() -> TaskFamily:
    """The ``planted-sparse`` family (synthetic; planted groups [[0, 3], [1, 4], [2, 5]], group 2 sparse)."""
    tasks = tuple(
        Task(i, f"group{i % NUM_GROUPS}-{'sparse' if is_sparse(i) else 'dense'}-task{i}",
             {"group": float(i % NUM_GROUPS), "sparse": float(is_sparse(i))})
        for i in range(NUM_TASKS)
    )
    groups = tuple(tuple(range(g, NUM_TASKS, NUM_GROUPS)) for g in range(NUM_GROUPS))
    return TaskFamily(
        name="planted-sparse",
        version="v1",
        tasks=tasks,
        raw_obs_dim=RAW_OBS_DIM,
        action_space=gym.spaces.Discrete(NUM_ACTIONS),
        metric="return",
        source=f"policygradex (synthetic Gymnasium env, gymnasium {gym.__version__})",
        make_vec_fn=GymnasiumTaskVecEnv,
        make_env_fn=_make_env,
        planted_groups=groups,
        train_steps={"default": 200_000, "smoke": 40_000},
        # 8-step episodes whose sparse reward comes at the end: undiscounted returns (γ = 1), and the
        # higher rate of planted-toy so that the dense groups learn in seconds.
        ppo_overrides={"gamma": 1.0, "learning_rate": 1e-3},
        description="SYNTHETIC: planted-toy's 6 tasks in 3 conflicting groups [[0, 3], [1, 4], [2, 5]], "
        "group [2, 5] with all-or-nothing reward (8 right actions in a row); the meta-policy never "
        "succeeds there at the smoke/default budgets: for testing the no-signal case (issue 12).",
    )
