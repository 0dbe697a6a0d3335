"""The stage-II teacher's action in each of the 713 ICU-Sepsis states, as a ``.npy`` table.

``agent_ablation.py --teacher`` reads it for the "agrees with teacher" column of docs/training.md. The
teacher is the planner the embedded agents were cloned from (:class:`~sepsis_sdk.training.llm_data.Teacher`
on the neighbour world model and the fitted behaviour continuation of the same cohort); it decides from each
state's one-step history, the history the Markov sweep shows the agent. Nothing here reads the truth; the
printed exact value is the scoring step (0.8439 for the default cohort of 20,000 episodes, seed 0).

    python benchmarks/experiments/teacher_table.py --out teacher_table.npy      # ~2 min on one core
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=20000, help="cohort for the world model / teacher")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help=".npy file of 713 action indices")
    args = ap.parse_args()

    from sepsis_sdk.training.embedded import teacher_world
    from sepsis_sdk.training.llm_data import Teacher
    from sepsis_sdk.truth import true_value
    from sepsis_sdk.truth._icu_sepsis import load_mdp, state_values
    from sepsis_sdk.truth.agent import state_histories

    t0 = time.perf_counter()
    wm, cont = teacher_world(episodes=args.episodes, seed=args.seed)  # the world the PSR sweep simulates in
    teacher = Teacher(wm, seed=args.seed, continuation=cont)
    table = np.asarray(teacher.choose(state_histories(range(713))), dtype=np.int64)
    np.save(args.out, table)
    value = float(load_mdp().d0 @ state_values(table))  # scoring only
    clin, opt = true_value("clinician_raw"), true_value("optimal")
    print(f"teacher table: {len(set(table.tolist()))} distinct actions, exact value {value:.4f} "
          f"({(value - clin) / (opt - clin):.1%} of the gap), {time.perf_counter() - t0:.0f} s")  # fmt: skip


if __name__ == "__main__":
    main()
