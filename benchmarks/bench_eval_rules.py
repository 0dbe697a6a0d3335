"""Rule engine: vectorised cohort evaluation vs a per-decision loop (RuleContext.from_history + check).

Run: ``.venv/bin/python benchmarks/bench_eval_rules.py --episodes 2000 --loop-decisions 2000``
Prints decisions per second of both paths, measured in the same run, and checks they agree.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=2000)
    ap.add_argument("--loop-decisions", type=int, default=2000)
    args = ap.parse_args()

    from sepsis_sdk.safety import RuleContext, load_rules
    from sepsis_sdk.sources.icu_sepsis import sample_cohort

    cohort = sample_cohort(args.episodes, seed=0)
    rules = load_rules()
    t0 = time.perf_counter()
    res = rules.evaluate_cohort(cohort)
    vec = time.perf_counter() - t0
    probs = np.full((len(cohort), 25), 1 / 25)
    t0 = time.perf_counter()
    rules.evaluate_cohort(cohort, probs)
    vec25 = time.perf_counter() - t0

    n = 0
    mismatch = 0
    t0 = time.perf_counter()
    for ep in cohort.episodes():
        for t in range(len(ep)):
            ctx = RuleContext.from_history(ep.history(t), ep.steps[t].action, cohort.schema, rules=rules)
            for r in rules.check(ctx):
                k = res.row(r.rule_id)
                mismatch += bool(r.violated) != bool(res.violated[k, n])
            n += 1
            if n >= args.loop_decisions:
                break
        if n >= args.loop_decisions:
            break
    loop = time.perf_counter() - t0
    print(f"decisions: {len(cohort)} (vectorised), {n} (loop); rules: {len(rules)}")
    print(f"vectorised, recorded actions : {len(cohort) / vec:12.0f} decisions/s")
    print(f"vectorised, 25-action probs  : {len(cohort) / vec25:12.0f} decisions/s")
    print(f"per-decision loop            : {n / loop:12.0f} decisions/s")
    print(f"speed-up (recorded actions)  : {(len(cohort) / vec) / (n / loop):12.0f}x; mismatches: {mismatch}")


if __name__ == "__main__":
    main()
