"""Task families and their registry.

>>> from policygradex import tasks
>>> family = tasks.make("cartpole-10")
>>> family.n
10

A family name fixes its tasks, parameters, splits and seeds; a changed definition gets a new
version (``family.full_name``, e.g. ``cartpole-10-v1``). ``make`` accepts both the short and the
versioned name.
"""

from __future__ import annotations

from collections.abc import Callable

from policygradex.errors import ConfigError
from policygradex.tasks.base import StepResult, Task, TaskFamily, TaskVecEnv
from policygradex.tasks.cartpole import cartpole_10, cartpole_meta_test, cartpole_meta_train
from policygradex.tasks.custom import from_gymnasium
from policygradex.tasks.toy import planted_toy

__all__ = ["StepResult", "Task", "TaskFamily", "TaskVecEnv", "from_gymnasium", "make", "names", "register"]

_REGISTRY: dict[str, Callable[[], TaskFamily]] = {}
DEFAULT_FAMILY = "cartpole-10"


def register(name: str, factory: Callable[[], TaskFamily]) -> None:
    """Register a family factory under ``name`` (must not already exist)."""
    if name in _REGISTRY:
        raise ConfigError(f"a family named {name!r} is already registered; choose another name")
    _REGISTRY[name] = factory


def names() -> list[str]:
    """Registered family names, sorted."""
    return sorted(_REGISTRY)


def make(name: str) -> TaskFamily:
    """Build the family registered as ``name`` (or its versioned name, e.g. ``cartpole-10-v1``).

    Raises:
        ConfigError: unknown name; the message lists the known ones.
    """
    if name in _REGISTRY:
        return _REGISTRY[name]()
    for short, factory in _REGISTRY.items():
        if name.startswith(short + "-v"):
            family = factory()
            if family.full_name == name:
                return family
            raise ConfigError(
                f"family {name!r} is not available: this version of policygradex has {family.full_name}"
            )
    raise ConfigError(f"unknown family {name!r}; known families: {', '.join(names())}")


register("cartpole-10", cartpole_10)
register("cartpole-meta-10", cartpole_meta_train)
register("cartpole-meta-10-test", cartpole_meta_test)
register("planted-toy", planted_toy)
