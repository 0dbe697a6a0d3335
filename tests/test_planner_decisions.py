"""Decision value: the planner as policy improvement, checked on exact ICU-Sepsis truth with the oracle."""

from __future__ import annotations

import numpy as np
import pytest

from sepsis_sdk.errors import UserError
from sepsis_sdk.policies.planner import WorldModelPlannerPolicy
from sepsis_sdk.sources.icu_sepsis import N_CLINICAL, load_mdp, sample_cohort
from sepsis_sdk.truth import q_values, true_value
from sepsis_sdk.truth.oracle import OracleWorldModel
from sepsis_sdk.types import Observation, PatientHistory
from sepsis_sdk.world_model._protocol import HistoryBatch
from sepsis_sdk.world_model.value import TableContinuation, action_values

# Validation only: the true clinician policy as a continuation (tests may read the truth).
MDP = load_mdp()
CLIN = MDP.clinician_policy()[:N_CLINICAL]


@pytest.fixture(scope="module")
def oracle() -> OracleWorldModel:
    return OracleWorldModel()


@pytest.fixture(scope="module")
def true_clinicians(oracle: OracleWorldModel) -> TableContinuation:
    return TableContinuation(keys=oracle._obs, table=CLIN, base=None, name="true-clinicians")


def state_histories(oracle: OracleWorldModel, states) -> list[PatientHistory]:
    names = tuple(oracle.schema.names)
    return [
        PatientHistory(
            patient_id=f"s{s}",
            observations=(Observation(t=0, values=tuple(oracle._obs[s])),),
            feature_names=names,
        )
        for s in states
    ]


def test_oracle_closed_loop_value_is_the_exact_q_of_the_clinicians(oracle, true_clinicians):
    av = action_values(oracle, oracle.support_batch(), None, continuation=true_clinicians)
    q = q_values(CLIN)[:N_CLINICAL]
    assert av.method == "exact"
    np.testing.assert_allclose(av.value, q, atol=1e-8)
    # Monte Carlo through the same oracle agrees within its own error
    idx = np.array([3, 250, 600])
    sb = oracle.support_batch()
    sub = HistoryBatch(*(getattr(sb, f)[idx] for f in ("x", "mask", "actions", "valid", "static")))
    mc = action_values(
        oracle,
        sub,
        [0, 12, 24],
        continuation=true_clinicians,
        method="monte-carlo",
        n_samples=1500,
        max_steps=120,
    )
    z = np.abs(mc.value - q[idx][:, [0, 12, 24]]) / mc.std
    assert mc.method == "monte-carlo" and z.max() < 4.5


def test_oracle_one_and_two_step_improvement_reach_the_targets(oracle, true_clinicians):
    hs = state_histories(oracle, range(N_CLINICAL))
    one = WorldModelPlannerPolicy(oracle, continuation=true_clinicians, safety=False)
    two = WorldModelPlannerPolicy(oracle, continuation=true_clinicians, safety=False, lookahead=2)
    assert one.mode == "improve" and one.markov
    v1, v2 = true_value(one.action_probabilities(hs)), true_value(two.action_probabilities(hs))
    assert v1 >= 0.86 and v2 >= 0.87, (v1, v2)  # DESIGN.md §6: 0.862 and 0.8747; clinicians 0.782


def test_hold_rule_stays_an_option_and_is_capped_near_clinician_level(oracle):
    hs = state_histories(oracle, range(N_CLINICAL))
    hold = WorldModelPlannerPolicy(oracle, mode="hold", horizon=3, n_samples=8, safety=False)
    d = hold.decide(hs[0])
    assert d.mode == "hold" and "hold each action" in d.notes[0] and d.value == []
    # exact dynamics + the hold rule: 0.795 (DESIGN.md §6); sampled here, still far below improvement (0.862)
    assert true_value(hold.action_probabilities(hs)) < 0.84


def test_planner_fit_on_a_cohort_without_state_id(oracle):
    from sepsis_sdk.cohort import Cohort

    c = sample_cohort(400, seed=1)
    stripped = Cohort(c.data.drop(columns=["state_id"]), c.schema, source="no-state-id", meta=c.meta)
    assert not stripped.has_state_ids
    planner = WorldModelPlannerPolicy.fit(oracle, stripped)
    hs = [h for h in list(stripped.histories())[:5]]
    assert all(h.state_id is None for h in hs)
    ds = planner.plan(hs)
    assert all(0 <= d.action < 25 and d.mode == "improve" and len(d.value) == 25 for d in ds)
    for d in ds:  # the advantage is measured against the continuation's usual choice
        assert d.advantage[d.reference] == pytest.approx(0.0, abs=1e-12)
    from sepsis_sdk.policies.tabular import fit_tabular_policy

    assert 0.7 < true_value(fit_tabular_policy(stripped)) < 0.9


class _Disagreeing:
    """Two-member finite-support model: the members agree except on action 24 (huge spread there)."""

    schema = OracleWorldModel().schema
    window = 1
    n_members = 2

    def __init__(self, oracle: OracleWorldModel) -> None:
        self.o = oracle

    def batch(self, hs):
        return self.o.batch(hs)

    def support_batch(self):
        return self.o.support_batch()

    def support(self, batch, actions):
        return np.where(np.asarray(actions) == 3, 0.05, 1.0)

    def transition_triplets(self, batch, member):
        rows, cols, probs = self.o.transition_triplets(batch)
        if member == 1:  # member 1 thinks action 24 is much better (discharge everyone)
            a = rows % 25
            hit = a == 24
            probs = probs.copy()
            probs[hit] = np.where(cols[hit] == N_CLINICAL + 1, 1.0, 0.0)
        return rows, cols, probs


def test_pessimism_and_support_lower_unsupported_and_uncertain_actions(oracle, true_clinicians):
    wm = _Disagreeing(oracle)
    hs = state_histories(oracle, [10])
    bold = WorldModelPlannerPolicy(wm, continuation=true_clinicians, pessimism=0.0, safety=False).decide(
        hs[0]
    )
    careful = WorldModelPlannerPolicy(wm, continuation=true_clinicians, pessimism=2.0, safety=False).decide(
        hs[0]
    )
    assert bold.action == 24  # the optimistic mean of the two members
    assert careful.action != 24 and careful.scores[24] < bold.scores[24]
    assert careful.upper[24] > careful.lower[24]
    strict = WorldModelPlannerPolicy(wm, continuation=true_clinicians, min_support=0.1, safety=False).decide(
        hs[0]
    )
    assert "data support below 0.1" in strict.excluded[3] and not np.isfinite(strict.scores[3])


def test_planner_bad_inputs_raise_clear_errors(oracle):
    with pytest.raises(UserError, match="needs a continuation policy"):
        WorldModelPlannerPolicy(oracle, mode="improve")
    with pytest.raises(UserError, match="unknown planner mode"):
        WorldModelPlannerPolicy(oracle, mode="greedy")
    with pytest.raises(UserError, match="lookahead must be an integer >= 1"):
        WorldModelPlannerPolicy(oracle, continuation=CLIN, lookahead=0)
    with pytest.raises(UserError, match="value_horizon must be >= 1"):
        WorldModelPlannerPolicy(oracle, value_horizon=0)
    with pytest.raises(UserError, match="non-empty training cohort"):
        WorldModelPlannerPolicy.fit(oracle, None)


def test_learning_code_never_imports_the_oracle():
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    offenders = []
    for folder in ("sepsis_sdk", "tools", "graphs", "training", "microbench"):
        for path in (root / folder).rglob("*.py"):
            if "truth" in path.parts:
                continue
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    mod = node.module if isinstance(node, ast.ImportFrom) else ""
                    names = [a.name for a in node.names]
                    if (
                        "oracle" in (mod or "")
                        or "OracleWorldModel" in names
                        or any("oracle" in n for n in names)
                    ):
                        offenders.append(str(path.relative_to(root)))
    assert offenders == []
