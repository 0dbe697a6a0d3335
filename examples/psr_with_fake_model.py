"""Run the propose–simulate–refine agent on an ICU-Sepsis patient with no LLM and no trained model.

A function plays the LLM (it proposes three candidates, then commits to the one the critique scores
best) and the fake world model plays the simulator, so this runs in about a second offline. Swap either
for a real one without touching the graph (see swap_backend.py).

    python examples/psr_with_fake_model.py
"""

from __future__ import annotations

import json
import re

from sepsis_sdk.graphs import build_psr_graph, build_trace
from sepsis_sdk.sources.icu_sepsis import sample_cohort
from sepsis_sdk.testing import FunctionChatModel
from sepsis_sdk.world_model.fake import FakeWorldModel


def fake_llm(messages, tools):
    prompt = messages[-1]["content"]
    if "Propose" in prompt:
        return {"candidates": [{"fluid": 2, "vaso": 0, "rationale": "moderate fluids"},
                               {"fluid": 3, "vaso": 1, "rationale": "fluids plus low-dose vasopressor"},
                               {"fluid": 1, "vaso": 2, "rationale": "vasopressor first"}],
                "reasoning": "hypotensive"}  # fmt: skip
    # refine: commit to the candidate with the best critique score
    scored = re.findall(r"- fluid (\d) .*?vaso (\d) .*?: score ([+-][\d.]+)", prompt)
    f, v, _ = max(scored, key=lambda x: float(x[2]))
    return {"decision": "commit", "fluid": int(f), "vaso": int(v), "rationale": "best critique score"}


def main() -> None:
    history = next(iter(sample_cohort(5, seed=1).episodes())).history(2)
    graph = build_psr_graph(
        FunctionChatModel(fake_llm), world_model=FakeWorldModel(), n_candidates=3, horizon=6
    )
    for update in graph.stream({"history": history}, stream_mode="updates"):
        print("node:", next(iter(update)))
    trace = build_trace(graph.invoke({"history": history}))
    print(
        json.dumps(
            {k: trace[k] for k in ("patient_id", "t", "action", "source", "rationale", "guard_reasons")},
            indent=2,
        )
    )
    print(trace["simulations"][0]["report"]["candidates"][0]["paths"][0]["display"])


if __name__ == "__main__":
    main()
