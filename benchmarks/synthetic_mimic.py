"""Benchmark: synthetic MIMIC-IV-like cohort generation, MIMIC-IV file loading, and Monte Carlo truth.

Baseline (same run): sampling the same number of ICU-Sepsis episodes with the vectorised MDP sampler.

Run: .venv/bin/python benchmarks/synthetic_mimic.py [n_patients]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path


def _best(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(n: int = 1000) -> None:
    from sepsis_sdk.sources.icu_sepsis import load_mdp, sample_cohort
    from sepsis_sdk.sources.mimic import load_mimic_iv, validate_file, write_mimic_iv
    from sepsis_sdk.sources.synthetic import SyntheticSepsisModel, synthesize_cohort

    load_mdp()  # warm the MDP cache so the baseline measures sampling only
    base = _best(lambda: sample_cohort(n, seed=0))
    syn = _best(lambda: synthesize_cohort(n, seed=0))
    cohort = synthesize_cohort(n, seed=0)
    with tempfile.TemporaryDirectory() as d:
        csv = write_mimic_iv(cohort, Path(d) / "episodes.csv")
        pq = write_mimic_iv(cohort, Path(d) / "episodes.parquet")
        load_csv = _best(lambda: load_mimic_iv(csv))
        load_pq = _best(lambda: load_mimic_iv(pq))
        val = _best(lambda: validate_file(csv))
    model = SyntheticSepsisModel()
    t0 = time.perf_counter()
    res = model.true_value("clinician-like", n_patients=5000, seed=1)
    mc = time.perf_counter() - t0
    hist = _best(lambda: model.true_value(lambda h: 10, n_patients=500, seed=1), repeat=1)
    print(f"patients={n} rows={len(cohort)}")
    print(f"baseline  sample_icu_sepsis({n})            {base * 1000:8.1f} ms")
    print(f"synthesize_cohort({n})                      {syn * 1000:8.1f} ms  ({syn / base:.1f}x baseline)")
    print(
        f"load_mimic_iv CSV                            {load_csv * 1000:8.1f} ms  ({load_csv / base:.1f}x baseline)"
    )
    print(
        f"load_mimic_iv Parquet                        {load_pq * 1000:8.1f} ms  ({load_pq / base:.1f}x baseline)"
    )
    print(f"validate_file CSV                            {val * 1000:8.1f} ms")
    print(f"true_value(clinician-like, 5000 patients)    {mc * 1000:8.1f} ms  value {res.mean:.4f} "
          f"[{res.ci_low:.4f}, {res.ci_high:.4f}]")  # fmt: skip
    print(f"true_value(history callable, 500 patients)   {hist * 1000:8.1f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
