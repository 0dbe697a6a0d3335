"""Issue 14: MicroWorldBench grading across Ray workers, one resumable JSONL, one global judge limit."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("av")

from sepsis_sdk.microbench import Benchmark, RecordingJudge, read_records, run_benchmark, synthesize_video  # noqa: E402
from sepsis_sdk.microbench._data import BenchCriterion, BenchTask  # noqa: E402
from sepsis_sdk.microbench._distributed import run_benchmark_ray  # noqa: E402
from sepsis_sdk.scale import ConcurrencyLimit, RayExecutor  # noqa: E402


@pytest.fixture(scope="module")
def ray_cluster(local_ray):
    """The session's local Ray (tests/conftest.py), with this module's functions pickled by value."""
    local_ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    return local_ray


def _task(i: int) -> BenchTask:
    def crits(dim, spec):
        return tuple(
            BenchCriterion(dimension=dim, key=str(k), position=k, text=f"{dim} {k} of {i}", sign=s, weight=w)
            for k, (s, w) in enumerate(spec, start=1)
        )

    return BenchTask(
        index=i, task=f"A cell divides ({i}).", requirement="Show mitosis.", category="Cellular-level",
        scientific=crits("scientific", [(1, 1.0), (-1, 0.5)]), visual=crits("visual", [(1, 0.5)]),
        instruction=crits("instruction", [(1, 1.0), (-1, 1.0)]),
    )  # fmt: skip


@pytest.fixture(scope="module")
def bench_videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    for i in range(1, 9):
        synthesize_video(d / f"{i}.mp4", n_frames=12)
    (d / "5.mp4").write_bytes(b"broken")  # a video error is a record too
    return Benchmark(tasks=tuple(_task(i) for i in range(1, 10))), d  # task 9 has no video


def _by_task(rubric, evidence):
    """Deterministic verdicts that depend on the task and the frames (so a mix-up would show)."""
    k = evidence.data["task_index"] + len(evidence.images)
    return [(k + j) % 2 for j in range(len(rubric.criteria))]


def _kill_once(marks: str, rubric, evidence):
    """Kills its worker process while grading task 3 the first time (other tasks' calls are unaffected)."""
    if evidence.data["task_index"] == 3 and not (Path(marks) / "killed").exists():
        (Path(marks) / "killed").write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return _by_task(rubric, evidence)


def _view(path):
    return sorted((r.key, r.scores, r.error_kind, r.frame_indices) for r in read_records(path))


def _lines(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines()]


@pytest.mark.slow
def test_ray_grading_equals_local_grading_and_survives_a_killed_worker(ray_cluster, bench_videos, tmp_path):
    from functools import partial

    bench, videos = bench_videos
    local = run_benchmark(
        bench, videos, RecordingJudge(_by_task, name="j"), model="m", out=tmp_path / "local.jsonl"
    )
    judge = RecordingJudge(partial(_kill_once, str(tmp_path)), name="j")
    with RayExecutor(max_retries=2) as ex:
        # a short lease: the killed worker's permits come back within a second or two
        limit = ConcurrencyLimit(3, lease_s=1.5)
        rep = run_benchmark_ray(bench, videos, judge, model="m", out=tmp_path / "ray.jsonl", executor=ex,
                                limit=limit)  # fmt: skip
    assert (tmp_path / "killed").exists()  # a worker really died mid-run
    assert _view(tmp_path / "ray.jsonl") == _view(tmp_path / "local.jsonl")
    keys = [(r["task"], r["dimension"]) for r in _lines(tmp_path / "ray.jsonl")]
    assert len(keys) == len(set(keys)) == 8 * 3  # no duplicate line, none missing (7 videos + 1 broken)
    assert rep.written == local.written == 24 and rep.video_errors == local.video_errors == 1
    assert rep.missing_videos == [9]
    stats = limit.stats()
    assert stats["in_use"] == 0 and stats["reclaimed"] >= 1  # the dead worker's permits came back
    limit.kill()


@pytest.mark.slow
def test_a_ray_run_resumes_a_local_one_and_holds_the_global_limit(ray_cluster, bench_videos, tmp_path):
    bench, videos = bench_videos
    out = tmp_path / "res.jsonl"
    run_benchmark(bench, videos, RecordingJudge(_by_task, name="j"), model="m", out=out, tasks=[1, 2])
    limit = ConcurrencyLimit(2)
    judge = RecordingJudge(_by_task, name="j", delay_s=0.1)
    with RayExecutor() as ex:
        rep = run_benchmark_ray(bench, videos, judge, model="m", out=out, executor=ex, limit=limit)
    assert rep.skipped == 6 and rep.written == 18  # only the verdicts not yet in the file
    keys = [(r["task"], r["dimension"]) for r in _lines(out)]
    assert len(keys) == len(set(keys)) == 24
    stats = limit.stats()
    assert stats["acquired"] == 15 and stats["peak"] == 2 and stats["in_use"] == 0  # 5 videos x 3 dims
    limit.kill()
    again = run_benchmark(bench, videos, RecordingJudge(_by_task, name="j"), model="m", out=out)
    assert again.written == 0 and again.skipped == 24


def test_cli_microbench_run_on_ray_names_an_unreachable_address(ray_cluster, tmp_path):
    import socket

    from typer.testing import CliRunner

    from sepsis_sdk.cli import app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["microbench", "run", "--videos", str(tmp_path), "--model", "m", "--judge", "openai/gpt-4o-mini",
            "--out", str(tmp_path / "r.jsonl")]  # fmt: skip
    res = CliRunner().invoke(app, [*args, "--executor", "ray", "--ray-address", f"127.0.0.1:{port}"])
    assert res.exit_code == 2 and f"127.0.0.1:{port}" in res.output, res.output
    assert not (tmp_path / "r.jsonl").exists()  # nothing started
    res = CliRunner().invoke(app, [*args, "--ray-address", "auto"])
    assert res.exit_code == 2 and "--ray-address needs --executor ray" in res.output


@pytest.mark.slow
def test_run_benchmark_executor_ray_is_the_ray_runner(ray_cluster, bench_videos, tmp_path):
    bench, videos = bench_videos
    judge = RecordingJudge(_by_task, name="j")
    rep = run_benchmark(bench, videos, judge, model="m", out=tmp_path / "a.jsonl", executor=RayExecutor())
    local = run_benchmark(bench, videos, judge, model="m", out=tmp_path / "b.jsonl")
    assert rep.written == local.written == 24
    assert _view(tmp_path / "a.jsonl") == _view(tmp_path / "b.jsonl")
