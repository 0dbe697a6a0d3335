"""Batched world-model rollouts vs a one-patient-one-step-at-a-time loop over the same model.

Both paths run in the same process on the same trained model, so the ratio is meaningful on a busy
machine even when absolute rates are noise. A "patient-step" is one simulated 4-hour step of one sampled
future of one patient.

Run:
    python benchmarks/bench_world_model.py                      # torch and xgboost, small models, CPU
    python benchmarks/bench_world_model.py --backend torch --device cuda
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np


def _train(backend: str, episodes: int, device: str | None, threads: int):
    from sepsis_sdk.sources.icu_sepsis import sample_cohort
    from sepsis_sdk.world_model import train_world_model

    cohort = sample_cohort(episodes, seed=0)
    if backend == "torch":
        return train_world_model(cohort, "torch", device=device, threads=threads, epochs=2, window=4), cohort
    if backend == "xgboost":
        return train_world_model(
            cohort, "xgboost", threads=threads, n_estimators=50, n_members=3, window=4
        ), cohort
    from sepsis_sdk.world_model import FakeWorldModel

    return FakeWorldModel(cohort.schema), cohort


def bench(
    backend: str,
    *,
    episodes: int,
    patients: int,
    plans: int,
    samples: int,
    horizon: int,
    loop_steps: int,
    device: str | None,
    threads: int,
) -> dict:
    from sepsis_sdk.types import Observation

    wm, cohort = _train(backend, episodes, device, threads)
    hs = [ep.history(min(2, len(ep) - 1)) for ep in cohort.head(patients).episodes()]
    rng = np.random.default_rng(0)
    plan_arr = rng.integers(0, 25, (len(hs), plans, horizon))
    wm.rollout(hs[:2], plan_arr[:2], n_samples=2, seed=0)  # warm-up (CUDA context, caches)
    t0 = time.perf_counter()
    wm.rollout(hs, plan_arr, n_samples=samples, seed=1)
    t_batched = time.perf_counter() - t0
    n_batched = len(hs) * plans * samples * horizon

    # the naive way: one patient, one step, one sample per call, feeding each sampled state back
    done = 0
    t0 = time.perf_counter()
    i = 0
    while done < loop_steps:
        h = hs[i % len(hs)]
        for step in range(horizon):
            a = int(plan_arr[i % len(hs), 0, step])
            r = wm.rollout([h], [[a]], n_samples=1, seed=done)
            done += 1
            nxt = r.states[0, 0, 0, 0]
            if np.isnan(nxt).all() or done >= loop_steps:
                break
            obs = Observation(t=h.t + 1, values=tuple(nxt.tolist()))
            h = h.model_copy(
                update={
                    "observations": (*h.observations, obs)[-wm.window :],
                    "actions": (*h.actions, a)[-(wm.window - 1) :] if wm.window > 1 else (),
                }
            )
        i += 1
    t_loop = time.perf_counter() - t0
    batched_rate = n_batched / t_batched
    loop_rate = done / t_loop
    return {
        "backend": backend,
        "device": getattr(wm, "device", "cpu"),
        "members": wm.n_members,
        "batched": {
            "patients": len(hs),
            "plans": plans,
            "samples": samples,
            "horizon": horizon,
            "patient_steps": n_batched,
            "seconds": round(t_batched, 3),
            "patient_steps_per_s": round(batched_rate, 1),
        },
        "loop": {
            "patient_steps": done,
            "seconds": round(t_loop, 3),
            "patient_steps_per_s": round(loop_rate, 1),
        },
        "ratio": round(batched_rate / loop_rate, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", default="all", choices=["all", "torch", "xgboost", "fake"])
    ap.add_argument(
        "--episodes", type=int, default=300, help="ICU-Sepsis episodes to train the benchmark model on"
    )
    ap.add_argument("--patients", type=int, default=100)
    ap.add_argument("--plans", type=int, default=5)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--horizon", type=int, default=6)
    ap.add_argument("--loop-steps", type=int, default=120)
    ap.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    backends = ["torch", "xgboost"] if args.backend == "all" else [args.backend]
    print(f"# {platform.platform()}, {platform.processor() or 'cpu'}")
    for b in backends:
        res = bench(
            b,
            episodes=args.episodes,
            patients=args.patients,
            plans=args.plans,
            samples=args.samples,
            horizon=args.horizon,
            loop_steps=args.loop_steps,
            device=args.device,
            threads=args.threads,
        )
        print(json.dumps(res))
        print(
            f"{b:8s} batched {res['batched']['patient_steps_per_s']:>10.0f} patient-steps/s | loop "
            f"{res['loop']['patient_steps_per_s']:>8.1f} patient-steps/s | ratio {res['ratio']:.0f}x"
        )


if __name__ == "__main__":
    main()
