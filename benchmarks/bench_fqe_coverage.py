"""Benchmark: coverage of the FQE (and DR) intervals of ``evaluate_ope`` against exact ICU-Sepsis truth.

    .venv/bin/python benchmarks/bench_fqe_coverage.py [--episodes 500] [--seeds 4] [--refits 30]
        [--policies clinician,random,optimal] [--out benchmarks/results/fqe_coverage.json]

For each (policy, seed): sample ``--episodes`` ICU-Sepsis episodes under the clinicians, fit the count
behaviour model, and estimate the policy's value with FQE and DR three ways:

- ``fixed``: the default, percentile bootstrap over patients (200 resamples) with the Q-model held fixed;
- ``refit_percentile``: ``q_refits`` resamples, FQE refitted on each, percentile interval;
- ``refit_basic``: the same refits, the basic interval ``[2 v - q_hi, 2 v - q_lo]`` (default of
  ``q_refits``; it also corrects the bias the refits show).

A run "covers" when the 95 % interval contains the exact true value (linear solve). The output lists every
run and the coverage per method; with ``seeds x policies`` runs the coverage figures are counts out of that
number (a binomial proportion: 12 runs cannot tell 90 % from 95 %).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=500)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--refits", type=int, default=30)
    ap.add_argument("--policies", default="clinician,random,optimal")
    ap.add_argument("--out", default="benchmarks/results/fqe_coverage.json")
    args = ap.parse_args()

    from sepsis_sdk.evaluation import evaluate_ope, fit_behaviour_policy
    from sepsis_sdk.sources.icu_sepsis import sample_cohort
    from sepsis_sdk.truth import builtin_policy, true_value

    runs = []
    t0 = time.time()
    for seed in range(args.seeds):
        cohort = sample_cohort(args.episodes, seed=100 + seed)
        sid = cohort.data["state_id"].to_numpy()
        behaviour = fit_behaviour_policy(cohort, kind="tabular")
        for name in args.policies.split(","):
            truth = true_value(name)
            target = builtin_policy(name)[sid]
            row = {"policy": name, "seed": 100 + seed, "truth": truth}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # support warnings are expected for deterministic targets
                t = time.time()
                fixed = evaluate_ope(cohort, target, behaviour=behaviour, estimators=("fqe", "dr"),
                                     n_bootstrap=200, seed=seed)  # fmt: skip
                row["seconds_fixed"] = round(time.time() - t, 2)
                t = time.time()
                basic = evaluate_ope(cohort, target, behaviour=behaviour, estimators=("fqe", "dr"),
                                     n_bootstrap=0, seed=seed, q_refits=args.refits)  # fmt: skip
                row["seconds_refit"] = round(time.time() - t, 2)
            # the percentile interval from the same refits (no second set of fits)
            for est in ("fqe", "dr"):
                e_fixed, e_basic = fixed[est], basic[est]
                samples = basic.bootstrap[est]
                lo_p, hi_p = np.nanpercentile(samples, [2.5, 97.5])
                row[est] = {
                    "value": e_fixed.value,
                    "fixed": [e_fixed.ci_low, e_fixed.ci_high],
                    "refit_percentile": [float(lo_p), float(hi_p)],
                    "refit_basic": [e_basic.ci_low, e_basic.ci_high],
                }
            runs.append(row)
            print(name, row["seed"], f"truth {truth:.4f}",
                  {k: [round(x, 4) for x in v] if isinstance(v, list) else round(v, 4)
                   for k, v in row["fqe"].items()}, flush=True)  # fmt: skip
    coverage = {}
    for est in ("fqe", "dr"):
        for method in ("fixed", "refit_percentile", "refit_basic"):
            hits = [r[est][method][0] <= r["truth"] <= r[est][method][1] for r in runs]
            widths = [r[est][method][1] - r[est][method][0] for r in runs]
            coverage[f"{est}/{method}"] = {
                "covered": int(sum(hits)),
                "runs": len(hits),
                "mean_width": float(np.mean(widths)),
                "by_policy": {
                    p: f"{sum(h for h, r in zip(hits, runs, strict=True) if r['policy'] == p)}/"
                    f"{sum(r['policy'] == p for r in runs)}"
                    for p in args.policies.split(",")
                },
            }
    out = {
        "command": "benchmarks/bench_fqe_coverage.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"),
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "level": 0.95,
        "seconds": round(time.time() - t0, 1),
        "coverage": coverage,
        "runs": runs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    for k, v in coverage.items():
        print(
            f"{k:22s} covered {v['covered']}/{v['runs']}  mean width {v['mean_width']:.3f}  {v['by_policy']}"
        )
    print(f"{out['seconds']} s -> {args.out}")


if __name__ == "__main__":
    main()
