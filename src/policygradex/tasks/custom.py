"""Families from any Gymnasium environment whose constructor arguments (or attributes) are the task
parameters.

>>> from policygradex import tasks
>>> acrobot = tasks.from_gymnasium(
...     "Acrobot-v1",
...     params=[{"LINK_MASS_1": 1.0}, {"LINK_MASS_1": 2.0}],
...     name="my-acrobot",
...     set_attributes=True,
... )
>>> acrobot.n
2
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from policygradex.errors import ConfigError
from policygradex.tasks.base import GymnasiumTaskVecEnv, Metric, Task, TaskFamily


@dataclass(frozen=True)
class GymnasiumEnvMaker:
    """Builds task ``i`` of a :func:`from_gymnasium` family: plain data, so the family pickles and travels
    to worker processes and Ray tasks by value (issue 15), also when it is in no registry.

    Attributes:
        env_id: the Gymnasium id.
        params: one mapping per task.
        set_attributes: set the parameters as attributes of ``env.unwrapped`` instead of passing them to
            the constructor.
    """

    env_id: str
    params: tuple[dict[str, Any], ...]
    set_attributes: bool = False

    def __call__(self, family: TaskFamily, i: int) -> gym.Env[Any, Any]:
        p = self.params[i]
        if not self.set_attributes:
            return gym.make(self.env_id, **p)
        env = gym.make(self.env_id)
        for k, v in p.items():
            if not hasattr(env.unwrapped, k):
                raise ConfigError(f"{self.env_id} has no attribute {k!r} to set for task {i}; check the parameter names")
            setattr(env.unwrapped, k, v)
        return env


def from_gymnasium(
    env_id: str,
    params: Sequence[Mapping[str, Any]],
    name: str,
    *,
    set_attributes: bool = False,
    task_names: Sequence[str] | None = None,
    metric: Metric = "return",
    version: str = "v1",
    train_steps: Mapping[str, int] | None = None,
    ppo_overrides: Mapping[str, Any] | None = None,
    description: str = "",
) -> TaskFamily:
    """Build a family of ``len(params)`` tasks, each ``gymnasium.make(env_id, ...)`` with its parameters.

    Args:
        env_id: a registered Gymnasium id, e.g. ``"Acrobot-v1"``.
        params: one mapping per task. Passed as constructor keyword arguments, or, with
            ``set_attributes=True``, set as attributes of ``env.unwrapped`` after construction.
        name: the family's name (register it with :func:`policygradex.tasks.register` to use it by name).
        set_attributes: set parameters as attributes instead of passing them to the constructor.
        task_names: a name per task (default ``task-<i>``).
        metric: ``"return"``, or ``"success"`` if the environment reports ``info["success"]``.
        version: the version of this definition.
        train_steps: suggested meta-training budgets per preset (``"default"``, ``"smoke"``).
        ppo_overrides: PPO hyperparameters the family needs.
        description: one line for listings.

    Raises:
        ConfigError: unknown id, bad parameters, or observation spaces that are not flat boxes.
    """
    if not params:
        raise ConfigError(f"family {name!r} needs at least one parameter set in params")
    if task_names is not None and len(task_names) != len(params):
        raise ConfigError(f"task_names has {len(task_names)} names for {len(params)} tasks; give one per task")
    frozen = tuple(dict(p) for p in params)
    make_env = GymnasiumEnvMaker(env_id, frozen, set_attributes)
    try:
        probe = gym.make(env_id, **({} if set_attributes else frozen[0]))
    except gym.error.Error as e:
        raise ConfigError(f"cannot build {env_id!r} for family {name!r}: {e}") from None
    except TypeError as e:
        raise ConfigError(f"{env_id} rejected the parameters {frozen[0]}: {e}; pass set_attributes=True to set attributes") from None
    obs_space, action_space = probe.observation_space, probe.action_space
    probe.close()
    if not isinstance(obs_space, gym.spaces.Box):
        raise ConfigError(f"{env_id} has a {type(obs_space).__name__} observation space; families need a Box")
    if not isinstance(action_space, gym.spaces.Discrete | gym.spaces.Box):
        raise ConfigError(f"{env_id} has a {type(action_space).__name__} action space; use Discrete or Box")
    tnames = list(task_names) if task_names is not None else [f"task-{i}" for i in range(len(frozen))]
    tasks = tuple(
        Task(i, tnames[i], {k: float(v) if isinstance(v, int | float) else v for k, v in p.items()})
        for i, p in enumerate(frozen)
    )
    return TaskFamily(
        name=name,
        version=version,
        tasks=tasks,
        raw_obs_dim=int(np.prod(obs_space.shape)),
        action_space=action_space,
        metric=metric,
        source=f"gymnasium {gym.__version__} {env_id}",
        make_vec_fn=GymnasiumTaskVecEnv,
        make_env_fn=make_env,
        train_steps=dict(train_steps or {}),
        ppo_overrides=dict(ppo_overrides or {}),
        description=description or f"{len(frozen)} tasks of {env_id}",
    )
