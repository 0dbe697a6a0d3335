"""Report figures (matplotlib, Agg backend): action heatmaps, value vs safety, OPE vs truth.

The figures read the written form of each result (``PolicyResult.to_dict()``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sepsis_sdk._lazy import require

if TYPE_CHECKING:
    from sepsis_sdk.evaluation.results import EvaluationReport


def _plt():
    mpl = require("matplotlib", "plots", "report plots")
    mpl.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def action_heatmaps(report: EvaluationReport, path: Path) -> Path:
    """5x5 action distributions: the clinicians (test split) next to each policy."""
    plt = _plt()
    panels = [("clinicians (recorded)", np.asarray(report.clinician_distribution))]
    panels += [(r.name, np.asarray(r.action_distribution)) for r in report.results.values()]
    n = len(panels)
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        if k >= n:
            ax.axis("off")
            continue
        title, grid = panels[k]
        im = ax.imshow(grid, origin="lower", cmap="viridis", vmin=0, vmax=max(grid.max(), 1e-9))
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("vasopressor level")
        ax.set_ylabel("fluid level")
        ax.set_xticks(range(5))
        ax.set_yticks(range(5))
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _value(r: dict) -> tuple[float | None, str]:
    if r.get("true_value") and r["true_value"].get("value") is not None:
        return float(r["true_value"]["value"]), "true value"
    est = (r.get("ope") or {}).get("estimates", {})
    for e in ("dr", "wis", "wpdis"):
        if e in est and est[e].get("value") is not None:
            return float(est[e]["value"]), f"{e.upper()} estimate"
    return None, ""


def value_vs_safety(report: EvaluationReport, path: Path) -> Path:
    """Each policy's value (true where known, else an OPE estimate) against its guideline adherence."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    label = ""
    for r in (res.to_dict() for res in report.results.values()):
        v, label = _value(r)
        adh = (r.get("safety") or {}).get("adherence", {}).get("value")
        if v is None or adh is None:
            continue
        ax.scatter(100 * adh, v)
        ax.annotate(r["name"], (100 * adh, v), fontsize=8, xytext=(3, 3), textcoords="offset points")
    for name, val in (report.meta.get("reference_values") or {}).items():
        ax.axhline(val, ls=":", lw=0.8, color="grey")
        ax.text(ax.get_xlim()[0], val, f" {name}", fontsize=7, va="bottom", color="grey")
    ax.set_xlabel("guideline adherence (% decisions breaking neither G1 nor G2)")
    ax.set_ylabel(label or "value")
    ax.set_title("value vs safety")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def ope_vs_truth(report: EvaluationReport, path: Path) -> Path | None:
    """OPE estimates (with intervals) against the true value, one marker per estimator."""
    plt = _plt()
    pts = []
    for r in (res.to_dict() for res in report.results.values()):
        if not r.get("true_value") or r["true_value"].get("value") is None:
            continue
        t = float(r["true_value"]["value"])
        for e, d in (r.get("ope") or {}).get("estimates", {}).items():
            if d.get("value") is not None:
                pts.append((e, r["name"], t, d["value"], d.get("ci_low"), d.get("ci_high")))
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    est_names = sorted({p[0] for p in pts})
    # The axes follow the true values, not the estimates: one wild DR estimate (e.g. -2.7 for a value of
    # 0.785) would otherwise squash every other point. Estimates outside are drawn on the edge as triangles.
    truths = [p[2] for p in pts]
    span = max(max(truths) - min(truths), 0.05)
    lo_, hi_ = min(truths) - 0.5 * span, max(truths) + 0.5 * span
    n_out = 0
    for k, e in enumerate(est_names):
        sel = [p for p in pts if p[0] == e]
        x = np.array([p[2] for p in sel]) + (k - len(est_names) / 2) * 0.001
        y = np.array([p[3] for p in sel], dtype=float)
        lo = np.array([p[4] if p[4] is not None else p[3] for p in sel], dtype=float)
        hi = np.array([p[5] if p[5] is not None else p[3] for p in sel], dtype=float)
        inside = (y >= lo_) & (y <= hi_)
        n_out += int((~inside).sum())
        yc, loc, hic = y.clip(lo_, hi_), lo.clip(lo_, hi_), hi.clip(lo_, hi_)
        bars = ax.errorbar(
            x[inside],
            yc[inside],
            yerr=[yc[inside] - loc[inside], hic[inside] - yc[inside]],
            fmt="o",
            ms=4,
            capsize=2,
            label=e.upper(),
        )
        if (~inside).any():
            ax.scatter(x[~inside], yc[~inside], marker="^", s=30, color=bars[0].get_color())
    ax.plot([lo_, hi_], [lo_, hi_], "k--", lw=0.8)
    ax.set_xlim(lo_, hi_)
    ax.set_ylim(lo_, hi_)
    if n_out:
        ax.text(
            0.02,
            0.98,
            f"{n_out} estimate(s) outside the axes (triangles at the edge)",
            transform=ax.transAxes,
            va="top",
            fontsize=7,
        )
    ax.set_xlabel("true value (ICU-Sepsis)")
    ax.set_ylabel("OPE estimate")
    ax.set_title("off-policy estimates vs truth")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_plots(report: EvaluationReport, plot_dir: str | Path) -> dict[str, str]:
    """Write all figures; returns title -> path."""
    d = Path(plot_dir)
    d.mkdir(parents=True, exist_ok=True)
    out = {
        "action heatmaps (clinicians vs policies)": str(action_heatmaps(report, d / "action_heatmaps.png")),
        "value vs safety": str(value_vs_safety(report, d / "value_vs_safety.png")),
    }
    p = ope_vs_truth(report, d / "ope_vs_truth.png")
    if p is not None:
        out["OPE estimate vs truth"] = str(p)
    return out


__all__ = ["action_heatmaps", "ope_vs_truth", "value_vs_safety", "write_plots"]
