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
    python benchmarks/bench_llm_choice.py --psr --states 10 --generate-states 3 --out benchmarks/results/llm_choice_psr.json
        # the PSR graph: decide="loglik" on 10 states vs generation on 3 of them, interleaved, with the
        # world model of the agent sweep (NeighbourWorldModel k=1 + closed-loop values, horizon 3, 4 samples);
        # time per node (model, simulate, critique) so the sweep's cost can be split
    python benchmarks/bench_llm_choice.py --psr --baseline one-prefix --model local/sepsisagent-135m --states 12 \
        --generate-states 12 --episodes 20000 --out benchmarks/results/llm_choice_psr_prefix.json
        # the same loglik PSR graph with the prompt cache as before (one stored "family" prompt) vs now (also
        # the last prompt, so refine reuses its propose prompt's start), interleaved per state
    python benchmarks/bench_llm_choice.py --psr --report values --baseline full-report --model local/sepsisagent-135m \
        --states 12 --generate-states 12 --episodes 20000 --out benchmarks/results/llm_choice_psr_report.json
        # simulation_report="values" (no key-feature paths in the refine prompt) vs "full", interleaved

Prints one line per state and a summary; writes the JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import time
from collections import Counter
from collections.abc import Iterator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="local/smollm2")
    ap.add_argument("--states", type=int, default=20, help="states measured (evenly spaced over 713)")
    ap.add_argument("--batch-states", type=int, default=2, help="states on which method='batch' is timed")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--sweep", default=None, metavar="CACHE_DIR",
                    help="instead: the exact Markov sweep of the loglik graph on all 713 states")  # fmt: skip
    ap.add_argument("--psr", action="store_true", help="instead: the PSR graph, loglik vs generate")
    ap.add_argument("--generate-states", type=int, default=3, help="--psr: states also run with the baseline")
    ap.add_argument("--report", default="full", choices=("full", "values"),
                    help="--psr: the loglik graph's simulation_report (the prompt's simulation text)")  # fmt: skip
    ap.add_argument("--baseline", default="generate", choices=("generate", "one-prefix", "full-report"),
                    help="--psr: compare loglik with generation, or with loglik keeping one stored prompt "
                         "cache (the family prompt only, as before the last-prompt slot), or with loglik "
                         "on the full simulation report (for --report values)")  # fmt: skip
    ap.add_argument("--world-model", default="neighbour", choices=("neighbour", "fake"),
                    help="--psr: NeighbourWorldModel fitted on --episodes ICU-Sepsis stays, or FakeWorldModel")  # fmt: skip
    ap.add_argument("--episodes", type=int, default=2000, help="--psr: cohort size for the neighbour model")
    ap.add_argument("--no-continuation", action="store_true",
                    help="--psr: no closed-loop values in the simulation (held actions only)")  # fmt: skip
    args = ap.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    if args.sweep:
        sweep(args)
        return
    if args.psr:
        psr(args)
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


def _node_seconds(out: dict) -> dict[str, float]:
    """Seconds spent in the model calls, the simulation and the critique of one PSR decision."""
    ev = out["events"]

    def llm(node: str) -> float:
        return sum((e.get("usage") or {}).get("llm_latency_s", 0.0) for e in ev if e.get("node") == node
                   and e.get("type") in ("proposal", "choice"))  # fmt: skip

    return {
        "model_s": float((out.get("usage") or {}).get("llm_latency_s", 0.0)),
        "propose_model_s": llm("propose"),
        "refine_model_s": llm("refine"),
        "simulate_s": sum(e.get("latency_s", 0.0) for e in ev if e.get("node") == "simulate"),
        "critique_s": sum(e.get("latency_s", 0.0) for e in ev if e.get("type") == "critique"),
    }


def psr(args: argparse.Namespace) -> None:
    """PSR decisions/min, ``decide="loglik"`` vs generation, same model, world model and states, one run."""
    import numpy as np
    import torch

    from sepsis_sdk.graphs import build_psr_graph
    from sepsis_sdk.llm import LiteLLMChat
    from sepsis_sdk.llm._choice import prefix_stats
    from sepsis_sdk.llm._local import load_local_model
    from sepsis_sdk.safety import HoldSafePolicy
    from sepsis_sdk.truth.agent import N_CLINICAL, state_histories

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    cont = None
    if args.world_model == "neighbour":
        from sepsis_sdk.sources import load
        from sepsis_sdk.world_model import NeighbourWorldModel
        from sepsis_sdk.world_model.value import fit_continuation

        cohort = load("icu-sepsis", episodes=args.episodes, seed=0)
        wm = NeighbourWorldModel.fit(cohort, k=1, prior_count=0)
        if not args.no_continuation:
            cont = fit_continuation(cohort, seed=0)
    else:
        from sepsis_sdk.world_model.fake import FakeWorldModel

        wm = FakeWorldModel()
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    local = load_local_model(args.model)
    load_s = time.perf_counter() - t0
    chat = LiteLLMChat(args.model)
    # The agent sweep's PSR settings; a HoldSafePolicy fallback (cheap, counted) so a failed generation does
    # not add a planner's simulation to the generate column.
    kw = dict(world_model=wm, continuation=cont, n_candidates=3, horizon=3, n_samples=4, seed=0,
              fallback=HoldSafePolicy())  # fmt: skip
    gen = build_psr_graph(chat, **kw)
    ll = build_psr_graph(chat, decide="loglik", simulation_report=args.report, **kw)
    full = build_psr_graph(chat, decide="loglik", **kw) if args.baseline == "full-report" else None
    states = [int(s) for s in np.linspace(0, N_CLINICAL - 1, args.states).round()]
    step = max(1, len(states) // max(1, args.generate_states))
    gen_at = set(states[::step][: args.generate_states])
    base = args.baseline.replace("-", "_")

    def run_base(h):
        if args.baseline == "generate":
            return gen.invoke({"history": h}, {"recursion_limit": 100})
        if full is not None:
            return full.invoke({"history": h}, {"recursion_limit": 100})
        with _one_prefix_slot():
            return ll.invoke({"history": h}, {"recursion_limit": 100})

    histories = state_histories(states)
    ll.invoke({"history": state_histories([1])[0]})  # warm-up (first forward passes, the world model)

    rows = []
    for s, h in zip(states, histories, strict=True):
        t = time.perf_counter()
        a = ll.invoke({"history": h}, {"recursion_limit": 100})
        row = {"state": s, "loglik_s": time.perf_counter() - t, "loglik_nodes": _node_seconds(a),
               "loglik": {k: a["final"][k] for k in ("action", "proposed", "source")},
               "loglik_candidates": [c["action"] for c in a["candidates"]]}  # fmt: skip
        if s in gen_at:
            t = time.perf_counter()
            b = run_base(h)
            row.update({f"{base}_s": time.perf_counter() - t, f"{base}_nodes": _node_seconds(b),
                        base: {k: b["final"].get(k) for k in ("action", "proposed", "source", "rounds")},
                        f"{base}_candidates": [c["action"] for c in b.get("candidates") or []]})  # fmt: skip
        rows.append(row)
        gen_txt = f"; {base} {row[f'{base}_s']:6.1f} s -> {row[base]}" if f"{base}_s" in row else ""
        print(f"state {s:3d}: loglik {row['loglik_s']:5.1f} s {row['loglik_nodes']} -> {row['loglik']}{gen_txt}",
              flush=True)  # fmt: skip

    def stats(mode: str) -> dict | None:
        rs = [r for r in rows if f"{mode}_s" in r]
        if not rs:
            return None
        secs = [r[f"{mode}_s"] for r in rs]
        nodes = {k: statistics.mean(r[f"{mode}_nodes"][k] for r in rs) for k in rs[0][f"{mode}_nodes"]}
        return {
            "n_states": len(rs),
            "decisions_per_min": 60.0 * len(rs) / sum(secs),
            "median_s": statistics.median(secs),
            "mean_node_s": nodes,
            "projected_713_sweep_min": 713 * statistics.mean(secs) / 60,
            "projected_713_model_only_min": 713 * nodes["model_s"] / 60,
            "sources": dict(Counter(r[mode]["source"] for r in rs)),
        }

    out = {"model": args.model, "graph": "psr", "world_model": args.world_model, "episodes": args.episodes,
           "continuation": cont is not None, "settings": {"n_candidates": 3, "horizon": 3, "n_samples": 4},
           "fit_s": fit_s, "load_s": load_s, "torch_threads": torch.get_num_threads(),
           "machine": f"{platform.machine()} {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end",
           "baseline": base, "report": args.report, "loglik": stats("loglik"), base: stats(base)}  # fmt: skip
    both = [r for r in rows if f"{base}_s" in r]
    if both:
        out["ratio_decisions_per_min"] = out["loglik"]["decisions_per_min"] / out[base]["decisions_per_min"]
        # The same states only: baseline vs loglik seconds in total.
        out["ratio_same_states"] = sum(r[f"{base}_s"] for r in both) / sum(r["loglik_s"] for r in both)
        out["same_final_action"] = sum(r["loglik"]["action"] == r[base]["action"] for r in both)
    out["prefix_tokens"] = prefix_stats(local)
    out["rows"] = rows
    print(json.dumps({k: v for k, v in out.items() if k != "rows"}, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")


@contextlib.contextmanager
def _one_prefix_slot() -> Iterator[None]:
    """Within it, log-likelihood scoring sees only the stored "family" prompt cache (the code before the
    last-prompt slot): the "last" slot is dropped before every scoring call."""
    from sepsis_sdk.llm import _choice

    orig = _choice._score_prefix

    def score(local, p_ids, c_ids, reuse=True):
        slots = _choice._PREFIXES.get(local)
        if slots is not None:
            slots.pop("last", None)
        return orig(local, p_ids, c_ids, reuse)

    _choice._score_prefix = score
    try:
        yield
    finally:
        _choice._score_prefix = orig


if __name__ == "__main__":
    main()
