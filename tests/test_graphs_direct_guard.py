"""The direct (no tools) baseline graph and the guard: validity, admissibility, safety overrides, fallback."""

from __future__ import annotations

import numpy as np
import pytest

from sepsis_sdk.errors import LLMOutputError, UserError
from sepsis_sdk.features import FeatureSchema, FeatureSpec
from sepsis_sdk.graphs import Guard, HoldSafePolicy, Prescription, build_direct_graph, nearest_allowed
from sepsis_sdk.policies import FunctionPolicy
from sepsis_sdk.testing import ScriptedChatModel
from sepsis_sdk.types import Observation, PatientHistory

SCHEMA = FeatureSchema(
    name="mini-mimic",
    features=(
        FeatureSpec(name="meanbp", unit="mmHg", lower=20, upper=200),
        FeatureSpec(name="lactate", unit="mmol/L", lower=0.1, upper=30),
    ),
)


def make_history(map_now=58.0, lactate=3.4, actions=(5, 5)) -> PatientHistory:
    vals = [(70.0, 2.5), (62.0, 3.0), (map_now, lactate)][-(len(actions) + 1) :]
    obs = tuple(Observation(t=i, values=v) for i, v in enumerate(vals))
    return PatientHistory(
        patient_id="p2", observations=obs, actions=actions, feature_names=tuple(SCHEMA.names)
    )


@pytest.fixture(scope="module")
def icu_history():
    from sepsis_sdk.sources.icu_sepsis import load_mdp, sample_cohort

    mdp = load_mdp()
    for h in sample_cohort(30, seed=5).histories():
        if (~mdp.admissible[h.state_id]).sum() >= 5:
            return h
    raise AssertionError("no state with inadmissible actions in the sample")


def test_direct_graph_order_and_action():
    model = ScriptedChatModel([Prescription(fluid=3, vaso=1, rationale="hypotension")])
    g = build_direct_graph(model)
    updates = list(g.stream({"history": make_history()}, stream_mode="updates"))
    assert [next(iter(u)) for u in updates] == ["observe", "decide", "guard", "prescribe"]
    final = updates[-1]["prescribe"]["final"]
    assert (final["action"], final["source"], final["rationale"]) == (16, "model", "hypotension")
    assert "tools" not in {k for c in model.calls for k in (c.kwargs or {})} and model.calls[0].tools is None


def test_direct_graph_without_world_model_falls_back_to_hold_safe():
    # persistent invalid output -> LLMOutputError after re-asks -> node retry -> fallback
    model = ScriptedChatModel(["not json"] * 6, max_reasks=2)
    final = build_direct_graph(model, max_retries=1).invoke({"history": make_history()})["final"]
    assert final["source"] == "fallback" and final["fallback"] == "hold-safe"
    # previous action [fluid 1, vaso 0] breaks no hard rule at MAP 58 / lactate 3.4: it is kept
    assert final["action"] == 5
    assert "LLMOutputError" in final["reasons"][0]


def test_guard_overrides_g1_with_nearest_safe_action():
    g = Guard()
    res = g.check(make_history(), 0, SCHEMA)
    assert res.source == "guard" and res.overridden and res.proposed == 0
    assert res.action in (1, 5)  # one level of vasopressor or of fluid
    assert "G1" in res.reasons[0] and "replaced by" in res.reasons[0]
    ok = g.check(make_history(), 16, SCHEMA)
    assert ok.source == "model" and not ok.overridden and ok.reasons == []


def test_guard_g2_blocks_vasopressor_escalation_at_target_map():
    h = make_history(map_now=80.0, lactate=1.0, actions=(1, 1))  # vaso 1 given, MAP at target now
    res = Guard().check(h, 3, SCHEMA)  # [fluid 0, vaso 3]
    assert res.source == "guard" and res.action == 1 and "G2" in res.reasons[0]


def test_guard_report_only_mode():
    res = Guard(enforce_safety=False).check(make_history(), 0, SCHEMA)
    assert res.source == "model" and res.action == 0


@pytest.mark.parametrize("bad", [25, -1, 3.5, "7", None])
def test_guard_never_lets_an_invalid_action_through(bad):
    res = Guard(fallback=FunctionPolicy(lambda h: 16)).check(make_history(), bad, SCHEMA)
    assert res.source == "fallback" and res.action == 16 and 0 <= res.action < 25


def test_guard_fallback_that_fails_uses_hold_safe():
    def broken(h):
        raise RuntimeError("planner crashed")

    res = Guard(fallback=FunctionPolicy(broken, name="broken")).check(
        make_history(), None, SCHEMA, failure="model down"
    )
    assert res.source == "fallback" and res.fallback == "hold-safe" and res.action == 5
    assert res.reasons[0] == "model down" and "planner crashed" in res.reasons[1]


def test_guard_uses_icu_sepsis_admissibility_only_when_given(icu_history):
    from sepsis_sdk.sources.icu_sepsis import load_mdp
    from sepsis_sdk.truth import hidden_admissible_mask

    adm = load_mdp().admissible[icu_history.state_id]
    bad = int(np.flatnonzero(~adm)[0])
    res = Guard(safety=False, admissible=hidden_admissible_mask).check(icu_history, bad, None)
    assert res.source == "guard" and adm[res.action] and "inadmissible" in res.reasons[0]
    # hidden truth is never read by default
    assert Guard(safety=False).check(icu_history, bad, None).action == bad
    with pytest.warns(DeprecationWarning, match="use_admissibility"):
        assert Guard(safety=False, use_admissibility=False).check(icu_history, bad, None).action == bad
    with pytest.raises(UserError, match="hidden_admissible_mask"):
        Guard(use_admissibility=True)


def test_nearest_allowed_prefers_small_changes():
    ok = np.zeros(25, dtype=bool)
    ok[[24, 7, 11]] = True
    assert nearest_allowed(12, ok) == 7  # [1,2] and [2,1] are both one step from [2,2]: lower index wins
    assert nearest_allowed(7, ok) == 7
    assert nearest_allowed(0, np.zeros(25, dtype=bool)) == 0  # nothing allowed: keep (caller reports)


def test_hold_safe_policy_rows():
    p = HoldSafePolicy().action_probabilities([make_history()])
    assert p.shape == (1, 25) and p[0, 5] == 1.0


def test_llm_output_error_is_an_llm_error():
    # the fallback triggers on LLMError subclasses only; a test double's script running out is not one
    from sepsis_sdk.errors import LLMError
    from sepsis_sdk.testing import ScriptExhaustedError

    assert issubclass(LLMOutputError, LLMError) and not issubclass(ScriptExhaustedError, LLMError)
    with pytest.raises(ScriptExhaustedError):
        build_direct_graph(ScriptedChatModel([])).invoke({"history": make_history()})


def test_guard_relaxes_admissibility_when_it_conflicts_with_the_rules():
    """ICU-Sepsis state 654 admits only [0, 0], which G1 forbids there (lactate > 2): safety wins."""
    from sepsis_sdk.sources.icu_sepsis import icu_sepsis_schema, load_mdp
    from sepsis_sdk.truth import hidden_admissible_mask

    mdp = load_mdp()
    assert np.flatnonzero(mdp.admissible[654]).tolist() == [0]
    obs = tuple(Observation(t=i, values=tuple(mdp.observation(654).tolist())) for i in range(2))
    h = PatientHistory(
        patient_id="s654",
        observations=obs,
        actions=(0,),
        feature_names=tuple(icu_sepsis_schema().names),
        state_id=654,
    )
    res = Guard(admissible=hidden_admissible_mask).check(h, 0)
    assert res.source == "guard" and res.action == 5  # one level of fluid; a vasopressor would break G2
    assert any("G1" in r for r in res.reasons) and any("admissibility relaxed" in r for r in res.reasons)


def test_a_shared_guard_serves_two_graphs_with_their_own_world_models():
    """Regression: the factories used to fill the user's Guard in place, so the second graph's fallback
    planned with the first graph's world model."""
    from sepsis_sdk.testing import FakeWorldModel

    class RecordingWM(FakeWorldModel):
        def __init__(self, tag):
            super().__init__(SCHEMA, effects={"meanbp": (2.0, 4.0)}, p_death=0.01)
            self.tag, self.calls = tag, 0

        def rollout(self, *a, **k):
            self.calls += 1
            return super().rollout(*a, **k)

    shared = Guard()
    wm_a, wm_b = RecordingWM("a"), RecordingWM("b")
    failing = {"max_reasks": 0}
    graph_a = build_direct_graph(
        ScriptedChatModel(["not json"] * 4, **failing), world_model=wm_a, guard=shared, max_retries=1
    )
    graph_b = build_direct_graph(
        ScriptedChatModel(["not json"] * 4, **failing), world_model=wm_b, guard=shared, max_retries=1
    )
    assert shared.fallback is None  # the user's guard is not changed by building graphs
    final_b = graph_b.invoke({"history": make_history()})["final"]
    assert final_b["source"] == "fallback" and final_b["fallback"] == "world-model-planner"
    assert (wm_a.calls, wm_b.calls) == (0, 1)  # graph b planned with its own world model
    final_a = graph_a.invoke({"history": make_history()})["final"]
    assert final_a["fallback"] == "world-model-planner" and (wm_a.calls, wm_b.calls) == (1, 1)
    assert shared.fallback is None


def test_with_default_fallback_returns_a_configured_copy():
    from sepsis_sdk.testing import FakeWorldModel

    g = Guard(enforce_safety=False)
    a = g.with_default_fallback(FakeWorldModel(SCHEMA))
    b = g.with_default_fallback(FakeWorldModel(SCHEMA))
    assert g.fallback is None and a is not g and b is not a
    assert a.fallback is not None and b.fallback is not None and a.fallback is not b.fallback
    assert a.safety is g.safety and a.enforce_safety is False  # the rest of the configuration is kept
    assert a.with_default_fallback(FakeWorldModel(SCHEMA)) is a  # a fallback is set: nothing to fill in
    assert g.with_default_fallback(None) is g
