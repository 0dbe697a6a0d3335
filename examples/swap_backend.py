"""One graph, any LLM backend: the model is a LiteLLM string (or any ChatModel object).

    python examples/swap_backend.py local/smollm2                      # embedded model, CPU, offline
    python examples/swap_backend.py openai/gpt-4o-mini                 # OPENAI_API_KEY
    python examples/swap_backend.py ollama/qwen2.5:7b                  # a local Ollama server
    python examples/swap_backend.py hosted_vllm/Qwen/Qwen3-4B --api-base http://localhost:8000/v1

The world model swaps the same way: FakeWorldModel here, or ``load_world_model("models/wm-torch")``.
"""

from __future__ import annotations

import argparse

from sepsis_sdk.graphs import build_psr_graph, build_trace
from sepsis_sdk.llm import LiteLLMChat
from sepsis_sdk.sources.icu_sepsis import sample_cohort
from sepsis_sdk.world_model.fake import FakeWorldModel


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default="local/smollm2")
    ap.add_argument("--api-base", default=None)
    ap.add_argument("--world-model", default=None, help="a saved world-model directory (default: fake)")
    args = ap.parse_args()

    kw = {"api_base": args.api_base} if args.api_base else {}
    model = LiteLLMChat(args.model, temperature=0, **kw)
    if args.world_model:
        from sepsis_sdk.world_model import load_world_model

        wm = load_world_model(args.world_model)
    else:
        wm = FakeWorldModel()
    graph = build_psr_graph(model, world_model=wm, n_candidates=2, max_rounds=1)
    history = next(iter(sample_cohort(3, seed=0).episodes())).history(1)
    trace = build_trace(graph.invoke({"history": history}))
    print(f"{args.model}: action {trace['action']} ({trace['source']}), {trace['usage']}")


if __name__ == "__main__":
    main()
