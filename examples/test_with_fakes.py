"""Testing code built on sepsis-sdk without a network or a GPU: copy this file into your own tests.

Run it with ``pytest examples/test_with_fakes.py``. It shows:

1. the opt-in pytest plugin and the real-request guard (every test here fails if it would reach a real LLM);
2. ``ScriptedChatModel``: fixed replies (text, tool calls, pydantic objects) and a record of what was sent;
3. ``FunctionChatModel``: replies computed from the conversation;
4. ``fake_llm_endpoint``: the real LiteLLM HTTP path against a fake OpenAI-compatible server (respx),
   including a rate-limit fault that the client retries;
5. the LLM judge with a scripted model.
"""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field

from sepsis_sdk.judge import Criterion, Evidence, LLMJudge, Rubric
from sepsis_sdk.llm import ChatModel
from sepsis_sdk.testing import FunctionChatModel, ScriptedChatModel, tool_call

# 1. Enable the plugin (in a conftest.py in your project) and block real requests in every test.
pytest_plugins = ["sepsis_sdk.testing.pytest_plugin"]


@pytest.fixture(autouse=True)
def _no_real_llm_calls(block_llm_requests):
    """Any un-mocked LiteLLM request now raises RealRequestBlockedError."""


# ----------------------------------------------------------------------------- code under test
class Decision(BaseModel):
    """What our toy agent decides: IV-fluid and vasopressor levels (0-4) and why."""

    iv_fluid: int = Field(ge=0, le=4)
    vasopressor: int = Field(ge=0, le=4)
    rationale: str


LOOKUP_TOOL = {
    "type": "function",
    "function": {
        "name": "lookup_lactate",
        "description": "latest lactate in mmol/L",
        "parameters": {"type": "object", "properties": {}},
    },
}


def decide(model: ChatModel, patient: str) -> Decision:
    """A toy agent: may look up lactate once, then returns a structured decision."""
    messages = [{"role": "user", "content": f"Patient: {patient}. Decide fluids and vasopressors."}]
    first = model.complete(messages, tools=[LOOKUP_TOOL])
    for call in first.tool_calls:
        messages += [first.as_message(), {"role": "tool", "tool_call_id": call.id, "content": "lactate 3.4"}]
    return model.structured(messages, Decision)


# ----------------------------------------------------------------------------- 2. scripted replies
def test_decide_with_a_scripted_model():
    model = ScriptedChatModel(
        [
            tool_call("lookup_lactate", {}),  # first reply: a tool call
            Decision(iv_fluid=3, vasopressor=1, rationale="lactate 3.4, MAP 60"),  # then the decision
        ]
    )
    decision = decide(model, "MAP 60 mmHg")
    assert decision == Decision(iv_fluid=3, vasopressor=1, rationale="lactate 3.4, MAP 60")
    # What the model was sent: the tool result went back before the structured call.
    assert model.calls[0].tools == [LOOKUP_TOOL]
    assert model.calls[1].messages[-1] == {
        "role": "tool",
        "tool_call_id": model.calls[1].messages[-2]["tool_calls"][0]["id"],
        "content": "lactate 3.4",
    }
    assert model.remaining == 0


def test_invalid_structured_reply_is_reasked():
    # An out-of-range level fails validation; the fake re-asks (as instructor does) and takes the next reply.
    model = ScriptedChatModel(
        [
            "no tools needed",
            '{"iv_fluid": 9, "vasopressor": 0, "rationale": "x"}',
            Decision(iv_fluid=4, vasopressor=0, rationale="ok"),
        ]
    )
    assert decide(model, "MAP 70").iv_fluid == 4
    assert "failed validation" in model.calls[-1].messages[-1]["content"]


def test_fake_chat_fixture_checks_every_reply_is_used(fake_chat):
    model = fake_chat("plain text", Decision(iv_fluid=0, vasopressor=0, rationale="stable"))
    assert decide(model, "MAP 80").rationale == "stable"
    # Leaving a scripted reply unused would fail this test at teardown.


# ----------------------------------------------------------------------------- 3. computed replies
def test_decide_with_a_function_model():
    def brain(messages, tools):
        text = str(messages[-1]["content"])
        if tools:
            return "I can decide without lactate."
        level = 4 if "MAP 50" in text else 1
        return Decision(iv_fluid=level, vasopressor=level // 2, rationale=f"from: {text[:20]}")

    assert decide(FunctionChatModel(brain), "MAP 50").iv_fluid == 4
    assert decide(FunctionChatModel(brain), "MAP 72").iv_fluid == 1


# ----------------------------------------------------------------------------- 4. real LiteLLM path
def test_decide_through_litellm_with_a_fake_endpoint(fake_llm_endpoint):
    endpoint = fake_llm_endpoint(
        429,  # rate limited: LiteLLMChat backs off and retries
        tool_call("lookup_lactate", {}),
        Decision(iv_fluid=2, vasopressor=2, rationale="hypotension"),  # sent as the forced tool call
    )
    chat = endpoint.chat("openai/gpt-4o-mini")  # a LiteLLMChat with api_base pointing at the fake
    decision = decide(chat, "MAP 58")
    assert decision.vasopressor == 2
    assert endpoint.calls == 3  # 429, tool call, structured
    assert endpoint.requests[2]["tool_choice"]["function"]["name"] == "Decision"  # instructor TOOLS mode
    assert chat.usage.calls == 2 and chat.usage.total_tokens > 0


# ----------------------------------------------------------------------------- 5. the judge
def test_llm_judge_with_a_scripted_model():
    rubric = Rubric(
        name="plan-review",
        criteria=(
            Criterion(id="map", text="The plan raises MAP towards 65 mmHg"),
            Criterion(id="overload", text="The plan risks fluid overload", sign=-1),
        ),
    )
    judge = LLMJudge(
        ScriptedChatModel(['{"scores": [1, 0], "reasoning": "vasopressor started, modest fluids"}'])
    )
    verdict = judge.judge(rubric, Evidence(text="iv_fluid=2, vasopressor=2 for MAP 58"))
    assert verdict.scores == {"map": 1, "overload": 0}
    assert verdict.complete
