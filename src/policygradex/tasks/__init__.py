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

import pickle
from collections.abc import Callable

from policygradex.errors import ConfigError
from policygradex.tasks.base import StepResult, Task, TaskFamily, TaskVecEnv
from policygradex.tasks.cartpole import cartpole_10, cartpole_meta_test, cartpole_meta_train
from policygradex.tasks.custom import from_gymnasium
from policygradex.tasks.highway import highway_10, highway_meta_test, highway_meta_train
from policygradex.tasks.lunarlander import lunarlander_10, lunarlander_meta_test, lunarlander_meta_train
from policygradex.tasks.metaworld import metaworld_mt10, metaworld_mt50
from policygradex.tasks.mujoco_vel import halfcheetah_vel_10
from policygradex.tasks.sparse import planted_sparse
from policygradex.tasks.toy import planted_toy

__all__ = [
    "StepResult", "Task", "TaskFamily", "TaskVecEnv", "extra_of", "from_gymnasium", "make", "names", "portable",
    "register",
]

_REGISTRY: dict[str, Callable[[], TaskFamily]] = {}
_EXTRAS: dict[str, str] = {}
DEFAULT_FAMILY = "cartpole-10"


def register(name: str, factory: Callable[[], TaskFamily], extra: str | None = None) -> None:
    """Register a family factory under ``name`` (must not already exist).

    Args:
        name: the family's name.
        factory: builds the family; raises ``MissingExtraError`` when its optional library is missing.
        extra: the policygradex extra the family needs (e.g. ``"box2d"``), or None.
    """
    if name in _REGISTRY:
        raise ConfigError(f"a family named {name!r} is already registered; choose another name")
    _REGISTRY[name] = factory
    if extra is not None:
        _EXTRAS[name] = extra


def extra_of(name: str) -> str | None:
    """The extra a registered family needs (``pip install 'policygradex[<extra>]'``), or None."""
    return _EXTRAS.get(name)


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
register("planted-sparse", planted_sparse)
register("lunarlander-10", lunarlander_10, extra="box2d")
register("lunarlander-meta-10", lunarlander_meta_train, extra="box2d")
register("lunarlander-meta-10-test", lunarlander_meta_test, extra="box2d")
register("highway-10", highway_10, extra="highway")
register("highway-meta-10", highway_meta_train, extra="highway")
register("highway-meta-10-test", highway_meta_test, extra="highway")
register("metaworld-mt10", metaworld_mt10, extra="metaworld")
register("metaworld-mt50", metaworld_mt50, extra="metaworld")
register("halfcheetah-vel-10", halfcheetah_vel_10, extra="mujoco")
_AT_IMPORT = frozenset(_REGISTRY)  # the names a fresh process (a worker) can build


FamilyRef = TaskFamily | str
"""A family given as an object (used as is) or by registry name (rebuilt with :func:`make`)."""


def resolve(family: FamilyRef) -> TaskFamily:
    """The family itself, or the registered family of that name."""
    return family if isinstance(family, TaskFamily) else make(family)


def portable(family: TaskFamily) -> FamilyRef:
    """The family as a work item for another process carries it (issue 15): the object itself where it
    pickles (every built-in family and every :func:`from_gymnasium` family, registered or not), so the
    worker runs exactly the caller's tasks; else its name, where a fresh process registers that name on
    import.

    Raises:
        ConfigError: the family neither pickles nor can be rebuilt by name in a fresh process.
    """
    try:
        pickle.dumps(family)
        return family
    except (pickle.PicklingError, AttributeError, TypeError) as e:
        if family.name in _AT_IMPORT:
            return family.name
        raise ConfigError(
            f"family {family.name!r} cannot be sent to worker processes: it does not pickle ({e}) and a fresh "
            "process does not know its name; build its environments with top-level functions (or "
            "tasks.from_gymnasium), or use the serial executor"
        ) from None
