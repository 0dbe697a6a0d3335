"""Runner: async grading of synthesised videos, JSONL records, resume after a killed run, reports, generation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("av")

from sepsis_sdk.errors import UserError
from sepsis_sdk.judge import Verdict
from sepsis_sdk.microbench import (
    Benchmark,
    RecordingJudge,
    SyntheticVideoGenerator,
    generate_videos,
    read_many,
    read_records,
    run_benchmark,
    summarize,
    synthesize_video,
    write_report,
)
from sepsis_sdk.microbench._data import BenchCriterion, BenchTask
from sepsis_sdk.microbench._synth import read_index

DIMS = ("scientific", "visual", "instruction")


def make_task(i: int, category: str = "Organ-level") -> BenchTask:
    def crits(dim, spec):
        return tuple(
            BenchCriterion(
                dimension=dim, key=str(k), position=k, text=f"{dim} point {k} of task {i}", sign=s, weight=w
            )
            for k, (s, w) in enumerate(spec, start=1)
        )

    return BenchTask(
        index=i,
        task=f"A cell divides (task {i}).",
        requirement="Show mitosis clearly.",
        category=category,
        scientific=crits("scientific", [(1, 1.0), (1, 0.5), (-1, 0.5)]),
        visual=crits("visual", [(1, 0.5), (1, 0.5)]),
        instruction=crits("instruction", [(1, 1.0), (1, 0.0), (-1, 1.0)]),
    )


@pytest.fixture
def bench() -> Benchmark:
    cats = ["Organ-level", "Cellular-level", "Subcellular-level"]
    return Benchmark(tasks=tuple(make_task(i, cats[i % 3]) for i in range(1, 7)))


@pytest.fixture
def videos(tmp_path) -> Path:
    d = tmp_path / "videos"
    for i in range(1, 6):  # task 6 has no video
        synthesize_video(d / f"{i}.mp4", n_frames=16)
    (d / "4.mp4").write_bytes(b"not a video at all")  # corrupt
    synthesize_video(d / "99.mp4", n_frames=16)  # not a task
    return d


def positives_yes(rubric, evidence):
    return [1 if c.sign == 1 else 0 for c in rubric.criteria]


def test_run_grades_every_task_dimension_once(bench, videos, tmp_path):
    judge = RecordingJudge(
        positives_yes,
        name="fn",
        usage={"prompt_tokens": 50, "completion_tokens": 5, "cost_usd": 0.002, "calls": 1},
    )
    out = tmp_path / "r.jsonl"
    rep = run_benchmark(bench, videos, judge, model="t2v", out=out, concurrency=3, n_frames=4)
    assert rep.missing_videos == [6] and rep.unknown_videos == [99]
    assert rep.video_errors == 1 and rep.judge_errors == 0
    assert rep.written == 5 * 3 and rep.skipped == 0
    recs = read_records(out)
    assert sorted((r.task, r.dimension) for r in recs) == sorted((t, d) for t in range(1, 6) for d in DIMS)
    bad = [r for r in recs if r.task == 4]
    assert all(r.error_kind == "video" and r.scores == (None,) * len(r.scores) for r in bad)
    assert "4.mp4" in bad[0].error
    good = next(r for r in recs if r.task == 1 and r.dimension == "scientific")
    assert good.scores == (1, 1, 0) and good.signs == (1, 1, -1) and good.weights == (1.0, 0.5, 0.5)
    assert good.n_frames == 4 and good.usage["cost_usd"] == 0.002 and good.category == "Cellular-level"
    # 4 tasks x 3 dimensions judged, each with the 4 sampled frames and the task text
    assert len(judge.calls) == 12
    _rubric, ev = judge.calls[0]
    assert len(ev.images) == 4 and [read_index(b) for b in ev.images] == [2, 6, 10, 14]
    assert "A cell divides" in ev.text and "Show mitosis" in ev.text
    (s,) = summarize(recs, n_tasks=len(bench))
    assert s.valid_tasks == 4 and s.overall == 100.0 and s.coverage == pytest.approx(4 / 6)
    assert s.usage["cost_usd"] == pytest.approx(12 * 0.002)


def test_rerun_skips_done_verdicts_and_adds_new_judges(bench, videos, tmp_path):
    out = tmp_path / "r.jsonl"
    run_benchmark(bench, videos, RecordingJudge(positives_yes, name="a"), model="t2v", out=out)
    second = RecordingJudge(positives_yes, name="a")
    rep = run_benchmark(bench, videos, second, model="t2v", out=out)
    assert rep.written == 0 and rep.skipped == 15 and second.calls == []
    b = RecordingJudge(lambda r, e: [0] * len(r.criteria), name="b")
    rep = run_benchmark(bench, videos, [RecordingJudge(positives_yes, name="a"), b], model="t2v", out=out)
    assert rep.written == 15 and rep.skipped == 15 and len(b.calls) == 12
    assert len(out.read_text().splitlines()) == 30


def test_judge_failures_are_recorded_unscored_and_retried_on_request(bench, videos, tmp_path):
    state = {"n": 0}

    def flaky(rubric, evidence):
        state["n"] += 1
        if "task2" in rubric.name and rubric.name.endswith("visual"):
            raise RuntimeError("provider exploded")
        if "task3" in rubric.name and rubric.name.endswith("scientific"):
            return [1, 0]  # one score short
        if "task5" in rubric.name and rubric.name.endswith("instruction"):
            return Verdict(
                rubric=rubric.name, judge="x", verdicts=(), error="reply was not valid JSON after 2 re-asks"
            )
        return positives_yes(rubric, evidence)

    out = tmp_path / "r.jsonl"
    rep = run_benchmark(
        bench, videos, RecordingJudge(flaky, name="j"), model="t2v", out=out, tasks=[1, 2, 3, 5]
    )
    assert rep.judge_errors == 3
    recs = {(r.task, r.dimension): r for r in read_records(out)}
    assert recs[(2, "visual")].error_kind == "judge" and "provider exploded" in recs[(2, "visual")].error
    assert recs[(3, "scientific")].scores == (1, 0, None) and recs[(3, "scientific")].error_kind == "verdict"
    assert "scientific.3 missing" in recs[(3, "scientific")].error
    assert (
        recs[(5, "instruction")].scores == (None, None, None) and "re-asks" in recs[(5, "instruction")].error
    )
    (s,) = summarize(recs.values(), n_tasks=6)
    assert s.valid_tasks == 1 and s.unscored_criteria == 2 + 1 + 3  # never silently 0
    # a plain rerun does not ask again; --retry-errors does, and the new verdict supersedes the old
    rep = run_benchmark(
        bench, videos, RecordingJudge(positives_yes, name="j"), model="t2v", out=out, tasks=[1, 2, 3, 5]
    )
    assert rep.written == 0
    rep = run_benchmark(
        bench,
        videos,
        RecordingJudge(positives_yes, name="j"),
        model="t2v",
        out=out,
        tasks=[1, 2, 3, 5],
        retry_errors=True,
    )
    assert rep.written == 3
    (s,) = summarize(read_records(out), n_tasks=6)
    assert s.valid_tasks == 4 and s.unscored_criteria == 0


def test_bad_arguments(bench, videos, tmp_path):
    with pytest.raises(UserError, match="names must differ"):
        run_benchmark(
            bench, videos, [RecordingJudge(name="x"), RecordingJudge(name="x")], model="m", out=tmp_path / "o"
        )
    with pytest.raises(UserError, match="at least one judge"):
        run_benchmark(bench, videos, [], model="m", out=tmp_path / "o")
    with pytest.raises(UserError, match="concurrency"):
        run_benchmark(bench, videos, RecordingJudge(), model="m", out=tmp_path / "o", concurrency=0)


def test_concurrency_is_bounded(bench, videos, tmp_path):
    import asyncio

    state = {"now": 0, "peak": 0}

    async def slow(rubric, evidence):
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        await asyncio.sleep(0.01)
        state["now"] -= 1
        return [1] * len(rubric.criteria)

    run_benchmark(bench, videos, RecordingJudge(slow), model="m", out=tmp_path / "o.jsonl", concurrency=2)
    assert state["peak"] == 2


def test_torn_last_line_is_cut_and_redone(bench, videos, tmp_path):
    out = tmp_path / "r.jsonl"
    run_benchmark(bench, videos, RecordingJudge(positives_yes, name="j"), model="t2v", out=out, tasks=[1, 2])
    lines = out.read_text().splitlines(keepends=True)
    assert len(lines) == 6
    # simulate a kill in the middle of writing the last line
    out.write_text("".join(lines[:5]) + lines[5][: len(lines[5]) // 2])
    assert len(read_records(out)) == 5  # the torn line is ignored when reading
    rep = run_benchmark(
        bench, videos, RecordingJudge(positives_yes, name="j"), model="t2v", out=out, tasks=[1, 2]
    )
    assert rep.cut_bytes == len(lines[5]) // 2 and rep.written == 1
    raw = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(raw) == 6 and len({(r["task"], r["dimension"]) for r in raw}) == 6


def test_corrupt_line_in_the_middle_is_an_error(tmp_path):
    from sepsis_sdk.errors import DataError

    p = tmp_path / "r.jsonl"
    p.write_text('{"model": "m"}\n')
    with pytest.raises(DataError, match=r"r\.jsonl, line 1"):
        read_records(p)


_KILL_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from sepsis_sdk.microbench import RecordingJudge, Benchmark, run_benchmark
    from test_microbench_runner import make_task
    bench = Benchmark(tasks=tuple(make_task(i) for i in range(1, 6)))
    judge = RecordingJudge(lambda r, e: [1] * len(r.criteria), name="slow", delay_s=0.15)
    run_benchmark(bench, {videos!r}, judge, model="t2v", out={out!r}, concurrency=2, n_frames=4)
    """
)


def test_killed_run_resumes_without_losing_or_duplicating(bench, videos, tmp_path):
    (videos / "4.mp4").unlink()
    synthesize_video(videos / "4.mp4", n_frames=16)
    out = tmp_path / "r.jsonl"
    script = tmp_path / "run.py"
    script.write_text(_KILL_SCRIPT.format(tests=str(Path(__file__).parent), videos=str(videos), out=str(out)))
    proc = subprocess.Popen(
        [sys.executable, str(script)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if out.exists() and len(out.read_bytes().splitlines()) >= 4:
            break
        if proc.poll() is not None:
            pytest.fail(f"runner exited early: {proc.stdout.read().decode()}")
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = read_records(out)
    assert 4 <= len(before) < 15  # killed mid-run
    judge = RecordingJudge(lambda r, e: [1] * len(r.criteria), name="slow")
    rep = run_benchmark(
        Benchmark(tasks=tuple(make_task(i) for i in range(1, 6))),
        videos,
        judge,
        model="t2v",
        out=out,
        n_frames=4,
    )
    assert rep.skipped == len(before) and rep.written == 15 - len(before)
    assert len(judge.calls) == 15 - len(before)  # nothing asked twice
    keys = [(r["task"], r["dimension"]) for r in map(json.loads, out.read_text().splitlines())]
    assert len(keys) == 15 and len(set(keys)) == 15  # nothing lost, nothing duplicated


def test_report_writes_markdown_csv_and_plots(bench, videos, tmp_path):
    out = tmp_path / "r.jsonl"
    judges = [
        RecordingJudge(positives_yes, name="yes"),
        RecordingJudge(lambda r, e: [1] * len(r.criteria), name="all"),
    ]
    run_benchmark(bench, videos, judges, model="t2v-a", out=out, n_frames=4)
    other = tmp_path / "r2.jsonl"
    run_benchmark(
        bench,
        videos,
        RecordingJudge(lambda r, e: [0] * len(r.criteria), name="yes"),
        model="t2v-b",
        out=other,
    )
    files = write_report(read_many([out, other]), tmp_path / "rep", n_tasks=len(bench))
    md = files.markdown.read_text()
    assert "| t2v-a | yes | 4 | 6 | 66.7% |" in md and "| t2v-b | yes | 4 | 6 | 66.7% |" in md
    assert "## Agreement between judges" in md and "| all | yes | scientific |" in md
    names = sorted(p.name for p in files.csv + files.plots)
    assert names == ["agreement.csv", "by_category.png", "by_dimension.png", "summary.csv", "tasks.csv"]
    assert all(p.stat().st_size > 0 for p in files.plots)
    import csv

    rows = list(csv.DictReader((tmp_path / "rep" / "summary.csv").open()))
    assert {(r["model"], r["judge"], r["overall"]) for r in rows} >= {
        ("t2v-a", "yes", "100.0"),
        ("t2v-b", "yes", "0.0"),
    }
    # all-ones judge: penalties fire -> scientific (1.5 - 0.5) / 1.5, instruction (1 - 1) / 1
    by = {(r["model"], r["judge"]): r for r in rows}
    assert float(by[("t2v-a", "all")]["scientific"]) == pytest.approx(100 * 1.0 / 1.5)
    assert float(by[("t2v-a", "all")]["instruction"]) == 0.0
    agree = list(csv.DictReader((tmp_path / "rep" / "agreement.csv").open()))
    sci = next(a for a in agree if a["dimension"] == "scientific")
    # yes vs all differ only on the one penalty point of each of 4 tasks: 8 of 12 agree
    assert (sci["n"], float(sci["percent"])) == ("12", pytest.approx(100 * 8 / 12))


def test_generate_videos_resumable_then_graded(bench, tmp_path):
    gen = SyntheticVideoGenerator(n_frames=12)
    out = tmp_path / "gen"
    rep = generate_videos(gen, list(bench)[:3], out)
    assert rep.created == [1, 2, 3] and rep.failed == {}
    assert sorted(p.name for p in out.iterdir()) == ["1.mp4", "2.mp4", "3.mp4"]
    assert gen.prompts[0] == "A cell divides (task 1).\n\nShow mitosis clearly."
    rep = generate_videos(gen, bench, out)
    assert rep.skipped == [1, 2, 3] and rep.created == [4, 5, 6] and len(gen.prompts) == 6

    class Broken:
        name, suffix = "broken", ".mp4"

        def generate(self, prompt, out_path):
            out_path.write_bytes(b"partial")
            raise TimeoutError("API timed out")

    rep = generate_videos(Broken(), [make_task(7)], out)
    assert "API timed out" in rep.failed[7] and not (out / "7.mp4").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no half files left
    res = run_benchmark(
        bench, out, RecordingJudge(positives_yes), model="synthetic", out=tmp_path / "g.jsonl", n_frames=8
    )
    assert res.written == 18 and res.video_errors == 0


def test_cli_report(bench, videos, tmp_path):
    from typer.testing import CliRunner

    from sepsis_sdk.cli import app

    out = tmp_path / "r.jsonl"
    run_benchmark(bench, videos, RecordingJudge(positives_yes, name="fn"), model="t2v", out=out)
    res = CliRunner().invoke(
        app,
        [
            "microbench",
            "report",
            "--results",
            str(out),
            "--out",
            str(tmp_path / "rep"),
            "--n-tasks",
            "6",
            "--no-plots",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "| t2v | fn | 4 | 6 | 66.7% |" in res.output
    assert (tmp_path / "rep" / "report.md").exists() and not (tmp_path / "rep" / "by_dimension.png").exists()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{}\n")
    res = CliRunner().invoke(
        app, ["microbench", "report", "--results", str(bad), "--out", str(tmp_path / "x")]
    )
    assert res.exit_code == 2 and "line 1" in res.output


def test_a_judge_that_always_fails_stops_the_run(bench, videos, tmp_path):
    from sepsis_sdk.errors import JudgeError

    def dead(rubric, evidence):
        raise ConnectionError("server down")

    out = tmp_path / "r.jsonl"
    with pytest.raises(JudgeError, match=r"'dead' failed 3 calls in a row.*server down"):
        run_benchmark(bench, videos, RecordingJudge(dead, name="dead"), model="m", out=out, concurrency=1,
                      max_consecutive_failures=3)  # fmt: skip
    assert len(read_records(out)) == 3  # what was recorded stays
    # occasional failures between successes do not stop a run
    flaky = RecordingJudge(
        lambda r, e: [1] * len(r.criteria) if len(flaky.calls) % 2 else dead(r, e), name="f"
    )
    rep = run_benchmark(bench, videos, flaky, model="m2", out=out, concurrency=1, max_consecutive_failures=2)
    assert rep.judge_errors == 6 and rep.written == 15


def test_misuse_inside_a_judge_propagates(bench, videos, tmp_path):
    def misused(rubric, evidence):
        raise UserError("unknown option")

    with pytest.raises(UserError, match="unknown option"):
        run_benchmark(bench, videos, RecordingJudge(misused), model="m", out=tmp_path / "r.jsonl")
