"""Agent benchmarks: per-decision overhead of the graphs without LLM time, and local-model throughput.

Overhead: the PSR graph (K=3 candidates, H=6 steps, 8 samples) and the tool-calling graph decide for
ICU-Sepsis histories with an instant fake chat model, so the wall time is the SDK's own work (LangGraph,
prompts, the batched simulation, the judge, the guard). Measured with the fake world model and with a
torch world model (one epoch of training on a small sampled cohort; its speed, not its quality, matters
here). The baseline in the same run is one bare batched rollout of the same K x H x samples.

Local model: decisions per minute of the direct and PSR graphs with the embedded SmolLM2-135M on CPU
(``--local N``; slow on a busy machine).

Usage::

    python benchmarks/bench_agent.py                 # overhead, fake + torch world models
    python benchmarks/bench_agent.py --local 2       # plus 2 SmolLM2 decisions per graph
"""

from __future__ import annotations

import argparse
import itertools
import platform
import statistics
import time

import numpy as np


def _fake_model():
    from sepsis_sdk.testing import FunctionChatModel

    def fn(messages, tools):
        text = messages[-1]["content"]
        if tools:  # tool-calling protocol: simulate once, then prescribe
            if any(m.get("role") == "tool" for m in messages):
                return {"tool": "prescription", "arguments": {"vasopressor": 1, "iv_fluid": 2}}
            return {"tool": "simulation", "arguments": {"actions": ["[0, 2]", "[1, 2]", "[1, 3]"]}}
        if "Propose" in text:
            return {
                "candidates": [{"fluid": 2, "vaso": 0}, {"fluid": 2, "vaso": 1}, {"fluid": 3, "vaso": 1}],
                "reasoning": "",
            }
        return {"decision": "commit", "fluid": 2, "vaso": 1, "rationale": "bench"}

    return FunctionChatModel(fn)


def _percentiles(xs: list[float]) -> tuple[float, float]:
    a = np.asarray(xs) * 1e3
    return float(np.percentile(a, 50)), float(np.percentile(a, 90))


def bench_overhead(wm, histories, label: str, n: int) -> dict[str, float]:
    from sepsis_sdk.graphs import build_psr_graph, build_tool_calling_graph
    from sepsis_sdk.tools import simulate_actions

    out: dict[str, float] = {}
    psr = build_psr_graph(_fake_model(), world_model=wm, n_candidates=3, horizon=6, n_samples=8)
    tc = build_tool_calling_graph(_fake_model(), world_model=wm, horizon=6, n_samples=8)
    for name, g in (("psr", psr), ("tool_calling", tc)):
        g.invoke({"history": histories[0]})  # warm-up
        times, cpu = [], []
        for i in range(n):
            h = histories[i % len(histories)]
            t0, c0 = time.perf_counter(), time.process_time()
            st = g.invoke({"history": h})
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            llm = float(st.get("usage", {}).get("llm_latency_s", 0.0))
            times.append(dt - llm)
            cpu.append(dc)
        p50, p90 = _percentiles(times)
        out[f"{name}_p50_ms"], out[f"{name}_p90_ms"] = p50, p90
        out[f"{name}_cpu_p50_ms"] = _percentiles(cpu)[0]
    base = []
    for i in range(n):
        h = histories[i % len(histories)]
        t0 = time.perf_counter()
        simulate_actions(wm, h, [2 * 5, 2 * 5 + 1, 3 * 5 + 1], horizon=6, n_samples=8)
        base.append(time.perf_counter() - t0)
    out["rollout_p50_ms"] = _percentiles(base)[0]
    floor = _langgraph_floor(n)
    print(f"[{label}] CPU time p50: PSR {out['psr_cpu_p50_ms']:.1f} ms, tool-calling {out['tool_calling_cpu_p50_ms']:.1f} ms; "
          f"empty 6-node LangGraph {floor:.1f} ms wall")  # fmt: skip
    print(f"[{label}] PSR p50 {out['psr_p50_ms']:.1f} ms (p90 {out['psr_p90_ms']:.1f}); tool-calling p50 "
          f"{out['tool_calling_p50_ms']:.1f} ms (p90 {out['tool_calling_p90_ms']:.1f}); bare batched rollout "
          f"p50 {out['rollout_p50_ms']:.1f} ms; PSR / rollout = {out['psr_p50_ms'] / out['rollout_p50_ms']:.1f}x")  # fmt: skip
    return out


def _langgraph_floor(n: int) -> float:
    """Wall p50 of an empty 6-node LangGraph: the machine's speed reference for graph overhead."""
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph

    class S(TypedDict, total=False):
        x: int

    b = StateGraph(S)
    names = ["a", "b", "c", "d", "e", "f"]
    for nm in names:
        b.add_node(nm, lambda s: {"x": 1})
    b.add_edge(START, "a")
    for x, y in itertools.pairwise(names):
        b.add_edge(x, y)
    b.add_edge("f", END)
    g = b.compile()
    g.invoke({"x": 0})
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        g.invoke({"x": 0})
        ts.append(time.perf_counter() - t0)
    return _percentiles(ts)[0]


def bench_local(histories, n: int) -> None:
    from sepsis_sdk.graphs import build_direct_graph, build_psr_graph
    from sepsis_sdk.llm import LiteLLMChat
    from sepsis_sdk.world_model.fake import FakeWorldModel

    model = LiteLLMChat("local/smollm2")
    t0 = time.perf_counter()
    model.complete([{"role": "user", "content": "Hi"}], max_tokens=2)
    print(f"[smollm2] load + first token: {time.perf_counter() - t0:.1f} s")
    wm = FakeWorldModel()
    graphs = {
        "direct": build_direct_graph(model, world_model=wm),
        "psr (K=2, 1 round)": build_psr_graph(model, world_model=wm, n_candidates=2, max_rounds=1),
    }
    for name, g in graphs.items():
        times, sources, toks = [], [], 0.0
        for i in range(n):
            t0 = time.perf_counter()
            st = g.invoke({"history": histories[i % len(histories)]})
            times.append(time.perf_counter() - t0)
            sources.append(st["final"]["source"])
            toks += st["usage"].get("completion_tokens", 0)
        per = statistics.mean(times)
        print(f"[smollm2 {name}] {60 / per:.2f} decisions/min ({per:.1f} s each, {toks / n:.0f} completion tokens "
              f"per decision; final sources {sources})")  # fmt: skip


def bench_planner_truth(episodes: int, epochs: int) -> None:
    """Exact ICU-Sepsis value of the world-model planner with a torch world model trained on sampled episodes."""
    from sepsis_sdk.policies import WorldModelPlannerPolicy
    from sepsis_sdk.sources.icu_sepsis import sample_cohort
    from sepsis_sdk.truth import true_value
    from sepsis_sdk.world_model.torch_backend import TorchConfig, TorchWorldModel

    t0 = time.perf_counter()
    wm = TorchWorldModel.fit(
        sample_cohort(episodes, seed=0), TorchConfig(epochs=epochs, n_members=5), threads=2
    )
    print(
        f"[planner truth] torch world model on {episodes} clinician episodes, {epochs} epochs: {time.perf_counter() - t0:.0f} s"
    )
    for obj in ("survival", "mortality"):
        for h in (1, 3):
            v = true_value(WorldModelPlannerPolicy(wm, horizon=h, n_samples=4, objective=obj))
            u = true_value(
                WorldModelPlannerPolicy(
                    wm, horizon=h, n_samples=4, objective=obj, safety=False, use_admissibility=False
                )
            )
            print(
                f"[planner truth] objective={obj} H={h}: with rules+admissibility {v:.4f}, unconstrained {u:.4f}"
            )
    print(
        f"[planner truth] clinician {true_value('clinician'):.4f}, random {true_value('random'):.4f}, optimal {true_value('optimal'):.4f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=40, help="decisions per overhead measurement")
    ap.add_argument("--local", type=int, default=0, help="SmolLM2 decisions per graph (0 = skip)")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument(
        "--planner-truth",
        type=int,
        default=0,
        metavar="EPISODES",
        help="also train a torch world model on EPISODES sampled episodes and score the planner exactly",
    )
    ap.add_argument("--epochs", type=int, default=8)
    args = ap.parse_args()

    from sepsis_sdk.sources.icu_sepsis import sample_cohort
    from sepsis_sdk.world_model.fake import FakeWorldModel

    cohort = sample_cohort(200, seed=0)
    histories = [h for h in cohort.head(30).histories()][:60]
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}, "
          f"{len(histories)} ICU-Sepsis histories, K=3, H=6, 8 samples")  # fmt: skip
    bench_overhead(FakeWorldModel(), histories, "fake world model", args.n)
    if not args.no_torch:
        try:
            import torch

            from sepsis_sdk.world_model.torch_backend import TorchConfig, TorchWorldModel
        except ImportError:
            print("[torch] not installed; skipped")
        else:
            torch.set_num_threads(1)
            t0 = time.perf_counter()
            wm = TorchWorldModel.fit(cohort, TorchConfig(epochs=1, n_members=5), threads=1)
            print(
                f"[torch] trained 1 epoch in {time.perf_counter() - t0:.1f} s (5 members, mlp); device {wm.device}"
            )
            bench_overhead(wm, histories, "torch world model", args.n)
    if args.local:
        bench_local(histories, args.local)
    if args.planner_truth:
        bench_planner_truth(args.planner_truth, args.epochs)


if __name__ == "__main__":
    main()
