"""Grade a folder of videos with one or more judges: bounded async concurrency, resumable JSONL output.

Each task's frames are sampled once (in a worker thread) and shown to every judge, one call per dimension.
Every verdict is appended to the results file as soon as it is known (one line, fsync-ed), so a killed run
resumes where it stopped: verdicts already in the file are skipped, none is asked for twice, none is lost.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sepsis_sdk.errors import JudgeError, UserError, VideoError
from sepsis_sdk.judge import Judge
from sepsis_sdk.microbench._data import DIMENSIONS, Benchmark, BenchTask
from sepsis_sdk.microbench._frames import find_videos, sample_frames
from sepsis_sdk.microbench._judging import ajudge_dimension, judge_name, record_for
from sepsis_sdk.microbench._results import ResultsWriter, VerdictRecord, read_records


@dataclass
class RunReport:
    """What a run did.

    Attributes:
        results: the results file.
        written: records appended by this run.
        skipped: verdicts already in the file (not asked again).
        missing_videos: benchmark tasks with no video in the folder (left out; they lower coverage).
        unknown_videos: video files whose index is not a benchmark task (ignored).
        video_errors: tasks whose video could not be sampled (recorded, unscored).
        judge_errors: records with a failed or unusable verdict (error kind ``"judge"`` or ``"verdict"``).
        verdict_errors: of those, records whose judge answered something that does not fit the rubric
            (``"verdict"``: wrong list length, a score outside 0/1, no JSON); the rest are failed calls.
        cut_bytes: bytes of a torn last line removed from a previous killed run.
        elapsed_s: wall time.
    """

    results: Path
    written: int = 0
    skipped: int = 0
    missing_videos: list[int] = field(default_factory=list)
    unknown_videos: list[int] = field(default_factory=list)
    video_errors: int = 0
    judge_errors: int = 0
    verdict_errors: int = 0
    cut_bytes: int = 0
    elapsed_s: float = 0.0


def plan(
    benchmark: Benchmark,
    videos: Mapping[int, Path],
    judges: Sequence[str],
    *,
    model: str,
    done: Iterable[VerdictRecord] = (),
    retry_errors: bool = False,
    tasks: Iterable[int] | None = None,
) -> tuple[list[tuple[BenchTask, Path, list[tuple[str, str]]]], int]:
    """Pending work: for each task with a video, the (judge, dimension) verdicts not yet in ``done``.

    Returns:
        ``(work, skipped)`` where ``work`` lists ``(task, video, [(judge, dimension), ...])``.
    """
    finished = {r.key for r in done if r.model == model and not (retry_errors and r.error is not None)}
    wanted = set(tasks) if tasks is not None else None
    work = []
    skipped = 0
    for t in benchmark:
        if t.index not in videos or (wanted is not None and t.index not in wanted):
            continue
        pending = []
        for j in judges:
            for d in DIMENSIONS:
                if (model, j, t.index, d) in finished:
                    skipped += 1
                else:
                    pending.append((j, d))
        if pending:
            work.append((t, videos[t.index], pending))
    return work, skipped


def _open_run(benchmark: Any, videos: Any, out: Any) -> tuple[dict[int, Path], RunReport]:
    """The run's videos (a folder or an index -> path mapping) and its report with the coverage filled in."""
    video_map = (
        find_videos(videos)
        if isinstance(videos, (str, Path))
        else {int(k): Path(v) for k, v in videos.items()}
    )
    report = RunReport(results=Path(out))
    report.missing_videos = [t.index for t in benchmark if t.index not in video_map]
    report.unknown_videos = sorted(i for i in video_map if i not in benchmark)
    return video_map, report


def _judges_by_name(judges: Judge | Sequence[Judge]) -> dict[str, Judge]:
    """The judges keyed by their record names (which must differ)."""
    judge_list = [judges] if isinstance(judges, Judge) else list(judges)
    if not judge_list:
        raise UserError("give at least one judge")
    names = [judge_name(j) for j in judge_list]
    if len(set(names)) != len(names):
        raise UserError(f"judge names must differ (records are keyed by them): {names}")
    return dict(zip(names, judge_list, strict=True))


class _Emitter:
    """Writes each record, counts it, and stops the run when one judge keeps failing."""

    def __init__(
        self, writer: Any, report: RunReport, names: Sequence[str], on_record: Callable[[VerdictRecord], None] | None,
        max_failures: int | None, out_path: Path,
    ) -> None:  # fmt: skip
        self.writer, self.report, self.on_record = writer, report, on_record
        self.max_failures, self.out_path = max_failures, out_path
        self.streak: dict[str, int] = dict.fromkeys(names, 0)

    def __call__(self, rec: VerdictRecord) -> None:
        self.writer.append(rec)
        self.report.written += 1
        if rec.error_kind in ("judge", "verdict"):
            self.report.judge_errors += 1
        if rec.error_kind == "verdict":
            self.report.verdict_errors += 1
        if self.on_record is not None:
            self.on_record(rec)
        if rec.error_kind == "judge":
            self.streak[rec.judge] += 1
            if self.max_failures is not None and self.streak[rec.judge] >= self.max_failures:
                raise JudgeError(
                    f"judge {rec.judge!r} failed {self.streak[rec.judge]} calls in a row; stopping "
                    f"(last: {rec.error}). Results so far are in {self.out_path}; rerun with retry_errors "
                    "(--retry-errors) once the judge works."
                )
        elif rec.error_kind in (None, "verdict"):
            # a bad answer still shows the judge is up: only failed calls make a dead judge
            self.streak[rec.judge] = 0


def _frame_options(max_side: int | None, quality: int, short_videos: str) -> dict[str, Any]:
    """The sampler's options, checked before any video is opened."""
    if not 1 <= int(quality) <= 100 or (max_side is not None and max_side < 1):
        raise UserError(
            f"frames: quality must be in 1..100 and max_side >= 1 or None, got {quality}, {max_side}"
        )
    if short_videos not in ("repeat", "reject"):
        raise UserError(f"short_videos must be 'repeat' or 'reject', got {short_videos!r}")
    return {"max_side": max_side, "quality": int(quality), "short": short_videos}


async def arun_benchmark(
    benchmark: Benchmark,
    videos: str | Path | Mapping[int, str | Path],
    judges: Judge | Sequence[Judge],
    *,
    model: str,
    out: str | Path,
    concurrency: int = 4,
    n_frames: int = 8,
    max_side: int | None = 768,
    quality: int = 85,
    short_videos: str = "repeat",
    tasks: Iterable[int] | None = None,
    retry_errors: bool = False,
    frame_workers: int = 2,
    fsync: bool = True,
    on_record: Callable[[VerdictRecord], None] | None = None,
    on_plan: Callable[[int], None] | None = None,
    max_consecutive_failures: int | None = 12,
) -> RunReport:
    """Grade videos against the benchmark and append one record per verdict to ``out``.

    Args:
        benchmark: the loaded tasks.
        videos: a folder of videos named by task index (``12.mp4``), or a mapping index -> file.
        judges: one judge or several (each grades the same sampled frames).
        model: name of the video set (the text-to-video model), stored in every record.
        out: the JSONL results file (created, or resumed when it exists).
        concurrency: judge calls in flight at most (and tasks in flight at most).
        n_frames: frames sampled per video (8 in the published protocol).
        max_side: longest side of the frames sent to the judge (``None``: full resolution). The
            reference evaluator sends full resolution at quality 100 (``FRAME_PRESETS["reference"]``);
            the default 768 px at q85 sends about 8x fewer bytes.
        quality: JPEG quality of the frames (1-100).
        short_videos: a video with fewer than ``n_frames`` frames: ``"repeat"`` (default, as the
            reference) shows some frames more than once and marks the records ``repeated_frames``;
            ``"reject"`` records a video error instead.
        tasks: grade only these task indices.
        retry_errors: ask again for verdicts recorded with an error (the new record supersedes the old).
        frame_workers: videos decoded at the same time (CPU-bound; run in threads).
        fsync: fsync after every line (leave on; tests of speed may turn it off).
        on_record: called with each record as it is written (progress bars).
        on_plan: called once with the number of verdicts to ask for.
        max_consecutive_failures: stop the run with :class:`~sepsis_sdk.errors.JudgeError` when one judge
            fails this many calls in a row (a wrong API key or a dead server would otherwise fill the file
            with failures); what was written stays, and ``--retry-errors`` asks again. ``None``: never stop.

    Returns:
        A :class:`RunReport`.

    Raises:
        UserError: no judge, duplicate judge names, or ``concurrency`` < 1.
        JudgeError: a judge failed ``max_consecutive_failures`` calls in a row.
    """
    t0 = time.perf_counter()
    by_name = _judges_by_name(judges)
    names = list(by_name)
    if concurrency < 1 or frame_workers < 1:
        raise UserError("concurrency and frame_workers must be >= 1")
    frame_options = _frame_options(max_side, quality, short_videos)
    video_map, report = _open_run(benchmark, videos, out)
    out_path = report.results

    writer = ResultsWriter(out_path, fsync=fsync)  # cuts a torn tail before we read what is done
    report.cut_bytes = writer.cut_bytes
    try:
        work, report.skipped = plan(
            benchmark,
            video_map,
            names,
            model=model,
            done=read_records(out_path),
            retry_errors=retry_errors,
            tasks=tasks,
        )
        if on_plan is not None:
            on_plan(sum(len(p) for _, _, p in work))
        calls = asyncio.Semaphore(concurrency)
        decode = asyncio.Semaphore(frame_workers)
        queue: asyncio.Queue[tuple[BenchTask, Path, list[tuple[str, str]]]] = asyncio.Queue()
        for item in work:
            queue.put_nowait(item)

        emit = _Emitter(writer, report, names, on_record, max_consecutive_failures, out_path)

        async def one_call(task: BenchTask, judge: str, dim: str, frames: object) -> None:
            async with calls:
                rec = await ajudge_dimension(by_name[judge], task, dim, frames, model=model)  # type: ignore[arg-type]
            emit(rec)

        async def worker() -> None:
            while True:
                try:
                    task, video, pending = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                try:
                    async with decode:
                        frames = await asyncio.to_thread(sample_frames, video, n_frames, **frame_options)
                except VideoError as exc:
                    report.video_errors += 1
                    for judge, dim in pending:
                        emit(record_for(task, dim, model=model, judge=judge, video=str(video), error=str(exc),
                                        error_kind="video"))  # fmt: skip
                    continue
                await asyncio.gather(*(one_call(task, j, d, frames) for j, d in pending))

        await asyncio.gather(*(worker() for _ in range(min(concurrency, max(1, len(work))))))
    finally:
        writer.close()
        report.elapsed_s = time.perf_counter() - t0
    return report


def run_benchmark(*args: object, executor: Any = None, **kwargs: object) -> RunReport:
    """Synchronous :func:`arun_benchmark` (not from inside a running event loop).

    ``executor="ray"`` (or a :class:`sepsis_sdk.scale.RayExecutor`) spreads the videos over a Ray cluster
    with one global judge limit (``concurrency``): same results file, same records, same resume rules
    (:func:`sepsis_sdk.microbench.run_benchmark_ray`, ``docs/scale.md``).
    """
    if executor is not None:
        from sepsis_sdk.microbench._distributed import run_benchmark_ray

        return run_benchmark_ray(*args, executor=None if executor == "ray" else executor, **kwargs)  # type: ignore[arg-type]
    return asyncio.run(arun_benchmark(*args, **kwargs))  # type: ignore[arg-type]
