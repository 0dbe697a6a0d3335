"""Module-level graph factories for LangGraph's CLI and Studio (``langgraph.json`` points here).

Each factory builds its graph with defaults, configurable through environment variables:

- ``SEPSIS_SDK_MODEL``: a LiteLLM model string (default ``local/smollm2``, the embedded SmolLM2 model);
- ``SEPSIS_SDK_API_BASE``: the server URL for served models (e.g. vLLM's ``http://localhost:8000/v1``);
- ``SEPSIS_SDK_WORLD_MODEL``: a saved world-model directory (default: the fake world model on the
  ICU-Sepsis schema, which is only a demo).

LangGraph's server supplies its own checkpointer, so none is set here. Input: ``{"history": {...}}``
(a :class:`~sepsis_sdk.PatientHistory` as JSON).

``psr``/``direct``/``tool_calling`` build a graph (blocking: the world model loads). ``langgraph.json``
names the async ``apsr``/``adirect``/``atool_calling``, which build in a worker thread once per process:
LangGraph's server calls factories on its event loop and rejects blocking calls there.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

from sepsis_sdk.graphs._factories import build_direct_graph, build_psr_graph, build_tool_calling_graph


def default_model() -> Any:
    """The chat model named by ``SEPSIS_SDK_MODEL`` / ``SEPSIS_SDK_API_BASE``."""
    from sepsis_sdk.llm import LiteLLMChat

    kw = {"api_base": os.environ["SEPSIS_SDK_API_BASE"]} if os.environ.get("SEPSIS_SDK_API_BASE") else {}
    return LiteLLMChat(os.environ.get("SEPSIS_SDK_MODEL", "local/smollm2"), **kw)


def default_world_model() -> Any:
    """The world model at ``SEPSIS_SDK_WORLD_MODEL``, else the fake one (ICU-Sepsis schema)."""
    path = os.environ.get("SEPSIS_SDK_WORLD_MODEL")
    if path:
        from sepsis_sdk.world_model import load_world_model

        return load_world_model(path)
    from sepsis_sdk.world_model.fake import FakeWorldModel

    return FakeWorldModel()


_FACTORIES = {"psr": build_psr_graph, "direct": build_direct_graph, "tool_calling": build_tool_calling_graph}
_BUILT: dict[tuple[str | None, ...], Any] = {}
_LOCK = threading.Lock()


def _settings() -> tuple[str | None, ...]:
    return tuple(
        os.environ.get(k) for k in ("SEPSIS_SDK_MODEL", "SEPSIS_SDK_API_BASE", "SEPSIS_SDK_WORLD_MODEL")
    )


def build(kind: str) -> Any:
    """A new ``kind`` graph (``"psr"``, ``"direct"``, ``"tool_calling"``) with the defaults (blocking)."""
    return _FACTORIES[kind](default_model(), world_model=default_world_model())


def _built(kind: str) -> Any:
    # One graph per kind and settings per process: the server asks for the graph on every request, and
    # loading the world model each time would cost seconds (compiled graphs hold no run state; the
    # server copies them with its own checkpointer).
    key = (kind, *_settings())
    with _LOCK:
        if key not in _BUILT:
            # The server sends every run an empty context ({}); LangGraph would coerce it into the
            # context schema (AgentContext(), which has required fields) and fail. These graphs are
            # configured by their factory, so they take no context: the nodes keep their bound default.
            _BUILT[key] = build(kind).copy(update={"context_schema": None})
        return _BUILT[key]


def psr(config: Any = None) -> Any:
    """The propose–simulate–refine graph with defaults (sync; blocks while the world model loads)."""
    return build("psr")


def direct(config: Any = None) -> Any:
    """The direct (no tools) baseline graph with defaults (sync)."""
    return build("direct")


def tool_calling(config: Any = None) -> Any:
    """The SepsisAgent tool-protocol graph with defaults (sync)."""
    return build("tool_calling")


# The server's entry points (langgraph.json). LangGraph's server calls a graph factory on its event loop
# for every request and guards the loop with blockbuster: loading a saved torch world model there
# (``import torch``, file reads) failed with BlockingError (HTTP 500) and left torch half-imported. These
# async factories build in a worker thread, once per process and settings.
async def apsr(config: Any = None) -> Any:
    """:func:`psr` for LangGraph's server: built off the event loop, once."""
    return await asyncio.to_thread(_built, "psr")


async def adirect(config: Any = None) -> Any:
    """:func:`direct` for LangGraph's server: built off the event loop, once."""
    return await asyncio.to_thread(_built, "direct")


async def atool_calling(config: Any = None) -> Any:
    """:func:`tool_calling` for LangGraph's server: built off the event loop, once."""
    return await asyncio.to_thread(_built, "tool_calling")
