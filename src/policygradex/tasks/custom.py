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
    policy_overrides: Mapping[str, Any] | None = None,
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
        train_steps: total env steps of training on all tasks per preset (``"default"``, ``"smoke"``, and
            ``"meta"`` for the pipeline's θ* when it differs from ``"default"``); a preset left out follows
            the rule of :func:`policygradex.tasks.base.default_train_steps`: smoke 4,096 × n (8 PPO
            iterations), default 100,000 × n.
        ppo_overrides: PPO hyperparameters the family needs.
        policy_overrides: policy settings the family needs (``obs_norm``, ``activation``, ``init_log_std``),
            e.g. ``{"obs_norm": True}``.
        description: one line for listings.

    Raises:
        ConfigError: unknown id, bad parameters, or observation spaces that are not flat boxes.
    """
    if not params:
        raise ConfigError(f"family {name!r} needs at least one parameter set in params")
    if task_names is not None and len(task_names) != len(params):
        raise ConfigError(f"task_names has {len(task_names)} names for {len(params)} tasks; give one per task")
    frozen = tuple(dict(p) for p in params)
    bad = sorted(set(train_steps or {}) - {"default", "smoke", "meta"})
    if bad:
        raise ConfigError(f"train_steps has the unknown preset {bad[0]!r}; use 'default', 'smoke' or 'meta'")
    if any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in (train_steps or {}).values()):
        raise ConfigError(f"train_steps={dict(train_steps or {})} must map presets to positive integers of env steps")

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
        policy_overrides=dict(policy_overrides or {}),
        description=description or f"{len(frozen)} tasks of {env_id}",
    )


# ---- the user's own families: `module:factory` and the `policygradex.families` entry points (issue 16) ----
ENTRY_POINT_GROUP = "policygradex.families"
"""Installed packages register families under this entry-point group: ``name = "package.module:factory"``."""


def is_factory_spec(name: str) -> bool:
    """Whether ``name`` has the form ``package.module:factory`` (a family to build by calling ``factory``)."""
    return ":" in name


def load_factory(spec: str) -> TaskFamily:
    """Import ``package.module``, call its ``factory()`` and return the family it builds.

    The current directory is searched after ``sys.path`` (as ``python -m`` does), so a module beside the
    user's working directory works from the ``policygradex`` command; worker processes inherit the path.
    The family comes back with ``factory = spec``, so a fresh process can rebuild it by that string.

    Raises:
        ConfigError: a malformed spec, a module that cannot be imported, a missing or non-callable
            attribute, a factory that fails or returns something other than a :class:`TaskFamily`;
            one sentence naming the value and the fix.
    """
    import dataclasses
    import importlib
    import os
    import sys

    module_name, _, attr = spec.partition(":")
    if not module_name or not attr or not all(p.isidentifier() for p in module_name.split(".") + attr.split(".")):
        raise ConfigError(
            f"family {spec!r} is neither a registered name nor of the form package.module:factory; "
            "see `policygradex families` or write e.g. mypkg.tasks:make_family"
        )
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is not None and module_name.startswith(e.name):
            raise ConfigError(
                f"family {spec!r}: no module named {e.name!r}; install its package, or run from the folder "
                "that holds it (or add that folder to PYTHONPATH)"
            ) from None
        raise ConfigError(f"family {spec!r}: importing {module_name!r} failed ({e}); fix that module's imports") from None
    except Exception as e:  # noqa: BLE001 — any error in the user's module is reported as one line
        raise ConfigError(f"family {spec!r}: importing {module_name!r} failed ({type(e).__name__}: {e}); fix that module") from None
    factory: Any = module
    for part in attr.split("."):
        if not hasattr(factory, part):
            raise ConfigError(
                f"family {spec!r}: module {module_name!r} has no attribute {attr!r}; name a function in it that "
                "returns a TaskFamily"
            )
        factory = getattr(factory, part)
    if not callable(factory):
        raise ConfigError(
            f"family {spec!r}: {attr!r} is a {type(factory).__name__}, not a callable; name a function that "
            "returns a TaskFamily"
        )
    try:
        family = factory()
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"family {spec!r}: calling {attr}() failed ({type(e).__name__}: {e}); fix the factory") from None
    if not isinstance(family, TaskFamily):
        raise ConfigError(
            f"family {spec!r}: {attr}() returned a {type(family).__name__}, not a TaskFamily; return one, e.g. "
            "from policygradex.tasks.from_gymnasium(...)"
        )
    return dataclasses.replace(family, factory=spec)
