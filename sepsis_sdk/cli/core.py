"""Top-level commands: ``sepsis-sdk truth`` and ``sepsis-sdk demo``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from sepsis_sdk.cli._common import console, ensure_writable, esc, friendly_errors

app = typer.Typer()


def truth_table(mc_episodes: int = 0, seed: int = 0) -> list[dict]:
    """Exact values (and optional Monte Carlo checks) of the built-in ICU-Sepsis policies."""
    from sepsis_sdk.truth import BUILTIN_POLICIES, ICUSepsisTruth, true_value

    rows = []
    for name, desc in BUILTIN_POLICIES.items():
        row = {"policy": name, "true_value": true_value(name), "description": desc}
        if mc_episodes:
            mc = ICUSepsisTruth().simulate(name, episodes=mc_episodes, seed=seed)
            row.update(mc_value=mc.mean, mc_ci_low=mc.ci_low, mc_ci_high=mc.ci_high)
        rows.append(row)
    return rows


@app.command("truth")
def truth(
    mc: int = typer.Option(0, help="Also estimate each value by Monte Carlo with this many episodes."),
    seed: int = typer.Option(0, help="Seed of the Monte Carlo check."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the table as JSON."),
) -> None:
    """Print the exact ICU-Sepsis value (= survival probability) of the built-in policies."""
    from rich.table import Table

    with friendly_errors():
        if json_out:
            ensure_writable(json_out)  # before a long Monte Carlo run
        rows = truth_table(mc, seed)
    table = Table(title="ICU-Sepsis: exact policy values (linear solve; gamma = 1)")
    table.add_column("policy")
    table.add_column("true value", justify="right")
    if mc:
        table.add_column(esc(f"Monte Carlo ({mc} ep.) [95% CI]"), justify="right")
    table.add_column("description")
    for r in rows:
        cells = [esc(r["policy"]), f"{r['true_value']:.4f}"]
        if mc:
            cells.append(esc(f"{r['mc_value']:.4f} [{r['mc_ci_low']:.4f}, {r['mc_ci_high']:.4f}]"))
        cells.append(esc(r["description"]))
        table.add_row(*cells)
    console.print(table)
    if json_out:
        json_out.write_text(json.dumps(rows, indent=2))


@app.command("demo")
def demo(
    out: Path = typer.Option(Path("demo_output"), help="Folder for the demo's report."),
    quick: bool = typer.Option(False, help="A smaller, faster run."),
) -> None:
    """Run the embedded benchmark on ICU-Sepsis (no keys, no network): data, ground truth, baselines, agent."""
    with friendly_errors():
        ensure_writable(out, directory=True)
        run_demo(out, quick=quick)


def run_demo(out: Path, *, quick: bool = False) -> None:
    from sepsis_sdk.sources.icu_sepsis import sample_cohort

    out.mkdir(parents=True, exist_ok=True)
    n = 1000 if quick else 3000  # the same size (and seed) as the benchmark below samples
    console.rule("[bold]1. An offline cohort from the ICU-Sepsis MDP")
    cohort = sample_cohort(n, seed=0)
    cohort.to_parquet(out / "icu_sepsis_cohort.parquet")
    console.print(esc(cohort.summary()))
    console.rule("[bold]2. Exact ground truth of the built-in policies")
    rows = truth_table()
    for r in rows:
        console.print(esc(f"  {r['policy']:<18} {r['true_value']:.4f}  {r['description']}"))
    (out / "truth.json").write_text(json.dumps(rows, indent=2))
    from sepsis_sdk.demo import run_demo_benchmark

    console.rule("[bold]3. Baselines, world model and agent on ICU-Sepsis")
    run_demo_benchmark(out, quick=quick)
