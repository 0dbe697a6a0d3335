"""``sepsis-sdk data ...``: make, convert, validate cohorts and export one patient's history."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from sepsis_sdk.cli._common import console, ensure_writable, esc, friendly_errors, progress

if TYPE_CHECKING:
    from sepsis_sdk.cohort import Cohort
    from sepsis_sdk.types import PatientHistory

app = typer.Typer(help="Make, load and validate cohorts; export a patient history.", no_args_is_help=True)


def _print_summary(summary: dict) -> None:
    from rich.table import Table

    table = Table(show_header=False)
    for k, v in summary.items():
        table.add_row(esc(k), f"{v:.4g}" if isinstance(v, float) else esc(v))
    console.print(table)


@app.command("icu-sepsis")
def icu_sepsis(
    out: Path = typer.Option(..., "--out", "-o", help="Parquet file to write."),
    episodes: int = typer.Option(20_000, help="Number of episodes (patients) to sample."),
    seed: int = typer.Option(0, help="Random seed."),
    policy: str = typer.Option(
        "clinician", help="Behaviour policy: clinician, clinician_raw, random, random_admissible, optimal."
    ),
    epsilon: float = typer.Option(0.0, help="Mix the behaviour policy with uniform over admissible actions."),
) -> None:
    """Sample an offline cohort from the ICU-Sepsis MDP (the embedded default data)."""
    from sepsis_sdk.sources import load

    with friendly_errors():
        ensure_writable(out)
    with friendly_errors(), progress() as bar:
        task = bar.add_task("sampling episodes", total=episodes)
        cohort = load(
            "icu-sepsis",
            episodes=episodes,
            policy=policy,
            epsilon=epsilon,
            seed=seed,
            progress=lambda n: bar.update(task, completed=n),
        )
        bar.update(task, completed=episodes)
        cohort.to_parquet(out)
    _print_summary(cohort.summary())
    console.print(f"wrote {esc(out)}")


@app.command("synth")
def synth(
    out: Path = typer.Option(
        ..., "--out", "-o", help="File to write: .parquet (a cohort) or .csv (MIMIC-IV episode format)."
    ),
    patients: int = typer.Option(1000, help="Number of synthetic patients."),
    seed: int = typer.Option(0, help="Random seed."),
    policy: str = typer.Option(
        "clinician-like", help="Behaviour policy of the simulated clinicians (see synthesize_cohort)."
    ),
) -> None:
    """Generate a SYNTHETIC MIMIC-IV-like cohort (SepsisAgent format); no credentials needed."""
    from sepsis_sdk.sources import load
    from sepsis_sdk.sources.mimic import write_mimic_iv

    with friendly_errors():
        ensure_writable(out)
    with friendly_errors(), progress() as bar:
        task = bar.add_task("simulating synthetic patients", total=1)
        cohort = load("synthetic", episodes=patients, seed=seed, policy=policy)
        bar.update(task, completed=1)
        if out.suffix.lower() == ".csv":
            write_mimic_iv(cohort, out)
        else:
            cohort.to_parquet(out)
    _print_summary(cohort.summary())
    console.print(f"wrote {esc(out)} [yellow](synthetic data)[/yellow]")


@app.command("validate")
def validate(
    file: Path = typer.Argument(
        ..., metavar="FILE", help="A cohort Parquet, an AI-Clinician MIMICtable or a MIMIC-IV episode file."
    ),
) -> None:
    """Validate a cohort file and report its format, size and problems (exit code 2 if invalid)."""
    from sepsis_sdk.cohort import Cohort

    with friendly_errors():
        if Cohort.is_cohort_file(file):
            cohort = Cohort.read_parquet(file)  # validates; a problem exits with code 2
            _print_summary({"format": "sepsis-sdk cohort", **cohort.summary()})
            console.print("[green]valid[/green]")
            return
        from sepsis_sdk.sources.mimic import validate_file

        report = validate_file(file)
        console.print(report)
    if not report.ok:
        raise typer.Exit(code=2)


def export_history(cohort: Cohort, patient: str | None = None, step: int | None = None) -> PatientHistory:
    """The :class:`~sepsis_sdk.PatientHistory` that ``recommend --patient`` reads, from a cohort.

    Args:
        cohort: a :class:`~sepsis_sdk.Cohort`.
        patient: the patient id (default: the first patient).
        step: the decision step ``t`` (default: the patient's last); observations up to it are kept.

    Raises:
        UserError: no such patient, or a step outside the patient's episode.
    """
    from sepsis_sdk.errors import UserError

    pid = str(cohort.patient_ids[0]) if patient is None else str(patient)
    ep = cohort.episode(pid)
    t = len(ep) - 1 if step is None else step
    if not 0 <= t < len(ep):
        raise UserError(f"patient {pid!r} has decision steps 0-{len(ep) - 1}, not {t}")
    from sepsis_sdk.types import PatientHistory

    h = ep.history(t)
    # Only what a clinician sees is exported: the hidden ICU-Sepsis state (ground truth) stays behind.
    return PatientHistory(
        patient_id=h.patient_id,
        observations=h.observations,
        actions=h.actions,
        static=h.static,
        feature_names=h.feature_names,
    )


@app.command("export-history")
def export_history_cmd(
    cohort: str = typer.Argument(
        ..., metavar="COHORT", help="A cohort file (Parquet, MIMICtable, MIMIC-IV) or a source name."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="The history JSON to write."),
    patient: str | None = typer.Option(None, "--patient", help="Patient id (default: the first patient)."),
    step: int | None = typer.Option(
        None, "--step", min=0, help="Decision step t to stop at (default: the patient's last)."
    ),
    episodes: int = typer.Option(100, help="Patients to generate when COHORT is a source name."),
    seed: int = typer.Option(0, help="Seed when COHORT is a source name."),
) -> None:
    """Write one patient's history up to step t as the JSON that `sepsis-sdk recommend --patient` reads."""
    from sepsis_sdk.sources import load

    with friendly_errors():
        ensure_writable(out)
        data = load(cohort, episodes=episodes, seed=seed)
        history = export_history(data, patient, step)
        text = json.dumps(history.model_dump(mode="json"), indent=2)
        out.write_text(text + "\n", encoding="utf-8")
    h = history
    console.print(
        f"wrote {esc(out)}: patient {esc(h.patient_id)} at t={h.t} ({len(h.observations)} observations, "
        f"{len(h.feature_names)} features)\n"
        f"next: sepsis-sdk recommend --patient {esc(out)}"
    )
