"""CartPole families on Gymnasium's vectorised CartPole (``CartPoleVectorEnv``).

``CartPoleVectorEnv`` computes its dynamics with NumPy broadcasting, so its physical constants may be
arrays with one entry per environment: one vector env then runs all tasks of a family at once.
Dynamics are those of ``gymnasium.make("CartPole-v1")`` with the same parameters, step for step
(``tests/test_tasks.py`` checks it).

Tasks differ in pole half-length (``length``), pole mass (``masspole``), ``gravity`` and the signed
actuator gain ``force_mag``. A negative gain is a motor wired the other way round: the same push
moves the cart in the opposite direction, so those tasks need the mirrored policy and conflict with
the others, while tasks with the same sign help each other (issue #2: "some tasks help each other
and some conflict").
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv

from policygradex.tasks.base import StepResult, Task, TaskFamily, meta_split, seeded_param_draws, with_task_id

PARAM_NAMES = ("length", "masspole", "gravity", "force_mag")
MAX_EPISODE_STEPS = 500

# cartpole-10, version v1: (name, length, masspole, gravity, force_mag)
CARTPOLE_10: tuple[tuple[str, float, float, float, float], ...] = (
    ("default", 0.5, 0.1, 9.8, 10.0),
    ("short-pole", 0.3, 0.1, 9.8, 10.0),
    ("long-heavy-pole", 0.8, 0.3, 9.8, 10.0),
    ("low-gravity-weak", 0.5, 0.1, 5.0, 6.0),
    ("high-gravity-strong", 0.5, 0.1, 15.0, 14.0),
    ("reversed", 0.5, 0.1, 9.8, -10.0),
    ("reversed-short-pole", 0.3, 0.1, 9.8, -10.0),
    ("reversed-long-heavy", 0.8, 0.3, 12.0, -12.0),
    ("very-long-pole", 1.0, 0.2, 9.8, 10.0),
    ("reversed-weak", 0.5, 0.1, 9.8, -6.0),
)

# The meta-RL parameter distribution (paper §3: 10 training tasks and 50 held-out test tasks).
META_RANGES: Mapping[str, tuple[float, float]] = {
    "length": (0.25, 1.0),
    "masspole": (0.05, 0.4),
    "gravity": (5.0, 15.0),
    "force_mag": (5.0, 15.0),
    "actuator": (-1.0, 1.0),  # sign of the actuator gain
}
META_TRAIN_SEED = 10
META_TEST_SEED = 20


def _apply_params(env: Any, params: Mapping[str, Any]) -> None:
    """Set CartPole's physical constants (scalars or per-env arrays) and the derived ones."""
    env.length = params["length"]
    env.masspole = params["masspole"]
    env.gravity = params["gravity"]
    env.force_mag = params["force_mag"]
    env.total_mass = env.masspole + env.masscart
    env.polemass_length = env.masspole * env.length


def make_cartpole_env(family: TaskFamily, i: int) -> gym.Env[Any, Any]:
    """Task ``i`` as ``gymnasium.make("CartPole-v1")`` with its parameters set."""
    env = gym.make("CartPole-v1")
    _apply_params(env.unwrapped, family.tasks[i].params)
    return env


class CartPoleTaskVecEnv:
    """All requested CartPole tasks in one ``CartPoleVectorEnv`` with per-env parameter arrays.

    ``CartPoleVectorEnv`` resets finished environments on the *next* step; this adapter resets them in
    the same step (and reports ``final_obs``) so every transition it returns is a real one.
    """

    def __init__(self, family: TaskFamily, task_indices: Sequence[int], envs_per_task: int) -> None:
        self.task_index = np.repeat(np.asarray(task_indices, dtype=np.int64), envs_per_task)
        self.num_envs = len(self.task_index)
        self._ids = family.task_ids(self.task_index)
        self._env = CartPoleVectorEnv(num_envs=self.num_envs, max_episode_steps=MAX_EPISODE_STEPS)
        _apply_params(
            self._env,
            {k: np.array([family.tasks[i].params[k] for i in self.task_index]) for k in PARAM_NAMES},
        )

    def reset(self, seed: int) -> np.ndarray:
        obs, _ = self._env.reset(seed=seed)
        return with_task_id(obs, self._ids)

    def step(self, actions: np.ndarray) -> StepResult:
        env = self._env
        obs, reward, terminated, truncated, _ = env.step(np.asarray(actions, dtype=np.int64))
        done = terminated | truncated
        final = np.zeros((self.num_envs, self._ids.shape[1] + 4), dtype=np.float32)
        if done.any():
            assert env.state is not None  # set by reset
            final[done] = with_task_id(obs[done], self._ids[done])
            # Same-step autoreset: draw the new initial states now, exactly as CartPoleVectorEnv
            # would on the next step, and clear its pending-reset flags.
            env.state[:, done] = env.np_random.uniform(low=env.low, high=env.high, size=(4, int(done.sum())))
            env.steps[done] = 0
            env.prev_done[:] = False
            obs = env.state.T.astype(np.float32)
        return StepResult(
            obs=with_task_id(obs, self._ids),
            reward=reward.astype(np.float32),
            terminated=terminated,
            truncated=truncated,
            final_obs=final,
        )

    def get_state(self) -> bytes:
        """The vector env's internal state (physics, RNG, step counters), pickled."""
        return pickle.dumps(self._env)

    def set_state(self, state: bytes) -> None:
        """Restore a state from :meth:`get_state`."""
        self._env = pickle.loads(state)

    def close(self) -> None:
        self._env.close()


def _family(
    name: str, version: str, tasks: tuple[Task, ...], description: str, **kwargs: Any
) -> TaskFamily:
    return TaskFamily(
        name=name,
        version=version,
        tasks=tasks,
        raw_obs_dim=4,
        action_space=gym.spaces.Discrete(2),
        metric="return",
        source=f"gymnasium {gym.__version__} CartPoleVectorEnv",
        make_vec_fn=CartPoleTaskVecEnv,
        make_env_fn=make_cartpole_env,
        # "meta": the pipeline's meta-training. At 3M steps θ* scores 500 on nearly every task and rollout
        # scores of θ* + Δθ_S no longer differ between subsets; at 1M the estimates show the task structure.
        train_steps={"default": 3_000_000, "meta": 1_000_000, "smoke": 150_000},
        description=description,
        **kwargs,
    )


def cartpole_10() -> TaskFamily:
    """``cartpole-10``: 10 hand-chosen CartPole tasks (see ``CARTPOLE_10``)."""
    tasks = tuple(
        Task(i, name, dict(zip(PARAM_NAMES, values, strict=True)))
        for i, (name, *values) in enumerate(CARTPOLE_10)
    )
    return _family(
        "cartpole-10",
        "v1",
        tasks,
        "10 CartPole tasks varying pole length, pole mass, gravity and actuator gain; "
        "four have a reversed actuator and conflict with the other six.",
    )


def _meta_params(count: int, seed: int) -> list[dict[str, float]]:
    draws = seeded_param_draws(META_RANGES, count, seed)
    out = []
    for d in draws:
        sign = 1.0 if d["actuator"] >= 0 else -1.0
        out.append({k: d[k] if k != "force_mag" else sign * d[k] for k in PARAM_NAMES})
    return out


def _split_family(name: str, tasks: tuple[Task, ...], description: str, **kwargs: Any) -> TaskFamily:
    return _family(name, "v1", tasks, description, **kwargs)


def cartpole_meta_train() -> TaskFamily:
    """``cartpole-meta-10``: 10 training tasks drawn from ``META_RANGES`` with ``META_TRAIN_SEED``."""
    return meta_split(_split_family, "cartpole-meta-10", "CartPole", _meta_params(10, META_TRAIN_SEED), held_out=False)


def cartpole_meta_test() -> TaskFamily:
    """``cartpole-meta-10-test``: 50 held-out tasks from the same distribution, seed ``META_TEST_SEED``
    (all-zero task id of size 10: they are unseen tasks)."""
    return meta_split(_split_family, "cartpole-meta-10", "CartPole", _meta_params(50, META_TEST_SEED), held_out=True)
