"""Built-in tools on a fake world model: simulate (batched, clinical units), check_guidelines, patient_history."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sepsis_sdk.actions import Action
from sepsis_sdk.features import FeatureSchema, FeatureSpec
from sepsis_sdk.tools import (
    ToolContext,
    ToolRegistry,
    admissible_mask,
    as_safety_checker,
    key_features,
    render_history,
    safety_matrix,
    simulate_actions,
)
from sepsis_sdk.types import Observation, PatientHistory
from sepsis_sdk.world_model.fake import FakeWorldModel

SCHEMA = FeatureSchema(
    name="mini-mimic",
    features=(
        FeatureSpec(name="meanbp", unit="mmHg", lower=20, upper=200),
        FeatureSpec(name="lactate", unit="mmol/L", lower=0.1, upper=30, log_model=True),
        FeatureSpec(name="heart_rate", unit="bpm", lower=20, upper=250),
    ),
)


def make_history(maps=(70.0, 62.0, 58.0), lactates=(2.5, 3.0, 3.4), actions=(5, 5)) -> PatientHistory:
    obs = tuple(
        Observation(t=i, values=(m, la, 100.0 + i))
        for i, (m, la) in enumerate(zip(maps, lactates, strict=False))
    )
    return PatientHistory(
        patient_id="p1", observations=obs, actions=actions, feature_names=tuple(SCHEMA.names)
    )


class CountingWM(FakeWorldModel):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.rollouts = []

    def rollout(self, histories, plans, *, n_samples=8, seed=0):
        self.rollouts.append(np.asarray(plans).shape)
        return super().rollout(histories, plans, n_samples=n_samples, seed=seed)


@pytest.fixture()
def wm():
    # MAP +2 mmHg per fluid level and +4 per vaso level each step; lactate -0.1 per fluid level.
    return CountingWM(SCHEMA, effects={"meanbp": (2.0, 4.0), "lactate": (-0.1, 0.0)}, noise=0.5, p_death=0.01)


def test_key_features_pick_aliases():
    assert key_features(SCHEMA) == [("MAP", "meanbp"), ("lactate", "lactate"), ("heart rate", "heart_rate")]


def test_simulate_actions_one_batched_rollout_with_clinical_units(wm):
    h = make_history()
    rep = simulate_actions(
        wm, h, [Action(0, 0), Action(2, 1), Action(4, 2), Action(2, 1)], horizon=6, n_samples=4
    )
    assert wm.rollouts == [(1, 3, 6)]  # one call, duplicates simulated once, each action held for H steps
    assert [c.action for c in rep.candidates] == [0, 11, 22]
    c0, c1, c2 = rep.candidates
    map2 = c2.path("MAP")
    assert map2.display[0] == "58 mmHg" and len(map2.display) == 7
    # the fake adds 2*4 + 4*2 = 16 mmHg per step under [fluid 4, vaso 2]
    assert map2.mean[-1] == pytest.approx(58 + 6 * 16, abs=3)
    assert map2.lower[-1] < map2.mean[-1] < map2.upper[-1] <= 200
    assert c0.path("MAP").mean[-1] == pytest.approx(58, abs=3)
    assert c1.p_death == pytest.approx(1 - 0.99**6, abs=0.05)
    assert 0 <= c1.support <= 1 and c1.uncertainty >= 0
    text = rep.to_text()
    assert "A. fluid 0 (none), vaso 0 (none)" in text and "C. fluid 4 (>530 mL/4h)" in text
    assert "MAP 58 mmHg ->" in text and "P(death within 24 h)=" in text
    json.dumps(rep.to_dict(), allow_nan=False)
    with pytest.warns(DeprecationWarning, match="to_dict"):
        assert rep.as_dict() == rep.to_dict()


def test_simulate_tool_through_registry(wm):
    reg = ToolRegistry.default()
    ctx = ToolContext(history=make_history(), world_model=wm, horizon=3, n_samples=2)
    res = reg.invoke("simulate", {"actions": [{"fluid": 1, "vaso": 0}, {"fluid": 3, "vaso": 2}]}, ctx)
    assert res.ok, res.content
    assert res.data["horizon"] == 3 and [c["action"] for c in res.data["candidates"]] == [5, 17]
    assert wm.rollouts == [(1, 2, 3)]
    too_many = reg.invoke(
        "simulate",
        {"actions": [{"fluid": f, "vaso": v} for f in range(2) for v in range(5)]},
        ctx,  # 10 > 8
    )
    assert not too_many.ok and "actions" in too_many.content and "at most 8" in too_many.content
    bad_level = reg.invoke("simulate", {"actions": [{"fluid": 5, "vaso": 0}]}, ctx)
    assert not bad_level.ok and "less than or equal to 4" in bad_level.content
    no_wm = reg.invoke(
        "simulate", {"actions": [{"fluid": 1, "vaso": 0}]}, ToolContext(history=make_history())
    )
    assert not no_wm.ok and "world model" in no_wm.content


def test_simulate_tool_world_model_exception_is_a_message():
    class Broken(FakeWorldModel):
        def rollout(self, *a, **k):
            raise FloatingPointError("NaN in the ensemble")

    ctx = ToolContext(history=make_history(), world_model=Broken(SCHEMA))
    res = ToolRegistry.default().invoke("simulate", {"actions": [{"fluid": 1, "vaso": 0}]}, ctx)
    assert not res.ok and "FloatingPointError: NaN in the ensemble" in res.content


def test_check_guidelines_reports_g1_and_g2():
    reg = ToolRegistry.default()
    ctx = ToolContext(history=make_history(), schema=SCHEMA)
    none = reg.invoke("check_guidelines", {"fluid": 0, "vaso": 0}, ctx)
    assert none.ok and "G1" in none.data["violated"]
    assert "breaks G1" in none.content
    ok = reg.invoke("check_guidelines", {"fluid": 2, "vaso": 1}, ctx)
    assert ok.data["violated"] == [] or "G1" not in ok.data["violated"]
    # MAP back at 80 with a vasopressor already at 0: raising it breaks G2
    h = make_history(maps=(70.0, 75.0, 80.0), lactates=(1.0, 1.0, 1.0))
    g2 = reg.invoke("check_guidelines", {"fluid": 1, "vaso": 2}, ToolContext(history=h, schema=SCHEMA))
    assert "G2" in g2.data["violated"] and g2.data["admissible"] is None


def test_safety_matrix_matches_per_action_checks():
    checker = as_safety_checker()
    h = make_history(maps=(50.0, 52.0, 50.0))
    m = safety_matrix(checker, h, SCHEMA)
    per_action = np.array(
        [any(f.violated and f.hard for f in checker.check(h, a, SCHEMA)) for a in range(25)]
    )
    assert np.array_equal(m, per_action)
    # H1 (MAP < 55): no vasopressor with fluid bins reaching below 80 mL (levels 0-2) is unsafe
    assert m[0] and m[5] and m[10] and not m[15] and not m[1]


def test_patient_history_trends():
    res = ToolRegistry.default().invoke(
        "patient_history", {"n_steps": 3}, ToolContext(history=make_history(), schema=SCHEMA)
    )
    assert res.ok
    trends = {t["feature"]: t for t in res.data["trends"]}
    assert (
        trends["meanbp"]["display"] == ["70 mmHg", "62 mmHg", "58 mmHg"]
        and trends["meanbp"]["trend"] == "falling"
    )
    assert trends["lactate"]["trend"] == "rising"
    assert "MAP [meanbp]: 70 mmHg, 62 mmHg, 58 mmHg (falling)" in res.content
    assert "Treatments given (oldest to newest): [fluid 1, vaso 0]; [fluid 1, vaso 0]." in res.content


def test_icu_sepsis_rendering_and_admissibility():
    from sepsis_sdk.sources.icu_sepsis import load_mdp, sample_cohort

    h = next(iter(sample_cohort(2, seed=3).histories()))
    text = render_history(h, FakeWorldModel().schema)
    assert "z-scores" in text and "SOFA [sofa]:" in text and " SD" in text
    adm = admissible_mask(h)
    assert adm is not None and np.array_equal(adm, load_mdp().admissible[h.state_id])
    assert admissible_mask(make_history()) is None
