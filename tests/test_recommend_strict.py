"""`sepsis-sdk recommend` fails loudly (issue 11): --strict, the fallback banner, escaped output, the
prescribed action in the candidates table, exit 2 for bad input before any LLM call."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from sepsis_sdk.cli import app
from sepsis_sdk.graphs import Prescription, Proposals, RefineDecision
from sepsis_sdk.testing import fake_openai_endpoint
from sepsis_sdk.types import Observation, PatientHistory

WIDE = {"COLUMNS": "200"}
KEY = "sk-live-cli-0123456789abcdef"
ARGS = ["--model", "openai/gpt-4o-mini", "--api-base", "http://fake-llm.test/v1", "--api-key", KEY]


def _patient(tmp_path, names=("meanbp", "lactate"), rows=((60.0, 4.0), (58.0, 4.5))):
    obs = tuple(Observation(t=i, values=v) for i, v in enumerate(rows))
    h = PatientHistory(
        patient_id="bed-7", observations=obs, actions=(0,) * (len(rows) - 1), feature_names=names
    )
    p = tmp_path / "h.json"
    p.write_text(h.model_dump_json())
    return p


def _run(*args):
    return CliRunner().invoke(app, ["recommend", *args], env=WIDE)


def test_strict_exits_3_when_the_fallback_acted_and_the_output_says_so(respx_mock, tmp_path):
    p = _patient(tmp_path)
    fake_openai_endpoint(respx_mock, [503] * 20)
    res = _run("--patient", str(p), "--graph", "direct", "--strict", *ARGS)
    assert res.exit_code == 3, res.output
    assert "FALLBACK ACTED" in res.output and "transport" in res.output
    assert "(fallback, not the model)" in res.output
    fake_openai_endpoint(respx_mock, [503] * 20)
    relaxed = _run("--patient", str(p), "--graph", "direct", *ARGS)
    assert relaxed.exit_code == 0 and "FALLBACK ACTED" in relaxed.output


def test_strict_exits_0_when_the_model_decided(respx_mock, tmp_path):
    p = _patient(tmp_path, rows=((80.0, 1.0), (82.0, 1.1)))
    fake_openai_endpoint(respx_mock, [Prescription(fluid=1, vaso=0, rationale="steady")])
    res = _run("--patient", str(p), "--graph", "direct", "--strict", *ARGS)
    assert res.exit_code == 0, res.output
    assert "FALLBACK" not in res.output


def test_guard_override_text_keeps_bracketed_actions(respx_mock, tmp_path):
    fake_openai_endpoint(respx_mock, [Prescription(fluid=0, vaso=0, rationale="observe [wait]")])
    res = _run("--patient", str(_patient(tmp_path)), "--graph", "direct", *ARGS)
    assert res.exit_code == 0, res.output
    assert "Guard override" in res.output and "[fluid 0, vaso 0] replaced by [fluid" in res.output
    assert "observe [wait]" in res.output


def test_candidates_table_has_the_prescribed_action_when_the_guard_replaced_it(respx_mock, tmp_path):
    replies = [Proposals(candidates=[{"fluid": 0, "vaso": 0, "rationale": "wait"}]),
               RefineDecision(decision="commit", fluid=0, vaso=0, rationale="wait")]  # fmt: skip
    fake_openai_endpoint(respx_mock, replies)
    out = tmp_path / "t.json"
    res = _run("--patient", str(_patient(tmp_path)), "--trace", str(out), "--horizon", "2", *ARGS)
    assert res.exit_code == 0, res.output
    final = json.loads(out.read_text())["final"]
    assert final["source"] == "guard" and final["action"] != 0
    assert "* (guard)" in res.output  # its own row, simulated, marked as the prescription


def test_patient_that_does_not_fit_the_world_model_exits_2_before_any_llm_call(
    respx_mock, tmp_path, monkeypatch
):
    from sepsis_sdk.cli import agent as cli_agent
    from sepsis_sdk.world_model.fake import FakeWorldModel

    monkeypatch.setattr(cli_agent, "_load_world_model", lambda spec, history: FakeWorldModel())
    ep = fake_openai_endpoint(respx_mock, [])
    p = _patient(tmp_path, names=("meanbp", "lactate", "hr"), rows=((60.0, 4.0, 100.0), (58.0, 4.5, 110.0)))
    for graph in ("psr", "direct", "tool-calling"):
        res = _run("--patient", str(p), "--graph", graph, "--world-model", "saved", *ARGS)
        assert res.exit_code == 2, res.output
        assert "does not fit the world model" in res.output
    assert ep.calls == 0


def test_unwritable_trace_fails_before_the_agent_call(respx_mock, tmp_path):
    ep = fake_openai_endpoint(respx_mock, [Prescription(fluid=1, vaso=0)])
    res = _run("--patient", str(_patient(tmp_path)), "--graph", "direct", "--trace", str(tmp_path), *ARGS)
    assert res.exit_code == 2 and "directory" in res.output
    assert ep.calls == 0


@pytest.mark.parametrize("status", [401, 404])
def test_configuration_errors_exit_2_with_the_key_redacted(respx_mock, tmp_path, status):
    import httpx

    echo = httpx.Response(status, json={"error": {"message": f"bad key {KEY}"}})
    fake_openai_endpoint(respx_mock, [echo])
    res = _run("--patient", str(_patient(tmp_path)), "--graph", "direct", *ARGS)
    assert res.exit_code == 2, res.output
    assert KEY not in res.output and "REDACTED" in res.output


def test_a_patient_read_from_a_cohort_file_carries_no_hidden_state(tmp_path):
    from sepsis_sdk.cli.agent import _load_history
    from sepsis_sdk.sources.icu_sepsis import sample_cohort

    path = tmp_path / "c.parquet"
    cohort = sample_cohort(3, seed=0)
    cohort.to_parquet(path)
    pid = str(cohort.patient_ids[0])
    assert cohort.episode(pid).history(0).state_id is not None  # the cohort has it (scoring only)
    h = _load_history(path, pid, 0)
    assert h.state_id is None and h.patient_id == pid and len(h.observations) == 1
