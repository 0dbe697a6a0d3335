"""load_mimic_iv / validate_file / write_mimic_iv: the SepsisAgent-style MIMIC-IV episode format."""

import numpy as np
import pandas as pd
import pytest

from sepsis_sdk.actions import bin_dose
from sepsis_sdk.errors import CohortValidationError, UserError
from sepsis_sdk.sources._mimic_schema import MIMIC_IV_FEATURES, approx_sofa
from sepsis_sdk.sources.mimic import load_mimic_iv, train_patient_ids, validate_file, write_mimic_iv
from sepsis_sdk.sources.synthetic import synthesize_cohort


@pytest.fixture(scope="module")
def syn():
    return synthesize_cohort(60, seed=4)


@pytest.fixture(scope="module")
def valid_csv(syn, tmp_path_factory):
    return write_mimic_iv(syn, tmp_path_factory.mktemp("mimic_iv") / "valid.csv")


@pytest.fixture()
def frame(valid_csv):
    """A valid MIMIC-IV file (written from a synthetic cohort, doses included) as a DataFrame."""
    return pd.read_csv(valid_csv)


def _write(df, tmp_path, name="bad.csv"):
    p = tmp_path / name
    if name.endswith(".parquet"):
        df.to_parquet(p, index=False)
    else:
        df.to_csv(p, index=False)
    return p


def _fails(path, *needles, column=None, rows=None):
    with pytest.raises(CohortValidationError) as info:
        load_mimic_iv(path)
    err = info.value
    msg = str(err)
    assert str(path) in msg  # the file is named
    for n in needles:
        assert n in msg, msg
    if column is not None:
        assert err.column == column and repr(column) in msg
    if rows is not None:
        assert err.rows[: len(rows)] == list(rows)
    # validate_file reports the same problem without raising
    report = validate_file(path)
    assert not report.ok and any(needles[0] in str(p) for p in report.problems), str(report)
    return err


# ------------------------------------------------------------------ round trip and content
def test_roundtrip_keeps_everything(syn, tmp_path):
    for name in ("ep.csv", "ep.parquet", "ep.csv.gz"):
        p = write_mimic_iv(syn, tmp_path / name)
        back = load_mimic_iv(p)
        assert back.synthetic and back.source == "synthetic-mimic-iv" and back.meta["file"] == str(p)
        assert back.n_patients == syn.n_patients and len(back) == len(syn)
        np.testing.assert_allclose(back.features(), syn.features())
        assert (back.masks() == syn.masks()).all()
        assert (back.actions == syn.actions).all()
        np.testing.assert_allclose(back.data["reward"], syn.data["reward"])
        assert (back.data["outcome"] == syn.data["outcome"]).all()
    report = validate_file(p)
    assert report.ok and report.format == "mimic-iv"
    assert report.n_patients == 60 and report.n_steps == len(syn)
    assert "valid" in str(report)


def test_levels_instead_of_doses(syn, tmp_path):
    p = write_mimic_iv(syn, tmp_path / "lv.csv", levels=True)
    df = pd.read_csv(p)
    assert "fluid_level" in df.columns and "fluid_dose" not in df.columns
    back = load_mimic_iv(p)
    assert (back.actions == syn.actions).all()
    assert back.meta["dose_binning"] == "levels given in file"


def test_real_file_not_synthetic(frame, tmp_path):
    p = _write(frame.drop(columns=["synthetic"]), tmp_path, "real.csv")
    c = load_mimic_iv(p)
    assert not c.synthetic and not c.schema.synthetic and c.source == str(p)
    assert c.schema.name == "mimic-iv"


def test_masks_default_to_not_nan_and_t_counts_rows(frame, tmp_path):
    df = frame.drop(columns=[c for c in frame.columns if c.startswith("mask__")])
    df.loc[2, "albumin"] = np.nan
    df["step"] = df["step"] + 3  # files may start at any step
    c = load_mimic_iv(_write(df, tmp_path))
    m = c.masks()[:, c.schema.index("albumin")]
    assert not m[2] and m.sum() == len(c) - 1
    first = c.data.groupby("patient_id").first()
    assert (first["t"] == 0).all() and (first["step"] == 3).all()


def test_gender_letters_and_sofa_column(frame, tmp_path):
    df = frame.copy()
    df["gender"] = np.where(df["gender"] == 1, "M", "F")
    df["sofa"] = 4
    c = load_mimic_iv(_write(df, tmp_path))
    assert set(c.data["gender"].unique()) <= {0.0, 1.0}
    assert (c.data["sofa"] == 4).all() and c.meta["sofa"] == "from file"


# ------------------------------------------------------------------ dose binning
def test_published_binning_matches_bin_dose(frame, tmp_path):
    c = load_mimic_iv(_write(frame, tmp_path))
    fl = [bin_dose(d, (50.0, 180.0, 530.0)) for d in c.data["fluid_dose"]]
    vs = [bin_dose(d, (0.08, 0.22, 0.45)) for d in c.data["vaso_dose"]]
    assert (c.actions == 5 * np.array(fl) + np.array(vs)).all()


def test_quartile_binning_learned_on_train_patients_only(frame, tmp_path):
    c = load_mimic_iv(_write(frame, tmp_path), dose_binning="quartiles", split_seed=3)
    edges = c.meta["dose_edges"]
    train = set(train_patient_ids(c.patient_ids.tolist(), 3))
    assert train == set(c.split(seed=3).train.patient_ids.tolist())  # the same rule as Cohort.split
    tr = c.data[c.data["patient_id"].isin(train)]
    nz = tr["fluid_dose"][tr["fluid_dose"] > 0]
    np.testing.assert_allclose(edges["fluid"], np.quantile(nz, [0.25, 0.5, 0.75]))
    lv = c.actions // 5
    assert (
        np.bincount(
            lv[(c.data["patient_id"].isin(train) & (c.data["fluid_dose"] > 0)).to_numpy()], minlength=5
        )[1:].min()
        > 0.2 * nz.size
    )  # roughly quartiles on train
    # huge doses for a held-out patient do not move the edges
    held_out = sorted(set(c.patient_ids.tolist()) - train)[0]
    df = frame.copy()
    df.loc[df["stay_id"].astype(str) == held_out, "fluid_dose"] = 9000.0
    c2 = load_mimic_iv(_write(df, tmp_path, "b2.csv"), dose_binning="quartiles", split_seed=3)
    assert c2.meta["dose_edges"] == edges
    with pytest.raises(UserError, match="dose_binning"):
        load_mimic_iv(_write(frame, tmp_path), dose_binning="tertiles")


def test_quartiles_need_doses(frame, tmp_path):
    df = frame.copy()
    df["vaso_dose"] = 0.0
    with pytest.raises(CohortValidationError, match="at least 4 non-zero vaso doses"):
        load_mimic_iv(_write(df, tmp_path), dose_binning="quartiles")


# ------------------------------------------------------------------ approximate SOFA
def test_approx_sofa_points():
    normal = {
        "pao2": [450.0],
        "fio2": [100.0],
        "platelet": [250.0],
        "bilirubin_total": [0.5],
        "gcs_eye": [4.0],
        "gcs_verbal": [5.0],
        "gcs_motor": [6.0],
        "creatinine": [0.8],
        "meanbp": [80.0],
    }
    assert approx_sofa(normal)[0] == 0
    sick = {
        "pao2": [60.0],
        "fio2": [80.0],
        "platelet": [40.0],
        "bilirubin_total": [7.0],
        "gcs_eye": [1.0],
        "gcs_verbal": [1.0],
        "gcs_motor": [4.0],
        "creatinine": [2.5],
        "meanbp": [60.0],
    }
    # resp 4 (P/F 75), coag 3, liver 3, CNS 4 (GCS 6 -> 3? 6-9 is 3), renal 2, cardio 1 (MAP < 70)
    assert approx_sofa(sick)[0] == 4 + 3 + 3 + 3 + 2 + 1
    assert approx_sofa(sick, vaso_dose=np.array([0.05]))[0] == 4 + 3 + 3 + 3 + 2 + 3
    assert approx_sofa(sick, vaso_level=np.array([3]))[0] == 4 + 3 + 3 + 3 + 2 + 4
    missing = {k: [np.nan] for k in normal}
    assert approx_sofa(missing)[0] == 0


# ------------------------------------------------------------------ malformed files (each names the problem)
def test_missing_column(frame, tmp_path):
    err = _fails(_write(frame.drop(columns=["lactate", "age"]), tmp_path), "missing required columns")
    assert "lactate" in str(err) and "age" in str(err)


def test_missing_action_columns(frame, tmp_path):
    err = _fails(_write(frame.drop(columns=["vaso_dose"]), tmp_path), "missing required columns")
    assert "fluid_dose+vaso_dose or fluid_level+vaso_level" in str(
        err
    ) and "found only ['fluid_dose']" in str(err)


def test_wrong_type(frame, tmp_path):
    df = frame.astype({"heart_rate": object})
    df.loc[5, "heart_rate"] = "abc"
    _fails(_write(df, tmp_path), "non-numeric values", "'abc'", column="heart_rate", rows=[5])


def test_out_of_plausible_range(frame, tmp_path):
    df = frame.copy()
    df.loc[[3, 7], "meanbp"] = [500.0, 5.0]
    err = _fails(
        _write(df, tmp_path), "outside the plausible range [20, 250] mmHg", column="meanbp", rows=[3, 7]
    )
    assert "500" in str(err)


def _same_patient_pair(df):
    """First row i such that rows i and i + 1 belong to one stay."""
    ids = df["stay_id"].to_numpy()
    return int(np.flatnonzero(ids[1:] == ids[:-1])[0])


def test_unsorted_time(frame, tmp_path):
    df = frame.copy()
    i = _same_patient_pair(df)
    df.loc[[i, i + 1]] = df.loc[[i + 1, i]].to_numpy()  # swap two steps of one patient
    _fails(_write(df, tmp_path), "time not sorted", column="step", rows=[i + 1])


def test_duplicate_steps(frame, tmp_path):
    df = frame.copy()
    i = _same_patient_pair(df)
    df.loc[i + 1, "step"] = df.loc[i, "step"]
    _fails(_write(df, tmp_path), "duplicate step", column="step", rows=[i + 1])


def test_gap_in_steps(frame, tmp_path):
    df = frame.copy()
    i = _same_patient_pair(df)
    pid = df.loc[i, "stay_id"]
    df.loc[df["stay_id"] == pid, "step"] = np.arange((df["stay_id"] == pid).sum()) * 2
    _fails(_write(df, tmp_path), "gap in steps", column="step", rows=[i + 1])


def test_patient_rows_not_contiguous(frame, tmp_path):
    first = frame[frame["stay_id"] == frame.loc[0, "stay_id"]]
    df = pd.concat([frame, first.iloc[[0]].assign(step=999)], ignore_index=True)
    _fails(_write(df, tmp_path), "not contiguous", column="stay_id")


def test_bad_action_levels(syn, tmp_path):
    df = pd.read_csv(write_mimic_iv(syn, tmp_path / "lv.csv", levels=True)).astype({"vaso_level": float})
    df.loc[4, "fluid_level"] = 7
    df.loc[6, "vaso_level"] = 1.5
    err = _fails(_write(df, tmp_path), "action level must be an integer 0-4", column="fluid_level", rows=[4])
    assert "7" in str(err)
    report = validate_file(tmp_path / "bad.csv")
    assert any(p.column == "vaso_level" and p.rows == [6] for p in report.problems)


def test_negative_and_missing_doses(frame, tmp_path):
    df = frame.copy()
    df.loc[8, "fluid_dose"] = -100.0
    df.loc[9, "vaso_dose"] = np.nan
    _fails(_write(df, tmp_path), "negative dose", column="fluid_dose", rows=[8])
    report = validate_file(tmp_path / "bad.csv")
    assert any("missing dose" in str(p) and p.rows == [9] for p in report.problems)


def test_mask_inconsistent_with_value(frame, tmp_path):
    df = frame.copy()
    df.loc[10, "lactate"] = np.nan
    df.loc[10, "mask__lactate"] = 1
    _fails(_write(df, tmp_path), "marked observed", column="lactate", rows=[10])


def test_static_changes_within_patient(frame, tmp_path):
    df = frame.copy()
    i = _same_patient_pair(df)
    df.loc[i + 1, "mortality_90d"] = 1 - df.loc[i, "mortality_90d"]
    _fails(_write(df, tmp_path), "changes within a patient", column="mortality_90d", rows=[i + 1])


def test_mortality_not_binary(frame, tmp_path):
    df = frame.copy()
    df["mortality_90d"] = 2
    _fails(_write(df, tmp_path), "must be 0 or 1", column="mortality_90d")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.csv"
    p.write_bytes(b"")
    _fails(p, "file is empty")


def test_header_only(frame, tmp_path):
    _fails(_write(frame.iloc[:0], tmp_path), "no data rows")


def test_unreadable_files(tmp_path):
    p = tmp_path / "bad.parquet"
    p.write_bytes(b"PAR1 this is not parquet at all")
    _fails(p, "not a readable Parquet file")
    q = tmp_path / "binary.csv"
    q.write_bytes(bytes(range(256)) * 4)
    _fails(q, "not a")
    _fails(tmp_path / "nope.csv", "does not exist")


def test_wrong_format(tmp_path):
    p = tmp_path / "table.csv"
    pd.DataFrame({"icustayid": [1], "bloc": [1]}).to_csv(p, index=False)
    with pytest.raises(CohortValidationError, match="use load_mimictable"):
        load_mimic_iv(p)
    q = tmp_path / "other.csv"
    pd.DataFrame({"a": [1], "b": [2]}).to_csv(q, index=False)
    report = validate_file(q)
    assert report.format == "unknown" and "unrecognised layout" in str(report.problems[0])


def test_report_collects_every_problem(frame, tmp_path):
    df = frame.copy()
    df.loc[3, "meanbp"] = 900.0
    df.loc[4, "ph"] = 9.0
    df.loc[5, "fluid_dose"] = -1.0
    p = _write(df, tmp_path)
    report = validate_file(p)
    cols = {x.column for x in report.problems}
    assert {"meanbp", "ph", "fluid_dose"} <= cols
    with pytest.raises(CohortValidationError, match=r"and 2 more problem"):
        load_mimic_iv(p)


def test_every_feature_has_a_range_check(frame, tmp_path):
    # a value 10x beyond the upper bound is caught for each of the 39 features
    from sepsis_sdk.sources._mimic_schema import mimic_iv_schema

    df = frame.copy()
    schema = mimic_iv_schema()
    for j, f in enumerate(MIMIC_IV_FEATURES):
        df.loc[j, f] = schema[f].upper * 10 + 10
    report = validate_file(_write(df, tmp_path))
    flagged = {p.column for p in report.problems if "plausible range" in p.problem}
    assert flagged == set(MIMIC_IV_FEATURES)


def test_float_stay_ids_are_read_as_integers(frame, tmp_path):
    df = frame.copy()
    df["stay_id"] = 30_000_000 + df["stay_id"].str[4:].astype(int)
    df = df.astype({"stay_id": float})
    c = load_mimic_iv(_write(df, tmp_path))
    assert c.patient_ids[0] == "30000000"
