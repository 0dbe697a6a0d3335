"""Grade videos across Ray workers: frame sampling and judge calls on the cluster, one writer here.

Each pending task (one video, its missing verdicts) is one Ray task: the worker samples the frames and asks
the judges, every call holding a permit of one cluster-wide :class:`~sepsis_sdk.scale.ConcurrencyLimit`
(so ``concurrency`` caps the judge's request rate however many workers run). The worker returns the task's
records; only this process appends them to the results file, through the same
:class:`~sepsis_sdk.microbench._results.ResultsWriter` and resume plan as :func:`arun_benchmark`. Hence:

- **no duplicates**: a task whose worker dies is run again by Ray, but its records reach the file once
  (they are written when the task's result arrives, never from the worker);
- **nothing lost**: a record is fsync-ed as soon as its task returns; a run killed on Ray resumes from the
  same file, on Ray or locally, and asks only for the verdicts not yet in it.

Videos are read by the workers: on a multi-node cluster put them on storage every node sees (a shared
file system or the same path on each node).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from sepsis_sdk.errors import UserError, VideoError
from sepsis_sdk.judge import Judge
from sepsis_sdk.microbench._data import Benchmark, BenchTask
from sepsis_sdk.microbench._frames import sample_frames
from sepsis_sdk.microbench._judging import ajudge_dimension, record_for
from sepsis_sdk.microbench._results import ResultsWriter, VerdictRecord, read_records
from sepsis_sdk.microbench._runner import RunReport, _Emitter, _judges_by_name, _open_run, plan


def grade_task(
    judges: Mapping[str, Judge],
    limit: Any,
    model: str,
    frame_options: Mapping[str, Any],
    work: tuple[BenchTask, Path, list[tuple[str, str]]],
) -> tuple[list[VerdictRecord], bool]:
    """One task's records (runs on a worker): sample the frames once, ask each pending (judge, dimension).

    Returns:
        ``(records, video_failed)``.
    """
    task, video, pending = work
    try:
        frames = sample_frames(video, **frame_options)
    except VideoError as exc:
        recs = [
            record_for(task, d, model=model, judge=j, video=str(video), error=str(exc), error_kind="video")
            for j, d in pending
        ]
        return recs, True

    async def one(judge: str, dim: str) -> VerdictRecord:
        token = await limit.aacquire() if limit is not None else None
        try:
            return await ajudge_dimension(judges[judge], task, dim, frames, model=model)
        finally:
            if token is not None:
                limit.release(token)

    async def every() -> list[VerdictRecord]:
        return list(await asyncio.gather(*(one(j, d) for j, d in pending)))

    return asyncio.run(every()), False


def run_benchmark_ray(
    benchmark: Benchmark,
    videos: str | Path | Mapping[int, str | Path],
    judges: Judge | Sequence[Judge],
    *,
    model: str,
    out: str | Path,
    executor: Any = None,
    concurrency: int = 4,
    limit: Any = None,
    n_frames: int = 8,
    max_side: int | None = 768,
    quality: int = 85,
    short_videos: str = "repeat",
    tasks: Iterable[int] | None = None,
    retry_errors: bool = False,
    fsync: bool = True,
    on_record: Callable[[VerdictRecord], None] | None = None,
    on_plan: Callable[[int], None] | None = None,
    max_consecutive_failures: int | None = 12,
    frame_workers: int | None = None,
    **frame_options: Any,
) -> RunReport:
    """:func:`~sepsis_sdk.microbench.run_benchmark` with the tasks spread over a Ray cluster.

    Same results file, same records, same resume rules; the arguments not listed here mean what they mean
    there.

    Args:
        executor: a :class:`sepsis_sdk.scale.RayExecutor` (default: one made here, joining ``$RAY_ADDRESS``
            or starting a local Ray, and closed at the end). Its ``max_in_flight`` bounds the tasks (videos)
            in flight.
        concurrency: judge calls in flight at most, over the whole cluster.
        limit: a :class:`sepsis_sdk.scale.ConcurrencyLimit` to use instead (e.g. a named one shared with
            other runs against the same endpoint); ``concurrency`` is then ignored.
        short_videos: as for :func:`~sepsis_sdk.microbench.run_benchmark` (``sample_frames``' ``short``).
        frame_workers: accepted for the same call to work locally and on Ray; each worker decodes its
            own video, so the cluster's task count bounds decoding instead.
        **frame_options: more :func:`~sepsis_sdk.microbench.sample_frames` options (``seek_gap``, ...).

    Returns:
        The :class:`~sepsis_sdk.microbench.RunReport`.

    Raises:
        UserError: no judge, duplicate judge names, ``concurrency`` < 1; or what a judge raised as misuse.
        JudgeError: a judge failed ``max_consecutive_failures`` calls in a row (the tasks still running are
            cancelled; what was written stays).
    """
    from sepsis_sdk.scale import ConcurrencyLimit, RayExecutor

    t0 = time.perf_counter()
    by_name = _judges_by_name(judges)
    if concurrency < 1:
        raise UserError("concurrency must be >= 1")
    video_map, report = _open_run(benchmark, videos, out)
    out_path = report.results
    ex = executor if executor is not None else RayExecutor()
    ex.connect()
    own_limit = limit is None
    lim = limit if limit is not None else ConcurrencyLimit(concurrency)
    writer = ResultsWriter(out_path, fsync=fsync)  # cuts a torn tail before we read what is done
    report.cut_bytes = writer.cut_bytes
    try:
        work, report.skipped = plan(
            benchmark, video_map, list(by_name), model=model, done=read_records(out_path),
            retry_errors=retry_errors, tasks=tasks,
        )  # fmt: skip
        if on_plan is not None:
            on_plan(sum(len(p) for _, _, p in work))
        emit = _Emitter(writer, report, list(by_name), on_record, max_consecutive_failures, out_path)
        frames = {
            "n": n_frames,
            "max_side": max_side,
            "quality": quality,
            "short": short_videos,
            **frame_options,
        }
        job = partial(grade_task, by_name, lim, model, frames)
        results = ex.map_unordered(job, work)
        try:
            for _, (recs, video_failed) in results:
                report.video_errors += int(video_failed)
                for rec in recs:
                    emit(rec)
        finally:
            results.close()  # a stop (JudgeError) cancels the tasks still running
    finally:
        writer.close()
        if own_limit:
            lim.kill()
        if executor is None:
            ex.close()
        report.elapsed_s = time.perf_counter() - t0
    return report


__all__ = ["grade_task", "run_benchmark_ray"]
