import numpy as np
import pytest

from sepsis_sdk.errors import UserError
from sepsis_sdk.policies import FunctionPolicy, StateTablePolicy
from sepsis_sdk.sources.icu_sepsis import (
    DEATH,
    N_CLINICAL,
    SURVIVAL,
    icu_sepsis_schema,
    load_mdp,
    resolve_policy_table,
    sample_cohort,
    soften,
)
from sepsis_sdk.truth import (
    builtin_policy,
    death_within,
    monte_carlo_value,
    optimal_policy,
    q_values,
    state_values,
    true_value,
)


def test_published_exact_values():
    assert true_value("clinician_raw") == pytest.approx(0.7818, abs=5e-5)
    assert true_value("random") == pytest.approx(0.7801, abs=5e-5)
    assert true_value("optimal") == pytest.approx(0.8751, abs=5e-5)
    assert optimal_policy().value == pytest.approx(0.8751, abs=5e-5)


def test_values_are_consistent_with_bellman_equation():
    pi = builtin_policy("clinician")
    v = state_values(pi)
    q = q_values(pi)
    np.testing.assert_allclose((pi * q).sum(1)[:N_CLINICAL], v[:N_CLINICAL], atol=1e-10)
    assert v[DEATH] == v[SURVIVAL] == 0.0
    assert ((v[:N_CLINICAL] >= 0) & (v[:N_CLINICAL] <= 1)).all()
    # the optimal policy is greedy in its own Q and dominates the clinicians in every state
    sol = optimal_policy()
    assert (sol.values[:N_CLINICAL] >= v[:N_CLINICAL] - 1e-9).all()


def test_admissible_handling():
    mdp = load_mdp()
    assert mdp.admissible.shape == (716, 25)
    # the stored clinician policy puts mass on inadmissible actions; the renormalised one does not
    raw = mdp.expert_policy[:N_CLINICAL]
    assert (raw * ~mdp.admissible[:N_CLINICAL]).sum(1).max() > 0
    clean = builtin_policy("clinician")[:N_CLINICAL]
    assert (clean * ~mdp.admissible[:N_CLINICAL]).sum() == 0
    np.testing.assert_allclose(clean.sum(1), 1.0)
    # an inadmissible row equals the mean of the admissible rows of that state
    s = int(np.flatnonzero((~mdp.admissible[:N_CLINICAL]).any(1))[0])
    bad = int(np.flatnonzero(~mdp.admissible[s])[0])
    np.testing.assert_allclose(mdp.tx_mat[s, bad], mdp.tx_mat[s, mdp.admissible[s]].mean(0), atol=1e-12)
    # admissible-only optimum can only be lower or equal
    assert optimal_policy(admissible_only=True).value <= optimal_policy().value + 1e-12


def test_policy_forms_agree():
    table = builtin_policy("optimal")
    det = table.argmax(1)
    assert true_value(det[:N_CLINICAL]) == pytest.approx(true_value(table))
    mdp = load_mdp()
    # a callable on the observation: the observation identifies the state via its centre
    lookup = {tuple(np.round(mdp.observation(s), 9)): int(det[s]) for s in range(N_CLINICAL)}
    fn_value = true_value(lambda obs: lookup[tuple(np.round(obs, 9))])
    assert fn_value == pytest.approx(true_value(table))
    # a Policy object sees a one-step history with the state id
    assert true_value(StateTablePolicy(table)) == pytest.approx(true_value(table))
    assert true_value(FunctionPolicy(lambda h: 0)) == pytest.approx(true_value("no_treatment"))


@pytest.mark.parametrize(
    "bad", [np.zeros((713, 25)), np.full((713, 25), -0.04), np.zeros((10, 25)), np.full(713, 30), "nope"]
)
def test_bad_policies_raise(bad):
    with pytest.raises(UserError):
        resolve_policy_table(bad)


def test_monte_carlo_agrees_with_exact_value():
    mc = monte_carlo_value("clinician", 20_000, seed=1)
    assert mc.covers(true_value("clinician")) or abs(mc.mean - true_value("clinician")) < 0.006
    assert mc.ci_high - mc.ci_low < 0.03


def test_sampling_is_seeded_and_well_formed():
    a = sample_cohort(500, seed=3)
    b = sample_cohort(500, seed=3)
    assert a.data.equals(b.data)
    assert not a.data.equals(sample_cohort(500, seed=4).data)
    df = a.data
    assert a.n_patients == 500 and a.schema == icu_sepsis_schema() and len(a.schema) == 48
    assert set(df["outcome"].unique()) <= {0, 1}
    # reward 1 exactly on the last step of survivors
    last = df[df["done"]]
    np.testing.assert_array_equal(last["reward"].to_numpy(), last["outcome"].to_numpy())
    assert df.loc[~df["done"], "reward"].sum() == 0
    # the clinician policy (renormalised) never takes an inadmissible action
    mdp = load_mdp()
    assert mdp.admissible[df["state_id"], df["action"]].all()
    np.testing.assert_allclose(
        df["behaviour_prob"], builtin_policy("clinician")[df["state_id"], df["action"]]
    )
    # observations are the state's centres and SOFA
    np.testing.assert_allclose(a.features()[:, :47], mdp.centers[df["state_id"]])
    np.testing.assert_allclose(df["sofa"], mdp.sofa[df["state_id"]])


def test_epsilon_softening_and_custom_policies():
    table = soften(builtin_policy("clinician"), 0.5)
    np.testing.assert_allclose(table.sum(1), 1.0)
    c = sample_cohort(300, policy=builtin_policy("no_treatment"), seed=0)
    assert (c.data["action"] == 0).all()
    with pytest.raises(UserError):
        soften(table, 1.5)
    with pytest.raises(UserError):
        sample_cohort(0)


def test_twenty_thousand_episodes_are_fast():
    # functional check of the vectorised sampler at full size (timing lives in benchmarks/)
    c = sample_cohort(20_000, seed=0)
    assert c.n_patients == 20_000
    mortality = c.summary()["mortality"]
    assert abs((1 - mortality) - true_value("clinician")) < 0.01


def test_horizon_death_probability_is_monotone():
    p1 = death_within("clinician", 1)
    p6 = death_within("clinician", 6)
    p_long = death_within("clinician", 400)
    assert (p6 >= p1 - 1e-12).all() and p6[DEATH] == 1.0 and p6[SURVIVAL] == 0.0
    # after a long horizon everyone has ended: P(death) = 1 - value
    v = state_values("clinician")
    np.testing.assert_allclose(p_long[:N_CLINICAL], 1 - v[:N_CLINICAL], atol=1e-6)
