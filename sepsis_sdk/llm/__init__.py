"""The LLM layer: one :class:`ChatModel` protocol, LiteLLM behind it, and local models through LiteLLM.

Example:
    >>> from sepsis_sdk.llm import LiteLLMChat
    >>> chat = LiteLLMChat("openai/gpt-4o-mini", temperature=0)          # doctest: +SKIP
    >>> chat = LiteLLMChat("hosted_vllm/Qwen/Qwen3-4B", api_base="http://localhost:8000/v1")  # doctest: +SKIP
    >>> chat = LiteLLMChat("local/smollm2")  # in-process, offline, the embedded default  # doctest: +SKIP

litellm, instructor, torch and transformers are imported only when a call needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sepsis_sdk._lazy import lazy_getattr
from sepsis_sdk.llm._base import (
    ChatModel,
    ChatResponse,
    Message,
    StructuredResponse,
    ToolCall,
    Usage,
    acall_structured,
    call_structured,
)
from sepsis_sdk.llm._deadline import call_deadline
from sepsis_sdk.llm._guard import (
    allow_real_requests,
    block_real_requests,
    real_requests_allowed,
    set_real_requests_allowed,
)
from sepsis_sdk.llm._redact import redact, redact_obj, register_secret
from sepsis_sdk.llm._retry import Backoff

_LAZY: dict[str, str] = {
    "LiteLLMChat": "sepsis_sdk.llm._litellm",
    "default_structured_mode": "sepsis_sdk.llm._litellm",
    "import_litellm": "sepsis_sdk.llm._litellm",
    "parse_tool_call": "sepsis_sdk.llm._litellm",
    "is_payload_too_large": "sepsis_sdk.llm._retry",
    "ReplyCache": "sepsis_sdk.llm._cache",
    "register_local_provider": "sepsis_sdk.llm._local",
    "load_local_model": "sepsis_sdk.llm._local",
    "LocalModel": "sepsis_sdk.llm._local",
    "smollm2_path": "sepsis_sdk.llm._local",
    "embedded_agent_path": "sepsis_sdk.llm._local",
    "cache_root": "sepsis_sdk.llm._local",
    "implied_adapter": "sepsis_sdk.llm._local",
    "Choice": "sepsis_sdk.llm._choice",
    "LogLikChooser": "sepsis_sdk.llm._choice",
    "as_chooser": "sepsis_sdk.llm._choice",
    "score_continuations": "sepsis_sdk.llm._choice",
    "forget_prefix": "sepsis_sdk.llm._choice",
}

__all__ = sorted(
    [
        "Backoff",
        "ChatModel",
        "ChatResponse",
        "Message",
        "StructuredResponse",
        "ToolCall",
        "Usage",
        "acall_structured",
        "allow_real_requests",
        "block_real_requests",
        "call_deadline",
        "call_structured",
        "real_requests_allowed",
        "redact",
        "redact_obj",
        "register_secret",
        "set_real_requests_allowed",
        *_LAZY,
    ]
)


__getattr__ = lazy_getattr("sepsis_sdk.llm", _LAZY, globals())


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover
    from sepsis_sdk.llm._cache import ReplyCache
    from sepsis_sdk.llm._choice import Choice, LogLikChooser, as_chooser, forget_prefix, score_continuations
    from sepsis_sdk.llm._litellm import LiteLLMChat, default_structured_mode, import_litellm, parse_tool_call
    from sepsis_sdk.llm._local import (
        LocalModel,
        cache_root,
        embedded_agent_path,
        implied_adapter,
        load_local_model,
        register_local_provider,
        smollm2_path,
    )
