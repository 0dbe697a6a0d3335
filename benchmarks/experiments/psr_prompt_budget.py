"""Where a PSR decision's prompt tokens and time go, for the shipped PSR agent (``embedded_psr_graph()``).

Decides a few ICU-Sepsis states with the real graph, timing each log-likelihood call, then counts the
tokens of the last refine prompt's parts with the model's own tokenizer: the system prompt and patient text
(shared with the propose prompt, so reused from its cache), the simulation report and the judge's critique
(taken from the graph's final state, as the refine node puts them in the prompt), and the closing
instructions (the rest). Used for the token budget in BENCHMARKS.md.

    OMP_NUM_THREADS=1 python benchmarks/experiments/psr_prompt_budget.py --states 0 1 2 3
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--states", type=int, nargs="+", default=[0, 1, 2, 3])
    args = ap.parse_args()

    from sepsis_sdk.llm import _choice
    from sepsis_sdk.training.embedded import embedded_psr_graph
    from sepsis_sdk.truth.agent import state_histories

    calls: list[tuple[Any, list[dict[str, str]], float]] = []  # (chooser, messages, seconds)
    choose = _choice.LogLikChooser.choose

    def timed(self, messages, options, *a, **k):
        t = time.perf_counter()
        out = choose(self, messages, options, *a, **k)
        calls.append((self, messages, time.perf_counter() - t))
        return out

    _choice.LogLikChooser.choose = timed  # type: ignore[method-assign]
    t0 = time.perf_counter()
    graph, _ = embedded_psr_graph()
    print(f"graph built in {time.perf_counter() - t0:.1f} s", flush=True)
    for s in args.states:
        n0, t = len(calls), time.perf_counter()
        out = graph.invoke({"history": state_histories([s])[0]})
        t_prop, t_ref = calls[n0][2], calls[n0 + 1][2]
        print(json.dumps({"state": s, "action": out["final"]["action"], "decision_s": round(time.perf_counter() - t, 2),
                          "propose_s": round(t_prop, 2), "refine_s": round(t_ref, 2)}), flush=True)  # fmt: skip
    chooser, messages, _ = calls[-1]  # the last refine call, and the state it was made from
    user = messages[1]["content"]
    report, critique = out["simulation"]["text"], out["critique"]["text"]
    i_sim = user.index(report)
    i_crit, i_end = i_sim + len(report), user.index(critique) + len(critique)  # the critique with its heading
    parts = {"system": messages[0]["content"], "patient": user[:i_sim], "report": user[i_sim:i_crit],
             "critique": user[i_crit:i_end], "instructions": user[i_end:]}  # fmt: skip
    tok = chooser.local.tokenizer
    counts = {k: len(tok(v, add_special_tokens=False)["input_ids"]) for k, v in parts.items()}
    print(json.dumps({"refine_prompt_tokens": counts, "state": args.states[-1]}))


if __name__ == "__main__":
    main()
