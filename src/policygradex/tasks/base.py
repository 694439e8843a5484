"""Task families: n related tasks on real Gymnasium environments, run side by side.

A :class:`TaskFamily` is n tasks that share an observation space and an action space; each task is a
named set of parameters. Observations carry a one-hot task id of size ``onehot_size`` (= n for a
family): the id of the task in the *full* family, also when only a subset is trained, so a policy
trained on a subset reads the same input as the meta-policy.

Environments are stepped through :class:`TaskVecEnv`, a batched interface with *same-step*
autoreset: when an episode ends, ``step`` returns the first observation of the next episode and the
last observation of the finished one in ``final_obs`` (needed to bootstrap truncated episodes).
"""

from __future__ import annotations

import pickle
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import gymnasium as gym
import numpy as np

from policygradex.errors import ConfigError

Metric = Literal["return", "success"]


@dataclass(frozen=True)
class Task:
    """One member of a family.

    Attributes:
        index: position in the family (0..n-1); also the hot entry of its one-hot id.
        name: short human name.
        params: the parameters that make this task differ from its siblings.
    """

    index: int
    name: str
    params: Mapping[str, float]


@dataclass
class StepResult:
    """What :meth:`TaskVecEnv.step` returns. Shapes use E = number of environments.

    Attributes:
        obs: [E, obs_dim] next observations (the reset observation where an episode ended).
        reward: [E] float32 rewards.
        terminated: [E] bool, the episode reached a terminal state.
        truncated: [E] bool, the episode was cut by a time limit.
        final_obs: [E, obs_dim] last observation of the finished episode where ``terminated | truncated``
            (other rows are undefined).
        success: [E] bool, the family's success signal at this step, or None for return-metric families.
    """

    obs: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    final_obs: np.ndarray
    success: np.ndarray | None = None


class TaskVecEnv(Protocol):
    """A batch of environments, each running one task of a family (same-step autoreset)."""

    num_envs: int
    task_index: np.ndarray  # [E] int, family index of the task each environment runs

    def reset(self, seed: int) -> np.ndarray:
        """Reset every environment; returns [E, obs_dim] float32 observations."""
        ...

    def step(self, actions: np.ndarray) -> StepResult:
        """Step every environment with actions [E] (discrete) or [E, A] (continuous)."""
        ...

    def close(self) -> None:
        """Release resources."""
        ...


def one_hot(indices: np.ndarray, size: int) -> np.ndarray:
    """One-hot rows. indices: [E] int (−1 gives an all-zero row) → [E, size] float32."""
    out = np.zeros((len(indices), size), dtype=np.float32)
    valid = indices >= 0
    out[np.nonzero(valid)[0], indices[valid]] = 1.0
    return out


def with_task_id(obs: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Append precomputed one-hot ids. obs: [E, o], ids: [E, n] → [E, o + n] float32."""
    return np.concatenate([np.asarray(obs, dtype=np.float32).reshape(len(ids), -1), ids], axis=1)


POLICY_OVERRIDE_KEYS: tuple[str, ...] = ("obs_norm", "activation", "init_log_std")
"""The ``PolicyConfig`` fields a family may preset (``TaskFamily.policy_overrides``): those that no command
line option sets by default, so the family's value is not silently replaced by an option's default."""


@dataclass(frozen=True, eq=False)
class TaskFamily:
    """n related tasks that share observation and action spaces.

    Attributes:
        name: registry name, e.g. ``"cartpole-10"``.
        version: the version of the task definition; changing tasks, parameters or seeds means a new one.
        tasks: the n tasks.
        raw_obs_dim: size of the environment observation before the task id is appended.
        action_space: the single-environment action space (``Discrete`` or ``Box``).
        metric: ``"return"`` or ``"success"`` (success rate, where ``info["success"]`` is set).
        source: the library that provides the environments, with its version.
        make_vec_fn: builds a :class:`TaskVecEnv` for (family, task indices, envs per task).
        make_env_fn: builds one task's single Gymnasium environment (without the task id).
        onehot_size: length of the task id; n by default (held-out test families keep the size of their
            training family and carry an all-zero id).
        onehot_index: per task, the hot position of its id, or -1 for none; defaults to the task index.
        planted_groups: the true partition, for synthetic families with planted structure.
        train_steps: suggested total env steps of training on all tasks, per preset (``"default"``,
            ``"smoke"``), and optionally ``"meta"``: the pipeline's meta-training budget when it differs.
            A preset left out gets :func:`default_train_steps` (see :meth:`suggested_steps`).
        ppo_overrides: PPO hyperparameters this family needs beyond the library defaults.
        policy_overrides: policy settings this family needs beyond the library defaults, for the keys of
            :data:`POLICY_OVERRIDE_KEYS` (e.g. ``{"obs_norm": True}``); a setting given on the command
            line or to the Python API wins.
        description: one paragraph for ``policygradex families`` and the docs.
        factory: ``package.module:factory`` when the family was built from that string (``--family
            mypkg.tasks:make``): how a fresh process, such as a worker, rebuilds it; None for registered
            families, which are rebuilt by name.
    """

    name: str
    version: str
    tasks: tuple[Task, ...]
    raw_obs_dim: int
    action_space: gym.spaces.Space[Any]
    metric: Metric
    source: str
    make_vec_fn: Callable[[TaskFamily, Sequence[int], int], TaskVecEnv] = field(repr=False)
    make_env_fn: Callable[[TaskFamily, int], gym.Env[Any, Any]] = field(repr=False)
    onehot_size: int = 0
    onehot_index: tuple[int, ...] = ()
    planted_groups: tuple[tuple[int, ...], ...] | None = None
    train_steps: Mapping[str, int] = field(default_factory=dict)
    ppo_overrides: Mapping[str, Any] = field(default_factory=dict)
    policy_overrides: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    factory: str | None = None

    def __post_init__(self) -> None:
        n = len(self.tasks)
        if n == 0:
            raise ConfigError(f"family {self.name!r} has no tasks; give it at least one task")
        if [t.index for t in self.tasks] != list(range(n)):
            raise ConfigError(f"family {self.name!r}: task indices must be 0..{n - 1} in order")
        unknown = sorted(set(self.policy_overrides) - set(POLICY_OVERRIDE_KEYS))
        if unknown:
            raise ConfigError(
                f"family {self.name!r}: policy_overrides has the key {unknown[0]!r}; a family can preset only "
                f"{', '.join(POLICY_OVERRIDE_KEYS)} (depth, width, arch and experts are the user's settings)"
            )
        if self.onehot_size == 0:
            object.__setattr__(self, "onehot_size", n)
        if not self.onehot_index:
            object.__setattr__(self, "onehot_index", tuple(range(n)))

    @property
    def n(self) -> int:
        """Number of tasks."""
        return len(self.tasks)

    @property
    def obs_dim(self) -> int:
        """Observation size seen by the policy: raw observation + task id."""
        return self.raw_obs_dim + self.onehot_size

    @property
    def ref(self) -> str:
        """The string that rebuilds this family in any process: its ``module:factory``, else its name."""
        return self.factory or self.name

    @property
    def full_name(self) -> str:
        """Versioned name, e.g. ``cartpole-10-v1``."""
        return f"{self.name}-{self.version}"

    @property
    def discrete(self) -> bool:
        """Whether actions are discrete."""
        return isinstance(self.action_space, gym.spaces.Discrete)

    @property
    def action_dim(self) -> int:
        """Number of discrete actions, or the dimension of a continuous action."""
        if isinstance(self.action_space, gym.spaces.Discrete):
            return int(self.action_space.n)
        assert self.action_space.shape is not None
        return int(np.prod(self.action_space.shape))

    def suggested_steps(self, preset: str) -> int:
        """Total env steps of training on all tasks for ``preset``: the family's own budget, else the rule
        of :func:`default_train_steps` (``"meta"`` falls back to ``"default"``)."""
        if preset in self.train_steps:
            return int(self.train_steps[preset])
        if preset == "meta":
            return self.suggested_steps("default")
        return default_train_steps(self.n, preset)

    def describe_action_space(self) -> str:
        """Short text such as ``Discrete(2)`` or ``Box(4)``."""
        if self.discrete:
            return f"Discrete({self.action_dim})"
        return f"Box({self.action_dim})"

    def check_indices(self, task_indices: Sequence[int]) -> list[int]:
        """Validate a list of task indices; returns them as a sorted list of ints.

        Raises:
            ConfigError: empty, duplicated or out of range.
        """
        idx = [int(i) for i in task_indices]
        if not idx:
            raise ConfigError(f"no tasks given for family {self.name!r}; pass at least one task index")
        bad = [i for i in idx if not 0 <= i < self.n]
        if bad:
            raise ConfigError(
                f"task index {bad[0]} is out of range for family {self.name!r}; use 0..{self.n - 1}"
            )
        if len(set(idx)) != len(idx):
            raise ConfigError(f"task indices {idx} contain duplicates; list each task once")
        return sorted(idx)

    def task_ids(self, task_index: np.ndarray) -> np.ndarray:
        """One-hot ids for environments running the given tasks. [E] → [E, onehot_size]."""
        hot = np.asarray(self.onehot_index, dtype=np.int64)[task_index]
        return one_hot(hot, self.onehot_size)

    def make_vec(self, task_indices: Sequence[int], envs_per_task: int) -> TaskVecEnv:
        """Batched environments: ``envs_per_task`` copies of each listed task, grouped by task.

        Environment ``j`` runs task ``sorted(task_indices)[j // envs_per_task]``.
        """
        if envs_per_task < 1:
            raise ConfigError(f"envs_per_task={envs_per_task} must be at least 1")
        return self.make_vec_fn(self, self.check_indices(task_indices), envs_per_task)

    def make_env(self, i: int) -> gym.Env[Any, Any]:
        """Task ``i`` as a single Gymnasium environment (raw observations, no task id)."""
        self.check_indices([i])
        return self.make_env_fn(self, i)

    def info(self) -> dict[str, Any]:
        """Plain-data summary (for configs, checkpoints and listings)."""
        return {
            "name": self.name,
            "version": self.version,
            "n": self.n,
            "obs_dim": self.obs_dim,
            "action_space": self.describe_action_space(),
            "metric": self.metric,
            "source": self.source,
            "factory": self.factory,
            "tasks": [{"index": t.index, "name": t.name, "params": dict(t.params)} for t in self.tasks],
        }


SMOKE_ITERATIONS = 8
"""PPO iterations of the smoke budget rule (a rollout of 4 envs × 128 steps per task each)."""
DEFAULT_STEPS_PER_TASK = 100_000
"""Env steps per task of the default budget rule (cartpole-10's meta-training budget per task)."""


def default_train_steps(n: int, preset: str) -> int:
    """The budget rule for families that give none (issue 16): ``"smoke"`` trains 8 PPO iterations of the
    default rollout (4 envs × 128 steps per task), 4,096 × n env steps, seconds on a fast simulator;
    ``"default"`` trains 100,000 × n env steps (cartpole-10's meta budget per task).

    >>> default_train_steps(3, "smoke"), default_train_steps(3, "default")
    (12288, 300000)
    """
    if preset == "smoke":
        return SMOKE_ITERATIONS * 4 * 128 * n
    if preset == "default":
        return DEFAULT_STEPS_PER_TASK * n
    raise ConfigError(f"unknown budget preset {preset!r}; use 'default' or 'smoke'")


class GymnasiumTaskVecEnv:
    """A :class:`TaskVecEnv` over Gymnasium's ``SyncVectorEnv`` with same-step autoreset.

    Works for any family whose tasks are single Gymnasium environments; the task id is appended here.
    """

    def __init__(self, family: TaskFamily, task_indices: Sequence[int], envs_per_task: int) -> None:
        self.family = family
        self.task_index = np.repeat(np.asarray(task_indices, dtype=np.int64), envs_per_task)
        self.num_envs = len(self.task_index)
        self._ids = family.task_ids(self.task_index)
        fns = [_env_thunk(family, int(i)) for i in self.task_index]
        self._env = gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)

    def reset(self, seed: int) -> np.ndarray:
        obs, _ = self._env.reset(seed=[seed + j for j in range(self.num_envs)])
        return with_task_id(obs, self._ids)

    def step(self, actions: np.ndarray) -> StepResult:
        obs, reward, terminated, truncated, info = self._env.step(actions)
        done = terminated | truncated
        final = np.zeros((self.num_envs, self.family.obs_dim), dtype=np.float32)
        if done.any():
            fo = info["final_obs"]
            rows = np.nonzero(done)[0]
            final[rows] = with_task_id(np.stack([fo[r] for r in rows]), self._ids[rows])
        success = None
        if self.family.metric == "success":
            success = _success_flags(info, done, self.num_envs)
        return StepResult(
            obs=with_task_id(obs, self._ids),
            reward=np.asarray(reward, dtype=np.float32),
            terminated=np.asarray(terminated, dtype=bool),
            truncated=np.asarray(truncated, dtype=bool),
            final_obs=final,
            success=success,
        )

    def get_state(self) -> bytes:
        """The environments' internal state (physics, RNGs, time-limit counters), pickled."""
        return pickle.dumps(self._env.envs)

    def set_state(self, state: bytes) -> None:
        """Restore a state from :meth:`get_state` (same family, tasks and envs per task)."""
        self._env.envs = pickle.loads(state)

    def close(self) -> None:
        self._env.close()


def env_state(venv: TaskVecEnv) -> bytes | None:
    """The pickled internal state of ``venv`` for resuming training mid-run, or None where its
    environments cannot be captured (no ``get_state``, or unpicklable simulators such as Box2D)."""
    get = getattr(venv, "get_state", None)
    if get is None:
        return None
    try:
        return typing.cast(bytes, get())
    except Exception:  # noqa: BLE001 — any simulator that cannot be pickled: resume from the start
        return None


def _env_thunk(family: TaskFamily, i: int) -> Callable[[], gym.Env[Any, Any]]:
    return lambda: family.make_env_fn(family, i)


def _success_flags(info: dict[str, Any], done: np.ndarray, num_envs: int) -> np.ndarray:
    """Per-env success at this step; for finished episodes it is read from ``final_info``."""
    flags = np.zeros(num_envs, dtype=bool)
    if "success" in info:
        flags |= np.asarray(info["success"], dtype=float) > 0
    final = info.get("final_info")
    if final is not None and "success" in final:
        flags[done] |= np.asarray(final["success"], dtype=float)[done] > 0
    return flags


def seeded_param_draws(
    ranges: Mapping[str, tuple[float, float]], count: int, seed: int
) -> list[dict[str, float]]:
    """Draw ``count`` parameter sets uniformly from ``ranges`` with a fixed seed (meta-RL splits)."""
    rng = np.random.default_rng(seed)
    keys = sorted(ranges)
    return [
        {k: float(round(rng.uniform(*ranges[k]), 4)) for k in keys} for _ in range(count)
    ]


def meta_split(
    build: Callable[..., TaskFamily], name: str, distribution: str, params: Sequence[dict[str, float]],
    held_out: bool, train_size: int = 10,
) -> TaskFamily:
    """One side of a meta-RL split (paper §3: 10 training tasks, 50 held-out test tasks).

    Args:
        build: the family module's constructor, ``build(name, tasks, description, **kwargs)``.
        name: the training family's name (e.g. ``"highway-meta-10"``); the held-out family is
            ``name + "-test"``.
        distribution: what the tasks are drawn from, for the description (e.g. ``"highway"``).
        params: the tasks' parameters (usually from :func:`seeded_param_draws`).
        held_out: build the held-out family: its task id has the training family's size
            (``train_size``) and no hot entry, as the tasks are unseen.
        train_size: the number of training tasks.
    """
    prefix = "test" if held_out else "train"
    tasks = tuple(Task(i, f"{prefix}-{i}", dict(p)) for i, p in enumerate(params))
    if held_out:
        return build(
            f"{name}-test", tasks,
            f"meta-RL split: {len(tasks)} held-out test tasks for {name} (all-zero task id).",
            onehot_size=train_size, onehot_index=tuple([-1] * len(tasks)),
        )
    return build(
        name, tasks,
        f"meta-RL split: {len(tasks)} training tasks drawn from the {distribution} parameter distribution "
        f"(held-out tasks: {name}-test).",
    )
