"""The ChatModel protocol: the one boundary between the SDK and any language model.

Messages are OpenAI-style dicts (``{"role": "user", "content": "..."}``; content may be a list of parts
with ``{"type": "image_url", ...}`` for vision models), because that is what LiteLLM, vLLM and most
servers speak. Replies come back as :class:`ChatResponse`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel

Message = dict[str, Any]
T = TypeVar("T", bound=BaseModel)


@dataclass(frozen=True)
class ToolCall:
    """A tool call requested by the model; ``arguments`` already parsed from JSON when possible.

    Attributes:
        id: the provider's call id (echo it back in the ``tool`` message).
        name: the tool's name.
        arguments: the parsed JSON arguments (``{}`` when they could not be parsed).
        raw_arguments: the arguments exactly as the model wrote them.
        error: why ``raw_arguments`` could not be parsed into a JSON object, else ``None``. Malformed
            arguments are kept and reported rather than raised, so a graph can send the error back to the
            model as a tool message and let it correct itself.
    """

    id: str
    name: str
    arguments: dict[str, Any]
    raw_arguments: str = ""
    error: str | None = None


@dataclass
class Usage:
    """Token use, cost and latency of one or more calls (adds up with ``+``)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    calls: int = 0
    cached_calls: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cost_usd + other.cost_usd,
            self.latency_s + other.latency_s,
            self.calls + other.calls,
            self.cached_calls + other.cached_calls,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "cost_usd": self.cost_usd,
            "latency_s": self.latency_s,
            "calls": self.calls,
            "cached_calls": self.cached_calls,
        }


@dataclass
class ChatResponse:
    """One model reply: text and/or tool calls, plus usage."""

    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    finish_reason: str | None = None
    raw: Any = None

    def as_message(self) -> Message:
        """The reply as an assistant message to append to the conversation."""
        msg: Message = {"role": "assistant", "content": self.text or None}
        if self.tool_calls:
            import json

            msg["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.raw_arguments or json.dumps(c.arguments)},
                }
                for c in self.tool_calls
            ]
        return msg


@runtime_checkable
class ChatModel(Protocol):
    """Anything that can answer a conversation: hosted, served, local or fake.

    Implementations: :class:`sepsis_sdk.llm.LiteLLMChat` (any LiteLLM model string, local models
    included through the ``local/`` provider) and the fakes in :mod:`sepsis_sdk.testing`.
    """

    name: str

    def complete(
        self,
        messages: list[Message],
        *,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: Any = None,
        **kwargs: Any,
    ) -> ChatResponse:
        """One reply (text and/or tool calls)."""
        ...

    async def acomplete(
        self,
        messages: list[Message],
        *,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: Any = None,
        **kwargs: Any,
    ) -> ChatResponse:
        """Async :meth:`complete`."""
        ...

    def structured(self, messages: list[Message], response_model: type[T], **kwargs: Any) -> T:
        """A reply parsed and validated into ``response_model`` (re-asked on validation errors)."""
        ...

    async def astructured(self, messages: list[Message], response_model: type[T], **kwargs: Any) -> T:
        """Async :meth:`structured`."""
        ...
