import json

from typer.testing import CliRunner

from sepsis_sdk.cli import app
from sepsis_sdk.cohort import Cohort

runner = CliRunner()


def test_help_everywhere():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for cmd in (
        ["data", "--help"],
        ["truth", "--help"],
        ["demo", "--help"],
        ["data", "icu-sepsis", "--help"],
    ):
        r = runner.invoke(app, cmd)
        assert r.exit_code == 0, (cmd, r.output)


def test_truth_prints_exact_values(tmp_path):
    out = tmp_path / "t.json"
    res = runner.invoke(app, ["truth", "--json", str(out)])
    assert res.exit_code == 0
    assert "0.8751" in res.output and "0.7818" in res.output and "0.7801" in res.output
    rows = {r["policy"]: r["true_value"] for r in json.loads(out.read_text())}
    assert round(rows["optimal"], 4) == 0.8751


def test_data_icu_sepsis_and_validate(tmp_path):
    path = tmp_path / "c.parquet"
    res = runner.invoke(app, ["data", "icu-sepsis", "--episodes", "300", "--seed", "1", "-o", str(path)])
    assert res.exit_code == 0, res.output
    assert Cohort.read_parquet(path).n_patients == 300
    res = runner.invoke(app, ["data", "validate", str(path)])
    assert res.exit_code == 0 and "valid" in res.output


def test_validate_reports_a_broken_file_without_traceback(tmp_path):
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"garbage")
    res = runner.invoke(app, ["data", "validate", str(bad)])
    assert res.exit_code == 2
    assert "broken.parquet" in res.output


def test_synth_then_validate_csv_and_a_broken_csv(tmp_path):
    csv = tmp_path / "synth.csv"
    res = runner.invoke(app, ["data", "synth", "--patients", "30", "-o", str(csv)])
    assert res.exit_code == 0, res.output
    assert "synthetic" in res.output
    ok = runner.invoke(app, ["data", "validate", str(csv)])
    assert ok.exit_code == 0, ok.output
    text = csv.read_text().splitlines()
    header = text[0].split(",")
    col = header.index("heart_rate")
    row = text[1].split(",")
    row[col] = "-40"  # impossible heart rate
    (tmp_path / "bad.csv").write_text("\n".join([text[0], ",".join(row), *text[2:]]))
    bad = runner.invoke(app, ["data", "validate", str(tmp_path / "bad.csv")])
    assert bad.exit_code == 2 and "heart_rate" in bad.output
