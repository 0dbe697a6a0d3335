"""Module-level graph factories for LangGraph's CLI and Studio (``langgraph.json`` points here).

Each factory builds its graph with defaults, configurable through environment variables:

- ``SEPSIS_SDK_MODEL``: a LiteLLM model string (default ``local/smollm2``, the embedded SmolLM2 model);
- ``SEPSIS_SDK_API_BASE``: the server URL for served models (e.g. vLLM's ``http://localhost:8000/v1``);
- ``SEPSIS_SDK_WORLD_MODEL``: a saved world-model directory (default: the fake world model on the
  ICU-Sepsis schema, which is only a demo).

LangGraph's server supplies its own checkpointer, so none is set here. Input: ``{"history": {...}}``
(a :class:`~sepsis_sdk.PatientHistory` as JSON).
"""

from __future__ import annotations

import os
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


def psr(config: Any = None) -> Any:
    """The propose–simulate–refine graph with defaults."""
    return build_psr_graph(default_model(), world_model=default_world_model())


def direct(config: Any = None) -> Any:
    """The direct (no tools) baseline graph with defaults."""
    return build_direct_graph(default_model(), world_model=default_world_model())


def tool_calling(config: Any = None) -> Any:
    """The SepsisAgent tool-protocol graph with defaults."""
    return build_tool_calling_graph(default_model(), world_model=default_world_model())
