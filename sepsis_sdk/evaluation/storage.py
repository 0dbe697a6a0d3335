"""The run directory: atomic writes, strict JSON, the manifest, and resume.

Layout of ``out_dir``: ``manifest.json`` (config fingerprint and each policy's status),
``policies/<name>.json`` (one finished policy's result, written atomically), ``work/<name>/chunk_*.npy``
(action probabilities of finished patient chunks of history-dependent policies). After a crash, finished
policies are loaded instead of recomputed and finished chunks are reused.

Damaged files (every file is written atomically, so only an outside hand or a broken disk damages one):

- a ``manifest.json`` that is not valid JSON or not a manifest stops the run with a :class:`DataError`
  naming it: without it, the finished results cannot be matched to a config, and guessing could mix two
  runs. Nothing is deleted; ``--fresh`` (``fresh=True``) starts over, or use another ``out_dir``.
- a ``policies/<name>.json`` that cannot be read is moved aside to ``<name>.json.corrupt`` and that one
  policy is computed again (same config, same numbers); the manifest records the note.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sepsis_sdk.errors import DataError, UserError
from sepsis_sdk.evaluation.results import PolicyResult, ResultLoader


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a crash never leaves a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def atomic_save_npy(path: Path, arr: np.ndarray) -> None:
    """``np.save`` through a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npy")
    np.save(tmp, arr)
    os.replace(tmp, path)


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return _clean(o.tolist())
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return str(o)


def _clean(o: Any) -> Any:
    """Replace NaN/inf by None recursively (strict JSON)."""
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, (float, np.floating)):
        return float(o) if math.isfinite(o) else None
    if isinstance(o, np.integer):
        return int(o)
    return o


def dumps(obj: Any) -> str:
    """Strict, indented JSON (NaN and infinities become null; numpy values become Python ones)."""
    return json.dumps(_clean(obj), indent=2, default=_json_default, allow_nan=False)


def safe_name(name: str) -> str:
    """A file-name-safe form of a policy name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "policy"


class Manifest:
    """``manifest.json``: the config fingerprint and the status of each policy."""

    def __init__(self, out_dir: Path, fingerprint: str) -> None:
        self.path = out_dir / "manifest.json"
        self.fingerprint = fingerprint
        self.data: dict[str, Any] = {"fingerprint": fingerprint, "policies": {}, "created": time.time()}
        if self.path.exists():
            old = self._read()
            if old.get("fingerprint") != fingerprint:
                raise UserError(
                    f"{self.path}: this directory holds a run with a different config (or the content of an "
                    "input file such as the cohort changed); use another out_dir or fresh=True (--fresh) to "
                    "start over"
                )
            self.data = old

    def _read(self) -> dict[str, Any]:
        """The manifest on disk, checked: a damaged one raises DataError (never a silent fresh start)."""
        how = (
            "its finished results cannot be matched to a config, so nothing was reused or deleted; rerun "
            "with --fresh (fresh=True) to start over, or use another out_dir"
        )
        try:
            old = json.loads(self.path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
            raise DataError(f"{self.path}: the run's manifest is not valid JSON ({exc}); {how}") from None
        if (
            not isinstance(old, dict)
            or not isinstance(old.get("fingerprint"), str)
            or not isinstance(old.get("policies"), dict)
            or not all(isinstance(v, dict) for v in old["policies"].values())
        ):
            raise DataError(
                f"{self.path}: not a run manifest (needs a 'fingerprint' string and a 'policies' mapping); {how}"
            )
        return old

    def done(self, name: str) -> bool:
        return self.data["policies"].get(name, {}).get("status") == "done"

    def mark(self, name: str, status: str, **extra: Any) -> None:
        """Record ``name``'s status (its notes are kept across status changes)."""
        notes = self.data["policies"].get(name, {}).get("notes")
        entry: dict[str, Any] = {"status": status, "time": time.time(), **extra}
        if notes:
            entry["notes"] = list(notes)
        self.data["policies"][name] = entry
        atomic_write_text(self.path, dumps(self.data))

    def note(self, name: str, text: str) -> None:
        """Append a note to ``name``'s entry (e.g. why its result was computed again)."""
        entry = self.data["policies"].setdefault(name, {"status": "pending", "time": time.time()})
        entry.setdefault("notes", []).append(text)
        atomic_write_text(self.path, dumps(self.data))


class RunStore:
    """One run directory: where each policy's result and work files live, and what is already done.

    Args:
        out_dir: the directory (created).
        fingerprint: the run's config fingerprint; a directory holding another run is refused.
        fresh: delete a previous run's manifest, results and work files first.
    """

    def __init__(self, out_dir: str | Path, fingerprint: str, *, fresh: bool = False) -> None:
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        if fresh:
            self.clear()
        self.manifest = Manifest(self.out, fingerprint)

    def clear(self) -> None:
        """Remove the manifest, the per-policy results and the work files (not the report files)."""
        for sub in ("manifest.json", "policies", "work"):
            p = self.out / sub
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()

    def result_file(self, name: str) -> Path:
        return self.out / "policies" / f"{safe_name(name)}.json"

    def work_dir(self, name: str) -> Path:
        """Where ``name``'s per-chunk probabilities are kept between attempts."""
        return self.out / "work" / safe_name(name)

    def load(self, name: str, scorers: Sequence[ResultLoader]) -> PolicyResult | None:
        """The finished result of ``name`` (typed again by ``scorers``), or None if not done."""
        f = self.result_file(name)
        if not (self.manifest.done(name) and f.exists()):
            return None
        try:
            return PolicyResult.from_dict(json.loads(f.read_text(encoding="utf-8")), scorers)
        except (ValueError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as exc:
            # The result is computed again from the same config; the damaged file is kept for a look.
            aside = f.with_name(f.name + ".corrupt")
            os.replace(f, aside)
            note = (
                f"{f.name} could not be read ({type(exc).__name__}: {exc}); moved to {aside.name}, recomputed"
            )
            self.manifest.mark(name, "redo")
            self.manifest.note(name, note)
            return None

    def start(self, name: str) -> None:
        self.manifest.mark(name, "running")

    def save(self, result: PolicyResult) -> None:
        """Write the result atomically, then mark it done (a crash in between only redoes this policy)."""
        f = self.result_file(result.name)
        atomic_write_text(f, dumps(result.to_dict()))
        self.manifest.mark(result.name, "done", file=str(f.relative_to(self.out)))


__all__ = ["Manifest", "RunStore", "atomic_save_npy", "atomic_write_text", "dumps", "safe_name"]
