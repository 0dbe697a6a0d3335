"""Exact true value of one LLM agent (a model, an optional LoRA adapter, a graph) on ICU-Sepsis.

The Markov sweep (:func:`sepsis_sdk.truth.markov_agent_value`): the graph decides once for each of the 713
clinical states from a one-step history, and the truth layer solves the policy exactly. Decisions are
chosen by the model's own log-likelihood (``decide="loglik"``: one forward pass, no parsing), so the sweep
fits on 2 CPU cores. Agreement is with the clinicians' most likely action and with the teacher's table
(the planner the embedded agent was trained on), both weighted by how often patients visit each state
under the agent. Used for the ablation table of docs/training.md; the command lines are there.

    python benchmarks/experiments/agent_ablation.py --label base --out benchmarks/results/agent_ablation.jsonl
    python benchmarks/experiments/agent_ablation.py --label stage-I --adapter runs/sepsisagent/dynamics ...
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--label", required=True, help="row name in the output (base, stage-I, ...)")
    ap.add_argument("--model", default="local/smollm2")
    ap.add_argument("--adapter", default=None, help="a PEFT adapter folder")
    ap.add_argument("--graph", default="direct", choices=("direct", "psr"))
    ap.add_argument("--simulation-report", default="full", choices=("full", "values", "cautious", "brief"),
                    help="psr: the refine prompt's simulation text (values: without key-feature paths; cautious: "
                         "values plus the planner's pessimistic score, ranked by it; needs --continuation planned; "
                         "brief: one line per candidate)")  # fmt: skip
    ap.add_argument(
        "--no-critique",
        action="store_true",
        help="psr: leave the judge's critique out of the refine prompt (PSROptions.refine_critique)",
    )
    ap.add_argument("--n-candidates", type=int, default=3, help="psr: candidates per propose turn")
    ap.add_argument("--continuation", default="usual", choices=("usual", "planned"),
                    help="psr: simulated values continue as the clinicians would (usual) or as the teacher "
                         "planner plans (planned: what the sepsisagent-135m-psr recipe trains on)")  # fmt: skip
    ap.add_argument("--episodes", type=int, default=20000, help="cohort for the world model / teacher")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--teacher", default=None, help="teacher table (.npy, 713 actions) for agreement")
    ap.add_argument("--cache", default="runs/agent-cache", help="decision cache root (resumable)")
    ap.add_argument("--states", default=None,
                    help="sweep only these states, e.g. 0-99 or 408-712 (a pilot, or one of several processes "
                         "filling one cache; a last run without it then reads them all)")  # fmt: skip
    ap.add_argument("--out", required=True, help="JSON lines file; one record is appended")
    args = ap.parse_args()

    from sepsis_sdk.graphs import build_direct_graph
    from sepsis_sdk.truth._icu_sepsis import load_mdp, state_values
    from sepsis_sdk.truth.agent import markov_agent_value

    t0 = time.perf_counter()
    model = args.model if args.adapter is None else f"{args.model}?adapter={args.adapter}"
    if args.graph == "direct":
        # no world model: the fallback (on a failed decision only) is HoldSafePolicy, as in the demo, so
        # the cache key (model, adapter weights, graph, options, prompts) is the demo's too
        graph = build_direct_graph(model, decide="loglik")
        options = {"decide": "loglik"}
    else:  # the PSR graph simulates in the teacher's world model, fitted on the training cohort
        from sepsis_sdk.training.embedded import psr_sweep_graph

        graph, options = psr_sweep_graph(model, episodes=args.episodes, seed=args.seed,
                                         n_candidates=args.n_candidates, continuation=args.continuation,
                                         simulation_report=args.simulation_report,
                                         refine_critique=not args.no_critique)  # fmt: skip
    t_fit = time.perf_counter() - t0
    from sepsis_sdk.cli.agent_eval import parse_states

    states = parse_states(args.states)
    done = [0]

    def progress(n: int, total: int) -> None:
        if n - done[0] >= 50 or n == total:
            done[0] = n
            print(f"{args.label}: {n}/{total} decisions ({time.perf_counter() - t0:.0f} s)", flush=True)

    t1 = time.perf_counter()
    res = markov_agent_value(graph, model=args.model, adapter=args.adapter, graph_kind=f"{args.graph}_loglik",
                             options=options, cache_dir=args.cache, states=states, max_concurrency=1,
                             progress=progress)  # fmt: skip
    t_sweep = time.perf_counter() - t1
    acts = res.actions
    rec = {"label": args.label, "model": args.model, "adapter": args.adapter, "graph": args.graph,
           "simulation_report": args.simulation_report if args.graph == "psr" else None,
           **({"n_candidates": args.n_candidates, "continuation": args.continuation,
               "refine_critique": not args.no_critique} if args.graph == "psr" else {}),
           "decide": "loglik", "episodes": args.episodes, "seed": args.seed, **res.to_dict(),
           "fit_s": round(t_fit, 1), "sweep_s": round(t_sweep, 1)}  # fmt: skip
    if res.n_states == 713:
        mdp = load_mdp()
        # expected visits of each state under the agent (d0 through the agent's own transitions)
        pi = np.zeros((713, 25))
        pi[np.arange(713), acts] = 1.0
        p = np.einsum("sa,sat->st", pi, mdp.tx_mat[:713])[:, :713]
        w = np.linalg.solve(np.eye(713) - p.T, mdp.d0[:713])
        clin = (
            np.asarray(mdp.clinician_policy()[:713]).argmax(1) if hasattr(mdp, "clinician_policy") else None
        )
        if clin is not None:
            rec["agree_clinician"] = float(w @ (acts == clin) / w.sum())
        if args.teacher:
            teach = np.load(args.teacher)
            rec["agree_teacher"] = float(w @ (acts == teach) / w.sum())
            rec["teacher_value"] = float(mdp.d0 @ state_values(teach))
        rec["distinct_actions"] = int(len(set(acts.tolist())))
    if rec.get("cache_dir"):  # the cache's key folder, not this machine's path to it
        rec["cache_dir"] = Path(rec["cache_dir"]).name
    rec.pop("actions", None)
    rec["actions"] = [int(a) for a in acts]
    with Path(args.out).open("a") as f:
        f.write(json.dumps(rec) + "\n")
    print(json.dumps({k: v for k, v in rec.items() if k not in ("actions", "key")}, indent=1))


if __name__ == "__main__":
    main()
