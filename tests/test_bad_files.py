"""Bad files are rejected cleanly: one error type naming the file and what is wrong, never a stray
JSONDecodeError / KeyError / IndexError / RecursionError, and never a silently reused result (issue 11)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from sepsis_sdk.cli import app
from sepsis_sdk.cohort import MAX_ABS_FEATURE, MAX_ABS_REWARD, Cohort
from sepsis_sdk.errors import CohortValidationError, DataError, UserError

runner = CliRunner()


@pytest.fixture(scope="module")
def small_cohort():
    from sepsis_sdk.sources.icu_sepsis import sample_cohort

    return sample_cohort(12, seed=3)


def _with_metadata(tmp_path, cohort, name, value, *, rows=None):
    """A copy of ``cohort``'s Parquet file with its ``sepsis_sdk`` metadata replaced by ``value``."""
    path = cohort.to_parquet(tmp_path / "ok.parquet")
    table = pq.read_table(path)
    if rows is not None:
        table = table.slice(0, rows)
    md = dict(table.schema.metadata)
    if value is not None:
        md[b"sepsis_sdk"] = value
    out = tmp_path / f"{name}.parquet"
    pq.write_table(table.replace_schema_metadata(md), out)
    return out


def _info(cohort, tmp_path):
    path = cohort.to_parquet(tmp_path / "info.parquet")
    return json.loads(pq.read_schema(path).metadata[b"sepsis_sdk"])


# ------------------------------------------------------------------------------ Cohort.read_parquet


@pytest.mark.parametrize(
    "case, fragment",
    [
        ("corrupt_json", "not valid JSON"),
        ("not_an_object", "must be a JSON object"),
        ("invalid_schema", "feature schema"),
        ("no_schema", "no 'schema'"),
    ],
)
def test_read_parquet_rejects_damaged_metadata_with_one_error_type(tmp_path, small_cohort, case, fragment):
    info = _info(small_cohort, tmp_path)
    value = {
        "corrupt_json": b"{not json",
        "not_an_object": b"[1, 2]",
        "invalid_schema": json.dumps({**info, "schema": {"names": 5}}).encode(),
        "no_schema": json.dumps({k: v for k, v in info.items() if k != "schema"}).encode(),
    }[case]
    path = _with_metadata(tmp_path, small_cohort, case, value)
    with pytest.raises(CohortValidationError, match=fragment) as err:
        Cohort.read_parquet(path)
    assert str(path) in str(err.value)
    res = runner.invoke(app, ["data", "validate", str(path)])
    assert res.exit_code == 2 and "Traceback" not in res.output and fragment in res.output


def test_read_parquet_rejects_a_cohort_file_with_zero_rows(tmp_path, small_cohort):
    info = _info(small_cohort, tmp_path)
    path = _with_metadata(tmp_path, small_cohort, "zero", json.dumps(info).encode(), rows=0)
    with pytest.raises(CohortValidationError, match="no rows") as err:
        Cohort.read_parquet(path)
    assert str(path) in str(err.value)


# ------------------------------------------------------------------------------ Cohort.validate


@pytest.mark.parametrize(
    "value, fragment",
    [
        (np.inf, "infinite"),
        (-np.inf, "infinite"),
        (-1e300, "beyond"),
        (MAX_ABS_REWARD * 2, "beyond"),
        (np.nan, "NaN"),
    ],
)
def test_validate_rejects_non_finite_and_absurd_rewards(small_cohort, value, fragment):
    df = small_cohort.data.copy()
    df.loc[5, "reward"] = value
    with pytest.raises(CohortValidationError, match=fragment) as err:
        Cohort(df, small_cohort.schema, source="ward.parquet")
    assert err.value.column == "reward" and err.value.rows == [5] and "ward.parquet" in str(err.value)


def test_validate_keeps_rewards_within_the_bound(small_cohort):
    df = small_cohort.data.copy()
    df.loc[5, "reward"] = -MAX_ABS_REWARD  # the bound itself is allowed (e.g. a reward scaled by 1e6)
    Cohort(df, small_cohort.schema)


@pytest.mark.parametrize(
    "column, value, fragment",
    [
        ("HR", np.inf, "infinite"),
        ("HR", -1e300, "beyond"),
        ("HR", MAX_ABS_FEATURE * 10, "beyond"),
        ("action", 25, "0-24"),
        ("action", -1, "0-24"),
        ("outcome", 7, "outcome must be"),
        ("behaviour_prob", 1.5, r"\(0, 1\]"),
        ("behaviour_prob", 0.0, r"\(0, 1\]"),
    ],
)
def test_validate_rejects_the_siblings_features_actions_outcome_probabilities(
    small_cohort, column, value, fragment
):
    df = small_cohort.data.copy()
    df.loc[4, column] = value
    with pytest.raises(CohortValidationError, match=fragment) as err:
        Cohort(df, small_cohort.schema)
    assert err.value.column == column and 4 in err.value.rows


def test_validate_still_accepts_missing_features_as_nan(small_cohort):
    df = small_cohort.data.copy()
    df.loc[4, "HR"] = np.nan
    Cohort(df, small_cohort.schema)


# ------------------------------------------------------------------------------ data validate: formats


@pytest.mark.parametrize("text", ['{"patient_id": "p1", "observations": []}', '[{"a": 1}]'])
def test_data_validate_names_a_json_file_as_json_not_as_a_csv_header_problem(tmp_path, text):
    path = tmp_path / "history.json"
    path.write_text(text)
    res = runner.invoke(app, ["data", "validate", str(path)], env={"COLUMNS": "200"})
    assert res.exit_code == 2
    assert "JSON file" in res.output and "header" not in res.output


def test_data_validate_names_a_binary_file(tmp_path):
    path = tmp_path / "blob.csv"
    path.write_bytes(b"\x00\x01\x02garbage\x00" * 10)
    res = runner.invoke(app, ["data", "validate", str(path)], env={"COLUMNS": "200"})
    assert res.exit_code == 2 and "binary content" in res.output and "Traceback" not in res.output


# ------------------------------------------------------------------------------ run directory


def test_a_corrupt_manifest_stops_resume_with_a_clear_error_and_keeps_the_results(tmp_path):
    from sepsis_sdk.evaluation.storage import RunStore

    store = RunStore(tmp_path, "fp1")
    store.start("random")
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "random.json").write_text("{}")
    (tmp_path / "manifest.json").write_text('{"fingerprint": "fp1", "policies": {')  # cut short
    with pytest.raises(DataError, match=r"manifest.json.*not valid JSON.*--fresh"):
        RunStore(tmp_path, "fp1")
    assert (tmp_path / "policies" / "random.json").exists()  # nothing deleted
    (tmp_path / "manifest.json").write_text('["not", "a", "manifest"]')
    with pytest.raises(DataError, match="not a run manifest"):
        RunStore(tmp_path, "fp1")
    fresh = RunStore(tmp_path, "fp1", fresh=True)  # the documented way out
    assert fresh.manifest.data["policies"] == {}


def test_a_corrupt_result_file_is_recomputed_with_a_recorded_note(tmp_path):
    from sepsis_sdk.evaluation.storage import RunStore

    store = RunStore(tmp_path, "fp1")
    store.manifest.mark("random", "done", file="policies/random.json")
    f = store.result_file("random")
    f.parent.mkdir(parents=True)
    f.write_text('{"name": "random", "trunc')
    assert store.load("random", []) is None  # not done: it will be computed again
    assert not f.exists() and f.with_name("random.json.corrupt").exists()
    store.start("random")  # the runner's next step; the note survives the status change
    entry = json.loads((tmp_path / "manifest.json").read_text())["policies"]["random"]
    assert entry["status"] == "running" and "could not be read" in entry["notes"][0]


def _tiny_config(tmp_path, cohort_path, **kw):
    from sepsis_sdk.evaluation.config import (
        CohortConfig,
        EvaluationConfig,
        OPEConfig,
        PolicyConfig,
        SafetyConfig,
        TruthConfig,
    )

    return EvaluationConfig(
        out_dir=str(tmp_path / "run"),
        cohort=CohortConfig(path=str(cohort_path)),
        policies=(PolicyConfig(name="random"),),
        ope=OPEConfig(estimators=("wis",), n_bootstrap=10),
        safety=SafetyConfig(n_bootstrap=10),
        truth=TruthConfig(monte_carlo_episodes=20),
        executor="serial",
        **kw,
    )


def test_fingerprint_includes_the_content_of_the_cohort_and_rule_files(tmp_path):
    from sepsis_sdk.evaluation.config import CohortConfig, EvaluationConfig, SafetyConfig
    from sepsis_sdk.sources.icu_sepsis import sample_cohort

    path = sample_cohort(30, seed=0).to_parquet(tmp_path / "c.parquet")
    by_path = EvaluationConfig(cohort=CohortConfig(path=str(path)))
    by_source = EvaluationConfig(cohort=CohortConfig(source=str(path)))
    before = (by_path.fingerprint(), by_source.fingerprint())
    assert before == (by_path.fingerprint(), by_source.fingerprint())  # stable
    sample_cohort(30, seed=1).to_parquet(path)  # same path, other patients
    assert by_path.fingerprint() != before[0] and by_source.fingerprint() != before[1]
    # generated cohorts have no file: their fingerprint does not depend on the working directory
    assert "cohort" not in EvaluationConfig().input_files()
    rules = tmp_path / "rules.yaml"
    from importlib import resources

    rules.write_text(resources.files("sepsis_sdk.safety").joinpath("rules.yaml").read_text())
    cfg = EvaluationConfig(safety=SafetyConfig(rules=str(rules)))
    fp = cfg.fingerprint()
    rules.write_text(rules.read_text().replace("lactate > 2", "lactate > 3"))
    assert cfg.fingerprint() != fp


def test_evaluate_resume_does_not_reuse_results_of_a_changed_cohort_file(tmp_path):
    from sepsis_sdk.evaluation.runner import run_evaluation
    from sepsis_sdk.sources.icu_sepsis import sample_cohort

    path = sample_cohort(80, seed=0).to_parquet(tmp_path / "cohort.parquet")
    cfg = _tiny_config(tmp_path, path)
    run_evaluation(cfg, progress=False)
    again = run_evaluation(cfg, progress=False)  # same file: resumes
    assert again["random"].n_patients > 0
    sample_cohort(80, seed=5).to_parquet(path)  # rewritten in place
    with pytest.raises(UserError, match=r"different config .*content of an input file"):
        run_evaluation(cfg, progress=False)


# ------------------------------------------------------------------------------ safety rules


def test_safety_rules_with_a_bad_yaml_file_exits_2_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: [\n  - {id: X")
    res = runner.invoke(app, ["safety-rules", "--rules", str(bad)])
    assert res.exit_code == 2
    assert "bad.yaml" in res.output and "not valid YAML" in res.output and "Traceback" not in res.output


@pytest.mark.parametrize(
    "text",
    [
        " or ".join(["map > 65"] * 100_000),  # wide: one BoolOp with 100,000 values
        " + ".join(["map"] * 100_000) + " > 1",  # deep: RecursionError in ast construction before
        "not " * 3000 + "map > 65",  # deep and short enough to parse, then deeper than any rule
        " or ".join(["map > 65"] * 300),  # under the character limit, over the node limit
    ],
)
def test_huge_rule_expressions_raise_expression_error(text):
    from sepsis_sdk.safety import ExpressionError
    from sepsis_sdk.safety._expr import parse

    with pytest.raises(ExpressionError) as err:
        parse(text, {"map"})
    assert len(str(err.value)) < 300  # the message quotes the start of the text, not all of it


def test_a_rule_file_with_a_huge_expression_is_a_data_error(tmp_path):
    from importlib import resources

    import yaml

    from sepsis_sdk.safety import load_rules

    spec = yaml.safe_load(resources.files("sepsis_sdk.safety").joinpath("rules.yaml").read_text())
    spec["rules"][0]["when"] = " or ".join(["map > 65"] * 100_000)
    rule_id = spec["rules"][0]["id"]
    path = tmp_path / "huge.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(DataError, match=f"{rule_id}.*at most"):
        load_rules(path)
    res = runner.invoke(app, ["safety-rules", "--rules", str(path)])
    assert res.exit_code == 2 and "Traceback" not in res.output


# ------------------------------------------------------------------------------ siblings found on the way


def test_a_folder_given_as_a_cohort_file_is_named_as_a_folder(tmp_path):
    from sepsis_sdk.sources import load

    with pytest.raises(CohortValidationError, match="is a directory"):
        load(str(tmp_path))
    res = runner.invoke(app, ["evaluate", "--cohort", str(tmp_path), "--out", str(tmp_path / "ev")])
    assert res.exit_code == 2 and "is a directory" in res.output and "does not exist" not in res.output


def test_an_empty_part_of_a_split_has_no_patients_instead_of_an_index_error(small_cohort):
    empty = small_cohort.select([])  # e.g. the test part of a 5-patient cohort
    assert empty.n_patients == 0 and len(empty.patient_ids) == 0
    assert empty.episode_index().tolist() == [] and empty.lengths().tolist() == []
    assert empty.summary()["patients"] == 0


@pytest.mark.parametrize("kind", ["binary", "folder"])
def test_a_rule_file_that_is_binary_or_a_folder_is_a_data_error(tmp_path, kind):
    from sepsis_sdk.safety import load_rules

    path = tmp_path / "rules.yaml"
    if kind == "binary":
        path.write_bytes(b"\xff\xfe\x00garbage\x81")
    else:
        path.mkdir()
    with pytest.raises(DataError, match=r"rules\.yaml"):
        load_rules(path)
    res = runner.invoke(app, ["safety-rules", "--rules", str(path)])
    assert res.exit_code == 2 and "Traceback" not in res.output


def test_a_mimictable_with_a_missing_sofa_is_rejected_not_loaded_with_nan_rewards(tmp_path):
    import importlib.util
    from pathlib import Path

    from sepsis_sdk.sources.mimic import load_mimictable

    helper = Path(__file__).with_name("test_mimic_mimictable.py")  # builds a valid MIMICtable frame
    spec = importlib.util.spec_from_file_location("_mimictable_helper", helper)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    df, _ = mod.mimictable_frame(n=10)
    df["SOFA"] = df["SOFA"].astype(float)
    df.loc[3, "SOFA"] = np.nan
    path = tmp_path / "MIMICtable.csv"
    df.to_csv(path, index=False)
    with pytest.raises(CohortValidationError, match="SOFA is missing") as err:
        load_mimictable(path)
    assert err.value.column == "SOFA" and err.value.rows == [3]
