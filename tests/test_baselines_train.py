"""Baselines train and act validly (tiny runs); the tabular policy solves a hand-made MDP."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sepsis_sdk.actions import N_ACTIONS
from sepsis_sdk.cohort import Cohort
from sepsis_sdk.features import FeatureSchema, FeatureSpec
from sepsis_sdk.policies import Policy, build_baseline
from sepsis_sdk.policies import UniformPolicy as RandomPolicy
from sepsis_sdk.sources.icu_sepsis import sample_cohort
from sepsis_sdk.truth import true_value


@pytest.fixture(scope="module")
def small():
    return sample_cohort(150, seed=3)


def _two_state_cohort(n=40):
    """State x=0: action 1 survives, action 0 dies; state x=1 (after action 2) always survives."""
    rows = []
    for i in range(n):
        a = (0, 1, 2)[i % 3]
        if a == 2:
            rows += [(f"p{i}", 0, 0.0, 2, 0.0), (f"p{i}", 1, 1.0, 0, 1.0)]
        else:
            rows.append((f"p{i}", 0, 0.0, a, 1.0 if a == 1 else 0.0))
    df = pd.DataFrame(rows, columns=["patient_id", "t", "x", "action", "reward"])
    df["done"] = np.r_[df["patient_id"].to_numpy()[1:] != df["patient_id"].to_numpy()[:-1], True]
    schema = FeatureSchema(name="toy", features=(FeatureSpec(name="x", lower=-1, upper=2),))
    return Cohort(df, schema)


def test_tabular_policy_solves_a_hand_made_mdp():
    from sepsis_sdk.policies.tabular import fit_tabular_policy

    cohort = _two_state_cohort()
    # the exact counted MDP (the default adds a lower-confidence penalty inside the backup)
    pol = fit_tabular_policy(cohort, n_clusters=2, min_count=3, gamma=0.9, backup_pessimism=0.0)
    probs = pol.cohort_probabilities(cohort)
    first = cohort.data["t"].to_numpy() == 0
    # at x=0: action 1 gives 1 now; action 2 gives 0.9 * 1 later; action 0 gives 0 -> choose 1
    assert (probs[first].argmax(1) == 1).all()
    q0 = pol.q[pol.clusters(np.array([[0.0]]))[0]]
    assert q0[1] == pytest.approx(1.0) and q0[2] == pytest.approx(0.9) and q0[0] == pytest.approx(0.0)
    assert np.isneginf(q0[3:]).all()  # never-seen actions are not allowed


def test_tabular_on_icu_sepsis_is_valid_and_markov(small):
    pol = build_baseline("tabular", small, n_clusters=40)
    p = pol.cohort_probabilities(small)
    assert p.shape == (len(small), N_ACTIONS) and np.allclose(p.sum(1), 1)
    # each chosen action was taken at least min_count times in its cluster (or is the cluster's modal one)
    cl = pol.clusters(small.features())
    chosen = pol.policy[cl]
    assert ((pol.counts[cl, chosen] >= 5) | (pol.counts[cl].max(1) < 5)).all()
    assert pol.markov and isinstance(pol, Policy)
    assert 0.7 < true_value(pol) < 0.9


def test_clinician_and_random_baselines(small):
    clin = build_baseline("clinician", small, kind="tabular")
    p = clin.cohort_probabilities(small)
    assert p.min() > 0 and np.allclose(p.sum(1), 1)
    # the fitted clinicians put more mass on the recorded actions than uniform does
    assert p[np.arange(len(small)), small.actions].mean() > 2 / N_ACTIONS
    assert np.allclose(RandomPolicy().cohort_probabilities(small), 1 / N_ACTIONS)
    h = [small.episode(small.patient_ids[0]).history(0)]
    assert np.allclose(clin.action_probabilities(h), p[:1])


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["bc", "dqn", "double_dqn", "bcq", "cql"])
def test_offline_rl_trains_and_acts_validly(small, algo):
    pol = build_baseline(algo, small, n_steps=30, seed=0, batch_size=32, hidden_units=(16,))
    p = pol.cohort_probabilities(small)
    assert p.shape == (len(small), N_ACTIONS)
    assert np.allclose(p.sum(1), 1) and set(np.unique(p)) <= {0.0, 1.0}  # greedy
    h = [small.episode(small.patient_ids[0]).history(t) for t in range(2)]
    assert np.array_equal(pol.action_probabilities(h), p[:2])
    assert 0.0 < true_value(pol) < 1.0
    if algo != "bc":
        q = pol.q_values(small.features()[:3])
        assert q.shape == (3, N_ACTIONS) and np.isfinite(q).all()


def test_unknown_baseline_is_a_user_error(small):
    from sepsis_sdk.errors import UserError

    with pytest.raises(UserError, match="unknown baseline"):
        build_baseline("nope", small)
    from sepsis_sdk.training.offline_rl import train_offline_rl

    with pytest.raises(UserError, match="unknown offline-RL"):
        train_offline_rl(small, "ppo")
