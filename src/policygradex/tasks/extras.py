"""Optional dependencies (extras) of the task families, imported only when a family needs them.

``import policygradex.tasks`` works without any extra installed; a family whose library is missing
raises :class:`~policygradex.errors.MissingExtraError` when it is built, with one sentence naming the
extra to install.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from types import ModuleType

from policygradex.errors import MissingExtraError


def missing_extra_message(family: str, extra: str) -> str:
    """The one-line message for a family whose extra is not installed."""
    return f"family {family!r} needs the {extra} extra: pip install 'policygradex[{extra}]'"


def import_extra(module: str, extra: str, family: str) -> ModuleType:
    """Import ``module`` for ``family``, or say which extra to install.

    Args:
        module: the module to import, e.g. ``"Box2D"``.
        extra: the policygradex extra that installs it, e.g. ``"box2d"``.
        family: the family that needs it (named in the message).

    Raises:
        MissingExtraError: the module (or one of its own dependencies) cannot be imported.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(missing_extra_message(family, extra)) from None


def dist_version(distribution: str) -> str:
    """Installed version of a distribution (for ``TaskFamily.source``), or ``"unknown"``."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"
