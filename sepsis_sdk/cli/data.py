"""``sepsis-sdk data ...``: make, convert and validate cohorts."""

from __future__ import annotations

from pathlib import Path

import typer

from sepsis_sdk.cli._common import console, friendly_errors, progress

app = typer.Typer(help="Make, load and validate cohorts.", no_args_is_help=True)


def _print_summary(summary: dict) -> None:
    from rich.table import Table

    table = Table(show_header=False)
    for k, v in summary.items():
        table.add_row(str(k), f"{v:.4g}" if isinstance(v, float) else str(v))
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
    console.print(f"wrote {out}")


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

    with friendly_errors(), progress() as bar:
        task = bar.add_task("simulating synthetic patients", total=1)
        cohort = load("synthetic", episodes=patients, seed=seed, policy=policy)
        bar.update(task, completed=1)
        if out.suffix.lower() == ".csv":
            write_mimic_iv(cohort, out)
        else:
            cohort.to_parquet(out)
    _print_summary(cohort.summary())
    console.print(f"wrote {out} [yellow](synthetic data)[/yellow]")


@app.command("validate")
def validate(
    file: Path = typer.Argument(
        ..., help="A cohort Parquet, an AI-Clinician MIMICtable or a MIMIC-IV episode file."
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
