"""Which provider failures are worth retrying, and how long to wait.

Classification works on the exception's ``status_code`` attribute and class name, so it needs no import of
litellm or openai and also works for errors raised by injected fakes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

# Status codes that a later identical request can succeed on.
RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})
_TRANSIENT_NAMES = (
    "Timeout",
    "TimeoutError",
    "TimeoutException",
    "ReadTimeout",
    "ConnectTimeout",
    "APIConnectionError",
    "ConnectError",
    "ConnectionError",
    "RemoteProtocolError",
    "ServiceUnavailableError",
    "InternalServerError",
    "RateLimitError",
)
_TOO_LARGE_MARKERS = ("request too large", "payload too large", "request entity too large", "413")


def status_code_of(exc: BaseException) -> int | None:
    """The HTTP status code carried by a provider exception, if any."""
    for attr in ("status_code", "code"):
        value = getattr(exc, attr, None)
        if isinstance(value, int) and 100 <= value <= 599:
            return value
    response = getattr(exc, "response", None)
    value = getattr(response, "status_code", None)
    return value if isinstance(value, int) else None


def is_retryable(exc: BaseException) -> bool:
    """Rate limits, server errors, timeouts and connection errors are retried; 400/401/403/404/413 are not."""
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    status = status_code_of(exc)
    names = {cls.__name__ for cls in type(exc).__mro__}
    if (
        status is not None
        and status not in RETRYABLE_STATUS
        and not names & {"Timeout", "APIConnectionError"}
    ):
        return False
    if status in RETRYABLE_STATUS:
        return True
    return bool(names.intersection(_TRANSIENT_NAMES))


# Client errors that say the configuration is wrong (not this one request): raised, never a fallback.
CONFIG_STATUS = {400: "bad_request", 401: "auth", 403: "auth", 404: "not_found"}
# 400s that are about this one request (its length, its content), not the configuration.
_PER_REQUEST_NAMES = frozenset({"ContextWindowExceededError", "ContentPolicyViolationError"})
_CONNECT_NAMES = frozenset(
    {"ConnectError", "ConnectionRefusedError", "APIConnectionError", "ConnectionError"}
)
_CONNECT_TEXT = (
    "connection refused",
    "connection error",
    "name or service not known",
    "nodename nor servname",
)


def _chain(exc: BaseException, limit: int = 10) -> list[BaseException]:
    out: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(out) < limit and current not in out:
        out.append(current)
        current = current.__cause__ or current.__context__
    return out


def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def is_timeout(exc: BaseException) -> bool:
    """A timeout anywhere in the exception chain (transient: retried, then a fallback may act)."""
    return any(isinstance(e, TimeoutError) or any("Timeout" in n for n in _names(e)) for e in _chain(exc))


def is_connect_failure(exc: BaseException) -> bool:
    """No connection could be made (refused, unknown host); LiteLLM reports these as HTTP 500."""
    if is_timeout(exc):
        return False
    for e in _chain(exc):
        if _names(e) & _CONNECT_NAMES or isinstance(e, ConnectionRefusedError):
            return True
        text = str(e).lower()
        if any(marker in text for marker in _CONNECT_TEXT):
            return True
    return False


def config_kind(exc: BaseException) -> str | None:
    """Why ``exc`` is a configuration error (``"auth"``, ``"not_found"``, ``"bad_request"``,
    ``"provider"``), or ``None`` when it is not one (transient, or about this one request)."""
    status = status_code_of(exc)
    if status not in CONFIG_STATUS:
        return None
    if _names(exc) & _PER_REQUEST_NAMES:
        return None
    if status == 400 and "provider not provided" in str(exc).lower():
        return "provider"
    return CONFIG_STATUS[status]


def is_payload_too_large(exc: BaseException) -> bool:
    """HTTP 413, or a provider's "request too large" message (used by the judge to shrink images)."""
    if status_code_of(exc) == 413:
        return True
    text = str(exc).lower()
    return any(marker in text for marker in _TOO_LARGE_MARKERS[:3])


def retry_after_s(exc: BaseException) -> float | None:
    """The server's ``Retry-After`` hint in seconds, when the exception carries response headers."""
    response = getattr(exc, "response", None)
    headers: Any = getattr(response, "headers", None)
    if not headers:
        return None
    try:
        value = headers.get("retry-after") or headers.get("Retry-After")
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: wait ``uniform(0.5, 1) * min(cap, base * 2**attempt)``.

    Attributes:
        base_s: the first wait (attempt 0), before jitter.
        cap_s: the longest wait.
        jitter: whether to randomise (turn off for deterministic tests).
    """

    base_s: float = 0.5
    cap_s: float = 20.0
    jitter: bool = True

    def delay(
        self, attempt: int, exc: BaseException | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait before retry number ``attempt + 1``; honours ``Retry-After`` up to the cap."""
        wait = min(self.cap_s, self.base_s * (2**attempt))
        if self.jitter:
            wait *= (rng or random).uniform(0.5, 1.0)
        hint = retry_after_s(exc) if exc is not None else None
        if hint is not None:
            wait = max(wait, min(hint, self.cap_s))
        return wait
