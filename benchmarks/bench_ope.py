"""Benchmark: vectorised OPE bootstrap vs a straightforward per-trajectory Python loop, same run.

    .venv/bin/python benchmarks/bench_ope.py [--episodes 10800] [--n-bootstrap 1000] [--loop-resamples 20]
        [--against GIT_REV [--repeats 5]]

Both compute WIS, WPDIS, DR and WDR (gamma = 1) on the same ICU-Sepsis cohort (about 100k transitions)
with the same Q-values. The loop resamples patients and walks every drawn trajectory in Python; it is
timed on ``--loop-resamples`` resamples and scaled linearly to ``--n-bootstrap`` (each resample costs
the same). The vectorised path is ``evaluate_ope`` (count matrix x per-episode summaries) on all
``--n-bootstrap`` resamples, plus PHWIS and FQE. The loop's point estimates are checked against the
vectorised ones.

``--against GIT_REV`` also times ``evaluate_ope`` of ``sepsis_sdk/evaluation/ope.py`` as it was at that
revision (loaded from git into a separate module) on the same inputs, alternating the two ``--repeats``
times, checks that both give identical numbers and prints the ratio of their best times (before / now).
"""

from __future__ import annotations

import argparse
import itertools
import platform
import time

import numpy as np


def loop_estimates(episodes: list[dict[str, np.ndarray]], draw: np.ndarray) -> dict[str, float]:
    """WIS, WPDIS, DR, WDR over the episodes ``draw`` (indices, with repeats), one trajectory at a time.

    Each trajectory is walked over its own steps only; the weight it carries after it ends is added to
    later denominators through one running sum at the end (not by padding every episode).
    """
    horizon = max(len(episodes[i]["w"]) for i in draw)
    n = len(draw)
    wis_num = wis_den = dr_sum = 0.0
    pd_num = [0.0] * horizon
    pd_den = [0.0] * horizon
    q_num = [0.0] * horizon
    v_num = [0.0] * horizon
    carried = [0.0] * (horizon + 1)  # weight of episodes finished before step t
    for i in draw:
        ep = episodes[i]
        w, rew, qs, vs = ep["w"], ep["r"], ep["q"], ep["v"]
        rho_prev = 1.0
        dr = 0.0
        ret = 0.0
        for t in range(len(w)):
            rho = rho_prev * w[t]
            r, q, v = rew[t], qs[t], vs[t]
            pd_num[t] += rho * r
            pd_den[t] += rho
            q_num[t] += rho * q
            v_num[t] += rho_prev * v
            dr += rho * (r - q) + rho_prev * v
            ret += r
            rho_prev = rho
        carried[len(w)] += rho_prev
        wis_num += rho_prev * ret
        wis_den += rho_prev
        dr_sum += dr
    running = 0.0
    for t in range(horizon):
        running += carried[t]
        pd_den[t] += running
    wpdis = sum(a / b for a, b in zip(pd_num, pd_den, strict=True) if b > 0)
    wdr = 0.0
    prev_den = float(n)
    for t in range(horizon):
        if pd_den[t] > 0:
            wdr += (pd_num[t] - q_num[t]) / pd_den[t]
        if prev_den > 0:
            wdr += v_num[t] / prev_den
        prev_den = pd_den[t]
    return {"wis": wis_num / wis_den, "wpdis": wpdis, "dr": dr_sum / n, "wdr": wdr}


def load_ope_at(rev: str):
    """``sepsis_sdk/evaluation/ope.py`` as of git revision ``rev``, imported as a separate module."""
    import importlib.util
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    src = subprocess.run(["git", "show", f"{rev}:sepsis_sdk/evaluation/ope.py"], check=True,
                         capture_output=True, text=True).stdout  # fmt: skip
    path = Path(tempfile.mkdtemp()) / "ope_before.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("ope_before", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["ope_before"] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


def compare_against(rev: str, cohort, pe, pb, q, n_bootstrap: int, repeats: int) -> None:
    """Best-of-``repeats`` time of all six estimators with ``n_bootstrap`` resamples, then and now."""
    from sepsis_sdk.evaluation.ope import evaluate_ope

    old = load_ope_at(rev).evaluate_ope
    best = {"before": float("inf"), "now": float("inf")}
    out = {}
    for _ in range(repeats):
        for label, fn in (("before", old), ("now", evaluate_ope)):
            t0 = time.perf_counter()
            out[label] = fn(cohort, pe, behaviour=pb, q_model=q, n_bootstrap=n_bootstrap, seed=0)
            best[label] = min(best[label], time.perf_counter() - t0)
    same = out["before"].to_dict() == out["now"].to_dict() and all(
        np.array_equal(out["before"].bootstrap[k], out["now"].bootstrap[k], equal_nan=True)
        for k in out["now"].bootstrap
    )
    print(f"against {rev}: 6 estimators, {n_bootstrap} resamples, best of {repeats}: "
          f"before {best['before']:.3f} s, now {best['now']:.3f} s, "
          f"ratio before/now {best['before'] / best['now']:.2f}; identical numbers: {same}")  # fmt: skip


def main() -> None:
    from sepsis_sdk.evaluation import KnownBehaviour, evaluate_ope, fit_fqe, target_probs_from_table
    from sepsis_sdk.evaluation.validation import validation_policies
    from sepsis_sdk.sources.icu_sepsis import sample_cohort

    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=10_800)
    ap.add_argument("--n-bootstrap", type=int, default=1000)
    ap.add_argument("--loop-resamples", type=int, default=20)
    ap.add_argument("--against", default=None, help="git revision whose ope.py to time on the same inputs")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    cohort = sample_cohort(args.episodes, seed=0)
    pe = target_probs_from_table(cohort, validation_policies()["clinician_eps0.3"])
    pb = KnownBehaviour.from_cohort(cohort).taken_probabilities(cohort)
    q = fit_fqe(cohort, pe, model="tabular").q_cohort(cohort)
    print(
        f"cohort: {cohort.n_patients} episodes, {len(cohort)} transitions; machine: {platform.processor() or platform.machine()}"
    )

    t0 = time.perf_counter()
    res = evaluate_ope(cohort, pe, behaviour=pb, q_model=q, n_bootstrap=args.n_bootstrap, seed=0)
    t_vec = time.perf_counter() - t0
    t0 = time.perf_counter()
    evaluate_ope(cohort, pe, behaviour=pb, q_model=q, n_bootstrap=args.n_bootstrap, seed=0,
                        estimators=("wis", "wpdis", "dr", "wdr"))  # fmt: skip
    t_vec4 = time.perf_counter() - t0

    n = len(cohort)
    rows = np.arange(n)
    ratio = pe[rows, cohort.actions] / pb
    v = (pe * q).sum(1)
    qt = q[rows, cohort.actions]
    r = cohort.data["reward"].to_numpy()
    ep = cohort.episode_index()
    bounds = np.r_[0, np.flatnonzero(np.diff(ep)) + 1, n]
    episodes = [  # plain Python lists: the loop indexes them element by element
        {"w": ratio[a:b].tolist(), "r": r[a:b].tolist(), "q": qt[a:b].tolist(), "v": v[a:b].tolist()}
        for a, b in itertools.pairwise(bounds)
    ]
    point = loop_estimates(episodes, np.arange(len(episodes)))
    for k, val in point.items():
        assert abs(val - res[k].value) < 1e-9, (k, val, res[k].value)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(args.loop_resamples):
        loop_estimates(episodes, rng.integers(0, len(episodes), len(episodes)))
    t_loop = (time.perf_counter() - t0) / args.loop_resamples * args.n_bootstrap

    print(
        f"vectorised, 6 estimators (WIS WPDIS PHWIS DR WDR FQE), {args.n_bootstrap} resamples: {t_vec:.2f} s"
    )
    print(f"vectorised, 4 estimators (WIS WPDIS DR WDR), {args.n_bootstrap} resamples: {t_vec4:.2f} s")
    print(f"per-trajectory loop, 4 estimators, {args.n_bootstrap} resamples (timed on {args.loop_resamples}, "
          f"scaled): {t_loop:.1f} s")  # fmt: skip
    print(f"speed-up (same 4 estimators): {t_loop / t_vec4:.0f}x")
    if args.against:
        compare_against(args.against, cohort, pe, pb, q, args.n_bootstrap, args.repeats)
    print(
        res.to_frame()[["estimator", "value", "ci_low", "ci_high", "lower_bound_5pct", "ess"]]
        .round(4)
        .to_string()
    )


if __name__ == "__main__":
    main()
