"""Decisions/min of the direct graph: generation (JSON-constrained reply) vs log-likelihood choice.

Same model, same states, same prompt, one run, interleaved per state (the machine is shared: interleaving
spreads load changes over both). States are Markov ICU-Sepsis states (``state_histories``: the prompt of
the exact agent sweep), evenly spaced over the 713. Also times the two ways to score the 25 options
(``method="prefix"``: prompt once + KV cache; ``"batch"``: 25 full sequences) on a few states.

Usage::

    python benchmarks/bench_llm_choice.py --states 20 --out benchmarks/results/llm_choice.json
    python benchmarks/bench_llm_choice.py --model local/<tiny-folder> --states 30    # a tiny model
    python benchmarks/bench_llm_choice.py --sweep runs/loglik-sweep --out benchmarks/results/llm_choice_sweep.json
        # the exact true value of the loglik direct graph: markov_agent_value on all 713 states (cached,
        # resumable), model/guard/fallback shares

Prints one line per state and a summary; writes the JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections import Counter


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="local/smollm2")
    ap.add_argument("--states", type=int, default=20, help="states measured (evenly spaced over 713)")
    ap.add_argument("--batch-states", type=int, default=2, help="states on which method='batch' is timed")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--sweep", default=None, metavar="CACHE_DIR",
                    help="instead: the exact Markov sweep of the loglik graph on all 713 states")  # fmt: skip
    args = ap.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    if args.sweep:
        sweep(args)
        return

    import numpy as np
    import torch

    from sepsis_sdk.graphs import _prompts as P
    from sepsis_sdk.graphs import build_direct_graph
    from sepsis_sdk.graphs._loglik import action_options
    from sepsis_sdk.llm import LiteLLMChat, score_continuations
    from sepsis_sdk.llm._choice import prefix_stats
    from sepsis_sdk.llm._local import load_local_model
    from sepsis_sdk.safety import HoldSafePolicy
    from sepsis_sdk.truth.agent import N_CLINICAL, state_histories

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    local = load_local_model(args.model)
    load_s = time.perf_counter() - t0
    chat = LiteLLMChat(args.model)
    # HoldSafePolicy fallback: no world model needed, and a fallback is counted, never hidden.
    gen = build_direct_graph(chat, fallback=HoldSafePolicy())
    ll = build_direct_graph(chat, decide="loglik", fallback=HoldSafePolicy())
    states = [int(s) for s in np.linspace(0, N_CLINICAL - 1, args.states).round()]
    histories = state_histories(states)
    ll.invoke({"history": histories[0]})  # warm-up (first forward pass, LangGraph compile paths)

    rows = []
    for s, h in zip(states, histories, strict=True):
        t = time.perf_counter()
        a = ll.invoke({"history": h})
        t_ll = time.perf_counter() - t
        t = time.perf_counter()
        b = gen.invoke({"history": h})
        t_gen = time.perf_counter() - t
        row = {"state": s, "loglik_s": t_ll, "generate_s": t_gen,
               "loglik": {k: a["final"][k] for k in ("action", "proposed", "source")},
               "generate": {k: b["final"][k] for k in ("action", "proposed", "source")}}  # fmt: skip
        rows.append(row)
        print(f"state {s:3d}: loglik {t_ll:6.2f} s -> {row['loglik']}; generate {t_gen:6.2f} s -> {row['generate']}",
              flush=True)  # fmt: skip

    # The two scoring methods on the graph's own prompt, back to back (prefix without the cross-prompt reuse,
    # so both pay for the whole prompt).
    methods = []
    for h in histories[: args.batch_states]:
        obs = ll.invoke({"history": h})["events"][0]["text"]
        prompt = local.render([{"role": "system", "content": P.SYSTEM},
                               {"role": "user", "content": P.direct_prompt(obs)}])  # fmt: skip
        rec = {"prompt_tokens": len(local.tokenizer(prompt, add_special_tokens=False)["input_ids"])}
        for m, reuse in (("prefix", True), ("prefix", False), ("batch", False)):
            t = time.perf_counter()
            score_continuations(local, prompt, action_options(), method=m, reuse_prefix=reuse)
            rec[f"{m}{'+reuse' if reuse else ''}_s"] = time.perf_counter() - t
        methods.append(rec)
        print("scoring methods:", {k: round(v, 2) for k, v in rec.items()}, flush=True)

    def per_min(key: str) -> float:
        return 60.0 * len(rows) / sum(r[key] for r in rows)

    ll_s = [r["loglik_s"] for r in rows]
    gen_s = [r["generate_s"] for r in rows]
    summary = {
        "model": args.model,
        "n_states": len(rows),
        "states": states,
        "load_s": load_s,
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end",
        "decisions_per_min": {"generate": per_min("generate_s"), "loglik": per_min("loglik_s")},
        "median_s": {"generate": statistics.median(gen_s), "loglik": statistics.median(ll_s)},
        "projected_713_sweep_min": {
            "generate": 713 * statistics.mean(gen_s) / 60,
            "loglik": 713 * statistics.mean(ll_s) / 60,
        },
        "sources": {
            "generate": dict(Counter(r["generate"]["source"] for r in rows)),
            "loglik": dict(Counter(r["loglik"]["source"] for r in rows)),
        },
        "same_final_action": sum(r["generate"]["action"] == r["loglik"]["action"] for r in rows),
        "same_proposed_action": sum(r["generate"]["proposed"] == r["loglik"]["proposed"] for r in rows),
        "distinct_proposed": {
            "generate": len({r["generate"]["proposed"] for r in rows}),
            "loglik": len({r["loglik"]["proposed"] for r in rows}),
        },
        "prefix_tokens": prefix_stats(local),
        "scoring_methods": methods,
        "rows": rows,
    }
    print(json.dumps({k: v for k, v in summary.items() if k not in ("rows", "states")}, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(summary, f, indent=1)
            f.write("\n")


def sweep(args: argparse.Namespace) -> None:
    """``markov_agent_value`` of ``build_direct_graph(model, decide="loglik")`` on the 713 states."""
    import torch

    from sepsis_sdk.graphs import build_direct_graph
    from sepsis_sdk.llm import LiteLLMChat
    from sepsis_sdk.llm._choice import prefix_stats
    from sepsis_sdk.llm._local import load_local_model
    from sepsis_sdk.safety import HoldSafePolicy
    from sepsis_sdk.truth.agent import markov_agent_value

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    local = load_local_model(args.model)
    g = build_direct_graph(LiteLLMChat(args.model), decide="loglik", fallback=HoldSafePolicy())

    def progress(done: int, total: int) -> None:
        if done % 50 == 0 or done == total:
            print(f"{done}/{total} decisions, {time.perf_counter() - t0:.0f} s", flush=True)

    r = markov_agent_value(g, model=args.model, graph_kind="direct_loglik", options={"decide": "loglik"},
                           cache_dir=args.sweep, max_concurrency=1, progress=progress)  # fmt: skip
    out = {"model": args.model, "graph": "direct_loglik", "wall_s": time.perf_counter() - t0,
           "torch_threads": torch.get_num_threads(), "load_average_end": os.getloadavg()[0],
           "prefix_tokens": prefix_stats(local), **r.to_dict()}  # fmt: skip
    print(json.dumps({k: v for k, v in out.items() if k != "actions"}, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
