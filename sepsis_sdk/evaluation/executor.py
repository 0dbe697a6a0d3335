"""Where evaluation work runs: an :class:`Executor` maps a function over work items.

The runner only needs ``map(fn, items)`` returning results in order (and ``close``). Three executors ship:

- :class:`SerialExecutor`: in this process (tests, debugging, policies that cannot be pickled);
- :class:`LocalProcessExecutor`: a ``concurrent.futures`` process pool (``spawn`` context, so torch and
  other threaded libraries start clean in each worker). Functions and items must be picklable;
- :class:`sepsis_sdk.scale.RayExecutor` (extra ``[ray]``): Ray tasks on a cluster or a local Ray, the
  shared function put once, retries when a worker dies (``docs/scale.md``).

:func:`make_executor` picks one by name (``"process"`` is the default of the report).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar, runtime_checkable

from sepsis_sdk.errors import UserError

T = TypeVar("T")
R = TypeVar("R")


@runtime_checkable
class Executor(Protocol):
    """Runs ``fn`` over ``items`` and yields results in the order of ``items``."""

    name: str

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]: ...

    def close(self) -> None: ...


def cannot_ship(executor: Any, obj: Any) -> str | None:
    """Why ``obj`` cannot travel to ``executor``'s workers (``"TypeError: ..."``), or None when it can.

    Executors that ship work say so with a ``cannot_ship(obj)`` method (the process pool: ``pickle``;
    Ray: Ray's ``cloudpickle``); one without it runs everything where it is called, so anything goes.
    """
    check = getattr(executor, "cannot_ship", None)
    return None if check is None else check(obj)


class SerialExecutor:
    """Runs everything in the calling process, one item at a time."""

    name = "serial"

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        for item in items:
            yield fn(item)

    def close(self) -> None:
        return None

    def __enter__(self) -> SerialExecutor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class LocalProcessExecutor:
    """A local process pool. Falls back to serial work when ``fn`` cannot be pickled.

    Args:
        workers: number of processes (default: the CPUs available to this process, at most 8).
    """

    name = "process"

    def __init__(self, workers: int | None = None) -> None:
        avail = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self.workers = max(1, int(workers) if workers else min(avail, 8))
        self._pool: Any = None
        self.fell_back = False

    def _get_pool(self) -> Any:
        if self._pool is None:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=mp.get_context("spawn"))
        return self._pool

    def cannot_ship(self, obj: Any) -> str | None:
        """Why ``obj`` cannot be sent to the pool's processes (it must pickle), or None when it can."""
        return _pickle_problem(obj)

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        items = list(items)
        if self.workers == 1 or len(items) <= 1 or not _picklable(fn):
            self.fell_back = self.workers > 1 and len(items) > 1
            yield from SerialExecutor().map(fn, items)
            return
        pool = self._get_pool()
        futures = [pool.submit(fn, it) for it in items]
        for f in futures:
            yield f.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> LocalProcessExecutor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _picklable(obj: Any) -> bool:
    return _pickle_problem(obj) is None


def _pickle_problem(obj: Any) -> str | None:
    try:
        pickle.dumps(obj)
    except Exception as exc:  # pickle raises TypeError, PicklingError, AttributeError, ... from user code
        return f"{type(exc).__name__}: {exc}"
    return None


EXECUTORS = ("process", "serial", "ray")


def make_executor(
    kind: str | Executor = "process", *, workers: int | None = None, address: str | None = None
) -> Executor:
    """An executor by name; an Executor object is returned as is.

    Args:
        kind: ``"process"`` (local pool), ``"serial"`` or ``"ray"`` (:class:`sepsis_sdk.scale.RayExecutor`).
        workers: processes of the pool; for ``"ray"``, the CPUs of a local cluster started for the run.
        address: ``"ray"`` only: the cluster to join (``"auto"``, ``"host:6379"``, ``"ray://host:10001"``);
            None reads ``$RAY_ADDRESS`` and otherwise starts a local cluster.
    """
    if not isinstance(kind, str):
        return kind
    if address is not None and kind != "ray":
        raise UserError(f"a Ray address ({address!r}) needs executor 'ray', not {kind!r}")
    if kind == "serial":
        return SerialExecutor()
    if kind == "process":
        return LocalProcessExecutor(workers)
    if kind == "ray":
        from sepsis_sdk.scale import RayExecutor  # ray itself is imported only when the executor connects

        return RayExecutor(address, num_cpus=workers)
    raise UserError(f"unknown executor {kind!r}; choose one of {EXECUTORS} (or pass an Executor object)")


__all__ = ["EXECUTORS", "Executor", "LocalProcessExecutor", "SerialExecutor", "cannot_ship", "make_executor"]
