"""The neighbour world model: samples are observed states, counted where data are plenty, clear errors.

The protocol itself (shapes, bounds, batching, seeds, errors) is checked by the conformance suite
(tests/test_world_model_conformance.py), which includes this backend.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from sepsis_sdk.errors import InvalidActionError, UserError
from sepsis_sdk.world_model._data import cohort_batch
from sepsis_sdk.world_model.neighbour_backend import NeighbourConfig, NeighbourWorldModel

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def cohort():
    from sepsis_sdk.sources.icu_sepsis import sample_cohort

    return sample_cohort(400, seed=0)


@pytest.fixture(scope="module")
def model(cohort):
    return NeighbourWorldModel.fit(cohort, n_members=3)


@pytest.fixture(scope="module")
def centres():
    from sepsis_sdk.sources.icu_sepsis import N_CLINICAL, load_mdp

    return load_mdp().observation(np.arange(N_CLINICAL))


def _is_centre(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Row-wise: is each stored observation exactly (bit for bit) one of the 713 ICU-Sepsis states?"""
    view = [("", np.float64)] * x.shape[1]
    a = np.ascontiguousarray(x, dtype=np.float64).view(view).ravel()
    b = np.ascontiguousarray(centres, dtype=np.float64).view(view).ravel()
    return np.isin(a, b)


def test_auto_target_is_state_on_icu_sepsis_and_delta_on_synthetic(model):
    from sepsis_sdk.sources.synthetic import synthesize_cohort

    assert model.mode == "state" and model.info["target"] == "state"
    syn = NeighbourWorldModel.fit(synthesize_cohort(60, seed=0), n_members=2)
    assert syn.mode == "delta"


def test_samples_land_on_observed_states(model, cohort, centres):
    """Every sampled next observation, at every step of a 6-step rollout, is one of the 713 states."""
    hb = cohort_batch(cohort, 1, np.arange(0, len(cohort), 37))
    rng = np.random.default_rng(0)
    plans = rng.integers(0, 25, (hb.size, 10, 6))
    r = model.rollout(hb, plans, n_samples=6, seed=0)
    s = r.states.reshape(-1, len(model.schema))
    s = s[~np.isnan(s).any(1)]
    assert len(s) > 1000
    assert _is_centre(s, centres).all()
    # and they are multimodal: one (state, action) leads to several different observed states
    one = model.rollout(cohort_batch(cohort, 1, [0]), [[0]], n_samples=64)
    nxt = one.states[0, 0, :, 0]
    nxt = nxt[~np.isnan(nxt).any(1)]
    assert len(np.unique(nxt, axis=0)) > 1


def test_counted_model_where_a_pair_has_enough_data(cohort):
    """One member, no prior: a (state, action) seen >= k times (10 >= 5) predicts exactly the counted shares."""
    wm = NeighbourWorldModel.fit(cohort, n_members=1, prior_count=0, k=5)
    x = cohort.features()
    a = cohort.actions
    done = cohort.data["done"].to_numpy(bool)
    died = done & (cohort.data["outcome"].to_numpy() == 0)
    _, inv, cnt = np.unique(np.c_[x, a], axis=0, return_inverse=True, return_counts=True)
    inv = inv.ravel()
    row = int(np.flatnonzero(cnt[inv] >= 10)[0])
    same = inv == inv[row]
    pred = wm.predict(cohort_batch(cohort, 1, [row]), [a[row]])
    assert pred.p_death[0] == pytest.approx(died[same].mean(), abs=1e-12)
    assert pred.support[0] >= 10 / 15 - 1e-9  # n / (n + 5) with n >= 10 exact look-alikes


def test_support_lower_for_actions_never_given(model, cohort):
    x = cohort.features()
    a = cohort.actions
    hb = cohort_batch(cohort, 1, np.arange(0, len(cohort), 11))
    sup = model.support_all(hb)
    assert sup.shape == (hb.size, 25) and ((sup >= 0) & (sup <= 1)).all()
    rows = np.arange(0, len(cohort), 11)
    # actions given in exactly this observed state somewhere in the cohort
    key = {tuple(r): set() for r in x[rows]}
    for r, act in zip(map(tuple, x), a, strict=True):
        if r in key:
            key[r].add(int(act))
    seen = np.array([[act in key[tuple(x[i])] for act in range(25)] for i in rows])
    assert seen.any() and (~seen).any()
    assert sup[seen].mean() > 0.5 > sup[~seen].mean() + 0.3
    # a typical never-given action has (almost) no look-alike that received it
    assert np.median(sup[~seen]) < 0.1 < np.median(sup[seen])
    np.testing.assert_allclose(model.support(hb, a[rows]), sup[np.arange(len(rows)), a[rows]])


def test_deterministic_given_seed(cohort):
    hb = cohort_batch(cohort, 1, np.arange(0, 200, 7))
    plans = np.array([[0, 0, 0], [24, 24, 24], [7, 12, 7]])
    m1 = NeighbourWorldModel.fit(cohort, n_members=3, seed=5)
    m2 = NeighbourWorldModel.fit(cohort, n_members=3, seed=5)
    r1 = m1.rollout(hb, plans, n_samples=8, seed=2)
    r2 = m2.rollout(hb, plans, n_samples=8, seed=2)
    np.testing.assert_array_equal(r1.states, r2.states)
    np.testing.assert_array_equal(r1.p_death, r2.p_death)
    np.testing.assert_array_equal(m1.predict(hb, 3).mean, m2.predict(hb, 3).mean)
    r3 = m1.rollout(hb, plans, n_samples=8, seed=3)
    assert not np.array_equal(np.nan_to_num(r1.states), np.nan_to_num(r3.states))
    m3 = NeighbourWorldModel.fit(cohort, n_members=3, seed=6)  # other bootstrap resamples
    assert not np.array_equal(m1.predict(hb, 3).epistemic_std, m3.predict(hb, 3).epistemic_std)


def test_save_load_round_trip(model, cohort, tmp_path):
    from sepsis_sdk.world_model import load_world_model

    path = model.save(tmp_path / "nb")
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["backend"] == "neighbour" and cfg["mode"] == "state"
    back = NeighbourWorldModel.load(path)
    assert back.config == model.config
    hb = cohort_batch(cohort, 1, np.arange(0, 300, 13))
    acts = np.arange(hb.size) % 25
    p, q = model.predict(hb, acts), back.predict(hb, acts)
    for f in ("mean", "std", "epistemic_std", "lower", "upper", "p_death", "p_discharge", "support"):
        np.testing.assert_array_equal(getattr(p, f), getattr(q, f))
    plans = np.array([[1, 2, 3], [20, 20, 20]])
    np.testing.assert_array_equal(
        model.rollout(hb, plans, n_samples=4, seed=1).states,
        back.rollout(hb, plans, n_samples=4, seed=1).states,
    )
    try:  # the generic loader knows the backend once the registry lists it
        other = load_world_model(path)
    except Exception:  # pragma: no cover - registry not there yet
        other = None
    if other is not None:
        np.testing.assert_array_equal(other.predict(hb, acts).mean, p.mean)


def test_bad_inputs_give_clear_user_errors(model, cohort):
    with pytest.raises(UserError, match="empty"):
        NeighbourWorldModel.fit(cohort.select([]))
    with pytest.raises(UserError, match="k"):
        NeighbourWorldModel.fit(cohort, k=0)
    with pytest.raises(UserError, match="n_members"):
        NeighbourWorldModel.fit(cohort, config=NeighbourConfig(), n_members=0)
    with pytest.raises(UserError, match="Cohort"):
        NeighbourWorldModel.fit(np.zeros((3, 48)))
    hb = cohort_batch(cohort, 1, [0, 1])
    for bad in (25, -1, 2.5):
        with pytest.raises(InvalidActionError):
            model.predict(hb, [bad, 0])
        with pytest.raises(InvalidActionError):
            model.support(hb, [bad, 0])
    with pytest.raises(InvalidActionError):
        model.rollout(hb, [[0, 26]])


def test_synthetic_delta_mode_stays_in_bounds_and_beats_persistence():
    """On continuous MIMIC-like data the model moves each patient by a look-alike's change."""
    from sepsis_sdk.sources.synthetic import synthesize_cohort

    syn = synthesize_cohort(300, seed=0)
    split = syn.split(0.8, 0.0, 0.2, seed=0)
    wm = NeighbourWorldModel.fit(split.train, n_members=2)
    test = split.test
    hb = cohort_batch(test, 1)
    pred = wm.predict(hb, test.actions)
    x = test.features()
    ep = test.episode_index()
    nxt = np.r_[x[1:], np.full((1, x.shape[1]), np.nan)]
    same = np.r_[ep[1:] == ep[:-1], False]
    ok = same[:, None] & np.isfinite(nxt) & test.masks()
    ok = ok & np.r_[test.masks()[1:], np.zeros((1, x.shape[1]), bool)]
    cur = np.where(np.isfinite(x), x, np.nanmean(x, 0))
    sd = np.nanstd(syn.features(), 0)
    mae_model = np.mean((np.abs(pred.mean - nxt) / sd)[ok])
    mae_persist = np.mean((np.abs(cur - nxt) / sd)[ok])
    assert mae_model < mae_persist
    plans = np.random.default_rng(0).integers(0, 25, (20, 10, 6))
    r = wm.rollout(cohort_batch(test, 1, np.arange(20)), plans, n_samples=5)
    lo, hi = (np.asarray(b) for b in syn.schema.bounds())
    s = r.states
    alive = ~np.isnan(s)
    assert alive.any() and int(((s < lo) & alive).sum() + ((s > hi) & alive).sum()) == 0


def test_synthetic_missing_next_values_skip_or_carry(tmp_path):
    """Both ways of treating a look-alike's unobserved next value give finite, ordered predictions."""
    from sepsis_sdk.sources.synthetic import synthesize_cohort

    syn = synthesize_cohort(60, seed=1)
    hb = cohort_batch(syn, 1, np.arange(0, len(syn), 9))
    for how in ("carry", "skip"):
        wm = NeighbourWorldModel.fit(syn, n_members=2, missing_next=how)
        p = wm.predict(hb, 7)
        assert np.isfinite(p.mean).all() and (p.lower <= p.mean).all() and (p.mean <= p.upper).all()
        back = NeighbourWorldModel.load(wm.save(tmp_path / how))
        np.testing.assert_array_equal(back.predict(hb, 7).mean, p.mean)
    assert not np.array_equal(p.mean, NeighbourWorldModel.fit(syn, n_members=2).predict(hb, 7).mean)
