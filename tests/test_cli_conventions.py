"""The CLI's conventions (issue 11): one exit-code table (0 ok, 2 bad input, 1 internal), no tracebacks,
output paths checked before expensive work, file-system errors as one line, escaped output, honest
``--help`` pages, and ``data export-history`` making the history ``recommend`` reads."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sepsis_sdk.cli import app
from sepsis_sdk.errors import UserError

runner = CliRunner()
WIDE = {"COLUMNS": "200"}


@pytest.fixture(scope="module")
def cohort_file(tmp_path_factory):
    from sepsis_sdk.sources.icu_sepsis import sample_cohort

    return sample_cohort(6, seed=2).to_parquet(tmp_path_factory.mktemp("c") / "cohort.parquet")


def _clean(res, code):
    """The command ended with ``code``, said why, and printed no traceback."""
    assert res.exit_code == code, (res.exit_code, res.output)
    assert "Traceback" not in res.output, res.output
    assert any(w in res.output.lower() for w in ("error", "problem")), res.output


# ------------------------------------------------------------------------------ every command, bad input


def _bad_inputs(tmp: Path, cohort_file: Path) -> dict[str, list[str]]:
    a_file = tmp / "plain.txt"
    a_file.write_text("x")
    bad_yaml = tmp / "bad.yaml"
    bad_yaml.write_text("rules: [\n  - {id: X")
    missing = str(tmp / "missing.parquet")
    return {
        "truth --json into a folder": ["truth", "--json", str(tmp)],
        "demo --out a file": ["demo", "--out", str(a_file)],
        "data icu-sepsis -o a folder": ["data", "icu-sepsis", "--episodes", "5", "-o", str(tmp)],
        "data synth -o below a file": ["data", "synth", "--patients", "5", "-o", str(a_file / "s.parquet")],
        "data validate a missing file": ["data", "validate", missing],
        "data export-history a missing file": ["data", "export-history", missing, "-o", str(tmp / "h.json")],
        "data export-history a bad step": [
            "data", "export-history", str(cohort_file), "--step", "999", "-o", str(tmp / "h.json"),
        ],
        "evaluate a bad config": ["evaluate", "--config", str(bad_yaml)],
        "evaluate --out a file": ["evaluate", "--out", str(a_file), "--episodes", "20"],
        "evaluate a bad value": ["evaluate", "--episodes", "0", "--out", str(tmp / "ev")],
        "safety-rules a bad file": ["safety-rules", "--rules", str(bad_yaml)],
        "world-model train --out a file": [
            "world-model", "train", "--cohort", str(cohort_file), "--backend", "neighbour", "--out", str(a_file),
        ],
        "world-model eval a missing model": [
            "world-model", "eval", "--model", str(tmp / "nomodel"), "--out", str(tmp / "wm-eval"),
        ],
        "world-model eval --out a file": [
            "world-model", "eval", "--model", str(tmp / "nomodel"), "--out", str(a_file),
        ],
        "train llm --out a file": ["train", "llm", "--out", str(a_file), "--patients", "5"],
        "recommend a missing file": ["recommend", "--patient", missing],
        "microbench info an empty source folder": ["microbench", "info", "--source", str(tmp)],
    }  # fmt: skip


BAD_CASES = [
    "truth --json into a folder",
    "demo --out a file",
    "data icu-sepsis -o a folder",
    "data synth -o below a file",
    "data validate a missing file",
    "data export-history a missing file",
    "data export-history a bad step",
    "evaluate a bad config",
    "evaluate --out a file",
    "evaluate a bad value",
    "safety-rules a bad file",
    "world-model train --out a file",
    "world-model eval a missing model",
    "world-model eval --out a file",
    "train llm --out a file",
    "recommend a missing file",
    "microbench info an empty source folder",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_every_command_with_bad_input_exits_2_with_one_line_and_no_traceback(tmp_path, cohort_file, case):
    args = _bad_inputs(tmp_path, cohort_file)[case]
    res = runner.invoke(app, args, env=WIDE)
    _clean(res, 2)


def test_usage_errors_exit_2():
    res = runner.invoke(app, ["truth", "--mc", "many"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    res = runner.invoke(app, ["no-such-command"])
    assert res.exit_code == 2


def test_an_internal_error_exits_1_with_a_short_message_and_the_debug_hint(monkeypatch):
    import sepsis_sdk.cli.core as core

    def boom(*a, **k):
        raise RuntimeError("kaboom\nsecond line of detail")

    monkeypatch.setattr(core, "truth_table", boom)
    res = runner.invoke(app, ["truth"], env=WIDE)
    assert res.exit_code == 1
    assert "internal error: RuntimeError: kaboom" in res.output and "second line" not in res.output
    assert "--debug" in res.output and "Traceback" not in res.output
    debug = runner.invoke(app, ["--debug", "truth"])  # the traceback on request
    assert debug.exit_code == 1 and isinstance(debug.exception, RuntimeError)
    env = runner.invoke(app, ["truth"], env={"SEPSIS_SDK_DEBUG": "1"})
    assert isinstance(env.exception, RuntimeError)


# ------------------------------------------------------------------------------ file-system errors


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_writing_a_cohort_is_one_line_exit_2(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    monkeypatch.setattr(pq, "write_table", _enospc)
    res = runner.invoke(
        app, ["data", "icu-sepsis", "--episodes", "5", "-o", str(tmp_path / "c.parquet")], env=WIDE
    )
    _clean(res, 2)
    assert "No space left on device" in res.output


def test_a_full_disk_while_evaluate_draws_its_plots_is_one_line_exit_2(tmp_path, monkeypatch, cohort_file):
    # Pillow's PNG writer: the OSError(ENOSPC) is raised while its AttributeError('_idat' ... 'fileno')
    # is being handled, which is what a real full disk printed as a traceback.
    import PIL.PngImagePlugin as png

    monkeypatch.setattr(png._idat, "write", lambda self, data: _enospc())
    out = tmp_path / "ev"
    args = ["evaluate", "--cohort", str(cohort_file), "--policies", "random", "--n-bootstrap", "5",
            "--executor", "serial", "--no-progress", "--out", str(out)]  # fmt: skip
    res = runner.invoke(app, args, env=WIDE)
    _clean(res, 2)
    assert "No space left on device" in res.output and "_idat" not in res.output
    assert str(out) in res.output and "resumes" in res.output
    assert (out / "policies" / "random.json").exists()  # the finished result is kept for the rerun
    monkeypatch.undo()
    again = runner.invoke(app, args, env=WIDE)
    assert again.exit_code == 0, again.output


def test_a_read_only_output_folder_fails_before_any_work(tmp_path, monkeypatch):
    import sepsis_sdk.cli._common as common
    import sepsis_sdk.sources as sources

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    calls = []
    monkeypatch.setattr(common.tempfile, "mkstemp", read_only)
    monkeypatch.setattr(sources, "load", lambda *a, **k: calls.append(a))
    res = runner.invoke(
        app, ["data", "icu-sepsis", "--episodes", "5", "-o", str(tmp_path / "c.parquet")], env=WIDE
    )
    _clean(res, 2)
    assert "Read-only file system" in res.output and calls == []  # nothing was sampled


def test_ensure_writable_names_the_path_for_each_problem(tmp_path, monkeypatch):
    from sepsis_sdk.cli._common import ensure_writable

    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    assert ensure_writable(tmp_path / "new" / "out.json") == tmp_path / "new" / "out.json"
    assert (tmp_path / "new").is_dir()  # the folder is made
    assert ensure_writable(tmp_path / "run", directory=True).is_dir()
    with pytest.raises(UserError, match="is a directory"):
        ensure_writable(tmp_path)
    with pytest.raises(UserError, match="not a directory"):
        ensure_writable(a_file, directory=True)
    with pytest.raises(UserError, match="parent of this path is a file"):
        ensure_writable(a_file / "x.json")
    with pytest.raises(UserError, match="disk is full"):
        ensure_writable(tmp_path / "y.json", min_free=1 << 62)


# ------------------------------------------------------------------------------ escaped output


def test_bracketed_text_in_messages_is_printed_verbatim(monkeypatch):
    import sepsis_sdk.cli.core as core
    from sepsis_sdk.errors import MissingDependencyError

    def missing(*a, **k):
        raise MissingDependencyError("torch", "local", "the guard [fluid 0, vaso 0]")

    monkeypatch.setattr(core, "truth_table", missing)
    res = runner.invoke(app, ["truth"], env=WIDE)
    assert res.exit_code == 2
    assert "pip install 'sepsis-sdk[local]'" in res.output and "[fluid 0, vaso 0]" in res.output


def test_bracketed_values_in_tables_are_printed_verbatim(tmp_path):
    from sepsis_sdk.sources.icu_sepsis import sample_cohort

    c = sample_cohort(3, seed=0)
    c.source = "[bold]ward[/bold] [fluid 0, vaso 0]"
    path = c.to_parquet(tmp_path / "c.parquet")
    res = runner.invoke(app, ["data", "validate", str(path)], env=WIDE)
    assert res.exit_code == 0, res.output
    assert "[bold]ward[/bold] [fluid 0, vaso 0]" in res.output


def test_install_hint_keeps_the_extra():
    from rich.console import Console

    from sepsis_sdk.cli._common import install_hint

    con = Console(record=True, width=200)
    con.print(f"install it with: {install_hint('local')}")
    assert "pip install 'sepsis-sdk[local]'" in con.export_text()


# ------------------------------------------------------------------------------ help pages


def _all_commands():
    import typer.main

    root = typer.main.get_command(app)

    def walk(cmd, path):
        yield path
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, [*path, name])

    return list(walk(root, []))


@pytest.mark.parametrize("path", _all_commands(), ids=lambda p: " ".join(p) or "root")
def test_help_pages_have_no_bool_placeholder(path):
    res = runner.invoke(app, [*path, "--help"])
    assert res.exit_code == 0, res.output
    assert "<bool>" not in res.output


def test_help_shows_defaults_and_full_option_lists_at_80_columns():
    from sepsis_sdk.evaluation.config import EvaluationConfig

    cfg = EvaluationConfig()
    res = runner.invoke(app, ["evaluate", "--help"], env={"COLUMNS": "80"})
    text = " ".join(res.output.replace("│", " ").split())  # the help as one line, box drawing removed
    for name in ("clinician", "tabular", "double_dqn", "bcq", "cql", "optimal", "no_treatment"):
        assert name in text, name  # nothing cut off with an ellipsis
    assert "…" not in res.output
    # the defaults that apply without --config are the EvaluationConfig's own
    for value in (cfg.cohort.n_episodes, cfg.ope.n_bootstrap, cfg.offline_rl_steps, cfg.out_dir):
        assert f"(default: ({value}, or the --config file's)" in text.replace("[", "(").replace("]", ")")
    data = runner.invoke(app, ["data", "icu-sepsis", "--help"], env={"COLUMNS": "80"})
    assert "[default: 20000]" in data.output


def test_root_help_states_the_exit_codes():
    res = runner.invoke(app, ["--help"], env=WIDE)
    assert "Exit codes: 0 ok, 2 bad input or usage" in res.output and "--debug" in res.output


def test_the_cli_doc_has_the_exit_code_table():
    doc = (Path(__file__).parents[1] / "docs" / "cli.md").read_text()
    for row in ("| 0 |", "| 1 |", "| 2 |", "| 3 |"):
        assert row in doc
    assert "export-history" in doc and "ensure_writable" in doc


# ------------------------------------------------------------------------------ export-history


def test_export_history_writes_what_recommend_reads(tmp_path, cohort_file):
    from sepsis_sdk.cli.agent import _load_history  # the loader `recommend --patient` uses
    from sepsis_sdk.cohort import Cohort

    cohort = Cohort.read_parquet(cohort_file)
    pid = str(cohort.patient_ids[1])
    ep = cohort.episode(pid)
    step = min(2, len(ep) - 1)
    out = tmp_path / "history.json"
    res = runner.invoke(app, ["data", "export-history", str(cohort_file), "--patient", pid, "--step",
                              str(step), "--out", str(out)], env=WIDE)  # fmt: skip
    assert res.exit_code == 0, res.output
    assert f"patient {pid} at t={step}" in res.output and "sepsis-sdk recommend --patient" in res.output
    data = json.loads(out.read_text())
    assert "state_id" not in data or data["state_id"] is None  # the hidden state stays in the cohort
    got = _load_history(out, None, None)
    want = ep.history(step)
    assert got.patient_id == pid and got.t == step
    assert got.actions == want.actions and got.feature_names == want.feature_names
    assert [o.values for o in got.observations] == [o.values for o in want.observations]


def test_export_history_feeds_the_recommend_command(tmp_path, cohort_file, respx_mock):
    from sepsis_sdk.graphs import Prescription
    from sepsis_sdk.testing import fake_openai_endpoint

    out = tmp_path / "history.json"
    assert runner.invoke(app, ["data", "export-history", str(cohort_file), "-o", str(out)]).exit_code == 0
    pid = json.loads(out.read_text())["patient_id"]
    fake_openai_endpoint(respx_mock, [Prescription(fluid=2, vaso=0, rationale="fluids")])
    res = runner.invoke(app, ["recommend", "--patient", str(out), "--graph", "direct", "--model",
                              "openai/gpt-4o-mini", "--api-base", "http://fake-llm.test/v1", "--api-key",
                              "sk-fake"], env=WIDE)  # fmt: skip
    assert res.exit_code == 0, res.output
    assert f"Recommendation for {pid}" in res.output


def test_export_history_from_a_generated_source(tmp_path):
    out = tmp_path / "h.json"
    res = runner.invoke(
        app, ["data", "export-history", "synthetic", "--episodes", "3", "--step", "0", "-o", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert len(json.loads(out.read_text())["observations"]) == 1
