"""A fake OpenAI-compatible endpoint on respx, so tests exercise LiteLLM's real HTTP path offline.

``fake_openai_endpoint(respx_mock, replies=[...])`` mounts ``POST {base}/chat/completions`` and answers
each request with the next scripted reply rendered as a proper ``chat.completion`` JSON body (content,
``tool_calls``, ``finish_reason`` and ``usage``). Items may also be faults: an ``int`` status code (an
OpenAI-style error body), an ``httpx.Response``, or an exception instance (e.g. ``httpx.ReadTimeout``).
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from sepsis_sdk.llm import ChatResponse, ToolCall
from sepsis_sdk.testing._fakes import Reply, to_response

DEFAULT_API_BASE = "http://fake-llm.test/v1"
_counter = itertools.count(1)


def prepare_litellm_for_respx() -> Any:
    """Make LiteLLM's HTTP visible to respx and keep it offline; returns the litellm module.

    Sets ``LITELLM_LOCAL_MODEL_COST_MAP`` (no price-list download), ``disable_aiohttp_transport`` (the async
    path then uses httpx, which respx patches) and flushes LiteLLM's cached HTTP clients (a client built
    earlier with the aiohttp transport would bypass respx).
    """
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from sepsis_sdk.llm import import_litellm

    litellm = import_litellm()
    litellm.disable_aiohttp_transport = True
    cache = getattr(litellm, "in_memory_llm_clients_cache", None)
    if cache is not None and hasattr(cache, "flush_cache"):
        cache.flush_cache()
    return litellm


def _forced_tool(request: dict[str, Any]) -> str | None:
    choice = request.get("tool_choice")
    if isinstance(choice, dict):
        return (choice.get("function") or {}).get("name")
    if choice == "required" and len(request.get("tools") or []) == 1:
        return request["tools"][0]["function"]["name"]
    return None


def chat_completion_json(
    reply: Reply,
    *,
    model: str = "gpt-4o-mini",
    request: dict[str, Any] | None = None,
    prompt_tokens: int = 11,
    completion_tokens: int = 7,
) -> dict[str, Any]:
    """A ``chat.completion`` body for ``reply``.

    A pydantic object becomes a tool call named after the tool the request forces (instructor's TOOLS
    mode), else JSON content (JSON / JSON_SCHEMA modes).
    """
    request = request or {}
    if isinstance(reply, BaseModel):
        forced = _forced_tool(request)
        if forced:
            reply = ToolCall(
                f"call_{next(_counter)}", forced, reply.model_dump(mode="json"), reply.model_dump_json()
            )
        else:
            reply = reply.model_dump_json()
    response: ChatResponse = to_response(reply, model=model)
    message: dict[str, Any] = {"role": "assistant", "content": response.text or None}
    if response.tool_calls:
        message["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": c.raw_arguments or json.dumps(c.arguments)},
            }
            for c in response.tool_calls
        ]
    finish = response.finish_reason or ("tool_calls" if response.tool_calls else "stop")
    usage = response.usage
    p_tok = usage.prompt_tokens or prompt_tokens
    c_tok = usage.completion_tokens or completion_tokens
    return {
        "id": f"chatcmpl-fake-{next(_counter)}",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": {"prompt_tokens": p_tok, "completion_tokens": c_tok, "total_tokens": p_tok + c_tok},
    }


def error_json(status: int, message: str = "") -> dict[str, Any]:
    """An OpenAI-style error body."""
    kinds = {
        400: "invalid_request_error",
        401: "authentication_error",
        413: "invalid_request_error",
        429: "rate_limit_error",
    }
    return {
        "error": {
            "message": message or f"fake error {status}",
            "type": kinds.get(status, "server_error"),
            "param": None,
            "code": None,
        }
    }


@dataclass
class FakeEndpoint:
    """The state of one fake endpoint: its script and what it received.

    Attributes:
        api_base: pass as ``api_base`` to LiteLLM (or use :meth:`chat`).
        replies: the remaining script (consumed from the front).
        requests: the JSON bodies received, in order.
        model: the model name echoed in replies.
    """

    api_base: str
    replies: list[Any]
    model: str = "gpt-4o-mini"
    requests: list[dict[str, Any]] = field(default_factory=list)
    route: Any = None

    @property
    def calls(self) -> int:
        """Requests received so far."""
        return len(self.requests)

    def chat(self, model: str | None = None, **kwargs: Any) -> Any:
        """A :class:`~sepsis_sdk.llm.LiteLLMChat` pointed at this endpoint (instant backoff by default)."""
        from sepsis_sdk.llm import Backoff, LiteLLMChat

        kwargs.setdefault("backoff", Backoff(base_s=0.0, jitter=False))
        kwargs.setdefault("api_key", "sk-fake")
        return LiteLLMChat(model or f"openai/{self.model}", api_base=self.api_base, **kwargs)

    def handle(self, request: Any) -> Any:
        """The respx side effect: record the body, answer with the next script item."""
        import httpx

        try:
            body = json.loads(request.content or b"{}")
        except ValueError:
            body = {"_raw": request.content.decode("utf-8", "replace")}
        self.requests.append(body)
        if not self.replies:
            # 400 is never retried, so the test fails at once with this message in the LLMCallError.
            return httpx.Response(
                400,
                json=error_json(
                    400, f"fake endpoint script exhausted after {len(self.requests) - 1} replies"
                ),
            )
        item = self.replies.pop(0)
        if callable(item) and not isinstance(item, (BaseModel, type)):
            item = item(body)
        if isinstance(item, httpx.Response):
            return item
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, int) and not isinstance(item, bool):
            return httpx.Response(item, json=error_json(item))
        return httpx.Response(200, json=chat_completion_json(item, model=self.model, request=body))


def fake_openai_endpoint(
    respx_mock: Any,
    replies: Iterable[Reply | int | Callable[[dict[str, Any]], Reply] | Any] = (),
    *,
    api_base: str = DEFAULT_API_BASE,
    model: str = "gpt-4o-mini",
) -> FakeEndpoint:
    """Mount a fake OpenAI-compatible ``/chat/completions`` on a respx router.

    Args:
        respx_mock: the ``respx_mock`` pytest fixture, or a started ``respx.mock`` router.
        replies: script items: text, tool calls, pydantic objects, reply dicts, ``ChatResponse``; or faults:
            an ``int`` HTTP status, an ``httpx.Response``, an exception instance to raise (``httpx.ReadTimeout``);
            or a callable taking the request body and returning any of these.
        api_base: the base URL (use a host that does not exist, so nothing real is ever reached).
        model: the model name written in replies.

    Returns:
        A :class:`FakeEndpoint`; ``endpoint.chat()`` builds a LiteLLMChat pointed at it.

    Example:
        >>> def test_hello(respx_mock):                                        # doctest: +SKIP
        ...     endpoint = fake_openai_endpoint(respx_mock, replies=["hello"])
        ...     assert endpoint.chat().complete([{"role": "user", "content": "hi"}]).text == "hello"
    """
    prepare_litellm_for_respx()
    endpoint = FakeEndpoint(api_base=api_base.rstrip("/"), replies=list(replies), model=model)
    endpoint.route = respx_mock.post(f"{endpoint.api_base}/chat/completions").mock(
        side_effect=endpoint.handle
    )
    return endpoint
