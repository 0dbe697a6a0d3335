"""Write an :class:`~sepsis_sdk.evaluation.runner.EvaluationReport` as Markdown, CSV, JSON and plots.

Files in ``out_dir``: ``results.md`` (the table people read), ``results.csv`` (one row per policy, numbers
only), ``results.json`` (everything, including per-rule rates and OPE diagnostics), ``plots/*.png``.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sepsis_sdk.evaluation.runner import EvaluationReport, PolicyResult

_DEFS = ("underdosing", "overdosing", "unsafe")


def _num(x: Any) -> float | None:
    return None if x is None else float(x)


def flat_row(r: PolicyResult, estimators: tuple[str, ...]) -> dict[str, Any]:
    """One CSV row of numbers for a policy."""
    row: dict[str, Any] = {
        "policy": r.name,
        "kind": r.kind,
        "markov": r.markov,
        "n_patients": r.n_patients,
        "n_decisions": r.n_decisions,
    }
    tv = r.true_value or {}
    row["true_value"] = _num(tv.get("value"))
    row["true_value_ci_low"] = _num(tv.get("ci_low"))
    row["true_value_ci_high"] = _num(tv.get("ci_high"))
    row["true_value_method"] = tv.get("method")
    est = r.ope.get("estimates", {})
    for e in estimators:
        d = est.get(e, {})
        row[e] = _num(d.get("value"))
        row[f"{e}_ci_low"] = _num(d.get("ci_low"))
        row[f"{e}_ci_high"] = _num(d.get("ci_high"))
    row["ess"] = _num(r.ope.get("weights", {}).get("ess"))
    mb = r.model_based or {}
    row["model_based"] = _num(mb.get("value"))
    row["model_based_ci_low"] = _num(mb.get("ci_low"))
    row["model_based_ci_high"] = _num(mb.get("ci_high"))
    adh = r.safety.get("adherence", {})
    row["adherence"] = _num(adh.get("value"))
    row["adherence_ci_low"] = _num(adh.get("ci_low"))
    row["adherence_ci_high"] = _num(adh.get("ci_high"))
    for d in _DEFS:
        v = r.safety.get("definitions", {}).get(d, {})
        row[d] = _num(v.get("value"))
        row[f"{d}_ci_low"] = _num(v.get("ci_low"))
        row[f"{d}_ci_high"] = _num(v.get("ci_high"))
    for k in ("exact", "fluid", "vaso"):
        v = r.agreement.get(k, {})
        row[f"agreement_{k}"] = _num(v.get("value"))
    row["seconds"] = r.seconds
    return row


def _fmt_value(v: float | None, lo: float | None = None, hi: float | None = None, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    s = f"{v:.{digits}f}"
    if lo is not None and hi is not None:
        s += f" [{lo:.{digits}f}, {hi:.{digits}f}]"
    return s


def _fmt_pct(v: float | None, lo: float | None = None, hi: float | None = None) -> str:
    if v is None:
        return "n/a"
    s = f"{100 * v:.1f}"
    if lo is not None and hi is not None:
        s += f" [{100 * lo:.1f}, {100 * hi:.1f}]"
    return s


def markdown(report: EvaluationReport, plots: dict[str, str] | None = None) -> str:
    """The Markdown report."""
    cfg = report.config
    est = tuple(cfg.ope.estimators)
    rows = [flat_row(r, est) for r in report.results.values()]
    meta = report.meta
    out = io.StringIO()
    w = out.write
    c = meta.get("cohort", {})
    w("# sepsis-sdk evaluation report\n\n")
    w(
        f"Cohort: `{c.get('source')}`, {c.get('patients')} patients, {c.get('steps')} decisions"
        f"{' (synthetic)' if c.get('synthetic') else ''}; split by patient (seed {cfg.split.seed}): "
        f"{meta.get('n_train_patients')} train, {meta.get('n_test_patients')} test. Scores are on the test split.\n\n"
    )
    if meta.get("reference_values"):
        refs = ", ".join(f"{k} {v:.4f}" for k, v in meta["reference_values"].items())
        w(f"Exact reference values on ICU-Sepsis: {refs}.\n\n")
    w("## Results\n\n")
    cols = ["policy", "true value", *[e.upper() for e in est]]
    has_mb = any(r["model_based"] is not None for r in rows)
    if has_mb:
        cols.append("model-based")
    cols += ["adherence %", "underdosing %", "overdosing %", "unsafe %", "agreement %", "patients"]
    w("| " + " | ".join(cols) + " |\n")
    w("|" + "|".join("---" for _ in cols) + "|\n")
    for r in rows:
        tv = _fmt_value(r["true_value"], r["true_value_ci_low"], r["true_value_ci_high"])
        if r["true_value_method"] == "monte_carlo":
            tv += " (MC)"
        cells = [r["policy"], tv]
        cells += [_fmt_value(r[e], r[f"{e}_ci_low"], r[f"{e}_ci_high"]) for e in est]
        if has_mb:
            cells.append(_fmt_value(r["model_based"], r["model_based_ci_low"], r["model_based_ci_high"]))
        cells.append(_fmt_pct(r["adherence"], r["adherence_ci_low"], r["adherence_ci_high"]))
        cells += [_fmt_pct(r[d], r[f"{d}_ci_low"], r[f"{d}_ci_high"]) for d in _DEFS]
        cells += [_fmt_pct(r["agreement_exact"]), str(r["n_patients"])]
        w("| " + " | ".join(cells) + " |\n")
    w(
        "\nIntervals: 95 % percentile bootstrap over patients "
        f"({cfg.ope.n_bootstrap} resamples for OPE, {cfg.safety.n_bootstrap} for rates). True value: exact "
        "(linear solve on the policy's state table) for Markov policies, Monte Carlo in the true MDP "
        f"({cfg.truth.monte_carlo_episodes} episodes, marked MC) for history-dependent ones.\n\n"
    )

    from sepsis_sdk.safety import load_rules

    rules = load_rules(cfg.safety.rules)
    w("## Definitions\n\n")
    for name, d in rules.definitions.items():
        w(f"- **{name}**: {d.meaning} (rules {', '.join(d.rules)}).\n")
    w("\nRules (from `sepsis_sdk/safety/rules.yaml`):\n\n")
    for spec in rules:
        w(f"- **{spec.id}** ({spec.kind}) {spec.name}: {spec.description} Source: {spec.source}.\n")
    w("\n## Violation rate per rule (% of decisions where the rule applies)\n\n")
    ids = rules.ids
    w("| policy | " + " | ".join(ids) + " |\n|" + "|".join("---" for _ in range(len(ids) + 1)) + "|\n")
    notes: set[str] = set()
    for r in report.results.values():
        cells = []
        for rid in ids:
            rr = r.safety.get("rules", {}).get(rid)
            if not rr or rr.get("not_applicable"):
                cells.append("n/a")
                if rr and rr.get("not_applicable"):
                    notes.add(f"{rid} not applicable: {rr['not_applicable']}")
                continue
            rate = rr["rate"]
            cells.append(_fmt_pct(rate.get("value")) + ("*" if rr.get("approximate") else ""))
        w(f"| {r.name} | " + " | ".join(cells) + " |\n")
    if any(
        rr.get("approximate") for r in report.results.values() for rr in r.safety.get("rules", {}).values()
    ):
        w(
            "\n\\* approximate: MAP and lactate are stored as z-scores on ICU-Sepsis and were mapped to clinical "
            "units with published MIMIC-IV cohort statistics.\n"
        )
    for n in sorted(notes):
        w(f"\n- {n}")
    all_notes = sorted(
        {
            f"{r.name}: {n}"
            for r in report.results.values()
            for n in r.notes
            if "not applicable" not in n and "approximate" not in n
        }
    )
    if all_notes:
        w("\n\n## Notes\n\n" + "".join(f"- {n}\n" for n in all_notes))
    if plots:
        w("\n\n## Plots\n\n")
        for title, rel in plots.items():
            w(f"- [{title}]({rel})\n")
    w("\n")
    return out.getvalue()


def write_report(report: EvaluationReport, out_dir: str | Path, *, plots: bool = True) -> dict[str, str]:
    """Write results.md / results.csv / results.json (and plots) into ``out_dir``; returns the paths."""
    from sepsis_sdk.evaluation.runner import atomic_write_text, dumps

    out = Path(out_dir)
    est = tuple(report.config.ope.estimators)
    rows = [flat_row(r, est) for r in report.results.values()]
    files: dict[str, str] = {}
    buf = io.StringIO()
    if rows:
        wr = csv.DictWriter(buf, fieldnames=list(rows[0]))
        wr.writeheader()
        for r in rows:
            wr.writerow({k: ("" if v is None else v) for k, v in r.items()})
    atomic_write_text(out / "results.csv", buf.getvalue())
    files["csv"] = str(out / "results.csv")
    payload = {
        "config": report.config.model_dump(),
        "meta": report.meta,
        "clinician_action_distribution": report.clinician_distribution,
        "results": {k: v.to_dict() for k, v in report.results.items()},
    }
    atomic_write_text(out / "results.json", dumps(payload))
    files["json"] = str(out / "results.json")
    plot_files: dict[str, str] = {}
    if plots and report.results:
        try:
            from sepsis_sdk.evaluation.plots import write_plots

            plot_files = write_plots(report, out / "plots")
        except ImportError:  # matplotlib missing: the tables still get written
            plot_files = {}
    rel = {k: str(Path(v).relative_to(out)) for k, v in plot_files.items()}
    atomic_write_text(out / "results.md", markdown(report, rel))
    files["markdown"] = str(out / "results.md")
    files.update({f"plot:{k}": v for k, v in plot_files.items()})
    report.files = files
    return files


__all__ = ["flat_row", "markdown", "write_report"]


# ---------------------------------------------------------------------------------------------- demo
def run_demo_benchmark(out_dir: str | Path, *, quick: bool = False, progress: bool = True) -> Any:
    """The embedded benchmark behind ``make demo``: ICU-Sepsis, world model, baselines, planner, PSR agent.

    Steps (all local, no keys, no network):

    1. sample ICU-Sepsis episodes under the clinicians' policy (3,000; 1,000 with ``quick``) and split
       them by patient;
    2. train the torch world model on the training split (small ensemble, few epochs);
    3. score clinician, random, AI-Clinician tabular, d3rlpy BC/DQN/DoubleDQN/BCQ/CQL, the optimal
       policy (reference), the world-model planner (on a sample of test patients; true value by Monte
       Carlo in the true MDP), and the PSR agent with the default local model (``local/smollm2``) on a few
       patients — each part is skipped with a note when its dependencies are missing;
    4. write the report (``results.md``/``.csv``/``.json`` and plots) into ``out_dir/report``.

    Reruns resume: finished policies are not recomputed.

    Returns:
        The :class:`~sepsis_sdk.evaluation.runner.EvaluationReport`.
    """
    import time

    from rich.console import Console

    from sepsis_sdk.evaluation.runner import (
        CohortConfig,
        EvaluationConfig,
        ModelBasedConfig,
        OPEConfig,
        PolicyConfig,
        SafetyConfig,
        TruthConfig,
        load_cohort,
        run_evaluation,
    )

    console = Console()
    out = Path(out_dir)
    n_ep = 1000 if quick else 3000
    steps = 300 if quick else 1500
    cfg = EvaluationConfig(
        out_dir=str(out / "report"),
        seed=0,
        cohort=CohortConfig(n_episodes=n_ep, seed=0),
        policies=(
            PolicyConfig(name="clinician"),
            PolicyConfig(name="random"),
            PolicyConfig(name="tabular", options={"n_clusters": 100 if quick else 300}),
            PolicyConfig(name="bc"),
            PolicyConfig(name="dqn"),
            PolicyConfig(name="double_dqn"),
            PolicyConfig(name="bcq"),
            PolicyConfig(name="cql"),
            PolicyConfig(name="optimal", kind="builtin", model_based=False),
        ),
        ope=OPEConfig(estimators=("dr", "wis", "wpdis"), n_bootstrap=200 if quick else 500),
        safety=SafetyConfig(n_bootstrap=200 if quick else 500),
        truth=TruthConfig(monte_carlo_episodes=100 if quick else 300),
        model_based=ModelBasedConfig(enabled=True, horizon=4 if quick else 6, n_samples=4 if quick else 8),
        executor="serial",
        offline_rl_steps=steps,
    )
    t0 = time.time()
    cohort = load_cohort(cfg.cohort)
    split = cohort.split(cfg.split.train, cfg.split.validation, cfg.split.test, seed=cfg.split.seed)
    extra: dict[str, Any] = {}
    extra_cfg: dict[str, PolicyConfig] = {}
    world_model = None
    try:
        from sepsis_sdk.world_model import train_world_model

        console.print(f"training the world model on {split.train.n_patients} patients ...")
        world_model = train_world_model(
            split.train, "torch", n_members=3, epochs=4 if quick else 8, hidden=128, window=2, threads=2
        )
        console.print(f"  done in {time.time() - t0:.0f} s")
    except Exception as exc:  # the report still runs without a world model
        console.print(f"[yellow]world model unavailable ({type(exc).__name__}: {exc}); skipping it[/yellow]")
    if world_model is not None:
        try:
            from sepsis_sdk.policies.planner import WorldModelPlannerPolicy

            extra["planner"] = WorldModelPlannerPolicy(world_model, horizon=3 if quick else 4, n_samples=4)
            # Exact truth: the planner is scored as a Markov policy on the current state (one-step
            # history); OPE and safety use the recorded histories (the world model's full window).
            extra_cfg["planner"] = PolicyConfig(
                name="planner", max_patients=40 if quick else 100, markov=True
            )
        except Exception as exc:
            console.print(f"[yellow]planner unavailable ({type(exc).__name__}: {exc})[/yellow]")
        try:
            from sepsis_sdk.graphs import build_psr_graph
            from sepsis_sdk.policies.graph_policy import GraphPolicy

            wm = world_model
            # Small search so a 135M CPU model finishes in the budget: 2 candidates, 1 round.
            extra["psr-smollm2"] = GraphPolicy(
                lambda: build_psr_graph(
                    "local/smollm2", world_model=wm, n_candidates=2, max_rounds=1, horizon=3, n_samples=4
                ),
                name="psr-smollm2",
            )
            extra_cfg["psr-smollm2"] = PolicyConfig(
                name="psr-smollm2",
                max_patients=2 if quick else 3,
                patient_selection="shortest",
                truth_episodes=0,
                model_based=False,
            )
        except Exception as exc:
            console.print(f"[yellow]PSR agent unavailable ({type(exc).__name__}: {exc})[/yellow]")
    report = run_evaluation(
        cfg,
        policies=extra,
        policy_configs=extra_cfg,
        cohort=cohort,
        world_model=world_model,
        progress=progress,
    )
    report.meta["demo_seconds"] = round(time.time() - t0, 1)
    console.print(f"report written to {out / 'report'} in {time.time() - t0:.0f} s")
    return report
