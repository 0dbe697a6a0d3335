"""`langgraph dev` serves the studio graphs with a saved torch world model (issue 11).

The real LangGraph dev server (``langgraph-cli[inmem]``) guards its event loop with blockbuster: a graph
factory that imports torch or reads files on the loop fails with a BlockingError (HTTP 500) and leaves
torch half-imported. The test starts the server on 127.0.0.1 with ``SEPSIS_SDK_WORLD_MODEL`` pointing at
a saved torch world model and a local fake OpenAI-style server as the model, and runs each graph through
``/runs/wait``. It skips, saying why, where the server is not installed or cannot start; nothing leaves
this machine.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("langgraph_cli") is None
        or importlib.util.find_spec("langgraph_api") is None,
        reason="langgraph-cli[inmem] is not installed (pip install 'langgraph-cli[inmem]')",
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _FakeLLM:
    """An OpenAI-compatible /chat/completions answering JSON mode with whatever the schema asks for."""

    def __init__(self) -> None:
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                outer.requests += 1
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                text = json.dumps(body.get("messages", []))
                if "RefineDecision" in text:  # instructor's JSON mode names the schema it wants
                    reply = {"decision": "commit", "fluid": 2, "vaso": 0, "rationale": "ok"}
                elif "Proposals" in text:
                    reply = {"candidates": [{"fluid": 2, "vaso": 0, "rationale": "a"}], "reasoning": ""}
                elif "revise" in text:
                    reply = {"decision": "commit", "fluid": 2, "vaso": 0, "rationale": "ok"}
                else:
                    reply = {"fluid": 1, "vaso": 0, "rationale": "steady"}
                if body.get("tools"):  # the tool-calling graph: prescribe at once
                    message = {"role": "assistant", "content": None, "tool_calls": [{
                        "id": "c1", "type": "function",
                        "function": {"name": "prescription",
                                     "arguments": json.dumps({"vasopressor": 0, "iv_fluid": 1})}}]}  # fmt: skip
                else:
                    message = {"role": "assistant", "content": json.dumps(reply)}
                out = json.dumps({"id": "x", "object": "chat.completion", "created": 1, "model": "m",
                                  "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                                  "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                            "total_tokens": 2}}).encode()  # fmt: skip
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.api_base = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def saved_torch_world_model(tmp_path_factory):
    from sepsis_sdk.sources.icu_sepsis import sample_cohort
    from sepsis_sdk.world_model.torch_backend import TorchConfig, TorchWorldModel

    cohort = sample_cohort(40, seed=3)
    wm = TorchWorldModel.fit(
        cohort, TorchConfig(n_members=2, hidden=16, gru_hidden=8, epochs=1), device="cpu"
    )
    path = tmp_path_factory.mktemp("wm") / "torch-wm"
    wm.save(path)
    history = cohort.episode(str(cohort.patient_ids[0])).history(1)
    return path, json.loads(history.model_dump_json())


@pytest.fixture(scope="module")
def dev_server(saved_torch_world_model, tmp_path_factory):
    import httpx

    llm = _FakeLLM()
    port = _free_port()
    env = {
        **os.environ,
        "SEPSIS_SDK_WORLD_MODEL": str(saved_torch_world_model[0]),
        "SEPSIS_SDK_MODEL": "hosted_vllm/fake",
        "SEPSIS_SDK_API_BASE": llm.api_base,
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "LANGGRAPH_NO_VERSION_CHECK": "true",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "DISABLE_AIOHTTP_TRANSPORT": "True",
    }
    env.pop("SEPSIS_SDK_DEBUG", None)
    log = tmp_path_factory.mktemp("lg") / "server.log"
    # The repository's langgraph.json with absolute paths, run from a temporary folder: the server writes
    # its state folder (.langgraph_api) into its working directory, which must not be the repository.
    config = json.loads((ROOT / "langgraph.json").read_text())
    config["graphs"] = {
        k: f"{(ROOT / v.split(':')[0]).resolve()}:{v.split(':')[1]}" for k, v in config["graphs"].items()
    }
    config["dependencies"] = [str(ROOT)]
    (log.parent / "langgraph.json").write_text(json.dumps(config))
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "langgraph_cli", "dev", "--no-browser", "--no-reload", "--port", str(port),
             "--host", "127.0.0.1", "--config", str(log.parent / "langgraph.json")],
            cwd=log.parent, env=env, stdout=out, stderr=subprocess.STDOUT,  # its state folder goes there
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                # installed but crashed at start (an import error in graphs/studio.py or langgraph.json): a failure
                pytest.fail(f"langgraph dev exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{base}/ok", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.skip(f"langgraph dev did not start within 120 s: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield base, saved_torch_world_model[1], log, llm
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        llm.close()


@pytest.mark.parametrize("graph", ["direct", "psr", "tool_calling"])
def test_langgraph_dev_runs_each_graph_with_a_saved_torch_world_model(dev_server, graph):
    import httpx

    base, history, log, llm = dev_server
    before = llm.requests
    with httpx.Client(base_url=base, timeout=120) as client:
        assistants = client.post("/assistants/search", json={"graph_id": graph}).json()
        assert assistants, log.read_text()[-3000:]
        thread = client.post("/threads", json={}).json()["thread_id"]
        run = client.post(
            f"/threads/{thread}/runs/wait",
            json={"assistant_id": assistants[0]["assistant_id"], "input": {"history": history}},
        )
        assert run.status_code == 200, (run.text, log.read_text()[-3000:])
        out = run.json()
    assert "BlockingError" not in log.read_text()
    assert "final" in out, (out, log.read_text()[-3000:])
    assert out["final"]["source"] in ("model", "guard"), (out["final"], log.read_text()[-3000:])
    assert llm.requests > before  # the model answered: no fallback, no error
