"""The MIMIC schemas: feature lists, bounds wider than the published p01/p99, and the packaged statistics."""

import json
import math
from pathlib import Path

import pytest

from sepsis_sdk.sources._mimic_schema import (
    MIMIC_IV_FEATURES,
    MIMICTABLE_ACTION_COLUMNS,
    MIMICTABLE_COLUMNS,
    MIMICTABLE_OUTCOMES,
    MIMICTABLE_STATIC,
    mimic_iv_schema,
    mimictable_schema,
    reference_stats,
)


@pytest.fixture(scope="module")
def shared_reference():
    path = Path(__file__).resolve().parents[2] / "shared" / "reference" / "mimic_iv_sepsis_feature_stats.json"
    if not path.exists():
        pytest.skip("../shared reference figures not present")
    return json.loads(path.read_text())


def test_packaged_stats_equal_the_published_figures(shared_reference):
    assert reference_stats() == shared_reference


def test_mimic_iv_schema():
    s = mimic_iv_schema()
    assert len(MIMIC_IV_FEATURES) == 39 and s.names == list(MIMIC_IV_FEATURES)
    assert not s.synthetic and s.name == "mimic-iv"
    syn = mimic_iv_schema(synthetic=True)
    assert syn.synthetic and syn.name == "synthetic-mimic-iv"
    assert s.static == ("age", "gender", "charlson_comorbidity_index")
    uo = s["output_4hourly"]
    assert uo.transform == "log1p" and uo.lower == 0 and math.isclose(math.expm1(uo.upper), 10_000)
    assert {f.name for f in s if f.log_model} >= {
        "alt",
        "ast",
        "bilirubin_total",
        "creatinine",
        "lactate",
        "inr",
    }
    assert not s["sodium"].log_model and not s["ph"].log_model
    assert s["gcs_motor"].kind == "ordinal" and (s["gcs_motor"].lower, s["gcs_motor"].upper) == (1, 6)
    assert s["lactate"].to_display(2.5) == "2.5 mmol/L"
    assert s["output_4hourly"].to_display(math.log1p(150)) == "150 mL/4h"


def test_bounds_contain_published_percentiles_with_margin():
    st = reference_stats()["features"]
    s = mimic_iv_schema()
    for f in s:
        p01, p99 = st[f.name]["p01"], st[f.name]["p99"]
        if p01 is None:
            continue
        assert f.lower <= p01 and f.upper >= p99, f.name
        if f.kind == "continuous":  # strictly wider, except where p99 is a physical maximum (100 %)
            assert f.lower < p01, f.name
            assert f.upper > p99 or (f.name in {"spo2", "fio2"} and f.upper == p99 == 100.0), f.name


def test_mimictable_layout():
    assert len(MIMICTABLE_COLUMNS) == 59 and len(set(MIMICTABLE_COLUMNS)) == 59
    s = mimictable_schema()
    parts = {"bloc", "icustayid", "charttime", *MIMICTABLE_STATIC, *MIMICTABLE_OUTCOMES, *MIMICTABLE_ACTION_COLUMNS,
             *s.names}  # fmt: skip
    assert parts == set(MIMICTABLE_COLUMNS) and len(s) == 45
    assert not set(MIMICTABLE_ACTION_COLUMNS) & set(s.names)  # the doses are the action, not the state
    assert s["FiO2_1"].upper == 1.0 and s["mechvent"].kind == "binary"


def test_public_surface():
    import sepsis_sdk.sources.mimic as mimic
    import sepsis_sdk.sources.synthetic as synthetic

    for mod in (mimic, synthetic):
        assert len(set(mod.__all__)) == len(mod.__all__)
        for name in mod.__all__:
            assert getattr(mod, name) is not None
    assert {"load_mimic_iv", "load_mimictable", "validate_file", "write_mimic_iv"} <= set(mimic.__all__)
    assert {"synthesize_cohort", "SyntheticSepsisModel"} <= set(synthetic.__all__)
