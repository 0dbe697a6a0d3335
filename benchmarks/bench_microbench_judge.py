"""Judge throughput vs concurrency: the full grading path against a local mock OpenAI-compatible server.

A tiny ``http.server`` in a thread on 127.0.0.1 answers ``POST /v1/chat/completions`` after an added
latency, with a valid ``{"scores": [...]}`` for however many criteria the prompt lists. It serves a bounded
number of requests and stops by itself (after the run, or at a deadline). The client side is the real
path: ``run_benchmark`` -> ``LLMJudge`` -> ``LiteLLMChat`` -> LiteLLM -> HTTP, with frame sampling and the
fsync-ed JSONL writes included.

Run: ``.venv/bin/python benchmarks/bench_microbench_judge.py [--tasks 16] [--latency 0.2]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class MockVLM:
    """A bounded mock chat-completions server with added latency."""

    def __init__(self, latency_s: float, max_requests: int, deadline_s: float = 300.0) -> None:
        self.latency_s = latency_s
        self.max_requests = max_requests
        self.served = 0
        self.in_flight = 0
        self.peak = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                with outer._lock:
                    outer.served += 1
                    outer.in_flight += 1
                    outer.peak = max(outer.peak, outer.in_flight)
                    over = outer.served > outer.max_requests
                time.sleep(outer.latency_s)
                user = next(m for m in body["messages"] if m["role"] == "user")
                parts = (
                    user["content"]
                    if isinstance(user["content"], list)
                    else [{"type": "text", "text": user["content"]}]
                )
                text = "\n".join(p.get("text", "") for p in parts if p.get("type") == "text")
                n = len(re.findall(r"^\d+\. \[", text, flags=re.MULTILINE))
                reply = {
                    "id": "mock",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body.get("model", "mock"),
                    "choices": [
                        {
                            "index": 0,
                            "message": {
                                "role": "assistant",
                                "content": json.dumps({"scores": [1] * n, "reasoning": "ok"}),
                            },
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 1000, "completion_tokens": 50, "total_tokens": 1050},
                }
                data = json.dumps(reply).encode()
                self.send_response(503 if over else 200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                with outer._lock:
                    outer.in_flight -= 1

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._timer = threading.Timer(deadline_s, self.stop)
        self._timer.daemon = True

    def __enter__(self) -> MockVLM:
        self._thread.start()
        self._timer.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        self.stop()
        self.server.server_close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=16)
    ap.add_argument("--latency", type=float, default=0.2, help="added server latency per request (s)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    args = ap.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

    from sepsis_sdk.judge import LLMJudge
    from sepsis_sdk.llm import Backoff, LiteLLMChat
    from sepsis_sdk.microbench import Benchmark, read_records, run_benchmark, summarize, synthesize_video
    from sepsis_sdk.microbench._data import BenchCriterion, BenchTask

    def task(i: int) -> BenchTask:
        def crits(dim: str) -> tuple[BenchCriterion, ...]:
            spec = [(1, 1.0), (1, 1.0), (1, 0.5), (1, 0.5), (-1, 0.5)]
            return tuple(
                BenchCriterion(
                    dimension=dim, key=str(k), position=k, text=f"{dim} point {k}", sign=s, weight=w
                )
                for k, (s, w) in enumerate(spec, start=1)
            )

        return BenchTask(
            index=i, task=f"task {i}", requirement="req", category="Cellular-level",
            scientific=crits("scientific"), visual=crits("visual"), instruction=crits("instruction"),
        )  # fmt: skip

    bench = Benchmark(tasks=tuple(task(i) for i in range(1, args.tasks + 1)))
    n_calls = 3 * args.tasks
    print(f"machine: {platform.machine()} python {platform.python_version()}, {os.cpu_count()} CPUs")
    print(
        f"{args.tasks} tasks x 3 dimensions = {n_calls} judge calls per run, server latency {args.latency * 1000:.0f} ms"
    )
    with tempfile.TemporaryDirectory() as tmp:
        vids = Path(tmp) / "videos"
        for i in range(1, args.tasks + 1):
            synthesize_video(vids / f"{i}.mp4", n_frames=24, width=320, height=240)
        rows = []
        # warm-up (imports litellm, builds its HTTP client) so the first timed run does not pay for it
        with MockVLM(0.0, max_requests=3) as server:
            warm = LiteLLMChat(
                "openai/mock-vlm", api_base=f"http://127.0.0.1:{server.port}/v1", api_key="sk-local"
            )
            run_benchmark(
                Benchmark(tasks=bench.tasks[:1]), vids, LLMJudge(warm, max_image_side=None), model="warm",
                out=Path(tmp) / "warm.jsonl",
            )  # fmt: skip
        for conc in args.concurrency:
            with MockVLM(args.latency, max_requests=n_calls + 5) as server:
                chat = LiteLLMChat(
                    "openai/mock-vlm",
                    api_base=f"http://127.0.0.1:{server.port}/v1",
                    api_key="sk-local",
                    retries=0,
                    backoff=Backoff(base_s=0.0),
                )
                judge = LLMJudge(chat, max_image_side=None)
                out = Path(tmp) / f"r{conc}.jsonl"
                t = time.perf_counter()
                rep = run_benchmark(
                    bench, vids, judge, model="synthetic", out=out, concurrency=conc, max_side=320
                )
                wall = time.perf_counter() - t
                (s,) = summarize(read_records(out), n_tasks=args.tasks)
                rows.append((conc, wall, rep.written, s.valid_tasks, server.served, server.peak))
        base = rows[0][1]
        print(
            "\n| concurrency | wall s | verdicts/s | speed-up vs concurrency 1 | valid tasks | requests | peak in flight |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for conc, wall, written, valid, served, peak in rows:
            print(
                f"| {conc} | {wall:.2f} | {written / wall:.1f} | {base / wall:.2f}x | {valid}/{args.tasks} | {served} | {peak} |"
            )


if __name__ == "__main__":
    main()
