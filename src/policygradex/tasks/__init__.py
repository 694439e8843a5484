"""Task families and their registry.

>>> from policygradex import tasks
>>> family = tasks.make("cartpole-10")
>>> family.n
10

A family name fixes its tasks, parameters, splits and seeds; a changed definition gets a new
version (``family.full_name``, e.g. ``cartpole-10-v1``). ``make`` accepts both the short and the
versioned name.

The user's own families (issue 16) come from two places besides :func:`register` (which lasts as long
as the Python process): ``make("package.module:factory")`` calls the factory, and installed packages
declare families in the ``policygradex.families`` entry-point group, found by name in every process::

    # pyproject.toml of the user's package
    [project.entry-points."policygradex.families"]
    my-acrobot = "mypkg.tasks:my_acrobot"
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import pickle
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points

from policygradex.errors import ConfigError
from policygradex.tasks.base import StepResult, Task, TaskFamily, TaskVecEnv
from policygradex.tasks.cartpole import cartpole_10, cartpole_meta_test, cartpole_meta_train
from policygradex.tasks.custom import ENTRY_POINT_GROUP, from_gymnasium, is_factory_spec, load_factory
from policygradex.tasks.highway import highway_10, highway_meta_test, highway_meta_train
from policygradex.tasks.lunarlander import lunarlander_10, lunarlander_meta_test, lunarlander_meta_train
from policygradex.tasks.metaworld import metaworld_mt10, metaworld_mt50
from policygradex.tasks.mujoco_vel import halfcheetah_vel_10
from policygradex.tasks.sparse import planted_sparse
from policygradex.tasks.toy import planted_toy

__all__ = [
    "ENTRY_POINT_GROUP", "StepResult", "Task", "TaskFamily", "TaskVecEnv", "extra_of", "from_gymnasium", "make",
    "names", "origin_of", "portable", "register",
]

log = logging.getLogger(__name__)
_REGISTRY: dict[str, Callable[[], TaskFamily]] = {}
_EXTRAS: dict[str, str] = {}
_ORIGINS: dict[str, str] = {}
DEFAULT_FAMILY = "cartpole-10"
BUILT_IN = "built-in"


def register(name: str, factory: Callable[[], TaskFamily], extra: str | None = None, origin: str = "register()") -> None:
    """Register a family factory under ``name`` (must not already exist) for the rest of this process.

    From the command line use ``--family package.module:factory`` or an entry point instead (see the
    module docstring): a registration lasts only as long as the Python process that made it.

    Args:
        name: the family's name.
        factory: builds the family; raises ``MissingExtraError`` when its optional library is missing.
        extra: the policygradex extra the family needs (e.g. ``"box2d"``), or None.
        origin: where the family comes from, for ``policygradex families``.
    """
    if name in _REGISTRY:
        raise ConfigError(f"a family named {name!r} is already registered; choose another name")
    _REGISTRY[name] = factory
    _ORIGINS[name] = origin
    if extra is not None:
        _EXTRAS[name] = extra


def _entry_points() -> dict[str, EntryPoint]:
    """Families that installed packages declare in the ``policygradex.families`` group, by name (read
    afresh on each call, so a package installed while Python runs is found; registered names win)."""
    found = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _REGISTRY:
            log.warning("entry point %r (%s) is ignored: a family of that name is already registered", ep.name, ep.value)
        else:
            found[ep.name] = ep
    return found


def _from_entry_point(ep: EntryPoint) -> TaskFamily:
    family = load_factory(ep.value)
    if family.name != ep.name:
        raise ConfigError(
            f"entry point {ep.name!r} ({ep.value}) builds a family named {family.name!r}; name the entry point "
            f"{family.name!r} or the family {ep.name!r}, so that worker processes find it by name"
        )
    return dataclasses.replace(family, factory=None)  # found by name in any process


def origin_of(name: str) -> str:
    """Where the family ``name`` comes from: ``built-in``, ``register()``, or the package whose entry
    point declares it."""
    if name in _ORIGINS:
        return _ORIGINS[name]
    ep = _entry_points().get(name)
    if ep is None:
        raise ConfigError(f"unknown family {name!r}; known families: {', '.join(names())}")
    dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "an installed package"
    return f"entry point of {dist}"


def extra_of(name: str) -> str | None:
    """The extra a registered family needs (``pip install 'policygradex[<extra>]'``), or None."""
    return _EXTRAS.get(name)


def names() -> list[str]:
    """Family names (registered and declared by entry points), sorted."""
    return sorted(set(_REGISTRY) | set(_entry_points()))


def make(name: str) -> TaskFamily:
    """Build the family ``name``: a registered or entry-point name, its versioned name (e.g.
    ``cartpole-10-v1``), or ``package.module:factory``.

    Raises:
        ConfigError: unknown name, or a factory that cannot be imported or called or returns no family;
            the message names the value and the fix.
    """
    if name in _REGISTRY:
        return _REGISTRY[name]()
    if is_factory_spec(name):
        family = load_factory(name)
        if family.name in _REGISTRY:  # by name, a worker or a reopened run would get the other family
            raise ConfigError(
                f"family {name!r} builds a family named {family.name!r}, the name of a {origin_of(family.name)} "
                "family; give it another name"
            )
        return family
    eps = _entry_points()
    if name in eps:
        return _from_entry_point(eps[name])
    factories: dict[str, Callable[[], TaskFamily]] = {**_REGISTRY}
    factories.update({n: functools.partial(_from_entry_point, ep) for n, ep in eps.items()})
    for short, factory in factories.items():
        if name.startswith(short + "-v"):
            family = factory()
            if family.full_name == name:
                return family
            raise ConfigError(
                f"family {name!r} is not available: this version of policygradex has {family.full_name}"
            )
    raise ConfigError(
        f"unknown family {name!r}; known families: {', '.join(names())} (or your own as package.module:factory)"
    )


for _name, _factory, _extra in (
    ("cartpole-10", cartpole_10, None),
    ("cartpole-meta-10", cartpole_meta_train, None),
    ("cartpole-meta-10-test", cartpole_meta_test, None),
    ("planted-toy", planted_toy, None),
    ("planted-sparse", planted_sparse, None),
    ("lunarlander-10", lunarlander_10, "box2d"),
    ("lunarlander-meta-10", lunarlander_meta_train, "box2d"),
    ("lunarlander-meta-10-test", lunarlander_meta_test, "box2d"),
    ("highway-10", highway_10, "highway"),
    ("highway-meta-10", highway_meta_train, "highway"),
    ("highway-meta-10-test", highway_meta_test, "highway"),
    ("metaworld-mt10", metaworld_mt10, "metaworld"),
    ("metaworld-mt50", metaworld_mt50, "metaworld"),
    ("halfcheetah-vel-10", halfcheetah_vel_10, "mujoco"),
):
    register(_name, _factory, extra=_extra, origin=BUILT_IN)
_AT_IMPORT = frozenset(_REGISTRY)  # the built-in names a fresh process (a worker) can build


FamilyRef = TaskFamily | str
"""A family given as an object (used as is) or by the string :func:`make` rebuilds it from (``family.ref``)."""


def resolve(family: FamilyRef) -> TaskFamily:
    """The family itself, or the family that string names (a name or ``module:factory``: ``family.ref``)."""
    return family if isinstance(family, TaskFamily) else make(family)


def portable(family: TaskFamily) -> FamilyRef:
    """The family as a work item for another process carries it (issue 15): the object itself where it
    pickles (every built-in family and every :func:`from_gymnasium` family, registered or not), so the
    worker runs exactly the caller's tasks; else the string a fresh process rebuilds it from
    (``family.ref``: its ``module:factory``, an entry-point name or a built-in name).

    Raises:
        ConfigError: the family neither pickles nor can be rebuilt by name in a fresh process.
    """
    try:
        pickle.dumps(family)
        return family
    except (pickle.PicklingError, AttributeError, TypeError) as e:
        if family.factory or family.name in _AT_IMPORT or family.name in _entry_points():
            return family.ref  # module:factory, an entry point or a built-in: any process rebuilds it
        raise ConfigError(
            f"family {family.name!r} cannot be sent to worker processes: it does not pickle ({e}) and a fresh "
            "process does not know its name; build its environments with top-level functions (or "
            "tasks.from_gymnasium), or use the serial executor"
        ) from None
