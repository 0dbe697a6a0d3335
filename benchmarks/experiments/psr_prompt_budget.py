"""Where a PSR decision's prompt tokens and time go, and what the short refine prompt saves, in one run.

Decides a few ICU-Sepsis states with the real PSR graph (``embedded_psr_graph``: K = 5, horizon 3, the
teacher's planned care) in each named setting, the settings interleaved state by state so they share the
machine's load, timing each log-likelihood call. Then it counts the tokens of each setting's last refine
prompt with the model's own tokenizer: the system prompt and patient text (shared with the propose prompt,
so reused from its cache), the simulation report and the judge's critique (taken from the graph's final
state, as the refine node puts them in the prompt) and the closing instructions (the rest).

Settings: ``cautious`` is the shipped PSR agent's (cautious report, with the critique); ``brief`` is the
short refine prompt of the ``sepsisagent-135m-psr-brief`` recipe (brief report, no critique). Both run
the same model (``--model``), so the ratio is the prompt's alone. Used in BENCHMARKS.md.

    OMP_NUM_THREADS=1 python benchmarks/experiments/psr_prompt_budget.py --states 0 1 2 3 4 5 \\
        --settings cautious brief --out benchmarks/results/psr_prompt_budget.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

SETTINGS: dict[str, dict[str, Any]] = {
    "cautious": {},
    "brief": {"simulation_report": "brief", "refine_critique": False},
}


def _parts(messages: list[dict[str, str]], out: dict[str, Any]) -> dict[str, str]:
    user = messages[1]["content"]
    report = out["simulation"]["text"]
    i_sim = user.index(report)
    i_crit = i_end = i_sim + len(report)
    critique = out["critique"]["text"]
    if critique in user[i_crit:]:  # with its heading; absent when the prompt leaves it out
        i_end = user.index(critique, i_crit) + len(critique)
    return {"system": messages[0]["content"], "patient": user[:i_sim], "report": user[i_sim:i_crit],
            "critique": user[i_crit:i_end], "instructions": user[i_end:]}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--states", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--settings", nargs="+", default=["cautious"], choices=sorted(SETTINGS))
    ap.add_argument("--model", default=None, help="model string (default: local/sepsisagent-135m-psr)")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args()

    from sepsis_sdk.llm import _choice
    from sepsis_sdk.training.embedded import PSR_AGENT, embedded_psr_graph
    from sepsis_sdk.truth.agent import state_histories

    calls: list[tuple[Any, list[dict[str, str]], float]] = []  # (chooser, messages, seconds)
    choose = _choice.LogLikChooser.choose

    def timed(self, messages, options, *a, **k):
        t = time.perf_counter()
        res = choose(self, messages, options, *a, **k)
        calls.append((self, messages, time.perf_counter() - t))
        return res

    _choice.LogLikChooser.choose = timed  # type: ignore[method-assign]
    model = args.model or PSR_AGENT
    graphs = {}
    for name in args.settings:
        t0 = time.perf_counter()
        graphs[name] = embedded_psr_graph(model, **SETTINGS[name])[0]
        print(f"{name}: graph built in {time.perf_counter() - t0:.1f} s", flush=True)
    rows: dict[str, list[dict[str, Any]]] = {n: [] for n in args.settings}
    last: dict[str, tuple[Any, list[dict[str, str]], dict[str, Any]]] = {}
    for s in args.states:
        hist = state_histories([s])[0]
        for name, graph in graphs.items():
            n0, t = len(calls), time.perf_counter()
            out = graph.invoke({"history": hist})
            row = {"state": s, "action": out["final"]["action"], "decision_s": round(time.perf_counter() - t, 2),
                   "propose_s": round(calls[n0][2], 2), "refine_s": round(calls[n0 + 1][2], 2)}  # fmt: skip
            rows[name].append(row)
            last[name] = (calls[-1][0], calls[-1][1], out)
            print(json.dumps({"setting": name, **row}), flush=True)
    summary: dict[str, Any] = {"model": model, "states": args.states, "settings": {}}
    for name in args.settings:
        chooser, messages, out = last[name]
        tok = chooser.local.tokenizer
        counts = {
            k: len(tok(v, add_special_tokens=False)["input_ids"]) for k, v in _parts(messages, out).items()
        }
        med = statistics.median(r["decision_s"] for r in rows[name])
        summary["settings"][name] = {
            "options": SETTINGS[name],
            "median_decision_s": med,
            "median_refine_s": statistics.median(r["refine_s"] for r in rows[name]),
            "median_propose_s": statistics.median(r["propose_s"] for r in rows[name]),
            "decisions_per_min": round(60.0 / med, 2),
            "refine_new_tokens": counts["report"] + counts["critique"] + counts["instructions"],
            "refine_prompt_tokens": counts,
            "rows": rows[name],
        }
    if len(args.settings) == 2:
        a, b = (summary["settings"][n] for n in args.settings)
        summary["speedup"] = round(a["median_decision_s"] / b["median_decision_s"], 2)
        summary["projected_sweep_min_two_processes"] = {
            n: round(713 * summary["settings"][n]["median_decision_s"] / 2 / 60, 1) for n in args.settings
        }
    print(json.dumps({k: v for k, v in summary.items()}, indent=1, default=str))
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
