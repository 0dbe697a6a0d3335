"""Executors on Ray: stateless tasks (:class:`RayExecutor`) and long-lived actors (:class:`RayActorExecutor`).

Both satisfy the evaluation :class:`~sepsis_sdk.evaluation.executor.Executor` protocol (``name``,
``map(fn, items)`` yielding results in the order of ``items``, ``close()``), so anything that takes an
executor runs on a cluster unchanged. What they add over a process pool:

- **shared inputs go once**: ``fn`` (with whatever it binds: a policy, a world model, a rule set) is put
  in the object store once per ``map`` and each task receives a reference, not a copy;
- **bounded in-flight work**: at most ``max_in_flight`` tasks are submitted ahead of the results read;
- **retries on worker death**: a task whose worker process dies is run again by Ray (``max_retries``);
  results are read only by the caller, so a retried task is never counted twice;
- **clean shutdown**: ``close`` cancels work not yet read and shuts down a cluster it started.
"""

from __future__ import annotations

import pickle
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from sepsis_sdk.errors import ClusterError, UserError
from sepsis_sdk.scale._cluster import connect, ray_module

T = TypeVar("T")
R = TypeVar("R")


def _call(fn: Callable[[Any], Any], item: Any) -> Any:
    return fn(item)


def _unwrap(exc: BaseException, what: str) -> BaseException:
    """The user's own exception from a failed task; a lost worker becomes a :class:`ClusterError`."""
    ray = ray_module()
    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = getattr(exc, "cause", None)
        if isinstance(cause, ray.exceptions.RayError) and not isinstance(cause, ray.exceptions.RayTaskError):
            # Ray's own failure reported as the task's (a worker its memory monitor killed): the cluster's
            # condition, named as such, not an exception of the user's code
            return _unwrap(cause, what)
        return cause if isinstance(cause, BaseException) else exc
    if isinstance(exc, (ray.exceptions.WorkerCrashedError, ray.exceptions.RayActorError)):
        return ClusterError(f"{what}: its worker died and the retries are used up ({exc})")
    if isinstance(exc, ray.exceptions.RayError):
        return ClusterError(f"{what}: {type(exc).__name__}: {exc}")
    return exc


class _RayBase:
    """Connection handling shared by both executors."""

    name = "ray"

    def __init__(
        self, address: str | None, *, num_cpus: int | None, max_in_flight: int | None,
        init_kwargs: dict[str, Any] | None,
    ) -> None:  # fmt: skip
        if max_in_flight is not None and max_in_flight < 1:
            raise UserError("max_in_flight must be >= 1")
        self.address = address
        self.num_cpus = num_cpus
        self.max_in_flight = max_in_flight
        self._init_kwargs = dict(init_kwargs or {})
        self._owns_cluster = False
        self._connected = False
        self.stats: dict[str, int] = {"puts": 0, "tasks": 0}

    def connect(self) -> None:
        """Join or start the cluster now (otherwise the first ``map`` does it)."""
        if not self._connected:
            self._owns_cluster = connect(self.address, num_cpus=self.num_cpus, **self._init_kwargs)
            self._connected = True

    def put(self, obj: Any) -> Any:
        """Put ``obj`` in the object store once; pass the reference to many tasks instead of the object."""
        self.connect()
        self.stats["puts"] += 1
        return ray_module().put(obj)

    def _window(self) -> int:
        if self.max_in_flight is not None:
            return self.max_in_flight
        cpus = int(ray_module().cluster_resources().get("CPU", 1))
        return max(2, 2 * cpus)  # two per CPU: a worker never waits for the driver to hand it the next one

    def _shutdown(self) -> None:
        if self._owns_cluster:
            ray_module().shutdown()
        self._owns_cluster = False
        self._connected = False

    def __enter__(self) -> Any:
        self.connect()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:  # pragma: no cover - overridden
        self._shutdown()


class RayExecutor(_RayBase):
    """Runs ``fn`` over items as Ray tasks on a cluster, or on a local Ray started for the run.

    Args:
        address: ``"auto"``, ``"host:6379"``, ``"ray://host:10001"``, ``"local"`` or None (``$RAY_ADDRESS``
            when set, else a local cluster); see :func:`sepsis_sdk.scale.connect`.
        num_cpus: CPUs of a local cluster (default: all of this machine's).
        max_in_flight: tasks submitted ahead of the results read (default: twice the cluster's CPUs).
        max_retries: times a task is run again when its worker process dies (Ray's ``max_retries``);
            exceptions raised by ``fn`` itself are not retried, they reach the caller.
        num_cpus_per_task: CPUs each task reserves (more than 1 for multi-threaded work).
        init_kwargs: extra ``ray.init`` arguments (``runtime_env``, ``object_store_memory``, ...).

    Example:
        >>> from sepsis_sdk.scale import RayExecutor
        >>> with RayExecutor(num_cpus=2) as ex:  # doctest: +SKIP
        ...     list(ex.map(abs, [-1, -2, 3]))
        [1, 2, 3]
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        max_in_flight: int | None = None,
        max_retries: int = 3,
        num_cpus_per_task: float = 1,
        init_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(address, num_cpus=num_cpus, max_in_flight=max_in_flight, init_kwargs=init_kwargs)
        self.max_retries = int(max_retries)
        self.num_cpus_per_task = num_cpus_per_task
        self._remote: Any = None
        self.fell_back = False

    def cannot_ship(self, obj: Any) -> str | None:
        """Why ``obj`` cannot be sent to the cluster (Ray's ``cloudpickle`` refuses it), or None when it can."""
        ray = ray_module()
        try:
            ray.cloudpickle.dumps(obj)
        except Exception as exc:  # cloudpickle raises whatever the object's own pickling raises
            return f"{type(exc).__name__}: {exc}"
        return None

    def parallelism(self) -> int:
        """How many tasks the cluster runs at once (its CPUs over ``num_cpus_per_task``; connects)."""
        self.connect()
        cpus = float(ray_module().cluster_resources().get("CPU", 1))
        return max(1, int(cpus // self.num_cpus_per_task))

    def _task(self) -> Any:
        if self._remote is None:
            ray = ray_module()
            self._remote = ray.remote(_call).options(
                max_retries=self.max_retries, retry_exceptions=False, num_cpus=self.num_cpus_per_task
            )
        return self._remote

    def _submit(self, fn_ref: Any, item: Any) -> Any:
        self.stats["tasks"] += 1
        return self._task().remote(fn_ref, item)

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """Yield ``fn(item)`` for every item, in the order of ``items``.

        ``fn`` is put in the object store once for the whole call: bind large shared inputs into it
        (``functools.partial(score, policy)``) rather than into every item.

        Raises:
            The exception ``fn`` raised (the first one in item order), or :class:`ClusterError` when a
            task's worker kept dying.
        """
        self.connect()
        ray = ray_module()
        fn_ref = self._put_fn(fn)
        if fn_ref is None:  # like the process pool: what cannot be shipped runs here
            yield from (fn(item) for item in items)
            return
        window = self._window()
        pending: deque[tuple[int, Any]] = deque()
        try:
            for k, item in enumerate(items):
                pending.append((k, self._submit(fn_ref, item)))
                if len(pending) >= window:
                    yield self._get(*pending.popleft())
            while pending:
                yield self._get(*pending.popleft())
        finally:  # the caller stopped early or a task failed: do not leave work running
            for _, ref in pending:
                ray.cancel(ref, force=False)

    def _put_fn(self, fn: Callable[..., Any]) -> Any:
        try:
            ref = self.put(fn)
        except (TypeError, pickle.PicklingError, AttributeError) as exc:
            self.stats["puts"] -= 1
            self.fell_back = True
            # The user asked for Ray: running here instead is not silent (the process pool warns the same way)
            warnings.warn(
                f"RayExecutor: {getattr(fn, '__name__', type(fn).__name__)} cannot be shipped to the cluster "
                f"({type(exc).__name__}: {exc}); running it serially in this process",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
        return ref

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[int, R]]:
        """Yield ``(index, fn(item))`` as tasks finish (for work whose order does not matter)."""
        self.connect()
        ray = ray_module()
        fn_ref = self._put_fn(fn)
        if fn_ref is None:
            yield from enumerate(fn(item) for item in items)
            return
        window = self._window()
        where: dict[Any, int] = {}
        it = iter(enumerate(items))
        try:
            for k, item in it:
                where[self._submit(fn_ref, item)] = k
                if len(where) >= window:
                    break
            while where:
                done, _ = ray.wait(list(where), num_returns=1)
                k = where.pop(done[0])
                yield k, self._get(k, done[0])
                for j, item in it:  # refill one slot
                    where[self._submit(fn_ref, item)] = j
                    break
        finally:
            for ref in where:
                ray.cancel(ref, force=False)

    def _get(self, k: int, ref: Any) -> Any:
        ray = ray_module()
        try:
            return ray.get(ref)
        except ray.exceptions.RayError as exc:
            raise _unwrap(exc, f"task {k}") from None

    def close(self) -> None:
        """Shut down a cluster this executor started (a joined one stays up).

        Unread tasks are cancelled when their ``map`` generator is closed or garbage-collected.
        """
        self._remote = None
        self._shutdown()


class _Holder:
    """The actor body: builds the expensive object once, then runs many tasks with it."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        import os

        self.obj = factory()
        self.pid = os.getpid()

    def run(self, fn: Callable[[Any, Any], Any], item: Any) -> Any:
        return fn(self.obj, item)

    def whoami(self) -> int:
        return self.pid


class RayActorExecutor(_RayBase):
    """Runs ``fn(obj, item)`` on long-lived actors, each holding one ``obj = factory()``.

    For tasks that need an expensive object: a loaded world model, a local LLM. Each actor calls
    ``factory`` once (again only if Ray restarts it after its process died) and then serves many items.
    Work goes to the actor with the fewest unfinished items; results come back in item order.

    Args:
        factory: builds the object, in the actor (picklable: a module-level function or a
            ``functools.partial``); it travels with each actor's creation, so a restarted actor finds it.
        n_actors: actors to start (default: the cluster's CPUs divided by ``num_cpus_per_actor``).
        address, num_cpus, max_in_flight, init_kwargs: as for :class:`RayExecutor`.
        max_retries: restarts of a dead actor and re-runs of the items it held.
        num_cpus_per_actor, num_gpus_per_actor: what each actor reserves (``num_gpus_per_actor=1`` puts a
            model on its own GPU).
    """

    def __init__(
        self,
        factory: Callable[[], Any],
        *,
        n_actors: int | None = None,
        address: str | None = None,
        num_cpus: int | None = None,
        max_in_flight: int | None = None,
        max_retries: int = 3,
        num_cpus_per_actor: float = 1,
        num_gpus_per_actor: float = 0,
        init_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(address, num_cpus=num_cpus, max_in_flight=max_in_flight, init_kwargs=init_kwargs)
        self.factory = factory
        self.n_actors = n_actors
        self.max_retries = int(max_retries)
        self.num_cpus_per_actor = num_cpus_per_actor
        self.num_gpus_per_actor = num_gpus_per_actor
        self._actors: list[Any] = []

    def actors(self) -> list[Any]:
        """The actor handles (started on first use)."""
        self.connect()
        if not self._actors:
            ray = ray_module()
            n = self.n_actors or max(1, int(ray.cluster_resources().get("CPU", 1) // self.num_cpus_per_actor))
            cls = ray.remote(_Holder).options(
                max_restarts=self.max_retries, max_task_retries=self.max_retries,
                num_cpus=self.num_cpus_per_actor, num_gpus=self.num_gpus_per_actor,
            )  # fmt: skip
            # the factory itself, not an object-store reference: a restarted actor must find its arguments
            # again (ray-project/ray#53727), and a factory is small (it loads the big object)
            self._actors = [cls.remote(self.factory) for _ in range(n)]
        return self._actors

    def map(self, fn: Callable[[Any, T], R], items: Iterable[T]) -> Iterator[R]:  # type: ignore[override]
        """Yield ``fn(obj, item)`` for every item, in the order of ``items`` (``obj`` is the actor's).

        ``fn`` is put in the object store once per call, like :meth:`RayExecutor.map`.
        """
        ray = ray_module()
        actors = self.actors()
        fn_ref = self.put(fn)
        window = self.max_in_flight or 2 * len(actors)
        load = [0] * len(actors)
        pending: deque[tuple[int, int, Any]] = deque()
        try:
            for k, item in enumerate(items):
                a = min(range(len(actors)), key=load.__getitem__)
                load[a] += 1
                self.stats["tasks"] += 1
                pending.append((k, a, actors[a].run.remote(fn_ref, item)))
                if len(pending) >= window:
                    yield self._take(pending, load)
            while pending:
                yield self._take(pending, load)
        finally:
            for _, _, ref in pending:
                ray.cancel(ref, force=False)

    def _take(self, pending: deque[tuple[int, int, Any]], load: list[int]) -> Any:
        ray = ray_module()
        k, a, ref = pending.popleft()
        load[a] -= 1
        try:
            return ray.get(ref)
        except ray.exceptions.RayError as exc:
            raise _unwrap(exc, f"item {k} on actor {a}") from None

    def close(self) -> None:
        """Stop the actors and shut down a cluster this executor started."""
        if self._actors:
            ray = ray_module()
            for a in self._actors:
                ray.kill(a, no_restart=True)
            self._actors = []
        self._shutdown()


__all__ = ["RayActorExecutor", "RayExecutor"]
