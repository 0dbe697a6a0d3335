"""Reports from result files: markdown tables, CSV files and bar charts (matplotlib, Agg backend)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sepsis_sdk._lazy import require
from sepsis_sdk.microbench._data import CATEGORIES, DIMENSION_TITLES, DIMENSIONS
from sepsis_sdk.microbench._results import VerdictRecord
from sepsis_sdk.microbench._scoring import Agreement, Summary, agreement, summarize


@dataclass
class ReportFiles:
    """Files a report wrote."""

    markdown: Path
    csv: list[Path] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)


def _f(x: float | None, nd: int = 1) -> str:
    return "n/a" if x is None else f"{x:.{nd}f}"


_MODE_TEXT = {
    "project": "Scoring: **project** (every criterion graded and scored, `d11..d55` rubrics included; a"
    " dimension with Σ positive w = 0 is left out of its mean).",
    "reference": "Scoring: **reference** (the MicroVerse scripts' rules: scores read by criterion number, so"
    " the `d11..d55` rubrics score 0/0; a dimension with Σ positive w = 0 counts as 0; a task with an"
    " empty or missing score list is dropped). Comparable with the paper's tables.",
}


def _flag_lines(summaries: Sequence[Summary]) -> list[str]:
    lines: list[str] = []
    for s in summaries:
        if s.blind_tasks:
            lines.append(
                f"- {s.model} / {s.judge}: {s.blind_tasks} valid tasks rest on verdicts made against an"
                " empty checklist (the reference evaluator's `d11..d55` rubrics; `blind` in tasks.csv)."
            )
        if s.repeated_frames:
            lines.append(
                f"- {s.model} / {s.judge}: {s.repeated_frames} verdicts on videos shorter than the frames"
                " shown (frames repeated)."
            )
    return ["", *lines] if lines else []


def render_markdown(summaries: Sequence[Summary], agreements: Sequence[Agreement] = ()) -> str:
    """The markdown report: coverage, overall + category, overall + dimension, per-model detail, agreement.

    It names the scoring mode that produced the numbers.
    """
    modes = sorted({s.scoring for s in summaries}) or ["project"]
    lines = ["# MicroWorldBench report", ""]
    lines += [
        "Scores are in [0, 100]: per task and dimension S = Σ score·w·sign, S_norm = max(0, S / Σ positive w)·100;"
        " the task score pools the three dimensions. Only tasks with all three dimensions judged count;"
        " coverage = those tasks / tasks in the benchmark.",
        "",
        *[_MODE_TEXT.get(m, f"Scoring: {m}") for m in modes],
        "",
        "## Coverage",
        "",
        "| Model | Judge | Valid tasks | Tasks | Coverage | Unscored criteria | Errors (video/judge/verdict) |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for s in summaries:
        e = s.errors
        lines.append(
            f"| {s.model} | {s.judge} | {s.valid_tasks} | {s.n_tasks} | {100 * s.coverage:.1f}% | "
            f"{s.unscored_criteria} | {e.get('video', 0)}/{e.get('judge', 0)}/{e.get('verdict', 0)} |"
        )
    lines += ["", "## Overall and per category", ""]
    lines.append("| Model | Judge | Overall | " + " | ".join(f"{c} (n)" for c in CATEGORIES) + " |")
    lines.append("|---|---|---:|" + "---:|" * len(CATEGORIES))
    for s in summaries:
        cats = " | ".join(f"{_f(s.per_category.get(c))} ({s.category_counts.get(c, 0)})" for c in CATEGORIES)
        lines.append(f"| {s.model} | {s.judge} | {_f(s.overall)} | {cats} |")
    lines += ["", "## Overall and per dimension", ""]
    lines.append("| Model | Judge | Overall | " + " | ".join(DIMENSION_TITLES[d] for d in DIMENSIONS) + " |")
    lines.append("|---|---|---:|" + "---:|" * len(DIMENSIONS))
    for s in summaries:
        dims = " | ".join(_f(s.per_dimension.get(d)) for d in DIMENSIONS)
        lines.append(f"| {s.model} | {s.judge} | {_f(s.overall)} | {dims} |")
    if any(s.undefined for s in summaries):
        how = (
            "counted as 0" if modes == ["reference"] else "normalised score undefined, left out of the means"
        )
        lines += ["", f"Dimensions with Σ positive w = 0 ({how}):", ""]
        for s in summaries:
            if s.undefined:
                lines.append(f"- {s.model} / {s.judge}: {s.undefined}")
    lines += _flag_lines(summaries)
    lines += [
        "",
        "## Judge usage",
        "",
        "| Model | Judge | Calls | Prompt tokens | Completion tokens | Cost (USD) |",
    ]
    lines.append("|---|---|---:|---:|---:|---:|")
    for s in summaries:
        u = s.usage
        lines.append(
            f"| {s.model} | {s.judge} | {int(u.get('calls', 0))} | {int(u.get('prompt_tokens', 0))} | "
            f"{int(u.get('completion_tokens', 0))} | {u.get('cost_usd', 0.0):.4f} |"
        )
    if agreements:
        lines += [
            "",
            "## Agreement between judges",
            "",
            "Over criteria both judges scored on the same videos.",
            "",
            "| Judge A | Judge B | Dimension | Criteria | Agreement | Cohen's kappa |",
            "|---|---|---|---:|---:|---:|",
        ]
        for a in agreements:
            lines.append(
                f"| {a.judge_a} | {a.judge_b} | {a.dimension} | {a.n} | {_f(a.percent)}% | {_f(a.kappa, 3)} |"
            )
    return "\n".join(lines) + "\n"


def _write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        if rows:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return path


def _plot(path: Path, title: str, groups: Sequence[str], series: dict[str, list[float | None]]) -> Path:
    matplotlib = require("matplotlib", "plots", "report plots")
    matplotlib.use("Agg", force=True)
    plt = require("matplotlib.pyplot", "plots", "report plots")
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(groups) * max(1, len(series)) ** 0.5), 3.6))
    n = max(1, len(series))
    width = 0.8 / n
    for k, (label, values) in enumerate(series.items()):
        xs = [g + (k - (n - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, [0.0 if v is None else v for v in values], width=width, label=label)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups)
    ax.set_ylim(0, 100)
    ax.set_ylabel("score (0-100)")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(
    records: Sequence[VerdictRecord],
    out_dir: str | Path,
    *,
    n_tasks: int = 459,
    plots: bool = True,
    scoring: str = "project",
    benchmark: object = None,
    empty_checklist: str = "zero",
) -> ReportFiles:
    """Write ``report.md``, ``summary.csv``, ``tasks.csv``, ``agreement.csv`` and two bar charts.

    Args:
        records: verdict records (deduplicated; see :func:`read_many`).
        out_dir: output folder (created).
        n_tasks: tasks in the benchmark (coverage denominator).
        plots: draw ``by_dimension.png`` and ``by_category.png``.
        scoring: ``"project"`` (default) or ``"reference"`` (see :func:`summarize`); the report names it.
        benchmark: passed to :func:`summarize` (reference mode on old result files).
        empty_checklist: passed to :func:`summarize` (reference mode, ``d11..d55`` rubrics graded here).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summaries = summarize(
        records,
        n_tasks=n_tasks,
        scoring=scoring,  # type: ignore[arg-type]
        benchmark=benchmark,
        empty_checklist=empty_checklist,  # type: ignore[arg-type]
    )
    agree = agreement(records)
    md = out / "report.md"
    md.write_text(render_markdown(summaries, agree), encoding="utf-8")
    files = ReportFiles(markdown=md)
    files.csv.append(_write_csv(out / "summary.csv", [s.as_row() for s in summaries]))
    task_rows: list[dict[str, object]] = []
    for s in summaries:
        for t in s.task_scores:
            row: dict[str, object] = {
                "model": s.model,
                "judge": s.judge,
                "task": t.task,
                "category": t.category,
                "scoring": s.scoring,
                "blind": t.blind,
            }
            row["total"] = t.total
            for d in DIMENSIONS:
                row[d] = t.dimensions[d].norm
                row[f"{d}_raw"] = t.dimensions[d].raw
            task_rows.append(row)
    files.csv.append(_write_csv(out / "tasks.csv", task_rows))
    files.csv.append(
        _write_csv(
            out / "agreement.csv",
            [
                {"judge_a": a.judge_a, "judge_b": a.judge_b, "dimension": a.dimension, "n": a.n}
                | {"percent": a.percent, "kappa": a.kappa}
                for a in agree
            ],
        )
    )
    if plots and summaries:
        label = {(s.model, s.judge): f"{s.model} / {s.judge}" for s in summaries}
        files.plots.append(
            _plot(
                out / "by_dimension.png",
                "MicroWorldBench score per dimension",
                ["Overall", *[DIMENSION_TITLES[d] for d in DIMENSIONS]],
                {
                    label[(s.model, s.judge)]: [s.overall, *[s.per_dimension.get(d) for d in DIMENSIONS]]
                    for s in summaries
                },
            )
        )
        files.plots.append(
            _plot(
                out / "by_category.png",
                "MicroWorldBench score per category",
                ["Overall", *CATEGORIES],
                {
                    label[(s.model, s.judge)]: [s.overall, *[s.per_category.get(c) for c in CATEGORIES]]
                    for s in summaries
                },
            )
        )
    return files
