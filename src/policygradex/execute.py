"""One small executor interface: ``map(fn, items, shared)`` in item order, serially, in local processes
or as Ray tasks (issue 15).

Work items carry everything they need: their seeds, the family (the object itself where it pickles,
see :func:`policygradex.tasks.portable`) and their own data. What every item of a stage reads (θ*'s
checkpoint) is passed once as ``shared``: a pool worker receives it once, a Ray cluster holds it once
in its object store. Items return their results and the caller writes them to the run directory, so a
worker needs neither the caller's family registry nor its file system, and the results are the same
whichever executor runs them.

Ray (``pip install 'policygradex[ray]'``) runs each item as a task asking for one CPU (and
``gpus_per_item`` GPUs). :func:`start_ray` joins a cluster or starts a local Ray; a :class:`RayExecutor`
that finds no Ray in this process starts a local one on demand.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import importlib.util
import logging
import multiprocessing as mp
import os
import secrets
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, Protocol, TypeVar

from policygradex.errors import ConfigError, MissingExtraError, PolicyGradExError
from policygradex.io import atomic_path
from policygradex.threads import torch_threads

T = TypeVar("T")
S = TypeVar("S")
R = TypeVar("R")
ExecutorKind = Literal["serial", "process", "ray"]
RAY_MISSING = "the ray executor needs Ray: pip install 'policygradex[ray]'"


class Executor(Protocol):
    """Runs ``fn(item, shared)`` on every item; yields the results in item order."""

    @property
    def local(self) -> bool:
        """Whether items run on this machine, so they may read and write the caller's files."""
        ...

    def map(self, fn: Callable[[T, S], R], items: Sequence[T], shared: S) -> Iterator[R]:
        """Apply ``fn`` (a picklable top-level function for process and Ray executors) to each item.

        Raises:
            PolicyGradExError: an item failed for bad input (its own one-line message).
        """
        ...


# ---- file contents that travel with the work -------------------------------------------------------
@dataclass(frozen=True)
class FileContents:
    """A file of the caller's machine, carried by value to workers that may not see it.

    Attributes:
        path: where the caller read it.
        data: its bytes.
        digest: their SHA-256 (hex).
    """

    path: str
    data: bytes = field(repr=False)
    digest: str

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> FileContents:
        """The contents of ``path`` now."""
        data = Path(path).read_bytes()
        return cls(str(path), data, hashlib.sha256(data).hexdigest())

    def local_path(self) -> str:
        """A path on this machine holding these bytes: the original where it still holds them (the
        caller's machine), else a copy named by the digest in this machine's temporary directory (written
        once per machine, atomically)."""
        original = Path(self.path)
        try:
            if original.stat().st_size == len(self.data) and hashlib.sha256(original.read_bytes()).hexdigest() == self.digest:
                return self.path
        except OSError:
            pass
        uid = getattr(os, "getuid", lambda: 0)()
        copy = Path(tempfile.gettempdir()) / f"policygradex-{uid}" / f"{self.digest}{original.suffix}"
        if not copy.is_file():
            with atomic_path(copy) as tmp:
                tmp.write_bytes(self.data)
        return str(copy)


# ---- serial and local processes --------------------------------------------------------------------
class SerialExecutor:
    """Runs items one after another in this process, each with the library's torch thread count (as a
    worker would: a caller that never set one would otherwise get torch's default, many times slower
    for these small networks on a loaded machine; see :mod:`policygradex.threads`)."""

    local = True

    def map(self, fn: Callable[[T, S], R], items: Sequence[T], shared: S) -> Iterator[R]:
        for item in items:
            with torch_threads():
                result = fn(item, shared)
            yield result


# A pool worker's copy of the stage's shared input, set once by the pool's initializer.
_worker_shared: Any = None


def _init_worker(threads: int, shared: Any) -> None:
    import torch

    global _worker_shared
    torch.set_num_threads(threads)
    _worker_shared = shared


def _call_with_shared(fn: Callable[[Any, Any], R], item: Any) -> R:
    return fn(item, _worker_shared)


class ProcessExecutor:
    """Runs items in a pool of local worker processes (``spawn``: safe with torch's thread pools).

    Args:
        workers: number of processes.
        threads: torch threads per worker.
    """

    local = True

    def __init__(self, workers: int, threads: int = 1) -> None:
        if workers < 1:
            raise ConfigError(f"workers={workers} must be at least 1")
        self.workers = workers
        self.threads = threads

    def map(self, fn: Callable[[T, S], R], items: Sequence[T], shared: S) -> Iterator[R]:
        if not items:
            return
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(
            self.workers, mp_context=ctx, initializer=_init_worker, initargs=(self.threads, shared)
        ) as pool:
            yield from pool.map(functools.partial(_call_with_shared, fn), items)


# ---- Ray ---------------------------------------------------------------------------------------------
def import_ray() -> ModuleType:
    """The ``ray`` module, or :class:`MissingExtraError` naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise MissingExtraError(RAY_MISSING) from None
    return ray


def check_available(kind: ExecutorKind) -> None:
    """Raise before any work starts if the executor ``kind`` cannot run here (Ray not installed).

    Ray is looked up, not imported: a local Ray must see its settings before Ray's first import
    (:func:`start_ray`).
    """
    if kind != "ray":
        return
    try:
        found = importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):  # a module set to None in sys.modules, or a broken one
        found = False
    if not found:
        raise MissingExtraError(RAY_MISSING)


@dataclass
class _RaySession:
    """The Ray connection this module opened: the local Ray's temporary directory (removed at shutdown,
    None where the caller chose it or the cluster is remote) and the environment variables it set."""

    temp_dir: str | None
    saved_env: dict[str, str | None]
    local: bool
    cluster_mode: bool | None = None


# Ray is one connection per process (ray.init / ray.shutdown act on the process), so the session that
# this module opened is one per process too; shutdown_ray closes it, and so does the interpreter's exit.
_session: list[_RaySession] = []
_token: list[str] = []  # the random token of the local Rays this process starts


def start_ray(address: str | None = None, cpus: int = 2, *, temp_dir: str | None = None) -> bool:
    """Join the Ray cluster at ``address``, or start a local Ray with ``cpus`` CPUs; nothing happens if
    this process is already connected to Ray (by an earlier call or by the caller's own ``ray.init``).

    The local Ray listens on 127.0.0.1 only, runs no dashboard, sends no usage statistics, and keeps its
    sessions and logs in ``temp_dir`` (default: a new temporary directory, removed by
    :func:`shutdown_ray`). Ray 2.60 turns on token authentication for a local cluster and would write the
    token to ``~/.ray/auth_token``; a fresh random token is passed in the environment instead, so nothing
    is written to the home directory.

    Args:
        address: ``"auto"`` (a cluster started on this machine with ``ray start --head``), ``"HOST:PORT"``
            of a head node, ``"ray://HOST:10001"`` (Ray Client), or None for a local Ray.
        cpus: CPUs of the local Ray (the number of items run at once); ignored when joining a cluster.
        temp_dir: the local Ray's directory for sessions and logs (kept).

    Returns:
        Whether this call connected (then :func:`shutdown_ray` disconnects), or Ray was already there.

    Raises:
        MissingExtraError: Ray is not installed.
        ConfigError: the cluster cannot be reached, or ``cpus`` < 1.
    """
    if "ray" in sys.modules and import_ray().is_initialized():
        return False
    if address is not None:
        _check_reachable(address)
        ray = import_ray()
        try:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        except (ConnectionError, ValueError, RuntimeError, TimeoutError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ConfigError(
                f"cannot join the Ray cluster at --ray-address {address!r} ({first}); start one with "
                "`ray start --head` or check the address"
            ) from None
        _session.append(_RaySession(None, {}, local=False))
        atexit.unregister(shutdown_ray)  # once, however often Ray is started
        atexit.register(shutdown_ray)
        return True
    if cpus < 1:
        raise ConfigError(f"workers={cpus} must be at least 1 (the CPUs of the local Ray)")
    # Ray's servers bind to the node's address; with "clusters" off (a setting Ray reads on import) that is
    # 127.0.0.1, so nothing outside this machine can reach the local Ray (and no other node can join it).
    env = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    if not (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")):
        # one token per process: Ray caches the first token it reads, so a local Ray started again later in
        # this process must use the same one
        if not _token:
            _token.append(secrets.token_hex(32))
        env["RAY_AUTH_TOKEN"] = _token[0]
    saved = {k: os.environ.get(k) for k in (*env, "RAY_AUTH_MODE")}  # Ray sets RAY_AUTH_MODE itself
    os.environ.update(env)
    ray = import_ray()  # after the settings: the first import reads them
    constants: Any = getattr(getattr(ray, "_private", None), "ray_constants", None)
    cluster_mode = getattr(constants, "ENABLE_RAY_CLUSTER", None)
    if cluster_mode is not None:  # Ray was imported earlier (by the caller): the same setting, applied late
        constants.ENABLE_RAY_CLUSTER = False
    own = tempfile.mkdtemp(prefix="pgx-ray-", dir=_short_temp_root()) if temp_dir is None else None
    # Ray warns that it turned token authentication on, which is what we want: not a warning for our users
    auth_log = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = auth_log.level
    auth_log.setLevel(logging.ERROR)
    try:
        ray.init(
            address="local", num_cpus=cpus, include_dashboard=False, _temp_dir=own or temp_dir,
            _node_ip_address="127.0.0.1", log_to_driver=False, configure_logging=False,
        )
    except BaseException:
        _restore_env(saved)
        if cluster_mode is not None:
            constants.ENABLE_RAY_CLUSTER = cluster_mode
        if own is not None:
            shutil.rmtree(own, ignore_errors=True)
        raise
    finally:
        auth_log.setLevel(level)
    _session.append(_RaySession(own, saved, local=True, cluster_mode=cluster_mode))
    atexit.unregister(shutdown_ray)  # once, however often Ray is started
    atexit.register(shutdown_ray)
    return True


def _short_temp_root() -> str | None:
    """The temporary directory, or /tmp where its path is too long: Ray's socket paths live under it
    (about 60 characters deeper) and must stay under 108 characters."""
    root = tempfile.gettempdir()
    return root if len(root) <= 40 or not os.path.isdir("/tmp") else "/tmp"


def _check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """Refuse a ``HOST:PORT`` (or ``ray://HOST:PORT``) that accepts no connection: Ray itself would retry
    it for minutes before failing."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto" and other forms: Ray resolves them
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise ConfigError(
            f"cannot join the Ray cluster at --ray-address {address!r} ({e.strerror or e}); start one with "
            "`ray start --head` or check the address"
        ) from None


def _restore_env(saved: dict[str, str | None]) -> None:
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def shutdown_ray() -> None:
    """Disconnect the Ray that :func:`start_ray` joined or started (stopping a local one and removing its
    temporary directory); a Ray the caller initialised itself is left alone."""
    if not _session:
        return
    s = _session.pop()
    import ray

    ray.shutdown()
    _restore_env(s.saved_env)
    if s.cluster_mode is not None:
        ray._private.ray_constants.ENABLE_RAY_CLUSTER = s.cluster_mode
    if s.temp_dir is not None:
        shutil.rmtree(s.temp_dir, ignore_errors=True)


def _run_item(fn: Callable[[Any, Any], R], item: Any, shared: Any, threads: int) -> R:
    """One item in a Ray worker (``shared`` arrives resolved from the object store)."""
    with torch_threads(threads):
        return fn(item, shared)


def _cancel(ray: ModuleType, refs: list[Any], rounds: int = 40, wait_s: float = 0.25) -> None:
    """Cancel Ray tasks until each has ended (cancelled, failed or finished), for up to ``rounds * wait_s`` s.

    ``ray.cancel`` is best effort: a cancel that reaches a worker while it is picking the task up is lost
    and the task then runs to the end (ray-project/ray#24359; CI saw it once in 2026-11). A second cancel,
    once the task runs, ends it, so cancel again whatever has not ended after ``wait_s``.
    """
    for _ in range(rounds):
        if not refs:
            return
        for ref in refs:
            ray.cancel(ref, force=True)
        _, refs = ray.wait(refs, num_returns=len(refs), timeout=wait_s, fetch_local=False)


class RayExecutor:
    """Runs each item as a Ray task; ``shared`` goes to the object store once per :meth:`map`.

    A worker that dies is replaced and its item rerun, up to ``max_retries`` times (items are
    deterministic, so a rerun gives the same result); an item that raises is not rerun, and its error
    (for bad input, the :class:`PolicyGradExError` itself) fails the stage at once, cancelling the rest.
    Closing the iterator early (an error in the caller, Ctrl-C) cancels the items still outstanding.

    Args:
        workers: CPUs of the local Ray started on demand (ignored when this process already has Ray).
        address: the cluster to join if this process has no Ray yet (see :func:`start_ray`).
        cpus_per_item: CPUs each task asks for (= its torch threads).
        gpus_per_item: GPUs each task asks for (the library's networks run on the CPU; for user code).
        max_retries: reruns of an item whose worker died.
    """

    local = False

    def __init__(
        self, workers: int = 2, address: str | None = None, *, cpus_per_item: int = 1, gpus_per_item: float = 0.0,
        max_retries: int = 3,
    ) -> None:
        if workers < 1:
            raise ConfigError(f"workers={workers} must be at least 1")
        if cpus_per_item < 1 or gpus_per_item < 0 or max_retries < 0:
            raise ConfigError(
                f"cpus_per_item={cpus_per_item}, gpus_per_item={gpus_per_item}, max_retries={max_retries}: "
                "pass at least one CPU, no negative GPU count and no negative retries"
            )
        check_available("ray")
        self.workers = workers
        self.address = address
        self.cpus_per_item = cpus_per_item
        self.gpus_per_item = gpus_per_item
        self.max_retries = max_retries

    def map(self, fn: Callable[[T, S], R], items: Sequence[T], shared: S) -> Iterator[R]:
        if not items:
            return
        ray = import_ray()
        start_ray(self.address, self.workers)
        self._check_fits(ray)
        task = ray.remote(_run_item).options(
            num_cpus=self.cpus_per_item, num_gpus=self.gpus_per_item, max_retries=self.max_retries,
            retry_exceptions=False, name=getattr(fn, "__name__", "item"),
        )
        shared_ref = ray.put(shared)
        refs = [task.remote(fn, item, shared_ref, self.cpus_per_item) for item in items]
        position = {ref: j for j, ref in enumerate(refs)}
        pending, finished = list(refs), {}
        try:
            for j in range(len(refs)):
                while j not in finished:  # wait for any item, so a failure anywhere stops the stage now
                    ready, pending = ray.wait(pending, num_returns=1)
                    for ref in ready:
                        finished[position[ref]] = self._result(ray, ref, position[ref])
                yield finished.pop(j)
        finally:
            _cancel(ray, pending)

    def _check_fits(self, ray: ModuleType) -> None:
        """A local Ray too small for one item would queue it for ever: refuse instead."""
        if not (_session and _session[-1].local):
            return  # a cluster may scale up to fit
        have = ray.cluster_resources()
        if have.get("CPU", 0) < self.cpus_per_item or have.get("GPU", 0) < self.gpus_per_item:
            raise ConfigError(
                f"each item asks for {self.cpus_per_item} CPU and {self.gpus_per_item} GPU, but the local Ray has "
                f"{have.get('CPU', 0):g} CPU and {have.get('GPU', 0):g} GPU; lower the request or join a cluster"
            )

    def _result(self, ray: ModuleType, ref: Any, j: int) -> Any:
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as e:
            if isinstance(e.cause, PolicyGradExError):
                raise e.cause from None  # bad input: its own one-line message
            raise
        except ray.exceptions.TaskCancelledError:
            raise
        except ray.exceptions.RayError as e:  # the worker or its node died more than max_retries times
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise PolicyGradExError(
                f"work item {j} failed after {self.max_retries} reruns: {first}; check the Ray nodes' memory and logs"
            ) from None


def make_executor(kind: ExecutorKind, workers: int = 2) -> Executor:
    """Build an executor by name (``ray``: one that joins this process's Ray, or starts a local one with
    ``workers`` CPUs)."""
    if kind == "serial":
        return SerialExecutor()
    if kind == "process":
        return ProcessExecutor(workers)
    if kind == "ray":
        return RayExecutor(workers)
    raise ConfigError(f"unknown executor {kind!r}; use 'serial', 'process' or 'ray'")
