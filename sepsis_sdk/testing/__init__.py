"""Test doubles for code built on sepsis-sdk: fake chat models, a fake LLM endpoint, the request guard.

Nothing here touches the network. Enable the pytest fixtures in your ``conftest.py`` with::

    pytest_plugins = ["sepsis_sdk.testing.pytest_plugin"]

Example:
    >>> from sepsis_sdk.testing import ScriptedChatModel
    >>> model = ScriptedChatModel(["first", "second"])
    >>> [model.complete([{"role": "user", "content": "?"}]).text for _ in range(2)]
    ['first', 'second']

``FakeWorldModel`` is re-exported from :mod:`sepsis_sdk.world_model.fake` when that module exists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sepsis_sdk._lazy import lazy_getattr
from sepsis_sdk.llm import (
    allow_real_requests,
    block_real_requests,
    real_requests_allowed,
    set_real_requests_allowed,
)
from sepsis_sdk.testing._fakes import (
    FunctionChatModel,
    RecordedCall,
    ScriptedChatModel,
    ScriptExhaustedError,
    to_response,
    tool_call,
)
from sepsis_sdk.testing._schema_model import SchemaChatModel, example_from_schema

_LAZY: dict[str, str] = {
    "FakeEndpoint": "sepsis_sdk.testing._respx",
    "chat_completion_json": "sepsis_sdk.testing._respx",
    "fake_openai_endpoint": "sepsis_sdk.testing._respx",
    "prepare_litellm_for_respx": "sepsis_sdk.testing._respx",
    "tiny_causal_lm": "sepsis_sdk.testing._tiny",
    "FakeWorldModel": "sepsis_sdk.world_model.fake",
}

__all__ = sorted(
    [
        "FunctionChatModel",
        "RecordedCall",
        "ScriptExhaustedError",
        "ScriptedChatModel",
        "SchemaChatModel",
        "example_from_schema",
        "allow_real_requests",
        "block_real_requests",
        "real_requests_allowed",
        "set_real_requests_allowed",
        "to_response",
        "tool_call",
        *_LAZY,
    ]
)


__getattr__ = lazy_getattr("sepsis_sdk.testing", _LAZY, globals())


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover
    from sepsis_sdk.testing._respx import (
        FakeEndpoint,
        chat_completion_json,
        fake_openai_endpoint,
        prepare_litellm_for_respx,
    )
    from sepsis_sdk.testing._tiny import tiny_causal_lm
    from sepsis_sdk.world_model.fake import FakeWorldModel
