"""``planted-toy``: a small synthetic family with planted group structure.

Synthetic, and documented as such: it exists so that tests and users can check that grouping
recovers a known structure, in seconds. Each step shows a context x ~ N(0, I_4); the agent picks
one of 4 actions and receives reward 1 when it picks argmax(W x), else 0; an episode lasts 8 steps
(return in [0, 8], a uniformly random policy scores 2).

Tasks in one planted group share the same optimal rule up to a small per-task perturbation of W;
different groups use the same W with its rows (the action labels) permuted, so what is optimal for
one group is wrong for the others: groups conflict. The true partition is ``family.planted_groups``.
Task indices are interleaved across groups so that a method cannot succeed by reading index order.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from policygradex.tasks.base import GymnasiumTaskVecEnv, Task, TaskFamily

CONTEXT_DIM = 4
NUM_ACTIONS = 4
EPISODE_STEPS = 8
# version v1: 6 tasks, group of task i is i % 3 -> groups [[0, 3], [1, 4], [2, 5]]
NUM_TASKS = 6
NUM_GROUPS = 3
PERTURBATION = 0.15
STRUCTURE_SEED = 1234
# action permutation of each group (rows of the shared W); no action keeps its place between groups
GROUP_PERMUTATIONS = ((0, 1, 2, 3), (1, 2, 3, 0), (2, 3, 0, 1))


class PlantedToyEnv(gym.Env[np.ndarray, np.int64]):
    """One planted-toy task: a contextual decision problem with reward 1 for argmax(W x).

    Args:
        weights: [NUM_ACTIONS, CONTEXT_DIM] the task's rule W.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, weights: np.ndarray) -> None:
        self.weights = np.asarray(weights, dtype=np.float64)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(CONTEXT_DIM,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(NUM_ACTIONS)
        self._x = np.zeros(CONTEXT_DIM)
        self._t = 0

    def _draw(self) -> np.ndarray:
        self._x = self.np_random.standard_normal(CONTEXT_DIM)
        return self._x.astype(np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._t = 0
        return self._draw(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        best = int(np.argmax(self.weights @ self._x))
        reward = 1.0 if int(action) == best else 0.0
        self._t += 1
        return self._draw(), reward, False, self._t >= EPISODE_STEPS, {}


def task_weights(i: int) -> np.ndarray:
    """The rule W [NUM_ACTIONS, CONTEXT_DIM] of task ``i`` (fixed by the family version)."""
    base = np.random.default_rng(STRUCTURE_SEED).standard_normal((NUM_ACTIONS, CONTEXT_DIM))
    group = i % NUM_GROUPS
    noise = np.random.default_rng([STRUCTURE_SEED, i]).standard_normal(base.shape)
    return base[list(GROUP_PERMUTATIONS[group])] + PERTURBATION * noise


def _make_env(family: TaskFamily, i: int) -> gym.Env[Any, Any]:
    return PlantedToyEnv(task_weights(i))


def planted_toy() -> TaskFamily:
    """The ``planted-toy`` family (synthetic, planted groups [[0, 3], [1, 4], [2, 5]])."""
    tasks = tuple(Task(i, f"group{i % NUM_GROUPS}-task{i}", {"group": float(i % NUM_GROUPS)}) for i in range(NUM_TASKS))
    groups = tuple(tuple(range(g, NUM_TASKS, NUM_GROUPS)) for g in range(NUM_GROUPS))
    return TaskFamily(
        name="planted-toy",
        version="v1",
        tasks=tasks,
        raw_obs_dim=CONTEXT_DIM,
        action_space=gym.spaces.Discrete(NUM_ACTIONS),
        metric="return",
        source=f"policygradex (synthetic Gymnasium env, gymnasium {gym.__version__})",
        make_vec_fn=GymnasiumTaskVecEnv,
        make_env_fn=_make_env,
        planted_groups=groups,
        train_steps={"default": 200_000, "smoke": 40_000},
        # Actions do not change future contexts, so no discounting is needed; a higher rate learns in seconds.
        ppo_overrides={"gamma": 0.0, "learning_rate": 1e-3},
        description="SYNTHETIC: 6 contextual-decision tasks in 3 planted conflicting groups "
        "[[0, 3], [1, 4], [2, 5]]; trains in seconds; for checking that grouping recovers structure.",
    )
