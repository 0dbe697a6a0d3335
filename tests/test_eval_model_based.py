"""The replay-until-deviation, then world-model protocol on hand-checkable cases."""

from __future__ import annotations

import numpy as np
import pytest

from sepsis_sdk.evaluation.model_based import model_based_value
from sepsis_sdk.policies import FunctionPolicy
from sepsis_sdk.sources.icu_sepsis import sample_cohort
from sepsis_sdk.world_model.fake import FakeWorldModel


@pytest.fixture(scope="module")
def untreated():
    return sample_cohort(60, policy="no_treatment", seed=2)  # every recorded action is 0


def test_policy_that_never_deviates_gets_the_recorded_return(untreated):
    wm = FakeWorldModel(p_death=0.1, p_discharge=0.3)
    res = model_based_value(
        untreated, FunctionPolicy(lambda h: 0), wm, horizon=3, n_samples=2, n_bootstrap=50
    )
    recorded = untreated.data.groupby("patient_id", sort=False)["reward"].sum().to_numpy()
    assert res.deviated == 0.0 and res.mean_deviation_step is None
    assert res.value == pytest.approx(recorded.mean())
    assert np.allclose(res.per_patient, recorded)
    assert res.ci_low <= res.value <= res.ci_high


def test_immediate_deviation_uses_the_world_model(untreated):
    wm = FakeWorldModel(p_death=0.1, p_discharge=0.3)
    res = model_based_value(untreated, FunctionPolicy(lambda h: 24), wm, horizon=4, n_samples=3)
    # hazards 0.1 / 0.3 per step: discharge mass 0.3 * (1 - 0.6^4) / 0.4, the rest split 3:1
    assert res.deviated == 1.0 and res.mean_deviation_step == 0.0
    assert res.value == pytest.approx(0.75)
    assert res.unresolved == pytest.approx(0.6**4)


def test_deviation_after_replayed_steps(untreated):
    wm = FakeWorldModel(p_death=0.5, p_discharge=0.5)
    pol = FunctionPolicy(lambda h: 0 if h.t == 0 else 24)
    res = model_based_value(untreated, pol, wm, horizon=2, n_samples=1)
    lengths = untreated.lengths()
    recorded = untreated.data.groupby("patient_id", sort=False)["reward"].sum().to_numpy()
    expect = np.where(lengths == 1, recorded, 0.5)
    assert np.allclose(res.per_patient, expect)
    assert res.deviated == pytest.approx((lengths > 1).mean())
    assert res.mean_deviation_step == 1.0


def test_feature_mismatch_is_rejected(untreated):
    from sepsis_sdk.errors import UserError
    from sepsis_sdk.features import FeatureSchema, FeatureSpec

    wm = FakeWorldModel(FeatureSchema(name="x", features=(FeatureSpec(name="MeanBP", lower=0, upper=1),)))
    with pytest.raises(UserError, match="do not match"):
        model_based_value(untreated, FunctionPolicy(lambda h: 0), wm)
