"""Does a world model know where patients can go? Neighbour backend vs the parametric ones, on exact truth.

ICU-Sepsis next states are one of 713 discrete points. For each cohort size this script samples a cohort
from the clinicians' policy (seed 0), splits it by patient (``Cohort.split(0.7, 0.15, 0.15, seed=0)``;
the models fit on train + validation, 85 %, and are scored on the 15 % test patients, as
``sepsis-sdk world-model eval`` does) and reports per backend:

- one-step MAE (normalised units) vs persistence and the oracle median (true dynamics: a ceiling), from
  :func:`sepsis_sdk.world_model.evaluate_world_model`;
- the share of sampled next observations that are an observed ICU-Sepsis state (exactly one of the 713
  centres), after 1 step and over 6 steps of constant-action rollouts;
- death within H (H = 3, 6) with one action held, vs the exact value (MAE, bias, Pearson), and how well
  the model ranks the 25 actions within a state (Spearman, averaged over test decision points);
- death within H under the clinicians' own policy, simulated closed-loop (each step the clinicians'
  action for the simulated observation's nearest state), vs :func:`sepsis_sdk.truth.death_within`
  (MAE, bias, Pearson over start points): the multi-step drift check;
- support vs ICU-Sepsis admissibility (AUROC), fit seconds.

On the SYNTHETIC MIMIC-IV-like cohort (``--synthetic N`` patients, seed 0, same split) it reports one-step
MAE vs persistence for each backend.

The hidden truth (states, transition matrix, the clinicians' table) is read here, in evaluation only,
through :mod:`sepsis_sdk.truth` and the ICU-Sepsis source; no model sees it.

Run (the committed results, on the shared 2-core CPU, one thread):
    python benchmarks/bench_world_model_multimodal.py --episodes 5000 20000 --synthetic 3000 \
        --out benchmarks/results/bench_world_model_multimodal.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any

import numpy as np

H_ROLL = 6


def _split(cohort):
    sp = cohort.split(0.7, 0.15, 0.15, seed=0)
    ids = list(sp.train.patient_ids.tolist()) + list(sp.validation.patient_ids.tolist())
    return cohort.select(ids), sp.test


def _fit(backend: str, train, spec: dict[str, Any]):
    t0 = time.perf_counter()
    if backend == "neighbour":
        from sepsis_sdk.world_model.neighbour_backend import NeighbourWorldModel

        wm = NeighbourWorldModel.fit(train, **spec)
    elif backend == "xgboost":
        from sepsis_sdk.world_model.xgboost_backend import XGBoostConfig, XGBoostWorldModel

        cfg = {"window": 1, "n_members": 2, "n_estimators": 60, "n_jobs": 1, **spec}
        wm = XGBoostWorldModel.fit(train, XGBoostConfig(**cfg))
    elif backend == "torch":
        import torch

        from sepsis_sdk.world_model.torch_backend import TorchConfig, TorchWorldModel

        torch.set_num_threads(1)
        cfg = {"window": 1, "n_members": 3, "hidden": 128, "epochs": 8, **spec}
        wm = TorchWorldModel.fit(train, TorchConfig(**cfg), device="cpu", threads=1)
    else:
        raise SystemExit(f"unknown backend {backend!r}")
    return wm, time.perf_counter() - t0


def _on_centres(states: np.ndarray, centres: np.ndarray) -> float:
    s = states.reshape(-1, states.shape[-1])
    s = s[~np.isnan(s).any(1)]
    if not len(s):
        return float("nan")
    view = [("", s.dtype)] * s.shape[1]
    a = np.ascontiguousarray(s).view(view).ravel()
    b = np.ascontiguousarray(centres.astype(s.dtype)).view(view).ravel()
    return float(np.isin(a, b).mean())


def _nearest_state(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    d2 = (x * x).sum(1)[:, None] + (centres * centres).sum(1)[None] - 2 * x @ centres.T
    return d2.argmin(1)


def _closed_loop(wm, test, rows, states, centres, pi, n_samples: int, horizons, seed: int) -> dict:
    """P(death within H) when the clinicians' policy is simulated on the model from ``rows``.

    Each of ``n_samples`` paths per start draws the clinicians' action for the nearest state of its
    simulated observation, adds ``survival * p_death`` of the model's one-step prediction, and moves on
    to a sampled next observation that stays in the ICU (the first surviving of 4 draws), so the estimate
    integrates hazards along paths (low variance) rather than counting sampled deaths.
    """
    from sepsis_sdk.world_model._data import cohort_batch
    from sepsis_sdk.world_model._protocol import HistoryBatch

    hb0 = cohort_batch(test, 1, rows)
    x = np.repeat(hb0.x[:, -1], n_samples, axis=0)
    st = np.repeat(hb0.static, n_samples, axis=0)
    s = np.repeat(states, n_samples)
    rng = np.random.default_rng(seed)
    cum_pi = np.cumsum(pi, axis=1)
    surv = np.ones(len(x))
    died = np.zeros(len(x))
    out = {}
    for t in range(max(horizons)):
        a = np.minimum((cum_pi[s] < rng.random(len(s))[:, None]).sum(1), 24)
        xb = x[:, None]
        hb = HistoryBatch(
            x=xb,
            mask=np.isfinite(xb),
            actions=np.full((len(x), 1), -1, dtype=np.int64),
            valid=np.ones((len(x), 1), dtype=bool),
            static=st,
        )
        p = wm.predict(hb, a)
        died += surv * p.p_death
        surv *= np.clip(1.0 - p.p_death - p.p_discharge, 0.0, 1.0)
        if t + 1 in horizons:
            out[t + 1] = died.reshape(len(rows), n_samples).mean(1)
        r = wm.rollout(hb, a[:, None, None], n_samples=4, seed=seed + 1000 * t)
        nxt = r.states[:, 0, :, 0]  # (R, 4, D)
        ok = ~np.isnan(nxt).any(-1)
        pick = np.where(ok.any(1), ok.argmax(1), 0)
        cand = nxt[np.arange(len(x)), pick]
        x = np.where(ok.any(1)[:, None], cand, x)
        s = _nearest_state(x, centres)
    return out


def _icu_record(backend, spec, episodes, cohort, n_truth, n_samples) -> dict[str, Any]:
    from sepsis_sdk.sources.icu_sepsis import resolve_policy_table
    from sepsis_sdk.truth import ICUSepsisTruth, death_within
    from sepsis_sdk.world_model import evaluate_world_model
    from sepsis_sdk.world_model._data import cohort_batch

    train, test = _split(cohort)
    wm, fit_s = _fit(backend, train, spec)
    t0 = time.perf_counter()
    rep = evaluate_world_model(
        wm, train, test, death_horizons=(3, 6), truth_states=n_truth, n_samples=n_samples, seed=0
    )
    eval_s = time.perf_counter() - t0
    truth = ICUSepsisTruth()
    rng = np.random.default_rng(1)
    rows = np.sort(rng.choice(len(test), min(n_truth, len(test)), replace=False))
    states = truth.states(test, rows)
    _p, centres = truth.next_state_distribution(test, rows[:1], np.zeros(1, dtype=np.int64))
    # share of sampled observations that are observed states: constant plans of every action
    hb = cohort_batch(test, wm.window, rows[:100])
    t1 = time.perf_counter()
    ro = wm.rollout(hb, np.repeat(np.arange(25)[:, None], H_ROLL, axis=1), n_samples=8, seed=0)
    roll_s = time.perf_counter() - t1
    pi = resolve_policy_table("clinician")
    loop = _closed_loop(wm, test, rows, states, centres, pi, n_samples, (3, 6), seed=0)
    closed = {}
    for h, est in loop.items():
        ex = death_within("clinician", h)[states]
        closed[str(h)] = {
            "mae": float(np.abs(est - ex).mean()),
            "bias": float((est - ex).mean()),
            "pearson": float(np.corrcoef(est, ex)[0, 1]) if est.std() > 0 else float("nan"),
            "mean_truth": float(ex.mean()),
            "mean_model": float(est.mean()),
        }
    o = rep["one_step"]["overall"]
    t = rep["icu_sepsis_truth"]
    return {
        "cohort": "icu-sepsis",
        "episodes": episodes,
        "seed": 0,
        "backend": backend,
        "spec": spec,
        "info": {k: v for k, v in getattr(wm, "info", {}).items() if k not in ("curve",)},
        "fit_s": round(fit_s, 2),
        "eval_s": round(eval_s, 2),
        "rollout_100x25x8x6_s": round(roll_s, 3),
        "mae": o["model"]["mae_norm"],
        "mae_persistence": o["persistence"]["mae_norm"],
        "mae_mean_change": o["mean_change"]["mae_norm"],
        "mae_oracle_median": t["oracle_one_step"]["median_mae_norm"],
        "coverage90": rep["calibration"]["coverage"],
        "death_auroc_next_step": rep["termination"]["death"]["auroc"],
        "on_centres_step1": _on_centres(ro.states[:, :, :, :1], centres),
        "on_centres_6_steps": _on_centres(ro.states, centres),
        "constant_plan": {
            h: {
                k: v[k]
                for k in ("mae", "bias", "pearson", "within_state_spearman", "regret_of_model_safest_action")
            }
            for h, v in t["by_horizon"].items()
        },
        "clinician_policy": closed,
        "support_vs_admissible_auroc": t["support_vs_admissible"]["auroc"],
    }


def _synthetic_record(backend, spec, patients) -> dict[str, Any]:
    from sepsis_sdk.sources.synthetic import synthesize_cohort
    from sepsis_sdk.world_model import evaluate_world_model

    cohort = synthesize_cohort(patients, seed=0)
    train, test = _split(cohort)
    if backend == "xgboost":
        spec = {"window": 2, **spec}
    if backend == "torch":
        spec = {"window": 4, **spec}
    wm, fit_s = _fit(backend, train, spec)
    rep = evaluate_world_model(wm, train, test, n_samples=8, seed=0)
    o = rep["one_step"]["overall"]
    r = rep["rollout"]
    return {
        "cohort": "synthetic-mimic-iv (SYNTHETIC)",
        "episodes": patients,
        "seed": 0,
        "backend": backend,
        "spec": spec,
        "info": {k: v for k, v in getattr(wm, "info", {}).items() if k not in ("curve",)},
        "fit_s": round(fit_s, 2),
        "mae": o["model"]["mae_norm"],
        "mae_persistence": o["persistence"]["mae_norm"],
        "mae_mean_change": o["mean_change"]["mae_norm"],
        "rmse": o["model"]["rmse_norm"],
        "coverage90": rep["calibration"]["coverage"],
        "death_auroc_next_step": rep["termination"]["death"]["auroc"],
        "rollout_mae_6_steps": r["model"][-1] if r["model"] else None,
        "rollout_mae_6_steps_persistence": r["persistence"][-1] if r["persistence"] else None,
    }


def _parse_spec(text: str) -> tuple[str, dict[str, Any]]:
    """``backend[:field=value,field=value]`` -> (backend, {field: value})."""
    backend, _, rest = text.partition(":")
    spec: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        k, _, v = item.partition("=")
        try:
            spec[k] = json.loads(v)
        except json.JSONDecodeError:
            spec[k] = v
    return backend, spec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--episodes", type=int, nargs="*", default=[5000, 20000])
    ap.add_argument(
        "--models",
        nargs="+",
        default=["neighbour", "xgboost", "torch"],
        help='backend[:field=value,...], e.g. neighbour:k=5 neighbour:target="delta"',
    )
    ap.add_argument("--synthetic", type=int, default=3000, help="SYNTHETIC patients (0 = skip)")
    ap.add_argument("--synthetic-models", nargs="*", default=None, help="default: --models")
    ap.add_argument("--truth-states", type=int, default=400)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from sepsis_sdk.sources.icu_sepsis import sample_cohort

    records: list[dict[str, Any]] = []
    meta = {"machine": f"{platform.platform()}, {os.cpu_count()} cores", "command": " ".join(os.sys.argv)}

    def emit(rec: dict[str, Any]) -> None:
        records.append(rec)
        print(json.dumps(rec), flush=True)
        if args.out:
            with open(args.out, "w") as f:
                json.dump({"meta": meta, "records": records}, f, indent=1)

    for n in args.episodes:
        cohort = sample_cohort(n, seed=0)
        for text in args.models:
            backend, spec = _parse_spec(text)
            emit(_icu_record(backend, spec, n, cohort, args.truth_states, args.samples))
    if args.synthetic:
        for text in args.synthetic_models if args.synthetic_models is not None else args.models:
            backend, spec = _parse_spec(text)
            emit(_synthetic_record(backend, spec, args.synthetic))


if __name__ == "__main__":
    main()
