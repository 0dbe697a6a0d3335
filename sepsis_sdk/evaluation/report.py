"""Write an :class:`~sepsis_sdk.evaluation.results.EvaluationReport` as Markdown, CSV, JSON and plots.

Files in ``out_dir``: ``results.md`` (the table people read), ``results.csv`` (one row per policy, numbers
only), ``results.json`` (everything, including per-rule rates and OPE diagnostics), ``plots/*.png``.
Everything here reads the written form of the results (``to_dict()``), the same for a fresh and a
resumed run.

What the report refuses to pass off as a result:

- **smoke tests**: rows scored on fewer than :data:`~sepsis_sdk.evaluation.results.SMOKE_TEST_PATIENTS`
  patients go to their own table, are not ranked and are left out of the plots;
- **impossible estimates**: an OPE value outside the range of possible values is printed as
  ``invalid (x)``, and an importance-weighted one whose weights have lost the behaviour's support carries
  a dagger and a footnote with its ESS and share of zero weights;
- the results table is ranked by **true value** (exact where known; Monte Carlo marked MC) when the cohort
  has a ground truth, never by an estimate.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sepsis_sdk.evaluation.results import SMOKE_TEST_PATIENTS, is_smoke_test
from sepsis_sdk.evaluation.storage import atomic_write_text, dumps

if TYPE_CHECKING:
    from sepsis_sdk.evaluation.results import EvaluationReport, PolicyResult

_DEFS = ("underdosing", "overdosing", "unsafe")


def _num(x: Any) -> float | None:
    return None if x is None else float(x)


def flat_row(r: PolicyResult | dict[str, Any], estimators: tuple[str, ...]) -> dict[str, Any]:
    """One CSV row of numbers for a policy (a :class:`PolicyResult` or its ``to_dict()``)."""
    d = r if isinstance(r, dict) else r.to_dict()
    row: dict[str, Any] = {
        "policy": d["name"],
        "kind": d["kind"],
        "markov": d["markov"],
        "n_patients": d["n_patients"],
        "n_decisions": d["n_decisions"],
    }
    row.update(_truth_cells(d.get("true_value")))
    row.update(_ope_cells(d.get("ope"), estimators))
    mb = d.get("model_based") or {}
    row["model_based"] = _num(mb.get("value"))
    row["model_based_ci_low"] = _num(mb.get("ci_low"))
    row["model_based_ci_high"] = _num(mb.get("ci_high"))
    row.update(_safety_cells(d.get("safety")))
    agreement = d.get("agreement") or {}
    for k in ("exact", "fluid", "vaso"):
        row[f"agreement_{k}"] = _num(agreement.get(k, {}).get("value"))
    row.update(_agent_cells(d.get("agent")))
    row["seconds"] = d["seconds"]
    row["smoke_test"] = is_smoke_test(d)
    for e in estimators:
        row[f"{e}_flags"] = ",".join(
            ((d.get("ope") or {}).get("estimates", {}).get(e) or {}).get("flags") or ()
        )
    return row


AGENT_SOURCES = ("model", "guard", "fallback")
"""Where an agent's final action came from (``AgentPolicy.shares()``); one CSV column each."""


def _agent_cells(agent: dict[str, Any] | None) -> dict[str, Any]:
    """``agent_<source>_share`` columns: blank (None) for a row that is not an agent, never a guess."""
    shares = (agent or {}).get("shares") or {}
    cells: dict[str, Any] = {
        f"agent_{s}_share": _num(shares.get(s)) if agent else None for s in AGENT_SOURCES
    }
    cells["agent_decisions"] = (agent or {}).get("decisions")
    return cells


def _interval(prefix: str, v: dict[str, Any]) -> dict[str, Any]:
    return {prefix: _num(v.get("value")), f"{prefix}_ci_low": _num(v.get("ci_low")),
            f"{prefix}_ci_high": _num(v.get("ci_high"))}  # fmt: skip


def _truth_cells(tv: dict[str, Any] | None) -> dict[str, Any]:
    tv = tv or {}
    return {**_interval("true_value", tv), "true_value_method": tv.get("method")}


def _ope_cells(ope: dict[str, Any] | None, estimators: tuple[str, ...]) -> dict[str, Any]:
    ope = ope or {}
    est = ope.get("estimates", {})
    row: dict[str, Any] = {}
    for e in estimators:
        row.update(_interval(e, est.get(e, {})))
    row["ess"] = _num(ope.get("weights", {}).get("ess"))
    return row


def _safety_cells(safety: dict[str, Any] | None) -> dict[str, Any]:
    safety = safety or {}
    row = _interval("adherence", safety.get("adherence", {}))
    for d in _DEFS:
        row.update(_interval(d, safety.get("definitions", {}).get(d, {})))
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
    dicts = [r.to_dict() for r in report.results.values()]
    out = io.StringIO()
    _write_header(out.write, report)
    _write_results(out.write, report, dicts)
    _write_rules(out.write, report, dicts)
    if plots:
        out.write("\n\n## Plots\n\n")
        for title, rel in plots.items():
            out.write(f"- [{title}]({rel})\n")
    out.write("\n")
    return out.getvalue()


def _write_header(w: Any, report: EvaluationReport) -> None:
    cfg, meta = report.config, report.meta
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
    psr = meta.get("embedded_psr_agent") or {}
    if psr.get("value") is not None:
        shares = psr.get("visit_shares") or {}
        w(
            f"Embedded PSR agent `{psr.get('model')}` (propose-simulate-refine around the neighbour world model; "
            f"exact true value from its shipped sweep record, {psr.get('check')}): **{psr['value']:.4f}**, "
            f"{100 * psr['gap_closed']:.1f}% of the clinician-to-optimal gap; guideline adherence "
            f"{_pct(psr.get('adherence'))}, unsafe {_pct(psr.get('unsafe_rate'))}; final actions from the model "
            f"{_pct(shares.get('model'))}, the guard {_pct(shares.get('guard'))}, the fallback "
            f"{_pct(shares.get('fallback'))} (visit-weighted).\n\n"
        )


def _pct(v: Any) -> str:
    return "n/a" if v is None else f"{100 * float(v):.1f}%"


def ranked(dicts: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(results, smoke tests)``: the rows scored on enough patients, ranked by true value (rows without
    one keep their order after the ranked ones), and the smoke tests in run order."""
    full = [d for d in dicts if not is_smoke_test(d)]
    smoke = [d for d in dicts if is_smoke_test(d)]

    def key(d: dict[str, Any]) -> float:
        v = (d.get("true_value") or {}).get("value")
        return float("inf") if v is None else -float(v)

    return sorted(full, key=key), smoke  # sorted() is stable: unranked rows keep the run order


def _ope_cell(r: dict[str, Any], e: str, marks: dict[str, str]) -> str:
    flags = set(filter(None, str(r.get(f"{e}_flags") or "").split(",")))
    if "undefined" in flags or r[e] is None or not np.isfinite(r[e]):
        marks["undefined"] = "undefined"
        return "undefined"
    if "out_of_range" in flags:
        marks["invalid"] = "invalid"
        return f"invalid ({r[e]:.3f})"
    cell = _fmt_value(r[e], r[f"{e}_ci_low"], r[f"{e}_ci_high"])
    if "low_support" in flags:
        marks["support"] = "support"
        cell += " †"
    if "extrapolated" in flags:
        marks["extrapolated"] = "extrapolated"
        cell += " ‡"
    if "at_bound" in flags:
        marks["bound"] = "bound"
        cell += " (clipped)"
    return cell


def _write_table(w: Any, report: EvaluationReport, rows: list[dict[str, Any]], marks: dict[str, str]) -> None:
    est = tuple(report.config.ope.estimators)
    refs = report.meta.get("reference_values") or {}
    clin, opt = refs.get("clinician (stored policy)"), refs.get("optimal")
    gap = clin is not None and opt is not None and opt > clin
    cols = ["policy", "true value", *(["gap closed %"] if gap else []), *[e.upper() for e in est]]
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
        if gap:  # share of the clinician -> optimal gap closed (negative: worse than the clinicians)
            cells.append(
                "n/a" if r["true_value"] is None else f"{100 * (r['true_value'] - clin) / (opt - clin):.0f}"
            )
        cells += [_ope_cell(r, e, marks) for e in est]
        if has_mb:
            cells.append(_fmt_value(r["model_based"], r["model_based_ci_low"], r["model_based_ci_high"]))
        cells.append(_fmt_pct(r["adherence"], r["adherence_ci_low"], r["adherence_ci_high"]))
        cells += [_fmt_pct(r[d], r[f"{d}_ci_low"], r[f"{d}_ci_high"]) for d in _DEFS]
        cells += [_fmt_pct(r["agreement_exact"]), str(r["n_patients"])]
        w("| " + " | ".join(cells) + " |\n")


def _write_results(w: Any, report: EvaluationReport, dicts: list[dict[str, Any]]) -> None:
    cfg = report.config
    est = tuple(cfg.ope.estimators)
    full, smoke = ranked(dicts)
    refs = report.meta.get("reference_values") or {}
    clin, opt = refs.get("clinician (stored policy)"), refs.get("optimal")
    gap = clin is not None and opt is not None and opt > clin
    marks: dict[str, str] = {}
    w("## Results\n\n")
    _write_table(w, report, [flat_row(d, est) for d in full], marks)
    has_truth = any((d.get("true_value") or {}).get("value") is not None for d in full)
    w(
        "\nRanked by true value (exact where the policy is Markov, else Monte Carlo marked MC); "
        "rows without one follow, unranked. "
        if has_truth
        else "\nNot ranked: no ground truth is known for this cohort, and an estimate is no ranking. "
    )
    w(
        "Intervals: 95 % percentile bootstrap over patients "
        f"({cfg.ope.n_bootstrap} resamples for OPE, {cfg.safety.n_bootstrap} for rates)"
        + (
            f"; DR/FQE intervals refit the Q-model on {getattr(cfg.ope, 'q_refits', 0)} resamples (basic interval)"
            if getattr(cfg.ope, "q_refits", 0)
            else "; DR/FQE intervals hold the Q-model fixed and understate its uncertainty"
        )
        + ". True value: exact "
        "(linear solve on the policy's state table) for Markov policies, Monte Carlo in the true MDP "
        f"({cfg.truth.monte_carlo_episodes} episodes, marked MC) for history-dependent ones."
        + (
            " Gap closed: (true value - clinicians) / (optimal - clinicians), exact reference values."
            if gap
            else ""
        )
        + "\n\n"
    )
    _write_ope_notes(w, report, full + smoke, marks)
    _write_agents(w, full + smoke)
    if smoke:
        w(
            f"## Smoke tests (fewer than {SMOKE_TEST_PATIENTS} patients)\n\n"
            "These rows show that the policy runs end to end, not what it is worth: on so few patients "
            "an estimate of 1.000 [1.000, 1.000] or 100 % adherence means nothing. They are not ranked "
            "and not plotted.\n\n"
        )
        _write_table(w, report, [flat_row(d, est) for d in smoke], marks)
        w("\n")


def _write_ope_notes(
    w: Any, report: EvaluationReport, dicts: list[dict[str, Any]], marks: dict[str, str]
) -> None:
    """Footnotes of the flagged OPE cells: the range, and each low-support policy's weights."""
    if not marks:
        return
    vr = next(
        ((d.get("ope") or {}).get("value_range") for d in dicts if (d.get("ope") or {}).get("value_range")),
        None,
    )
    rng = f"[{vr[0]:g}, {vr[1]:g}]" if vr else "the range of possible values"
    if "undefined" in marks:
        w(
            "**undefined**: no estimate (e.g. WIS when every importance weight is 0: the target never takes "
            "the recorded actions).\n\n"
        )
    if "invalid" in marks:
        w(
            f"**invalid (x)**: the estimate x lies outside {rng}, the values a policy can have: it is not a "
            "result (heavy-tailed importance weights); read a bounded estimator (WIS, PHWIS, DR_CLIP, "
            "WDR_CLIP) or FQE instead.\n\n"
        )
    if "bound" in marks:
        w(
            f"**(clipped)**: a bounded estimator on an end of {rng}: the unclipped estimate was at or beyond it.\n\n"
        )
    if "extrapolated" in marks:
        w(
            "**‡** extrapolated: the target acts where the clinicians rarely did, so the Q-model's values "
            "there are its own guess (FQE shrinks them toward the state's value); the interval cannot show "
            "that bias (measured: `benchmarks/bench_fqe_coverage.py`).\n\n"
        )
    if "support" in marks:
        w(
            "**†** low support: the target leaves the clinicians' support, so importance weighting rests on a few patients:\n\n"
        )
        for d in dicts:
            wts = (d.get("ope") or {}).get("weights") or {}
            flagged = any(
                "low_support" in (e.get("flags") or ())
                for e in ((d.get("ope") or {}).get("estimates") or {}).values()
            )
            if flagged:
                w(
                    f"- {d['name']}: ESS {float(wts.get('ess', float('nan'))):.1f} of {d['n_patients']} patients, "
                    f"{100 * float(wts.get('zero_fraction', float('nan'))):.0f} % with weight 0.\n"
                )
        w("\n")


def _write_agents(w: Any, dicts: list[dict[str, Any]]) -> None:
    """Agent rows only: where each one's final actions came from (the model, the guard, the fallback)."""
    agents = [d for d in dicts if d.get("agent")]
    if not agents:
        return
    other = any((d["agent"]["shares"].get("other") or 0) > 0 for d in agents)
    keys = [*AGENT_SOURCES, *(["other"] if other else [])]
    cols = ["policy", "decisions", *(f"{k} %" for k in keys)]
    w("## Agent decisions\n\n")
    w("Share of each agent's scored decisions whose final action came from the model, was replaced by the "
      "safety guard, or came from the fallback policy (no usable answer from the model).\n\n")  # fmt: skip
    w("| " + " | ".join(cols) + " |\n|" + "|".join("---" for _ in cols) + "|\n")
    for d in agents:
        sh = d["agent"]["shares"]
        cells = [d["name"], str(d["agent"]["decisions"]), *(_fmt_pct(sh.get(k, 0.0)) for k in keys)]
        w("| " + " | ".join(cells) + " |\n")
    w("\n")


def _write_rules(w: Any, report: EvaluationReport, dicts: list[dict[str, Any]]) -> None:
    from sepsis_sdk.safety import load_rules

    rules = load_rules(report.config.safety.rules)
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
    for d in dicts:
        per_rule = (d.get("safety") or {}).get("rules", {})
        cells = []
        for rid in ids:
            rr = per_rule.get(rid)
            if not rr or rr.get("not_applicable"):
                cells.append("n/a")
                if rr and rr.get("not_applicable"):
                    notes.add(f"{rid} not applicable: {rr['not_applicable']}")
                continue
            cells.append(_fmt_pct(rr["rate"].get("value")) + ("*" if rr.get("approximate") else ""))
        w(f"| {d['name']} | " + " | ".join(cells) + " |\n")
    if any(rr.get("approximate") for d in dicts for rr in (d.get("safety") or {}).get("rules", {}).values()):
        w(
            "\n\\* approximate: MAP and lactate are stored as z-scores on ICU-Sepsis and were mapped to clinical "
            "units with published MIMIC-IV cohort statistics.\n"
        )
    for n in sorted(notes):
        w(f"\n- {n}")
    all_notes = sorted(
        {
            f"{d['name']}: {n}"
            for d in dicts
            for n in d["notes"]
            if "not applicable" not in n and "approximate" not in n
        }
    )
    if all_notes:
        w("\n\n## Notes\n\n" + "".join(f"- {n}\n" for n in all_notes))


def write_report(report: EvaluationReport, out_dir: str | Path, *, plots: bool = True) -> dict[str, str]:
    """Write results.md / results.csv / results.json (and plots) into ``out_dir``; returns the paths."""
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
    atomic_write_text(out / "results.json", dumps(report.to_dict()))
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
