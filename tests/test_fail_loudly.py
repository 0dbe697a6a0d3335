"""Issue 11, "fail loudly": configuration errors raise, transient failures fall back and say so, every
call and decision has a total deadline, inputs never turn into NaN, and secrets never reach a trace.

The slow-server tests run a real HTTP server on 127.0.0.1 (no network beyond this machine).
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from sepsis_sdk.errors import (
    LLMCallError,
    LLMConfigError,
    LLMTimeoutError,
    MissingDependencyError,
    ModelError,
    PatientSchemaError,
)
from sepsis_sdk.graphs import (
    Prescription,
    Proposals,
    RefineDecision,
    build_direct_graph,
    build_psr_graph,
    build_tool_calling_graph,
    build_trace,
    dump_trace,
)
from sepsis_sdk.llm import Backoff, LiteLLMChat, allow_real_requests
from sepsis_sdk.testing import ScriptedChatModel, fake_openai_endpoint, tool_call
from sepsis_sdk.types import Observation, PatientHistory
from sepsis_sdk.world_model.fake import FakeWorldModel

SECRET = "sk-live-Zq8vV3secret0123456789"


@pytest.fixture(scope="module")
def icu_history():
    from sepsis_sdk.sources.icu_sepsis import sample_cohort

    cohort = sample_cohort(3, seed=2)
    return cohort.episode(str(cohort.patient_ids[0])).history(1)


def three_feature_patient() -> PatientHistory:
    names = ("meanbp", "lactate", "hr")
    obs = (Observation(t=0, values=(60.0, 4.0, 110.0)), Observation(t=1, values=(58.0, 4.5, 115.0)))
    return PatientHistory(patient_id="bed-3", observations=obs, actions=(0,), feature_names=names)


# ---------------------------------------------------------------------------------------------- config errors
def test_missing_torch_raises_at_graph_build_not_reply_did_not_validate(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # importing torch now fails, as without the extra
    with pytest.raises(MissingDependencyError, match="torch"):
        build_direct_graph("local/smollm2", world_model=FakeWorldModel())


def test_missing_torch_at_first_call_is_not_filed_as_invalid_output(monkeypatch, tmp_path):
    from sepsis_sdk.llm._local import clear_local_models

    clear_local_models()
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "torch", None)
    chat = LiteLLMChat(f"local/{tmp_path}")
    with pytest.raises(MissingDependencyError, match="torch"):
        chat.structured([{"role": "user", "content": "?"}], Prescription)


def test_missing_lora_adapter_raises_at_graph_build(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "config.json").write_text("{}")
    model = f"local/{tmp_path / 'base'}?adapter={tmp_path / 'no-such-adapter'}"
    with pytest.raises(ModelError, match="adapter"):
        build_direct_graph(model, world_model=FakeWorldModel())
    with pytest.raises(ModelError, match="does not exist"):
        build_psr_graph(f"local/{tmp_path / 'missing-model'}", world_model=FakeWorldModel())


def test_unknown_provider_raises_at_first_call(icu_history):
    graph = build_direct_graph("nosuchprovider/some-model", world_model=FakeWorldModel())
    with allow_real_requests(), pytest.raises(LLMConfigError) as info:  # litellm fails before any I/O
        graph.invoke({"history": icu_history})
    assert info.value.kind == "provider"


@pytest.mark.parametrize("status, kind", [(401, "auth"), (403, "auth"), (404, "not_found")])
def test_client_errors_raise_from_every_graph(respx_mock, icu_history, status, kind):
    for build in (build_direct_graph, build_psr_graph, build_tool_calling_graph):
        ep = fake_openai_endpoint(respx_mock, [status] * 4)
        with pytest.raises(LLMConfigError) as info:
            build(ep.chat(), world_model=FakeWorldModel()).invoke({"history": icu_history})
        assert info.value.status_code == status and info.value.kind == kind
        assert ep.calls == 1  # not retried, and the graph did not try again


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


def test_no_server_at_first_call_is_a_config_error(icu_history):
    chat = LiteLLMChat("openai/gpt-4o-mini", api_base=f"http://127.0.0.1:{_closed_port()}/v1",
                       api_key="sk-x", retries=1, backoff=Backoff(0.0, jitter=False))  # fmt: skip
    graph = build_direct_graph(chat, world_model=FakeWorldModel())
    with allow_real_requests(), pytest.raises(LLMConfigError) as info:
        graph.invoke({"history": icu_history})
    assert info.value.kind == "unreachable" and "api_base" in str(info.value)


def test_lost_connection_after_a_success_is_transient(respx_mock):
    import httpx

    ep = fake_openai_endpoint(respx_mock, ["first", httpx.ConnectError("refused"), httpx.ConnectError("x")])
    chat = ep.chat(retries=1)
    assert chat.complete([{"role": "user", "content": "?"}]).text == "first"
    with pytest.raises(LLMCallError) as info:
        chat.complete([{"role": "user", "content": "?"}])
    assert not isinstance(info.value, LLMConfigError) and info.value.attempts == 2


def test_transient_failure_uses_the_fallback_and_the_trace_says_so(respx_mock, icu_history):
    ep = fake_openai_endpoint(respx_mock, [503] * 8)
    graph = build_direct_graph(ep.chat(retries=1), world_model=FakeWorldModel())
    trace = build_trace(graph.invoke({"history": icu_history}))
    assert trace["source"] == "fallback"
    assert trace["fallback_reason"]["kind"] == "transport"
    assert "503" in trace["fallback_reason"]["detail"]
    assert all(e["kind"] == "transport" for e in trace["errors"])


def test_invalid_output_fallback_has_its_kind(icu_history):
    model = ScriptedChatModel(["not json"] * 6, max_reasks=2)
    trace = build_trace(build_direct_graph(model).invoke({"history": icu_history}))
    assert trace["source"] == "fallback" and trace["fallback_reason"]["kind"] == "invalid_output"
    assert trace["final"]["failure_kind"] == "invalid_output"


# ---------------------------------------------------------------------------------------------- patient schema
@pytest.mark.parametrize("build", [build_psr_graph, build_direct_graph, build_tool_calling_graph])
def test_patient_is_checked_against_the_world_model_before_any_llm_call(build):
    model = ScriptedChatModel([Prescription(fluid=1, vaso=0)] * 3)
    graph = build(model, world_model=FakeWorldModel())  # ICU-Sepsis schema: 47 features
    with pytest.raises(PatientSchemaError, match=r"bed-3.*3 features.*icu-sepsis"):
        graph.invoke({"history": three_feature_patient()})
    assert model.calls == []


# ---------------------------------------------------------------------------------------------- deadlines
class _Trickle:
    """A local OpenAI-style server that sends its (valid) reply one byte every ``gap_s`` seconds."""

    def __init__(self, gap_s: float = 0.25):
        body = json.dumps({
            "id": "x", "object": "chat.completion", "created": 1, "model": "slow",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": '{"fluid": 1, "vaso": 0}'}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }).encode()  # fmt: skip
        stop = self.stop = threading.Event()
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                outer.requests += 1
                self.rfile.read(int(self.headers.get("content-length", 0)))
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                for i in range(len(body)):
                    if stop.wait(gap_s):
                        return
                    try:
                        self.wfile.write(body[i : i + 1])
                        self.wfile.flush()
                    except OSError:
                        return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.api_base = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self):
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def trickle():
    server = _Trickle()
    yield server
    server.close()


def test_timeout_is_a_total_deadline_not_per_read(trickle):
    # The reply takes about 30 s to arrive (0.25 s per byte, well under any per-read timeout): a total
    # deadline of 1 s must end the call long before the last byte.
    chat = LiteLLMChat("openai/slow", api_base=trickle.api_base, api_key="sk-x", timeout=1.0, retries=2)
    with allow_real_requests(), pytest.raises(LLMTimeoutError) as info:
        chat.complete([{"role": "user", "content": "?"}])
    assert info.value.deadline_s == 1.0 and not trickle.stop.is_set()


async def test_async_timeout_is_a_total_deadline(trickle):
    from sepsis_sdk.testing import prepare_litellm_for_respx

    prepare_litellm_for_respx()  # httpx transport for the async path (as in production tests)
    chat = LiteLLMChat("openai/slow", api_base=trickle.api_base, api_key="sk-x", timeout=1.0)
    with allow_real_requests(), pytest.raises(LLMTimeoutError):
        await chat.acomplete([{"role": "user", "content": "?"}])


def test_decision_deadline_makes_the_fallback_act_and_says_why(trickle, icu_history):
    chat = LiteLLMChat("openai/slow", api_base=trickle.api_base, api_key="sk-x", timeout=60)
    graph = build_direct_graph(chat, world_model=FakeWorldModel(), deadline_s=1.0, max_retries=3)
    with allow_real_requests():
        trace = build_trace(graph.invoke({"history": icu_history}))
    assert trace["source"] == "fallback" and trace["fallback_reason"]["kind"] == "deadline"
    assert trickle.requests == 1  # no retry started after the deadline


def test_deadline_spent_before_a_node_makes_no_model_call(icu_history):
    model = ScriptedChatModel([Proposals(candidates=[{"fluid": 1, "vaso": 0}]),
                               RefineDecision(decision="commit", fluid=1, vaso=0)])  # fmt: skip
    graph = build_psr_graph(model, world_model=FakeWorldModel(), deadline_s=1e-6)
    trace = build_trace(graph.invoke({"history": icu_history}))
    assert model.calls == [] and trace["fallback_reason"]["kind"] == "deadline"
    with pytest.raises(Exception, match="deadline_s"):
        build_psr_graph(model, world_model=FakeWorldModel(), deadline_s=0)


def test_tool_calling_graph_has_the_deadline_too(icu_history):
    model = ScriptedChatModel([tool_call("prescription", {"vasopressor": 0, "iv_fluid": 1})])
    graph = build_tool_calling_graph(model, world_model=FakeWorldModel(), deadline_s=1e-6)
    assert build_trace(graph.invoke({"history": icu_history}))["fallback_reason"]["kind"] == "deadline"


# ---------------------------------------------------------------------------------------------- huge inputs
def _with_huge_values(h: PatientHistory) -> PatientHistory:
    vals = list(h.observations[-1].values)
    vals[5], vals[6], vals[7] = 1e100, -1e300, 1e308
    obs = (*h.observations[:-1], h.observations[-1].model_copy(update={"values": tuple(vals)}))
    return h.model_copy(update={"observations": obs})


@pytest.fixture(scope="module")
def small_cohort():
    from sepsis_sdk.sources.icu_sepsis import sample_cohort

    return sample_cohort(60, seed=1)


def _fit(backend, cohort):
    if backend == "torch":
        from sepsis_sdk.world_model.torch_backend import TorchConfig, TorchWorldModel

        cfg = TorchConfig(n_members=2, hidden=16, gru_hidden=8, epochs=1, window=3)
        return TorchWorldModel.fit(cohort, cfg, device="cpu")
    if backend == "xgboost":
        from sepsis_sdk.world_model.xgboost_backend import XGBoostConfig, XGBoostWorldModel

        return XGBoostWorldModel.fit(cohort, XGBoostConfig(n_members=1, n_estimators=5, max_depth=2))
    from sepsis_sdk.world_model.neighbour_backend import NeighbourWorldModel

    return NeighbourWorldModel.fit(cohort)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "xgboost", "neighbour"])
def test_huge_inputs_never_give_nan(backend, small_cohort):
    wm = _fit(backend, small_cohort)
    h = _with_huge_values(small_cohort.episode(str(small_cohort.patient_ids[0])).history(1))
    with np.errstate(over="raise"):  # no float32 overflow on the way either
        pred = wm.predict([h], [3])
        ro = wm.rollout([h], [[1, 2]], n_samples=2)
    for name in ("mean", "std", "lower", "upper", "p_death", "p_discharge", "support"):
        assert np.isfinite(getattr(pred, name)).all(), name
    assert np.isfinite(ro.p_death).all() and np.isfinite(ro.p_discharge).all()


def test_infinite_input_is_a_clear_error(icu_history):
    vals = list(icu_history.current.values)
    vals[4] = float("inf")
    last = icu_history.observations[-1].model_copy(update={"values": tuple(vals)})
    bad = icu_history.model_copy(update={"observations": (*icu_history.observations[:-1], last)})
    with pytest.raises(ModelError, match=r"feature .*inf"):
        FakeWorldModel().predict([bad], [0])


# ---------------------------------------------------------------------------------------------- secrets
def _echo_401(request):
    import httpx

    return httpx.Response(401, json={"error": {"message": f"Incorrect API key provided: {SECRET}"}})


def _echo_503(request):
    import httpx

    return httpx.Response(503, json={"error": {"message": f"overloaded (key {SECRET})"}})


def test_api_key_echoed_in_a_401_is_redacted_from_the_error(respx_mock, icu_history, caplog):
    ep = fake_openai_endpoint(respx_mock, [_echo_401])
    graph = build_direct_graph(ep.chat(api_key=SECRET), world_model=FakeWorldModel())
    caplog.set_level(logging.DEBUG)
    with pytest.raises(LLMConfigError) as info:
        graph.invoke({"history": icu_history})
    printed = "".join(traceback.format_exception(info.value))
    assert SECRET not in printed and "[REDACTED]" in str(info.value)
    assert SECRET not in caplog.text


def test_api_key_echoed_by_a_failing_server_never_reaches_the_trace(respx_mock, icu_history, tmp_path):
    ep = fake_openai_endpoint(respx_mock, [_echo_503] * 8)
    graph = build_direct_graph(ep.chat(api_key=SECRET, retries=1), world_model=FakeWorldModel())
    state = graph.invoke({"history": icu_history})
    trace = build_trace(state)
    assert trace["source"] == "fallback" and trace["errors"]
    assert SECRET not in json.dumps(trace) and "[REDACTED]" in json.dumps(trace["errors"])
    dump_trace(state, str(tmp_path / "t.json"))
    assert SECRET not in (tmp_path / "t.json").read_text()


def test_secret_env_vars_are_redacted(monkeypatch):
    from sepsis_sdk.llm import redact

    monkeypatch.setenv("MY_PROVIDER_API_KEY", "abcdef-987654321")
    assert redact("token abcdef-987654321 rejected") == "token [REDACTED] rejected"
    assert redact("short ab ok") == "short ab ok"


def test_retries_never_sleep_past_the_deadline():
    sleeps: list[float] = []
    chat = LiteLLMChat("openai/x", completion=lambda **kw: (_ for _ in ()).throw(TimeoutError("slow")),
                       retries=5, backoff=Backoff(base_s=10.0, jitter=False), timeout=5.0,
                       sleep=sleeps.append)  # fmt: skip
    with pytest.raises(LLMTimeoutError):
        chat.complete([{"role": "user", "content": "?"}])
    assert sleeps == []  # a 10 s wait would end past the 5 s deadline: stop instead of sleeping


# ---------------------------------------------------------------------------------------------- local models
@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    from sepsis_sdk.testing import tiny_causal_lm

    return tiny_causal_lm(tmp_path_factory.mktemp("tiny") / "lm", seed=0)


def test_local_generation_stops_at_the_deadline(tiny_path):
    # 20k new tokens take far longer than 0.3 s even on a tiny model: generation is stopped by a
    # stopping criterion at the call's deadline (not left running), and the call raises a timeout.
    import time

    from sepsis_sdk.llm._local import GenRequest, load_local_model

    local = load_local_model(str(tiny_path))
    prompt = local.render([{"role": "user", "content": "count"}])
    (res,) = local.generate([GenRequest(prompt, max_new_tokens=20000, deadline=time.monotonic() + 0.3)])
    assert res.finish_reason == "deadline" and res.completion_tokens < 20000
    chat = LiteLLMChat(f"local/{tiny_path}", max_tokens=20000, timeout=0.3, retries=0)
    with pytest.raises(LLMTimeoutError):
        chat.complete([{"role": "user", "content": "count"}])
