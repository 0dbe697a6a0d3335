"""The propose–simulate–refine graph: node order, drawing, trace, guard, faults, durable runs, LiteLLM e2e."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from sepsis_sdk.errors import LLMCallError
from sepsis_sdk.features import FeatureSchema, FeatureSpec
from sepsis_sdk.graphs import (
    Guard,
    Proposals,
    RefineDecision,
    build_psr_graph,
    build_trace,
    dump_trace,
    sqlite_checkpointer,
)
from sepsis_sdk.testing import FunctionChatModel, ScriptedChatModel, fake_openai_endpoint, tool_call
from sepsis_sdk.types import Observation, PatientHistory
from sepsis_sdk.world_model.fake import FakeWorldModel

SNAPSHOTS = Path(__file__).parent / "snapshots"
SCHEMA = FeatureSchema(
    name="mini-mimic",
    features=(
        FeatureSpec(name="meanbp", unit="mmHg", lower=20, upper=200),
        FeatureSpec(name="lactate", unit="mmol/L", lower=0.1, upper=30),
        FeatureSpec(name="heart_rate", unit="bpm", lower=20, upper=250),
    ),
)
PSR_ORDER = ["observe", "propose", "simulate", "refine", "guard", "prescribe"]


def make_history(maps=(70.0, 62.0, 58.0), lactates=(2.5, 3.0, 3.4), actions=(5, 5)) -> PatientHistory:
    obs = tuple(
        Observation(t=i, values=(m, la, 100.0)) for i, (m, la) in enumerate(zip(maps, lactates, strict=False))
    )
    return PatientHistory(
        patient_id="p1", observations=obs, actions=actions, feature_names=tuple(SCHEMA.names)
    )


@pytest.fixture()
def wm():
    # Vasopressor raises MAP twice as much as fluid; more treatment, lower death hazard.
    def hazard(state, action):
        import numpy as np

        return 0.08 - 0.003 * (action // 5 + action % 5), np.full(len(action), 0.02)

    return FakeWorldModel(
        SCHEMA, effects={"meanbp": (1.0, 2.0), "lactate": (-0.1, 0.0)}, hazard=hazard, noise=0.2
    )


def proposals(*pairs, reasoning="hypotensive, lactate rising"):
    return Proposals(
        candidates=[{"fluid": f, "vaso": v, "rationale": f"try {f},{v}"} for f, v in pairs],
        reasoning=reasoning,
    )


def commit(f, v, why="lowest simulated death risk"):
    return RefineDecision(decision="commit", fluid=f, vaso=v, rationale=why)


def names(updates):
    return [next(iter(u)) for u in updates]


def test_node_order_and_prescription(wm):
    model = ScriptedChatModel([proposals((2, 0), (3, 1), (1, 2)), commit(3, 1)])
    g = build_psr_graph(model, world_model=wm, n_candidates=3, horizon=6)
    updates = list(g.stream({"history": make_history()}, stream_mode="updates"))
    assert names(updates) == PSR_ORDER
    final = updates[-1]["prescribe"]["final"]
    assert (final["action"], final["fluid"], final["vaso"], final["source"]) == (16, 3, 1, "model")
    assert final["sepsisagent"] == [1, 3] and final["rationale"] == "lowest simulated death risk"
    # the refine prompt showed the simulation and the critique of all three candidates
    refine_prompt = model.calls[1].last_user_text
    assert "World-model simulation" in refine_prompt and refine_prompt.count("score ") == 3


def test_simulation_report_values_drops_the_paths_from_the_prompt_only(wm):
    from sepsis_sdk.errors import UserError

    prompts, data = {}, {}
    for report in ("full", "values"):
        model = ScriptedChatModel([proposals((2, 0), (3, 1), (1, 2)), commit(3, 1)])
        g = build_psr_graph(model, world_model=wm, n_candidates=3, horizon=6, simulation_report=report)
        state = g.invoke({"history": make_history()})
        prompts[report], data[report] = model.calls[1].last_user_text, state["simulation"]
        assert state["final"]["action"] == 16
    # the paths ("MAP ... -> ...") are gone from the prompt; the outcome lines and the critique stay
    assert "meanbp" in prompts["full"] and " -> " in prompts["full"]
    assert " -> " not in prompts["values"] and prompts["values"].count("P(death within 24 h)") == 3
    assert prompts["values"].count("score ") == 3 and len(prompts["values"]) < len(prompts["full"])
    # the trace keeps the full simulation either way
    assert [len(c["paths"]) for c in data["values"]["candidates"]] == [
        len(c["paths"]) for c in data["full"]["candidates"]
    ]
    with pytest.raises(UserError, match="simulation_report"):
        build_psr_graph(ScriptedChatModel([]), world_model=wm, simulation_report="short")


def test_a_brief_report_without_critique_shortens_the_refine_prompt_only(wm):
    model = ScriptedChatModel([proposals((2, 0), (3, 1), (1, 2)), commit(3, 1)])
    g = build_psr_graph(model, world_model=wm, n_candidates=3, horizon=6, simulation_report="brief",
                        refine_critique=False)  # fmt: skip
    state = g.invoke({"history": make_history()})
    assert state["final"]["action"] == 16 and state["final"]["source"] == "model"
    prompt = model.calls[1].last_user_text
    # one line per candidate; the fake world model offers no values, so there is no closing line
    assert [ln for ln in prompt.splitlines() if ln[:3] in ("A. ", "B. ", "C. ")] == [
        f"{c}. [fluid {f}, vaso {v}]: value n/a, support {cand['support']:.2f}"
        for c, (f, v), cand in zip(
            "ABC", ((2, 0), (3, 1), (1, 2)), state["simulation"]["candidates"], strict=True
        )
    ]
    assert "Critique of the simulated outcomes" not in prompt and "score " not in prompt
    assert "P(death" not in prompt and prompt.rstrip().endswith('"rationale": "..."}')
    # the critique is still made and traced; the simulation data keep everything
    assert len(state["critique"]["items"]) == 3
    assert any(e.get("type") == "critique" for e in state["events"])
    assert all(c["paths"] for c in state["simulation"]["candidates"])
    # with the critique (the default) the same brief report is followed by it
    model = ScriptedChatModel([proposals((2, 0), (3, 1), (1, 2)), commit(3, 1)])
    build_psr_graph(model, world_model=wm, n_candidates=3, horizon=6, simulation_report="brief").invoke(
        {"history": make_history()}
    )
    assert "Critique of the simulated outcomes" in model.calls[1].last_user_text


def test_revise_loops_back_and_commit_is_forced_at_max_rounds(wm):
    revise = RefineDecision(decision="revise", fluid=0, vaso=0, rationale="all look poor")
    model = ScriptedChatModel([proposals((0, 0)), revise, proposals((4, 4), (2, 2)), revise])
    g = build_psr_graph(model, world_model=wm, max_rounds=2)
    updates = list(g.stream({"history": make_history()}, stream_mode="updates"))
    assert names(updates) == [
        "observe",
        "propose",
        "simulate",
        "refine",
        "propose",
        "simulate",
        "refine",
        "guard",
        "prescribe",
    ]
    assert "Feedback on your previous candidates" in model.calls[2].last_user_text
    assert "No rounds are left" in model.calls[3].last_user_text
    final = updates[-1]["prescribe"]["final"]
    # the model still chose [0, 0] in the last round: G1 applies (lactate > 2, MAP < 65), so the guard
    # moves it to the nearest safe action (one level of vasopressor).
    assert final["source"] == "guard" and final["overridden"] and final["action"] == 1
    assert any("G1" in r for r in final["reasons"])


def test_mermaid_snapshot(wm):
    g = build_psr_graph(ScriptedChatModel([]), world_model=wm)
    drawing = g.get_graph().draw_mermaid()
    snap = SNAPSHOTS / "psr_graph.mmd"
    if os.environ.get("UPDATE_SNAPSHOTS"):
        snap.write_text(drawing)
    assert drawing == snap.read_text()
    for node in PSR_ORDER:
        assert node in drawing


def test_trace_is_json_with_everything(wm, tmp_path):
    model = ScriptedChatModel([proposals((2, 0), (3, 1)), commit(2, 0)])
    g = build_psr_graph(model, world_model=wm, n_candidates=2)
    state = g.invoke({"history": make_history()})
    tr = build_trace(state)
    assert tr["graph"] == "psr" and tr["patient_id"] == "p1" and tr["t"] == 2
    assert tr["action"] == 10 and tr["source"] == "model" and tr["fallback"] is None
    assert [c["action"] for c in tr["proposals"][0]["candidates"]] == [10, 16]
    assert [c["action"] for c in tr["simulations"][0]["report"]["candidates"]] == [10, 16]
    assert (
        len(tr["critiques"][0]["items"]) == 2
        and tr["critiques"][0]["items"][0]["judge"] == "simulation-critic"
    )
    assert tr["usage"]["llm_calls"] == 2 and tr["latency_s"] > 0
    text = dump_trace(state, str(tmp_path / "t.json"))
    assert json.loads((tmp_path / "t.json").read_text()) == json.loads(text)


def test_duplicate_and_surplus_candidates_are_trimmed(wm):
    model = ScriptedChatModel([proposals((1, 1), (1, 1), (2, 2), (3, 3), (4, 4)), commit(2, 2)])
    state = build_psr_graph(model, world_model=wm, n_candidates=2).invoke({"history": make_history()})
    assert [c["action"] for c in state["candidates"]] == [6, 12]


# ---------------------------------------------------------------------------------------------- faults (fakes)
def test_malformed_and_out_of_range_replies_are_reasked(wm):
    model = ScriptedChatModel([
        '{"candidates": [',                                     # malformed JSON -> re-ask
        {"candidates": [{"fluid": 9, "vaso": 0}]},                # out-of-range level -> re-ask
        proposals((2, 1)),
        {"decision": "commit", "fluid": 2, "vaso": 7},            # out-of-range in refine -> re-ask
        commit(2, 1),
    ])  # fmt: skip
    final = build_psr_graph(model, world_model=wm).invoke({"history": make_history()})["final"]
    assert (final["action"], final["source"]) == (11, "model")
    assert "failed validation" in model.calls[1].last_user_text


def test_transient_llm_error_is_retried_by_the_node(wm):
    model = ScriptedChatModel(
        [
            LLMCallError("rate limited", model="m", status_code=429, attempts=3),
            proposals((2, 1)),
            commit(2, 1),
        ]
    )
    state = build_psr_graph(model, world_model=wm, max_retries=1).invoke({"history": make_history()})
    assert state["final"]["source"] == "model"
    assert [e["type"] for e in state["events"] if e["node"] == "propose"] == ["error", "proposal"]


def test_model_failure_beyond_retries_runs_the_planner_fallback(wm):
    model = FunctionChatModel(
        lambda messages, tools: LLMCallError("server error", model="m", status_code=500, attempts=4)
    )
    updates = list(
        build_psr_graph(model, world_model=wm, max_retries=1).stream(
            {"history": make_history()}, stream_mode="updates"
        )
    )
    assert names(updates) == ["observe", "propose", "guard", "prescribe"]
    final = updates[-1]["prescribe"]["final"]
    assert final["source"] == "fallback" and final["fallback"] == "world-model-planner"
    assert "propose failed after 2 attempt(s)" in final["reasons"][0]
    # the planner prefers the most treatment (lowest hazard), within the safety rules
    assert final["fallback_detail"]["action"] == final["action"] == 24
    assert len(model.calls) == 2


def test_world_model_exception_is_shown_to_the_model(wm):
    class Broken(FakeWorldModel):
        def rollout(self, *a, **k):
            raise RuntimeError("GPU fell off")

    model = ScriptedChatModel([proposals((2, 1)), commit(2, 1, "no simulation; guideline-based")])
    state = build_psr_graph(model, world_model=Broken(SCHEMA), guard=Guard()).invoke(
        {"history": make_history()}
    )
    assert "RuntimeError: GPU fell off" in model.calls[1].last_user_text
    assert state["final"]["action"] == 11 and build_trace(state)["errors"][0]["node"] == "simulate"


def test_judge_is_pluggable(wm):
    from sepsis_sdk.judge._types import CriterionVerdict, Verdict

    seen = []

    class Strict:
        name = "strict"

        def judge(self, rubric, evidence):
            seen.append(evidence.data["action"])
            return Verdict(
                rubric=rubric.name,
                judge=self.name,
                verdicts=tuple(
                    CriterionVerdict(criterion_id=c.id, score=None, reason="?") for c in rubric.criteria
                ),
            )

        async def ajudge(self, rubric, evidence):
            return self.judge(rubric, evidence)

    model = ScriptedChatModel([proposals((2, 1), (3, 0)), commit(3, 0)])
    state = build_psr_graph(model, world_model=wm, judge=Strict()).invoke({"history": make_history()})
    assert seen == [11, 15] and state["critique"]["items"][0]["judge"] == "strict"


# ---------------------------------------------------------------------------------------------- durability
def test_sqlite_checkpointer_resumes_after_interrupt(wm, tmp_path, caplog):
    db = str(tmp_path / "runs.sqlite")
    model = ScriptedChatModel([proposals((2, 1), (3, 1)), commit(3, 1)])
    g = build_psr_graph(model, world_model=wm, checkpointer=sqlite_checkpointer(db))
    cfg = {"configurable": {"thread_id": "p1/t2"}}
    first = g.invoke({"history": make_history()}, cfg, interrupt_before=["refine"])
    assert "final" not in first or first.get("final") is None
    assert g.get_state(cfg).next == ("refine",)
    # a new process: fresh graph object, same database
    g2 = build_psr_graph(model, world_model=wm, checkpointer=sqlite_checkpointer(db))
    assert g2.get_state(cfg).next == ("refine",)
    out = g2.invoke(None, cfg)
    assert out["final"]["action"] == 16 and out["final"]["source"] == "model"
    assert model.remaining == 0 and len(model.calls) == 2  # propose was not re-run on resume
    assert isinstance(g2.get_state(cfg).values["history"], PatientHistory)
    assert "unregistered type" not in caplog.text  # our state types are allowed in the serializer


# ---------------------------------------------------------------------------------------------- LiteLLM HTTP path
def _forced(body):
    return body["tool_choice"]["function"]["name"]


@pytest.mark.slow  # ~5-40 s on a shared 2-core box (instructor re-asks, LiteLLM retries)
def test_end_to_end_through_litellm_with_faults(respx_mock, wm):
    ep = fake_openai_endpoint(respx_mock, [
        429,                                                                # rate limit -> LiteLLMChat retries
        500,                                                                # server error -> retried
        httpx.ReadTimeout("slow"),                                          # timeout -> retried
        lambda body: tool_call(_forced(body), '{"candidates": [{"fluid": 2'),  # malformed JSON -> re-ask
        lambda body: tool_call(_forced(body), {"candidates": [{"fluid": 2, "vaso": 9}]}),  # out of range -> re-ask
        proposals((2, 1), (3, 1), (4, 2)),
        commit(4, 2, "MAP recovers fastest"),
    ])  # fmt: skip
    model = ep.chat()
    updates = list(
        build_psr_graph(model, world_model=wm).stream({"history": make_history()}, stream_mode="updates")
    )
    assert names(updates) == PSR_ORDER
    final = updates[-1]["prescribe"]["final"]
    assert (final["action"], final["source"], final["rationale"]) == (22, "model", "MAP recovers fastest")
    assert ep.calls == 7
    assert ep.requests[-1]["tool_choice"]["function"]["name"] == "RefineDecision"
    assert model.usage.prompt_tokens > 0


def test_end_to_end_litellm_unrecoverable_falls_back(respx_mock, wm):
    ep = fake_openai_endpoint(respx_mock, [500] * 8)
    model = ep.chat(retries=1)
    final = build_psr_graph(model, world_model=wm, max_retries=1).invoke({"history": make_history()})["final"]
    assert final["source"] == "fallback" and 0 <= final["action"] <= 24
    assert "LLMCallError" in final["reasons"][0]
    assert ep.calls == 4  # (1 + 1 LiteLLMChat retry) x (1 + 1 node retry)


async def test_async_invoke_through_litellm(respx_mock, wm):
    ep = fake_openai_endpoint(respx_mock, [proposals((1, 1)), commit(1, 1)])
    out = await build_psr_graph(ep.chat(), world_model=wm).ainvoke({"history": make_history()})
    assert out["final"]["action"] == 6
