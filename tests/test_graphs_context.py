"""The agent's run context: one object nodes and tools reference; factories copy what users pass; usage per
decision under concurrency (regression tests for the shared-Guard and shared-counter defects of issue 9)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import warnings

import numpy as np
import pytest

from sepsis_sdk.errors import LLMCallError, UserError
from sepsis_sdk.features import FeatureSchema, FeatureSpec
from sepsis_sdk.graphs import (
    AgentContext,
    AgentState,
    Guard,
    Prescription,
    PSROptions,
    ToolCallingOptions,
    bind,
    build_direct_graph,
    build_psr_graph,
    build_tool_calling_graph,
    build_trace,
    nodes,
)
from sepsis_sdk.llm import ChatResponse, Usage
from sepsis_sdk.policies import GraphPolicy
from sepsis_sdk.testing import FunctionChatModel, ScriptedChatModel, tool_call
from sepsis_sdk.tools import ToolContext, ToolRegistry, tool
from sepsis_sdk.types import Observation, PatientHistory
from sepsis_sdk.world_model.fake import FakeWorldModel

SCHEMA = FeatureSchema(
    name="mini-mimic",
    features=(
        FeatureSpec(name="meanbp", unit="mmHg", lower=20, upper=200),
        FeatureSpec(name="lactate", unit="mmol/L", lower=0.1, upper=30),
    ),
)


def make_history(pid: str = "p") -> PatientHistory:
    obs = tuple(Observation(t=i, values=v) for i, v in enumerate([(70.0, 2.5), (62.0, 3.0), (58.0, 3.4)]))
    return PatientHistory(patient_id=pid, observations=obs, actions=(5, 5), feature_names=tuple(SCHEMA.names))


def hazard_wm(best: int) -> FakeWorldModel:
    """Death hazard lowest for action ``best``: the planner fallback picks it."""

    def hazard(state, action):
        return np.where(action == best, 0.01, 0.05), np.full(len(action), 0.02)

    return FakeWorldModel(SCHEMA, hazard=hazard)


def down(messages, tools):
    return LLMCallError("down", model="m", status_code=503, attempts=1)


# ---------------------------------------------------------------------------------------------- factories copy
class CountingWorldModel(FakeWorldModel):
    """A fake world model that counts how often it is asked about patients."""

    used = 0

    def batch(self, histories):
        self.used += 1
        return super().batch(histories)


def test_one_guard_shared_by_two_graphs_keeps_each_graphs_world_model():
    shared = Guard()
    wm_a, wm_b = CountingWorldModel(SCHEMA), CountingWorldModel(SCHEMA)
    g_a = build_direct_graph(FunctionChatModel(down), world_model=wm_a, guard=shared, max_retries=0)
    g_b = build_direct_graph(FunctionChatModel(down), world_model=wm_b, guard=shared, max_retries=0)
    f_a = g_a.invoke({"history": make_history()})["final"]
    assert f_a["source"] == "fallback" and f_a["fallback"] not in (None, "hold-safe")
    assert wm_a.used > 0 and wm_b.used == 0  # graph A's planner fallback asked A's world model
    used_a = wm_a.used
    f_b = g_b.invoke({"history": make_history()})["final"]
    assert f_b["source"] == "fallback" and f_b["fallback"] not in (None, "hold-safe")
    assert wm_b.used > 0 and wm_a.used == used_a  # ... and graph B's asked B's (was: A's, for both)
    assert shared.fallback is None  # the user's guard was never configured in place


def test_a_later_change_to_the_users_guard_does_not_reach_a_built_graph():
    mine = Guard()
    g = build_direct_graph(ScriptedChatModel([Prescription(fluid=0, vaso=0)]), guard=mine)
    mine.enforce_safety = False
    final = g.invoke({"history": make_history()})["final"]
    assert (
        final["source"] == "guard" and final["action"] != 0
    )  # G1 still enforced: the graph has its own guard


def test_factories_never_change_what_they_are_given():
    from sepsis_sdk.policies import FunctionPolicy

    guard, policy = Guard(), FunctionPolicy(lambda h: 16)
    reg = ToolRegistry.default()
    opts = PSROptions(n_candidates=2)
    g = build_psr_graph(ScriptedChatModel([]), reg, world_model=hazard_wm(17), guard=guard, fallback=policy,
                        options=opts, max_rounds=1)  # fmt: skip
    assert guard.fallback is None and reg.names == ["simulate", "check_guidelines", "patient_history"]
    assert opts == PSROptions(n_candidates=2)  # keyword arguments override a copy
    assert g.name == "psr"
    with pytest.raises(UserError, match="options must be a PSROptions"):
        build_psr_graph(ScriptedChatModel([]), world_model=hazard_wm(1), options=ToolCallingOptions())
    with pytest.raises(UserError, match="n_candidates"):
        PSROptions(n_candidates=9)


def test_the_graphs_registry_is_a_copy():
    seen = []

    @tool
    def census(ctx: ToolContext = None) -> str:  # type: ignore[assignment]
        """Beds in use."""
        seen.append(ctx)
        return "12 beds"

    reg = ToolRegistry([census])
    model = ScriptedChatModel(
        [tool_call("census", {}), tool_call("prescription", {"vasopressor": 1, "iv_fluid": 1})]
    )
    g = build_tool_calling_graph(model, reg, world_model=hazard_wm(6), extra_tools=True)
    reg.remove("census")  # the user's registry changes after the build: the graph keeps its own
    state = g.invoke({"history": make_history()})
    assert [t["function"]["name"] for t in model.calls[0].tools] == ["simulation", "prescription", "census"]
    assert state["final"]["action"] == 6 and len(seen) == 1
    # the tool saw the run context itself (by reference), not a copy of its fields
    run = seen[0].run
    assert isinstance(run, AgentContext) and run.model is model and seen[0].world_model is run.world_model
    assert isinstance(run.options, ToolCallingOptions) and seen[0].horizon == run.options.horizon == 6


# ---------------------------------------------------------------------------------------------- the idiom
def test_a_run_may_pass_its_own_context():
    first = ScriptedChatModel([Prescription(fluid=1, vaso=1)])
    g = build_direct_graph(first, world_model=hazard_wm(3))
    ctx = AgentContext.create(ScriptedChatModel([Prescription(fluid=3, vaso=1)]), world_model=hazard_wm(3),
                              graph="direct-other")  # fmt: skip
    out = g.invoke({"history": make_history()}, context=ctx)
    assert out["final"]["action"] == 16 and len(first.calls) == 0
    assert build_trace(out)["graph"] == "direct-other"
    assert g.get_context_jsonschema() == {}  # live objects, not a Studio form


def test_compose_with_the_context_idiom():
    from langgraph.graph import END, START, StateGraph

    ctx = AgentContext.create(ScriptedChatModel([Prescription(fluid=2, vaso=1)]), world_model=hazard_wm(3))
    b = StateGraph(AgentState, context_schema=AgentContext)
    for name in ("observe", "decide", "guard", "prescribe"):
        b.add_node(name, getattr(nodes, name))
    b.add_edge(START, "observe")
    b.add_edge("observe", "decide")
    b.add_edge("decide", "guard")
    b.add_edge("guard", "prescribe")
    b.add_edge("prescribe", END)
    graph = b.compile()
    assert graph.invoke({"history": make_history()}, context=ctx)["final"]["action"] == 11
    with pytest.raises(UserError, match="needs an AgentContext"):
        graph.invoke({"history": make_history()})


def test_deprecated_agent_deps_still_composes_like_the_readme():
    from langgraph.graph import END, START, StateGraph

    from sepsis_sdk.graphs import AgentDeps

    model = ScriptedChatModel([{"candidates": [{"fluid": 2, "vaso": 1}, {"fluid": 4, "vaso": 2}]}])
    wm = hazard_wm(22)
    with pytest.warns(DeprecationWarning, match="AgentDeps is deprecated"):
        deps = AgentDeps(model=model, world_model=wm, guard=Guard().with_default_fallback(wm))

    def my_pick_best(state, *, deps):
        crit = nodes.critique(state, deps)
        return {
            "critique": crit,
            "choice": {"action": crit["best"], "rationale": "judge", "decision": "commit"},
        }

    b = StateGraph(AgentState)
    for name in ("observe", "propose", "simulate", "guard", "prescribe"):
        b.add_node(name, bind(getattr(nodes, name), deps))
    b.add_node("pick_best", bind(my_pick_best, deps))
    b.add_edge(START, "observe")
    b.add_edge("observe", "propose")
    b.add_edge("propose", "simulate")
    b.add_edge("simulate", "pick_best")
    b.add_edge("pick_best", "guard")
    b.add_edge("guard", "prescribe")
    b.add_edge("prescribe", END)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        final = b.compile().invoke({"history": make_history()})["final"]
    assert final["action"] in (11, 22) and final["source"] == "model"


# ---------------------------------------------------------------------------------------------- usage
def _costly_prescriber(barrier: threading.Barrier):
    """Every call costs exactly 100 prompt tokens; calls wait for each other so that they overlap."""

    def fn(messages, tools):
        with contextlib.suppress(threading.BrokenBarrierError):  # fewer concurrent callers: carry on
            barrier.wait()
        call = tool_call("prescription", {"vasopressor": 1, "iv_fluid": 2})
        return ChatResponse(tool_calls=[call], usage=Usage(prompt_tokens=100, completion_tokens=5, calls=1))

    return FunctionChatModel(fn)


def test_eight_concurrent_decisions_each_record_their_own_100_tokens_threads():
    model = _costly_prescriber(threading.Barrier(8, timeout=10))
    g = build_tool_calling_graph(model, world_model=hazard_wm(11))
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        states = list(ex.map(lambda i: g.invoke({"history": make_history(f"p{i}")}), range(8)))
    traces = [build_trace(s) for s in states]
    assert [t["usage"]["prompt_tokens"] for t in traces] == [100] * 8  # was e.g. 600, 200, 500, 100, ...
    assert [t["usage"]["completion_tokens"] for t in traces] == [5] * 8
    assert all(t["usage"]["llm_calls"] == 1 and t["action"] == 11 for t in traces)
    turns = [e for t in traces for e in t["tool_calls"] if e["type"] == "model_turn"]
    assert [e["usage"]["prompt_tokens"] for e in turns] == [100] * 8  # each model call's own event too
    assert model.usage.prompt_tokens == 800


def test_eight_concurrent_psr_decisions_through_graph_policy():
    barrier = threading.Barrier(2, timeout=10)

    def fn(messages, tools):
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()
        if "Propose" in messages[-1]["content"]:
            return {"candidates": [{"fluid": 3, "vaso": 2}, {"fluid": 2, "vaso": 2}], "reasoning": ""}
        return {"decision": "commit", "fluid": 3, "vaso": 2, "rationale": "lowest hazard"}

    model = FunctionChatModel(fn, usage=Usage(prompt_tokens=100))
    policy = GraphPolicy(build_psr_graph(model, world_model=hazard_wm(17), max_rounds=1), concurrency=8)
    decisions = asyncio.run(policy.arun_many([make_history(f"p{i}") for i in range(8)]))
    for d in decisions:
        assert d.trace["usage"]["llm_calls"] == 2 and d.trace["usage"]["prompt_tokens"] == 200  # 100 per call
        calls = d.trace["proposals"] + d.trace["choices"]
        assert [e["usage"]["prompt_tokens"] for e in calls] == [100, 100]
        assert d.action == 17
    assert model.usage.prompt_tokens == 1600
