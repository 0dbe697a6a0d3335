"""Report figures (matplotlib, Agg backend): action heatmaps, value vs safety, OPE vs truth.

The figures read the written form of each result (``PolicyResult.to_dict()``). Smoke tests (rows scored
on fewer than :data:`~sepsis_sdk.evaluation.results.SMOKE_TEST_PATIENTS` patients) are left out of every
figure, and the value axis is the true value wherever the cohort has a ground truth (an OPE estimate only
when no policy has one, and never a flagged one). Labels are placed so they do not overlap (adjustText
when it is installed, else a greedy search over offsets).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sepsis_sdk._lazy import require
from sepsis_sdk.actions import FLUID_BINS, VASO_BINS
from sepsis_sdk.evaluation.results import SMOKE_TEST_PATIENTS, is_smoke_test

if TYPE_CHECKING:
    from sepsis_sdk.evaluation.results import EvaluationReport


def _plt():
    mpl = require("matplotlib", "plots", "report plots")
    mpl.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _rows(report: EvaluationReport) -> tuple[list[dict[str, Any]], list[str]]:
    """The plotted rows (``to_dict()`` form) and the names of the smoke tests left out."""
    dicts = [r.to_dict() for r in report.results.values()]
    return [d for d in dicts if not is_smoke_test(d)], [d["name"] for d in dicts if is_smoke_test(d)]


def _footnote(fig: Any, parts: list[str]) -> None:
    if parts:
        fig.text(0.01, 0.005, "; ".join(parts), fontsize=7, color="dimgrey", va="bottom", wrap=True)


def _smoke_note(smoke: list[str]) -> list[str]:
    return [f"not shown, smoke tests (< {SMOKE_TEST_PATIENTS} patients): {', '.join(smoke)}"] if smoke else []


def _dose_label(b: Any) -> str:
    if b.level == 0:
        return "0"
    return f">{b.low:g}" if b.high is None else f"{b.low:g}–{b.high:g}"


# ---------------------------------------------------------------------------------------------- labels
def _offsets() -> list[tuple[float, float]]:
    """Candidate label offsets (points), nearest first: rings of 8 directions out to about 90 pt."""
    out = []
    for r in (6, 14, 24, 36, 50, 66, 84):
        for ang in (45, -45, 135, -135, 90, -90, 0, 180, 20, -20, 160, -160):
            out.append((r * np.cos(np.radians(ang)), r * np.sin(np.radians(ang))))
    return out


_OFFSETS = _offsets()


def place_labels(
    ax: Any,
    xs: list[float],
    ys: list[float],
    labels: list[str],
    *,
    fontsize: int = 8,
    obstacles: np.ndarray | None = None,
) -> list[Any]:
    """Label the points ``(xs, ys)`` so that no two labels overlap and no label covers a point.

    Uses adjustText when it is installed; otherwise tries offsets around each point, nearest first, and
    keeps the first whose box is clear of the labels placed so far, of every point and of ``obstacles``
    (more ``(k, 2)`` data points to keep clear, e.g. markers that are not labelled) and inside the axes.
    A label away from its point gets a leader line.
    """
    try:
        from adjustText import adjust_text  # type: ignore[import-not-found]
    except ImportError:
        adjust_text = None
    if adjust_text is not None:
        texts = [ax.text(x, y, s, fontsize=fontsize) for x, y, s in zip(xs, ys, labels, strict=True)]
        adjust_text(texts, x=list(xs), y=list(ys), ax=ax, arrowprops={"arrowstyle": "-", "lw": 0.5})
        return texts
    renderer = ax.figure.canvas.get_renderer()
    pts = ax.transData.transform(np.column_stack([xs, ys])) if len(xs) else np.zeros((0, 2))
    others = pts
    if obstacles is not None and len(obstacles):
        others = np.vstack([pts, ax.transData.transform(np.asarray(obstacles, dtype=float))])
    frame = ax.get_window_extent(renderer)
    placed: list[Any] = []
    texts = []
    order = np.argsort(-np.asarray(ys, dtype=float)) if len(ys) else []
    for i in order:
        x, y, s = xs[i], ys[i], labels[i]
        best = None
        for k, (dx, dy) in enumerate(_OFFSETS):
            text = ax.annotate(
                s, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                ha="left" if dx >= 0 else "right", va="bottom" if dy >= 0 else "top",
                arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "grey"} if np.hypot(dx, dy) > 20 else None,
                zorder=4,
            )  # fmt: skip
            box = text.get_window_extent(renderer).expanded(1.04, 1.1)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            clear = inside and not any(box.overlaps(b) for b in placed)
            clear = clear and not any(box.contains(qx, qy) for qx, qy in others)
            if clear or k == len(_OFFSETS) - 1:
                best = text
                placed.append(box)
                break
            text.remove()
        texts.append(best)
    return texts


def _reference_labels(ax: Any, refs: dict[str, float]) -> None:
    """Reference lines, labelled outside the right edge, spread apart so close values stay legible."""
    if not refs:
        return
    for val in refs.values():
        ax.axhline(val, ls=":", lw=0.8, color="grey")
    renderer = ax.figure.canvas.get_renderer()
    items = sorted(refs.items(), key=lambda kv: kv[1])
    y_px = [ax.transData.transform((0, v))[1] for _, v in items]
    gap = 14.0  # pixels between label centres (a fontsize-7 line with parentheses is ~12.5 px)
    for k in range(1, len(y_px)):
        y_px[k] = max(y_px[k], y_px[k - 1] + gap)
    inv = ax.transData.inverted()
    for (name, val), yp in zip(items, y_px, strict=True):
        y_data = inv.transform((0, yp))[1]
        ax.annotate(
            f"{name} {val:.3f}", xy=(1.0, val), xycoords=("axes fraction", "data"),
            xytext=(1.02, y_data), textcoords=("axes fraction", "data"), fontsize=7, color="grey",
            va="center", arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "lightgrey"}, annotation_clip=False,
        )  # fmt: skip
    del renderer


# ---------------------------------------------------------------------------------------------- figures
def action_heatmaps(report: EvaluationReport, path: Path) -> Path:
    """5x5 action distributions: the clinicians (test split) next to each policy, on one colour scale."""
    plt = _plt()
    rows, smoke = _rows(report)
    panels = [("clinicians (recorded)", np.asarray(report.clinician_distribution))]
    panels += [(d["name"], np.asarray(d["action_distribution"])) for d in rows]
    n = len(panels)
    cols = min(n, 4)
    nrows = (n + cols - 1) // cols
    vmax = max(max(float(g.max()) for _, g in panels), 1e-9)  # one shared scale: panels compare by colour
    fig, axes = plt.subplots(nrows, cols, figsize=(3.3 * cols + 1.2, 3.2 * nrows + 0.5), squeeze=False)
    im = None
    vaso_ticks = [_dose_label(b) for b in VASO_BINS]
    fluid_ticks = [_dose_label(b) for b in FLUID_BINS]
    for k, ax in enumerate(axes.ravel()):
        if k >= n:
            ax.axis("off")
            continue
        title, grid = panels[k]
        im = ax.imshow(grid, origin="lower", cmap="viridis", vmin=0.0, vmax=vmax)
        ax.set_title(title, fontsize=9)
        ax.set_xticks(range(5), vaso_ticks, fontsize=6, rotation=30)
        ax.set_yticks(range(5), fluid_ticks, fontsize=6)
        if k % cols == 0:
            ax.set_ylabel(f"IV fluid ({FLUID_BINS[1].unit})", fontsize=8)
        if k // cols == nrows - 1 or k + cols >= n:
            ax.set_xlabel(f"vasopressor ({VASO_BINS[1].unit.replace('ug', 'µg')})", fontsize=8)
    fig.subplots_adjust(
        left=0.08, right=0.86, bottom=0.14 if smoke else 0.1, top=0.93, wspace=0.45, hspace=0.55
    )
    cax = fig.add_axes((0.89, 0.15, 0.018, 0.7))
    bar = fig.colorbar(im, cax=cax)
    bar.set_label("share of decisions (one scale for all panels)", fontsize=8)
    fig.suptitle("action distributions: fluid level x vasopressor level", fontsize=10)
    _footnote(fig, _smoke_note(smoke))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _truth(d: dict[str, Any]) -> tuple[float | None, str | None, float | None, float | None]:
    tv = d.get("true_value") or {}
    if tv.get("value") is None:
        return None, None, None, None
    return float(tv["value"]), tv.get("method"), tv.get("ci_low"), tv.get("ci_high")


def _estimate_axis(rows: list[dict[str, Any]], order: tuple[str, ...]) -> str | None:
    """The OPE estimator used as value axis when no true value is known: the first bounded one run."""
    for e in (*[x for x in order if x in ("wis", "phwis", "dr_clip", "wdr_clip", "fqe")], *order):
        if any(e in ((d.get("ope") or {}).get("estimates") or {}) for d in rows):
            return e
    return None


def value_vs_safety(report: EvaluationReport, path: Path) -> Path:
    """Each policy's value against its guideline adherence.

    The value is the true value (exact; Monte Carlo drawn hollow with its interval) wherever the cohort
    has a ground truth: a policy without one is then listed under the plot, not placed by an estimate.
    Only when no policy has a true value is an OPE estimate used (bounded first, flagged ones left out).
    """
    plt = _plt()
    rows, smoke = _rows(report)
    fig, ax = plt.subplots(figsize=(7.6, 4.8))
    has_truth = any(_truth(d)[0] is not None for d in rows)
    est = None if has_truth else _estimate_axis(rows, tuple(report.config.ope.estimators))
    xs, ys, names, left_out = [], [], [], []
    for d in rows:
        adh = (d.get("safety") or {}).get("adherence", {}).get("value")
        if has_truth:
            v, method, lo, hi = _truth(d)
        else:
            e = ((d.get("ope") or {}).get("estimates") or {}).get(est or "", {})
            bad = "out_of_range" in (e.get("flags") or ())
            v, method, lo, hi = (
                (None if bad else e.get("value")),
                "estimate",
                e.get("ci_low"),
                e.get("ci_high"),
            )
        if v is None or adh is None:
            left_out.append(d["name"])
            continue
        x = 100 * float(adh)
        exact = method == "exact"
        if not exact and lo is not None and hi is not None:
            ax.errorbar([x], [v], yerr=[[v - lo], [hi - v]], fmt="none", ecolor="grey", lw=0.8, capsize=2)
        ax.scatter([x], [v], s=30, facecolors="C0" if exact else "white", edgecolors="C0", zorder=3)
        xs.append(x)
        ys.append(float(v))
        names.append(d["name"] + ("" if exact or not has_truth else " (MC)"))
    refs = dict(report.meta.get("reference_values") or {})
    if xs:
        pad_x = max(2.0, 0.12 * (max(xs) - min(xs)))
        ax.set_xlim(min(xs) - pad_x, max(xs) + pad_x)
        allv = ys + list(refs.values())
        pad_y = max(0.005, 0.12 * (max(allv) - min(allv)))
        ax.set_ylim(min(allv) - pad_y, max(allv) + pad_y)
    place_labels(ax, xs, ys, names)
    ax.set_xlabel("guideline adherence (% decisions breaking neither G1 nor G2)")
    ax.set_ylabel(
        "true value (P(survival); exact, MC hollow)"
        if has_truth
        else f"{(est or 'value').upper()} estimate (no ground truth)"
    )
    ax.set_title("value vs safety")
    notes = _smoke_note(smoke)
    if left_out:
        notes.append(
            f"no {'true value' if has_truth else 'valid estimate'}, not shown: {', '.join(left_out)}"
        )
    fig.tight_layout(rect=(0, 0.05 if notes else 0, 0.8 if refs else 1, 1))
    _reference_labels(ax, refs)  # after the layout: it spreads the labels in pixels
    _footnote(fig, notes)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def ope_vs_truth(report: EvaluationReport, path: Path) -> Path | None:
    """OPE estimates (with intervals) against the true value, one marker per estimator, policies labelled."""
    plt = _plt()
    rows, smoke = _rows(report)
    pts = []
    for d in rows:
        t, _method, _lo, _hi = _truth(d)
        if t is None:
            continue
        for e, est in ((d.get("ope") or {}).get("estimates") or {}).items():
            if est.get("value") is not None and np.isfinite(est["value"]):
                pts.append((e, d["name"], t, est["value"], est.get("ci_low"), est.get("ci_high")))
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    est_names = sorted({p[0] for p in pts})
    # The axes follow the true values, not the estimates: one wild DR estimate (e.g. -2.7 for a value of
    # 0.785) would otherwise squash every other point. Estimates outside are drawn on the edge as triangles.
    truths = [p[2] for p in pts]
    span = max(max(truths) - min(truths), 0.05)
    lo_, hi_ = min(truths) - 0.5 * span, max(truths) + 0.5 * span
    n_out = 0
    markers: list[np.ndarray] = []
    for k, e in enumerate(est_names):
        sel = [p for p in pts if p[0] == e]
        x = np.array([p[2] for p in sel]) + (k - (len(est_names) - 1) / 2) * 0.01 * span
        y = np.array([p[3] for p in sel], dtype=float)
        lo = np.array([p[4] if p[4] is not None and np.isfinite(p[4]) else p[3] for p in sel], dtype=float)
        hi = np.array([p[5] if p[5] is not None and np.isfinite(p[5]) else p[3] for p in sel], dtype=float)
        inside = (y >= lo_) & (y <= hi_)
        n_out += int((~inside).sum())
        yc, loc, hic = y.clip(lo_, hi_), lo.clip(lo_, hi_), hi.clip(lo_, hi_)
        bars = ax.errorbar(
            x[inside], yc[inside], yerr=[yc[inside] - loc[inside], hic[inside] - yc[inside]],
            fmt="o", ms=4, capsize=2, label=e.upper(),
        )  # fmt: skip
        if (~inside).any():
            ax.scatter(x[~inside], yc[~inside], marker="^", s=30, color=bars[0].get_color())
        markers.append(np.column_stack([x, yc]))
    ax.plot([lo_, hi_], [lo_, hi_], "k--", lw=0.8)
    ax.set_xlim(lo_, hi_)
    ax.set_ylim(lo_, hi_)
    # one label per policy, at its true value on the diagonal (where a perfect estimate would sit), with
    # a small mark there; the estimate markers are obstacles the labels keep clear of
    policies = sorted({(p[1], p[2]) for p in pts}, key=lambda q: q[1])
    tx = [t for _, t in policies]
    ax.scatter(tx, tx, marker="|", s=60, color="black", lw=0.8, zorder=3)
    place_labels(ax, tx, tx, [n for n, _ in policies], fontsize=7, obstacles=np.vstack(markers))
    notes = _smoke_note(smoke)
    if n_out:
        notes.insert(0, f"{n_out} estimate(s) outside the axes (triangles at the edge)")
    ax.set_xlabel("true value (ICU-Sepsis, exact or MC)")
    ax.set_ylabel("OPE estimate (95 % bootstrap interval)")
    ax.set_title("off-policy estimates vs truth (dashed: estimate = truth)")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout(rect=(0, 0.05 if notes else 0, 1, 1))
    _footnote(fig, notes)
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


__all__ = ["action_heatmaps", "ope_vs_truth", "place_labels", "value_vs_safety", "write_plots"]
