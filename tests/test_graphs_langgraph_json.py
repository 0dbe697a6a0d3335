"""langgraph.json loads: each entry is a file-path factory that builds its graph with defaults."""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NODES = {
    "psr": {"observe", "propose", "simulate", "refine", "guard", "prescribe"},
    "direct": {"observe", "decide", "guard", "prescribe"},
    "tool_calling": {"observe", "agent", "tools", "guard", "prescribe"},
}


def _load(spec: str):
    path, attr = spec.split(":")
    file = (ROOT / path).resolve()
    assert file.is_file(), file
    # loaded by path, the way LangGraph's server does (not through the package)
    mod_spec = importlib.util.spec_from_file_location(f"_lg_{file.stem}", file)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    return getattr(mod, attr)


@pytest.mark.parametrize("name", sorted(NODES))
def test_langgraph_json_entries_build(name, monkeypatch):
    monkeypatch.delenv("SEPSIS_SDK_WORLD_MODEL", raising=False)
    monkeypatch.setenv("SEPSIS_SDK_MODEL", "openai/gpt-4o-mini")  # constructing a model makes no request
    config = json.loads((ROOT / "langgraph.json").read_text())
    assert set(config["graphs"]) == set(NODES)
    factory = _load(config["graphs"][name])
    # the server's entry points are async (built off its event loop); a plain call gives a coroutine
    graph = asyncio.run(factory({})) if inspect.iscoroutinefunction(factory) else factory({})
    assert set(graph.get_graph().nodes) - {"__start__", "__end__"} == NODES[name]
    assert graph.name == name


def test_default_model_is_the_embedded_smollm2(monkeypatch):
    monkeypatch.delenv("SEPSIS_SDK_MODEL", raising=False)
    from sepsis_sdk.graphs.studio import default_model

    assert default_model().model == "local/smollm2"
