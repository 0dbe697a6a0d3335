"""The SepsisAgent tool protocol graph (simulation / prescription over the OpenAI tools API)."""

from __future__ import annotations

import json

import httpx
import pytest

from sepsis_sdk.errors import LLMCallError
from sepsis_sdk.features import FeatureSchema, FeatureSpec
from sepsis_sdk.graphs import PRESCRIPTION_TOOL, SIMULATION_TOOL, build_tool_calling_graph, build_trace
from sepsis_sdk.testing import ScriptedChatModel, fake_openai_endpoint, tool_call
from sepsis_sdk.types import Observation, PatientHistory
from sepsis_sdk.world_model.fake import FakeWorldModel

SCHEMA = FeatureSchema(
    name="mini-mimic",
    features=(
        FeatureSpec(name="meanbp", unit="mmHg", lower=20, upper=200),
        FeatureSpec(name="lactate", unit="mmol/L", lower=0.1, upper=30),
    ),
)


def make_history() -> PatientHistory:
    obs = tuple(
        Observation(t=i, values=(m, la)) for i, (m, la) in enumerate([(70.0, 2.5), (62.0, 3.0), (58.0, 3.4)])
    )
    return PatientHistory(
        patient_id="p9", observations=obs, actions=(5, 5), feature_names=tuple(SCHEMA.names)
    )


@pytest.fixture()
def wm():
    return FakeWorldModel(SCHEMA, effects={"meanbp": (1.0, 2.0)}, noise=0.1)


def names(updates):
    return [next(iter(u)) for u in updates]


def test_protocol_tool_schemas_match_the_release():
    sim = SIMULATION_TOOL["function"]
    assert sim["name"] == "simulation" and sim["parameters"]["properties"]["actions"]["maxItems"] == 3
    assert sim["parameters"]["properties"]["actions"]["items"]["type"] == "string"
    presc = PRESCRIPTION_TOOL["function"]["parameters"]["properties"]
    assert set(presc) == {"vasopressor", "iv_fluid"} and presc["iv_fluid"]["maximum"] == 4


def test_simulate_then_prescribe_with_vaso_fluid_order(wm):
    model = ScriptedChatModel([
        tool_call("simulation", {"actions": ["[1, 2]", "[0, 3]"]}),
        {"text": "Vasopressor 1 with fluid 2 restores MAP.", "tool_calls": [tool_call("prescription", {"vasopressor": 1, "iv_fluid": 2})]},
    ])  # fmt: skip
    g = build_tool_calling_graph(model, world_model=wm)
    updates = list(g.stream({"history": make_history()}, stream_mode="updates"))
    assert names(updates) == ["observe", "agent", "tools", "agent", "guard", "prescribe"]
    final = updates[-1]["prescribe"]["final"]
    # "[vaso, fluid]" = [1, 2] is fluid 2, vaso 1 = canonical 11
    assert (final["action"], final["fluid"], final["vaso"], final["sepsisagent"]) == (11, 2, 1, [1, 2])
    assert final["rationale"] == "Vasopressor 1 with fluid 2 restores MAP."
    sim_msg = model.calls[1].messages[-1]
    assert sim_msg["role"] == "tool" and "fluid 2 (50-180 mL/4h), vaso 1" in sim_msg["content"]
    assert [t["function"]["name"] for t in model.calls[0].tools] == ["simulation", "prescription"]


def test_bad_tool_arguments_come_back_as_messages(wm):
    model = ScriptedChatModel([
        tool_call("simulation", {"actions": ["[1, 2]", "[0, 3]", "[2, 2]", "[4, 4]"]}),   # more than 3
        tool_call("simulation", {"actions": ["[7, 1]"]}),                                  # level out of range
        tool_call("simulation", '{"actions": ["[1, 2]"'),                                  # malformed JSON
        tool_call("prescription", {"vasopressor": 5, "iv_fluid": 1}),                      # out-of-range prescription
        "I think fluids are best.",                                                        # no tool call -> nudged
        tool_call("prescription", {"vasopressor": 0, "iv_fluid": 3}),
    ])  # fmt: skip
    state = build_tool_calling_graph(model, world_model=wm, max_turns=8).invoke({"history": make_history()})
    tool_msgs = [m["content"] for m in state["messages"] if m["role"] == "tool"]
    assert "at most 3 actions" in tool_msgs[0]
    assert "fluid level must be 0-4" in tool_msgs[1] or "level must be 0-4" in tool_msgs[1]
    assert "failed" in tool_msgs[2]
    assert "Invalid prescription" in tool_msgs[3]
    assert state["messages"][-3]["content"].startswith("Please decide now")  # the nudge
    assert state["final"]["action"] == 15 and state["final"]["source"] == "model"
    tr = build_trace(state)
    assert len(tr["errors"]) == 1 and tr["usage"]["llm_calls"] == 6
    json.dumps(tr, allow_nan=False)


def test_no_prescription_within_max_turns_falls_back(wm):
    model = ScriptedChatModel(["thinking..."] * 3)
    final = build_tool_calling_graph(model, world_model=wm, max_turns=3).invoke({"history": make_history()})[
        "final"
    ]
    assert final["source"] == "fallback" and "no prescription after 3 turns" in final["reasons"][0]
    assert 0 <= final["action"] < 25


def test_llm_error_falls_back(wm):
    model = ScriptedChatModel([LLMCallError("down", model="m", status_code=503, attempts=3)] * 2)
    final = build_tool_calling_graph(model, world_model=wm, max_retries=1).invoke(
        {"history": make_history()}
    )["final"]
    assert final["source"] == "fallback" and final["fallback"] == "world-model-planner"


def test_end_to_end_through_litellm(respx_mock, wm):
    ep = fake_openai_endpoint(respx_mock, [
        429,
        tool_call("simulation", {"actions": ["[1, 2]", "[2, 2]"]}),
        httpx.ReadTimeout("slow"),
        tool_call("prescription", {"vasopressor": 2, "iv_fluid": 2}),
    ])  # fmt: skip
    g = build_tool_calling_graph(ep.chat(), world_model=wm)
    state = g.invoke({"history": make_history()})
    assert state["final"]["action"] == 12 and state["final"]["source"] == "model"
    last = ep.requests[-1]
    assert [t["function"]["name"] for t in last["tools"]] == ["simulation", "prescription"]
    tool_turn = [m for m in last["messages"] if m["role"] == "tool"]
    assert len(tool_turn) == 1 and "fluid 2 (50-180 mL/4h), vaso 2" in tool_turn[0]["content"]
    assert state["usage"]["prompt_tokens"] == 22 and state["usage"]["llm_calls"] == 2


def test_vllm_model_string_routes_to_the_server(respx_mock, wm):
    """A served SepsisAgent checkpoint: hosted_vllm/<name> + api_base, unchanged protocol."""
    ep = fake_openai_endpoint(respx_mock, [tool_call("prescription", {"vasopressor": 0, "iv_fluid": 4})],
                              api_base="http://vllm.test/v1", model="SepsisAgent-4B")  # fmt: skip
    from sepsis_sdk.llm import LiteLLMChat

    model = LiteLLMChat("hosted_vllm/SepsisAgent-4B", api_base="http://vllm.test/v1", api_key="none")
    final = build_tool_calling_graph(model, world_model=wm).invoke({"history": make_history()})["final"]
    assert final["action"] == 20 and ep.requests[0]["model"] == "SepsisAgent-4B"


def test_world_model_exception_goes_back_to_the_model():
    class Broken(FakeWorldModel):
        def rollout(self, *a, **k):
            raise MemoryError("ensemble too large")

    model = ScriptedChatModel(
        [
            tool_call("simulation", {"actions": ["[1, 1]"]}),
            tool_call("prescription", {"vasopressor": 1, "iv_fluid": 1}),
        ]
    )
    state = build_tool_calling_graph(model, world_model=Broken(SCHEMA)).invoke({"history": make_history()})
    tool_msg = model.calls[1].messages[-1]
    assert tool_msg["role"] == "tool" and "MemoryError: ensemble too large" in tool_msg["content"]
    assert state["final"]["action"] == 6 and state["final"]["source"] == "model"
    assert build_trace(state)["tool_calls"][0]["error"].startswith("MemoryError")
