"""Foundation benchmarks: import time of ``sepsis_sdk`` and ICU-Sepsis cohort sampling speed.

Run: ``.venv/bin/python benchmarks/bench_foundation.py``

- import: median wall time of ``python -c "import sepsis_sdk"`` against a bare ``python -c "pass"``
  in the same run (the SDK's own cost is the difference).
- sampling: the vectorised sampler (all episodes advance together) against the straightforward
  baseline, one episode at a time through the Gymnasium environment ``Sepsis/ICU-Sepsis-v2``, on the
  same number of episodes; reported as episodes/s and the ratio.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time


def _median_wall(code: str, n: int = 7) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_import() -> dict:
    bare = _median_wall("pass")
    sdk = _median_wall("import sepsis_sdk")
    cohort = _median_wall("import sepsis_sdk; sepsis_sdk.Cohort")
    return {
        "bare_python_s": bare,
        "import_sepsis_sdk_s": sdk,
        "sdk_cost_s": sdk - bare,
        "first_use_of_Cohort_s": cohort - bare,
    }


def bench_sampling(n_episodes: int = 2000) -> dict:
    import contextlib
    import io
    import warnings

    import gymnasium
    import numpy as np

    from sepsis_sdk.sources.icu_sepsis import load_mdp, sample_cohort
    from sepsis_sdk.truth import builtin_policy

    load_mdp()
    t0 = time.perf_counter()
    sample_cohort(n_episodes, seed=0)
    fast = time.perf_counter() - t0

    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        import icu_sepsis  # noqa: F401

        env = gymnasium.make("Sepsis/ICU-Sepsis-v2")
    pi = builtin_policy("clinician")
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for i in range(n_episodes):
        s, _ = env.reset(seed=i)
        done = False
        while not done:
            a = int(rng.choice(25, p=pi[s]))
            s, _, term, trunc, _ = env.step(a)
            done = term or trunc
    slow = time.perf_counter() - t0
    return {
        "episodes": n_episodes,
        "vectorised_eps_per_s": n_episodes / fast,
        "gym_loop_eps_per_s": n_episodes / slow,
        "ratio": slow / fast,
    }


if __name__ == "__main__":
    imp = bench_import()
    print("import:", {k: round(v, 4) for k, v in imp.items()})
    samp = bench_sampling()
    print("sampling:", {k: round(v, 1) if isinstance(v, float) else v for k, v in samp.items()})
