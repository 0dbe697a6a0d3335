"""Importing litellm with the SDK's settings: the one module both LiteLLMChat and the local provider use.

It exists so that ``_litellm`` (which registers the ``local/`` provider) and ``_local`` (which needs
litellm to register itself) do not import each other.
"""

from __future__ import annotations

import os
from typing import Any

from sepsis_sdk._lazy import require


def load_litellm() -> Any:
    """litellm, imported with ``LITELLM_LOCAL_MODEL_COST_MAP`` set (no price-list download) and quiet.

    Registers nothing: :func:`sepsis_sdk.llm.import_litellm` adds the ``local/`` provider on top.
    """
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    litellm = require("litellm", "llm", "LiteLLMChat")
    litellm.suppress_debug_info = True
    return litellm
