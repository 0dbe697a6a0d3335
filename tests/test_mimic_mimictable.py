"""load_mimictable / validate_file on the 59-column AI-Clinician MIMICtable."""

import numpy as np
import pandas as pd
import pytest

from sepsis_sdk.errors import CohortValidationError
from sepsis_sdk.sources._mimic_schema import MIMICTABLE_COLUMNS
from sepsis_sdk.sources.mimic import load_mimictable, validate_file
from sepsis_sdk.sources.synthetic import synthesize_cohort


def mimictable_frame(n=40, seed=2):
    """A valid MIMICtable built from a synthetic cohort (units as in AI-Clinician; age in days)."""
    d = synthesize_cohort(n, seed=seed).data
    ids = 200_000 + d["patient_id"].str[4:].astype(int)
    fluid = d["fluid_dose"]
    urine = np.expm1(d["output_4hourly"])
    gcs = d["gcs_eye"] + d["gcs_verbal"] + d["gcs_motor"]
    cols = {
        "bloc": d["t"] + 1, "icustayid": ids, "charttime": 7_000_000_000 + 14_400 * d["t"] + ids * 1000,
        "gender": d["gender"], "age": d["age"] * 365.25, "elixhauser": 3.0, "re_admission": 0.0,
        "died_in_hosp": d["mortality_90d"], "died_within_48h_of_out_time": 0.0, "mortality_90d": d["mortality_90d"],
        "delay_end_of_record_and_discharge_or_death": 24.0, "Weight_kg": 80.0, "GCS": gcs,
        "HR": d["heart_rate"], "SysBP": d["sysbp"], "MeanBP": d["meanbp"], "DiaBP": d["diabp"], "RR": d["resp_rate"],
        "SpO2": d["spo2"], "Temp_C": d["temp_c"], "FiO2_1": d["fio2"] / 100, "Potassium": d["potassium"],
        "Sodium": d["sodium"], "Chloride": d["chloride"], "Glucose": d["glucose"], "BUN": d["bun"],
        "Creatinine": d["creatinine"], "Magnesium": d["magnesium"], "Calcium": d["calcium_total"],
        "Ionised_Ca": d["calcium_free"], "CO2_mEqL": d["total_co2"], "SGOT": d["ast"], "SGPT": d["alt"],
        "Total_bili": d["bilirubin_total"], "Albumin": d["albumin"], "Hb": d["hemoglobin"], "WBC_count": d["wbc"],
        "Platelets_count": d["platelet"], "PTT": d["ptt"], "PT": d["pt"], "INR": d["inr"], "Arterial_pH": d["ph"],
        "paO2": d["pao2"], "paCO2": d["paco2"], "Arterial_BE": d["base_excess"], "Arterial_lactate": d["lactate"],
        "HCO3": d["bicarbonate"], "mechvent": (d["gcs_verbal"] == 1).astype(float),
        "Shock_Index": d["heart_rate"] / d["sysbp"], "PaO2_FiO2": d["pao2"] / (d["fio2"] / 100),
        "median_dose_vaso": d["vaso_dose"] * 0.8, "max_dose_vaso": d["vaso_dose"],
        "input_total": fluid.groupby(d["patient_id"]).cumsum(), "input_4hourly": fluid,
        "output_total": urine.groupby(d["patient_id"]).cumsum(), "output_4hourly": urine,
        "cumulated_balance": (fluid - urine).groupby(d["patient_id"]).cumsum(), "SOFA": d["sofa"], "SIRS": 2.0,
    }  # fmt: skip
    df = pd.DataFrame(cols)
    assert list(df.columns) == list(MIMICTABLE_COLUMNS)
    return df, d


@pytest.fixture(scope="module")
def built():
    return mimictable_frame()


@pytest.fixture()
def frame(built):
    return built[0].copy()


def _write(df, tmp_path, name="MIMICtable.csv"):
    p = tmp_path / name
    if name.endswith(".parquet"):
        df.to_parquet(p, index=False)
    else:
        df.to_csv(p, index=False)
    return p


def _fails(path, *needles, column=None, rows=None):
    with pytest.raises(CohortValidationError) as info:
        load_mimictable(path)
    err = info.value
    msg = str(err)
    assert str(path) in msg
    for n in needles:
        assert n in msg, msg
    if column is not None:
        assert err.column == column and repr(column) in msg
    if rows is not None:
        assert err.rows[: len(rows)] == list(rows)
    report = validate_file(path)
    assert not report.ok and any(needles[0] in str(p) for p in report.problems), str(report)
    return err


def test_loads_valid_table(built, tmp_path):
    df, src = built
    for name in ("MIMICtable.csv", "MIMICtable.parquet"):
        c = load_mimictable(_write(df, tmp_path, name))
        assert not c.synthetic and c.meta["format"] == "mimictable"
        assert len(c.schema) == 45 and c.schema.static == ("gender", "age", "elixhauser", "re_admission")
        assert c.n_patients == 40 and len(c) == len(df)
        # action from input_4hourly / max_dose_vaso with the published edges = the synthetic actions
        assert (c.actions == src["action"].to_numpy()).all()
        assert c.meta["age_converted_from_days"] and abs(c.data["age"].mean() - src["age"].mean()) < 1e-6
        assert (c.data["outcome"] == 1 - df["mortality_90d"]).all()
        first = c.data.groupby("patient_id").first()
        assert (first["t"] == 0).all() and (first["bloc"] == 1).all()
        # Raghu reward: terminal +-15, shaped on SOFA and Arterial_lactate otherwise
        last = c.data[c.data["done"]]
        np.testing.assert_allclose(last["reward"], np.where(last["outcome"] == 1, 15.0, -15.0))
    report = validate_file(tmp_path / "MIMICtable.csv")
    assert report.ok and report.format == "mimictable" and report.n_patients == 40


def test_quartile_binning(frame, tmp_path):
    c = load_mimictable(_write(frame, tmp_path), dose_binning="quartiles", split_seed=1)
    fl = c.meta["dose_edges"]["fluid"]
    assert fl != [50.0, 180.0, 530.0] and fl == sorted(fl)
    train = c.split(seed=1).train
    nz = train.data["fluid_dose"][train.data["fluid_dose"] > 0]
    np.testing.assert_allclose(fl, np.quantile(nz, [0.25, 0.5, 0.75]))


def test_missing_values_become_masks(frame, tmp_path):
    frame.loc[3, "Albumin"] = np.nan
    c = load_mimictable(_write(frame, tmp_path))
    assert not c.masks()[3, c.schema.index("Albumin")]


# ------------------------------------------------------------------ malformed tables
def test_missing_columns(frame, tmp_path):
    err = _fails(_write(frame.drop(columns=["SOFA"]), tmp_path), "missing required columns", "59")
    assert "'SOFA'" in str(err)


def test_non_numeric(frame, tmp_path):
    frame = frame.astype({"HR": object})
    frame.loc[6, "HR"] = "n/a?"
    _fails(_write(frame, tmp_path), "non-numeric values", column="HR", rows=[6])


def test_wrong_unit_out_of_range(frame, tmp_path):
    frame["FiO2_1"] = frame["FiO2_1"] * 100  # percent instead of a fraction
    _fails(
        _write(frame, tmp_path),
        "outside the plausible range [0.2, 1]",
        "wrong unit?",
        column="FiO2_1",
        rows=[0],
    )


def _same_patient_pair(df):
    """First row i such that rows i and i + 1 belong to one stay."""
    ids = df["icustayid"].to_numpy()
    return int(np.flatnonzero(ids[1:] == ids[:-1])[0])


def test_unsorted_blocs(frame, tmp_path):
    i = _same_patient_pair(frame)
    frame.loc[[i, i + 1]] = frame.loc[[i + 1, i]].to_numpy()
    _fails(_write(frame, tmp_path), "time not sorted", column="bloc", rows=[i + 1])


def test_duplicate_blocs(frame, tmp_path):
    i = _same_patient_pair(frame)
    frame.loc[i + 1, "bloc"] = frame.loc[i, "bloc"]
    _fails(_write(frame, tmp_path), "duplicate step", column="bloc", rows=[i + 1])


def test_bad_doses(frame, tmp_path):
    frame.loc[2, "max_dose_vaso"] = -0.1
    _fails(_write(frame, tmp_path), "negative dose", column="max_dose_vaso", rows=[2])
    frame.loc[2, "max_dose_vaso"] = 0.0
    frame.loc[5, "input_4hourly"] = 1e6
    _fails(_write(frame, tmp_path), "above the plausible maximum", column="input_4hourly", rows=[5])


def test_outcome_not_binary(frame, tmp_path):
    frame["mortality_90d"] = frame["mortality_90d"] * 3
    _fails(_write(frame, tmp_path), "must be 0 or 1", column="mortality_90d")


def test_static_changes(frame, tmp_path):
    i = _same_patient_pair(frame)
    frame.loc[i + 1, "elixhauser"] = 9.0
    _fails(_write(frame, tmp_path), "changes within a patient", column="elixhauser", rows=[i + 1])


def test_missing_patient_id(frame, tmp_path):
    frame = frame.astype({"icustayid": float})
    frame.loc[4, "icustayid"] = np.nan
    _fails(_write(frame, tmp_path), "missing patient id", column="icustayid", rows=[4])


def test_empty_and_unreadable(frame, tmp_path):
    e = tmp_path / "empty.csv"
    e.write_text("")
    _fails(e, "file is empty")
    _fails(_write(frame.iloc[:0], tmp_path, "header.csv"), "no data rows")
    bad = tmp_path / "MIMICtable.parquet"
    bad.write_bytes(b"not a parquet file")
    _fails(bad, "not a readable Parquet file")


def test_wrong_loader(tmp_path):
    p = tmp_path / "iv.csv"
    pd.DataFrame({"stay_id": [1], "step": [0]}).to_csv(p, index=False)
    with pytest.raises(CohortValidationError, match="use load_mimic_iv"):
        load_mimictable(p)
