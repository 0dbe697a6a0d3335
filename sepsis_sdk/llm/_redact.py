"""Secret redaction: the one helper every error, trace and log line of the SDK passes through.

A server that echoes the request's API key in its error text (seen: a 401 body quoting the key) must not
put the key into an exception message, a trace, a log or a written file. Known secrets are:

* every ``api_key`` given to a :class:`~sepsis_sdk.llm.LiteLLMChat` (registered when it is built);
* anything registered with :func:`register_secret`;
* the values of environment variables whose names look secret (``*_API_KEY``, ``*_TOKEN``,
  ``*_SECRET``, ``*_PASSWORD``), read at redaction time so a key exported later is covered too.

Each occurrence is replaced by ``[REDACTED]`` (a value shorter than 6 characters is not a credential
worth the false positives and is left alone).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable
from typing import Any

REDACTED = "[REDACTED]"
_MIN_LEN = 6
_SECRET_ENV = re.compile(r"(API_?KEY|TOKEN|SECRET|PASSWORD)$", re.IGNORECASE)
_LOCK = threading.Lock()
_REGISTERED: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember ``value`` as a secret to redact from everything the SDK writes (process-wide)."""
    if isinstance(value, str) and len(value) >= _MIN_LEN:
        with _LOCK:
            _REGISTERED.add(value)


def known_secrets(extra: Iterable[str | None] = ()) -> list[str]:
    """Registered secrets, secret-looking environment variables and ``extra``, longest first."""
    found = {v for v in extra if isinstance(v, str) and len(v) >= _MIN_LEN}
    with _LOCK:
        found |= _REGISTERED
    for name, value in os.environ.items():
        if value and len(value) >= _MIN_LEN and _SECRET_ENV.search(name):
            found.add(value)
    # longest first: a key that contains another is replaced whole
    return sorted(found, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every known secret (and each of ``secrets``) replaced by ``[REDACTED]``.

    Example:
        >>> register_secret("sk-test-0123456789")
        >>> redact("401: Incorrect API key provided: sk-test-0123456789")
        '401: Incorrect API key provided: [REDACTED]'
    """
    if not isinstance(text, str) or not text:
        return text
    for secret in known_secrets(secrets):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact_obj(value: Any, secrets: Iterable[str | None] = ()) -> Any:
    """A copy of a JSON-like value (dicts, lists, strings) with secrets redacted from every string."""
    found = known_secrets(secrets)
    if not found:
        return value

    def walk(x: Any) -> Any:
        if isinstance(x, str):
            for s in found:
                if s in x:
                    x = x.replace(s, REDACTED)
            return x
        if isinstance(x, dict):
            return {walk(k) if isinstance(k, str) else k: walk(v) for k, v in x.items()}
        if isinstance(x, list):
            return [walk(v) for v in x]
        if isinstance(x, tuple):
            return tuple(walk(v) for v in x)
        return x

    return walk(value)


def contains_secret(text: str, secrets: Iterable[str | None] = ()) -> bool:
    """Whether ``text`` holds a known secret (used to drop an exception chain that would print it)."""
    return isinstance(text, str) and any(s in text for s in known_secrets(secrets))


class RedactingFilter:
    """A :mod:`logging` filter that redacts known secrets from each record's message.

    Installed on the ``sepsis_sdk`` and ``LiteLLM`` loggers by :func:`install_log_redaction`.
    """

    def filter(self, record: Any) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to logging's own error handling
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_INSTALLED = False


def install_log_redaction() -> None:
    """Add :class:`RedactingFilter` to the SDK's and LiteLLM's loggers (idempotent)."""
    global _INSTALLED
    if _INSTALLED:
        return
    import logging

    for name in (
        "sepsis_sdk",
        "LiteLLM",
        "LiteLLM Router",
        "LiteLLM Proxy",
        "litellm",
        "instructor",
        "instructor.v2.retry",
        "instructor.core.retry",
        "httpx",
        "openai",
    ):
        logging.getLogger(name).addFilter(RedactingFilter())
    _INSTALLED = True
