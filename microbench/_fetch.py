"""Fetch the MicroWorldBench files from the pinned upstream commit once, verify them, cache them.

The SDK does not ship the upstream data (its folder carries no licence of its own); it downloads the three
files from the public MicroVerse repository at a fixed commit and refuses any whose sha256 differs.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

from sepsis_sdk.errors import DataError

UPSTREAM_REPO = "FreedomIntelligence/MicroVerse"
UPSTREAM_COMMIT = "d4eb6079b41ee083d46de27bcbd1f361b1638a4b"
UPSTREAM_URL = "https://raw.githubusercontent.com/{repo}/{commit}/eval/{name}"

SHA256: dict[str, str] = {
    "MWBenchRubrics.json": "24615604ee3f5522f9b3f130c040c74a38fc0331d37652bb731e7c620853d9ae",
    "MWBenchRubrics_norm.json": "a70c0b1755ce6d9ac3a0dd574a0d9a2da894757250f311b95c72e903bfdfb591",
    "finaltasks.json": "0d5cd540b70f72b795dbd2b7c6ebeb7e47cd19d6a6deb532eecffdba50dc961c",
}
"""sha256 of each upstream file at :data:`UPSTREAM_COMMIT`."""


def default_cache_dir() -> Path:
    """``$SEPSIS_SDK_CACHE/microworldbench/<commit>`` (default ``~/.cache/sepsis-sdk/...``)."""
    root = os.environ.get("SEPSIS_SDK_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "sepsis-sdk"
    )
    return Path(root) / "microworldbench" / UPSTREAM_COMMIT[:12]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_upstream(
    cache_dir: str | Path | None = None,
    *,
    transport: Any = None,
    files: dict[str, str] | None = None,
    timeout_s: float = 60.0,
    attempts: int = 3,
) -> Path:
    """Make sure the upstream files are in ``cache_dir`` with the right checksums; return the folder.

    Files already cached with the right checksum are not downloaded again. A download is written to a
    temporary file and moved into place only after its checksum matches, so a killed fetch never leaves a
    half file that looks valid.

    Args:
        cache_dir: where to keep the files (default :func:`default_cache_dir`).
        transport: an ``httpx`` transport (tests pass ``httpx.MockTransport``; no network in tests).
        files: name -> sha256 to fetch (default :data:`SHA256`).
        timeout_s: per-request timeout.
        attempts: tries per file on network errors and 5xx answers.

    Raises:
        DataError: a file could not be downloaded or its checksum differs (both checksums named).
    """
    import httpx

    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    wanted = files if files is not None else SHA256
    missing = [n for n, h in wanted.items() if not ((folder / n).is_file() and sha256_file(folder / n) == h)]
    if not missing:
        return folder
    with httpx.Client(transport=transport, timeout=timeout_s, follow_redirects=True) as client:
        for name in missing:
            url = UPSTREAM_URL.format(repo=UPSTREAM_REPO, commit=UPSTREAM_COMMIT, name=name)
            body = _download(client, url, attempts=attempts)
            got = hashlib.sha256(body).hexdigest()
            if got != wanted[name]:
                raise DataError(
                    f"{url}: sha256 {got} does not match the pinned {wanted[name]}; refusing the file"
                )
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(body)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, folder / name)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
    return folder


def _download(client: Any, url: str, *, attempts: int) -> bytes:
    import httpx

    last = ""
    for _ in range(max(1, attempts)):
        try:
            r = client.get(url)
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
            continue
        if r.status_code == 200:
            return r.content
        last = f"HTTP {r.status_code}"
        if r.status_code < 500:
            break
    raise DataError(f"{url}: download failed ({last})")
