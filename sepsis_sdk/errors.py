"""The one exception tree of sepsis-sdk.

::

    SepsisSDKError
    ├── UserError                  misuse: a wrong argument, an unknown name, a missing extra
    │   ├── MissingDependencyError an optional dependency is not installed (names the extra)
    │   └── InvalidActionError     an action outside the 25 valid ones
    ├── DataError                  a file or table that is not what it should be
    │   └── CohortValidationError  names the file, column and rows involved
    ├── ModelError                 a world model cannot do what was asked (bad input shape, NaN, unfitted)
    ├── LLMError                   a chat model failed at run time
    │   ├── LLMCallError           transport/provider failure after retries (status code, attempts)
    │   ├── LLMOutputError         the reply could not be parsed or validated (raw output kept)
    │   └── RealRequestBlockedError a real request was attempted while requests are blocked (tests)
    ├── JudgeError                 a judge verdict could not be obtained or validated
    ├── VideoError                 a video could not be decoded or sampled
    └── ClusterError               a Ray cluster cannot be reached, or its workers kept dying
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class SepsisSDKError(Exception):
    """Root of every error raised on purpose by sepsis-sdk.

    Attributes:
        exit_code: the exit status of a ``sepsis-sdk`` command that this error ends (class attribute).
            2 means bad input or usage, the default for every error raised on purpose; a subclass for a
            failure of the SDK itself may set 1. See the exit-code table in ``docs/cli.md``.
    """

    exit_code: int = 2


class UserError(SepsisSDKError, ValueError):
    """The library was called in a way it does not support."""


class MissingDependencyError(UserError, ImportError):
    """An optional dependency is missing; the message says which extra installs it."""

    def __init__(self, package: str, extra: str, feature: str = "") -> None:
        what = f" for {feature}" if feature else ""
        super().__init__(f"{package!r} is required{what}; install it with: pip install 'sepsis-sdk[{extra}]'")
        self.package = package
        self.extra = extra


class InvalidActionError(UserError):
    """An action that is not one of the 25 (fluid, vasopressor) levels."""


class DataError(SepsisSDKError, ValueError):
    """Input data (a file, a table, a payload) is malformed."""


class CohortValidationError(DataError):
    """A cohort table failed validation.

    Attributes:
        source: the file or table name.
        column: the offending column, if one.
        rows: up to 10 offending row numbers (0-based, in file order).
    """

    def __init__(
        self,
        problem: str,
        *,
        source: str = "<table>",
        column: str | None = None,
        rows: Sequence[int] | None = None,
    ) -> None:
        self.source = source
        self.column = column
        self.rows = list(rows)[:10] if rows is not None else []
        where = f"{source}"
        if column is not None:
            where += f", column {column!r}"
        if self.rows:
            n = len(rows) if rows is not None else 0
            more = f" (and {n - len(self.rows)} more)" if n > len(self.rows) else ""
            where += f", rows {self.rows}{more}"
        super().__init__(f"{where}: {problem}")
        self.problem = problem


class ModelError(SepsisSDKError, ValueError):
    """A world model was given input it cannot use, or is not fitted."""


class LLMError(SepsisSDKError, RuntimeError):
    """A chat model failed at run time."""


class LLMCallError(LLMError):
    """The provider call failed after retries."""

    def __init__(self, message: str, *, model: str = "", status_code: int | None = None, attempts: int = 1):
        super().__init__(f"[{model}] {message} (status={status_code}, attempts={attempts})")
        self.model = model
        self.status_code = status_code
        self.attempts = attempts


class LLMOutputError(LLMError):
    """The model's reply could not be parsed or validated; ``raw`` keeps what it said."""

    def __init__(self, message: str, *, raw: Any = None, model: str = "", attempts: int = 1):
        super().__init__(f"[{model}] {message}")
        self.raw = raw
        self.model = model
        self.attempts = attempts


class RealRequestBlockedError(LLMError):
    """A real model request was attempted while real requests are blocked (see sepsis_sdk.testing)."""


class JudgeError(SepsisSDKError, RuntimeError):
    """A judge could not produce a valid verdict."""


class VideoError(SepsisSDKError, RuntimeError):
    """A video could not be decoded or sampled."""


class ClusterError(SepsisSDKError, RuntimeError):
    """A Ray cluster could not be reached (the message names the address) or lost a task for good."""


__all__ = [
    "ClusterError",
    "CohortValidationError",
    "DataError",
    "InvalidActionError",
    "JudgeError",
    "LLMCallError",
    "LLMError",
    "LLMOutputError",
    "MissingDependencyError",
    "ModelError",
    "RealRequestBlockedError",
    "SepsisSDKError",
    "UserError",
    "VideoError",
]


# ---------------------------------------------------------------------------------------------- issue 11
# Appended (fail loudly): configuration errors raise, transient failures and deadlines may use a fallback.
#
#   LLMCallError
#   ├── LLMConfigError   the model cannot work as configured (also a UserError): raise, never fall back
#   └── LLMTimeoutError  a call ran past its total deadline (transient: a graph's fallback may act)
#   DataError
#   └── PatientSchemaError  a patient's features do not match the world model's schema


class LLMConfigError(LLMCallError, UserError):
    """A chat model cannot work as configured; raised at graph build or the first call, never a fallback.

    Examples: an unknown provider, a local model or adapter path that does not exist, rejected credentials
    (401/403), an unknown model or endpoint (404), a request the server refuses as malformed (400), or no
    server at the address on the first call (connection refused; a *timeout* is transient instead).

    Attributes:
        kind: a short label of the problem (``"auth"``, ``"not_found"``, ``"bad_request"``,
            ``"unreachable"``, ``"provider"``, ``"path"``, ``"dependency"``).
    """

    def __init__(
        self,
        message: str,
        *,
        model: str = "",
        status_code: int | None = None,
        attempts: int = 1,
        kind: str = "config",
    ):
        super().__init__(message, model=model, status_code=status_code, attempts=attempts)
        self.kind = kind


class LLMTimeoutError(LLMCallError):
    """A call (all its attempts, waits and re-asks) ran past its total deadline.

    Attributes:
        deadline_s: the deadline in seconds that was exceeded.
    """

    def __init__(self, message: str, *, model: str = "", deadline_s: float | None = None, attempts: int = 1):
        super().__init__(message, model=model, status_code=None, attempts=attempts)
        self.deadline_s = deadline_s


class PatientSchemaError(DataError):
    """A patient history does not fit the world model's feature schema (names, count or values).

    Raised by the graphs before any model call, so a mismatch never reaches the LLM or the trace only.
    """


__all__ += ["LLMConfigError", "LLMTimeoutError", "PatientSchemaError"]
