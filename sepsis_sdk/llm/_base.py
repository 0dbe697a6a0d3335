"""The ChatModel protocol: the one boundary between the SDK and any language model.

Messages are OpenAI-style dicts (``{"role": "user", "content": "..."}``; content may be a list of parts
with ``{"type": "image_url", ...}`` for vision models), because that is what LiteLLM, vLLM and most
servers speak. Replies come back as :class:`ChatResponse`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

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

    def to_dict(self) -> dict[str, Any]:
        """The counts as a plain dict (``total_tokens`` included)."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "cost_usd": self.cost_usd,
            "latency_s": self.latency_s,
            "calls": self.calls,
            "cached_calls": self.cached_calls,
        }

    def as_dict(self) -> dict[str, Any]:
        """Deprecated alias of :meth:`to_dict`."""
        warnings.warn("Usage.as_dict() is deprecated; use to_dict()", DeprecationWarning, stacklevel=2)
        return self.to_dict()


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


@dataclass(frozen=True)
class StructuredResponse(Generic[T]):
    """A structured reply together with what it cost: usage travels with the value, never through a
    shared counter, so concurrent callers of one model each see their own numbers.

    Attributes:
        value: the reply validated into the response model.
        usage: every attempt of this call (re-asks and transport retries included).
    """

    value: T
    usage: Usage


@runtime_checkable
class ChatModel(Protocol):
    """Anything that can answer a conversation: hosted, served, local or fake.

    Implementations: :class:`sepsis_sdk.llm.LiteLLMChat` (any LiteLLM model string, local models
    included through the ``local/`` provider) and the fakes in :mod:`sepsis_sdk.testing`.

    Usage rides with each reply: :attr:`ChatResponse.usage` for :meth:`complete`; for structured output,
    models may also offer ``structured_response`` / ``astructured_response`` (same arguments as
    :meth:`structured`, returning a :class:`StructuredResponse`). Those are optional, so the protocol does
    not list them: call :func:`call_structured` / :func:`acall_structured`, which use them when present
    (every model of the SDK has them) and otherwise record one call with unknown tokens.
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


def call_structured(
    model: ChatModel, messages: list[Message], response_model: type[T], **kwargs: Any
) -> StructuredResponse[T]:
    """``model.structured(...)`` with its own usage: ``structured_response`` when the model has it.

    A model without it (a third-party :class:`ChatModel`) is counted as one call with unknown tokens:
    reading a cumulative counter before and after would mix in concurrent calls.

    Example:
        >>> from sepsis_sdk.testing import ScriptedChatModel
        >>> from sepsis_sdk.llm import Usage
        >>> class Yes(BaseModel):
        ...     ok: bool
        >>> model = ScriptedChatModel(['{"ok": true}'], usage=Usage(prompt_tokens=100))
        >>> reply = call_structured(model, [{"role": "user", "content": "?"}], Yes)
        >>> reply.value.ok, reply.usage.prompt_tokens, reply.usage.calls
        (True, 100, 1)
    """
    fn = getattr(model, "structured_response", None)
    if callable(fn):
        return fn(messages, response_model, **kwargs)
    return StructuredResponse(model.structured(messages, response_model, **kwargs), Usage(calls=1))


async def acall_structured(
    model: ChatModel, messages: list[Message], response_model: type[T], **kwargs: Any
) -> StructuredResponse[T]:
    """Async :func:`call_structured`."""
    fn = getattr(model, "astructured_response", None)
    if callable(fn):
        return await fn(messages, response_model, **kwargs)
    return StructuredResponse(await model.astructured(messages, response_model, **kwargs), Usage(calls=1))
