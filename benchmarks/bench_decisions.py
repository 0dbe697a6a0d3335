"""Decision value on ICU-Sepsis: exact true value of every policy fitted on a sampled clinician cohort.

For each cohort size and seed: sample episodes from the clinicians' policy, fit every policy on the
whole cohort (the truth needs no held-out split: it is exact), and score each by its exact true value
(``sepsis_sdk.truth.true_value``, a linear solve over the 713 states). Records fit and decision times.

Policies (``--policies``, default all but the slow ones marked *):
    clinicians          the stored clinician policy the cohort was sampled from (reference)
    behaviour           the fitted behaviour model (what the planner continues with)
    counting            fit_tabular_policy defaults: one cluster per state, LCB inside the backup
    tabular-300         the AI-Clinician recipe as before: 300 k-means clusters, no pessimism
    planner-oracle      one-step improvement with OracleWorldModel (true dynamics; validates the planner)
    planner-oracle-2    the same with lookahead 2
    planner-neighbour   one-step improvement with the neighbour world model (exact on its support)
    planner-neighbour-2 the same with lookahead 2
    planner-oracle-pi   pessimistic policy iteration to convergence (lookahead="converge") with the oracle
    planner-neighbour-pi  the same with the sharp neighbour model (k=1, no prior; counts of exact
                        look-alikes only, count_scale=0)
    planner-neighbour-pi-borrow  the same, counting look-alikes by the support kernel (count_scale=1):
                        unseen (state, action) pairs borrow the nearest state's law
    planner-xgboost*    one-step improvement with the xgboost world model (Monte Carlo)
    planner-torch*      one-step improvement with the torch world model (Monte Carlo)
    cql* / bcq*         d3rlpy offline RL

Usage:
    python benchmarks/bench_decisions.py --episodes 5000 20000 --seeds 0 1 2 --out benchmarks/results/decisions.json

The output is a JSON list of records ``{policy, episodes, seed, true_value, fit_s, decide_s, ...}``,
rewritten after every record (an interrupted run keeps what it finished; ``--resume`` skips those).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

FAST = (
    "clinicians", "behaviour", "counting", "tabular-300", "planner-oracle", "planner-oracle-2",
    "planner-neighbour", "planner-neighbour-2", "planner-oracle-pi", "planner-neighbour-pi",
)  # fmt: skip
SLOW = ("planner-xgboost", "planner-torch", "cql", "bcq")


def state_histories() -> list[Any]:
    """One one-step history per clinical state (its observation): a Markov policy's whole table."""
    from sepsis_sdk.sources.icu_sepsis import N_CLINICAL, icu_sepsis_schema, load_mdp
    from sepsis_sdk.types import Observation, PatientHistory

    obs = load_mdp().observation(np.arange(N_CLINICAL))
    names = tuple(icu_sepsis_schema().names)
    return [
        PatientHistory(
            patient_id=f"state-{s}",
            observations=(Observation(t=0, values=tuple(obs[s])),),
            feature_names=names,
        )
        for s in range(N_CLINICAL)
    ]


def _planner(world_model: Any, cohort: Any, lookahead: int | str, seed: int) -> Any:
    from sepsis_sdk.policies.planner import WorldModelPlannerPolicy

    kw: dict[str, Any] = {"lookahead": lookahead, "seed": seed}
    if not hasattr(world_model, "transition_triplets"):  # Monte Carlo: short closed loop + value model
        from sepsis_sdk.world_model.value import fit_value_model

        kw.update(
            method="monte-carlo", value_horizon=3, n_value_samples=16, terminal_value=fit_value_model(cohort)
        )
    return WorldModelPlannerPolicy.fit(world_model, cohort, **kw)


def build(name: str, cohort: Any, seed: int, n_steps: int) -> Any:
    """Fit policy ``name`` on ``cohort``; returns a policy or a (713, 25) table."""
    if name == "clinicians":
        from sepsis_sdk.truth import builtin_policy

        return builtin_policy("clinician")[:713]
    if name == "behaviour":
        from sepsis_sdk.world_model.value import fit_continuation

        cont = fit_continuation(cohort, seed=seed)
        return cont
    if name == "counting":
        from sepsis_sdk.policies.tabular import fit_tabular_policy

        return fit_tabular_policy(cohort, seed=seed, name="counting")
    if name == "tabular-300":
        from sepsis_sdk.policies.tabular import fit_tabular_policy

        return fit_tabular_policy(
            cohort, n_clusters=300, backup_pessimism=0.0, gamma=0.99, seed=seed, name="tabular-300"
        )
    if name.startswith("planner-"):
        backend, _, k = name[len("planner-") :].partition("-")
        lookahead: int | str = "converge" if k.startswith("pi") else (int(k) if k else 1)
        if backend == "oracle":
            from sepsis_sdk.truth.oracle import OracleWorldModel

            wm: Any = OracleWorldModel()
        elif backend == "neighbour":
            from sepsis_sdk.world_model import NeighbourWorldModel

            # "-pi" plans on the sharp model (k=1, no prior): the counted law where the pair was seen,
            # the nearest look-alike given the same action elsewhere (measured best for it, docs §4)
            sharp = {"k": 1, "prior_count": 0, "count_scale": 1.0 if k == "pi-borrow" else 0.0}
            wm = NeighbourWorldModel.fit(cohort, **(sharp if k.startswith("pi") else {}))
        else:
            from sepsis_sdk.world_model import get_backend

            wm = get_backend(backend).fit(cohort)
        return _planner(wm, cohort, lookahead, seed)
    if name in ("cql", "bcq"):
        from sepsis_sdk.training.offline_rl import train_offline_rl

        return train_offline_rl(cohort, name, n_steps=n_steps, seed=seed)
    raise SystemExit(f"unknown policy {name!r}; choose from {FAST + SLOW}")


def table_of(policy: Any, histories: list[Any]) -> np.ndarray:
    """``(713, 25)`` action probabilities of a Markov policy at every clinical state."""
    if isinstance(policy, np.ndarray):
        return policy
    if hasattr(policy, "probabilities") and not hasattr(policy, "action_probabilities"):  # a continuation
        from sepsis_sdk.truth.oracle import OracleWorldModel

        return np.asarray(policy.probabilities(OracleWorldModel().support_batch()))
    return np.asarray(policy.action_probabilities(histories), dtype=float)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--episodes", type=int, nargs="+", default=[5000, 20000])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--policies", nargs="+", default=list(FAST))
    ap.add_argument("--n-steps", type=int, default=10_000, help="gradient steps of the d3rlpy baselines")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/decisions.json"))
    ap.add_argument("--resume", action="store_true", help="skip records already in --out")
    args = ap.parse_args(argv)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from sepsis_sdk.sources.icu_sepsis import sample_cohort
    from sepsis_sdk.truth import true_value

    records: list[dict[str, Any]] = (
        json.loads(args.out.read_text()) if args.resume and args.out.exists() else []
    )
    done = {(r["policy"], r["episodes"], r["seed"]) for r in records}
    histories = state_histories()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for n in args.episodes:
        for seed in args.seeds:
            cohort = sample_cohort(n, seed=seed)
            for name in args.policies:
                if (name, n, seed) in done:
                    continue
                t0 = time.perf_counter()
                policy = build(name, cohort, seed, args.n_steps)
                fit_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                table = table_of(policy, histories)
                decide_s = time.perf_counter() - t0
                rec = {
                    "policy": name, "episodes": n, "seed": seed, "true_value": round(float(true_value(table)), 5),
                    "fit_s": round(fit_s, 2), "decide_s": round(decide_s, 2),
                    "least_intensive_share": round(float((table.argmax(1) == 0).mean()), 3),
                }  # fmt: skip
                records.append(rec)
                print(json.dumps(rec), flush=True)
                tmp = args.out.with_suffix(".tmp")
                tmp.write_text(json.dumps(records, indent=1))
                tmp.replace(args.out)


if __name__ == "__main__":
    main()
