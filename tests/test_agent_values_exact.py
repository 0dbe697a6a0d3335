"""Exact (Markov) and Monte Carlo true values of agent graphs on ICU-Sepsis (sepsis_sdk.truth.agent).

Fake chat models only (and one respx-mocked LiteLLM endpoint for the CLI): nothing touches the network.
"""

from __future__ import annotations

import json
import re
import threading

import numpy as np
import pytest

from sepsis_sdk.graphs import Guard, build_direct_graph
from sepsis_sdk.safety import HoldSafePolicy
from sepsis_sdk.testing import FunctionChatModel
from sepsis_sdk.truth import true_value
from sepsis_sdk.truth.agent import (
    MARKOV_PATIENT_ID,
    AgentPolicy,
    DecisionCache,
    cache_key,
    markov_agent_value,
    monte_carlo_agent_value,
    state_histories,
)

NO_RULES = Guard(safety=False)  # the model's action always stands: the value is that of its table


def constant(fluid: int, vaso: int) -> FunctionChatModel:
    return FunctionChatModel(lambda m, t: json.dumps({"fluid": fluid, "vaso": vaso, "rationale": "fixed"}))


def _last(text: str, role: str) -> float:
    """The newest displayed value of one feature line of the prompt ("- MAP [MeanBP]: -0.4, -0.2 SD")."""
    line = next(x for x in text.splitlines() if x.startswith(f"- {role} ["))
    return float(re.findall(r"[-+]?\d+(?:\.\d+)?", line.split("]:", 1)[1])[-1])


def markov_reply(messages, tools) -> str:
    """A fake that looks at the current MAP and lactate only: a Markov policy, different across states."""
    text = messages[-1]["content"]
    fluid = 3 if _last(text, "MAP") < 0 else 1
    vaso = 1 if _last(text, "lactate") > 0 else 0
    return json.dumps({"fluid": fluid, "vaso": vaso, "rationale": "map/lactate"})


@pytest.fixture(scope="module")
def markov_sweep(tmp_path_factory):
    """One full sweep of the Markov fake (shared: a sweep is the slow part), with its cache folder."""
    cache = tmp_path_factory.mktemp("markov-sweep")
    model = FunctionChatModel(markov_reply)
    g = build_direct_graph(model, guard=NO_RULES)
    return (
        markov_agent_value(g, model="fake/markov", cache_dir=cache, max_concurrency=4),
        cache,
        len(model.calls),
    )


# ---------------------------------------------------------------------------------------------- what is shown
def test_markov_histories_do_not_reveal_the_state():
    hs = state_histories()
    assert len(hs) == 713
    assert all(h.state_id is None and h.patient_id == MARKOV_PATIENT_ID for h in hs)
    assert all(h.t == 0 and h.actions == () for h in hs)
    assert len({h.observations[0].values for h in hs}) == 713  # the 47 features tell the states apart


# ---------------------------------------------------------------------------------------------- exact value
def test_a_constant_model_has_the_exact_value_of_its_constant_table(tmp_path):
    model = constant(2, 1)
    g = build_direct_graph(model, guard=NO_RULES)
    r = markov_agent_value(g, model="fake/constant", cache_dir=tmp_path, max_concurrency=4)
    assert r.method == "exact" and r.n_states == 713 and r.new_decisions == 713
    assert r.value == pytest.approx(true_value(np.full(713, 11)), abs=1e-12)  # fluid 2, vaso 1 = index 11
    assert r.shares == {"model": 1.0, "guard": 0.0, "fallback": 0.0}
    assert r.visit_shares["model"] == pytest.approx(1.0)
    assert 0.0 <= r.adherence <= 1.0 and 0.0 <= r.unsafe_rate <= 1.0
    assert len(model.calls) == 713
    prompts = [c.messages[-1]["content"] for c in model.calls]
    assert not any("state-" in p for p in prompts)  # the hidden state index is not in any prompt
    assert all(p.startswith(f"Patient {MARKOV_PATIENT_ID}, decision at 4-hour step t=0.") for p in prompts)
    d = r.to_dict()
    assert json.loads(json.dumps(d))["value"] == r.value and len(d["actions"]) == 713
    # a second call is answered from the cache: no model call, same value
    again = markov_agent_value(g, model="fake/constant", cache_dir=tmp_path, max_concurrency=4)
    assert again.new_decisions == 0 and len(model.calls) == 713 and again.value == r.value


def test_invalid_replies_leave_every_action_to_the_fallback():
    g = build_direct_graph(FunctionChatModel(lambda m, t: "this is not JSON"), max_retries=0)
    r = markov_agent_value(g, model="fake/broken", max_concurrency=4)
    assert r.shares["fallback"] == 1.0 and r.shares["model"] == 0.0
    hold = HoldSafePolicy()  # the direct graph's fallback without a world model
    table = np.argmax(hold.action_probabilities(state_histories()), axis=1)
    assert np.array_equal(r.actions, table)
    assert r.value == pytest.approx(true_value(table), abs=1e-12)


def _completed(actions, states, rest="clinician"):
    from sepsis_sdk.truth import builtin_policy

    table = builtin_policy(rest)[:713].copy()
    table[states] = 0.0
    table[states, actions[states]] = 1.0
    return table


def test_the_psr_and_tool_calling_graphs_are_scored_the_same_way():
    from sepsis_sdk.graphs import build_psr_graph, build_tool_calling_graph
    from sepsis_sdk.testing import FakeWorldModel, SchemaChatModel, tool_call

    states, wm, cfg = [3, 50, 400], FakeWorldModel(), {"recursion_limit": 100}
    psr = build_psr_graph(SchemaChatModel(), world_model=wm, n_candidates=2, max_rounds=1, horizon=2)
    r = markov_agent_value(psr, model="fake/schema", states=states, complete_with="clinician", config=cfg)
    assert r.n_states == 3 and sum(r.shares.values()) == pytest.approx(1.0)
    assert all(0 <= a < 25 for a in r.actions[states]) and (np.delete(r.actions, states) == -1).all()
    assert r.value == pytest.approx(true_value(_completed(r.actions, states)), abs=1e-12)
    assert r.key["graph"] == "psr"

    prescribe = FunctionChatModel(lambda m, t: tool_call("prescription", {"vasopressor": 1, "iv_fluid": 2}))
    tc = build_tool_calling_graph(prescribe, world_model=wm)
    r = markov_agent_value(tc, model="fake/tools", states=states, complete_with="clinician", config=cfg)
    assert r.actions[states].tolist() == [11, 11, 11] and r.shares["model"] == 1.0  # [vaso 1, fluid 2]
    assert r.value == pytest.approx(true_value(_completed(r.actions, states)), abs=1e-12)


# ---------------------------------------------------------------------------------------------- resume
def test_a_crashed_sweep_resumes_with_exactly_the_missing_states(tmp_path):
    states = list(range(100, 140))
    # uninterrupted reference run (its own cache), one decision at a time so calls come in state order
    ref_model = FunctionChatModel(markov_reply)
    ref = markov_agent_value(build_direct_graph(ref_model, guard=NO_RULES), model="fake/markov", states=states,
                             complete_with="clinician", cache_dir=tmp_path / "ref", max_concurrency=1)  # fmt: skip
    assert len(set(ref.actions[states].tolist())) > 1  # the table really depends on the state

    calls = {"n": 0}

    def crashing(messages, tools):
        calls["n"] += 1
        if calls["n"] > 15:
            raise RuntimeError("the process died")  # not an LLMError: it ends the sweep
        return markov_reply(messages, tools)

    g = build_direct_graph(FunctionChatModel(crashing), guard=NO_RULES)
    with pytest.raises(RuntimeError, match="process died"):
        markov_agent_value(g, model="fake/markov", states=states, complete_with="clinician",
                           cache_dir=tmp_path / "run", max_concurrency=1)  # fmt: skip
    key = cache_key(model="fake/markov", graph_kind="direct", mode="markov")
    cached = DecisionCache(tmp_path / "run", key)
    assert sorted(r["state"] for r in cached.records.values()) == states[:15]

    # the file may end in a torn line (a crash mid-write): it is dropped, the sweep goes on
    with open(cached.path, "ab") as f:
        f.write(b'{"item": "obs-0123", "act')
    rerun_model = FunctionChatModel(markov_reply)
    r = markov_agent_value(build_direct_graph(rerun_model, guard=NO_RULES), model="fake/markov", states=states,
                           complete_with="clinician", cache_dir=tmp_path / "run", max_concurrency=1)  # fmt: skip
    assert r.new_decisions == 25 and len(rerun_model.calls) == 25
    asked = [c.messages[-1]["content"] for c in rerun_model.calls]
    assert asked == [c.messages[-1]["content"] for c in ref_model.calls[15:]]  # exactly the remaining states
    assert np.array_equal(r.actions, ref.actions) and r.value == ref.value
    lines = cached.path.read_text().splitlines()
    assert sorted(json.loads(x)["state"] for x in lines) == states  # one line per state, none twice


def test_another_model_or_options_do_not_reuse_the_cache(tmp_path):
    a = cache_key(model="fake/a", graph_kind="direct")
    assert cache_key(model="fake/b", graph_kind="direct") != a
    assert cache_key(model="fake/a", graph_kind="psr") != a
    assert cache_key(model="fake/a", graph_kind="direct", options={"seed": 1}) != a
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "w.bin").write_bytes(b"one")
    k1 = cache_key(model="fake/a", graph_kind="direct", adapter=str(adapter))
    (adapter / "w.bin").write_bytes(b"two")  # retrained at the same path: a new key
    assert cache_key(model="fake/a", graph_kind="direct", adapter=str(adapter)) != k1


def test_agent_policy_reuses_the_sweep_in_true_value_and_run_evaluation(tmp_path, markov_sweep):
    from sepsis_sdk.evaluation.config import (
        CohortConfig,
        EvaluationConfig,
        OPEConfig,
        PolicyConfig,
        SafetyConfig,
        TruthConfig,
    )
    from sepsis_sdk.evaluation.runner import run_evaluation

    sweep, cache, n_calls = markov_sweep
    assert n_calls == 713
    model = FunctionChatModel(markov_reply)
    g = build_direct_graph(model, guard=NO_RULES)
    policy = AgentPolicy(g, model="fake/markov", name="agent", cache_dir=cache)
    # the truth layer's own table path (histories that carry state_id) gets the same decisions
    assert true_value(policy) == pytest.approx(sweep.value, abs=1e-12) and len(model.calls) == 0
    cfg = EvaluationConfig(out_dir=str(tmp_path / "run"), cohort=CohortConfig(n_episodes=60, seed=1),
                           policies=(PolicyConfig(name="clinician"),), ope=OPEConfig(estimators=("wis",),
                           n_bootstrap=20), safety=SafetyConfig(n_bootstrap=20),
                           truth=TruthConfig(monte_carlo_episodes=20), executor="serial")  # fmt: skip
    rep = run_evaluation(cfg, policies={"agent": policy}, progress=False)
    assert rep["agent"].true_value.method == "exact"
    assert rep["agent"].true_value.value == pytest.approx(sweep.value, abs=1e-12)
    assert len(model.calls) == 0  # every cohort row's observation was a state already decided
    assert policy.shares()["model"] == 1.0


# ---------------------------------------------------------------------------------------------- concurrency
@pytest.mark.parametrize("limit", [1, 3])
def test_decisions_in_flight_never_exceed_the_bound_and_reach_it(limit):
    lock, state = threading.Lock(), {"now": 0, "peak": 0}
    barrier = threading.Barrier(limit, timeout=20)  # passes only when `limit` calls are in flight at once

    def reply(messages, tools):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        try:
            barrier.wait()
        finally:
            with lock:
                state["now"] -= 1
        return json.dumps({"fluid": 1, "vaso": 0})

    g = build_direct_graph(FunctionChatModel(reply), guard=NO_RULES)
    r = markov_agent_value(g, model="fake/slow", states=range(4 * limit), max_concurrency=limit)
    assert state["peak"] == limit and r.shares["model"] == 1.0
    assert r.value is None  # a partial sweep without complete_with has no value
    with pytest.raises(Exception, match="max_concurrency"):
        markov_agent_value(g, model="fake/slow", states=[0], max_concurrency=0)


# ---------------------------------------------------------------------------------------------- Monte Carlo
def test_monte_carlo_interval_covers_the_exact_value_of_a_markov_agent(tmp_path, markov_sweep):
    exact = markov_sweep[0]
    g = build_direct_graph(FunctionChatModel(markov_reply), guard=NO_RULES)
    mc = monte_carlo_agent_value(g, model="fake/markov", episodes=100, seed=0, cache_dir=tmp_path,
                                 max_concurrency=4)  # fmt: skip
    assert mc.method == "monte_carlo" and mc.n_episodes == 100 and mc.n_decisions > 100
    assert mc.ci_low <= exact.value <= mc.ci_high
    assert mc.shares["model"] == 1.0 and mc.unfinished == 0
    again = monte_carlo_agent_value(g, model="fake/markov", episodes=100, seed=0, cache_dir=tmp_path)
    assert again.new_decisions == 0 and again.value == mc.value  # replayed from the cache


def test_monte_carlo_histories_carry_no_state_id():
    seen = []

    def reply(messages, tools):
        seen.append(messages[-1]["content"])
        return json.dumps({"fluid": 1, "vaso": 1})

    g = build_direct_graph(FunctionChatModel(reply), guard=NO_RULES)
    import sepsis_sdk.truth.agent as A

    got = []
    orig = A.decide_all

    def spy(graph, items, cache, **kw):
        got.extend(h for _, h, _ in items)
        return orig(graph, items, cache, **kw)

    A.decide_all = spy
    try:
        r = monte_carlo_agent_value(g, model="fake/one", episodes=5, seed=1)
    finally:
        A.decide_all = orig
    assert got and all(h.state_id is None for h in got)
    assert r.value is not None and len(seen) == r.n_decisions


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_evaluate_agent_through_litellm_http(tmp_path, respx_mock):
    from typer.testing import CliRunner

    from sepsis_sdk.cli import app
    from sepsis_sdk.graphs import Prescription
    from sepsis_sdk.testing import fake_openai_endpoint

    ep = fake_openai_endpoint(respx_mock, [Prescription(fluid=2, vaso=1, rationale="r")] * 5)
    out = tmp_path / "out"
    args = ["evaluate-agent", "--graph", "direct", "--model", "openai/gpt-4o-mini", "--markov",
            "--states", "0-4", "--complete-with", "clinician", "--out", str(out),
            "--api-base", ep.api_base, "--api-key", "sk-fake"]  # fmt: skip
    res = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    data = json.loads((out / "agent_value.json").read_text())
    assert data["n_states"] == 5 and data["method"] == "exact" and data["value"] is not None
    assert data["actions"][:5] == [11] * 5 and data["shares"]["model"] == 1.0
    assert data["key"]["model"] == "openai/gpt-4o-mini" and data["key"]["graph"] == "direct"
    # rerun: all five from the cache, no HTTP request
    n = len(respx_mock.calls)
    res = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert (
        len(respx_mock.calls) == n
        and json.loads((out / "agent_value.json").read_text())["new_decisions"] == 0
    )


def test_cli_evaluate_agent_bad_input_exits_2(tmp_path):
    from typer.testing import CliRunner

    from sepsis_sdk.cli import app

    res = CliRunner().invoke(app, ["evaluate-agent", "--states", "0-x", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "Traceback" not in res.output
    f = tmp_path / "file"
    f.write_text("x")
    res = CliRunner().invoke(app, ["evaluate-agent", "--out", str(f)])
    assert res.exit_code == 2 and "not a directory" in res.output


class _StubGraph:
    """A graph whose final action is whatever it is given (to test what the sweep accepts)."""

    name = "stub"

    def __init__(self, action):
        self.action = action
        self.calls = 0

    def invoke(self, state, config=None):
        self.calls += 1
        return {"final": {"action": self.action, "source": "model"}}


@pytest.mark.parametrize("bad", [-1, 25, 3.7, "4"])
def test_an_impossible_final_action_raises_and_is_never_cached(tmp_path, bad):
    with pytest.raises(ValueError, match="not one of the 25"):
        markov_agent_value(_StubGraph(bad), model="stub", states=[0, 1], complete_with="clinician",
                           cache_dir=tmp_path, max_concurrency=1)  # fmt: skip
    cache = DecisionCache(tmp_path, cache_key(model="stub", graph_kind="stub", mode="markov"))
    assert cache.records == {}


def test_a_cached_record_with_an_impossible_action_is_decided_again(tmp_path):
    good = _StubGraph(7)
    first = markov_agent_value(
        good, model="stub", states=[0, 1], complete_with="clinician", cache_dir=tmp_path
    )
    assert first.new_decisions == 2
    cache = DecisionCache(tmp_path, cache_key(model="stub", graph_kind="stub", mode="markov"))
    lines = cache.path.read_text().splitlines()
    rec = json.loads(lines[0])
    rec["action"] = -1  # a hand-edited or foreign cache line: -1 would index action 24
    cache.path.write_text("\n".join([json.dumps(rec), lines[1]]) + "\n")
    again = _StubGraph(7)
    second = markov_agent_value(
        again, model="stub", states=[0, 1], complete_with="clinician", cache_dir=tmp_path
    )
    assert again.calls == 1 and second.new_decisions == 1
    assert (second.actions[[0, 1]] == 7).all()


# ---------------------------------------------------------------------------------------------- sweep records
def test_a_checked_sweep_record_fills_the_cache_and_gives_the_same_exact_value(markov_sweep, tmp_path):
    from sepsis_sdk.truth.agent import seed_from_record

    ref, cache, _ = markov_sweep
    record = next(cache.glob("*/decisions.jsonl"))
    model = FunctionChatModel(markov_reply)
    g = build_direct_graph(model, guard=NO_RULES)
    key = cache_key(model="fake/markov", graph_kind=g.name, mode="markov")
    chk = seed_from_record(g, record, cache_dir=tmp_path / "c", key=key, check=5, seed=1)
    assert chk.used and (chk.recorded, chk.checked, chk.agreed) == (713, 5, 5)
    assert len(model.calls) == 5  # only the checked states were decided again
    r = markov_agent_value(g, model="fake/markov", cache_dir=tmp_path / "c")
    assert r.new_decisions == 0 and r.value == pytest.approx(ref.value, abs=1e-15)
    assert "5/5 identical" in chk.describe()


def test_a_sweep_record_that_the_model_does_not_reproduce_is_not_used(markov_sweep, tmp_path):
    from sepsis_sdk.truth.agent import seed_from_record

    _, cache, _ = markov_sweep
    record = next(cache.glob("*/decisions.jsonl"))
    other = build_direct_graph(constant(4, 4), guard=NO_RULES)  # claims the key, decides differently
    key = cache_key(model="fake/markov", graph_kind=other.name, mode="markov")
    chk = seed_from_record(other, record, cache_dir=tmp_path / "c", key=key, check=8)
    assert not chk.used and chk.checked == 8 and chk.agreed < 8 and "differ" in chk.reason
    assert not (tmp_path / "c").exists() or not list((tmp_path / "c").glob("*/decisions.jsonl"))
    # a different key (another prompt or options) is refused before any model call
    fresh = FunctionChatModel(markov_reply)
    g = build_direct_graph(fresh, guard=NO_RULES)
    k2 = cache_key(model="fake/markov", graph_kind=g.name, options={"temperature": 1}, mode="markov")
    chk2 = seed_from_record(g, record, cache_dir=tmp_path / "d", key=k2)
    assert not chk2.used and "options" in chk2.reason and fresh.calls == []
    assert "not used" in chk2.describe()
    assert not seed_from_record(g, tmp_path / "missing.jsonl", cache_dir=tmp_path / "e", key=k2).used


def test_an_append_after_another_writers_torn_line_keeps_its_own_line(tmp_path):
    key = cache_key(model="fake/x", graph_kind="direct", mode="markov")
    a = DecisionCache(tmp_path, key)
    a.add({"item": "obs-1", "action": 3})
    with open(a.path, "ab") as f:  # another process died mid-write, after `a` opened the cache
        f.write(b'{"item": "obs-2", "act')
    a.add({"item": "obs-3", "action": 7})
    b = DecisionCache(tmp_path, key)  # the torn line is skipped; the records on both sides survive
    assert {k: r["action"] for k, r in b.records.items()} == {"obs-1": 3, "obs-3": 7}
    assert (a.dir / "decisions.lock").exists()  # opening and appending hold the folder's lock
