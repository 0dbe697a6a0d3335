"""The world-model planner policy and GraphPolicy (any graph as a Policy, bounded async concurrency)."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from sepsis_sdk.features import FeatureSchema, FeatureSpec
from sepsis_sdk.graphs import Prescription, build_direct_graph, build_psr_graph
from sepsis_sdk.policies import GraphPolicy, Policy, UniformPolicy, WorldModelPlannerPolicy
from sepsis_sdk.testing import FunctionChatModel
from sepsis_sdk.types import Observation, PatientHistory
from sepsis_sdk.world_model.fake import FakeWorldModel

SCHEMA = FeatureSchema(
    name="mini-mimic",
    features=(
        FeatureSpec(name="meanbp", unit="mmHg", lower=20, upper=200),
        FeatureSpec(name="lactate", unit="mmol/L", lower=0.1, upper=30),
    ),
)


def make_history(pid="p", map_now=58.0, lactate=3.4, actions=(5, 5)) -> PatientHistory:
    vals = [(70.0, 2.5), (62.0, 3.0), (map_now, lactate)]
    obs = tuple(Observation(t=i, values=v) for i, v in enumerate(vals))
    return PatientHistory(
        patient_id=pid, observations=obs, actions=actions, feature_names=tuple(SCHEMA.names)
    )


def hazard_wm(best: int, support=1.0):
    """Death hazard lowest for action ``best`` (0.01), 0.05 elsewhere."""

    def hazard(state, action):
        return np.where(action == best, 0.01, 0.05), np.full(len(action), 0.02)

    return FakeWorldModel(SCHEMA, hazard=hazard, support=support)


def test_planner_picks_the_lowest_hazard_action_in_one_rollout():
    wm = hazard_wm(best=17)
    calls = []
    orig = wm.rollout
    wm.rollout = lambda *a, **k: calls.append(np.asarray(a[1]).shape) or orig(*a, **k)
    planner = WorldModelPlannerPolicy(wm, horizon=4, n_samples=2)
    hs = [make_history("a"), make_history("b")]
    probs = planner.action_probabilities(hs)
    assert calls == [(2, 25, 4)]  # every patient and every candidate in one batched rollout
    assert isinstance(planner, Policy) and probs.shape == (2, 25) and (probs.argmax(1) == 17).all()
    d = planner.decide(make_history())
    assert d.action == 17 and d.p_death[17] < d.p_death[0]
    assert d.excluded.get(0) == ["breaks a hard safety rule"]  # G1: no treatment with lactate 3.4


def test_planner_never_picks_an_unsafe_action_even_if_best():
    planner = WorldModelPlannerPolicy(hazard_wm(best=0), horizon=2, n_samples=1)
    d = planner.decide(make_history())
    assert d.action != 0 and not np.isfinite(d.scores[0])
    assert (
        WorldModelPlannerPolicy(hazard_wm(best=0), horizon=2, n_samples=1, safety=False)
        .decide(make_history())
        .action
        == 0
    )


def test_planner_support_penalty_and_candidates():
    # action 17 has the lowest hazard but no support: with a strong support penalty it loses
    def support(state, action):
        return np.where(action == 17, 0.0, 1.0)

    wm = hazard_wm(best=17, support=support)
    assert (
        WorldModelPlannerPolicy(wm, horizon=3, n_samples=1, support_penalty=0.0).decide(make_history()).action
        == 17
    )
    assert (
        WorldModelPlannerPolicy(wm, horizon=3, n_samples=1, support_penalty=1.0).decide(make_history()).action
        != 17
    )
    only = WorldModelPlannerPolicy(wm, horizon=3, n_samples=1, candidates=[5, 10]).decide(make_history())
    assert only.candidates == [5, 10] and only.action in (5, 10)


def test_planner_temperature_gives_a_distribution():
    p = WorldModelPlannerPolicy(
        hazard_wm(best=17), horizon=3, n_samples=1, temperature=0.05
    ).action_probabilities([make_history()])
    assert np.isclose(p.sum(), 1.0) and p[0, 17] == p.max() and p[0, 0] == 0.0 and (p > 0).sum() > 1


def test_planner_hidden_admissibility_is_an_explicit_option():
    from sepsis_sdk.sources.icu_sepsis import load_mdp, sample_cohort

    hs = list(sample_cohort(5, seed=2).histories())[:6]
    planner = WorldModelPlannerPolicy(FakeWorldModel(), horizon=2, n_samples=1, use_hidden_admissibility=True)
    adm = load_mdp().admissible
    for h, d in zip(hs, planner.plan(hs), strict=True):
        assert adm[h.state_id, d.action]
    # by default the planner never reads the hidden state: stripping state_id changes no decision
    default = WorldModelPlannerPolicy(FakeWorldModel(), horizon=2, n_samples=1)
    stripped = [h.model_copy(update={"state_id": None}) for h in hs]
    assert [d.action for d in default.plan(hs)] == [d.action for d in default.plan(stripped)]


def _direct_model(delay=0.0, inflight=None, lock=None, peak=None):
    def fn(messages, tools):
        if inflight is not None:
            with lock:
                inflight[0] += 1
                peak[0] = max(peak[0], inflight[0])
            time.sleep(delay)
            with lock:
                inflight[0] -= 1
        return Prescription(fluid=3, vaso=1, rationale="x")

    return FunctionChatModel(fn)


def test_graph_policy_runs_many_with_bounded_concurrency():
    inflight, peak, lock = [0], [0], threading.Lock()
    model = _direct_model(0.05, inflight, lock, peak)
    policy = GraphPolicy(lambda: build_direct_graph(model), concurrency=3)
    hs = [make_history(f"p{i}") for i in range(8)]
    decisions = asyncio.run(policy.arun_many(hs))
    assert [d.patient_id for d in decisions] == [f"p{i}" for i in range(8)]
    assert all(d.action == 16 and d.trace["source"] == "model" for d in decisions)
    assert 1 < peak[0] <= 3
    assert policy.name == "direct"


def test_graph_policy_action_probabilities_and_checkpointer_threads(tmp_path):
    from sepsis_sdk.graphs import sqlite_checkpointer

    model = _direct_model()
    g = build_direct_graph(model, checkpointer=sqlite_checkpointer(str(tmp_path / "c.sqlite")))
    policy = GraphPolicy(g, name="direct-llm")
    probs = policy.action_probabilities([make_history("a"), make_history("b")])
    assert probs.shape == (2, 25) and (probs[:, 16] == 1).all()
    assert len(policy.decisions) == 2 and policy.decisions[0].trace["graph"] == "direct"


def test_graph_policy_on_error():
    def boom(messages, tools):
        raise KeyError("bug in user code")  # not an LLMError: the graph raises

    g = build_direct_graph(FunctionChatModel(boom))
    with pytest.raises(KeyError):
        GraphPolicy(g).decide(make_history())
    d = GraphPolicy(g, on_error=UniformPolicy()).decide(make_history())
    assert d.error and "bug in user code" in d.error and 0 <= d.action < 25


def test_graph_policy_psr_matches_single_runs():
    wm = hazard_wm(best=17)

    def fn(messages, tools):
        text = messages[-1]["content"]
        if "Propose" in text:
            return {"candidates": [{"fluid": 3, "vaso": 2}, {"fluid": 2, "vaso": 2}], "reasoning": ""}
        return {"decision": "commit", "fluid": 3, "vaso": 2, "rationale": "lowest hazard"}

    policy = GraphPolicy(build_psr_graph(FunctionChatModel(fn), world_model=wm), concurrency=4)
    out = policy.run_many([make_history(f"p{i}") for i in range(5)])
    assert [d.action for d in out] == [17] * 5
