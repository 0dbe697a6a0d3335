"""The agent uses closed-loop values: the simulate tools, the refine critique and the guard's fallback."""

from __future__ import annotations

import numpy as np
import pytest

from sepsis_sdk.errors import LLMCallError
from sepsis_sdk.graphs import Proposals, RefineDecision, build_psr_graph
from sepsis_sdk.sources.icu_sepsis import N_CLINICAL, sample_cohort
from sepsis_sdk.testing import FunctionChatModel, ScriptedChatModel
from sepsis_sdk.tools import ToolContext, simulate_actions
from sepsis_sdk.truth.oracle import OracleWorldModel
from sepsis_sdk.types import Observation, PatientHistory
from sepsis_sdk.world_model.value import fit_continuation


@pytest.fixture(scope="module")
def setup():
    oracle = OracleWorldModel()
    cont = fit_continuation(sample_cohort(600, seed=3))  # the clinicians, learnt from a sampled cohort
    s = 123
    h = PatientHistory(
        patient_id="s123",
        observations=(Observation(t=0, values=tuple(oracle._obs[s])),),
        feature_names=tuple(oracle.schema.names),
    )
    assert 0 <= s < N_CLINICAL
    return oracle, cont, h


def test_simulate_reports_value_interval_support_and_advantage(setup):
    oracle, cont, h = setup
    plain = simulate_actions(oracle, h, [0, 7, 24], horizon=3, n_samples=8)
    assert plain.value_method is None and all(c.value is None for c in plain.candidates)
    assert "value =" not in plain.to_text()
    rep = simulate_actions(oracle, h, [0, 7, 24], horizon=3, n_samples=8, continuation=cont)
    assert rep.value_method == "exact" and rep.reference is not None
    for c in rep.candidates:
        assert 0.0 <= c.value_lower <= c.value <= c.value_upper <= 1.0
        assert c.support == 1.0
    usual = rep.get(rep.reference)
    if usual is not None:  # the usual choice has no advantage over itself
        assert usual.advantage == pytest.approx(0.0, abs=1e-12)
    text = rep.to_text()
    assert "value = estimated chance of leaving the ICU alive" in text and "advantage=" in text
    d = rep.to_dict()
    assert d["value_method"] == "exact" and d["candidates"][0]["value"] == pytest.approx(
        rep.candidates[0].value, abs=1e-4
    )


def test_the_report_names_the_best_supported_candidate():
    from sepsis_sdk.tools import CandidateOutcome, SimulationReport

    def cand(a, value, support):
        return CandidateOutcome(action=a, p_death=0.1, p_discharge=0.2, support=support, uncertainty=0.0,
                                value=value, value_lower=value - 0.01, value_upper=value + 0.01, advantage=0.0)  # fmt: skip

    rep = SimulationReport("p", 3, 4, [cand(0, 0.80, 0.9), cand(5, 0.95, 0.2), cand(10, 0.83, 0.6)],
                           value_method="exact", continuation="behaviour-tabular", reference=0)  # fmt: skip
    # the highest value (B) rests on too few patients: the best supported is C
    assert rep.best() == 2 and rep.to_dict()["best"] == 10
    text = rep.to_text()
    assert text.splitlines()[-1].startswith("Best supported: C. fluid 2") and "continues as usual" in text
    rep.candidates = [cand(0, 0.80, 0.1), cand(5, 0.95, 0.2)]
    assert rep.best() == 1 and rep.to_text().splitlines()[-1].startswith("No candidate has support >= 0.5")
    rep.continuation = "pessimistic-pi"
    assert (
        "continues as planned (pessimistic-pi" in rep.to_text() and "the planned choice now" in rep.to_text()
    )
    plain = SimulationReport("p", 3, 4, [CandidateOutcome(0, 0.1, 0.2, 0.9, 0.0)])
    assert plain.best() is None and "Best" not in plain.to_text() and plain.to_dict()["best"] is None


def cand(a, value, support, cautious):
    """A simulated candidate with a value, its interval and a cautious score."""
    from sepsis_sdk.tools import CandidateOutcome

    return CandidateOutcome(action=a, p_death=0.1, p_discharge=0.2, support=support, uncertainty=0.0,
                            value=value, value_lower=value - 0.01, value_upper=value + 0.01, advantage=0.0,
                            cautious=cautious)  # fmt: skip


def _four_candidates():
    """A has the highest value but thin data behind its later steps (its cautious score is lowest); C has
    support 0.1 and D no cautious rank."""
    from sepsis_sdk.tools import SimulationReport

    return SimulationReport("p", 3, 4, [cand(0, 0.86, 0.9, 0.80), cand(5, 0.84, 0.8, 0.83),
                                        cand(10, 0.99, 0.1, 0.95), cand(15, 0.85, 0.7, float("-inf"))],
                            value_method="exact", continuation="pessimistic-pi", reference=0)  # fmt: skip


def test_a_cautious_report_shows_and_ranks_by_the_planners_pessimistic_score():
    from sepsis_sdk.errors import UserError
    from sepsis_sdk.tools import SimulationReport

    rep = _four_candidates()
    assert rep.best() == 0 and rep.best("cautious") == 1  # C (support 0.1) and D (unrankable) are out
    text = rep.to_text(paths=False, rank="cautious")
    assert "cautious = the planner's value with a penalty" in text
    assert "cautious=0.830" in text and "cautious=unsupported" in text
    assert text.splitlines()[-1] == (
        "Best supported: B. fluid 1 (0-50 mL/4h), vaso 0 (none) (cautious value 0.830, support 0.80): the highest "
        "cautious value among candidates with support >= 0.5."
    )
    # the default text is unchanged by the extra field: no cautious column, ranked by value
    assert "cautious" not in rep.to_text(paths=False) and rep.to_text().splitlines()[-1].startswith(
        "Best supported: A."
    )
    assert rep.to_dict()["candidates"][3]["cautious"] == "unsupported"
    assert rep.to_dict()["candidates"][1]["cautious"] == pytest.approx(0.83)
    # every ranked candidate unrankable: the highest-value pool stays, first on a tie
    rep.candidates = [cand(0, 0.80, 0.9, float("-inf")), cand(5, 0.95, 0.9, float("-inf"))]
    assert rep.best("cautious") == 0
    plain = SimulationReport("p", 3, 4, [cand(0, 0.8, 0.9, None)], value_method="exact", reference=0)
    with pytest.raises(UserError, match="no cautious values"):
        plain.to_text(rank="cautious")
    with pytest.raises(UserError, match="rank must be one of"):
        rep.best("lcb")


def test_a_brief_report_keeps_only_what_its_closing_line_ranks_by():
    from sepsis_sdk.tools import CandidateOutcome, SimulationReport

    rep = _four_candidates()
    text = rep.to_text(rank="cautious", brief=True)
    lines = text.splitlines()
    assert lines[0].startswith("World-model simulation (3 steps, 4 samples). value = estimated chance")
    assert "continuing as planned" in lines[0] and "cautious = value with a penalty" in lines[0]
    assert lines[1:5] == [
        "A. [fluid 0, vaso 0]: value 0.860, cautious 0.800, support 0.90",
        "B. [fluid 1, vaso 0]: value 0.840, cautious 0.830, support 0.80",
        "C. [fluid 2, vaso 0]: value 0.990, cautious 0.950, support 0.10",
        "D. [fluid 3, vaso 0]: value 0.850, cautious unsupported, support 0.70",
    ]
    # the same pick as the long cautious report, named without dose ranges
    assert lines[5] == (
        "Best supported: B. [fluid 1, vaso 0] (cautious value 0.830, support 0.80): the highest cautious value "
        "among candidates with support >= 0.5."
    )
    assert len(lines) == 6 and "P(death" not in text and "[0.85" not in text and "advantage" not in text
    assert len(text) < len(rep.to_text(paths=False, rank="cautious")) / 2
    # ranked by value: no cautious column; paths are never shown
    by_value = rep.to_text(rank="value", brief=True, paths=True)
    assert "cautious" not in by_value and "continuing as planned" in by_value
    assert by_value.splitlines()[-1].startswith(
        "Best supported: A. [fluid 0, vaso 0] (value 0.860, support 0.90)"
    )
    usual = SimulationReport("p", 3, 4, [CandidateOutcome(0, 0.1, 0.2, 0.9, 0.0)])  # no values at all
    assert usual.to_text(brief=True).splitlines()[1:] == ["A. [fluid 0, vaso 0]: value n/a, support 0.90"]


def test_the_psr_graph_with_a_cautious_report_takes_the_planners_scores(setup):
    from sepsis_sdk.errors import UserError
    from sepsis_sdk.policies.planner import WorldModelPlannerPolicy

    oracle, cont, h = setup
    planner = WorldModelPlannerPolicy(oracle, continuation=cont, lookahead=1)
    planned = planner.planned_continuation()
    rep = simulate_actions(oracle, h, [0, 7, 24], horizon=2, n_samples=4, continuation=planned)
    scores = planner.cautious_values(oracle.batch([h]))[0]
    assert [c.cautious for c in rep.candidates] == pytest.approx([scores[0], scores[7], scores[24]])
    props = Proposals(candidates=[{"fluid": f, "vaso": v, "rationale": "try"} for f, v in ((0, 0), (1, 2), (4, 4))],
                      reasoning="compare")  # fmt: skip
    decision = RefineDecision(decision="commit", fluid=1, vaso=2, rationale="cautious best")
    model = ScriptedChatModel([props, decision])
    g = build_psr_graph(model, world_model=oracle, continuation=planned, horizon=2, n_samples=4, safety=False,
                        simulation_report="cautious")  # fmt: skip
    final = g.invoke({"history": h})["final"]
    refine_prompt = model.calls[1].last_user_text
    assert "cautious=" in refine_prompt and "highest cautious value" in refine_prompt
    assert final["action"] == 7 and final["source"] == "model"
    # a continuation without cautious values is a configuration error, not a silent value-ranked report
    g2 = build_psr_graph(ScriptedChatModel([props, decision]), world_model=oracle, continuation=cont,
                         horizon=2, n_samples=4, safety=False, simulation_report="cautious")  # fmt: skip
    with pytest.raises(UserError, match="no cautious values"):
        g2.invoke({"history": h})


def test_the_simulate_tool_reads_the_run_continuation(setup):
    oracle, cont, h = setup
    from sepsis_sdk.tools import builtin_tools

    simulate = next(t for t in builtin_tools() if t.name == "simulate")
    ctx = ToolContext(h, world_model=oracle, horizon=2, n_samples=4, continuation=cont)
    res = simulate.invoke({"actions": [{"fluid": 0, "vaso": 0}, {"fluid": 4, "vaso": 4}]}, ctx)
    assert res.data["value_method"] == "exact" and res.data["candidates"][1]["value"] is not None


def test_psr_refine_sees_values_and_the_critique_scores_them(setup):
    oracle, cont, h = setup
    props = Proposals(
        candidates=[{"fluid": f, "vaso": v, "rationale": "try"} for f, v in ((0, 0), (2, 1), (4, 4))],
        reasoning="compare",
    )
    model = ScriptedChatModel(
        [props, RefineDecision(decision="commit", fluid=2, vaso=1, rationale="best value")]
    )
    g = build_psr_graph(model, world_model=oracle, continuation=cont, horizon=2, n_samples=4, safety=False)
    updates = list(g.stream({"history": h}, stream_mode="updates"))
    refine_prompt = model.calls[1].last_user_text
    assert "advantage=" in refine_prompt
    items = next(u for u in updates if "refine" in u)["refine"]["critique"]["items"]
    sim = next(u for u in updates if "simulate" in u)["simulate"]["simulation"]
    values = [c["value"] for c in sim["candidates"]]
    assert all(v is not None for v in values)
    value_verdicts = [v for it in items for v in it["verdicts"] if v["criterion_id"] == "value"]
    assert len(value_verdicts) == 3 and all(v["score"] in (0, 1) for v in value_verdicts)
    assert value_verdicts[int(np.argmax(values))]["score"] == 0  # the best value is never penalised


def test_guard_fallback_improves_on_the_continuation(setup):
    oracle, cont, h = setup
    failing = FunctionChatModel(lambda m, t: LLMCallError("down", model="m", status_code=503, attempts=3))
    g = build_psr_graph(failing, world_model=oracle, continuation=cont, max_retries=0, safety=False)
    final = list(g.stream({"history": h}, stream_mode="updates"))[-1]["prescribe"]["final"]
    assert final["source"] == "fallback" and final["fallback"] == "world-model-planner"
    detail = final["fallback_detail"]
    assert detail["mode"] == "improve" and len(detail["value"]) == 25
    assert detail["action"] == final["action"] == int(np.nanargmax(detail["scores"]))
    # without a continuation the fallback planner holds each action, and says so
    g2 = build_psr_graph(failing, world_model=oracle, max_retries=0, safety=False, horizon=2, n_samples=4)
    d2 = list(g2.stream({"history": h}, stream_mode="updates"))[-1]["prescribe"]["final"]["fallback_detail"]
    assert d2["mode"] == "hold" and any("no continuation policy" in n for n in d2["notes"])
