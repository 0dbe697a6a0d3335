"""A cluster-wide concurrency limit: one Ray actor holds the permits, every worker asks it.

N workers that each allow ``c`` calls in flight would send ``N * c`` requests to a hosted model; a
:class:`ConcurrencyLimit` caps the sum instead. It is an async Ray actor holding an ``asyncio.Semaphore``;
workers ``acquire`` a lease (a token), make their call, and ``release`` it.

A worker killed while it holds permits never releases them. So a lease lives ``lease_s`` seconds unless
renewed: each process that holds leases renews them from one daemon thread every ``lease_s / 3``
seconds. Slow calls keep their permits; a dead worker's permits come back within ``lease_s``.

:func:`limited` wraps a chat model or a judge so that every call goes through the limit.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
from typing import Any

from sepsis_sdk.errors import UserError
from sepsis_sdk.scale._cluster import connect, ray_module


class _Permits:
    """The actor body (async: many waiting ``acquire`` calls cost no threads)."""

    def __init__(self, limit: int, lease_s: float) -> None:
        import asyncio

        self.limit, self.lease_s = limit, lease_s
        self.sem = asyncio.Semaphore(limit)
        self.leases: dict[int, float] = {}
        self.next_token = 0
        self.acquired = self.peak = self.reclaimed = 0
        self.reaper: Any = None

    async def _reap(self) -> None:
        import asyncio
        import time

        while True:
            await asyncio.sleep(min(1.0, self.lease_s / 4))
            now = time.monotonic()
            for tok, until in list(self.leases.items()):
                if until < now:
                    self.release(tok)
                    self.reclaimed += 1

    async def acquire(self) -> int:
        import asyncio
        import time

        if self.reaper is None:
            self.reaper = asyncio.get_running_loop().create_task(self._reap())
        await self.sem.acquire()
        self.next_token += 1
        self.leases[self.next_token] = time.monotonic() + self.lease_s
        self.acquired += 1
        self.peak = max(self.peak, len(self.leases))
        return self.next_token

    def renew(self, tokens: list[int]) -> None:
        import time

        until = time.monotonic() + self.lease_s
        for tok in tokens:
            if tok in self.leases:
                self.leases[tok] = until

    def release(self, token: int) -> None:
        if self.leases.pop(token, None) is not None:  # a reclaimed lease released late is ignored
            self.sem.release()

    def stats(self) -> dict[str, Any]:
        return {
            "limit": self.limit,
            "in_use": len(self.leases),
            "peak": self.peak,
            "acquired": self.acquired,
            "reclaimed": self.reclaimed,
        }


class ConcurrencyLimit:
    """At most ``limit`` holders at once across every worker of the cluster.

    Hold a permit with ``with limit:``, or ``token = limit.acquire()`` (``await limit.aacquire()``) and
    ``limit.release(token)``; or wrap a model with :func:`limited`. It pickles (its actor handle travels),
    so bind it into the functions you ship to workers. Runs that name the same limit share it: two sweeps
    against one endpoint stay under one cap.

    Args:
        limit: permits in total (e.g. the provider's concurrent-request allowance).
        name: the actor's name in the cluster; the same name joins the existing limit (its ``limit`` wins)
            and the limit outlives the run (detached) until :meth:`kill`.
        lease_s: a permit not renewed for this long is reclaimed (its holder is taken as dead); holders
            renew theirs every ``lease_s / 3`` seconds while they hold them.
        address: the cluster (see :func:`sepsis_sdk.scale.connect`), used when Ray is not yet initialised.

    Example:
        >>> limit = ConcurrencyLimit(8, name="openai")   # doctest: +SKIP
        >>> chat = limited(LiteLLMChat("gpt-4o-mini"), limit)   # ship `chat` to many workers  # doctest: +SKIP
    """

    def __init__(
        self, limit: int, *, name: str | None = None, lease_s: float = 30.0, address: str | None = None
    ) -> None:
        if limit < 1:
            raise UserError("a concurrency limit needs limit >= 1")
        if lease_s <= 0:
            raise UserError("lease_s must be > 0")
        connect(address)
        ray = ray_module()
        cls = ray.remote(_Permits).options(num_cpus=0, max_concurrency=max(1000, 4 * limit))
        if name:
            cls = cls.options(name=name, get_if_exists=True, lifetime="detached")
        self.limit, self.name, self.lease_s = int(limit), name, float(lease_s)
        self._actor = cls.remote(int(limit), float(lease_s))
        self._local()

    def _local(self) -> None:
        """Per-process state (not pickled): the leases held here and the thread renewing them."""
        self._held: set[int] = set()
        self._lock = threading.Lock()
        self._renewer: threading.Thread | None = None
        self._tls = threading.local()  # `with limit:` tokens, per thread

    def _hold(self, token: int) -> int:
        with self._lock:
            self._held.add(token)
            if self._renewer is None or not self._renewer.is_alive():
                self._renewer = threading.Thread(target=self._renew_loop, daemon=True, name="lease-renewer")
                self._renewer.start()
        return token

    def _renew_loop(self) -> None:
        import time

        while True:
            time.sleep(self.lease_s / 3)
            with self._lock:
                held = list(self._held)
                if not held:
                    self._renewer = None
                    return
            try:
                self._actor.renew.remote(held)
            except Exception as exc:  # the cluster is going away; the leases expire on their own
                logging.getLogger(__name__).warning(
                    "ConcurrencyLimit %s: lease renewal stopped (%s: %s); %d held permits will expire "
                    "after %.0f s and the cap can then be exceeded",
                    self.name, type(exc).__name__, exc, len(held), self.lease_s,
                )  # fmt: skip
                return

    def acquire(self) -> int:
        """Block until a permit is free; returns the lease token to :meth:`release`."""
        return self._hold(int(ray_module().get(self._actor.acquire.remote())))

    async def aacquire(self) -> int:
        """Await a free permit without blocking the event loop."""
        return self._hold(int(await self._actor.acquire.remote()))

    def release(self, token: int) -> None:
        """Give a permit back (fire and forget)."""
        with self._lock:
            self._held.discard(token)
        self._actor.release.remote(token)

    def stats(self) -> dict[str, Any]:
        """``limit``, ``in_use``, ``peak`` (most permits ever held at once), ``acquired``, ``reclaimed``."""
        return dict(ray_module().get(self._actor.stats.remote()))

    def kill(self) -> None:
        """Remove the actor (a named limit otherwise outlives the run, by design)."""
        ray_module().kill(self._actor)

    def __enter__(self) -> ConcurrencyLimit:
        stack = self._tls.__dict__.setdefault("stack", [])
        stack.append(self.acquire())
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release(self._tls.stack.pop())

    def __getstate__(self) -> dict[str, Any]:
        return {"limit": self.limit, "name": self.name, "lease_s": self.lease_s, "_actor": self._actor}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local()


# The call methods of ChatModel (sepsis_sdk.llm) and Judge (sepsis_sdk.judge); names, not imports, so this
# module stays on the ground floor.
LIMITED_METHODS = frozenset(
    {
        "complete",
        "acomplete",
        "structured",
        "astructured",
        "structured_response",
        "astructured_response",
        "judge",
        "ajudge",
    }
)


class _Limited:
    """A proxy: the wrapped object's call methods each hold one permit of ``limit``; the rest passes through."""

    def __init__(self, obj: Any, limit: ConcurrencyLimit, methods: frozenset[str]) -> None:
        self.__dict__.update(_obj=obj, _limit=limit, _methods=methods)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or "_obj" not in self.__dict__:
            raise AttributeError(name)
        attr = getattr(self._obj, name)
        if name not in self._methods or not callable(attr):
            return attr
        limit = self._limit
        if inspect.iscoroutinefunction(attr):

            @functools.wraps(attr)
            async def acall(*args: Any, **kwargs: Any) -> Any:
                token = await limit.aacquire()
                try:
                    return await attr(*args, **kwargs)
                finally:
                    limit.release(token)

            return acall

        @functools.wraps(attr)
        def call(*args: Any, **kwargs: Any) -> Any:
            token = limit.acquire()
            try:
                return attr(*args, **kwargs)
            finally:
                limit.release(token)

        return call

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"limited({self._obj!r}, limit={self._limit.limit})"


def limited(obj: Any, limit: ConcurrencyLimit, *, methods: frozenset[str] | None = None) -> Any:
    """``obj`` (a chat model, a judge) whose calls each hold one permit of the cluster-wide ``limit``.

    Every other attribute (``name``, ``model``, ...) is the wrapped object's, so the proxy satisfies the
    same protocol.

    Args:
        obj: the object to wrap.
        limit: the shared :class:`ConcurrencyLimit`.
        methods: the method names to gate (default: the call methods of ``ChatModel`` and ``Judge``).
    """
    return _Limited(obj, limit, frozenset(methods) if methods is not None else LIMITED_METHODS)


__all__ = ["LIMITED_METHODS", "ConcurrencyLimit", "limited"]
