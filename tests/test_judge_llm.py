"""LLMJudge: the MicroWorldBench protocol, validation, re-asks, unscored criteria, images, 413 shrinking."""

from __future__ import annotations

import base64
import io
import json

import pytest

from sepsis_sdk.errors import LLMCallError, UserError
from sepsis_sdk.judge import (
    Criterion,
    Evidence,
    Judge,
    LLMJudge,
    Rubric,
    extract_json_object,
    parse_scores,
)
from sepsis_sdk.llm import ChatResponse, Usage
from sepsis_sdk.testing import (
    FunctionChatModel,
    ScriptedChatModel,
    ScriptExhaustedError,
    fake_openai_endpoint,
)

RUBRIC = Rubric(
    name="task7.scientific",
    criteria=(
        Criterion(id="d1", text="Mitochondria are shown dividing", sign=1, weight=1.0),
        Criterion(id="d2", text="Cells have visible nuclei", sign=1, weight=0.5),
        Criterion(id="d3", text="Organelles float outside the membrane", sign=-1, weight=1.0),
    ),
    instructions="Judge the video frames.",
)


def _png(side: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (side, side // 2), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def _reply(scores, reasoning="because", **extra) -> str:
    return json.dumps({"scores": scores, "reasoning": reasoning, **extra})


def test_llm_judge_is_a_judge():
    assert isinstance(LLMJudge(ScriptedChatModel([])), Judge)


def test_grouped_protocol_one_call_lists_positive_and_penalty_points():
    model = ScriptedChatModel([_reply([1, 0, 1], "d3 shows organelles outside")])
    verdict = LLMJudge(model).judge(RUBRIC, Evidence(text="A cell video"))
    assert verdict.scores == {"d1": 1, "d2": 0, "d3": 1}
    assert verdict.complete and verdict.error is None and verdict.n_unscored == 0
    assert verdict.reasoning == "d3 shows organelles outside"
    assert verdict.verdicts[0].reason == "d3 shows organelles outside"
    assert verdict.judge == "llm:scripted" and verdict.rubric == "task7.scientific"
    assert verdict.usage["calls"] == 1
    (call,) = model.calls
    prompt = call.messages[1]["content"]
    assert "1. [positive] Mitochondria are shown dividing" in prompt
    assert "3. [penalty (score 1 if the evidence SHOWS this problem)] Organelles float" in prompt
    assert "exactly 3 score(s)" in prompt and "A cell video" in prompt and "Judge the video frames." in prompt
    assert call.messages[0]["role"] == "system"


def test_wrong_length_is_reasked_then_scored():
    model = ScriptedChatModel([_reply([1, 0]), "```json\n" + _reply([0, 1, 0]) + "\n```"])
    verdict = LLMJudge(model, max_reasks=2).judge(RUBRIC, Evidence(text="x"))
    assert verdict.scores == {"d1": 0, "d2": 1, "d3": 0} and verdict.complete
    assert len(model.calls) == 2
    reask = model.calls[1].messages
    assert reask[-2] == {"role": "assistant", "content": _reply([1, 0])}
    assert "2 values but there are 3 criteria" in reask[-1]["content"]
    assert verdict.usage["calls"] == 2


def test_wrong_length_after_max_reasks_leaves_criteria_unscored_not_zero():
    model = ScriptedChatModel([_reply([1, 0]), _reply([1, 0, 1, 1]), _reply([1])])
    verdict = LLMJudge(model, max_reasks=2).judge(RUBRIC, Evidence(text="x"))
    assert verdict.scores == {"d1": None, "d2": None, "d3": None}
    assert verdict.n_unscored == 3 and not verdict.complete
    assert verdict.error is not None
    assert "invalid judge reply after 3 attempt(s)" in verdict.error and "[d1, d2, d3]" in verdict.error
    assert all(v.reason.startswith("unscored:") for v in verdict.verdicts)
    assert model.remaining == 0


@pytest.mark.parametrize(
    "bad, message",
    [
        ("no json here", "no JSON object"),
        (json.dumps({"scores": [1, 2, 0]}), "score 2 must be 0 or 1"),
        (json.dumps({"scores": ["1", 0, 0]}), "score 1 must be 0 or 1"),
        (json.dumps({"score": [1, 0, 0]}), '"scores" list'),
        (json.dumps([1, 0, 0]), "JSON object"),
    ],
)
def test_invalid_replies_are_rejected(bad, message):
    with pytest.raises(ValueError, match=message):
        parse_scores(bad, 3)


def test_parse_scores_accepts_bools_floats_and_reasons():
    scores, reasoning, reasons = parse_scores(
        'Sure: {"scores": [true, 0.0, 1], "reasoning": "r", "reasons": ["a", "b", "c"]} trailing', 3
    )
    assert scores == [1, 0, 1] and reasoning == "r" and reasons == ["a", "b", "c"]
    assert extract_json_object('```\n{"a": 1}\n```') == {"a": 1}


def test_per_criterion_reasons_are_used_when_given():
    model = ScriptedChatModel([_reply([1, 1, 0], reasons=["saw it", "nuclei", "inside"])])
    verdict = LLMJudge(model).judge(RUBRIC, Evidence(text="x"))
    assert [v.reason for v in verdict.verdicts] == ["saw it", "nuclei", "inside"]


def test_per_criterion_mode_one_call_each():
    def fn(messages, tools):
        text = messages[1]["content"]
        return json.dumps({"score": 1 if "nuclei" in text else 0, "reasoning": "checked"})

    model = FunctionChatModel(fn)
    verdict = LLMJudge(model, mode="per_criterion").judge(RUBRIC, Evidence(text="x"))
    assert verdict.scores == {"d1": 0, "d2": 1, "d3": 0}
    assert len(model.calls) == 3 and verdict.usage["calls"] == 3
    assert all("Criteria (1):" in c.messages[1]["content"] for c in model.calls)


async def test_per_criterion_async_partial_failure_is_isolated():
    replies = {"d1": ['{"scores": [1]}'], "d2": ["bad", "bad"], "d3": ['{"scores": [0]}']}

    def fn(messages, tools):
        text = json.dumps(messages)
        for cid, crit in (("d1", "Mitochondria"), ("d2", "nuclei"), ("d3", "Organelles")):
            if crit in text:
                return replies[cid].pop(0)
        raise AssertionError("unknown criterion")

    verdict = await LLMJudge(FunctionChatModel(fn), mode="per_criterion", max_reasks=1).ajudge(
        RUBRIC, Evidence()
    )
    assert verdict.scores == {"d1": 1, "d2": None, "d3": 0}
    assert verdict.error is not None and "[d2]" in verdict.error and "d1" not in verdict.error


async def test_async_grouped_with_reask():
    model = ScriptedChatModel(["{}", _reply([0, 0, 1])])
    verdict = await LLMJudge(model).ajudge(RUBRIC, Evidence(text="x"))
    assert verdict.scores == {"d1": 0, "d2": 0, "d3": 1}


def test_images_are_attached_as_base64_data_urls():
    img = _png(64)
    model = ScriptedChatModel([_reply([1, 1, 0])])
    LLMJudge(model, image_detail="low").judge(
        RUBRIC, Evidence(text="x", images=[img, img], image_mime="image/png")
    )
    content = model.calls[0].messages[1]["content"]
    assert content[0]["type"] == "text" and "2 image(s) are attached" in content[0]["text"]
    parts = [p for p in content if p["type"] == "image_url"]
    assert len(parts) == 2 and parts[0]["image_url"]["detail"] == "low"
    url = parts[0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == img  # small enough: sent unchanged


def test_large_images_are_scaled_to_max_side():
    from PIL import Image

    model = ScriptedChatModel([_reply([1, 1, 0])])
    LLMJudge(model, max_image_side=100).judge(RUBRIC, Evidence(images=[_png(400)], image_mime="image/png"))
    url = model.calls[0].messages[1]["content"][1]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as im:
        assert im.size == (100, 50)


def _image_side(messages) -> int:
    from PIL import Image

    url = messages[1]["content"][1]["image_url"]["url"]
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as im:
        return max(im.size)


def test_payload_too_large_shrinks_images_and_retries():
    too_large = LLMCallError("litellm.APIError: Request too large", model="m", status_code=413)
    model = ScriptedChatModel([too_large, too_large, _reply([1, 0, 0])])
    verdict = LLMJudge(model, max_image_side=400).judge(
        RUBRIC, Evidence(images=[_png(400)], image_mime="image/png")
    )
    assert verdict.scores == {"d1": 1, "d2": 0, "d3": 0}
    assert [_image_side(c.messages) for c in model.calls] == [400, 200, 100]
    assert "images shrunk 2x to side 100" in verdict.reasoning


def test_shrinking_starts_from_the_real_image_size_not_the_limit():
    too_large = LLMCallError("Request too large", model="m", status_code=413)
    model = ScriptedChatModel([too_large, _reply([1, 0, 0])])
    LLMJudge(model, max_image_side=1024).judge(RUBRIC, Evidence(images=[_png(300)], image_mime="image/png"))
    # a 300-px frame under a 1024 limit: the first shrink must really halve it
    assert [_image_side(c.messages) for c in model.calls] == [300, 150]


def test_payload_too_large_gives_up_at_min_side():
    err = LLMCallError("request too large", model="m", status_code=413)
    model = ScriptedChatModel([err, err, err])
    verdict = LLMJudge(model, max_image_side=256, min_image_side=64).judge(
        RUBRIC, Evidence(images=[_png(256)])
    )
    assert verdict.n_unscored == 3 and "judge call failed" in verdict.error
    assert len(model.calls) == 3  # 256 -> 128 -> 64 -> stop


def test_provider_failure_is_unscored_but_misuse_raises():
    failing = ScriptedChatModel([LLMCallError("boom", model="m", status_code=503, attempts=4)])
    verdict = LLMJudge(failing).judge(RUBRIC, Evidence())
    assert verdict.n_unscored == 3 and "boom" in verdict.error
    with pytest.raises(ScriptExhaustedError):
        LLMJudge(ScriptedChatModel([])).judge(RUBRIC, Evidence())
    with pytest.raises(UserError):
        LLMJudge(ScriptedChatModel([]), mode="sometimes")


def test_usage_is_summed_into_the_verdict():
    replies = [
        ChatResponse(
            text="nope", usage=Usage(prompt_tokens=100, completion_tokens=5, cost_usd=0.01, calls=1)
        ),
        ChatResponse(
            text=_reply([1, 1, 1]),
            usage=Usage(prompt_tokens=120, completion_tokens=9, cost_usd=0.02, calls=1),
        ),
    ]
    verdict = LLMJudge(ScriptedChatModel(replies)).judge(RUBRIC, Evidence())
    assert verdict.usage["prompt_tokens"] == 220 and verdict.usage["completion_tokens"] == 14
    assert verdict.usage["cost_usd"] == pytest.approx(0.03) and verdict.usage["calls"] == 2


# ------------------------------------------------------------------ through LiteLLM's HTTP path


def test_judge_through_litellm_http_with_413_and_reask(respx_mock):
    ep = fake_openai_endpoint(respx_mock, [413, _reply([1, 0]), _reply([1, 0, 0])])
    judge = LLMJudge(ep.chat(), max_image_side=200)
    verdict = judge.judge(RUBRIC, Evidence(text="frames", images=[_png(200)], image_mime="image/png"))
    assert verdict.scores == {"d1": 1, "d2": 0, "d3": 0}
    assert ep.calls == 3
    sides = [_image_side(body["messages"]) for body in ep.requests]
    assert sides == [200, 100, 100]
    assert verdict.usage["calls"] == 2 and verdict.usage["prompt_tokens"] == 22


async def test_judge_async_through_litellm_unscored_after_reasks(respx_mock):
    ep = fake_openai_endpoint(respx_mock, [_reply([1]), _reply([1, 1])])
    verdict = await LLMJudge(ep.chat(), max_reasks=1).ajudge(RUBRIC, Evidence(text="x"))
    assert verdict.n_unscored == 3 and "attempt(s)" in verdict.error
    assert ep.calls == 2


def test_json_schema_response_format_is_opt_in_for_hosted_models(respx_mock):
    ep = fake_openai_endpoint(respx_mock, [_reply([1, 0, 0]), _reply([1, 0, 0])])
    LLMJudge(ep.chat()).judge(RUBRIC, Evidence(text="x"))
    assert "response_format" not in ep.requests[0]
    LLMJudge(ep.chat(), json_schema=True).judge(RUBRIC, Evidence(text="x"))
    fmt = ep.requests[1]["response_format"]
    assert fmt["type"] == "json_schema"
    scores = fmt["json_schema"]["schema"]["properties"]["scores"]
    assert scores["minItems"] == scores["maxItems"] == 3 and scores["items"] == {"enum": [0, 1]}


def test_small_images_keep_their_format_and_bad_bytes_are_a_judge_error():
    from PIL import Image

    from sepsis_sdk.errors import JudgeError
    from sepsis_sdk.judge import fit_image

    buf = io.BytesIO()
    Image.new("RGB", (10, 10)).save(buf, format="WEBP")
    data, mime = fit_image(buf.getvalue(), 64)
    assert data == buf.getvalue() and mime == "image/webp"
    with pytest.raises(JudgeError, match="cannot be decoded"):
        fit_image(b"not an image", 64)
