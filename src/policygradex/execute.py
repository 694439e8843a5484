"""One small executor interface: ``map(fn, items)`` in order, serially or in local processes.

Work items carry their own seeds, so the results are the same whichever executor runs them. A
distributed engine (Ray) plugs in by implementing :class:`Executor`.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Literal, Protocol, TypeVar

from policygradex.errors import ConfigError

T = TypeVar("T")
R = TypeVar("R")
ExecutorKind = Literal["serial", "process"]


class Executor(Protocol):
    """Runs ``fn`` on every item; yields results in item order as they complete in order."""

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        """Apply ``fn`` (a picklable top-level function for process executors) to each item."""
        ...


class SerialExecutor:
    """Runs items one after another in this process."""

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        for item in items:
            yield fn(item)


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


class ProcessExecutor:
    """Runs items in a pool of local worker processes (``spawn``: safe with torch's thread pools).

    Args:
        workers: number of processes.
        threads: torch threads per worker.
    """

    def __init__(self, workers: int, threads: int = 1) -> None:
        if workers < 1:
            raise ConfigError(f"workers={workers} must be at least 1")
        self.workers = workers
        self.threads = threads

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker, initargs=(self.threads,)) as pool:
            yield from pool.map(fn, items)


def make_executor(kind: ExecutorKind, workers: int = 2) -> Executor:
    """Build an executor by name."""
    if kind == "serial":
        return SerialExecutor()
    if kind == "process":
        return ProcessExecutor(workers)
    raise ConfigError(f"unknown executor {kind!r}; use 'serial' or 'process'")
