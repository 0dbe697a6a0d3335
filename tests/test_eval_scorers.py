"""The evaluation pipeline's extension points and storage: user scorers, typed resume, world-model loading,
the truth scorer on a synthetic cohort, strict JSON and the manifest."""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass

import numpy as np
import pytest

from sepsis_sdk.errors import UserError
from sepsis_sdk.evaluation.config import (
    DEFAULT_SCORERS,
    CohortConfig,
    EvaluationConfig,
    ModelBasedConfig,
    OPEConfig,
    PolicyConfig,
    SafetyConfig,
    TruthConfig,
)
from sepsis_sdk.evaluation.runner import run_evaluation
from sepsis_sdk.evaluation.scorers import ScoringContext, register_scorer, unregister_scorer
from sepsis_sdk.evaluation.storage import Manifest, RunStore, atomic_write_text, dumps


def _config(tmp_path, **kw):
    base = {
        "out_dir": str(tmp_path / "run"),
        "cohort": CohortConfig(n_episodes=200, seed=2),
        "policies": (PolicyConfig(name="random"), PolicyConfig(name="optimal", kind="builtin")),
        "ope": OPEConfig(estimators=("wis",), n_bootstrap=20),
        "safety": SafetyConfig(n_bootstrap=20),
        "truth": TruthConfig(monte_carlo_episodes=30),
        "executor": "serial",
    }
    base.update(kw)
    return EvaluationConfig(**base)


@dataclass(frozen=True)
class FluidShare:
    """A user's metric: the share of probability on the top fluid level."""

    value: float
    n_rows: int

    def to_dict(self):
        return {"value": self.value, "n_rows": self.n_rows}


class FluidShareScorer:
    name = "test_fluid_share"
    calls = 0

    def score(self, ctx: ScoringContext) -> FluidShare:
        type(self).calls += 1
        top = ctx.probabilities.reshape(-1, 5, 5)[:, 4, :].sum(1)
        return FluidShare(float(top.mean()), len(ctx.cohort))

    def load(self, data):
        return FluidShare(**data)


@pytest.fixture
def fluid_scorer():
    register_scorer(FluidShareScorer)
    FluidShareScorer.calls = 0
    yield FluidShareScorer
    unregister_scorer("test_fluid_share")


def test_a_user_registered_scorer_appears_in_results_and_resumes_typed(tmp_path, fluid_scorer):
    cfg = _config(tmp_path, scorers=(*DEFAULT_SCORERS, "test_fluid_share"))
    rep = run_evaluation(cfg, progress=False)
    share = rep["random"].scores["test_fluid_share"]
    assert isinstance(share, FluidShare) and share.value == pytest.approx(5 / 25)  # uniform: 5 of 25 actions
    assert share.n_rows == rep["random"].n_decisions
    stored = json.loads((tmp_path / "run" / "results.json").read_text())["results"]["random"]
    assert stored["test_fluid_share"] == {"value": pytest.approx(0.2), "n_rows": share.n_rows}
    assert list(stored)[5:11] == [*DEFAULT_SCORERS, "test_fluid_share"]  # one key per scorer, in order
    calls = fluid_scorer.calls
    again = run_evaluation(cfg, progress=False)  # everything done: loaded, not recomputed
    assert fluid_scorer.calls == calls
    assert again["random"].scores["test_fluid_share"] == share
    # the built-in results come back typed too
    assert again["random"].ope["wis"].value == rep["random"].ope["wis"].value
    assert again["random"].safety.adherence == rep["random"].safety.adherence
    assert again["random"].agreement["exact"] == rep["random"].agreement["exact"]
    assert again["optimal"].true_value.to_dict() == rep["optimal"].true_value.to_dict()
    assert again["optimal"].true_value.method == "exact"


def test_scorers_are_part_of_the_fingerprint_only_when_not_the_default(tmp_path):
    plain = _config(tmp_path)
    assert plain.fingerprint() == _config(tmp_path, scorers=DEFAULT_SCORERS).fingerprint()
    assert plain.fingerprint() != _config(tmp_path, scorers=("ope", "safety")).fingerprint()
    with pytest.raises(UserError, match="unknown scorers"):
        run_evaluation(_config(tmp_path, scorers=("ope", "no_such_scorer")), progress=False)


def test_only_the_configured_scorers_run(tmp_path):
    rep = run_evaluation(_config(tmp_path, scorers=("safety",)), progress=False)
    assert set(rep["random"].scores) == {"safety"} and rep["random"].ope is None
    stored = json.loads((tmp_path / "run" / "policies" / "random.json").read_text())
    assert "safety" in stored and "ope" not in stored and "true_value" not in stored


def test_the_runner_never_loads_a_world_model_file(tmp_path):
    from sepsis_sdk.world_model.fake import FakeWorldModel

    mb = ModelBasedConfig(enabled=True, world_model="some/saved/model", horizon=2, n_samples=2)
    with pytest.raises(UserError, match="does not read model files"):
        run_evaluation(_config(tmp_path, model_based=mb), progress=False)
    loads = []

    def loader():
        loads.append(1)
        return FakeWorldModel(p_death=0.1, p_discharge=0.3)

    cfg = _config(tmp_path, model_based=mb, policies=(PolicyConfig(name="random"),))
    rep = run_evaluation(cfg, world_model_loader=loader, progress=False)
    assert loads == [1] and 0.0 <= rep["random"].model_based.value <= 1.0
    run_evaluation(cfg, world_model_loader=loader, progress=False)  # resumed: nothing needs the model
    assert loads == [1]


def test_synthetic_cohort_gets_a_simulated_true_value(tmp_path):
    from sepsis_sdk.sources.synthetic import synthesize_cohort

    cohort = synthesize_cohort(120, seed=3)
    cfg = _config(
        tmp_path, policies=(PolicyConfig(name="random"),), truth=TruthConfig(monte_carlo_episodes=40)
    )
    rep = run_evaluation(cfg, cohort=cohort, progress=False)
    tv = rep["random"].true_value
    assert tv is not None and tv.method == "monte_carlo" and tv.n_episodes == 40
    assert tv.ci_low <= tv.value <= tv.ci_high and tv.truth == "synthetic-mimic-iv"
    # the same number the cohort's ground truth gives directly (its return: the cohort's own reward)
    from sepsis_sdk.policies import UniformPolicy
    from sepsis_sdk.truth import truth_for

    direct = truth_for(cohort).value(UniformPolicy(), markov=True, mc_episodes=40, seed=cfg.seed)
    assert tv.value == pytest.approx(direct.value)


def test_a_cohort_without_known_truth_gets_a_note(tmp_path):
    from sepsis_sdk.sources.icu_sepsis import sample_cohort

    cohort = sample_cohort(150, seed=4)
    cohort.meta["truth"] = "no-such-truth"  # a cohort says which truth applies
    rep = run_evaluation(
        _config(tmp_path, policies=(PolicyConfig(name="random"),)), cohort=cohort, progress=False
    )
    assert rep["random"].true_value is None
    assert any("no ground truth is known" in n for n in rep["random"].notes)


def test_deprecated_truth_helpers_of_the_runner_warn_and_still_work():
    from sepsis_sdk.evaluation import runner
    from sepsis_sdk.truth import true_value

    with pytest.warns(DeprecationWarning, match="truth_for"):
        fn = runner.true_value_of
    assert fn("optimal", markov=True, mc_episodes=0, seed=0)["value"] == pytest.approx(true_value("optimal"))
    with pytest.warns(DeprecationWarning):
        mc = runner.monte_carlo_true_value
    out = mc("random", 40, seed=1)
    assert out["method"] == "monte_carlo" and out["n_episodes"] == 40
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from sepsis_sdk.evaluation.runner import run_evaluation as _  # noqa: F401  (no warning)


def test_dumps_is_strict_json_and_writes_are_atomic(tmp_path):
    text = dumps(
        {"a": float("nan"), "b": [np.float32(1.5), np.int64(2), math.inf], "c": np.array([1.0, 2.0])}
    )
    assert json.loads(text) == {"a": None, "b": [1.5, 2, None], "c": [1.0, 2.0]}
    f = tmp_path / "x" / "y.json"
    atomic_write_text(f, "one")
    atomic_write_text(f, "two")
    assert f.read_text() == "two" and [p.name for p in f.parent.iterdir()] == ["y.json"]  # no temp files left


def test_manifest_and_run_store(tmp_path):
    store = RunStore(tmp_path, "fp1")
    assert store.load("p", []) is None
    store.start("p")
    assert json.loads((tmp_path / "manifest.json").read_text())["policies"]["p"]["status"] == "running"
    with pytest.raises(UserError, match="different config"):
        Manifest(tmp_path, "fp2")
    assert store.result_file("a b/c").name == "a_b_c.json"
    fresh = RunStore(tmp_path, "fp2", fresh=True)  # fresh clears the old run
    assert not (tmp_path / "manifest.json").exists()
    fresh.start("q")
    assert json.loads((tmp_path / "manifest.json").read_text())["fingerprint"] == "fp2"


def test_load_cohort_goes_through_the_one_source_registry(tmp_path):
    from sepsis_sdk.evaluation.runner import load_cohort

    syn = load_cohort(CohortConfig(source="synthetic", n_episodes=30, seed=1))
    assert syn.source == "synthetic-mimic-iv" and syn.n_patients == 30
    icu = load_cohort(CohortConfig(n_episodes=40, seed=1))
    assert icu.source == "icu-sepsis" and icu.n_patients == 40
    f = tmp_path / "c.parquet"
    icu.to_parquet(f)
    for cfg in (CohortConfig(source="parquet", path=str(f)), CohortConfig(source=str(f))):
        assert load_cohort(cfg).n_patients == 40
    with pytest.raises(UserError, match=r"needs cohort\.path"):
        load_cohort(CohortConfig(source="parquet"))
    with pytest.raises(UserError, match="unknown cohort source"):
        load_cohort(CohortConfig(source="no-such-source"))
