"""Evaluation of a world model on held-out patients: accuracy, calibration, termination, rollouts, truth.

Everything is measured on a patient-level test split the model never saw. Errors are reported per
feature in **normalised units** (the stored value divided by the training cohort's SD of that feature, the
same yardstick for every model and baseline) and in clinical units where the schema knows them.

Baselines (fitted on the training cohort only):

- ``persistence``: the next value equals the current one.
- ``mean_change``: the current value plus the mean change of that feature after that action in training.

ICU-Sepsis ground truth (from :class:`sepsis_sdk.truth.ICUSepsisTruth`, never in training): for a test
decision point in hidden state ``s``, the exact probability of death within ``H`` steps when action ``a`` is given at each of the ``H`` steps,

    P_H(death | s, a) = sum_{k=0}^{H-1} [M_a^k d_a]_s,   M_a = T[clinical, a, clinical],  d_a = T[clinical, a, death],

computed from the true transition matrix ``T``; the model's estimate is ``rollout(plan=[a]*H).p_death``.
A constant plan is what the agent's simulate tool asks of the model, so this is the number that matters.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from sepsis_sdk.world_model._data import DEATH, DISCHARGE, cohort_batch, cohort_windows
from sepsis_sdk.world_model._space import clinical_known, to_clinical


# ---------------------------------------------------------------------- small metrics
def auroc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (ties get half credit); NaN when one class is absent."""
    y = np.asarray(y, bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p))
    sp = np.asarray(p)[order]
    # average ranks for ties
    i = 0
    r = np.arange(1, len(p) + 1, dtype=float)
    while i < len(sp):
        j = i
        while j + 1 < len(sp) and sp[j + 1] == sp[i]:
            j += 1
        r[i : j + 1] = (i + j + 2) / 2.0
        i = j + 1
    ranks[order] = r
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def auprc(y: np.ndarray, p: np.ndarray) -> float:
    """Average precision (area under the precision-recall curve, step-wise)."""
    y = np.asarray(y, bool)
    if y.sum() == 0:
        return float("nan")
    order = np.argsort(-np.asarray(p), kind="mergesort")
    yy = y[order]
    tp = np.cumsum(yy)
    prec = tp / np.arange(1, len(yy) + 1)
    return float((prec * yy).sum() / yy.sum())


def _nanmean(a, axis=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=axis)


def _mean_change_table(train, sd: np.ndarray) -> np.ndarray:
    """``(25, D)`` mean change of each stored feature after each action in the training cohort."""
    tr = train.transitions()
    ok = ~tr.done[:, None] & tr.mask & tr.next_mask
    delta = np.where(ok, tr.next_obs - tr.obs, np.nan)
    table = np.zeros((25, delta.shape[1]))
    for a in range(25):
        rows = tr.action == a
        if rows.any():
            table[a] = np.nan_to_num(_nanmean(delta[rows], axis=0))
    return table


# ---------------------------------------------------------------------- evaluation
def evaluate_world_model(
    model: Any,
    train: Any,
    test: Any,
    *,
    horizons: int = 6,
    rollout_starts: int = 400,
    n_samples: int = 16,
    death_horizons: tuple[int, ...] = (1, 3),
    truth_states: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """Score ``model`` on ``test`` (patients disjoint from ``train``, which only fits the baselines).

    Returns:
        A JSON-serialisable report (see :func:`write_report`).
    """
    schema = model.schema
    names = schema.names
    lo, hi = (np.asarray(b) for b in schema.bounds())
    xtr = train.features()
    sd = np.nanstd(np.where(train.masks(), xtr, np.nan), axis=0)
    sd = np.where(np.isfinite(sd) & (sd > 1e-8), sd, 1.0)
    mean_tr = np.nan_to_num(_nanmean(xtr, axis=0))
    change = _mean_change_table(train, sd)

    data = cohort_windows(test, model.normaliser, model.window)
    hb = cohort_batch(test, model.window)
    acts = test.actions
    pred = model.predict(hb, acts)
    y = data.next_stored  # NaN where missing or terminal
    obs = np.isfinite(y)
    cur = np.where(np.isfinite(data.current_stored), data.current_stored, mean_tr)
    preds = {
        "model": pred.mean,
        "persistence": cur,
        "mean_change": np.clip(cur + change[acts], lo, hi),
    }
    overall, per_feature = _one_step_errors(schema, preds, y, obs, sd)
    calibration = _calibration(model, pred, y, obs, sd)
    for n in names:
        per_feature[n]["coverage90"] = calibration["coverage_per_feature"][n]
    termination = _termination(data.term, pred)

    report: dict[str, Any] = {
        "model": {
            "name": model.name,
            "backend": getattr(model, "backend", type(model).__name__),
            "window": model.window,
            "members": model.n_members,
            "info": {k: v for k, v in getattr(model, "info", {}).items() if k != "curve"},
        },
        "data": {
            "test": test.summary(),
            "train": train.summary(),
            "test_rows": len(data),
            "test_next_observed": int(obs.any(1).sum()),
        },
        "one_step": {"overall": overall, "per_feature": per_feature},
        "calibration": calibration,
        "termination": termination,
        "rollout": _rollout_errors(
            model, test, sd, change, lo, hi, mean_tr, horizons, rollout_starts, n_samples, seed
        ),
    }
    truth = _row_truth(test)
    if truth is not None:
        report["icu_sepsis_truth"] = _death_truth(
            model, test, truth, death_horizons, truth_states, n_samples, seed
        )
        report["icu_sepsis_truth"]["oracle_one_step"] = _oracle_one_step(test, truth, data, sd)
    return report


def _one_step_errors(schema, preds, y, obs, sd) -> tuple[dict[str, Any], dict[str, Any]]:
    """Overall and per-feature one-step MAE/RMSE of each predictor (normalised and clinical units)."""
    names = schema.names
    known = clinical_known(schema)
    per_feature: dict[str, dict[str, Any]] = {}
    overall: dict[str, dict[str, float]] = {}
    for key, p in preds.items():
        err = np.where(obs, p - y, np.nan)
        mae_n = _nanmean(np.abs(err) / sd, axis=0)
        rmse_n = np.sqrt(_nanmean((err / sd) ** 2, axis=0))
        errc = np.where(obs, to_clinical(schema, p) - to_clinical(schema, np.nan_to_num(y)), np.nan)
        mae_c = _nanmean(np.abs(errc), axis=0)
        rmse_c = np.sqrt(_nanmean(errc**2, axis=0))
        for j, n in enumerate(names):
            f = per_feature.setdefault(n, {"unit": schema.features[j].unit, "clinical_units": bool(known[j])})
            f[key] = {
                "mae_norm": float(mae_n[j]),
                "rmse_norm": float(rmse_n[j]),
                "mae_clinical": float(mae_c[j]) if known[j] else None,
                "rmse_clinical": float(rmse_c[j]) if known[j] else None,
            }
        overall[key] = {
            "mae_norm": float(_nanmean(np.abs(err) / sd)),
            "rmse_norm": float(np.sqrt(_nanmean((err / sd) ** 2))),
        }
    return overall, per_feature


def _calibration(model, pred, y, obs, sd) -> dict[str, Any]:
    """Coverage of the 90 % interval and Gaussian NLL of the mixture moments (model space)."""
    names = model.schema.names
    inside = (y >= pred.lower - 1e-12) & (y <= pred.upper + 1e-12)
    cov_feat = np.where(obs.sum(0) > 0, (inside & obs).sum(0) / np.maximum(obs.sum(0), 1), np.nan)
    zy = model.normaliser.to_model(np.nan_to_num(y))
    zm = model.normaliser.to_model(pred.mean)
    slope = model.normaliser.stored_slope(zm)
    zsd = np.maximum(pred.std / np.maximum(slope, 1e-12), 1e-6)
    nll = 0.5 * ((zy - zm) / zsd) ** 2 + np.log(zsd) + 0.5 * math.log(2 * math.pi)
    return {
        "nominal": 0.9,
        "coverage": float((inside & obs).sum() / max(obs.sum(), 1)),
        "coverage_per_feature": {n: float(c) for n, c in zip(names, cov_feat, strict=True)},
        "coverage_min_feature": float(np.nanmin(cov_feat)),
        "coverage_max_feature": float(np.nanmax(cov_feat)),
        "nll_model_space": float(_nanmean(np.where(obs, nll, np.nan))),
        "mean_interval_width_norm": float(_nanmean(np.where(obs, (pred.upper - pred.lower) / sd, np.nan))),
    }


def _termination(term: np.ndarray, pred: Any) -> dict[str, Any]:
    """Discrimination and calibration of the death and discharge hazards on labelled rows."""
    lab = term >= 0
    out = {}
    for key, cls, p in (("death", DEATH, pred.p_death), ("discharge", DISCHARGE, pred.p_discharge)):
        yy = term[lab] == cls
        pp = p[lab]
        out[key] = {
            "auroc": auroc(yy, pp),
            "auprc": auprc(yy, pp),
            "brier": float(((pp - yy) ** 2).mean()) if len(pp) else float("nan"),
            "brier_base_rate": float(((yy.mean() - yy) ** 2).mean()) if len(pp) else float("nan"),
            "rate": float(yy.mean()) if len(pp) else float("nan"),
            "mean_predicted": float(pp.mean()) if len(pp) else float("nan"),
        }
    return out


def _rollout_errors(
    model, test, sd, change, lo, hi, mean_tr, horizons, n_starts, n_samples, seed
) -> dict[str, Any]:
    """Open-loop error after 1..H steps, replaying the logged actions from a decision point.

    ``model`` is the central path (no sampling noise: each step takes the ensemble's central prediction);
    ``model_sampled_mean`` the mean of ``n_samples`` sampled futures still in the ICU.
    """
    ep = test.episode_index()
    lengths = np.bincount(ep)
    starts = np.r_[0, np.cumsum(lengths)[:-1]]
    pos = np.arange(len(ep)) - starts[ep]
    remaining = lengths[ep] - pos - 1  # observed future steps after this row
    x = test.features()
    observed = test.masks() & np.isfinite(x)
    acts = test.actions
    cand = np.flatnonzero(remaining >= 1)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(cand, min(n_starts, len(cand)), replace=False)) if len(cand) else cand
    out: dict[str, Any] = {
        "starts": len(rows),
        "horizon": [],
        "model": [],
        "model_sampled_mean": [],
        "persistence": [],
        "mean_change": [],
        "n": [],
    }
    if not len(rows):
        return out
    h = horizons
    plan = np.zeros((len(rows), 1, h), dtype=np.int64)
    for k in range(h):
        idx = np.minimum(rows + k, len(acts) - 1)
        same = ep[idx] == ep[rows]
        plan[:, 0, k] = np.where(same, acts[idx], acts[rows])  # beyond the stay: keep the last action
    hb = cohort_batch(test, model.window, rows)
    r = model.rollout(hb, plan, n_samples=n_samples, seed=seed)
    central = model.rollout(hb, plan, n_samples=1, seed=seed, noise=False)
    cur = np.where(np.isfinite(x[rows]), x[rows], mean_tr)
    cum = np.zeros_like(cur)
    for k in range(h):
        ok = remaining[rows] >= k + 1
        nxt = np.minimum(rows + k + 1, len(x) - 1)
        tgt = np.where(observed[nxt], x[nxt], np.nan)  # score observed values only, never imputed ones
        cum = cum + change[plan[:, 0, k]]
        m = central.mean[:, 0, k]
        sel = ok[:, None] & np.isfinite(tgt) & np.isfinite(m)
        n = int(ok.sum())
        out["horizon"].append(k + 1)
        out["n"].append(n)
        for key, p in (
            ("model", m),
            ("model_sampled_mean", r.mean[:, 0, k]),
            ("persistence", cur),
            ("mean_change", np.clip(cur + cum, lo, hi)),
        ):
            e = np.where(sel, np.abs(p - tgt) / sd, np.nan)
            out[key].append(float(_nanmean(e)) if sel.any() else float("nan"))
    return out


def _row_truth(test: Any) -> Any:
    """The truth layer's row-level ICU-Sepsis truth for ``test``, or ``None`` (other data, or no hidden
    states recorded). This module never reads the hidden dynamics itself."""
    from sepsis_sdk.truth import ICUSepsisTruth, truth_for

    truth = truth_for(test)
    return truth if isinstance(truth, ICUSepsisTruth) and test.has_state_ids else None


def exact_death_within(states: np.ndarray, horizon: int) -> np.ndarray:
    """Deprecated: use :func:`sepsis_sdk.truth.death_within_constant` (same values)."""
    from sepsis_sdk.truth import death_within_constant

    warnings.warn(
        "exact_death_within is deprecated; use sepsis_sdk.truth.death_within_constant",
        DeprecationWarning,
        stacklevel=2,
    )
    return death_within_constant(states, horizon)


def _oracle_one_step(test, truth, data, sd: np.ndarray) -> dict[str, float]:
    """One-step MAE of the best possible predictors, from the true dynamics (a ceiling).

    ``median``: per feature, the median of the true next-state distribution (what minimises MAE);
    ``mean``: its mean (what a perfect Gaussian-mean model predicts).
    """
    ok = data.term == 0
    rows = data.row[ok]
    y = data.next_stored[ok]
    p, obs = truth.next_state_distribution(test, rows, test.actions[rows])
    mean = p @ obs
    med = np.empty_like(mean)
    for j in range(obs.shape[1]):
        order = np.argsort(obs[:, j], kind="mergesort")
        cp = np.cumsum(p[:, order], axis=1)
        k = np.minimum((cp < 0.5).sum(1), len(obs) - 1)
        med[:, j] = obs[order[k], j]
    return {
        "median_mae_norm": float(_nanmean(np.abs(med - y) / sd)),
        "mean_mae_norm": float(_nanmean(np.abs(mean - y) / sd)),
        "mean_rmse_norm": float(np.sqrt(_nanmean(((mean - y) / sd) ** 2))),
    }


def _death_truth(model, test, truth, horizons, n_states, n_samples, seed) -> dict[str, Any]:
    rng = np.random.default_rng(seed + 1)
    rows = np.sort(rng.choice(len(test), min(n_states, len(test)), replace=False))
    hb = cohort_batch(test, model.window, rows)
    adm = truth.admissible_mask(test, rows)
    sup = model.support_all(hb)
    out: dict[str, Any] = {
        "support_vs_admissible": {
            "auroc": auroc(adm.ravel(), sup.ravel()),
            "mean_support_admissible": float(sup[adm].mean()) if adm.any() else float("nan"),
            "mean_support_inadmissible": float(sup[~adm].mean()) if (~adm).any() else float("nan"),
            "note": "ICU-Sepsis marks (s, a) seen <= 20 times in MIMIC-III as inadmissible",
        },
        "definition": "P(death within H steps | state, action a given at every step)",
        "points": len(rows),
        "by_horizon": {},
    }
    for hz in horizons:
        truth_p = truth.death_within_constant(test, rows, hz)
        plans = np.repeat(np.arange(25)[:, None], hz, axis=1)
        est = model.rollout(hb, plans, n_samples=n_samples, seed=seed).p_death
        err = est - truth_p
        corr = float(np.corrcoef(est.ravel(), truth_p.ravel())[0, 1]) if est.std() > 0 else float("nan")
        # does the model rank actions like the truth within a state? (Spearman, averaged over states)
        rho = []
        for i in range(len(rows)):
            if est[i].std() > 0 and truth_p[i].std() > 0:
                ra, rb = np.argsort(np.argsort(est[i])), np.argsort(np.argsort(truth_p[i]))
                rho.append(np.corrcoef(ra, rb)[0, 1])
        best_agree = float((truth_p[np.arange(len(rows)), est.argmin(1)] - truth_p.min(1)).mean())
        out["by_horizon"][str(hz)] = {
            "mae": float(np.abs(err).mean()),
            "mae_admissible": float(np.abs(err[adm]).mean()),
            "bias": float(err.mean()),
            "mean_truth": float(truth_p.mean()),
            "mean_model": float(est.mean()),
            "pearson": corr,
            "within_state_spearman": float(np.mean(rho)) if rho else float("nan"),
            "regret_of_model_safest_action": best_agree,
            "scatter": {
                "truth": truth_p.ravel()[:2000].round(5).tolist(),
                "model": est.ravel()[:2000].round(5).tolist(),
            },
        }
    return out


# ---------------------------------------------------------------------- report files
def write_report(report: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and PNG plots into directory ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "markdown": out / "report.md"}
    paths["json"].write_text(json.dumps(report, indent=1, default=float))
    paths.update(_plots(report, out))
    paths["markdown"].write_text(
        render_markdown(report, {k: v.name for k, v in paths.items() if k.startswith("plot")})
    )
    return paths


def _f(v: Any, nd: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{nd}f}"


def _md_truth(t: dict[str, Any], o: dict[str, Any], lines: list[str]) -> None:
    """The ICU-Sepsis truth parts of the report: support vs admissibility, the oracle rows of the one-step
    table (inserted after the ``mean_change`` row) and death within H steps."""
    sa = t.get("support_vs_admissible")
    if sa:
        lines += [
            "",
            f"Support vs ICU-Sepsis admissibility: AUROC {_f(sa['auroc'])}; mean support of admissible (s, a) "
            f"{_f(sa['mean_support_admissible'])}, of inadmissible {_f(sa['mean_support_inadmissible'])}.",
        ]
    if "oracle_one_step" in t:
        orc = t["oracle_one_step"]
        lines[
            lines.index(
                "| mean_change | "
                + _f(o["mean_change"]["mae_norm"], 4)
                + " | "
                + _f(o["mean_change"]["rmse_norm"], 4)
                + " |"
            )
            + 1 : 0
        ] = [
            f"| oracle median (true dynamics; a ceiling) | {_f(orc['median_mae_norm'], 4)} | – |",
            f"| oracle mean (true dynamics) | {_f(orc['mean_mae_norm'], 4)} | {_f(orc['mean_rmse_norm'], 4)} |",
        ]
    lines += [
        "",
        "## Death within H steps vs exact ICU-Sepsis truth",
        "",
        f"{t['definition']}; {t['points']} test decision points x 25 actions.",
        "",
        "| H | MAE | MAE (admissible) | bias | mean truth | mean model | Pearson | within-state Spearman | regret of model's safest action |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for hz, v in t["by_horizon"].items():
        lines.append(
            f"| {hz} | {_f(v['mae'], 4)} | {_f(v['mae_admissible'], 4)} | {_f(v['bias'], 4)} | {_f(v['mean_truth'], 4)} | {_f(v['mean_model'], 4)} | {_f(v['pearson'])} | {_f(v['within_state_spearman'])} | {_f(v['regret_of_model_safest_action'], 4)} |"
        )


def _md_per_feature(per_feature: dict[str, Any]) -> list[str]:
    """The per-feature table of the report."""
    lines = [
        "",
        "## Per feature (MAE, normalised; clinical units where known; 90 % coverage)",
        "",
        "| feature | model | persistence | mean change | model (clinical) | coverage |",
        "|---|---|---|---|---|---|",
    ]
    for n, f in per_feature.items():
        clin = f"{_f(f['model']['mae_clinical'])} {f['unit']}" if f["clinical_units"] else "–"
        lines.append(
            f"| {n} | {_f(f['model']['mae_norm'])} | {_f(f['persistence']['mae_norm'])} | {_f(f['mean_change']['mae_norm'])} | {clin} | {_f(f['coverage90'], 2)} |"
        )
    return lines


def render_markdown(rep: dict[str, Any], plots: dict[str, str] | None = None) -> str:
    """The report as Markdown (tables of every section; plots linked when given)."""
    m, d = rep["model"], rep["data"]
    o = rep["one_step"]["overall"]
    lines = [
        f"# World model evaluation: {m['name']} ({m['backend']})",
        "",
        f"Test cohort: {d['test']['source']}{' (SYNTHETIC)' if d['test'].get('synthetic') else ''}, "
        f"{d['test']['patients']} held-out patients, {d['test_rows']} decision points; trained on "
        f"{d['train']['patients']} other patients. Window {m['window']}, {m['members']} ensemble member(s).",
        "",
        "## One-step error (normalised units: stored value / training SD)",
        "",
        "| predictor | MAE | RMSE |",
        "|---|---|---|",
    ]
    for k in ("model", "persistence", "mean_change"):
        lines.append(f"| {k} | {_f(o[k]['mae_norm'], 4)} | {_f(o[k]['rmse_norm'], 4)} |")
    beats = o["model"]["mae_norm"] < min(o["persistence"]["mae_norm"], o["mean_change"]["mae_norm"])
    lines += ["", f"Model beats both baselines on MAE: **{'yes' if beats else 'no'}**.", ""]
    c = rep["calibration"]
    lines += [
        "## Calibration",
        "",
        f"- 90 % predictive interval coverage on held-out next values: **{c['coverage']:.3f}** "
        f"(per feature {c['coverage_min_feature']:.2f}–{c['coverage_max_feature']:.2f})",
        f"- Gaussian NLL of the predictive moments (model space): {c['nll_model_space']:.3f}",
        f"- mean interval width: {c['mean_interval_width_norm']:.3f} SD",
        "",
        "## Termination",
        "",
        "| event | AUROC | AUPRC | Brier | Brier (base rate) | rate | mean predicted |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, t in rep["termination"].items():
        lines.append(
            f"| {k} | {_f(t['auroc'])} | {_f(t['auprc'])} | {_f(t['brier'], 4)} | {_f(t['brier_base_rate'], 4)} | {_f(t['rate'])} | {_f(t['mean_predicted'])} |"
        )
    r = rep["rollout"]
    lines += [
        "",
        "## Open-loop rollouts (logged actions replayed; MAE in normalised units)",
        "",
        "model = central path (no sampling noise); sampled = mean of the sampled futures.",
        "",
        "| steps | n | model | model (sampled mean) | persistence | mean change |",
        "|---|---|---|---|---|---|",
    ]
    for i, hz in enumerate(r["horizon"]):
        lines.append(
            f"| {hz} | {r['n'][i]} | {_f(r['model'][i])} | {_f(r['model_sampled_mean'][i])} | {_f(r['persistence'][i])} | {_f(r['mean_change'][i])} |"
        )
    if "icu_sepsis_truth" in rep:
        _md_truth(rep["icu_sepsis_truth"], o, lines)
    lines += _md_per_feature(rep["one_step"]["per_feature"])
    if plots:
        lines += ["", "## Plots", ""] + [f"![{k}]({v})" for k, v in sorted(plots.items())]
    return "\n".join(lines) + "\n"


def _plots(rep: dict[str, Any], out: Path) -> dict[str, Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - plots are optional
        return {}
    paths: dict[str, Path] = {}
    pf = rep["one_step"]["per_feature"]
    names = list(pf)
    fig, ax = plt.subplots(figsize=(max(8, 0.25 * len(names)), 4))
    xs = np.arange(len(names))
    for i, k in enumerate(("model", "persistence", "mean_change")):
        ax.bar(xs + (i - 1) * 0.27, [pf[n][k]["mae_norm"] for n in names], 0.27, label=k)
    ax.set_xticks(xs, names, rotation=90, fontsize=7)
    ax.set_ylabel("one-step MAE (SD)")
    ax.legend()
    fig.tight_layout()
    paths["plot_mae"] = out / "mae_per_feature.png"
    fig.savefig(paths["plot_mae"], dpi=100)
    plt.close(fig)

    r = rep["rollout"]
    if r["horizon"]:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for k in ("model", "persistence", "mean_change"):
            ax.plot(r["horizon"], r[k], marker="o", label=k)
        ax.set_xlabel("steps ahead (4 h each)")
        ax.set_ylabel("MAE (SD)")
        ax.legend()
        fig.tight_layout()
        paths["plot_rollout"] = out / "rollout_error.png"
        fig.savefig(paths["plot_rollout"], dpi=100)
        plt.close(fig)

    cov = [pf[n]["coverage90"] for n in names]
    fig, ax = plt.subplots(figsize=(max(8, 0.25 * len(names)), 3.5))
    ax.bar(xs, cov)
    ax.axhline(0.9, color="k", ls="--", lw=1)
    ax.set_xticks(xs, names, rotation=90, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("90 % interval coverage")
    fig.tight_layout()
    paths["plot_coverage"] = out / "coverage.png"
    fig.savefig(paths["plot_coverage"], dpi=100)
    plt.close(fig)

    if "icu_sepsis_truth" in rep:
        hz = sorted(rep["icu_sepsis_truth"]["by_horizon"], key=int)
        fig, axes = plt.subplots(1, len(hz), figsize=(4 * len(hz), 4), squeeze=False)
        for ax, h in zip(axes[0], hz, strict=True):
            sc = rep["icu_sepsis_truth"]["by_horizon"][h]["scatter"]
            ax.scatter(sc["truth"], sc["model"], s=4, alpha=0.4)
            lim = max(max(sc["truth"], default=0.1), max(sc["model"], default=0.1)) * 1.05
            ax.plot([0, lim], [0, lim], "k--", lw=1)
            ax.set_xlabel(f"exact P(death within {h})")
            ax.set_ylabel("model")
        fig.tight_layout()
        paths["plot_truth"] = out / "death_vs_truth.png"
        fig.savefig(paths["plot_truth"], dpi=100)
        plt.close(fig)
    return paths


__all__ = ["auprc", "auroc", "evaluate_world_model", "exact_death_within", "render_markdown", "write_report"]
