"""The ``local/`` LiteLLM provider (in-process Hugging Face causal LMs). Work in progress."""

from __future__ import annotations

from typing import Any

_REGISTERED = False


def register_local_provider(litellm: Any | None = None) -> None:
    """Register ``local/`` in ``litellm.custom_provider_map`` (idempotent)."""
    global _REGISTERED
    if _REGISTERED:
        return
    _REGISTERED = True
