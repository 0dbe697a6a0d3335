"""Evaluation metrics, exact ICU-Sepsis truth, and the train/eval CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sepsis_sdk.truth import death_within_constant as exact_death_within
from sepsis_sdk.world_model import FakeWorldModel
from sepsis_sdk.world_model.evaluation import (
    auprc,
    auroc,
    evaluate_world_model,
    write_report,
)


def test_auroc_auprc_match_sklearn():
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.random(500) < 0.2
    p = np.round(rng.random(500) * 0.5 + 0.3 * y, 2)  # ties on purpose
    assert auroc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert auprc(y, p) == pytest.approx(average_precision_score(y, p), abs=0.02)
    assert np.isnan(auroc(np.zeros(5, bool), np.ones(5)))


def test_exact_death_within_matches_transition_matrix():
    from sepsis_sdk.sources.icu_sepsis import DEATH, N_CLINICAL, load_mdp

    mdp = load_mdp()
    s = np.array([0, 17, 400])
    one = exact_death_within(s, 1)
    np.testing.assert_allclose(one, mdp.tx_mat[s, :, DEATH])
    two = exact_death_within(s, 2)
    for a in (0, 12, 24):
        m = mdp.tx_mat[:N_CLINICAL, a, :N_CLINICAL]
        d = mdp.tx_mat[:N_CLINICAL, a, DEATH]
        np.testing.assert_allclose(two[:, a], (d + m @ d)[s])
    assert (exact_death_within(s, 3) >= two - 1e-12).all()


@pytest.fixture(scope="module")
def split():
    from sepsis_sdk.sources.icu_sepsis import sample_cohort

    sp = sample_cohort(200, seed=2).split(seed=0)
    return sp.train, sp.test


def test_report_on_fake_model(split, tmp_path):
    train, test = split
    wm = FakeWorldModel(train.schema, effects={}, noise=0.0, p_death=0.03, p_discharge=0.1)
    rep = evaluate_world_model(wm, train, test, rollout_starts=40, truth_states=20, n_samples=2)
    o = rep["one_step"]["overall"]
    # a fake with no effects and no noise predicts persistence exactly
    assert o["model"]["mae_norm"] == pytest.approx(o["persistence"]["mae_norm"])
    assert rep["rollout"]["model"][0] == pytest.approx(rep["rollout"]["persistence"][0])
    assert 0 <= rep["calibration"]["coverage"] <= 1
    t = rep["termination"]["death"]
    assert t["auroc"] == pytest.approx(0.5)  # constant hazard ranks nobody
    truth = rep["icu_sepsis_truth"]["by_horizon"]["1"]
    assert truth["mean_model"] == pytest.approx(0.03)
    paths = write_report(rep, tmp_path / "r")
    assert json.loads(paths["json"].read_text())["one_step"]["overall"]["model"]["mae_norm"] == pytest.approx(
        o["model"]["mae_norm"]
    )
    md = paths["markdown"].read_text()
    assert "Model beats both baselines on MAE: **no**" in md and "exact ICU-Sepsis truth" in md
    assert all(p.stat().st_size > 1000 for k, p in paths.items() if k.startswith("plot"))


@pytest.mark.slow
def test_cli_train_and_eval(tmp_path):
    from typer.testing import CliRunner

    from sepsis_sdk.cli.world_model import app

    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "train",
            "--cohort",
            "icu-sepsis",
            "--episodes",
            "150",
            "--backend",
            "xgboost",
            "--members",
            "1",
            "--n-estimators",
            "5",
            "--threads",
            "1",
            "--out",
            str(tmp_path / "m"),
        ],
    )
    assert res.exit_code == 0, res.output
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["backend"] == "xgboost" and cfg["info"]["cohort"]["episodes"] == 150
    res = runner.invoke(
        app,
        [
            "eval",
            "--model",
            str(tmp_path / "m"),
            "--cohort",
            "icu-sepsis",
            "--episodes",
            "150",
            "--truth-states",
            "10",
            "--rollout-starts",
            "20",
            "--n-samples",
            "2",
            "--out",
            str(tmp_path / "e"),
        ],
    )
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "e" / "report.json").read_text())
    assert rep["data"]["test"]["patients"] == 23 and rep["command"]["episodes"] == 150
    assert (tmp_path / "e" / "report.md").exists()


@pytest.mark.slow
def test_training_entry_point(tmp_path):
    from sepsis_sdk.training.world_model import train_on_cohort
    from sepsis_sdk.world_model import load_world_model

    model, test = train_on_cohort(
        "icu-sepsis",
        episodes=120,
        backend="xgboost",
        out=tmp_path / "m",
        n_members=1,
        n_estimators=3,
        n_jobs=1,
    )
    assert test.n_patients == 18 and model.info["cohort"]["episodes"] == 120
    again = load_world_model(tmp_path / "m")
    h = list(test.head(2).histories())
    np.testing.assert_array_equal(model.predict(h, 3).mean, again.predict(h, 3).mean)
