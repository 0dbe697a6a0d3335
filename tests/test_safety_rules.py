"""Each rule on constructed states, the expression language, the loader, and cohort/single agreement."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sepsis_sdk.actions import Action
from sepsis_sdk.cohort import Cohort
from sepsis_sdk.errors import DataError, UserError
from sepsis_sdk.features import FeatureSchema, FeatureSpec
from sepsis_sdk.safety import RuleContext, load_rules
from sepsis_sdk.types import Observation, PatientHistory


@pytest.fixture(scope="module")
def rules():
    return load_rules()


def check(rules, **kw):
    values = kw.pop("values")
    return {r.rule_id: r for r in rules.check(RuleContext(values=values, **kw))}


FULL = {"map": 70.0, "lactate": 1.0, "cum_balance": 0.0, "weight": 70.0}


def test_packaged_rules_load_with_sources_and_definitions(rules):
    assert rules.ids == ["G1", "G2", "SSC1", "SSC2", "H1", "H2", "H3"]
    for r in rules:
        assert r.source and r.features and r.kind in ("guideline", "hazard")
    assert set(rules.definitions) >= {"guideline_adherence", "underdosing", "overdosing", "unsafe"}
    assert rules.definitions["guideline_adherence"].rules == ("G1", "G2")


@pytest.mark.parametrize(
    ("values", "fluid", "vaso", "violated"),
    [
        ({**FULL, "lactate": 2.5}, 0, 0, True),  # high lactate, nothing given
        ({**FULL, "map": 60.0}, 0, 0, True),  # hypotension, nothing given
        ({**FULL, "map": 60.0}, 1, 0, False),  # some fluid is enough for G1
        ({**FULL, "lactate": 2.5}, 0, 1, False),
        ({**FULL, "lactate": 2.0, "map": 65.0}, 0, 0, False),  # boundaries: not triggered
    ],
)
def test_g1(rules, values, fluid, vaso, violated):
    r = check(rules, fluid=fluid, vaso=vaso, t=3, prev_fluid=0, prev_vaso=0, values=values)["G1"]
    assert r.applicable and r.violated is violated
    assert r.triggered is (values["lactate"] > 2 or values["map"] < 65)


def test_g1_three_valued_logic(rules):
    # lactate missing but MAP < 65 decides the trigger; MAP >= 65 with lactate missing cannot be judged.
    r = check(
        rules, fluid=0, vaso=0, t=1, prev_fluid=0, prev_vaso=0, values={**FULL, "map": 60.0, "lactate": None}
    )
    assert r["G1"].violated is True
    r = check(rules, fluid=0, vaso=0, t=1, prev_fluid=0, prev_vaso=0, values={**FULL, "lactate": None})
    assert r["G1"].applicable is False and r["G1"].violated is None
    assert "missing" in r["G1"].reason


@pytest.mark.parametrize(
    ("map_", "t", "prev_vaso", "vaso", "violated", "triggered"),
    [
        (70.0, 2, 1, 2, True, True),  # at target, escalates
        (70.0, 2, 2, 2, False, True),  # holds
        (70.0, 2, 2, 0, False, True),  # weans
        (64.0, 2, 1, 3, False, False),  # below target: escalation allowed
        (70.0, 0, None, 4, False, False),  # first decision: no previous level
    ],
)
def test_g2(rules, map_, t, prev_vaso, vaso, violated, triggered):
    r = check(
        rules,
        fluid=1,
        vaso=vaso,
        t=t,
        prev_fluid=None if t == 0 else 1,
        prev_vaso=prev_vaso,
        values={**FULL, "map": map_},
    )["G2"]
    assert r.applicable and r.violated is violated and r.triggered is triggered


def test_ssc1_first_bloc_needs_top_fluid_level(rules):
    hypo = {**FULL, "lactate": 4.5}
    assert check(rules, fluid=3, vaso=2, t=0, values=hypo)["SSC1"].violated is True
    assert check(rules, fluid=4, vaso=0, t=0, values=hypo)["SSC1"].violated is False
    assert check(rules, fluid=0, vaso=0, t=0, values={**FULL, "lactate": 3.9})["SSC1"].triggered is False
    assert (
        check(rules, fluid=0, vaso=0, t=1, prev_fluid=0, prev_vaso=0, values=hypo)["SSC1"].triggered is False
    )


def test_ssc2_vasopressor_after_fluids(rules):
    low = {**FULL, "map": 60.0}
    r = check(rules, fluid=4, vaso=0, t=2, prev_fluid=4, prev_vaso=0, max_prior_fluid=4, values=low)["SSC2"]
    assert r.violated is True
    r = check(rules, fluid=4, vaso=1, t=2, prev_fluid=4, prev_vaso=0, max_prior_fluid=4, values=low)["SSC2"]
    assert r.violated is False
    r = check(rules, fluid=4, vaso=0, t=2, prev_fluid=3, prev_vaso=0, max_prior_fluid=3, values=low)["SSC2"]
    assert r.triggered is False  # not yet fluid-resuscitated
    assert check(rules, fluid=0, vaso=0, t=0, values=low)["SSC2"].triggered is False  # nothing before t=0


@pytest.mark.parametrize(("fluid", "violated"), [(0, True), (1, True), (2, True), (3, False), (4, False)])
def test_h1_underdosing_fluid_levels_by_bin_overlap(rules, fluid, violated):
    # fluid <= 80 mL/4h overlaps levels 0 (none), 1 (1-50) and 2 (50-180); level 3 starts at 180.
    r = check(rules, fluid=fluid, vaso=0, t=1, prev_fluid=0, prev_vaso=0, values={**FULL, "map": 50.0})["H1"]
    assert r.violated is violated and r.kind == "hazard"


def test_h1_needs_no_vasopressor_and_low_map(rules):
    assert (
        check(rules, fluid=0, vaso=1, t=1, prev_fluid=0, prev_vaso=0, values={**FULL, "map": 50.0})[
            "H1"
        ].violated
        is False
    )
    assert (
        check(rules, fluid=0, vaso=0, t=1, prev_fluid=0, prev_vaso=0, values={**FULL, "map": 55.0})[
            "H1"
        ].triggered
        is False
    )


@pytest.mark.parametrize(("vaso", "map_", "violated"), [(4, 96.0, True), (3, 96.0, False), (4, 95.0, False)])
def test_h2_vasopressor_overdose(rules, vaso, map_, violated):
    r = check(rules, fluid=0, vaso=vaso, t=1, prev_fluid=0, prev_vaso=vaso, values={**FULL, "map": map_})[
        "H2"
    ]
    assert r.violated is violated


def test_h3_fluid_overload_with_and_without_cvp(rules):
    base = {**FULL, "map": 80.0, "cum_balance": 12000.0}
    kw = {"t": 5, "prev_fluid": 4, "prev_vaso": 0, "vaso": 0}
    assert check(rules, fluid=4, values=base, **kw)["H3"].violated is True  # no CVP recorded
    assert check(rules, fluid=3, values=base, **kw)["H3"].violated is False  # 180-530 mL cannot exceed 960
    assert check(rules, fluid=4, values={**base, "cvp": 10.0}, **kw)["H3"].triggered is False
    assert check(rules, fluid=4, values={**base, "cvp": 16.0}, **kw)["H3"].violated is True
    assert check(rules, fluid=4, values={**base, "cum_balance": 9000.0}, **kw)["H3"].triggered is False
    r = check(rules, fluid=4, values={"map": 80.0, "lactate": 1.0}, **kw)["H3"]
    assert r.applicable is False and "cum_balance" in r.reason


def test_context_validation():
    with pytest.raises(UserError):
        RuleContext(fluid=5, vaso=0)
    with pytest.raises(UserError):
        RuleContext(fluid=0, vaso=0, t=-1)


def _schema():
    return FeatureSchema(
        name="mini",
        features=(
            FeatureSpec(name="MeanBP", unit="mmHg", lower=0, upper=300),
            FeatureSpec(name="Arterial_lactate", unit="mmol/L", lower=0, upper=30),
            FeatureSpec(name="cumulated_balance", unit="mL", lower=-1e5, upper=1e5),
        ),
    )


def test_from_history_reads_values_and_previous_actions(rules):
    names = ("MeanBP", "Arterial_lactate", "cumulated_balance")
    obs = (
        Observation(t=0, values=(80.0, 1.0, 11000.0)),
        Observation(t=1, values=(70.0, float("nan"), 12000.0), mask=(True, False, True)),
    )
    h = PatientHistory(observations=obs, actions=(Action(4, 1).index,), feature_names=names)
    ctx = RuleContext.from_history(h, Action(4, 2), _schema(), rules=rules)
    assert ctx.values == {"map": 70.0, "lactate": None, "cum_balance": 12000.0}
    assert (ctx.prev_fluid, ctx.prev_vaso, ctx.max_prior_fluid, ctx.t) == (4, 1, 4, 1)
    assert "weight" in ctx.unavailable and not ctx.approximate
    out = {r.rule_id: r for r in rules.check(ctx)}
    assert out["G2"].violated is True  # MAP 70 and vaso 1 -> 2
    assert out["H3"].violated is False  # MAP 70 < 75: not triggered
    assert out["G1"].applicable is False  # lactate missing, MAP >= 65


def test_icu_sepsis_values_are_approximate_clinical_units(rules):
    from sepsis_sdk.sources.icu_sepsis import icu_sepsis_schema, load_mdp

    schema = icu_sepsis_schema()
    mdp = load_mdp()
    obs = mdp.observation(0)
    h = PatientHistory(
        observations=(Observation(t=0, values=tuple(obs.tolist())),),
        feature_names=tuple(schema.names),
        state_id=0,
    )
    ctx = RuleContext.from_history(h, 0)  # schema guessed from the feature names
    z = obs[schema.index("MeanBP")]
    assert ctx.values["map"] == pytest.approx(77.7791 + 13.0472 * z)
    assert ctx.approximate == frozenset({"map", "lactate"})
    assert "cum_balance" in ctx.unavailable and "unpublished" in ctx.unavailable["cum_balance"]
    out = {r.rule_id: r for r in rules.check(ctx)}
    assert out["H3"].applicable is False
    assert out["G1"].approximate and "approximate" in out["G1"].reason
    # Without the approximation, MAP/lactate rules are not applicable on ICU-Sepsis.
    ctx2 = RuleContext.from_history(h, 0, schema, approximate=False)
    assert not any(r.applicable for r in rules.check(ctx2))


def test_reference_stats_match_published_file(rules):
    shared = (
        Path(__file__).resolve().parents[2] / "shared" / "reference" / "mimic_iv_sepsis_feature_stats.json"
    )
    if not shared.exists():
        pytest.skip("shared reference figures not present")
    stats = json.loads(shared.read_text())["features"]
    for var, key in (("map", "meanbp"), ("lactate", "lactate")):
        ref = rules.variables[var].z_reference
        assert ref.mean == pytest.approx(stats[key]["mean"]) and ref.sd == pytest.approx(stats[key]["std"])


def _mini_cohort():
    rows = [
        # patient a: MAP 60 then 70 then 70, lactate 3
        ("a", 0, 60.0, 3.0, 0.0, Action(0, 0).index),
        ("a", 1, 70.0, 3.0, 0.0, Action(4, 1).index),
        ("a", 2, 70.0, 3.0, 0.0, Action(4, 3).index),
        # patient b: MAP 50, overloaded later
        ("b", 0, 50.0, 1.0, 11000.0, Action(2, 0).index),
        ("b", 1, 80.0, 1.0, 12000.0, Action(4, 0).index),
    ]
    df = pd.DataFrame(
        rows, columns=["patient_id", "t", "MeanBP", "Arterial_lactate", "cumulated_balance", "action"]
    )
    df["reward"] = 0.0
    df["done"] = [False, False, True, False, True]
    return Cohort(df, _schema())


def test_evaluate_cohort_matches_single_checks(rules):
    cohort = _mini_cohort()
    res = rules.evaluate_cohort(cohort)
    got = {rid: res.violated[res.row(rid)].tolist() for rid in res.rule_ids}
    assert got["G1"] == [1, 0, 0, 0, 0]
    assert got["G2"] == [0, 1, 1, 0, 0]  # MAP 70: vaso 0 -> 1 -> 3
    assert got["SSC1"] == [1, 0, 0, 1, 0]  # first blocs of hypoperfused patients without top fluid
    assert got["H1"] == [0, 0, 0, 1, 0]  # MAP 50, no vaso, fluid level 2
    assert got["H3"] == [0, 0, 0, 0, 1]
    adh_app, adh_v = res.definitions["guideline_adherence"]
    assert adh_app.all() and adh_v.tolist() == [1, 1, 1, 0, 0]
    # single-decision checks agree row by row
    i = 0
    for ep in cohort.episodes():
        for t in range(len(ep)):
            ctx = RuleContext.from_history(ep.history(t), ep.steps[t].action, cohort.schema, rules=rules)
            for r in rules.check(ctx):
                k = res.row(r.rule_id)
                assert r.applicable == res.applicable[k, i]
                assert bool(r.violated) == bool(res.violated[k, i])
            i += 1


def test_evaluate_cohort_with_probabilities_gives_expected_violations(rules):
    cohort = _mini_cohort()
    probs = np.full((len(cohort), 25), 1 / 25)
    res = rules.evaluate_cohort(cohort, probs)
    # G1 row 0: only action (0,0) of 25 violates.
    assert res.violated[res.row("G1"), 0] == pytest.approx(1 / 25)
    # H1 row 3: vaso 0 and fluid levels 0-2 -> 3 of 25 actions.
    assert res.violated[res.row("H1"), 3] == pytest.approx(3 / 25)
    # adherence definition: P(G1 or G2 broken) at row 2: G2 (vaso > 1: 3 levels x 5 fluids) or G1 (0, 0).
    assert res.definitions["guideline_adherence"][1][2] == pytest.approx(16 / 25)
    with pytest.raises(UserError):
        rules.evaluate_cohort(cohort, np.zeros((len(cohort), 25)))
    with pytest.raises(UserError):
        rules.evaluate_cohort(cohort, np.array([0, 1]))


def test_bad_rule_files_name_the_rule(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text(
        "variables: {map: {unit: mmHg, columns: [MeanBP]}}\n"
        "rules:\n  - {id: X1, name: x, kind: hazard, source: s, features: [map], when: 'map < 50', violation: '__import__(1)'}\n"
    )
    with pytest.raises(DataError, match="X1"):
        load_rules(bad)
    bad.write_text(
        "variables: {map: {unit: mmHg, columns: [MeanBP]}}\n"
        "rules:\n  - {id: X2, name: x, kind: hazard, source: s, features: [], when: 'map < 50', violation: 'vaso == 0'}\n"
    )
    with pytest.raises(DataError, match="X2"):
        load_rules(bad)
    with pytest.raises(DataError, match="does not exist"):
        load_rules(tmp_path / "nope.yaml")


def test_custom_rule_file_round_trip(tmp_path):
    f = tmp_path / "r.yaml"
    f.write_text(
        "variables: {map: {unit: mmHg, columns: [MeanBP]}}\n"
        "definitions: {d: {rules: [X]}}\n"
        "rules:\n  - {id: X, name: x, kind: hazard, source: me, features: [map], when: '50 <= map < 60', violation: 'vaso + fluid == 0'}\n"
    )
    rs = load_rules(f)
    out = rs.check(RuleContext(fluid=0, vaso=0, values={"map": 55.0}))
    assert out[0].violated is True
    assert rs.check(RuleContext(fluid=0, vaso=0, values={"map": 60.0}))[0].triggered is False


def test_public_surface_is_curated():
    import sepsis_sdk.safety as safety

    assert safety.__all__ == sorted(safety.__all__)
    for name in safety.__all__:
        assert getattr(safety, name) is not None


def test_action_violations_match_per_action_checks(rules):
    ctx = RuleContext(
        fluid=0,
        vaso=0,
        t=2,
        prev_fluid=4,
        prev_vaso=1,
        max_prior_fluid=4,
        values={"map": 60.0, "lactate": 3.0, "cum_balance": 0.0},
    )
    table = rules.action_violations(ctx)
    for a in range(25):
        c = RuleContext(
            fluid=a // 5, vaso=a % 5, t=2, prev_fluid=4, prev_vaso=1, max_prior_fluid=4, values=ctx.values
        )
        for r in rules.check(c):
            if table[r.rule_id] is None:
                assert not r.applicable
            else:
                assert bool(table[r.rule_id][a]) == bool(r.violated)
    assert table["G1"].sum() == 1 and table["SSC2"].sum() == 5  # (0,0); vaso 0 with any fluid
    assert rules.action_violations(RuleContext(fluid=0, vaso=0, values={"map": 70.0}))["G1"] is None
