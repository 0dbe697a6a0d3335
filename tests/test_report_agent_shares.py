"""Agent rows of an evaluation report carry where their final actions came from (model, guard, fallback).

A scripted fake chat model (no network): an invalid reply when lactate is high (the fallback acts), no
treatment when the blood pressure is low (the safety guard may replace it), else a fixed prescription.
The report's shares are checked against the agent's own ``shares()`` and against its recorded sources.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from sepsis_sdk.evaluation.config import (
    CohortConfig,
    EvaluationConfig,
    OPEConfig,
    PolicyConfig,
    SafetyConfig,
    TruthConfig,
)
from sepsis_sdk.evaluation.executor import SerialExecutor
from sepsis_sdk.evaluation.runner import run_evaluation
from sepsis_sdk.graphs import Guard, build_direct_graph
from sepsis_sdk.testing import FunctionChatModel
from sepsis_sdk.truth.agent import AgentPolicy

COLUMNS = ("agent_model_share", "agent_guard_share", "agent_fallback_share", "agent_decisions")


def _last(text: str, role: str) -> float:
    line = next(x for x in text.splitlines() if x.startswith(f"- {role} ["))
    return float(re.findall(r"[-+]?\d+(?:\.\d+)?", line.split("]:", 1)[1])[-1])


def scripted(messages, tools) -> str:
    text = next(m["content"] for m in messages if "- MAP [" in str(m.get("content")))  # the patient prompt
    if _last(text, "lactate") > 0.5:
        return "not JSON at all"  # -> the fallback acts
    if _last(text, "MAP") < 0:
        return json.dumps({"fluid": 0, "vaso": 0, "rationale": "wait"})  # the guard may step in
    return json.dumps({"fluid": 2, "vaso": 1, "rationale": "fixed"})


def _agent() -> AgentPolicy:
    model = FunctionChatModel(scripted)
    return AgentPolicy(build_direct_graph(model, guard=Guard(), max_retries=0), model="fake/scripted",
                       name="agent", max_concurrency=2)  # fmt: skip


def _config(out: Path, truth: bool = False) -> EvaluationConfig:
    return EvaluationConfig(
        out_dir=str(out), cohort=CohortConfig(n_episodes=60, seed=1), policies=(PolicyConfig(name="clinician"),),
        ope=OPEConfig(estimators=("wis",), n_bootstrap=20), safety=SafetyConfig(n_bootstrap=20),
        truth=TruthConfig(enabled=truth, monte_carlo_episodes=20), chunk_patients=4,
    )  # fmt: skip


def _csv(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "results.csv", newline="") as f:
        return {r["policy"]: r for r in csv.DictReader(f)}


def test_an_agent_row_carries_its_shares_and_other_rows_stay_blank(tmp_path):
    agent = _agent()
    rep = run_evaluation(
        _config(tmp_path), policies={"agent": agent}, executor=SerialExecutor(), progress=False
    )
    row = rep["agent"]
    own = agent.shares()  # nothing but the scored decisions asked it: the same numbers
    assert row.agent == {"decisions": row.n_decisions, "shares": own}
    assert row.agent_shares == own and min(own.values()) > 0  # a real mix of model, guard and fallback
    assert sum(own.values()) == pytest.approx(1.0)
    assert rep["clinician"].agent is None and rep["clinician"].agent_shares is None
    table = _csv(tmp_path)
    for s in ("model", "guard", "fallback"):
        assert float(table["agent"][f"agent_{s}_share"]) == own[s]
    assert table["agent"]["agent_decisions"] == str(row.n_decisions)
    assert all(table["clinician"][c] == "" for c in COLUMNS)  # blank, never a made-up number
    md = (tmp_path / "results.md").read_text()
    section = md.split("## Agent decisions", 1)[1].split("##", 1)[0]
    assert f"| agent | {row.n_decisions} | {100 * own['model']:.1f} |" in section
    assert "clinician" not in section
    stored = json.loads((tmp_path / "results.json").read_text())["results"]
    assert "agent" not in stored["clinician"] and stored["agent"]["agent"]["shares"] == own
    # a resumed run reads the shares back from the stored result: the same table
    again = run_evaluation(_config(tmp_path), policies={"agent": _agent()}, executor=SerialExecutor(),
                           progress=False)  # fmt: skip
    assert again["agent"].agent == row.agent and _csv(tmp_path)["agent"] == table["agent"]


def test_the_shares_count_the_scored_decisions_only_not_the_truth_sweep(tmp_path):
    agent = _agent()
    rep = run_evaluation(_config(tmp_path, truth=True), policies={"agent": agent}, executor=SerialExecutor(),
                         progress=False)  # fmt: skip
    n = rep["agent"].n_decisions
    assert rep["agent"].true_value.method == "exact"  # the 713-state sweep asked the agent afterwards
    assert len(agent.sources) == n + 713
    scored = agent.sources[:n]
    expect = {s: scored.count(s) / n for s in ("model", "guard", "fallback")}
    assert rep["agent"].agent == {"decisions": n, "shares": expect}
    assert agent.shares() != expect  # the agent's own running total mixes in the sweep's decisions


def test_decisions_not_seen_here_give_no_shares_but_a_note(tmp_path):
    run_evaluation(_config(tmp_path), policies={"agent": _agent()}, executor=SerialExecutor(), progress=False)
    (tmp_path / "policies" / "agent.json").unlink()  # a run killed after its chunks were saved
    chunks = sorted((tmp_path / "work" / "agent").glob("chunk_*.npy"))
    chunks[0].unlink()
    rep = run_evaluation(_config(tmp_path), policies={"agent": _agent()}, executor=SerialExecutor(),
                         progress=False)  # fmt: skip
    assert rep["agent"].agent is None
    assert any(n.startswith("agent shares not reported") for n in rep["agent"].notes)
    assert all(_csv(tmp_path)["agent"][c] == "" for c in COLUMNS)
    assert "## Agent decisions" not in (tmp_path / "results.md").read_text()


def test_one_task_per_policy_reports_the_same_shares(tmp_path):
    ref = run_evaluation(_config(tmp_path / "a"), policies={"agent": _agent()}, executor=SerialExecutor(),
                         progress=False)  # fmt: skip
    rep = run_evaluation(_config(tmp_path / "b"), policies={"agent": _agent()}, executor=SerialExecutor(),
                         progress=False, fan_out="policies")  # fmt: skip
    assert rep["agent"].agent == ref["agent"].agent is not None
