"""One ground-truth interface: ICU-Sepsis (exact + the sampler as simulator) and the synthetic generator."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from sepsis_sdk.errors import UserError
from sepsis_sdk.policies import FunctionPolicy
from sepsis_sdk.sources.icu_sepsis import rollout, sample_cohort
from sepsis_sdk.sources.synthetic import SyntheticSepsisModel, synthesize_cohort
from sepsis_sdk.truth import (
    GroundTruth,
    ICUSepsisTruth,
    SyntheticTruth,
    TruthValue,
    register_truth,
    true_value,
    truth_for,
)


@pytest.fixture(scope="module")
def icu():
    return sample_cohort(300, seed=0)


def test_truth_for_says_which_truth_applies(icu):
    t = truth_for(icu)
    assert isinstance(t, ICUSepsisTruth) and isinstance(t, GroundTruth) and t.has_exact
    syn = truth_for(synthesize_cohort(30, seed=0))
    assert isinstance(syn, SyntheticTruth) and not syn.has_exact
    assert syn.reward == "raghu"  # synthetic cohorts are labelled with the Raghu-style reward
    from sepsis_sdk.cohort import Cohort

    real = Cohort(icu.data.drop(columns=["state_id"]), icu.schema, source="my-hospital.parquet")
    assert truth_for(real) is None
    assert truth_for(icu.select(icu.patient_ids[:5].tolist())) is not None  # selections keep the truth


def test_icu_value_is_exact_for_markov_and_simulated_otherwise(icu):
    t = truth_for(icu)
    v = t.value("clinician", markov=True, mc_episodes=0)
    assert v.method == "exact" and v.value == pytest.approx(true_value("clinician"))
    assert v.to_dict() == {"value": v.value, "ci_low": None, "ci_high": None, "method": "exact"}
    # a Policy without markov=True is simulated on its histories (the same sampler, one batch per step)
    pol = FunctionPolicy(lambda h: 0, name="none")
    mc = t.value(pol, markov=False, mc_episodes=4000, seed=2)
    assert mc.method == "monte_carlo" and mc.n_episodes == 4000
    assert mc.ci_low - 0.01 < true_value("no_treatment") < mc.ci_high + 0.01
    assert set(mc.to_dict()) == {"value", "ci_low", "ci_high", "method", "n_episodes", "unfinished"}
    with pytest.raises(UserError, match="mc_episodes"):
        t.value(pol, markov=False, mc_episodes=0)


def test_history_dependent_policy_sees_its_history():
    seen = []

    def second_step_differs(h):
        seen.append((len(h.observations), len(h.actions), h.state_id is not None))
        return 0 if len(h.actions) == 0 else 5 * 2

    ro = rollout(FunctionPolicy(second_step_differs), 50, seed=1)
    assert (1, 0, True) in seen and any(n == a + 1 and n > 1 for n, a, _ in seen)
    first = ro.t == 0
    assert (ro.action[first] == 0).all() and (ro.action[~first] == 10).all()
    assert ro.returns.shape == (50,) and set(np.unique(ro.returns)) <= {0.0, 1.0}


def test_sampler_is_the_simulator_with_rows_recorded():
    c = sample_cohort(500, seed=7, policy="random")
    ro = rollout("random", 500, seed=7)
    np.testing.assert_array_equal(c.actions, ro.action)
    np.testing.assert_array_equal(c.data["state_id"].to_numpy(), ro.state)
    mc = ICUSepsisTruth().simulate("random", episodes=500, seed=7)
    assert mc.mean == pytest.approx(c.data.groupby("patient_id")["reward"].sum().mean())


def test_synthetic_truth_matches_the_deprecated_method():
    m = SyntheticSepsisModel()
    new = SyntheticTruth(m).simulate("guideline", episodes=200, seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DeprecationWarning):
            m.true_value("guideline", n_patients=200, seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        old = m.true_value("guideline", n_patients=200, seed=4)
    assert new == old
    v = SyntheticTruth(m).value("guideline", markov=True, mc_episodes=200, seed=4)
    assert v.method == "monte_carlo" and v.value == pytest.approx(old.mean)  # no exact solution there


def test_row_level_truth_for_world_model_evaluation(icu):
    t = ICUSepsisTruth()
    rows = np.arange(10)
    p, obs = t.next_state_distribution(icu, rows, icu.actions[rows])
    assert p.shape == (10, 713) and obs.shape == (713, 48)
    np.testing.assert_allclose(p.sum(1), 1.0)
    adm = t.admissible_mask(icu, rows)
    assert adm.shape == (10, 25) and adm[np.arange(10), icu.actions[rows]].all()  # clinicians act admissibly
    d = t.death_within_constant(icu, rows, 2)
    assert d.shape == (10, 25) and ((d >= 0) & (d <= 1)).all()
    from sepsis_sdk.cohort import Cohort

    with pytest.raises(UserError, match="state_id"):
        t.states(Cohort(icu.data.drop(columns=["state_id"]), icu.schema, source="icu-sepsis"))


def test_register_a_truth():
    from sepsis_sdk.cohort import Cohort

    class Constant(ICUSepsisTruth):
        name = "constant"

        def exact_value(self, policy):
            return 0.5

    register_truth("constant-sim")(lambda cohort: Constant())
    c = sample_cohort(5, seed=0)
    c2 = Cohort(c.data, c.schema, source="elsewhere", meta={**c.meta, "truth": "constant-sim"})
    assert truth_for(c2).value("x", markov=True, mc_episodes=0) == TruthValue(0.5, "exact", truth="constant")


def test_deprecated_monte_carlo_value_warns():
    from sepsis_sdk.truth import monte_carlo_value

    with pytest.warns(DeprecationWarning):
        mc = monte_carlo_value("clinician", 200, seed=0)
    assert mc == ICUSepsisTruth().simulate("clinician", episodes=200, seed=0)
