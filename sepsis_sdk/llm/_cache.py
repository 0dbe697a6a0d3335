"""An on-disk reply cache: one JSON file per request, for reproducible evaluations.

The key is the SHA-256 of the canonical JSON of everything that determines the reply (model, messages,
tools, tool choice, response format and sampling parameters); secrets and transport settings (API key,
timeout, retries, base URL headers) are left out so a key does not change with them. Writes go to a
temporary file in the same folder and are renamed into place, so a crash or a concurrent writer never
leaves a half-written entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

# Request fields that do not change the reply (or must never be written to disk).
_IGNORED_KEYS = frozenset(
    {
        "api_key",
        "timeout",
        "request_timeout",
        "max_retries",
        "num_retries",
        "headers",
        "extra_headers",
        "metadata",
        "client",
        "stream_options",
        "logger_fn",
    }
)
CACHE_VERSION = 1


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, bytes):
        return {"__bytes_sha256__": hashlib.sha256(value).hexdigest()}
    if hasattr(value, "model_dump"):
        return _canonical(value.model_dump())
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def request_key(request: dict[str, Any]) -> str:
    """The cache key of a LiteLLM request (a dict of ``completion`` keyword arguments)."""
    payload = {k: v for k, v in request.items() if k not in _IGNORED_KEYS}
    payload["__cache_version__"] = CACHE_VERSION
    text = json.dumps(_canonical(payload), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ReplyCache:
    """JSON files under ``directory``, two-level fan-out by key prefix.

    Args:
        directory: where entries live (created on first write).
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory).expanduser()
        self.hits = 0
        self.misses = 0

    def path_for(self, key: str) -> Path:
        """The file that holds ``key``."""
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored entry, or ``None`` (a missing or unreadable entry counts as a miss)."""
        path = self.path_for(key)
        try:
            with path.open(encoding="utf-8") as fh:
                entry = json.load(fh)
        except (OSError, ValueError):
            self.misses += 1
            return None
        self.hits += 1
        return entry

    def put(self, key: str, entry: dict[str, Any]) -> Path:
        """Store ``entry`` atomically (write to a temp file, then rename)."""
        path = self.path_for(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(entry, fh, ensure_ascii=False, default=str)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return path

    def __len__(self) -> int:
        if not self.directory.exists():
            return 0
        return sum(1 for _ in self.directory.glob("*/*.json"))
