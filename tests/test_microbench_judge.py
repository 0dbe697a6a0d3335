"""Judging through the shared LLMJudge on the real LiteLLM HTTP path, mocked with respx (no network)."""

from __future__ import annotations

import base64
import io
import json
import os
import re
from pathlib import Path

import httpx
import pytest

# before litellm is imported: read its bundled price list, never fetch one
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
pytest.importorskip("av")
pytest.importorskip("respx")
pytest.importorskip("litellm")

from PIL import Image

from sepsis_sdk.judge import LLMJudge
from sepsis_sdk.microbench import (
    Benchmark,
    RecordingJudge,
    read_records,
    run_benchmark,
    sample_frames,
    summarize,
    synthesize_video,
)
from sepsis_sdk.microbench._data import BenchCriterion, BenchTask
from sepsis_sdk.microbench._judging import ajudge_dimension, check_verdict
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
        task=f"Mitochondria divide by fission (task {i}).",
        requirement="Show the constriction ring.",
        category="Subcellular-level",
        scientific=crits("scientific", [(1, 1.0), (1, 0.5), (-1, 0.5)]),
        visual=crits("visual", [(1, 0.5), (1, 0.5)]),
        instruction=crits("instruction", [(1, 1.0), (-1, 1.0)]),
    )


@pytest.fixture
def frames(tmp_path):
    video = synthesize_video(tmp_path / "1.mp4", n_frames=24, width=320, height=240)
    return sample_frames(video, 8, max_side=320)


def _user_parts(body):
    user = next(m for m in body["messages"] if m["role"] == "user")
    content = user["content"]
    text = (
        content if isinstance(content, str) else "\n".join(p["text"] for p in content if p["type"] == "text")
    )
    images = (
        []
        if isinstance(content, str)
        else [p["image_url"]["url"] for p in content if p["type"] == "image_url"]
    )
    return text, images


def _decode(url: str) -> bytes:
    assert url.startswith("data:image/jpeg;base64,")
    return base64.b64decode(url.split(",", 1)[1])


def _dimension_of(body) -> str:
    text, _ = _user_parts(body)
    return re.search(r"(scientific|visual|instruction)-criterion", text).group(1)


def scores_reply(n_by_dim: dict[str, list[int]]):
    """A callable reply answering each request with the scores scripted for its dimension."""

    def reply(body):
        dim = _dimension_of(body)
        return json.dumps({"scores": n_by_dim[dim], "reasoning": f"{dim} looks fine"})

    return reply


async def test_grouped_protocol_sends_frames_and_criteria_and_records_usage(respx_mock, frames):
    task = make_task()
    scripted = {"scientific": [1, 0, 1], "visual": [1, 1], "instruction": [0, 0]}
    ep = fake_openai_endpoint(respx_mock, [scores_reply(scripted)] * 3, api_base=API)
    judge = LLMJudge(ep.chat(), mode="grouped")
    recs = {d: await ajudge_dimension(judge, task, d, frames, model="t2v") for d in scripted}
    assert ep.calls == 3  # one call per dimension
    for body in ep.requests:
        text, images = _user_parts(body)
        dim = _dimension_of(body)
        # every criterion of the dimension, labelled positive or penalty, and nothing from other dimensions
        for c in task.criteria(dim):
            line = next(ln for ln in text.splitlines() if c.text in ln)
            assert ("penalty" in line) == (c.sign == -1)
        assert sum("-criterion-" in ln for ln in text.splitlines()) == len(task.criteria(dim))
        assert task.task in text and task.requirement in text
        # the 8 sampled frames, in order, as JPEG data URLs
        assert [read_index(_decode(u)) for u in images] == [1, 4, 7, 10, 13, 16, 19, 22]
        assert body["model"] == "gpt-4o-mini"
    for dim, rec in recs.items():
        assert rec.scores == tuple(scripted[dim]) and rec.error is None and rec.complete
        assert (
            rec.usage["prompt_tokens"] == 11
            and rec.usage["completion_tokens"] == 7
            and rec.usage["calls"] == 1
        )
        # priced from LiteLLM's bundled table
        assert rec.usage["cost_usd"] > 0 and rec.judge == "llm:openai/gpt-4o-mini"
        assert f"{dim} looks fine" in rec.reasoning


async def test_per_criterion_mode_one_call_per_criterion(respx_mock, frames):
    task = make_task()

    def reply(body):
        text, images = _user_parts(body)
        assert len(images) == 8
        k = int(re.search(r"-criterion-(\d)", text).group(1))
        return json.dumps({"scores": [k % 2], "reasoning": "r"})

    ep = fake_openai_endpoint(respx_mock, [reply] * 3, api_base=API)
    rec = await ajudge_dimension(
        LLMJudge(ep.chat(), mode="per_criterion"), task, "scientific", frames, model="t2v"
    )
    assert ep.calls == 3 and rec.scores == (1, 0, 1) and rec.usage["calls"] == 3
    assert all(sum("-criterion-" in ln for ln in _user_parts(b)[0].splitlines()) == 1 for b in ep.requests)


async def test_invalid_reply_is_reasked_then_scored(respx_mock, frames):
    ep = fake_openai_endpoint(
        respx_mock,
        ["I think it is good.", '{"scores": [1, 0], "reasoning": "short"}', '{"scores": [1, 1, 0]}'],
        api_base=API,
    )
    rec = await ajudge_dimension(
        LLMJudge(ep.chat(), max_reasks=2), make_task(), "scientific", frames, model="m"
    )
    assert ep.calls == 3 and rec.scores == (1, 1, 0) and rec.error is None
    last = ep.requests[-1]["messages"]
    assert last[-1]["role"] == "user" and "3 criteria" in last[-1]["content"]  # the re-ask names the problem


@pytest.mark.parametrize(
    "bad",
    [
        '{"scores": [1, 0], "reasoning": "too short"}',
        '{"scores": [1, 2, 0], "reasoning": "out of range"}',
        '{"scores": ["yes", 1, 0]}',
        "no json at all",
    ],
)
async def test_still_invalid_after_reasks_is_unscored_never_zero(respx_mock, frames, bad):
    ep = fake_openai_endpoint(respx_mock, [bad] * 3, api_base=API)
    rec = await ajudge_dimension(
        LLMJudge(ep.chat(), max_reasks=2), make_task(), "scientific", frames, model="m"
    )
    assert ep.calls == 3
    assert rec.scores == (None, None, None) and rec.error_kind == "verdict" and "unscored" in rec.error
    assert rec.usage["calls"] == 3


async def test_payload_too_large_shrinks_images_and_retries(respx_mock, frames):
    ep = fake_openai_endpoint(respx_mock, [413, '{"scores": [1, 1]}'], api_base=API)
    # frames are already sized by the sampler: the judge starts shrinking from their real size
    rec = await ajudge_dimension(
        LLMJudge(ep.chat(), max_image_side=None), make_task(), "visual", frames, model="m"
    )
    assert rec.scores == (1, 1) and ep.calls == 2
    first = [Image.open(io.BytesIO(_decode(u))).size for u in _user_parts(ep.requests[0])[1]]
    second = [Image.open(io.BytesIO(_decode(u))).size for u in _user_parts(ep.requests[1])[1]]
    assert first == [(320, 240)] * 8 and second == [(160, 120)] * 8


async def test_rate_limits_server_errors_and_timeouts_are_retried(respx_mock, frames):
    ep = fake_openai_endpoint(
        respx_mock, [429, 500, httpx.ReadTimeout("slow"), '{"scores": [0, 1]}'], api_base=API
    )
    rec = await ajudge_dimension(LLMJudge(ep.chat(retries=3)), make_task(), "instruction", frames, model="m")
    assert ep.calls == 4 and rec.scores == (0, 1) and rec.error is None


async def test_exhausted_retries_and_auth_errors_leave_criteria_unscored(respx_mock, frames):
    ep = fake_openai_endpoint(respx_mock, [503, 503, 401], api_base=API)
    judge = LLMJudge(ep.chat(retries=1))
    rec = await ajudge_dimension(judge, make_task(), "visual", frames, model="m")
    assert ep.calls == 2 and rec.scores == (None, None) and rec.error_kind == "judge" and "503" in rec.error
    rec = await ajudge_dimension(judge, make_task(), "visual", frames, model="m")
    assert ep.calls == 3 and rec.scores == (None, None) and "401" in rec.error  # not retried


def test_check_verdict_rejects_answers_that_do_not_fit():
    from sepsis_sdk.judge import CriterionVerdict, Verdict

    rubric = make_task().rubric("visual")

    def v(*pairs, error=None):
        return Verdict(
            rubric="r",
            judge="j",
            verdicts=tuple(CriterionVerdict(criterion_id=i, score=s) for i, s in pairs),
            error=error,
        )

    assert check_verdict(v(("visual.1", 1), ("visual.2", 0)), rubric) == ((1, 0), None)
    assert check_verdict(v(("visual.2", 0), ("visual.1", 1)), rubric) == ((1, 0), None)  # by id, not position
    scores, err = check_verdict(v(("visual.1", 1)), rubric)
    assert scores == (1, None) and "visual.2 missing" in err
    scores, err = check_verdict(v(("visual.1", 1), ("visual.1", 0)), rubric)
    assert scores == (None, None) and "repeats" in err
    scores, err = check_verdict(v(("visual.1", 1), ("visual.9", 1)), rubric)
    assert scores == (None, None) and "not in rubric" in err
    assert check_verdict({"scores": [1, 1]}, rubric)[1] == "judge returned dict, not a Verdict"
    assert check_verdict(v(("visual.1", 1), ("visual.2", None), error="boom"), rubric) == ((1, None), "boom")


def test_two_llm_judges_grade_the_same_videos_with_agreement(respx_mock, tmp_path):
    bench = Benchmark(tasks=tuple(make_task(i) for i in (1, 2)))
    for i in (1, 2):
        synthesize_video(tmp_path / "v" / f"{i}.mp4", n_frames=16)

    def by_model(body):
        dim = _dimension_of(body)
        n = {"scientific": 3, "visual": 2, "instruction": 2}[dim]
        scores = [1] * n if body["model"] == "model-a" else [1] * (n - 1) + [0]
        return json.dumps({"scores": scores, "reasoning": "ok"})

    ep = fake_openai_endpoint(respx_mock, [by_model] * 12, api_base=API)
    judges = [LLMJudge(ep.chat("openai/model-a"), name="A"), LLMJudge(ep.chat("openai/model-b"), name="B")]
    out = tmp_path / "r.jsonl"
    rep = run_benchmark(bench, tmp_path / "v", judges, model="t2v", out=out, concurrency=4)
    assert rep.written == 12 and ep.calls == 12 and rep.judge_errors == 0
    from sepsis_sdk.microbench import agreement

    recs = read_records(out)
    rows = {(a.dimension): a for a in agreement(recs)}
    # per task: scientific 2 of 3 agree, visual 1 of 2, instruction 1 of 2
    assert rows["scientific"].n == 6 and rows["scientific"].percent == pytest.approx(100 * 4 / 6)
    assert rows["visual"].percent == pytest.approx(50.0) and rows["all"].n == 14
    by = {s.judge: s for s in summarize(recs, n_tasks=2)}
    # A: (1 + 0.5 - 0.5) + (0.5 + 0.5) + (1 - 1) = 2 of 3.5 ; B (penalties not fired): 1.5 + 0.5 + 1 = 3 of 3.5
    assert by["A"].overall == pytest.approx(100 * 2 / 3.5) and by["B"].overall == pytest.approx(100 * 3 / 3.5)
    assert by["A"].valid_tasks == by["B"].valid_tasks == 2 and by["A"].usage["prompt_tokens"] == 6 * 11


def _write_source(folder: Path, tasks: list[BenchTask]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for t in tasks:
        item: dict = {"index": t.index, "任务": t.task, "具体要求": t.requirement}
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


def test_cli_run_then_report_through_litellm(respx_mock, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from sepsis_sdk.cli import app

    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake")
    tasks = [make_task(i) for i in (1, 2, 3)]
    src = _write_source(tmp_path / "src", tasks)
    for i in (1, 2):
        synthesize_video(tmp_path / "v" / f"{i}.mp4", n_frames=16)
    (tmp_path / "v" / "3.webm").write_bytes(b"\x1a\x45\xdf\xa3broken")
    scripted = {"scientific": [1, 1, 0], "visual": [1, 0], "instruction": [1, 0]}
    ep = fake_openai_endpoint(respx_mock, [scores_reply(scripted)] * 6, api_base=API)
    out = tmp_path / "r.jsonl"
    args = [
        "microbench",
        "run",
        "--videos",
        str(tmp_path / "v"),
        "--model",
        "t2v",
        "--judge",
        "openai/gpt-4o-mini",
    ]
    args += ["--api-base", API, "--source", str(src), "--out", str(out), "--concurrency", "2"]
    res = CliRunner().invoke(app, [*args, "--tasks", "1"])
    assert res.exit_code == 0, res.output
    assert "3 verdicts written" in res.output and ep.calls == 3
    res = CliRunner().invoke(app, [*args, "--tasks", "1-3"])
    assert res.exit_code == 0, res.output
    assert "6 verdicts written, 3 already done" in res.output and "1 unreadable videos" in res.output
    assert ep.calls == 6
    res = CliRunner().invoke(app, args)  # rerun: nothing asked again
    assert res.exit_code == 0 and "0 verdicts written, 9 already done" in res.output and ep.calls == 6
    res = CliRunner().invoke(app, [*args, "--tasks", "one"])
    assert res.exit_code == 2 and "--tasks" in res.output
    res = CliRunner().invoke(
        app, ["microbench", "report", "--results", str(out), "--out", str(tmp_path / "rep"), "--n-tasks", "3"]
    )
    assert res.exit_code == 0, res.output
    # scientific (1 + 0.5) / 1.5, visual 0.5 / 1, instruction 1 / 1: pooled 3 / 3.5
    (s,) = summarize(read_records(out), n_tasks=3)
    assert s.valid_tasks == 2 and s.overall == pytest.approx(100 * 3 / 3.5)
    assert s.per_dimension["visual"] == pytest.approx(50.0)
    assert f"{100 * 3 / 3.5:.1f}" in (tmp_path / "rep" / "report.md").read_text()


async def test_recording_judge_records_calls():
    task = make_task()
    j = RecordingJudge(lambda r, e: [1] * len(r.criteria), name="rec", usage={"calls": 1})
    v = await j.ajudge(
        task.rubric("visual"), __import__("sepsis_sdk.judge", fromlist=["Evidence"]).Evidence(text="x")
    )
    assert v.scores == {"visual.1": 1, "visual.2": 1} and len(j.calls) == 1 and v.usage == {"calls": 1}
