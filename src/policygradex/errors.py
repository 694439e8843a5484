"""User-facing errors.

Every error a user can cause by bad input is a :class:`PolicyGradExError` whose message is one
sentence naming the bad value and the fix; the CLI prints it on one line and exits non-zero.
"""

from __future__ import annotations


class PolicyGradExError(Exception):
    """An error caused by the user's input (configuration, files, names)."""


class ConfigError(PolicyGradExError):
    """A configuration value is out of range or inconsistent."""


class MissingExtraError(PolicyGradExError, ImportError):
    """An optional dependency (an extra) needed by a family is not installed."""
