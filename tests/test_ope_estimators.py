"""OPE estimators on a hand-computable 4-episode cohort, the bootstrap, ESS, and the behaviour model."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from sepsis_sdk.cohort import Cohort
from sepsis_sdk.errors import UserError
from sepsis_sdk.evaluation.bootstrap import bootstrap_counts, iter_count_chunks
from sepsis_sdk.evaluation.ope import (
    ESTIMATORS,
    build_episode_table,
    effective_sample_size,
    evaluate_ope,
    make_statistics,
    weight_diagnostics,
)
from sepsis_sdk.features import FeatureSchema, FeatureSpec

# Four episodes. Per-step ratios pi_e/pi_b are chosen so the cumulative weights are simple:
#   A: len 2, rewards [1, 0],    ratios [2, 0.5]    -> rho [2, 1]
#   B: len 1, rewards [0],       ratios [0.5]       -> rho [0.5]
#   C: len 3, rewards [0, 1, 1], ratios [1, 2, 0.5] -> rho [1, 2, 1]
#   D: len 2, rewards [0, 0],    ratios [1, 3]      -> rho [1, 3]
EPISODES = {
    "A": ([1.0, 0.0], [2.0, 0.5]),
    "B": ([0.0], [0.5]),
    "C": ([0.0, 1.0, 1.0], [1.0, 2.0, 0.5]),
    "D": ([0.0, 0.0], [1.0, 3.0]),
}
PB = 0.25  # behaviour probability of every action taken
Q_CONST = 0.5  # Q(s, a) = 0.5 everywhere, so V(s) = 0.5


def _schema() -> FeatureSchema:
    return FeatureSchema(name="toy", features=(FeatureSpec(name="x", lower=-10.0, upper=10.0),))


def _toy() -> tuple[Cohort, np.ndarray, np.ndarray, np.ndarray]:
    rows, pe_rows, pb = [], [], []
    for pid, (rewards, ratios) in EPISODES.items():
        for t, (r, w) in enumerate(zip(rewards, ratios, strict=True)):
            action = 6  # the action taken; target gives it w * PB, the rest spread uniformly
            rows.append({"patient_id": pid, "t": t, "x": float(t), "action": action, "reward": r,
                         "done": t == len(rewards) - 1})  # fmt: skip
            p = np.full(25, (1.0 - w * PB) / 24)
            p[action] = w * PB
            pe_rows.append(p)
            pb.append(PB)
    cohort = Cohort(pd.DataFrame(rows), _schema(), source="toy")
    q = np.full((len(rows), 25), Q_CONST)
    return cohort, np.array(pe_rows), np.array(pb), q


# Hand arithmetic (final weights A 1, B 0.5, C 1, D 3; returns A 1, B 0, C 2, D 0).
WIS = (1 * 1 + 0.5 * 0 + 1 * 2 + 3 * 0) / (1 + 0.5 + 1 + 3)
# carried weights: denominators t0 = 2+0.5+1+1, t1 = 1+0.5+2+3, t2 = 1+0.5+1+3
WPDIS = (2 * 1) / 4.5 + (2 * 1) / 6.5 + (1 * 1) / 5.5
WPDIS_DROPPED = (2 * 1) / 4.5 + (2 * 1) / (1 + 2 + 3) + (1 * 1) / 1  # finished episodes left out
# groups by length: {B}: 0; {A, D}: (1*1 + 3*0) / 4; {C}: 2; weights 1/4, 2/4, 1/4
PHWIS = (1 * 0 + 2 * 0.25 + 1 * 2) / 4
# DR per episode: sum_t rho_t (r_t - Q) + rho_{t-1} V, with rho_{-1} = 1
DR_A = 2 * (1 - 0.5) + 1 * 0.5 + 1 * (0 - 0.5) + 2 * 0.5
DR_B = 0.5 * (0 - 0.5) + 1 * 0.5
DR_C = (1 * (0 - 0.5) + 0.5) + (2 * (1 - 0.5) + 1 * 0.5) + (1 * (1 - 0.5) + 2 * 0.5)
DR_D = (1 * (0 - 0.5) + 0.5) + (3 * (0 - 0.5) + 1 * 0.5)
DR = (DR_A + DR_B + DR_C + DR_D) / 4
# WDR: self-normalised weights per step; previous-step denominators 4 (= n), 4.5, 6.5
WDR = (
    (2 * 0.5 - 0.5 * 0.5 - 1 * 0.5 - 1 * 0.5) / 4.5 + (4 * 0.5) / 4
    + (-1 * 0.5 + 2 * 0.5 - 3 * 0.5) / 6.5 + (2 * 0.5 + 1 * 0.5 + 1 * 0.5) / 4.5
    + (1 * 0.5) / 5.5 + (2 * 0.5) / 6.5
)  # fmt: skip
FQE = 0.5


def test_hand_computed_values() -> None:
    cohort, pe, pb, q = _toy()
    res = evaluate_ope(cohort, pe, behaviour=pb, q_model=q, n_bootstrap=0)
    expected = {"wis": WIS, "wpdis": WPDIS, "phwis": PHWIS, "dr": DR, "wdr": WDR, "fqe": FQE}
    assert list(res.estimates) == list(ESTIMATORS)
    for name, value in expected.items():
        assert res[name].value == pytest.approx(value, abs=1e-12), name
    assert pytest.approx(0.933955, abs=1e-6) == WPDIS and pytest.approx(0.979798, abs=1e-6) == WDR


def test_wpdis_carries_finished_episodes_at_their_final_weight() -> None:
    cohort, pe, pb, _ = _toy()
    value = evaluate_ope(cohort, pe, behaviour=pb, estimators=("wpdis",), n_bootstrap=0)["wpdis"].value
    assert value == pytest.approx(WPDIS)
    assert abs(value - WPDIS_DROPPED) > 0.5  # the other convention gives a very different number


def test_ess_and_weight_diagnostics() -> None:
    cohort, pe, pb, q = _toy()
    res = evaluate_ope(cohort, pe, behaviour=pb, q_model=q, n_bootstrap=0)
    final = np.array([1.0, 0.5, 1.0, 3.0])
    assert res["wis"].ess == pytest.approx(5.5**2 / (1 + 0.25 + 1 + 9))
    assert res["fqe"].ess == 4
    d = res["wis"].diagnostics
    assert d["max_weight_share"] == pytest.approx(3 / 5.5)
    assert d["zero_fraction"] == 0.0
    assert d["mean_weight"] == pytest.approx(final.mean())
    assert effective_sample_size(np.ones(7)) == pytest.approx(7)
    assert effective_sample_size(np.array([5.0, 0.0, 0.0])) == pytest.approx(1)
    assert effective_sample_size(np.zeros(3)) == 0.0
    assert weight_diagnostics(np.array([0.0, 0.0, 2.0]))["zero_fraction"] == pytest.approx(2 / 3)


def test_on_policy_weights_are_one_and_estimators_give_the_mean_return() -> None:
    cohort, _, _, q = _toy()
    same = np.full((len(cohort), 25), 1 / 25)
    res = evaluate_ope(cohort, same, behaviour=same, q_model=q, n_bootstrap=0)
    mean_return = (1 + 0 + 2 + 0) / 4
    for name in ("wis", "wpdis", "phwis", "dr", "wdr"):
        assert res[name].value == pytest.approx(mean_return), name
    assert res["wis"].ess == pytest.approx(4)


def test_vectorised_bootstrap_equals_resampling_the_episodes() -> None:
    cohort, pe, pb, q = _toy()
    ratio = pe[np.arange(len(cohort)), cohort.actions] / pb
    reward = cohort.data["reward"].to_numpy()
    v = (pe * q).sum(1)
    table = build_episode_table(cohort.episode_index(), ratio, reward, q_taken=q[:, 0], v=v)
    stats = make_statistics(table, ESTIMATORS)
    counts = bootstrap_counts(4, 30, np.random.default_rng(3))
    assert (counts.sum(1) == 4).all()
    ep = cohort.episode_index()
    for row in counts:
        # the same resample done the slow way: duplicate the drawn episodes into a new cohort
        parts, new_pe, new_pb = [], [], []
        for i, k in enumerate(row.astype(int)):
            for copy in range(k):
                sel = ep == i
                part = cohort.data.loc[sel].copy()
                part["patient_id"] = f"{i}-{copy}"
                parts.append(part)
                new_pe.append(pe[sel])
                new_pb.append(pb[sel])
        resampled = Cohort(pd.concat(parts, ignore_index=True), cohort.schema, source="resample")
        direct = evaluate_ope(resampled, np.concatenate(new_pe), behaviour=np.concatenate(new_pb),
                              q_model=np.full((len(resampled), 25), Q_CONST), n_bootstrap=0)  # fmt: skip
        for name, fn in stats.items():
            got = fn(row[None, :])[0]
            want = direct[name].value
            assert (np.isnan(got) and np.isnan(want)) or got == pytest.approx(want, abs=1e-12), name


def test_bootstrap_is_deterministic_under_seed() -> None:
    cohort, pe, pb, q = _toy()
    a = evaluate_ope(cohort, pe, behaviour=pb, q_model=q, n_bootstrap=300, seed=7)
    b = evaluate_ope(cohort, pe, behaviour=pb, q_model=q, n_bootstrap=300, seed=7)
    c = evaluate_ope(cohort, pe, behaviour=pb, q_model=q, n_bootstrap=300, seed=8)
    assert a.to_dict() == b.to_dict()
    assert not np.array_equal(a.bootstrap["wis"], c.bootstrap["wis"], equal_nan=True)
    for name in ESTIMATORS:
        e = a[name]
        assert e.ci_low <= e.lower_bound_5pct <= e.ci_high
        assert len(a.bootstrap[name]) == 300
    # chunking does not change the stream of resamples
    chunks = np.concatenate(list(iter_count_chunks(4, 10, seed=1, chunk=3)))
    assert chunks.shape == (10, 4) and (chunks.sum(1) == 4).all()
    again = np.concatenate(list(iter_count_chunks(4, 10, seed=1, chunk=3)))
    assert np.array_equal(chunks, again)


def test_result_frame_and_dict() -> None:
    cohort, pe, pb, q = _toy()
    res = evaluate_ope(cohort, pe, behaviour=pb, q_model=q, n_bootstrap=50)
    frame = res.to_frame()
    assert list(frame["estimator"]) == list(ESTIMATORS)
    assert {"value", "ci_low", "ci_high", "lower_bound_5pct", "ess", "n_episodes"} <= set(frame.columns)
    assert frame.loc[frame.estimator == "wis", "value"].item() == pytest.approx(WIS)
    d = res.to_dict()
    assert d["estimates"]["dr"]["value"] == pytest.approx(DR) and d["n_bootstrap"] == 50


def test_input_errors() -> None:
    cohort, pe, pb, _ = _toy()
    zero = pb.copy()
    zero[3] = 0.0
    with pytest.raises(UserError, match=r"rows \[3\]"):
        evaluate_ope(cohort, pe, behaviour=zero, n_bootstrap=0, estimators=("wis",))
    with pytest.raises(UserError, match="shape"):
        evaluate_ope(cohort, pe[:3], behaviour=pb, n_bootstrap=0, estimators=("wis",))
    with pytest.raises(UserError, match="unknown estimators"):
        evaluate_ope(cohort, pe, behaviour=pb, estimators=("magic",))
    bad = pe.copy()
    bad[0, 0] += 0.5
    with pytest.raises(UserError, match="sum to 1"):
        evaluate_ope(cohort, bad, behaviour=pb, n_bootstrap=0, estimators=("wis",))


def test_all_zero_weights_leave_is_estimates_undefined_and_wdr_falls_back_to_fqe() -> None:
    cohort, pe, pb, q = _toy()
    never = np.zeros_like(pe)
    never[:, 0] = 1.0  # the target never takes action 6, the only action in the data
    res = evaluate_ope(cohort, never, behaviour=pb, q_model=q, n_bootstrap=20)
    assert np.isnan(res["wis"].value) and np.isnan(res["wpdis"].value) and np.isnan(res["phwis"].value)
    assert res["wis"].diagnostics["zero_fraction"] == 1.0
    assert res["wdr"].value == pytest.approx(res["fqe"].value)


# ---------------------------------------------------------------------------------------------- registry
def _ordinary_is_class():
    """Ordinary (unweighted) importance sampling ``mean_i rho_i G_i``, as a user would add it."""
    from sepsis_sdk.evaluation.estimators import Estimator

    class OrdinaryIS(Estimator):
        estimator_name = "test_is"

        def summaries(self, table):
            return {"test_is_num": lambda: table.final_weight * table.returns}

        def statistic(self, sums):
            return sums["test_is_num"] / sums["one"]

    return OrdinaryIS


def test_a_user_registered_estimator_joins_the_one_product() -> None:
    from sepsis_sdk.evaluation.estimators import (
        available_estimators,
        register_estimator,
        unregister_estimator,
    )

    cohort, pe, pb, q = _toy()
    before = evaluate_ope(cohort, pe, behaviour=pb, q_model=q, n_bootstrap=30, seed=1)
    register_estimator(_ordinary_is_class())
    try:
        assert "test_is" in available_estimators()
        with_is = evaluate_ope(
            cohort, pe, behaviour=pb, q_model=q, n_bootstrap=30, seed=1, estimators=(*ESTIMATORS, "test_is")
        )
        # final weights A 1, B 0.5, C 1, D 3; returns A 1, B 0, C 2, D 0
        assert with_is["test_is"].value == pytest.approx((1 * 1 + 0 + 1 * 2 + 0) / 4)
        assert with_is["test_is"].ess == pytest.approx(before["wis"].ess)  # weighted: Kish ESS
        assert np.isfinite(with_is.bootstrap["test_is"]).all() and len(with_is.bootstrap["test_is"]) == 30
        for name in ESTIMATORS:  # adding an estimator leaves the others' numbers exactly as they were
            assert with_is[name] == before[name], name
            assert np.array_equal(with_is.bootstrap[name], before.bootstrap[name], equal_nan=True)
        with pytest.raises(UserError, match="already registered"):
            register_estimator(_ordinary_is_class())
    finally:
        unregister_estimator("test_is")
    with pytest.raises(UserError, match="unknown estimators"):
        evaluate_ope(cohort, pe, behaviour=pb, estimators=("test_is",))


def test_estimator_request_order_does_not_change_numbers() -> None:
    cohort, pe, pb, q = _toy()
    a = evaluate_ope(cohort, pe, behaviour=pb, q_model=q, n_bootstrap=20, estimators=("phwis", "wdr", "wis"))
    b = evaluate_ope(cohort, pe, behaviour=pb, q_model=q, n_bootstrap=20, estimators=("wis", "wdr", "phwis"))
    for name in ("wis", "wdr", "phwis"):
        assert a[name] == b[name]
        assert np.array_equal(a.bootstrap[name], b.bootstrap[name], equal_nan=True)


def test_ope_result_round_trips_through_its_dict() -> None:
    from sepsis_sdk.evaluation.ope import OPEResult

    cohort, pe, pb, q = _toy()
    res = evaluate_ope(cohort, pe, behaviour=pb, q_model=q, n_bootstrap=10)
    from sepsis_sdk.evaluation.storage import dumps

    back = OPEResult.from_dict(json.loads(dumps(res.to_dict())))  # through strict JSON, as on resume
    assert dumps(back.to_dict()) == dumps(res.to_dict())
    assert list(back) == list(res) and back["dr"] == res["dr"]
