"""Fake chat models for users' tests: a scripted one and a function-driven one.

Both implement :class:`~sepsis_sdk.llm.ChatModel`, ignore the real-request guard (they never leave the
process) and record every call for assertions. Like the real models, they report usage with each reply
(``ChatResponse.usage``, and :class:`~sepsis_sdk.llm.StructuredResponse` from ``structured_response``);
``usage=`` says what each call costs. They are safe to call from several threads at once.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar, Union

from pydantic import BaseModel, ValidationError

from sepsis_sdk.errors import LLMOutputError, UserError
from sepsis_sdk.llm import ChatResponse, Message, StructuredResponse, ToolCall, Usage

T = TypeVar("T", bound=BaseModel)

#: What a script item or a function may return: text, a full reply, one or more tool calls, a tool-call
#: dict (``{"tool": name, "arguments": {...}}`` or ``{"tool_calls": [...], "text": ...}``), a pydantic
#: object (for :meth:`structured`; rendered as JSON text by :meth:`complete`), or an exception to raise.
Reply = Union[str, ChatResponse, ToolCall, Sequence[ToolCall], dict, BaseModel, BaseException]

_ids = itertools.count(1)


class ScriptExhaustedError(UserError):
    """A :class:`ScriptedChatModel` was asked for more replies than its script holds.

    Deliberately *not* an :class:`~sepsis_sdk.errors.LLMError`: code under test that falls back on LLM
    failures must not swallow a test that scripted too few replies.
    """


def tool_call(name: str, arguments: dict[str, Any] | str | None = None, *, id: str | None = None) -> ToolCall:
    """A :class:`ToolCall` for scripts; ``arguments`` as a dict, or a raw string (possibly malformed JSON).

    Example:
        >>> tool_call("prescription", {"vasopressor": 1, "iv_fluid": 2}).name
        'prescription'
    """
    call_id = id or f"call_{next(_ids)}"
    if isinstance(arguments, str):
        from sepsis_sdk.llm import parse_tool_call

        return parse_tool_call({"id": call_id, "function": {"name": name, "arguments": arguments}})
    args = dict(arguments or {})
    return ToolCall(call_id, name, args, json.dumps(args))


def _tool_from_dict(spec: dict[str, Any]) -> ToolCall:
    name = spec.get("tool") or spec.get("name")
    if not name and isinstance(spec.get("function"), dict):  # OpenAI wire format
        return tool_call(spec["function"]["name"], spec["function"].get("arguments"), id=spec.get("id"))
    if not name:
        raise UserError(f"a tool-call spec needs 'tool' (or 'name'): {spec!r}")
    return tool_call(str(name), spec.get("arguments"), id=spec.get("id"))


def to_response(reply: Reply, *, model: str = "fake") -> ChatResponse:
    """Coerce a script item into a :class:`ChatResponse` (exceptions are raised, not returned)."""
    if isinstance(reply, BaseException):
        raise reply
    if isinstance(reply, ChatResponse):
        return reply
    if isinstance(reply, str):
        return ChatResponse(text=reply, model=model, finish_reason="stop")
    if isinstance(reply, ToolCall):
        return ChatResponse(tool_calls=[reply], model=model, finish_reason="tool_calls")
    if isinstance(reply, BaseModel):
        return ChatResponse(text=reply.model_dump_json(), model=model, finish_reason="stop")
    if isinstance(reply, dict):
        if "tool_calls" in reply:
            calls = [c if isinstance(c, ToolCall) else _tool_from_dict(c) for c in reply["tool_calls"]]
            return ChatResponse(
                text=str(reply.get("text") or ""), tool_calls=calls, model=model, finish_reason="tool_calls"
            )
        if "tool" in reply or "name" in reply or "function" in reply:
            return ChatResponse(tool_calls=[_tool_from_dict(reply)], model=model, finish_reason="tool_calls")
        if "text" in reply:
            return ChatResponse(text=str(reply["text"]), model=model, finish_reason="stop")
        raise UserError(f"cannot turn {reply!r} into a reply: use 'text', 'tool' or 'tool_calls' keys")
    if isinstance(reply, (list, tuple)) and all(isinstance(c, (ToolCall, dict)) for c in reply):
        calls = [c if isinstance(c, ToolCall) else _tool_from_dict(c) for c in reply]
        return ChatResponse(tool_calls=calls, model=model, finish_reason="tool_calls")
    raise UserError(f"cannot turn {type(reply).__name__} {reply!r} into a reply")


def _validate(reply: Reply, response_model: type[T]) -> T:
    """Parse a script item into ``response_model``; raises ValidationError / ValueError on bad data."""
    if isinstance(reply, BaseException):
        raise reply
    if isinstance(reply, response_model):
        return reply
    if isinstance(reply, BaseModel):
        return response_model.model_validate(reply.model_dump())
    if isinstance(reply, str):
        return response_model.model_validate_json(reply)
    if isinstance(reply, dict) and not ({"tool", "tool_calls", "function", "text"} & set(reply)):
        return response_model.model_validate(reply)
    response = to_response(reply)
    if response.tool_calls:
        call = response.tool_calls[0]
        if call.error:
            raise ValueError(call.error)
        return response_model.model_validate(call.arguments)
    return response_model.model_validate_json(response.text)


@dataclass
class RecordedCall:
    """One call received by a fake model.

    Attributes:
        kind: ``"complete"`` or ``"structured"``.
        messages: the messages as received (a copy).
        tools: the tools offered, if any.
        tool_choice: the tool choice, if any.
        response_model: the pydantic class for structured calls.
        kwargs: any other keyword arguments.
    """

    kind: str
    messages: list[Message]
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    response_model: type[BaseModel] | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def last_user_text(self) -> str:
        """The text of the last user message (content parts joined)."""
        for msg in reversed(self.messages):
            if msg.get("role") == "user":
                return _text_of(msg.get("content"))
        return ""


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def _copy_messages(messages: list[Message]) -> list[Message]:
    return [dict(m) for m in messages]


class _FakeBase:
    name: str

    def __init__(self, *, name: str, max_reasks: int, usage: Usage | None = None) -> None:
        self.name = name
        self.max_reasks = int(max_reasks)
        self.calls: list[RecordedCall] = []
        # What one call costs unless the scripted reply carries its own usage (always one call).
        self.call_usage = replace(usage or Usage(), calls=1)
        self.usage = Usage()
        self.last_usage = Usage()
        self._lock = threading.Lock()

    @property
    def messages(self) -> list[list[Message]]:
        """The messages of every call received, in order."""
        return [c.messages for c in self.calls]

    def _next(self, call: RecordedCall) -> Reply:  # pragma: no cover - abstract
        raise NotImplementedError

    def _record(self, call: RecordedCall) -> None:
        with self._lock:
            self.calls.append(call)

    def _spend(self, usage: Usage) -> None:
        with self._lock:  # cumulative totals only; each reply carries its own usage
            self.usage = self.usage + usage

    def _cost(self, reply: Reply) -> Usage:
        if isinstance(reply, ChatResponse):
            return reply.usage if reply.usage.calls else reply.usage + self.call_usage
        return self.call_usage

    def _account(self, response: ChatResponse) -> ChatResponse:
        usage = self._cost(response)
        response.usage = usage
        self._spend(usage)
        self.last_usage = usage
        return response

    def complete(
        self,
        messages: list[Message],
        *,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: Any = None,
        **kwargs: Any,
    ) -> ChatResponse:
        """The next reply, coerced to a :class:`ChatResponse` (its usage: the reply's own, else ``usage=``)."""
        call = RecordedCall("complete", _copy_messages(messages), tools, tool_choice, None, dict(kwargs))
        self._record(call)
        return self._account(to_response(self._next(call), model=self.name))

    async def acomplete(
        self,
        messages: list[Message],
        *,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: Any = None,
        **kwargs: Any,
    ) -> ChatResponse:
        """Async :meth:`complete`."""
        call = RecordedCall("complete", _copy_messages(messages), tools, tool_choice, None, dict(kwargs))
        self._record(call)
        return self._account(to_response(await self._anext(call), model=self.name))

    async def _anext(self, call: RecordedCall) -> Reply:
        return self._next(call)

    def _attempt(
        self, msgs: list[Message], response_model: type[T], reply: Reply, attempt: int, max_reasks: int
    ) -> tuple[T | None, list[Message]]:
        try:
            return _validate(reply, response_model), msgs
        except (ValidationError, ValueError) as exc:
            if isinstance(exc, UserError):
                raise
            if attempt == max_reasks:
                raise LLMOutputError(
                    f"reply did not validate into {response_model.__name__} after {attempt + 1} attempt(s): {exc}",
                    raw=reply,
                    model=self.name,
                    attempts=attempt + 1,
                ) from exc
            return None, [*msgs, {"role": "user", "content": f"Your reply failed validation: {exc}. Fix it."}]

    def _structured_call(
        self, msgs: list[Message], response_model: type[T], kwargs: dict[str, Any]
    ) -> RecordedCall:
        call = RecordedCall("structured", _copy_messages(msgs), None, None, response_model, dict(kwargs))
        self._record(call)
        return call

    def _charge(self, spent: Usage, reply: Reply) -> Usage:
        cost = self._cost(reply)
        self._spend(cost)
        return spent + cost

    def structured_response(
        self, messages: list[Message], response_model: type[T], **kwargs: Any
    ) -> StructuredResponse[T]:
        """The next reply validated into ``response_model``, with the usage of every attempt it took.

        Invalid replies are re-asked like instructor: each re-ask consumes one more reply and sees the
        validation error as an extra user message, so tests can exercise correction paths. After
        ``max_reasks`` re-asks, :class:`LLMOutputError` is raised.
        """
        msgs = _copy_messages(messages)
        max_reasks = int(kwargs.pop("max_reasks", self.max_reasks))
        spent = Usage()
        try:
            for attempt in range(max_reasks + 1):
                reply = self._next(self._structured_call(msgs, response_model, kwargs))
                spent = self._charge(spent, reply)
                value, msgs = self._attempt(msgs, response_model, reply, attempt, max_reasks)
                if value is not None:
                    return StructuredResponse(value, spent)
        finally:
            self.last_usage = spent
        raise AssertionError("unreachable")  # pragma: no cover

    async def astructured_response(
        self, messages: list[Message], response_model: type[T], **kwargs: Any
    ) -> StructuredResponse[T]:
        """Async :meth:`structured_response`."""
        msgs = _copy_messages(messages)
        max_reasks = int(kwargs.pop("max_reasks", self.max_reasks))
        spent = Usage()
        try:
            for attempt in range(max_reasks + 1):
                reply = await self._anext(self._structured_call(msgs, response_model, kwargs))
                spent = self._charge(spent, reply)
                value, msgs = self._attempt(msgs, response_model, reply, attempt, max_reasks)
                if value is not None:
                    return StructuredResponse(value, spent)
        finally:
            self.last_usage = spent
        raise AssertionError("unreachable")  # pragma: no cover

    def structured(self, messages: list[Message], response_model: type[T], **kwargs: Any) -> T:
        """The next reply validated into ``response_model`` (see :meth:`structured_response`)."""
        return self.structured_response(messages, response_model, **kwargs).value

    async def astructured(self, messages: list[Message], response_model: type[T], **kwargs: Any) -> T:
        """Async :meth:`structured`."""
        return (await self.astructured_response(messages, response_model, **kwargs)).value


class ScriptedChatModel(_FakeBase):
    """A chat model that answers from a fixed script and raises when the script runs out.

    Args:
        replies: the replies in order; each a text, a :class:`ChatResponse`, a :class:`ToolCall` (or a list
            of them), a tool-call dict, a pydantic object (for :meth:`structured`) or an exception to raise
            (fault injection).
        name: the model's name.
        max_reasks: re-asks in :meth:`structured` after an invalid reply.
        usage: what each call costs (tokens, cost; default none). A scripted :class:`ChatResponse` with
            its own ``usage`` reports that instead.

    Attributes:
        calls: every :class:`RecordedCall` received.

    Example:
        >>> from sepsis_sdk.testing import ScriptedChatModel, tool_call
        >>> model = ScriptedChatModel(["hello", tool_call("prescription", {"vasopressor": 0, "iv_fluid": 2})])
        >>> model.complete([{"role": "user", "content": "hi"}]).text
        'hello'
        >>> model.complete([{"role": "user", "content": "go"}]).tool_calls[0].arguments["iv_fluid"]
        2
        >>> model.remaining
        0
    """

    def __init__(
        self,
        replies: Iterable[Reply],
        *,
        name: str = "scripted",
        max_reasks: int = 2,
        usage: Usage | None = None,
    ) -> None:
        super().__init__(name=name, max_reasks=max_reasks, usage=usage)
        self.replies: list[Reply] = list(replies)
        self._pos = 0

    @property
    def remaining(self) -> int:
        """Replies not yet used."""
        return len(self.replies) - self._pos

    def _next(self, call: RecordedCall) -> Reply:
        with self._lock:
            if self._pos >= len(self.replies):
                raise ScriptExhaustedError(
                    f"ScriptedChatModel {self.name!r} ran out of replies: call #{len(self.calls)} "
                    f"({call.kind}) but the script holds {len(self.replies)}; last user message: "
                    f"{call.last_user_text[:200]!r}"
                )
            reply = self.replies[self._pos]
            self._pos += 1
            return reply


class FunctionChatModel(_FakeBase):
    """A chat model whose replies come from ``fn(messages, tools)`` (sync or async).

    Args:
        fn: called with the messages and the tools (or ``None``); returns any :data:`Reply`.
        name: the model's name.
        max_reasks: re-asks in :meth:`structured` after an invalid reply.
        usage: what each call costs (tokens, cost; default none), unless ``fn`` returns a
            :class:`ChatResponse` with its own ``usage``.

    Example:
        >>> from sepsis_sdk.testing import FunctionChatModel
        >>> echo = FunctionChatModel(lambda messages, tools: messages[-1]["content"].upper())
        >>> echo.complete([{"role": "user", "content": "abc"}]).text
        'ABC'
    """

    def __init__(
        self,
        fn: Callable[[list[Message], list[dict[str, Any]] | None], Any],
        *,
        name: str = "function",
        max_reasks: int = 2,
        usage: Usage | None = None,
    ) -> None:
        if not callable(fn):
            raise UserError(f"FunctionChatModel needs a callable, got {fn!r}")
        super().__init__(name=name, max_reasks=max_reasks, usage=usage)
        self.fn = fn

    def _next(self, call: RecordedCall) -> Reply:
        out = self.fn(call.messages, call.tools)
        if inspect.isawaitable(out):
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return asyncio.run(_await(out))
            if hasattr(out, "close"):
                out.close()
            raise UserError(
                "an async fn needs the async methods (acomplete/astructured) inside an event loop"
            )
        return out

    async def _anext(self, call: RecordedCall) -> Reply:
        out = self.fn(call.messages, call.tools)
        if inspect.isawaitable(out):
            out = await out
        return out


async def _await(awaitable: Any) -> Any:
    return await awaitable
