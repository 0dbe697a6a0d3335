"""sepsis_sdk.testing: scripted and function fakes, the guard, the opt-in pytest plugin."""

from __future__ import annotations

import asyncio
import importlib.util
import sys

import pytest
from pydantic import BaseModel

from sepsis_sdk.errors import LLMOutputError, RealRequestBlockedError, UserError
from sepsis_sdk.llm import ChatModel, ChatResponse, ToolCall, Usage
from sepsis_sdk.testing import (
    FunctionChatModel,
    ScriptedChatModel,
    ScriptExhaustedError,
    allow_real_requests,
    block_real_requests,
    real_requests_allowed,
    set_real_requests_allowed,
    tool_call,
)

USER = [{"role": "user", "content": "go"}]


class Choice(BaseModel):
    action: int
    why: str = ""


def test_fakes_satisfy_the_chat_model_protocol():
    assert isinstance(ScriptedChatModel([]), ChatModel)
    assert isinstance(FunctionChatModel(lambda m, t: "x"), ChatModel)


def test_scripted_model_replies_in_order_and_records_calls():
    model = ScriptedChatModel(
        [
            "plain",
            tool_call("simulation", {"actions": ["[0,1]"]}, id="c1"),
            {"tool_calls": [{"tool": "a", "arguments": {"x": 1}}, {"name": "b"}], "text": "thinking"},
            ChatResponse(text="full", usage=Usage(prompt_tokens=3, completion_tokens=2, calls=1)),
        ],
        name="doctor",
    )
    tools = [{"type": "function", "function": {"name": "simulation"}}]
    assert model.complete(USER).text == "plain"
    r2 = model.complete(USER, tools=tools, tool_choice="auto", temperature=0)
    assert r2.tool_calls == [ToolCall("c1", "simulation", {"actions": ["[0,1]"]}, '{"actions": ["[0,1]"]}')]
    r3 = model.complete(USER)
    assert (
        r3.text == "thinking"
        and [c.name for c in r3.tool_calls] == ["a", "b"]
        and r3.tool_calls[1].arguments == {}
    )
    assert model.complete(USER).usage.total_tokens == 5
    assert model.remaining == 0
    assert model.calls[1].tools == tools and model.calls[1].tool_choice == "auto"
    assert model.calls[1].kwargs == {"temperature": 0}
    assert model.messages[0] == USER and model.calls[0].last_user_text == "go"
    assert model.usage.calls == 4 and model.usage.prompt_tokens == 3


def test_scripted_model_raises_clearly_when_exhausted():
    model = ScriptedChatModel(["only"], name="short")
    model.complete(USER)
    with pytest.raises(
        ScriptExhaustedError, match=r"'short' ran out of replies: call #2 .* holds 1; last user message: 'go'"
    ):
        model.complete(USER)
    with pytest.raises(ScriptExhaustedError):
        asyncio.run(model.acomplete(USER))


def test_script_can_inject_exceptions():
    model = ScriptedChatModel([TimeoutError("slow"), "after"])
    with pytest.raises(TimeoutError):
        model.complete(USER)
    assert model.complete(USER).text == "after"


def test_recorded_messages_are_copies():
    msgs = [{"role": "user", "content": "a"}]
    model = ScriptedChatModel(["x"])
    model.complete(msgs)
    msgs[0]["content"] = "changed"
    assert model.calls[0].messages[0]["content"] == "a"


def test_structured_from_objects_json_dicts_and_tool_calls():
    model = ScriptedChatModel(
        [Choice(action=3), '{"action": 4, "why": "w"}', {"action": 5}, tool_call("Choice", {"action": 6})]
    )
    assert [model.structured(USER, Choice).action for _ in range(4)] == [3, 4, 5, 6]
    assert all(c.kind == "structured" and c.response_model is Choice for c in model.calls)


def test_structured_reasks_then_raises_output_error():
    model = ScriptedChatModel(['{"action": "x"}', "not json", '{"action": 1}'])
    assert model.structured(USER, Choice) == Choice(action=1)
    assert "failed validation" in model.calls[2].messages[-1]["content"]
    bad = ScriptedChatModel(['{"nope": 1}', '{"nope": 2}'], max_reasks=1)
    with pytest.raises(LLMOutputError) as info:
        bad.structured(USER, Choice)
    assert info.value.attempts == 2 and info.value.raw == '{"nope": 2}'


async def test_async_structured_and_complete():
    model = ScriptedChatModel([Choice(action=2), "hi"])
    assert (await model.astructured(USER, Choice)).action == 2
    assert (await model.acomplete(USER)).text == "hi"


def test_function_model_sees_messages_and_tools():
    seen = []

    def fn(messages, tools):
        seen.append((messages[-1]["content"], tools))
        return tool_call("prescription", {"vasopressor": 0, "iv_fluid": len(messages)})

    model = FunctionChatModel(fn)
    reply = model.complete(USER + USER, tools=[{"type": "function", "function": {"name": "prescription"}}])
    assert reply.tool_calls[0].arguments == {"vasopressor": 0, "iv_fluid": 2}
    assert seen[0][1][0]["function"]["name"] == "prescription"


async def test_function_model_async_fn():
    async def fn(messages, tools):
        await asyncio.sleep(0)
        return Choice(action=len(messages))

    model = FunctionChatModel(fn)
    assert (await model.astructured(USER, Choice)).action == 1
    with pytest.raises(UserError, match="async methods"):  # a sync call inside a running loop
        model.structured(USER, Choice)
    with pytest.raises(UserError):
        FunctionChatModel("nope")  # type: ignore[arg-type]


def test_function_model_async_fn_from_sync_code():
    async def fn(messages, tools):
        return "from coroutine"

    assert FunctionChatModel(fn).complete(USER).text == "from coroutine"


def test_unknown_reply_shapes_are_user_errors():
    with pytest.raises(UserError):
        ScriptedChatModel([{"weird": 1}]).complete(USER)
    with pytest.raises(UserError):
        ScriptedChatModel([3.5]).complete(USER)  # type: ignore[list-item]


def test_guard_switch_and_nesting():
    assert real_requests_allowed()
    with block_real_requests():
        assert not real_requests_allowed()
        with allow_real_requests():
            assert real_requests_allowed()
        assert not real_requests_allowed()
    assert real_requests_allowed()
    set_real_requests_allowed(False)
    try:
        assert not real_requests_allowed()
    finally:
        set_real_requests_allowed(True)


def test_fakes_ignore_the_guard():
    with block_real_requests():
        assert ScriptedChatModel(["ok"]).complete(USER).text == "ok"


def test_guard_covers_worker_threads():
    from sepsis_sdk.llm import LiteLLMChat

    chat = LiteLLMChat("openai/gpt-4o-mini", api_key="sk-x")

    async def run():
        return await asyncio.to_thread(chat.complete, USER)

    with block_real_requests(), pytest.raises(RealRequestBlockedError):
        asyncio.run(run())


def test_fake_world_model_reexport_is_lazy():
    import sepsis_sdk.testing as testing

    assert "FakeWorldModel" in testing.__all__
    if importlib.util.find_spec("sepsis_sdk.world_model.fake") is None:
        with pytest.raises(AttributeError, match="FakeWorldModel is not available"):
            testing.FakeWorldModel  # noqa: B018
    else:
        from sepsis_sdk.world_model.fake import FakeWorldModel

        assert testing.FakeWorldModel is FakeWorldModel


def test_importing_testing_stays_light():
    import subprocess

    code = (
        "import sys, sepsis_sdk.testing, sepsis_sdk.llm, sepsis_sdk.judge; "
        "heavy = [m for m in ('litellm', 'torch', 'transformers', 'instructor', 'respx', 'PIL') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


PLUGIN_TEST = """
import pytest

def test_fake_chat(fake_chat):
    model = fake_chat("a", "b")
    assert [model.complete([{"role": "user", "content": "x"}]).text for _ in range(2)] == ["a", "b"]

def test_leftover_replies_fail(fake_chat):
    fake_chat("used", "unused").complete([{"role": "user", "content": "x"}])

def test_lenient(fake_chat):
    fake_chat("unused", strict=False)
"""


def test_pytest_plugin_is_opt_in_and_provides_fixtures(pytester):
    pytester.makeconftest("pytest_plugins = ['sepsis_sdk.testing.pytest_plugin']\n")
    pytester.makepyfile(test_plugin=PLUGIN_TEST)
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider", "-p", "no:asyncio")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*1 scripted repl(ies) never used*"])


def test_block_llm_requests_fixture(block_llm_requests):
    from sepsis_sdk.llm import LiteLLMChat

    assert not real_requests_allowed()
    with pytest.raises(RealRequestBlockedError):
        LiteLLMChat("openai/gpt-4o-mini", api_key="k").complete(USER)


def test_fake_llm_endpoint_fixture_under_the_guard(fake_llm_endpoint, block_llm_requests):
    ep = fake_llm_endpoint("through respx", tool_call("prescription", {"vasopressor": 2, "iv_fluid": 0}))
    chat = ep.chat()
    assert chat.complete(USER).text == "through respx"
    assert chat.complete(USER).tool_calls[0].arguments == {"vasopressor": 2, "iv_fluid": 0}
    assert ep.requests[0]["messages"] == USER and ep.calls == 2


def test_pytest_plugin_not_auto_loaded(pytester):
    pytester.makepyfile(test_noplugin="def test_x(fake_chat):\n    pass\n")
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider", "-p", "no:asyncio")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'fake_chat' not found*"])


def test_ini_option_blocks_every_test(pytester):
    pytester.makeconftest("pytest_plugins = ['sepsis_sdk.testing.pytest_plugin']\n")
    pytester.makeini("[pytest]\nsepsis_block_llm_requests = true\n")
    pytester.makepyfile(
        test_ini="from sepsis_sdk.testing import real_requests_allowed\n"
        "def test_blocked():\n    assert not real_requests_allowed()\n"
    )
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider", "-p", "no:asyncio")
    result.assert_outcomes(passed=1)


@pytest.mark.slow
def test_the_documented_example_test_file_passes():
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    example = root / "examples" / "test_with_fakes.py"
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(example)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:]
    assert "6 passed" in out.stdout


@pytest.mark.parametrize("package", ["sepsis_sdk.llm", "sepsis_sdk.judge", "sepsis_sdk.testing"])
def test_public_surface_is_sorted_and_every_name_resolves(package):
    import importlib

    module = importlib.import_module(package)
    assert module.__all__ == sorted(module.__all__)
    for name in module.__all__:
        if name == "FakeWorldModel" and importlib.util.find_spec("sepsis_sdk.world_model.fake") is None:
            continue
        assert getattr(module, name) is not None, name


def test_schema_chat_model_calls_each_tool_once_then_answers():
    from typing import Literal

    from sepsis_sdk.testing import SchemaChatModel

    tools = [
        {
            "type": "function",
            "function": {
                "name": "simulation",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "actions": {
                            "type": "array",
                            "items": {"type": "string", "enum": ["[0,1]"]},
                            "minItems": 1,
                        }
                    },
                    "required": ["actions"],
                },
            },
        },
        {
            "type": "function",
            "function": {
                "name": "prescription",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "vasopressor": {"type": "integer", "minimum": 0, "maximum": 4},
                        "iv_fluid": {"type": "integer", "exclusiveMinimum": 0},
                    },
                    "required": ["vasopressor", "iv_fluid"],
                },
            },
        },
    ]
    model = SchemaChatModel(final_text="finished")
    messages = list(USER)
    first = model.complete(messages, tools=tools)
    assert first.tool_calls[0].name == "simulation" and first.tool_calls[0].arguments == {
        "actions": ["[0,1]"]
    }
    messages += [
        first.as_message(),
        {"role": "tool", "tool_call_id": first.tool_calls[0].id, "content": "ok"},
    ]
    second = model.complete(messages, tools=tools)
    assert second.tool_calls[0].name == "prescription"
    assert second.tool_calls[0].arguments == {"vasopressor": 0, "iv_fluid": 1}
    messages += [second.as_message()]
    assert model.complete(messages, tools=tools).text == "finished"
    forced = model.complete(
        messages, tools=tools, tool_choice={"type": "function", "function": {"name": "simulation"}}
    )
    assert forced.tool_calls[0].name == "simulation"

    class Nested(BaseModel):
        level: Literal["low", "high"]
        score: float = 0.5

    class Out(BaseModel):
        items: list[Nested]
        inner: Nested
        note: str | None = None

    out = model.structured(USER, Out)
    assert out == Out(items=[], inner=Nested(level="low"))
    assert model.usage.calls == 5


def test_fakes_report_usage_with_each_reply():
    from sepsis_sdk.llm import StructuredResponse, call_structured

    class Out(BaseModel):
        x: int

    model = ScriptedChatModel(
        ['{"x": "no"}', '{"x": 1}', "text"], usage=Usage(prompt_tokens=100, cost_usd=0.5)
    )
    reply = model.structured_response(USER, Out)
    assert isinstance(reply, StructuredResponse) and reply.value == Out(x=1)
    assert reply.usage == Usage(prompt_tokens=200, cost_usd=1.0, calls=2)  # the re-ask costs one more call
    assert model.complete(USER).usage == Usage(prompt_tokens=100, cost_usd=0.5, calls=1)
    assert model.usage.calls == 3 and model.usage.prompt_tokens == 300

    fn_model = FunctionChatModel(lambda m, t: '{"x": 2}', usage=Usage(prompt_tokens=7))
    assert call_structured(fn_model, USER, Out).usage == Usage(prompt_tokens=7, calls=1)
    from sepsis_sdk.testing import SchemaChatModel

    schema = SchemaChatModel()
    assert schema.structured_response(USER, Out).usage.calls == 1


def test_fakes_are_thread_safe():
    import concurrent.futures

    model = ScriptedChatModel([f"r{i}" for i in range(200)], usage=Usage(prompt_tokens=1))
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        texts = list(ex.map(lambda _: model.complete(USER).text, range(200)))
    assert sorted(texts) == sorted(f"r{i}" for i in range(200))  # every reply served exactly once
    assert model.usage.calls == 200 and model.usage.prompt_tokens == 200 and len(model.calls) == 200
