"""Rule engine now vs at a git commit, in one process on the same cohort (the bench_eval_rules workload).

Run: ``.venv/bin/python benchmarks/bench_safety_vs_commit.py --commit 9cf69ef^ --episodes 2000 --loop 2000``

The commit's ``sepsis_sdk/safety/{_engine,_expr,_model}.py`` are extracted with ``git show`` into a temporary
package and imported next to the current engine. Each path (cohort with recorded actions, cohort with 25-action
probabilities, ``from_history`` + ``check``, ``check`` alone, the 25-action table) runs interleaved, best of
``--reps`` in process CPU time (the machine is shared). It asserts identical arrays, verdicts and reasons.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _old_engine(commit: str, where: Path):
    pkg = where / "old_safety"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name in ("_engine", "_expr", "_model"):
        src = subprocess.run(
            ["git", "show", f"{commit}:sepsis_sdk/safety/{name}.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        (pkg / f"{name}.py").write_text(src.replace("sepsis_sdk.safety._", "old_safety._"))
    sys.path.insert(0, str(where))
    return importlib.import_module("old_safety._engine")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--commit", default="9cf69ef^")
    ap.add_argument("--episodes", type=int, default=2000)
    ap.add_argument("--loop", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()

    from sepsis_sdk.safety import _engine as new_engine
    from sepsis_sdk.sources.icu_sepsis import sample_cohort

    tmp = tempfile.TemporaryDirectory()
    eng = {"old": _old_engine(args.commit, Path(tmp.name)), "new": new_engine}
    cohort = sample_cohort(args.episodes, seed=0)
    probs = np.full((len(cohort), 25), 1 / 25)
    rules = {k: m.load_rules() for k, m in eng.items()}
    hist = [(h, int(a)) for h, a in zip(cohort.histories(), cohort.actions, strict=True)][: args.loop]
    ctxs = {
        k: [eng[k].RuleContext.from_history(h, a, cohort.schema, rules=rules[k]) for h, a in hist]
        for k in eng
    }

    def loop(k):
        return [
            [
                bool(r.violated)
                for r in rules[k].check(eng[k].RuleContext.from_history(h, a, cohort.schema, rules=rules[k]))
            ]
            for h, a in hist
        ]

    paths = {
        "cohort, recorded actions": (lambda k: rules[k].evaluate_cohort(cohort), len(cohort)),
        "cohort, 25-action probs": (lambda k: rules[k].evaluate_cohort(cohort, probs), len(cohort)),
        "from_history + check": (loop, len(hist)),
        "check": (lambda k: [[r.reason for r in rules[k].check(c)] for c in ctxs[k]], len(hist)),
        "25-action table": (lambda k: [rules[k].action_violations(c) for c in ctxs[k]], len(hist)),
    }
    best = {(p, k): np.inf for p in paths for k in eng}
    out = {}
    for _ in range(args.reps):
        for p, (fn, _n) in paths.items():
            for k in eng:
                t0 = time.process_time()
                out[p, k] = fn(k)
                best[p, k] = min(best[p, k], time.process_time() - t0)
    for p in ("cohort, recorded actions", "cohort, 25-action probs"):
        a, b = out[p, "old"], out[p, "new"]
        assert all(
            np.array_equal(getattr(a, f), getattr(b, f)) for f in ("applicable", "triggered", "violated")
        )
        assert all(np.allclose(a.definitions[d][1], b.definitions[d][1]) for d in a.definitions)
    for p in ("from_history + check", "check"):
        assert out[p, "old"] == out[p, "new"]
    for a, b in zip(out["25-action table", "old"], out["25-action table", "new"], strict=True):
        assert all(
            (a[r] is None) == (b[r] is None) and (a[r] is None or np.array_equal(a[r], b[r])) for r in a
        )
    print(f"{len(cohort)} cohort rows, {len(hist)} single decisions, best of {args.reps}; identical results")
    print(f"{'path':26s} {'old dec/s':>12s} {'new dec/s':>12s} {'new/old':>8s}")
    for p, (_fn, n) in paths.items():
        o, w = n / best[p, "old"], n / best[p, "new"]
        print(f"{p:26s} {o:12.0f} {w:12.0f} {w / o:8.2f}")


if __name__ == "__main__":
    main()
