"""`sepsis-sdk recommend` end to end: LiteLLM HTTP path mocked with respx, fake world model."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from sepsis_sdk.cli import app
from sepsis_sdk.graphs import Proposals, RefineDecision
from sepsis_sdk.testing import fake_openai_endpoint

WIDE = {"COLUMNS": "200"}
ARGS = ["--model", "openai/gpt-4o-mini", "--api-base", "http://fake-llm.test/v1", "--api-key", "sk-fake"]


def _psr_replies():
    return [
        Proposals(
            candidates=[{"fluid": 2, "vaso": 0, "rationale": "a"}, {"fluid": 3, "vaso": 1, "rationale": "b"}]
        ),
        RefineDecision(decision="commit", fluid=0, vaso=0, rationale="wait and see"),
    ]


def test_recommend_from_a_cohort_parquet(respx_mock, tmp_path):
    from sepsis_sdk.sources.icu_sepsis import sample_cohort

    cohort = sample_cohort(3, seed=4)
    path = cohort.to_parquet(tmp_path / "cohort.parquet")
    pid = str(cohort.patient_ids[1])
    ep = fake_openai_endpoint(respx_mock, _psr_replies())
    out = tmp_path / "trace.json"
    res = CliRunner().invoke(app, ["recommend", "--patient", str(path), "--patient-id", pid, "--t", "0",
                                   "--trace", str(out), "--horizon", "3", *ARGS], env=WIDE)  # fmt: skip
    assert res.exit_code == 0, res.output
    assert f"Recommendation for {pid} at t=0" in res.output
    assert "Simulated candidates" in res.output and "P(death)" in res.output
    assert "Rationale" in res.output
    tr = json.loads(out.read_text())
    assert tr["patient_id"] == pid and tr["t"] == 0 and ep.calls == 2
    assert [c["action"] for c in tr["simulations"][0]["report"]["candidates"]] == [10, 16]
    final = tr["final"]
    # the model's [0, 0] is either kept or replaced by the guard; the output says which
    if final["source"] == "guard":
        assert "Guard override" in res.output
    else:
        assert "Guard: no override." in res.output


def test_recommend_from_history_json_with_guard_override(respx_mock, tmp_path):
    from sepsis_sdk.types import Observation, PatientHistory

    names = ("meanbp", "lactate")
    h = PatientHistory(
        patient_id="bed-7",
        observations=(Observation(t=0, values=(60.0, 4.0)), Observation(t=1, values=(58.0, 4.5))),
        actions=(0,),
        feature_names=names,
    )
    p = tmp_path / "h.json"
    p.write_text(h.model_dump_json())
    from sepsis_sdk.graphs import Prescription

    fake_openai_endpoint(respx_mock, [Prescription(fluid=0, vaso=0, rationale="observe")])
    res = CliRunner().invoke(app, ["recommend", "--patient", str(p), "--graph", "direct", *ARGS], env=WIDE)
    assert res.exit_code == 0, res.output
    assert "Recommendation for bed-7 at t=1" in res.output
    assert "Guard override" in res.output and "G1" in res.output
    assert "No simulation was run." in res.output


def test_recommend_bad_file(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("{nope")
    res = CliRunner().invoke(app, ["recommend", "--patient", str(p), *ARGS])
    assert res.exit_code == 2 and "not JSON" in res.output  # bad input: exit 2 (one convention)
