"""The evaluation runner: report files hold the computed numbers; resume after an interrupted run."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from sepsis_sdk.actions import N_ACTIONS
from sepsis_sdk.evaluation.config import (
    CohortConfig,
    EvaluationConfig,
    OPEConfig,
    PolicyConfig,
    SafetyConfig,
    TruthConfig,
)
from sepsis_sdk.evaluation.executor import LocalProcessExecutor, SerialExecutor, make_executor
from sepsis_sdk.evaluation.runner import run_evaluation
from sepsis_sdk.truth import true_value


class CountingPolicy:
    """History-dependent policy (not Markov): no fluid at t=0, then the clinicians' modal action 0."""

    markov = False

    def __init__(self, name: str = "counting", fail_after: int | None = None) -> None:
        self.name = name
        self.calls = 0
        self.fail_after = fail_after

    def action_probabilities(self, histories):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("simulated crash")
        out = np.zeros((len(histories), N_ACTIONS))
        for i, h in enumerate(histories):
            out[i, 0 if h.t == 0 else 5] = 1.0
        return out


def _config(tmp_path, **kw):
    base = {
        "out_dir": str(tmp_path / "run"),
        "cohort": CohortConfig(n_episodes=300, seed=1),
        "policies": (
            PolicyConfig(name="clinician"),
            PolicyConfig(name="random"),
            PolicyConfig(name="optimal", kind="builtin"),
        ),
        "ope": OPEConfig(estimators=("wis", "wpdis"), n_bootstrap=50),
        "safety": SafetyConfig(n_bootstrap=50),
        "truth": TruthConfig(monte_carlo_episodes=60),
        "executor": "serial",
        "chunk_patients": 10,
    }
    base.update(kw)
    return EvaluationConfig(**base)


def test_report_files_hold_the_computed_numbers(tmp_path):
    cfg = _config(tmp_path)
    rep = run_evaluation(cfg, progress=False)
    out = tmp_path / "run"
    for f in (
        "results.md",
        "results.csv",
        "results.json",
        "manifest.json",
        "plots/action_heatmaps.png",
        "plots/value_vs_safety.png",
        "plots/ope_vs_truth.png",
    ):
        assert (out / f).exists(), f
    data = json.loads((out / "results.json").read_text())
    rows = {r["policy"]: r for r in csv.DictReader((out / "results.csv").open())}
    md = (out / "results.md").read_text()
    assert set(rows) == {"clinician", "random", "optimal"}
    # exact truth for the built-in tables
    assert float(rows["optimal"]["true_value"]) == pytest.approx(true_value("optimal"), abs=1e-9)
    assert float(rows["random"]["true_value"]) == pytest.approx(0.7801, abs=1e-3)
    assert abs(float(rows["clinician"]["true_value"]) - 0.782) < 0.01  # fitted clinician model
    for name, r in rep.results.items():
        wis = r.ope["wis"].value
        assert float(rows[name]["wis"]) == pytest.approx(wis)
        assert data["results"][name]["ope"]["estimates"]["wis"]["value"] == pytest.approx(wis)
        adh = r.safety.adherence.value
        assert float(rows[name]["adherence"]) == pytest.approx(adh)
        assert f"{100 * adh:.1f}" in md
        assert r.n_patients == rep.meta["n_test_patients"]
    # random breaks G2 far more often than the clinicians; uniform agreement is exactly 1/25
    assert rep["random"].safety.adherence.value < rep["clinician"].safety.adherence.value - 0.3
    assert rep["random"].agreement["exact"].value == pytest.approx(1 / 25)
    assert "| clinician | 0.78" in md and "G1" in md and "approximate" in md
    # share of the clinician -> optimal gap: 100 for the optimal policy, about -2 for random
    assert "gap closed %" in md
    results = md.split("## Results")[1].split("\n\n")[1]  # the results table only
    cells = {ln.split("|")[1].strip(): ln.split("|")[3].strip() for ln in results.splitlines()}
    assert cells["optimal"] == "100" and cells["random"] == "-2"


def test_resume_after_interrupted_run_redoes_nothing_finished(tmp_path, monkeypatch):
    from sepsis_sdk.evaluation import probabilities

    cfg = _config(tmp_path, policies=(PolicyConfig(name="random"),))
    flaky = CountingPolicy("hist", fail_after=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_evaluation(cfg, policies={"hist": flaky}, progress=False)
    out = tmp_path / "run"
    man = json.loads((out / "manifest.json").read_text())
    assert man["policies"]["random"]["status"] == "done"
    assert man["policies"]["hist"]["status"] == "running"
    saved = sorted((out / "work" / "hist").glob("chunk_*.npy"))
    assert len(saved) == 2
    random_file = out / "policies" / "random.json"
    before = random_file.stat().st_mtime_ns

    again = CountingPolicy("hist")
    scored = []  # patient chunks of the cohort scored on the rerun (not the truth's simulated patients)
    real = probabilities._probs_for_chunk
    monkeypatch.setattr(probabilities, "_probs_for_chunk", lambda p, c: scored.append(c) or real(p, c))
    finished = []
    rep = run_evaluation(
        cfg, policies={"hist": again}, progress=False, on_policy_done=lambda r: finished.append(r.name)
    )
    n_chunks = -(-rep.meta["n_test_patients"] // cfg.chunk_patients)
    assert finished == ["hist"]  # random was loaded, not recomputed
    assert random_file.stat().st_mtime_ns == before
    # only the unfinished patient chunks were scored
    assert n_chunks > 3 and len(scored) == n_chunks - 2
    # the stitched probabilities cover every decision: t=0 rows -> action 0, later rows -> action 5
    dist = np.asarray(rep["hist"].action_distribution)
    assert dist[0, 0] > 0 and dist[1, 0] > 0 and dist.sum() == pytest.approx(1.0)
    assert rep["hist"].true_value.method == "monte_carlo"


def test_changed_config_refuses_to_mix_runs(tmp_path):
    from sepsis_sdk.errors import UserError

    cfg = _config(tmp_path, policies=(PolicyConfig(name="random"),))
    run_evaluation(cfg, progress=False)
    other = _config(tmp_path, policies=(PolicyConfig(name="random"),), seed=5)
    with pytest.raises(UserError, match="different config"):
        run_evaluation(other, progress=False)
    run_evaluation(other, progress=False, fresh=True)


def test_config_from_yaml_and_bad_file(tmp_path):
    from sepsis_sdk.errors import DataError

    f = tmp_path / "c.yaml"
    f.write_text(
        "out_dir: x\ncohort: {n_episodes: 100}\npolicies: [{name: random}, {name: tabular, options: {n_clusters: 20}}]\n"
    )
    cfg = EvaluationConfig.from_yaml(f)
    assert cfg.cohort.n_episodes == 100 and cfg.policies[1].options == {"n_clusters": 20}
    f.write_text("cohort: {n_episodes: 100, typo: 1}\n")
    with pytest.raises(DataError, match=r"c\.yaml"):
        EvaluationConfig.from_yaml(f)


def _square(x):
    return x * x


def test_executors_map_in_order():
    assert list(SerialExecutor().map(_square, [3, 1, 2])) == [9, 1, 4]
    ex = make_executor("process", workers=2)
    assert isinstance(ex, LocalProcessExecutor)
    try:
        assert list(ex.map(_square, range(5))) == [0, 1, 4, 9, 16]
        # an unpicklable function falls back to serial work instead of failing
        assert list(ex.map(lambda v: v + 1, [1, 2])) == [2, 3] and ex.fell_back
    finally:
        ex.close()


def test_cli_evaluate_flags(tmp_path):
    from typer.testing import CliRunner

    from sepsis_sdk.cli import app

    res = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--episodes",
            "200",
            "--policies",
            "random,optimal",
            "--out",
            str(tmp_path / "cli"),
            "--n-bootstrap",
            "20",
            "--executor",
            "serial",
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader((tmp_path / "cli" / "results.csv").open()))
    assert [r["policy"] for r in rows] == ["random", "optimal"]
    assert float(rows[1]["true_value"]) == pytest.approx(0.8751, abs=1e-4)
    res = CliRunner().invoke(app, ["safety-rules"])
    assert res.exit_code == 0 and "G1" in res.output


def test_model_based_column_and_per_policy_settings(tmp_path):
    from sepsis_sdk.evaluation.config import ModelBasedConfig
    from sepsis_sdk.policies import FunctionPolicy
    from sepsis_sdk.world_model.fake import FakeWorldModel

    cfg = _config(
        tmp_path,
        policies=(PolicyConfig(name="random"), PolicyConfig(name="optimal", kind="builtin")),
        model_based=ModelBasedConfig(enabled=True, horizon=3, n_samples=2),
    )
    slow = FunctionPolicy(lambda h: 7, name="slow")
    rep = run_evaluation(
        cfg,
        policies={"slow": slow},
        policy_configs={
            "slow": PolicyConfig(name="slow", max_patients=5, patient_selection="shortest", truth_episodes=0)
        },
        world_model=FakeWorldModel(p_death=0.1, p_discharge=0.3),
        progress=False,
    )
    mb = rep["random"].model_based
    assert mb is not None and mb.n_patients == rep.meta["n_test_patients"] and 0.0 <= mb.value <= 1.0
    assert rep["optimal"].model_based is None  # a state table cannot act on simulated states
    assert any("model-based protocol not possible" in n for n in rep["optimal"].notes)
    s = rep["slow"]
    assert s.n_patients == 5 and s.true_value is None
    assert any("shortest" in n for n in s.notes) and any("truth_episodes = 0" in n for n in s.notes)
    md = (tmp_path / "run" / "results.md").read_text()
    assert "model-based" in md and f"{mb.value:.3f}" in md
