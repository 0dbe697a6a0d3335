"""LiteLLMChat end to end through LiteLLM's real HTTP path, mocked with respx (no network)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from pydantic import BaseModel, Field

from sepsis_sdk.errors import LLMCallError, LLMOutputError, RealRequestBlockedError, UserError
from sepsis_sdk.llm import Backoff, LiteLLMChat, Usage, default_structured_mode
from sepsis_sdk.testing import block_real_requests, fake_openai_endpoint, tool_call

USER = [{"role": "user", "content": "hello"}]
SIM_TOOL = {
    "type": "function",
    "function": {
        "name": "simulation",
        "description": "simulate actions",
        "parameters": {
            "type": "object",
            "properties": {"actions": {"type": "array", "items": {"type": "string"}}},
        },
    },
}


class Plan(BaseModel):
    fluid: int = Field(ge=0, le=4)
    vaso: int = Field(ge=0, le=4)
    rationale: str = ""


# ------------------------------------------------------------------ plain text


def test_text_sync_records_usage_and_cost(respx_mock):
    ep = fake_openai_endpoint(respx_mock, ["Hi there"])
    chat = ep.chat(temperature=0)
    reply = chat.complete(USER)
    assert reply.text == "Hi there"
    assert reply.finish_reason == "stop"
    assert reply.usage.prompt_tokens == 11 and reply.usage.completion_tokens == 7 and reply.usage.calls == 1
    # gpt-4o-mini is in LiteLLM's bundled price table: 0.15 $/M input, 0.6 $/M output.
    assert reply.usage.cost_usd == pytest.approx(11 * 0.15e-6 + 7 * 0.6e-6)
    assert reply.usage.latency_s > 0
    body = ep.requests[0]
    assert body["messages"] == USER and body["model"] == "gpt-4o-mini" and body["temperature"] == 0
    assert chat.usage.calls == 1 and chat.usage.total_tokens == 18


def test_unknown_model_cost_is_zero(respx_mock):
    ep = fake_openai_endpoint(respx_mock, ["ok"], model="my-finetune")
    reply = ep.chat("openai/my-finetune").complete(USER)
    assert reply.text == "ok" and reply.usage.cost_usd == 0.0 and reply.usage.total_tokens == 18


async def test_text_async(respx_mock):
    ep = fake_openai_endpoint(respx_mock, ["one", "two"])
    chat = ep.chat()
    replies = await asyncio.gather(chat.acomplete(USER), chat.acomplete(USER))
    assert sorted(r.text for r in replies) == ["one", "two"]
    assert chat.usage.calls == 2 and ep.calls == 2


# ------------------------------------------------------------------ tool calls


def test_tool_calls_sync_parse_arguments(respx_mock):
    ep = fake_openai_endpoint(
        respx_mock,
        [
            [
                tool_call("simulation", {"actions": ["[0,1]", "[1,2]"]}),
                tool_call("prescription", {"vasopressor": 1, "iv_fluid": 3}),
            ]
        ],
    )
    reply = ep.chat().complete(USER, tools=[SIM_TOOL], tool_choice="auto")
    assert [c.name for c in reply.tool_calls] == ["simulation", "prescription"]
    assert reply.tool_calls[0].arguments == {"actions": ["[0,1]", "[1,2]"]}
    assert reply.tool_calls[1].arguments == {"vasopressor": 1, "iv_fluid": 3}
    assert all(c.error is None for c in reply.tool_calls)
    assert reply.finish_reason == "tool_calls"
    assert ep.requests[0]["tools"][0]["function"]["name"] == "simulation"
    assert ep.requests[0]["tool_choice"] == "auto"
    # The reply round-trips as an assistant message.
    msg = reply.as_message()
    assert msg["tool_calls"][1]["function"]["name"] == "prescription"


async def test_tool_call_malformed_arguments_kept_and_reported(respx_mock):
    ep = fake_openai_endpoint(respx_mock, [tool_call("prescription", '{"vasopressor": 1, "iv_fluid": ')])
    reply = await ep.chat().acomplete(USER, tools=[SIM_TOOL])
    (call,) = reply.tool_calls
    assert call.arguments == {}
    assert call.raw_arguments == '{"vasopressor": 1, "iv_fluid": '
    assert call.error is not None and "not valid JSON" in call.error


def test_tool_call_non_object_arguments_reported(respx_mock):
    ep = fake_openai_endpoint(respx_mock, [tool_call("f", "[1, 2]")])
    (call,) = ep.chat().complete(USER, tools=[SIM_TOOL]).tool_calls
    assert call.error is not None and "JSON object" in call.error


# ------------------------------------------------------------------ structured (instructor)


def test_structured_tools_mode_sync(respx_mock):
    ep = fake_openai_endpoint(respx_mock, [Plan(fluid=2, vaso=1, rationale="MAP low")])
    chat = ep.chat()
    assert chat.structured_mode == "tools"
    plan = chat.structured(USER, Plan)
    assert plan == Plan(fluid=2, vaso=1, rationale="MAP low")
    body = ep.requests[0]
    assert body["tool_choice"]["function"]["name"] == "Plan"
    assert body["tools"][0]["function"]["name"] == "Plan"
    assert chat.last_usage.calls == 1


async def test_structured_reasks_on_malformed_then_validates_async(respx_mock):
    ep = fake_openai_endpoint(
        respx_mock,
        [
            tool_call("Plan", '{"fluid": 2, "vaso": '),  # malformed JSON
            tool_call("Plan", {"fluid": 9, "vaso": 0}),  # out of range
            Plan(fluid=3, vaso=0),
        ],
    )
    chat = ep.chat()
    plan = await chat.astructured(USER, Plan)
    assert plan == Plan(fluid=3, vaso=0)
    assert ep.calls == 3
    assert chat.last_usage.calls == 3 and chat.last_usage.prompt_tokens == 33
    # instructor fed the validation error back to the model.
    assert "fluid" in json.dumps(ep.requests[2]["messages"])


def test_structured_gives_up_with_llm_output_error(respx_mock):
    bad = tool_call("Plan", {"fluid": 7, "vaso": 0})
    ep = fake_openai_endpoint(respx_mock, [bad, bad])
    with pytest.raises(LLMOutputError) as info:
        ep.chat(max_reasks=1).structured(USER, Plan)
    assert info.value.attempts == 2
    assert info.value.raw == json.dumps({"fluid": 7, "vaso": 0})
    assert "Plan" in str(info.value)


def test_structured_json_mode_for_vllm(respx_mock):
    ep = fake_openai_endpoint(respx_mock, ['{"fluid": 1, "vaso": 0}'], model="Qwen/Qwen3-4B")
    chat = LiteLLMChat("hosted_vllm/Qwen/Qwen3-4B", api_base=ep.api_base, backoff=0.0)
    assert chat.structured_mode == "json"
    assert chat.structured(USER, Plan) == Plan(fluid=1, vaso=0)
    body = ep.requests[0]
    assert body["response_format"] == {"type": "json_object"}
    assert "tools" not in body
    assert "json_schema" in json.dumps(body["messages"][0]) or "fluid" in body["messages"][0]["content"]


def test_structured_call_error_is_not_wrapped(respx_mock):
    ep = fake_openai_endpoint(respx_mock, [401])
    with pytest.raises(LLMCallError) as info:
        ep.chat().structured(USER, Plan)
    assert info.value.status_code == 401 and info.value.attempts == 1


def test_default_structured_mode_table():
    assert default_structured_mode("openai/gpt-4o-mini") == "tools"
    assert default_structured_mode("gpt-4o-mini") == "tools"
    assert default_structured_mode("anthropic/claude-sonnet-4") == "tools"
    assert default_structured_mode("ollama/llama3.2") == "json"
    assert default_structured_mode("hosted_vllm/Qwen/Qwen3-4B") == "json"
    assert default_structured_mode("local/smollm2") == "json_schema"
    with pytest.raises(UserError):
        LiteLLMChat("openai/x", structured_mode="xml")


# ------------------------------------------------------------------ faults and retries


def test_429_then_success_is_retried(respx_mock):
    sleeps: list[float] = []
    ep = fake_openai_endpoint(respx_mock, [429, "after rate limit"])
    chat = ep.chat(backoff=Backoff(base_s=0.25, cap_s=10, jitter=False), sleep=sleeps.append)
    assert chat.complete(USER).text == "after rate limit"
    assert ep.calls == 2 and sleeps == [0.25]


def test_retry_after_header_is_honoured(respx_mock):
    sleeps: list[float] = []
    limited = httpx.Response(429, headers={"retry-after": "3"}, json={"error": {"message": "slow down"}})
    ep = fake_openai_endpoint(respx_mock, [limited, "ok"])
    chat = ep.chat(backoff=Backoff(base_s=0.1, cap_s=10, jitter=False), sleep=sleeps.append)
    assert chat.complete(USER).text == "ok"
    assert sleeps == [3.0]


def test_backoff_is_exponential_with_jitter_and_cap():
    b = Backoff(base_s=1.0, cap_s=5.0, jitter=False)
    assert [b.delay(i) for i in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    import random

    jittered = [Backoff(base_s=1.0, cap_s=100).delay(3, rng=random.Random(i)) for i in range(50)]
    assert all(4.0 <= d <= 8.0 for d in jittered) and len(set(jittered)) > 40


def test_500_exhausts_retries(respx_mock):
    ep = fake_openai_endpoint(respx_mock, [500, 502, 503])
    sleeps: list[float] = []
    with pytest.raises(LLMCallError) as info:
        ep.chat(retries=2, backoff=Backoff(base_s=0.5, jitter=False), sleep=sleeps.append).complete(USER)
    assert info.value.attempts == 3 and info.value.status_code == 503
    assert ep.calls == 3 and sleeps == [0.5, 1.0]
    assert "openai/gpt-4o-mini" in str(info.value)


def test_500_then_success(respx_mock):
    ep = fake_openai_endpoint(respx_mock, [500, "recovered"])
    assert ep.chat().complete(USER).text == "recovered"
    assert ep.calls == 2


async def test_timeout_is_retried_async(respx_mock):
    ep = fake_openai_endpoint(respx_mock, [httpx.ReadTimeout("too slow"), "in time"])
    waits: list[float] = []

    async def fake_sleep(s: float) -> None:
        waits.append(s)

    chat = ep.chat(asleep=fake_sleep, backoff=Backoff(base_s=0.5, jitter=False))
    reply = await chat.acomplete(USER)
    assert reply.text == "in time" and ep.calls == 2 and waits == [0.5]


def test_timeout_exhausted_raises_with_context(respx_mock):
    ep = fake_openai_endpoint(respx_mock, [httpx.ConnectTimeout("t1"), httpx.ReadTimeout("t2")])
    with pytest.raises(LLMCallError) as info:
        ep.chat(retries=1).complete(USER)
    assert info.value.attempts == 2 and "Timeout" in str(info.value)


@pytest.mark.parametrize("status", [400, 401, 404])
def test_client_errors_are_not_retried(respx_mock, status):
    ep = fake_openai_endpoint(respx_mock, [status, "never reached"])
    with pytest.raises(LLMCallError) as info:
        ep.chat(retries=3).complete(USER)
    assert info.value.status_code == status and info.value.attempts == 1
    assert ep.calls == 1


def test_exhausted_fake_endpoint_fails_loudly(respx_mock):
    ep = fake_openai_endpoint(respx_mock, ["only one"])
    chat = ep.chat()
    chat.complete(USER)
    with pytest.raises(LLMCallError, match="script exhausted"):
        chat.complete(USER)


# ------------------------------------------------------------------ cache


def test_disk_cache_replays_identical_requests(respx_mock, tmp_path):
    ep = fake_openai_endpoint(respx_mock, ["cached answer", tool_call("simulation", {"actions": []})])
    chat = ep.chat(cache_dir=tmp_path / "cache", temperature=0)
    first = chat.complete(USER)
    second = chat.complete(USER)
    assert first.text == second.text == "cached answer"
    assert ep.calls == 1
    assert second.usage == Usage(calls=1, cached_calls=1)
    assert chat.usage.calls == 2 and chat.usage.cached_calls == 1 and chat.usage.prompt_tokens == 11
    files = list((tmp_path / "cache").glob("*/*.json"))
    assert len(files) == 1 and "sk-fake" not in files[0].read_text()
    # A different request (tools) misses; a new object on the same folder hits.
    chat.complete(USER, tools=[SIM_TOOL])
    assert ep.calls == 2
    again = ep.chat(cache_dir=tmp_path / "cache", temperature=0).complete(USER, tools=[SIM_TOOL])
    assert again.tool_calls[0].name == "simulation" and ep.calls == 2
    # Changing a sampling parameter changes the key.
    ep.replies.append("hot")
    assert ep.chat(cache_dir=tmp_path / "cache", temperature=1).complete(USER).text == "hot"
    # Cache hits are not requests: served while real requests are blocked and respx is off.
    respx_mock.stop()
    with block_real_requests():
        assert ep.chat(cache_dir=tmp_path / "cache", temperature=0).complete(USER).text == "cached answer"
        with pytest.raises(RealRequestBlockedError):
            ep.chat(cache_dir=tmp_path / "cache", temperature=0.5).complete(USER)


async def test_cache_serves_structured_and_async(respx_mock, tmp_path):
    ep = fake_openai_endpoint(respx_mock, [Plan(fluid=4, vaso=4)])
    chat = ep.chat(cache_dir=tmp_path)
    assert await chat.astructured(USER, Plan) == Plan(fluid=4, vaso=4)
    assert chat.structured(USER, Plan) == Plan(fluid=4, vaso=4)
    assert ep.calls == 1 and chat.last_usage.cached_calls == 1


# ------------------------------------------------------------------ guard and injection


def test_guard_blocks_unmocked_requests():
    chat = LiteLLMChat("openai/gpt-4o-mini", api_base="http://nothing.invalid/v1", api_key="sk-x")
    with block_real_requests(), pytest.raises(RealRequestBlockedError, match="openai/gpt-4o-mini"):
        chat.complete(USER)
    with block_real_requests(), pytest.raises(RealRequestBlockedError):
        asyncio.run(chat.acomplete(USER))
    assert chat.usage.calls == 0


def test_guard_lets_respx_mocks_and_injected_completions_through(respx_mock):
    ep = fake_openai_endpoint(respx_mock, ["mocked"])
    with block_real_requests():
        assert ep.chat().complete(USER).text == "mocked"
        injected = LiteLLMChat(
            "openai/gpt-4o-mini", completion=lambda **kw: {"choices": [{"message": {"content": "fake"}}]}
        )
        assert injected.complete(USER).text == "fake"


def test_injected_completion_receives_the_request():
    seen = []

    def completion(**kw):
        seen.append(kw)
        return {
            "choices": [{"message": {"content": "x"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 2, "completion_tokens": 1},
        }

    chat = LiteLLMChat("openai/gpt-4o-mini", completion=completion, temperature=0.2, timeout=5)
    reply = chat.complete(USER, max_tokens=10)
    assert reply.text == "x" and reply.usage.total_tokens == 3
    assert seen[0]["temperature"] == 0.2 and seen[0]["max_tokens"] == 10 and seen[0]["timeout"] == 5
    assert "max_retries" not in seen[0]  # only set for LiteLLM's own transport


def test_reply_without_choices_raises_output_error():
    chat = LiteLLMChat("openai/x", completion=lambda **kw: {"choices": []})
    with pytest.raises(LLMOutputError, match="no choices"):
        chat.complete(USER)


def test_bad_arguments_are_user_errors():
    with pytest.raises(UserError):
        LiteLLMChat("")
    with pytest.raises(UserError):
        LiteLLMChat("openai/x", retries=-1)
    with pytest.raises(UserError):
        LiteLLMChat("openai/x", completion=lambda **kw: None).complete([])


def test_structured_md_json_mode_accepts_fenced_json(respx_mock):
    ep = fake_openai_endpoint(respx_mock, ['Here you go:\n```json\n{"fluid": 0, "vaso": 3}\n```'])
    chat = ep.chat(structured_mode="md_json")
    assert chat.structured(USER, Plan) == Plan(fluid=0, vaso=3)
    assert "tools" not in ep.requests[0]


def test_structured_mode_can_be_overridden_per_call(respx_mock):
    ep = fake_openai_endpoint(respx_mock, ['{"fluid": 1, "vaso": 1}'])
    assert ep.chat().structured(USER, Plan, mode="json") == Plan(fluid=1, vaso=1)
    assert ep.requests[0]["response_format"] == {"type": "json_object"}


def test_malformed_response_body_and_connection_errors_are_retried(respx_mock):
    broken = httpx.Response(200, content=b"{not json", headers={"content-type": "application/json"})
    ep = fake_openai_endpoint(
        respx_mock, [broken, "after broken body", httpx.ConnectError("refused"), "after refused"]
    )
    chat = ep.chat()
    assert chat.complete(USER).text == "after broken body"
    assert chat.complete(USER).text == "after refused"
    assert ep.calls == 4 and chat.usage.calls == 2


def test_empty_choices_from_the_server_is_an_output_error(respx_mock):
    empty = httpx.Response(
        200, json={"id": "x", "object": "chat.completion", "created": 1, "model": "m", "choices": []}
    )
    ep = fake_openai_endpoint(respx_mock, [empty])
    with pytest.raises(LLMOutputError, match="no choices"):
        ep.chat().complete(USER)


# ------------------------------------------------------------------ usage travels with the reply


def test_structured_response_carries_its_own_usage(respx_mock):
    from sepsis_sdk.llm import StructuredResponse, call_structured

    ep = fake_openai_endpoint(respx_mock, [tool_call("Plan", {"fluid": 9, "vaso": 0}), Plan(fluid=1, vaso=1)])
    chat = ep.chat()
    chat.usage = Usage(prompt_tokens=1000, calls=7)  # other calls' history must not leak into this reply
    reply = call_structured(chat, USER, Plan)
    assert isinstance(reply, StructuredResponse) and reply.value == Plan(fluid=1, vaso=1)
    assert reply.usage.calls == 2 and reply.usage.prompt_tokens == 22  # both attempts, this call only
    assert chat.last_usage == reply.usage and chat.usage.prompt_tokens == 1022


async def test_astructured_response_usage(respx_mock):
    ep = fake_openai_endpoint(respx_mock, [Plan(fluid=2, vaso=0)])
    reply = await ep.chat().astructured_response(USER, Plan)
    assert reply.value == Plan(fluid=2, vaso=0) and reply.usage.calls == 1 and reply.usage.prompt_tokens == 11


def test_llm_modules_import_each_other_in_one_direction_only():
    """The former circle llm/_litellm <-> llm/_local goes through llm/_import now."""
    import ast
    from pathlib import Path

    import sepsis_sdk.llm as llm

    root = Path(llm.__file__).parent

    def imports(name: str) -> set[str]:
        tree = ast.parse((root / f"{name}.py").read_text())
        return {
            n.module.rsplit(".", 1)[-1]
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("sepsis_sdk.llm.")
        }

    assert "_local" in imports("_litellm") and "_litellm" not in imports("_local")
    assert imports("_import") == set()
