"""Issue 13, judge side: error kinds, the dead-judge stop, choices-less replies, frame options, short
videos, .flv/.wmv, and the ``run`` flags. Real video decoding; HTTP through LiteLLM mocked with respx."""

from __future__ import annotations

import base64
import io
import json
import os
import re

import httpx
import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
pytest.importorskip("av")
pytest.importorskip("respx")
pytest.importorskip("litellm")

from PIL import Image

from sepsis_sdk.judge import LLMJudge
from sepsis_sdk.microbench import (
    Benchmark,
    RecordingJudge,
    find_videos,
    read_records,
    run_benchmark,
    sample_frames,
    summarize,
    synthesize_video,
)
from sepsis_sdk.microbench._data import BenchCriterion, BenchTask
from sepsis_sdk.microbench._judging import ajudge_dimension
from sepsis_sdk.microbench._report import render_markdown
from sepsis_sdk.microbench._synth import read_index
from sepsis_sdk.testing import fake_openai_endpoint

API = "http://fake-vlm.test/v1"


def make_task(i: int = 1) -> BenchTask:
    def crits(dim, spec):
        return tuple(
            BenchCriterion(
                dimension=dim, key=str(k), position=k, text=f"{dim}-criterion-{k}", sign=s, weight=w
            )
            for k, (s, w) in enumerate(spec, start=1)
        )

    return BenchTask(
        index=i,
        task=f"Mitochondria divide (task {i}).",
        requirement="Show the ring.",
        category="Cellular-level",
        scientific=crits("scientific", [(1, 1.0), (1, 0.5), (-1, 0.5)]),
        visual=crits("visual", [(1, 0.5), (1, 0.5)]),
        instruction=crits("instruction", [(1, 1.0), (-1, 1.0)]),
    )


def _images(body) -> list[bytes]:
    user = next(m for m in body["messages"] if m["role"] == "user")
    urls = [p["image_url"]["url"] for p in user["content"] if p["type"] == "image_url"]
    return [base64.b64decode(u.split(",", 1)[1]) for u in urls]


def _n_criteria(body) -> int:
    user = next(m for m in body["messages"] if m["role"] == "user")
    text = "\n".join(p["text"] for p in user["content"] if p["type"] == "text")
    return len(re.findall(r"-criterion-\d", text))


@pytest.fixture
def frames(tmp_path):
    return sample_frames(synthesize_video(tmp_path / "1.mp4", n_frames=24, width=320, height=240), 8)


# ------------------------------------------------------------------------------------------ error kinds


@pytest.mark.parametrize(
    "bad",
    [
        '{"scores": [1, 0], "reasoning": "too short"}',
        '{"scores": [1, 2, 0]}',
        '{"scores": [-1, 1, 0]}',
        "no json",
    ],
)
async def test_bad_replies_are_verdict_errors_not_judge_errors(respx_mock, frames, bad):
    ep = fake_openai_endpoint(respx_mock, [bad] * 3, api_base=API)
    rec = await ajudge_dimension(
        LLMJudge(ep.chat(), max_reasks=2), make_task(), "scientific", frames, model="m"
    )
    assert ep.calls == 3 and rec.scores == (None, None, None)
    assert rec.error_kind == "verdict" and "unscored" in rec.error


async def test_failed_calls_stay_judge_errors(respx_mock, frames):
    ep = fake_openai_endpoint(respx_mock, [401], api_base=API)
    rec = await ajudge_dimension(LLMJudge(ep.chat(retries=0)), make_task(), "visual", frames, model="m")
    assert rec.error_kind == "judge" and "401" in rec.error


def test_bad_replies_do_not_stop_the_run_and_the_report_splits_errors(respx_mock, tmp_path):
    """15 verdicts: 12 bad replies and 3 failed calls (the issue's case: the split read 0/15/0)."""
    bench = Benchmark(tasks=tuple(make_task(i) for i in range(1, 6)))
    for i in range(1, 6):
        synthesize_video(tmp_path / "v" / f"{i}.mp4", n_frames=16)
    state = {"n": 0}

    def reply(body):
        state["n"] += 1
        if state["n"] in (5, 10, 15):  # every fifth verdict: a dead call
            return 401
        return json.dumps({"scores": [2] * _n_criteria(body), "reasoning": "out of range"})

    ep = fake_openai_endpoint(respx_mock, [reply] * 15, api_base=API)
    judge = LLMJudge(ep.chat(retries=0), max_reasks=0, name="vlm")
    out = tmp_path / "r.jsonl"
    rep = run_benchmark(bench, tmp_path / "v", judge, model="t2v", out=out, concurrency=1,
                        max_consecutive_failures=12)  # fmt: skip
    assert rep.written == 15 and ep.calls == 15  # 12 bad replies in a row would have stopped the old run
    assert rep.judge_errors == 15 and rep.verdict_errors == 12
    (s,) = summarize(read_records(out), n_tasks=5)
    assert s.errors == {"verdict": 12, "judge": 3}
    assert "| 0/3/12 |" in render_markdown([s])


def test_bad_replies_between_failed_calls_reset_the_dead_judge_count(tmp_path):
    from sepsis_sdk.judge import Verdict

    bench = Benchmark(tasks=tuple(make_task(i) for i in range(1, 6)))
    for i in range(1, 6):
        synthesize_video(tmp_path / "v" / f"{i}.mp4", n_frames=16)
    n = {"k": 0}

    def fn(rubric, evidence):
        n["k"] += 1
        if n["k"] % 2:
            raise ConnectionError("down")
        return Verdict(rubric=rubric.name, judge="j", verdicts=(), error="bad JSON", error_kind="reply")

    rep = run_benchmark(bench, tmp_path / "v", RecordingJudge(fn, name="j"), model="m", out=tmp_path / "r.jsonl",
                        concurrency=1, max_consecutive_failures=2)  # fmt: skip
    assert rep.written == 15 and rep.verdict_errors == 7


# ------------------------------------------------------------------------------------------ no choices


async def test_a_reply_without_choices_is_asked_again(respx_mock, frames):
    empty = httpx.Response(
        200,
        json={"id": "x", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini", "choices": []},
    )
    ep = fake_openai_endpoint(respx_mock, [empty, empty, '{"scores": [1, 0]}'], api_base=API)
    rec = await ajudge_dimension(LLMJudge(ep.chat(retries=0)), make_task(), "visual", frames, model="m")
    assert ep.calls == 3 and rec.scores == (1, 0) and rec.error is None
    # when they keep coming, the criteria are left unscored as a failed call
    ep2 = fake_openai_endpoint(respx_mock, [empty] * 2, api_base="http://fake-vlm2.test/v1")
    rec = await ajudge_dimension(
        LLMJudge(ep2.chat(retries=0), empty_retries=1), make_task(), "visual", frames, model="m"
    )
    assert ep2.calls == 2 and rec.scores == (None, None) and rec.error_kind == "judge"


# ------------------------------------------------------------------------------------------ frames


def test_short_videos_are_graded_with_repeated_frames_and_recorded(tmp_path):
    synthesize_video(tmp_path / "v" / "1.mp4", n_frames=4)
    shown = []

    def fn(rubric, evidence):
        shown.append([read_index(b) for b in evidence.images])
        return [1] * len(rubric.criteria)

    out = tmp_path / "r.jsonl"
    rep = run_benchmark(
        Benchmark(tasks=(make_task(1),)), tmp_path / "v", RecordingJudge(fn), model="m", out=out
    )
    assert rep.video_errors == 0 and rep.written == 3
    assert shown == [[0, 0, 1, 1, 2, 2, 3, 3]] * 3  # the reference's positions int((i + 0.5) * 4 / 8)
    recs = read_records(out)
    assert all(r.repeated_frames and r.frame_indices == (0, 0, 1, 1, 2, 2, 3, 3) and r.complete for r in recs)
    # the old behaviour stays available
    out2 = tmp_path / "r2.jsonl"
    rep = run_benchmark(Benchmark(tasks=(make_task(1),)), tmp_path / "v", RecordingJudge(), model="m", out=out2,
                        short_videos="reject")  # fmt: skip
    assert rep.video_errors == 1 and all(r.error_kind == "video" for r in read_records(out2))


def test_full_length_videos_are_not_marked_repeated(tmp_path):
    fs = sample_frames(synthesize_video(tmp_path / "a.mp4", n_frames=24), 8)
    assert not fs.repeated and fs.indices == [1, 4, 7, 10, 13, 16, 19, 22]


@pytest.mark.parametrize("suffix", [".flv", ".wmv"])
def test_flv_and_wmv_are_picked_up_and_decoded(tmp_path, suffix):
    synthesize_video(tmp_path / f"7{suffix}", n_frames=24, codec={".flv": "flv", ".wmv": "wmv2"}[suffix])
    found = find_videos(tmp_path)
    assert list(found) == [7]
    fs = sample_frames(found[7], 8)
    assert [read_index(b) for b in fs.images] == [1, 4, 7, 10, 13, 16, 19, 22]


def test_reference_frame_preset_sends_full_resolution_at_quality_100(tmp_path):
    from sepsis_sdk.microbench import FRAME_PRESETS

    video = synthesize_video(tmp_path / "a.mp4", n_frames=24, width=1280, height=720, texture=True)
    ref = sample_frames(video, 8, **FRAME_PRESETS["reference"])
    ours = sample_frames(video, 8, **FRAME_PRESETS["project"])
    assert (ref.width, ref.height) == (1280, 720) and (ours.width, ours.height) == (768, 432)
    assert ref.nbytes > 4 * ours.nbytes  # the documented payload difference (about 8x on this clip)
    with pytest.raises(Exception, match="quality"):
        sample_frames(video, 8, quality=0)


def test_judge_reencodes_at_its_configured_quality():
    big = Image.effect_noise((400, 300), 60).convert("RGB")
    buf = io.BytesIO()
    big.save(buf, format="PNG")
    from sepsis_sdk.judge import Evidence

    ev = Evidence(images=[buf.getvalue()])
    hi = LLMJudge(RecordingJudge(), max_image_side=200, image_quality=100)._prepare_images(ev, 200)
    lo = LLMJudge(RecordingJudge(), max_image_side=200, image_quality=20)._prepare_images(ev, 200)
    assert len(hi[0][0]) > 2 * len(lo[0][0])


# ------------------------------------------------------------------------------------------ CLI


def _write_source(folder, tasks):
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for t in tasks:
        item = {"index": t.index, "任务": t.task, "具体要求": t.requirement}
        for d in ("scientific", "visual", "instruction"):
            r = {}
            for c in t.criteria(d):
                r[f"d{c.key}"], r[f"s{c.key}"], r[f"w{c.key}"] = (
                    c.text,
                    "+1" if c.sign == 1 else "-1",
                    str(c.weight),
                )
            item[f"rubrics_{d}"] = r
        items.append(item)
    (folder / "MWBenchRubrics_norm.json").write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    (folder / "finaltasks.json").write_text(
        json.dumps([{"index": t.index, "final_label": t.category} for t in tasks]), encoding="utf-8"
    )
    return folder


def test_cli_run_passes_judge_and_frame_options(respx_mock, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from sepsis_sdk.cli import app

    monkeypatch.setenv("MY_VLM_KEY", "sk-from-env")
    src = _write_source(tmp_path / "src", [make_task(1)])
    synthesize_video(tmp_path / "v" / "1.mp4", n_frames=16, width=320, height=240)

    def reply(body):
        return json.dumps({"scores": [1] * _n_criteria(body), "reasoning": "ok"})

    ep = fake_openai_endpoint(respx_mock, [reply] * 3, api_base=API)
    args = ["microbench", "run", "--videos", str(tmp_path / "v"), "--model", "t2v", "--judge", "openai/gpt-4o-mini",
            "--api-base", API, "--source", str(src), "--out", str(tmp_path / "r.jsonl"), "--temperature", "0.3",
            "--timeout", "30", "--retries", "1", "--max-reasks", "0", "--quality", "40", "--max-side", "160",
            "--api-key-env", "MY_VLM_KEY"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert ep.calls == 3 and all(b["temperature"] == 0.3 for b in ep.requests)
    assert all(c.request.headers["authorization"] == "Bearer sk-from-env" for c in ep.route.calls)
    sizes = {Image.open(io.BytesIO(b)).size for b in _images(ep.requests[0])}
    assert sizes == {(160, 120)}
    res = CliRunner().invoke(app, ["microbench", "run", "--help"])
    assert "--frame-preset" in res.output and "OPENAI_API_KEY" in res.output
    # full resolution, q100 from the preset
    ep2 = fake_openai_endpoint(respx_mock, [reply] * 3, api_base="http://fake-vlm3.test/v1")
    args2 = [a if a != API else "http://fake-vlm3.test/v1" for a in args[:12]]
    res = CliRunner().invoke(
        app,
        [
            *args2,
            "--out",
            str(tmp_path / "r2.jsonl"),
            "--frame-preset",
            "reference",
            "--api-key-env",
            "MY_VLM_KEY",
        ],
    )
    assert res.exit_code == 0, res.output
    assert ep2.calls == 3, res.output
    assert {Image.open(io.BytesIO(b)).size for b in _images(ep2.requests[0])} == {(320, 240)}


def test_cli_errors_keep_their_bracketed_parts(tmp_path):
    from typer.testing import CliRunner

    from sepsis_sdk.cli import app

    src = _write_source(tmp_path / "src", [make_task(1)])
    res = CliRunner().invoke(app, ["microbench", "run", "--videos", str(tmp_path / "nope[1]"), "--model", "m",
                                   "--judge", "openai/x", "--source", str(src)])  # fmt: skip
    assert res.exit_code == 2 and "nope[1]" in res.output


def test_cli_info_keeps_bracketed_paths(tmp_path):
    from typer.testing import CliRunner

    from sepsis_sdk.cli import app

    src = _write_source(tmp_path / "data[v2]", [make_task(1)])
    res = CliRunner().invoke(app, ["microbench", "info", "--source", str(src)])
    assert res.exit_code == 0, res.output
    # on one line, whole, however long the temporary path (a wrapped title once split it mid-name)
    (line,) = [x for x in res.output.splitlines() if x.startswith("source: ")]
    assert line == f"source: {src}"
    assert "weights=norm" in res.output
