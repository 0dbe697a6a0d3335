import numpy as np
import pandas as pd
import pytest

from sepsis_sdk.cohort import Cohort
from sepsis_sdk.errors import CohortValidationError, UserError
from sepsis_sdk.features import FeatureSchema, FeatureSpec, mask_column
from sepsis_sdk.types import PatientHistory

SCHEMA = FeatureSchema(
    name="toy",
    features=(
        FeatureSpec(name="map", unit="mmHg", lower=20, upper=200),
        FeatureSpec(name="lactate", unit="mmol/L", lower=0.1, upper=30, log_model=True),
    ),
)


def toy_frame(n_patients=6, length=3):
    rows = []
    for p in range(n_patients):
        for t in range(length):
            rows.append(
                {
                    "patient_id": f"p{p}",
                    "t": t,
                    "map": 60.0 + p + t,
                    "lactate": 2.0 + t,
                    mask_column("lactate"): t != 1,
                    "action": (p + t) % 25,
                    "reward": 0.0,
                    "done": t == length - 1,
                    "outcome": p % 2,
                }
            )
    return pd.DataFrame(rows)


def test_structure_views_and_transitions():
    c = Cohort(toy_frame(), SCHEMA, source="toy")
    assert c.n_patients == 6 and len(c) == 18
    assert c.lengths().tolist() == [3] * 6
    tr = c.transitions()
    assert tr.obs.shape == (18, 2)
    # next_obs of a non-terminal row is the following row of the same patient
    np.testing.assert_allclose(tr.next_obs[0], tr.obs[1])
    assert tr.done.sum() == 6
    assert c.masks()[:, 1].tolist()[:3] == [True, False, True]
    assert c.summary()["mortality"] == pytest.approx(0.5)


def test_episodes_and_histories():
    c = Cohort(toy_frame(2, 3), SCHEMA)
    eps = list(c.episodes())
    assert [e.patient_id for e in eps] == ["p0", "p1"]
    assert eps[1].actions == [1, 2, 3]
    h = eps[1].history(2)
    assert isinstance(h, PatientHistory)
    assert h.actions == (1, 2) and h.t == 2 and h.previous_action == 2
    assert h.value("map") == 63.0
    assert len(list(c.histories())) == 6


def test_split_is_by_patient_and_deterministic():
    c = Cohort(toy_frame(40, 2), SCHEMA)
    s1 = c.split(0.5, 0.25, 0.25, seed=3)
    s2 = Cohort(
        toy_frame(40, 2)
        .iloc[::-1]
        .sort_values(["patient_id", "t"], key=lambda s: s if s.name == "t" else s.str[::-1])
        .reset_index(drop=True),
        SCHEMA,
    ).split(0.5, 0.25, 0.25, seed=3)
    sets = [set(p.patient_ids) for p in s1]
    assert [len(x) for x in sets] == [20, 10, 10]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert sets == [set(p.patient_ids) for p in s2]  # row order does not matter
    assert sets != [set(p.patient_ids) for p in c.split(0.5, 0.25, 0.25, seed=4)]
    with pytest.raises(UserError):
        c.split(0.5, 0.5, 0.5)


def test_parquet_round_trip(tmp_path):
    c = Cohort(toy_frame(), SCHEMA, source="toy", meta={"seed": 7})
    path = c.to_parquet(tmp_path / "c.parquet")
    d = Cohort.read_parquet(path)
    pd.testing.assert_frame_equal(c.data, d.data)
    assert d.schema == SCHEMA and d.meta == {"seed": 7} and d.source == "toy"


def test_parquet_errors_name_the_file(tmp_path):
    with pytest.raises(CohortValidationError, match="does not exist"):
        Cohort.read_parquet(tmp_path / "nope.parquet")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(CohortValidationError, match=r"bad\.parquet"):
        Cohort.read_parquet(bad)
    plain = tmp_path / "plain.parquet"
    toy_frame().to_parquet(plain)
    with pytest.raises(CohortValidationError, match="no sepsis_sdk metadata"):
        Cohort.read_parquet(plain)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda df: df.drop(columns=["action"]), "missing required columns"),
        (lambda df: df.assign(action=df.action.where(df.index != 4, 25)), "action outside 0-24"),
        (lambda df: df.assign(map=df["map"].astype(str)), "non-numeric"),
        (lambda df: df.assign(t=df.t.where(df.index != 1, 0)), "duplicate time steps"),
        (lambda df: df.assign(t=df.t.where(df.index != 2, 0)), "not increasing"),
        (lambda df: df.assign(done=False), "done must be True"),
        (
            lambda df: pd.concat(
                [df.iloc[:3], df.iloc[3:6], df.iloc[:3].assign(t=[5, 6, 7])], ignore_index=True
            ),
            "not contiguous",
        ),
    ],
)
def test_validation_errors(mutate, message):
    with pytest.raises(CohortValidationError, match=message):
        Cohort(mutate(toy_frame()), SCHEMA, source="toy.parquet")
