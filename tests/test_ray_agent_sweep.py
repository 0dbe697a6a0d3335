"""Issue 14: ``sepsis-sdk evaluate-agent --executor ray``: the Markov sweep's decisions on Ray actors.

A local Ray with 2 CPUs (the same session cluster as tests/test_ray_executor.py). The chat model is a
scripted fake made by a function of this module; the module travels to the actors by value
(``register_pickle_by_value``), so each actor builds its own fake, as it would build its own model.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import sys

import pytest

ray = pytest.importorskip("ray")

from sepsis_sdk.testing import FunctionChatModel  # noqa: E402


@pytest.fixture(scope="module")
def ray_cluster(local_ray):
    """The session's local Ray (tests/conftest.py), with this module's functions pickled by value."""
    local_ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    return local_ray


def _reply(messages, tools):
    """A deterministic prescription per patient (a hash of the prompt), signed with the deciding process."""
    h = int(hashlib.sha256(messages[-1]["content"].encode()).hexdigest(), 16)
    return json.dumps({"fluid": h % 5, "vaso": (h // 5) % 5, "rationale": f"pid {os.getpid()}"})


def _fake_model(model, api_base, api_key, temperature):
    return FunctionChatModel(_reply, name=model)


@pytest.fixture
def fake_chat(monkeypatch):
    import sepsis_sdk.cli.agent as cli_agent

    monkeypatch.setattr(cli_agent, "_model", _fake_model)


def _run(out, *extra, cache=None):
    from typer.testing import CliRunner

    from sepsis_sdk.cli import app

    args = ["evaluate-agent", "--graph", "direct", "--model", "fake/scripted", "--states", "0-11",
            "--complete-with", "clinician", "--max-concurrency", "2", "--out", str(out), *extra]  # fmt: skip
    if cache is not None:
        args += ["--cache", str(cache)]
    return CliRunner().invoke(app, args, env={"COLUMNS": "200"})


def _pids(cache_root):
    (path,) = cache_root.glob("*/decisions.jsonl")
    return [int(json.loads(line)["rationale"].split()[1]) for line in path.read_text().splitlines()]


def _same(a, b):
    keys = (
        "value",
        "method",
        "n_states",
        "n_decisions",
        "shares",
        "adherence",
        "unsafe_rate",
        "actions",
        "key",
    )
    return {k: a[k] for k in keys} == {k: b[k] for k in keys}


def test_ray_sweep_equals_the_local_sweep_with_decisions_made_on_the_actors(ray_cluster, fake_chat, tmp_path):
    local = _run(tmp_path / "local")
    assert local.exit_code == 0, local.output
    on_ray = _run(tmp_path / "ray", "--executor", "ray", "--actors", "2")
    assert on_ray.exit_code == 0, on_ray.output
    a = json.loads((tmp_path / "local" / "agent_value.json").read_text())
    b = json.loads((tmp_path / "ray" / "agent_value.json").read_text())
    assert a["value"] is not None and len(set(a["actions"][:12])) > 1  # a real table, not one constant
    assert _same(a, b) and a["new_decisions"] == b["new_decisions"] == 12
    # Local decisions carry this process's pid; the Ray run's come from its two actors, never from here.
    assert set(_pids(tmp_path / "local" / "cache")) == {os.getpid()}
    ray_pids = _pids(tmp_path / "ray" / "cache")
    assert len(ray_pids) == 12 and os.getpid() not in ray_pids and len(set(ray_pids)) == 2
    assert "12 decisions made on 2 Ray actors" in on_ray.output
    peak = re.search(r"at most (\d+) \(limit 2\)", on_ray.output)  # the hosted model's cluster-wide bound
    assert peak and 1 <= int(peak.group(1)) <= 2, on_ray.output
    # A Ray run over a local run's cache resumes it: nothing decided again, the same result.
    again = _run(tmp_path / "again", "--executor", "ray", cache=tmp_path / "local" / "cache")
    assert again.exit_code == 0, again.output
    c = json.loads((tmp_path / "again" / "agent_value.json").read_text())
    assert _same(a, c) and c["new_decisions"] == 0 and "no Ray actor started" in again.output


def test_unreachable_ray_address_exits_2_naming_it(ray_cluster, fake_chat, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = _run(tmp_path / "o", "--executor", "ray", "--ray-address", f"127.0.0.1:{port}")
    assert res.exit_code == 2 and f"127.0.0.1:{port}" in res.output, res.output
    assert not (tmp_path / "o" / "agent_value.json").exists()
    res = _run(tmp_path / "o", "--ray-address", "auto")
    assert res.exit_code == 2 and "need --executor ray" in res.output


def test_history_mode_on_ray_exits_2_and_says_it_runs_locally(ray_cluster, fake_chat, tmp_path):
    from typer.testing import CliRunner

    from sepsis_sdk.cli import app

    args = ["evaluate-agent", "--graph", "direct", "--model", "fake/scripted", "--monte-carlo", "--episodes", "2",
            "--executor", "ray", "--out", str(tmp_path / "mc")]  # fmt: skip
    res = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert res.exit_code == 2 and "history mode (--monte-carlo) runs locally" in res.output, res.output
    assert not (tmp_path / "mc" / "agent_value.json").exists()


def test_a_worker_killed_for_memory_is_a_cluster_error_not_an_internal_error():
    """Ray reports a task whose worker its memory monitor killed as a task error caused by OutOfMemoryError:
    that is the cluster's condition (exit 2, named), not an exception of the user's code (exit 1)."""
    from sepsis_sdk.errors import ClusterError
    from sepsis_sdk.scale._executor import _unwrap

    oom = ray.exceptions.OutOfMemoryError("1 worker(s) were killed due to the node running low on memory")
    exc = ray.exceptions.RayTaskError("_Holder.run", "", oom)
    got = _unwrap(exc, "item 3 on actor 1")
    assert isinstance(got, ClusterError) and "item 3 on actor 1" in str(got) and "low on memory" in str(got)
    mine = ValueError("the user's own error")  # still reaches the caller unchanged
    assert _unwrap(ray.exceptions.RayTaskError("f", "", mine), "task 0") is mine
