"""Closed-loop action values: exact on finite support, Monte Carlo otherwise, against hand-computed Q."""

from __future__ import annotations

import numpy as np
import pytest

from sepsis_sdk.errors import UserError
from sepsis_sdk.features import FeatureSchema, FeatureSpec
from sepsis_sdk.rewards import RaghuReward
from sepsis_sdk.world_model._protocol import HistoryBatch, Rollout
from sepsis_sdk.world_model.value import (
    FiniteSupportModel,
    TableContinuation,
    action_values,
    as_continuation,
    evaluate_on_support,
)

SCHEMA = FeatureSchema(
    name="toy",
    features=(FeatureSpec(name="sofa", lower=0, upper=24), FeatureSpec(name="lactate", lower=0, upper=30)),
)
OBS = np.array([[2.0, 1.0], [6.0, 3.0], [10.0, 6.0]])  # three states: mild, sick, very sick
M = 3


def _table() -> np.ndarray:
    """(3, 25, 5): next state 0..2, death (3), discharge (4). Action 24 is good, action 0 is bad."""
    t = np.zeros((M, 25, M + 2))
    for s in range(M):
        for a in range(25):
            q = a / 24.0  # treatment intensity helps
            die = [0.02, 0.08, 0.20][s] * (1.3 - 0.6 * q)
            leave = [0.30, 0.10, 0.02][s] * (0.7 + 0.6 * q)
            stay = 1.0 - die - leave
            up = stay * (0.4 - 0.3 * q)  # drift to a sicker state
            t[s, a, min(s + 1, M - 1)] += up
            t[s, a, max(s - 1, 0)] += stay - up
            t[s, a, M], t[s, a, M + 1] = die, leave
    return t


class ToyMDP:
    """A tiny Markov world model with known dynamics (implements FiniteSupportModel and sample_next)."""

    schema = SCHEMA
    window = 1
    n_members = 1
    name = "toy"

    def __init__(self, with_sample_next: bool = True) -> None:
        self.t = _table()
        if not with_sample_next:
            self.sample_next = None  # hide it (attribute lookups then fall back to rollout)
            del self.sample_next

    def _s(self, batch: HistoryBatch) -> np.ndarray:
        x = batch.x[:, -1]
        return np.argmin(((x[:, None, :] - OBS[None]) ** 2).sum(-1), 1)

    def batch(self, x: np.ndarray) -> HistoryBatch:
        x = np.asarray(x, dtype=float)
        b = len(x)
        return HistoryBatch(
            x=x[:, None], mask=np.ones((b, 1, 2), bool), actions=np.full((b, 1), -1),
            valid=np.ones((b, 1), bool), static=np.zeros((b, 0)),
        )  # fmt: skip

    def support_batch(self) -> HistoryBatch:
        return self.batch(OBS)

    def transition_triplets(self, batch: HistoryBatch, member: int = 0):
        p = self.t[self._s(batch)].reshape(-1, M + 2)
        rows, cols = np.nonzero(p)
        return rows, cols, p[rows, cols]

    def support(self, batch: HistoryBatch, actions) -> np.ndarray:
        return np.where(np.asarray(actions) == 0, 0.2, 1.0)

    def sample_next(self, batch: HistoryBatch, actions, rng):
        s, a = self._s(batch), np.asarray(actions)
        p = self.t[s, a]
        stay = p[:, :M] / p[:, :M].sum(1, keepdims=True)
        nxt = (stay.cumsum(1) < rng.random(len(s))[:, None]).sum(1)
        return OBS[np.minimum(nxt, M - 1)], p[:, M], p[:, M + 1]

    def rollout(self, batch, plans, *, n_samples=8, seed=0, noise=True):
        """Backend-like: noise keyed on the history (same rows, same futures), NaN after termination."""
        b = batch.size
        p = np.asarray(plans)
        k, h, n = p.shape[1], p.shape[2], n_samples
        s0 = self._s(batch)
        states = np.full((b, k, n, h, 2), np.nan)
        pd = np.zeros((b, k, n))
        pq = np.zeros((b, k, n))
        for i in range(b):
            rng = np.random.default_rng([seed, int(s0[i])])
            for j in range(k):
                for m in range(n):
                    s, surv = s0[i], 1.0
                    alive = True
                    for t in range(h):
                        pr = self.t[s, p[i, j, t]]
                        pd[i, j, m] += surv * pr[M]
                        pq[i, j, m] += surv * pr[M + 1]
                        surv *= 1 - pr[M] - pr[M + 1]
                        u = rng.random()
                        if noise and u < pr[M] + pr[M + 1]:
                            alive = False
                        stay = pr[:M] / pr[:M].sum()
                        s = (
                            int(np.argmax(stay))
                            if not noise
                            else int(min((stay.cumsum() < rng.random()).sum(), M - 1))
                        )
                        if alive:
                            states[i, j, m, t] = OBS[s]
        nanmean = np.zeros((b, k, h, 2))
        return Rollout(
            states=states, alive=np.isfinite(states[..., 0]), p_death=pd.mean(-1), p_discharge=pq.mean(-1),
            mean=nanmean, std=nanmean, epistemic_std=nanmean, support=np.ones((b, k)), plans=p,
        )  # fmt: skip


BEHAVIOUR = np.full((M, 25), 0.5 / 24)
BEHAVIOUR[:, 12] = 0.5  # the clinicians mostly give a middle dose


class TableBehaviour:
    name = "behaviour"
    markov = True

    def probabilities(self, batch: HistoryBatch) -> np.ndarray:
        return BEHAVIOUR[ToyMDP()._s(batch)]


def exact_q(t: np.ndarray, pi: np.ndarray, reward_step: np.ndarray | None = None) -> np.ndarray:
    """Q^pi(s, a) with survival reward (+ optional per-transition step rewards), gamma 1, by a linear solve."""
    p_pi = np.einsum("sa,sat->st", pi, t[:, :, :M])
    r_sa = t[:, :, M + 1].copy()
    if reward_step is not None:
        r_sa += (t[:, :, :M] * reward_step[:, None, :]).sum(-1) + t[:, :, M] * -15 + t[:, :, M + 1] * 14
    r_pi = (pi * r_sa).sum(1)
    v = np.linalg.solve(np.eye(M) - p_pi, r_pi)
    return r_sa + t[:, :, :M] @ v


def test_toy_model_is_a_finite_support_model():
    assert isinstance(ToyMDP(), FiniteSupportModel)


def test_exact_value_equals_hand_computed_q_and_advantage():
    wm = ToyMDP()
    av = action_values(wm, wm.support_batch(), None, continuation=TableBehaviour())
    q = exact_q(wm.t, BEHAVIOUR)
    assert av.method == "exact" and av.value.shape == (M, 25)
    np.testing.assert_allclose(av.value, q, atol=1e-9)
    assert (av.reference == 12).all()
    np.testing.assert_allclose(av.advantage, q - q[:, [12]], atol=1e-9)
    assert (av.std == 0).all() and np.allclose(av.lower, av.value)  # one member: no spread
    np.testing.assert_allclose(av.support[:, 0], 0.2)
    assert av.value[:, 24].min() > av.value[:, 0].max() - 1e-9 or (av.value[:, 24] > av.value[:, 0]).all()


def test_exact_value_under_raghu_reward():
    wm = ToyMDP()
    r = RaghuReward()  # terminal +15 / -15; per step SOFA and lactate changes
    av = action_values(wm, wm.support_batch(), [0, 12, 24], continuation=TableBehaviour(), reward=r)
    ds = OBS[None, :, 0] - OBS[:, None, 0]
    dl = OBS[None, :, 1] - OBS[:, None, 1]
    step = -0.025 * ((ds == 0) & (OBS[None, :, 0] > 0)) - 0.125 * ds - 2 * np.tanh(dl)
    p_pi = np.einsum("sa,sat->st", BEHAVIOUR, wm.t[:, :, :M])
    r_sa = (wm.t[:, :, :M] * step[:, None, :]).sum(-1) - 15 * wm.t[:, :, M] + 15 * wm.t[:, :, M + 1]
    v = np.linalg.solve(np.eye(M) - p_pi, (BEHAVIOUR * r_sa).sum(1))
    q = r_sa + wm.t[:, :, :M] @ v
    np.testing.assert_allclose(av.value, q[:, [0, 12, 24]], atol=1e-8)
    assert av.reward == "raghu"


@pytest.mark.parametrize("with_sample_next", [True, False])
def test_monte_carlo_value_agrees_with_exact_within_its_error(with_sample_next):
    wm = ToyMDP(with_sample_next=with_sample_next)
    q = exact_q(wm.t, BEHAVIOUR)
    n = 3000 if with_sample_next else 400
    av = action_values(
        wm, wm.batch(OBS[[0, 2]]), [0, 24], continuation=TableBehaviour(), method="monte-carlo",
        n_samples=n, max_steps=200, seed=3,
    )  # fmt: skip
    assert av.method == "monte-carlo"
    z = np.abs(av.value - q[[0, 2]][:, [0, 24]]) / np.maximum(av.std, 1e-12)
    assert z.max() < 4.5, (av.value, q[[0, 2]][:, [0, 24]], av.std)
    assert (av.std > 0).all() and (av.lower < av.value).all() and (av.upper > av.value).all()
    again = action_values(
        wm, wm.batch(OBS[[0, 2]]), [0, 24], continuation=TableBehaviour(), method="monte-carlo",
        n_samples=n, max_steps=200, seed=3,
    )  # fmt: skip
    np.testing.assert_array_equal(av.value, again.value)  # same seed, same values


def test_finite_horizon_and_terminal_value():
    wm = ToyMDP()
    one = action_values(wm, wm.support_batch(), [5], continuation=TableBehaviour(), horizon=1)
    np.testing.assert_allclose(one.value[:, 0], wm.t[:, 5, M + 1])  # one step: P(discharge now)
    tv = lambda x: np.full(len(x), 0.5)  # noqa: E731
    with_tv = action_values(
        wm, wm.support_batch(), [5], continuation=TableBehaviour(), horizon=1, terminal_value=tv
    )
    np.testing.assert_allclose(with_tv.value[:, 0], wm.t[:, 5, M + 1] + 0.5 * wm.t[:, 5, :M].sum(1))


def test_policy_iteration_on_support_reaches_the_optimum():
    wm = ToyMDP()
    cont = TableBehaviour()
    for _ in range(6):
        av = action_values(wm, wm.support_batch(), None, continuation=cont)
        table = np.eye(25)[av.value.argmax(1)]
        cont = TableContinuation(keys=OBS, table=table, base=TableBehaviour())
    v = evaluate_on_support(wm, cont)[0]
    v_star = np.zeros(M)  # value iteration on the true model
    for _ in range(5000):
        v_star = (wm.t[:, :, M + 1] + wm.t[:, :, :M] @ v_star).max(1)
    np.testing.assert_allclose(v, v_star, atol=1e-7)


def test_bad_inputs_raise_clear_errors():
    wm = ToyMDP()
    sb = wm.support_batch()
    with pytest.raises(UserError, match="horizon must be >= 1"):
        action_values(wm, sb, None, continuation=TableBehaviour(), horizon=0)
    with pytest.raises(UserError, match="no continuation policy"):
        action_values(wm, sb, None, continuation=None)
    with pytest.raises(UserError, match="unknown continuation 'behaviour'"):
        action_values(wm, sb, None, continuation="behaviour")
    with pytest.raises(UserError, match="unknown method"):
        action_values(wm, sb, None, continuation=TableBehaviour(), method="guess")
    with pytest.raises(UserError, match="0-24"):
        action_values(wm, sb, [25], continuation=TableBehaviour())
    with pytest.raises(UserError, match="cannot use a int"):
        as_continuation(3)

    class NoSupport:
        schema = SCHEMA

    with pytest.raises(UserError, match="no finite next-state support"):
        action_values(NoSupport(), sb, None, continuation=TableBehaviour(), method="exact")


def test_neighbour_model_is_exact_on_discrete_data_and_monte_carlo_on_continuous():
    from sepsis_sdk.sources.icu_sepsis import sample_cohort
    from sepsis_sdk.sources.synthetic import synthesize_cohort
    from sepsis_sdk.world_model import NeighbourWorldModel
    from sepsis_sdk.world_model.value import fit_continuation

    icu = sample_cohort(300, seed=4)
    wm = NeighbourWorldModel.fit(icu, k=10, n_members=2)
    assert wm.has_finite_support and isinstance(wm, FiniteSupportModel)
    hs = list(icu.histories())[:4]
    batch = wm.batch(hs)
    rows, cols, probs = wm.transition_triplets(batch, 1)
    m = len(wm.next_table)
    sums = np.bincount(rows, weights=probs, minlength=4 * 25)
    np.testing.assert_allclose(sums, 1.0, atol=1e-9)  # a distribution for every (patient, action)
    assert cols.min() >= 0 and cols.max() <= m + 1 and (probs > 0).all()
    cont = fit_continuation(icu)
    av = action_values(wm, batch, [0, 6, 12], continuation=cont)
    assert av.method == "exact" and av.members.shape == (4, 3, 2)
    assert ((av.lower <= av.value + 1e-12) & (av.value <= av.upper + 1e-12)).all()
    assert ((av.value >= 0) & (av.value <= 1)).all()

    syn = synthesize_cohort(60, seed=2)
    wm2 = NeighbourWorldModel.fit(syn, k=10, n_members=2)
    assert not wm2.has_finite_support  # continuous data: "delta" mode, no finite support
    with pytest.raises(UserError, match="no finite next-state support"):
        action_values(
            wm2, wm2.batch(list(syn.histories())[:2]), [0], continuation=fit_continuation(syn), method="exact"
        )


# ------------------------------------------------------------------ pessimistic policy iteration (converge)
from sepsis_sdk.policies.planner import WorldModelPlannerPolicy  # noqa: E402
from sepsis_sdk.world_model.optimize import mean_transitions, optimize_on_support  # noqa: E402


class CountedToy(ToyMDP):
    """The toy MDP with data counts: action 24 (the best) was seen only ``rare`` times, the rest 100."""

    def __init__(self, rare: float = 1.0) -> None:
        super().__init__()
        self.rare = rare

    def data_counts(self, batch):
        n = np.full((batch.size, 25), 100.0)
        n[:, 24] = self.rare
        return n


def _v_star(t: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    v = np.zeros(M)
    q_mask = np.ones((M, 25), bool) if allowed is None else allowed
    for _ in range(5000):
        v = np.where(q_mask, t[:, :, M + 1] + t[:, :, :M] @ v, -np.inf).max(1)
    return v


def test_without_pessimism_it_finds_the_optimum_of_the_model():
    wm = CountedToy(rare=100.0)
    op = optimize_on_support(wm, backup_pessimism=0.0, min_count=0.0, gamma=1.0)
    assert op.converged and op.iterations <= 10
    np.testing.assert_allclose(op.v, _v_star(wm.t), atol=1e-7)
    assert (op.actions == 24).all()  # the toy's best action everywhere
    np.testing.assert_array_equal(op.table().argmax(1), op.actions)


def test_penalty_inside_the_backup_avoids_a_rarely_tried_action_and_min_count_excludes_it():
    wm = CountedToy(rare=1.0)
    free = optimize_on_support(wm, backup_pessimism=0.0, min_count=0.0, gamma=1.0)
    pess = optimize_on_support(wm, backup_pessimism=0.5, min_count=0.0, gamma=1.0)
    assert (free.actions == 24).all()
    assert (pess.actions != 24).all()  # a 0.5 penalty on one observation outweighs its small advantage
    assert (pess.q[:, 24] < free.q[:, 24] - 0.4).all()
    cut = optimize_on_support(wm, backup_pessimism=0.0, min_count=5.0, gamma=1.0)
    assert not cut.allowed[:, 24].any() and (cut.actions != 24).all()
    allowed = np.ones((M, 25), bool)
    allowed[:, 24] = False
    np.testing.assert_allclose(cut.v, _v_star(wm.t, allowed), atol=1e-7)  # the optimum without action 24


def test_planner_converge_uses_the_optimised_table_on_support_and_one_step_elsewhere():
    wm = CountedToy(rare=100.0)
    planner = WorldModelPlannerPolicy(
        wm,
        continuation=TableBehaviour(),
        lookahead="converge",
        backup_pessimism=0.1,
        min_count=5,
        safety=False,
    )
    sb = wm.support_batch()
    scores = planner.scores(sb)
    op = planner.optimized
    np.testing.assert_array_equal(scores.argmax(1), op.actions)
    np.testing.assert_allclose(scores, op.q)
    off = wm.batch(np.array([[4.0, 2.0]]))  # not a support observation: one penalised step over the table
    got = planner.scores(off)
    av = action_values(wm, off, None, continuation=planner._inner)
    np.testing.assert_allclose(got, av.value - 0.1 / np.sqrt(100.0))


def test_bad_settings_and_models_raise_clear_errors():
    with pytest.raises(UserError, match="lookahead"):
        WorldModelPlannerPolicy(ToyMDP(), continuation=TableBehaviour(), lookahead="forever")
    with pytest.raises(UserError, match="gamma"):
        WorldModelPlannerPolicy(ToyMDP(), continuation=TableBehaviour(), lookahead="converge", gamma=0.0)
    with pytest.raises(UserError, match="data_counts"):
        optimize_on_support(ToyMDP())  # no data counts but a penalty asked for
    assert optimize_on_support(ToyMDP(), backup_pessimism=0.0, min_count=0.0).converged

    class NoSupport:
        schema = ToyMDP.schema

    with pytest.raises(UserError, match="finite next-state support"):
        optimize_on_support(NoSupport())
    with pytest.raises(UserError, match="allowed"):
        optimize_on_support(CountedToy(), allowed=np.ones((2, 25), bool))
    empty_row = np.ones((M, 25), bool)
    empty_row[1] = False
    with pytest.raises(UserError, match="no action in support states \\[1\\]"):
        optimize_on_support(CountedToy(), allowed=empty_row)  # never an action the mask excludes
    with pytest.raises(UserError, match="needs a continuation"):
        WorldModelPlannerPolicy(CountedToy(), lookahead="converge")  # not silently the hold rule
    with pytest.raises(UserError, match="mode='hold'"):
        WorldModelPlannerPolicy(
            CountedToy(), continuation=TableBehaviour(), mode="hold", lookahead="converge"
        )


def test_neighbour_point_law_and_counts_are_the_counted_model_on_icu_sepsis():
    pytest.importorskip("sklearn")
    from sepsis_sdk.policies.tabular import fit_tabular_policy
    from sepsis_sdk.sources.icu_sepsis import sample_cohort
    from sepsis_sdk.world_model import NeighbourWorldModel
    from sepsis_sdk.world_model.value import support_states

    cohort = sample_cohort(400, seed=3)
    wm = NeighbourWorldModel.fit(cohort, k=1, prior_count=0)
    tab = fit_tabular_policy(cohort)
    sb = support_states(wm)
    x = np.where(sb.mask[:, -1], sb.x[:, -1], np.nan)
    cl = tab.clusters(np.where(np.isfinite(x), x, tab.fill[None]))
    seen = tab.counts[cl] >= 1
    n = wm.data_counts(sb)
    np.testing.assert_allclose(n[seen], tab.counts[cl][seen])  # exact look-alikes: the plain count
    # the point law's death + discharge share equals the counted terminal share
    rows, cols, probs = mean_transitions(wm)
    m = sb.size
    term = np.bincount(rows, weights=probs * (cols >= m), minlength=m * 25).reshape(m, 25)
    a = cohort.actions
    done = cohort.data["done"].to_numpy(bool)
    xs = np.where(cohort.masks(), cohort.features(), np.nan)
    s = tab.clusters(np.where(np.isfinite(xs), xs, tab.fill[None]))
    ends = np.zeros_like(tab.counts)
    np.add.at(ends, (s[done], a[done]), 1.0)
    counted = ends[cl] / np.maximum(tab.counts[cl], 1.0)
    np.testing.assert_allclose(term[seen], counted[seen], atol=1e-12)


def test_oracle_converge_reaches_the_exact_optimum():
    from sepsis_sdk.truth import true_value
    from sepsis_sdk.truth.oracle import OracleWorldModel

    op = optimize_on_support(OracleWorldModel(), backup_pessimism=0.0, min_count=0.0, gamma=1.0)
    assert op.converged
    # the oracle's support states are the 713 clinical states, in order
    assert true_value(op.table()) == pytest.approx(true_value("optimal"), abs=1e-6)
