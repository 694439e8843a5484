"""The library chooses torch's CPU thread count itself, so Python callers get the CLI's speed.

Small policy networks run fastest on one thread: on 2 cores with other work running, ``pipeline.run``
on planted-toy smoke took 273 s with torch's default thread count against 19 s with one (issue #11).
:func:`torch_threads` sets the count for the duration of a call and restores the caller's afterwards;
nested calls inherit the outermost explicit choice.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

from policygradex.errors import ConfigError

DEFAULT_THREADS = 1
"""Torch CPU threads used unless the caller asks for another count."""

P = ParamSpec("P")
R = TypeVar("R")

_active: contextvars.ContextVar[int | None] = contextvars.ContextVar("policygradex_threads", default=None)


@contextmanager
def torch_threads(threads: int | None = None) -> Iterator[int]:
    """Run the body with ``threads`` torch CPU threads (None: an enclosing choice, else
    :data:`DEFAULT_THREADS`), restoring the previous count on exit.

    Raises:
        ConfigError: ``threads`` below 1.
    """
    import torch

    if threads is not None and threads < 1:
        raise ConfigError(f"threads={threads} must be at least 1")
    outer = _active.get()
    n = threads if threads is not None else (outer if outer is not None else DEFAULT_THREADS)
    before = torch.get_num_threads()
    token = _active.set(n)
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)
        _active.reset(token)


def library_threads(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorate a public entry point (``rl.ppo.train``, ``rl.evaluate.evaluate``) so a direct Python call
    runs with the library's thread count (an enclosing :func:`torch_threads` choice, else
    :data:`DEFAULT_THREADS`) and restores the caller's count afterwards (issue 11, item 5). To pick
    another count, call it inside ``with torch_threads(N):``.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with torch_threads():
            return fn(*args, **kwargs)

    return wrapper
