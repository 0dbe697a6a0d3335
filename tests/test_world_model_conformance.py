"""Conformance suite every world-model backend must pass (fake, torch, xgboost, neighbour)."""

from __future__ import annotations

import numpy as np
import pytest

from sepsis_sdk.errors import InvalidActionError, ModelError
from sepsis_sdk.types import Observation, PatientHistory
from sepsis_sdk.world_model import FakeWorldModel, HistoryBatch, WorldModel

BACKENDS = ["fake", "torch", "xgboost", "neighbour"]


@pytest.fixture(scope="module")
def cohort():
    from sepsis_sdk.sources.icu_sepsis import sample_cohort

    return sample_cohort(300, seed=0)


@pytest.fixture(scope="module")
def histories(cohort):
    test = cohort.split(seed=0).test
    hs = list(test.histories())
    return hs[:40]


@pytest.fixture(scope="module")
def models(cohort):
    """Train each backend once (tiny) on the training patients."""
    import torch

    from sepsis_sdk.world_model.neighbour_backend import NeighbourWorldModel
    from sepsis_sdk.world_model.torch_backend import TorchConfig, TorchWorldModel
    from sepsis_sdk.world_model.xgboost_backend import XGBoostConfig, XGBoostWorldModel

    torch.set_num_threads(1)
    train = cohort.split(seed=0).train
    return {
        "fake": FakeWorldModel(cohort.schema, noise=0.3, p_death=0.05, p_discharge=0.1),
        "torch": TorchWorldModel.fit(
            train, TorchConfig(n_members=2, hidden=32, epochs=3, window=3), device="cpu"
        ),
        "xgboost": XGBoostWorldModel.fit(train, XGBoostConfig(n_members=2, n_estimators=15, n_jobs=1)),
        "neighbour": NeighbourWorldModel.fit(train, n_members=3),
    }


def _bounds(model):
    lo, hi = (np.asarray(b) for b in model.schema.bounds())
    return lo, hi


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_protocol_and_predict(models, histories, backend):
    wm = models[backend]
    assert isinstance(wm, WorldModel)
    hb = wm.batch(histories)
    assert isinstance(hb, HistoryBatch)
    assert hb.x.shape == (len(histories), wm.window, len(wm.schema))
    actions = np.arange(len(histories)) % 25
    p = wm.predict(hb, actions)
    lo, hi = _bounds(wm)
    b, d = len(histories), len(wm.schema)
    for arr in (p.mean, p.std, p.epistemic_std, p.lower, p.upper):
        assert arr.shape == (b, d)
        assert np.isfinite(arr).all()
    assert (p.lower >= lo - 1e-9).all() and (p.upper <= hi + 1e-9).all()
    assert (p.lower <= p.mean + 1e-9).all() and (p.mean <= p.upper + 1e-9).all()
    assert (p.std >= 0).all() and (p.epistemic_std <= p.std + 1e-9).all()
    assert ((p.p_death >= 0) & (p.p_death <= 1)).all()
    assert ((p.p_discharge >= 0) & (p.p_death + p.p_discharge <= 1 + 1e-6)).all()
    assert ((p.support >= 0) & (p.support <= 1)).all()
    # histories and a HistoryBatch give the same answer; a scalar action is shared
    p2 = wm.predict(histories, actions)
    np.testing.assert_allclose(p2.mean, p.mean)
    p3 = wm.predict(histories, 7)
    np.testing.assert_allclose(p3.mean, wm.predict(histories, np.full(b, 7)).mean)


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_rollout_shapes_and_consistency(models, histories, backend):
    wm = models[backend]
    hs = histories[:6]
    plans = np.array([[0, 0, 0, 0], [24, 24, 24, 24], [7, 12, 7, 12]])
    r = wm.rollout(hs, plans, n_samples=5, seed=3)
    b, k, n, h, d = 6, 3, 5, 4, len(wm.schema)
    assert r.states.shape == (b, k, n, h, d)
    assert r.alive.shape == (b, k, n, h)
    assert r.mean.shape == r.std.shape == r.epistemic_std.shape == (b, k, h, d)
    assert r.p_death.shape == r.p_discharge.shape == r.support.shape == (b, k)
    np.testing.assert_array_equal(r.plans, np.broadcast_to(plans, (b, k, h)))
    # NaN exactly after termination; alive is monotone
    assert np.array_equal(np.isnan(r.states).all(-1), ~r.alive)
    assert not (r.alive[..., 1:] & ~r.alive[..., :-1]).any()
    assert np.array_equal(r.terminal == 0, r.alive[..., -1])
    assert ((r.p_death >= 0) & (r.p_death + r.p_discharge <= 1 + 1e-9)).all()
    # same seed -> same futures; the (B, K, H) form equals the shared (K, H) form
    r2 = wm.rollout(hs, np.broadcast_to(plans, (b, k, h)), n_samples=5, seed=3)
    np.testing.assert_array_equal(r.states, r2.states)
    np.testing.assert_array_equal(r.p_death, r2.p_death)
    r3 = wm.rollout(hs, plans, n_samples=5, seed=4)
    assert not np.array_equal(np.nan_to_num(r.states), np.nan_to_num(r3.states))


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_batched_equals_unbatched(models, histories, backend):
    wm = models[backend]
    hs = histories[:8]
    acts = np.array([0, 3, 7, 12, 24, 5, 19, 1])
    full = wm.predict(hs, acts)
    plans = np.array([[4, 9], [20, 0]])
    roll = wm.rollout(hs, plans, n_samples=4, seed=11)
    for i in (0, 5, 7):
        one = wm.predict([hs[i]], acts[i : i + 1])
        np.testing.assert_allclose(one.mean[0], full.mean[i], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(one.upper[0], full.upper[i], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(one.p_death[0], full.p_death[i], rtol=1e-5, atol=1e-7)
        r1 = wm.rollout([hs[i]], plans, n_samples=4, seed=11)
        np.testing.assert_allclose(r1.states[0], roll.states[i], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(r1.p_death[0], roll.p_death[i], rtol=1e-5, atol=1e-7)


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_ten_thousand_random_rollouts_stay_in_bounds(models, histories, backend):
    wm = models[backend]
    rng = np.random.default_rng(0)
    b, k, n, h = 20, 50, 10, 6  # 10,000 sampled futures of 6 steps
    hs = [histories[i % len(histories)] for i in range(b)]
    plans = rng.integers(0, 25, (b, k, h))
    r = wm.rollout(hs, plans, n_samples=n, seed=1)
    lo, hi = _bounds(wm)
    s = r.states
    alive = ~np.isnan(s)
    assert alive.any()
    below = (s < lo) & alive
    above = (s > hi) & alive
    assert int(below.sum() + above.sum()) == 0
    assert np.isfinite(s[alive]).all()


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_inputs_raise_clear_errors(models, histories, backend):
    wm = models[backend]
    h = histories[0]
    d = len(wm.schema)
    short = PatientHistory(observations=(Observation(t=0, values=tuple([0.0] * (d - 1))),))
    with pytest.raises(ModelError, match=f"{d - 1} features"):
        wm.batch([short])
    nan_obs = Observation.model_construct(t=0, values=tuple([float("nan")] + [0.0] * (d - 1)), mask=None)
    bad = PatientHistory.model_construct(
        patient_id="p-nan", observations=(nan_obs,), actions=(), static={}, feature_names=(), state_id=None
    )
    with pytest.raises(ModelError, match=r"p-nan.*marked observed"):
        wm.batch([bad])
    with pytest.raises(ModelError, match="empty"):
        wm.batch([])
    for action in (25, -1, 2.5, "x"):
        with pytest.raises(InvalidActionError):
            wm.predict([h], [action])
    with pytest.raises(InvalidActionError):
        wm.rollout([h], [[1, 30]])
    with pytest.raises(ModelError):
        wm.predict([h, h], [1, 2, 3])
    with pytest.raises(ModelError):
        wm.rollout([h], np.zeros((2, 2, 2), dtype=int))
    renamed = h.model_copy(update={"feature_names": tuple(f"f{i}" for i in range(d))})
    with pytest.raises(ModelError, match="named differently"):
        wm.batch([renamed])


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "xgboost", "neighbour"])
def test_support_prefers_what_clinicians_did(models, cohort, backend):
    """Logged (state, action) pairs of training patients have more support than random actions."""
    wm = models[backend]
    train = cohort.split(seed=0).train
    hs = list(train.head(60).histories())
    logged = np.array([train.head(60).actions[i] for i in range(len(hs))])
    sup_all = wm.support_all(hs)
    assert sup_all.shape == (len(hs), 25) and ((sup_all >= 0) & (sup_all <= 1)).all()
    assert sup_all[np.arange(len(hs)), logged].mean() > sup_all.mean() + 0.2
    np.testing.assert_allclose(wm.support(hs, logged), sup_all[np.arange(len(hs)), logged])
