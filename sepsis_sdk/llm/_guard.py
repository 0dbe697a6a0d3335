"""The real-request guard: one module-level switch, checked by :class:`~sepsis_sdk.llm.LiteLLMChat`.

Modelled on pydantic-ai's ``ALLOW_MODEL_REQUESTS``. The check sits at the ``LiteLLMChat`` level (just before
it calls LiteLLM) rather than in the HTTP stack, because that is the one place every SDK request passes and
where the error can name the model. A request is let through while blocked only when it cannot reach the
network:

* the completion callable was injected (``LiteLLMChat(..., completion=fake)``): a fake, by definition;
* the model runs in-process through the ``local/`` provider;
* a respx router is active: respx then answers every httpx request itself (unmatched routes fail inside
  respx), so the LiteLLM HTTP path is exercised end to end without leaving the process;
* :func:`allow_real_requests` is active (an explicit opt-out, e.g. for a live smoke test).

Calls that do not go through ``LiteLLMChat`` (a user's own ``litellm.completion``) are not guarded.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from sepsis_sdk.errors import RealRequestBlockedError

#: Module-level switch. ``True``: real requests are allowed (the default outside tests).
ALLOW_REAL_REQUESTS: bool = True


def real_requests_allowed() -> bool:
    """Whether a real (network) model request may be made now."""
    return ALLOW_REAL_REQUESTS


def set_real_requests_allowed(allowed: bool) -> None:
    """Set the module-level switch (e.g. once in a ``conftest.py``)."""
    global ALLOW_REAL_REQUESTS
    ALLOW_REAL_REQUESTS = bool(allowed)


@contextlib.contextmanager
def _scoped(value: bool) -> Iterator[None]:
    # A process-wide switch (not a thread-local): sync calls made from worker threads, e.g. by
    # asyncio.to_thread or LangGraph, must see it too. Nested blocks restore the previous value.
    global ALLOW_REAL_REQUESTS
    previous = ALLOW_REAL_REQUESTS
    ALLOW_REAL_REQUESTS = value
    try:
        yield
    finally:
        ALLOW_REAL_REQUESTS = previous


def block_real_requests() -> contextlib.AbstractContextManager[None]:
    """Context manager: any un-mocked real model request raises :class:`RealRequestBlockedError`.

    Example:
        >>> from sepsis_sdk.testing import block_real_requests
        >>> with block_real_requests():
        ...     pass  # LiteLLMChat("openai/gpt-4o-mini").complete(...) would raise here
    """
    return _scoped(False)


def allow_real_requests() -> contextlib.AbstractContextManager[None]:
    """Context manager: let real requests through inside a blocked scope (e.g. a live smoke test)."""
    return _scoped(True)


def respx_active() -> bool:
    """Whether a respx router is currently mocking httpx (checked without importing respx)."""
    mocks = sys.modules.get("respx.mocks")
    if mocks is None:
        return False
    registry = getattr(getattr(mocks, "Mocker", None), "registry", {})
    return any(getattr(m, "routers", None) for m in registry.values())


def check_request(model: str, *, injected: bool, in_process: bool) -> None:
    """Raise :class:`RealRequestBlockedError` if this request would leave the process while blocked."""
    if injected or in_process or real_requests_allowed() or respx_active():
        return
    raise RealRequestBlockedError(
        f"real request to model {model!r} blocked: requests are blocked in tests "
        "(sepsis_sdk.testing.block_real_requests). Use a fake (sepsis_sdk.testing.ScriptedChatModel), "
        "mock the endpoint with respx (sepsis_sdk.testing.fake_openai_endpoint), or wrap a live test "
        "in sepsis_sdk.testing.allow_real_requests()."
    )
