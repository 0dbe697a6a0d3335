"""Benchmark the ``local/`` provider on CPU: load time, tokens/s, JSON-constrained decoding, batching.

Usage::

    python benchmarks/bench_llm_local.py                 # SmolLM2-135M (embedded default)
    python benchmarks/bench_llm_local.py --gguf          # also time the one-off GGUF conversion load
    python benchmarks/bench_llm_local.py --model /path/to/model --threads 1

Prints one line per measurement; ratios are against a baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Literal

from pydantic import BaseModel, Field


class Decision(BaseModel):
    iv_fluid: int = Field(ge=0, le=4)
    vasopressor: int = Field(ge=0, le=4)
    trend: Literal["improving", "stable", "worsening"]


PROMPT = [
    {"role": "system", "content": "You are an ICU sepsis assistant. Levels are 0 (none) to 4 (highest)."},
    {
        "role": "user",
        "content": "MAP 58 mmHg, lactate 3.1 mmol/L, HR 112. Choose IV fluid and vasopressor levels.",
    },
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2", help="local model name or path (default: smollm2)")
    ap.add_argument("--gguf", action="store_true", help="also time loading SmolLM2 from its GGUF file")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--tokens", type=int, default=32, help="new tokens for the throughput runs")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    t0 = time.perf_counter()
    import torch

    from sepsis_sdk.llm import LiteLLMChat
    from sepsis_sdk.llm._local import GenRequest, clear_local_models, load_local_model, smollm2_path

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"imports: {time.perf_counter() - t0:.2f} s; torch threads {torch.get_num_threads()}")

    if args.model == "smollm2":
        start = time.perf_counter()
        smollm2_path()
        print(f"smollm2 cache ready: {time.perf_counter() - start:.2f} s (conversion only on first use)")
    clear_local_models()
    start = time.perf_counter()
    load_local_model(args.model)
    first_load = time.perf_counter() - start
    clear_local_models()
    start = time.perf_counter()
    local = load_local_model(args.model)
    cached_load = time.perf_counter() - start
    print(f"first load in this process (includes transformers' lazy imports): {first_load:.2f} s")
    print(f"load from safetensors cache (modules already imported): {cached_load:.2f} s")
    if args.gguf and args.model == "smollm2":
        import transformers

        from sepsis_sdk.llm._local import _smollm2_gguf

        gguf = _smollm2_gguf()
        start = time.perf_counter()
        transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        gguf_load = time.perf_counter() - start
        print(f"load from GGUF: {gguf_load:.2f} s -> cache is {gguf_load / cached_load:.1f}x faster")

    prompt = local.render(PROMPT)
    local.generate([GenRequest(prompt, max_new_tokens=4)])  # warm-up

    def timed(reqs: list[GenRequest]) -> tuple[float, int]:
        times, toks = [], 0
        for _ in range(args.repeats):
            start = time.perf_counter()
            res = local.generate(reqs)
            times.append(time.perf_counter() - start)
            toks = sum(r.completion_tokens for r in res)
        return statistics.median(times), toks

    free_s, free_toks = timed([GenRequest(prompt, max_new_tokens=args.tokens)])
    free_rate = free_toks / free_s
    print(f"greedy, unconstrained: {free_toks} tokens in {free_s:.2f} s = {free_rate:.1f} tokens/s")

    schema = Decision.model_json_schema()
    json_prompt = local.render(
        [*PROMPT, {"role": "user", "content": "Reply with JSON: iv_fluid, vasopressor, trend."}]
    )
    con_s, con_toks = timed([GenRequest(json_prompt, max_new_tokens=64, schema=schema, constrained=True)])
    con_rate = con_toks / con_s
    print(
        f"greedy, JSON-constrained (Decision): {con_toks} tokens in {con_s:.2f} s = {con_rate:.1f} tokens/s "
        f"-> constraint costs {free_rate / con_rate:.2f}x per token"
    )

    batch = 4
    seq_s = 0.0
    for _ in range(batch):
        s, _ = timed([GenRequest(prompt, max_new_tokens=args.tokens)])
        seq_s += s
    bat_s, _ = timed([GenRequest(prompt, max_new_tokens=args.tokens) for _ in range(batch)])
    print(
        f"{batch} requests: sequential {seq_s:.2f} s, one batch {bat_s:.2f} s -> batching {seq_s / bat_s:.2f}x throughput"
    )

    chat = LiteLLMChat(f"local/{args.model}", max_tokens=64)
    print(f"example decision: {chat.structured(PROMPT, Decision)!r}")  # warm-up: imports litellm/instructor
    start = time.perf_counter()
    n = args.repeats
    for _ in range(n):
        chat.structured(PROMPT, Decision)
    single = n / (time.perf_counter() - start) * 60

    async def many() -> None:
        await asyncio.gather(*(chat.astructured(PROMPT, Decision) for _ in range(batch)))

    start = time.perf_counter()
    asyncio.run(many())
    batched = batch / (time.perf_counter() - start) * 60
    print(
        f"structured decisions through LiteLLMChat: {single:.1f}/min one at a time, {batched:.1f}/min with {batch} "
        f"concurrent (batched) -> {batched / single:.2f}x"
    )


if __name__ == "__main__":
    main()
