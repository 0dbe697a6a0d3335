"""Total deadlines for model calls: one clock per call, shared by its attempts, waits and re-asks.

``LiteLLMChat(timeout=...)`` is the total time one public call (``complete``, ``structured``, ...) may
take, retries and re-asks included. A caller can shorten it for everything it calls with
:func:`call_deadline` (the graphs do this with each decision's remaining time): the earlier of the two
wins. The deadline travels in a context variable, so it reaches the calls instructor makes back into the
model, and concurrent asyncio tasks and threads each keep their own.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar

_DEADLINE: ContextVar[float | None] = ContextVar("sepsis_sdk_llm_deadline", default=None)


def current_deadline() -> float | None:
    """The active deadline as a :func:`time.monotonic` instant, or ``None`` when unbounded."""
    return _DEADLINE.get()


def remaining_s(deadline: float | None = None) -> float | None:
    """Seconds left until ``deadline`` (default: the active one); ``None`` when unbounded."""
    d = current_deadline() if deadline is None else deadline
    return None if d is None else d - time.monotonic()


@contextlib.contextmanager
def call_deadline(seconds: float | None) -> Iterator[float | None]:
    """Bound every model call made inside the block to end within ``seconds`` from now.

    Nested blocks keep the earlier deadline; ``None`` adds no bound. Yields the monotonic deadline.

    Example:
        >>> from sepsis_sdk.llm import call_deadline
        >>> with call_deadline(5.0):
        ...     pass  # chat.complete(...) here raises LLMTimeoutError after 5 s at most
    """
    outer = _DEADLINE.get()
    new = outer if seconds is None else time.monotonic() + max(0.0, float(seconds))
    if outer is not None and new is not None:
        new = min(outer, new)
    token = _DEADLINE.set(new)
    try:
        yield new
    finally:
        _DEADLINE.reset(token)
