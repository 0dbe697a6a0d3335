"""Verdict records and the append-only JSONL results file.

One line per (video set, judge, task, dimension) verdict. Each line carries what scoring needs (signs,
weights, category), so a report can be made from result files alone.

Crash safety: a line is written with one ``write`` on a file opened ``O_APPEND`` and then ``fsync``-ed,
so a killed run loses at most the line being written. A torn last line (no newline) is cut off when the
file is next opened for appending, and its verdict is redone; complete lines are never rewritten.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sepsis_sdk.errors import DataError

SCHEMA = "sepsis-sdk/microbench-verdict/1"

ErrorKind = Literal["video", "judge", "verdict"]


class VerdictRecord(BaseModel):
    """One judged (video set, judge, task, dimension), as stored in the results file.

    Attributes:
        model: name of the video set (the text-to-video model that made the videos).
        judge: name of the judge.
        task: task index.
        dimension: ``scientific`` / ``visual`` / ``instruction``.
        category: the task's category.
        video: the video file graded.
        criterion_ids: criterion ids in rubric order.
        signs: +1 / -1 per criterion.
        weights: weight per criterion.
        scores: 0 / 1 per criterion, ``None`` where unscored.
        reasoning: the judge's reasoning.
        error: why the verdict is missing or partial (``None`` when complete).
        error_kind: ``"video"`` (decoding failed), ``"judge"`` (the call failed) or ``"verdict"``
            (the judge answered something that does not fit the rubric).
        usage: tokens, cost and latency the judge reported.
        n_frames: frames shown to the judge.
        frame_indices: which frames of the video were shown (0-based; repeats possible).
        repeated_frames: the video had fewer frames than were shown, so some were shown twice or more
            (the reference evaluator's behaviour on short videos).
        criterion_keys: the upstream number of each criterion (``"3"`` for ``d3``, ``"33"`` for ``d33``),
            which the reference scorer looks scores up by; empty in files written before it was recorded.
        blind: the verdict was made against an empty checklist: the reference evaluator lists only
            criteria ``d1..d9``, so for the rubrics numbered ``d11..d55`` its judge saw no criteria at all
            (set by :func:`~sepsis_sdk.microbench.import_upstream_results`).
        reference_scores: the judge's score list exactly as the reference scorer reads it (any length,
            any values), kept for ``scoring="reference"``; ``None`` when the verdict did not come from the
            reference evaluator.
        created: UTC time the line was written.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_: str = Field(default=SCHEMA, alias="schema")
    model: str
    judge: str
    task: int = Field(ge=1)
    dimension: Literal["scientific", "visual", "instruction"]
    category: str | None = None
    video: str = ""
    criterion_ids: tuple[str, ...]
    signs: tuple[Literal[1, -1], ...]
    weights: tuple[float, ...]
    scores: tuple[Literal[0, 1] | None, ...]
    reasoning: str = ""
    error: str | None = None
    error_kind: ErrorKind | None = None
    usage: dict[str, Any] = Field(default_factory=dict)
    n_frames: int = 0
    frame_indices: tuple[int, ...] = ()
    repeated_frames: bool = False
    criterion_keys: tuple[str, ...] = ()
    blind: bool = False
    reference_scores: tuple[Any, ...] | None = None
    created: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    @model_validator(mode="after")
    def _lengths(self) -> VerdictRecord:
        n = len(self.criterion_ids)
        if not (len(self.signs) == len(self.weights) == len(self.scores) == n) or n == 0:
            raise ValueError("criterion_ids, signs, weights and scores must have the same non-zero length")
        if self.error_kind is not None and self.error is None:
            raise ValueError("error_kind set without an error message")
        if self.criterion_keys and len(self.criterion_keys) != n:
            raise ValueError("criterion_keys must have one key per criterion")
        return self

    @property
    def key(self) -> tuple[str, str, int, str]:
        """Identity of the verdict: (model, judge, task, dimension)."""
        return (self.model, self.judge, self.task, self.dimension)

    @property
    def complete(self) -> bool:
        return self.error is None and all(s is not None for s in self.scores)

    def to_line(self) -> str:
        return (
            json.dumps(self.model_dump(mode="json", by_alias=True), ensure_ascii=False, separators=(",", ":"))
            + "\n"
        )


def read_records(path: str | Path, *, dedupe: bool = True) -> list[VerdictRecord]:
    """Records of a results file, in file order.

    A torn last line (a run killed mid-write) is skipped. With ``dedupe`` the last record per key wins
    (a retried verdict replaces the failed one).

    Raises:
        DataError: a complete line that is not a valid record (names the file and the line number).
    """
    p = Path(path)
    if not p.exists():
        return []
    data = p.read_bytes()
    lines = data.split(b"\n")
    torn = lines[-1] != b""
    body = lines[:-1]
    out: list[VerdictRecord] = []
    for n, raw in enumerate(body, start=1):
        if not raw.strip():
            continue
        try:
            out.append(VerdictRecord.model_validate_json(raw))
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(x) for x in first.get("loc", ())) or "<line>"
            raise DataError(f"{p}, line {n}: not a verdict record ({loc}: {first.get('msg')})") from None
    del torn  # a torn tail is ignored here and cut off by ResultsWriter
    if not dedupe:
        return out
    last: dict[tuple[str, str, int, str], VerdictRecord] = {}
    for r in out:
        last.pop(r.key, None)
        last[r.key] = r
    return list(last.values())


def read_many(paths: Iterable[str | Path]) -> list[VerdictRecord]:
    """Records of several files (deduplicated per key, later files winning)."""
    last: dict[tuple[str, str, int, str], VerdictRecord] = {}
    for p in paths:
        for r in read_records(p):
            last.pop(r.key, None)
            last[r.key] = r
    return list(last.values())


class ResultsWriter:
    """Appends records to a JSONL file: one ``write`` + ``fsync`` per line.

    Opening cuts off a torn last line left by a killed run (its verdict is then redone).
    """

    def __init__(self, path: str | Path, *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        self.cut_bytes = _cut_torn_tail(self.path)
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.written = 0

    def append(self, record: VerdictRecord) -> None:
        if self._fd is None:
            raise ValueError(f"{self.path}: writer is closed")
        data = record.to_line().encode("utf-8")
        view = memoryview(data)
        while view:  # os.write may write less than asked on some file systems
            n = os.write(self._fd, view)
            view = view[n:]
        if self._fsync:
            os.fsync(self._fd)
        self.written += 1

    def extend(self, records: Sequence[VerdictRecord]) -> None:
        for r in records:
            self.append(r)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _cut_torn_tail(path: Path) -> int:
    if not path.exists():
        return 0
    size = path.stat().st_size
    if size == 0:
        return 0
    with path.open("rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return 0
        # find the last newline; everything after it is a torn line
        pos = size
        chunk = 1 << 16
        keep = 0
        while pos > 0:
            start = max(0, pos - chunk)
            f.seek(start)
            buf = f.read(pos - start)
            k = buf.rfind(b"\n")
            if k >= 0:
                keep = start + k + 1
                break
            pos = start
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
        return size - keep
