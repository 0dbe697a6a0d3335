"""`LiteLLMChat`: the ChatModel for any LiteLLM model string (hosted, served, Ollama, or ``local/``)."""

from __future__ import annotations

import asyncio
import contextvars
import json
import math
import os
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from sepsis_sdk._lazy import require
from sepsis_sdk.errors import (
    LLMCallError,
    LLMConfigError,
    LLMError,
    LLMOutputError,
    LLMTimeoutError,
    SepsisSDKError,
    UserError,
)
from sepsis_sdk.llm._base import ChatResponse, Message, StructuredResponse, T, ToolCall, Usage
from sepsis_sdk.llm._cache import ReplyCache, request_key
from sepsis_sdk.llm._deadline import call_deadline, current_deadline
from sepsis_sdk.llm._guard import check_request
from sepsis_sdk.llm._import import load_litellm
from sepsis_sdk.llm._redact import contains_secret, install_log_redaction, redact, register_secret
from sepsis_sdk.llm._retry import Backoff, config_kind, is_connect_failure, is_retryable, status_code_of

# Providers whose servers commonly lack (reliable) tool calling: structured output goes through JSON mode
# (``response_format={"type": "json_object"}`` and the schema in the system prompt). Everything else
# (OpenAI, Anthropic, Gemini, Mistral, Groq, Together, ``openai/`` pointing at an OpenAI-compatible server,
# ...) uses instructor's TOOLS mode. ``local/`` uses JSON_SCHEMA: our in-process provider decodes under the
# schema itself (see sepsis_sdk.llm._local).
_JSON_MODE_PROVIDERS = frozenset(
    {
        "ollama",
        "ollama_chat",
        "hosted_vllm",
        "vllm",
        "huggingface",
        "llamafile",
        "lm_studio",
        "text-completion-openai",
    }
)
_MODES = {
    "tools": "TOOLS",
    "json": "JSON",
    "md_json": "MD_JSON",
    "json_schema": "JSON_SCHEMA",
}


def import_litellm() -> Any:
    """Import litellm with the settings the SDK relies on, and register the ``local/`` provider.

    ``LITELLM_LOCAL_MODEL_COST_MAP`` is set before the import so LiteLLM reads its bundled price list
    instead of fetching one over the network.
    """
    from sepsis_sdk.llm._local import register_local_provider

    litellm = load_litellm()
    install_log_redaction()
    register_local_provider(litellm)
    return litellm


def provider_of(model: str) -> str:
    """The LiteLLM provider prefix of a model string (``""`` for a bare name such as ``gpt-4o-mini``)."""
    return model.split("/", 1)[0] if "/" in model else ""


def default_structured_mode(model: str) -> str:
    """The instructor mode :meth:`LiteLLMChat.structured` uses for ``model`` unless told otherwise.

    Returns:
        ``"json_schema"`` for ``local/``; ``"json"`` for Ollama, vLLM servers (``hosted_vllm/``) and other
        servers without dependable tool calling; ``"tools"`` otherwise.
    """
    provider = provider_of(model)
    if provider == "local":
        return "json_schema"
    if provider in _JSON_MODE_PROVIDERS:
        return "json"
    return "tools"


_CONFIG_HINTS = {
    "auth": " -- the server rejected the credentials: check api_key (or the provider's *_API_KEY variable)",
    "not_found": " -- unknown model or endpoint: check the model string and api_base",
    "bad_request": " -- the server refused the request as malformed for this model/server",
    "provider": " -- unknown provider prefix: see LiteLLM's provider list (e.g. openai/, hosted_vllm/)",
    "unreachable": " -- no server answered at this address on the first call: check api_base and that the "
    "server is running",
}


def _call_within(
    fn: Callable[..., Any], request: dict[str, Any], seconds: float, on_timeout: Callable[[], Exception]
) -> Any:
    """``fn(**request)`` in a worker thread, waited for at most ``seconds`` (a total bound, not per read).

    A blocking HTTP client cannot be interrupted from outside; on expiry the call is abandoned (its
    daemon thread ends when its own per-read timeout, also set to the time left, fires or the server
    closes) and ``on_timeout()`` is raised. The caller's context (deadline, guard) goes with it.
    """
    ctx = contextvars.copy_context()
    box: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["value"] = ctx.run(fn, **request)
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name="sepsis-llm-call", daemon=True).start()
    if not done.wait(max(0.0, seconds)):
        raise on_timeout()
    if "error" in box:
        raise box["error"]
    return box["value"]


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _dump(raw: Any) -> Any:
    if hasattr(raw, "model_dump"):
        return raw.model_dump()
    if isinstance(raw, dict):
        return raw
    return json.loads(json.dumps(raw, default=str))


def sdk_error_in_chain(exc: BaseException) -> SepsisSDKError | None:
    """The SDK error that LiteLLM wrapped (it turns a custom provider's exceptions into APIConnectionError)."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 8:
        if isinstance(current, SepsisSDKError):
            return current
        current = current.__cause__ or current.__context__
        seen += 1
    return None


def parse_tool_call(raw_call: Any, index: int = 0) -> ToolCall:
    """A :class:`ToolCall` from an OpenAI-format tool call (object or dict); malformed JSON is reported."""
    function = _get(raw_call, "function")
    name = _get(function, "name") or ""
    raw_args = _get(function, "arguments")
    call_id = _get(raw_call, "id") or f"call_{index}"
    if isinstance(raw_args, dict):
        return ToolCall(call_id, name, raw_args, json.dumps(raw_args))
    raw_text = raw_args if isinstance(raw_args, str) else ""
    if not raw_text.strip():
        return ToolCall(call_id, name, {}, raw_text)
    try:
        parsed = json.loads(raw_text)
    except json.JSONDecodeError as exc:
        return ToolCall(call_id, name, {}, raw_text, error=f"arguments are not valid JSON: {exc}")
    if not isinstance(parsed, dict):
        return ToolCall(
            call_id, name, {}, raw_text, error=f"arguments must be a JSON object, got {type(parsed).__name__}"
        )
    return ToolCall(call_id, name, parsed, raw_text)


def response_from_raw(raw: Any, usage: Usage, *, model: str) -> ChatResponse:
    """Turn a chat.completion (LiteLLM ``ModelResponse`` or its dict) into a :class:`ChatResponse`."""
    choices = _get(raw, "choices") or []
    if not choices:
        raise LLMOutputError("the reply has no choices", raw=_dump(raw), model=model)
    choice = choices[0]
    message = _get(choice, "message")
    content = _get(message, "content")
    if isinstance(content, list):  # some providers return content parts
        content = "".join(str(_get(p, "text", "")) for p in content)
    tool_calls = [parse_tool_call(c, i) for i, c in enumerate(_get(message, "tool_calls") or [])]
    return ChatResponse(
        text=content or "",
        tool_calls=tool_calls,
        usage=usage,
        model=str(_get(raw, "model") or model),
        finish_reason=_get(choice, "finish_reason"),
        raw=raw,
    )


class LiteLLMChat:
    """A :class:`~sepsis_sdk.llm.ChatModel` over LiteLLM: any hosted, served or local model by its string.

    Args:
        model: a LiteLLM model string: ``"openai/gpt-4o-mini"``, ``"anthropic/claude-..."``,
            ``"hosted_vllm/Qwen/Qwen3-4B"`` (with ``api_base=``), ``"ollama/llama3.2"``, or
            ``"local/<path-or-alias>"`` for an in-process Hugging Face model (``"local/smollm2"``).
        retries: retries after the first attempt on rate limits (429), server errors (5xx), timeouts and
            connection errors. 400/401/403/404 and payload-too-large (413) are never retried.
        backoff: a :class:`Backoff` or its base delay in seconds (exponential, with jitter).
        timeout: the **total** deadline of each public call in seconds (``complete``, ``structured``,
            ...): every attempt, backoff wait and re-ask of that call together. A server that trickles
            bytes cannot stretch it (each attempt runs against the remaining time, not per read). On
            expiry the call raises :class:`~sepsis_sdk.errors.LLMTimeoutError`. ``None``: no bound
            (beyond an outer :func:`~sepsis_sdk.llm.call_deadline`).
        cache_dir: when set, replies are cached on disk (one JSON file per distinct request) and replayed
            on identical requests: reproducible evaluations and free re-runs.
        completion: the sync completion callable (default ``litellm.completion``); inject a fake for tests.
        acompletion: the async completion callable (default ``litellm.acompletion``).
        structured_mode: instructor mode for :meth:`structured`: ``"tools"``, ``"json"``, ``"md_json"`` or
            ``"json_schema"``; default :func:`default_structured_mode`.
        max_reasks: re-asks after a reply fails validation in :meth:`structured`.
        name: a display name (default: ``model``).
        sleep: the sync sleep used between retries (injectable to make tests instant).
        asleep: the async sleep used between retries.
        **litellm_kwargs: passed to every LiteLLM call (``api_base``, ``api_key``, ``temperature``, ...).
            An ``api_key`` is registered as a secret: it is redacted from every error, trace and log.

    Errors (see docs/llm.md, "Errors"):
        configuration problems raise :class:`~sepsis_sdk.errors.LLMConfigError` (401/403, 404, a
        malformed-request 400, an unknown provider, no server at the address on the first call), or
        :class:`~sepsis_sdk.errors.MissingDependencyError` / :class:`~sepsis_sdk.errors.ModelError` for a
        local model; transient failures (429, 5xx, timeouts, a lost connection after a success) are
        retried, then raise :class:`~sepsis_sdk.errors.LLMCallError`; the deadline raises
        :class:`~sepsis_sdk.errors.LLMTimeoutError`.

    Attributes:
        usage: cumulative :class:`Usage` of every call made through this object (cache hits counted in
            ``cached_calls`` with zero tokens and cost).
        last_usage: the usage of the most recent public call (all its attempts and re-asks).

    Example:
        >>> chat = LiteLLMChat("openai/gpt-4o-mini", temperature=0, cache_dir=".llm-cache")  # doctest: +SKIP
        >>> chat.complete([{"role": "user", "content": "Say hi"}]).text  # doctest: +SKIP
        'Hi!'
    """

    def __init__(
        self,
        model: str,
        *,
        retries: int = 3,
        backoff: Backoff | float = Backoff(),
        timeout: float | None = 60.0,
        cache_dir: str | os.PathLike[str] | None = None,
        completion: Callable[..., Any] | None = None,
        acompletion: Callable[..., Awaitable[Any]] | None = None,
        structured_mode: str | None = None,
        max_reasks: int = 2,
        name: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        asleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        **litellm_kwargs: Any,
    ) -> None:
        if not isinstance(model, str) or not model.strip():
            raise UserError(f"model must be a non-empty LiteLLM model string, got {model!r}")
        if retries < 0:
            raise UserError(f"retries must be >= 0, got {retries}")
        mode = structured_mode or default_structured_mode(model)
        if mode not in _MODES:
            raise UserError(f"structured_mode must be one of {sorted(_MODES)}, got {structured_mode!r}")
        self.model = model
        self.name = name or model
        self.retries = int(retries)
        self.backoff = backoff if isinstance(backoff, Backoff) else Backoff(base_s=float(backoff))
        self.timeout = timeout
        self.cache = ReplyCache(cache_dir) if cache_dir is not None else None
        self.structured_mode = mode
        self.max_reasks = int(max_reasks)
        self.litellm_kwargs = dict(litellm_kwargs)
        self._completion = completion
        self._acompletion = acompletion
        self._sleep = sleep
        self._asleep = asleep
        self.usage = Usage()
        self.last_usage = Usage()
        self._usage_lock = threading.Lock()
        self._connected = False  # a call has succeeded: a later connection failure is transient
        register_secret(self.litellm_kwargs.get("api_key"))

    def __repr__(self) -> str:
        return f"LiteLLMChat({self.model!r})"

    @property
    def in_process(self) -> bool:
        """Whether the model runs inside this process (``local/``): no network, never blocked by the guard."""
        return provider_of(self.model) == "local"

    # ------------------------------------------------------------------ request plumbing
    def _request(
        self,
        messages: list[Message],
        tools: list[dict[str, Any]] | None,
        tool_choice: Any,
        kwargs: dict[str, Any],
    ) -> dict[str, Any]:
        if not isinstance(messages, list) or not messages:
            raise UserError(f"messages must be a non-empty list of dicts (model {self.model!r})")
        req: dict[str, Any] = {"model": self.model, **self.litellm_kwargs, **kwargs, "messages": messages}
        if tools:
            req["tools"] = tools
        if tool_choice is not None:
            req["tool_choice"] = tool_choice
        if self.timeout is not None:
            req.setdefault("timeout", self.timeout)
        if self._completion is None and not self.in_process:
            # We retry ourselves (with jitter and our classification); turn off the provider SDK's own retries.
            req.setdefault("max_retries", 0)
        return req

    def _sync_fn(self) -> Callable[..., Any]:
        if self._completion is not None:
            return self._completion
        return import_litellm().completion

    def _async_fn(self) -> Callable[..., Awaitable[Any]]:
        if self._acompletion is not None:
            return self._acompletion
        if self._completion is not None:
            sync = self._completion

            async def _in_thread(**kw: Any) -> Any:
                return await asyncio.to_thread(sync, **kw)

            return _in_thread
        return import_litellm().acompletion

    def _injected(self, is_async: bool) -> bool:
        return (
            self._acompletion if is_async else self._completion
        ) is not None or self._completion is not None

    def _cost(self, raw: Any) -> float:
        hidden = getattr(raw, "_hidden_params", None) or {}
        cost = hidden.get("response_cost") if isinstance(hidden, dict) else None
        if cost is None and self._completion is None and not self.in_process and hasattr(raw, "choices"):
            try:  # litellm's own price table; unknown models raise -> 0
                cost = import_litellm().completion_cost(completion_response=raw)
            except Exception:
                cost = None
        try:
            return float(cost) if cost is not None else 0.0
        except (TypeError, ValueError):
            return 0.0

    def _usage_of(self, raw: Any, latency: float) -> Usage:
        u = _get(raw, "usage")
        return Usage(
            prompt_tokens=int(_get(u, "prompt_tokens", 0) or 0),
            completion_tokens=int(_get(u, "completion_tokens", 0) or 0),
            cost_usd=self._cost(raw),
            latency_s=latency,
            calls=1,
        )

    def _from_cache(self, entry: dict[str, Any]) -> Any:
        data = entry["response"]
        if entry.get("kind") == "litellm":
            return import_litellm().ModelResponse(**data)
        return data

    def _to_cache(self, key: str, raw: Any, usage: Usage) -> None:
        if self.cache is None:
            return
        kind = "litellm" if type(raw).__name__ == "ModelResponse" else "dict"
        self.cache.put(
            key,
            {
                "model": self.model,
                "kind": kind,
                "response": _dump(raw),
                "usage": usage.to_dict(),
                "created": time.time(),
            },
        )

    def _lookup(self, req: dict[str, Any]) -> tuple[str | None, Any]:
        if self.cache is None:
            return None, None
        key = request_key(req)
        entry = self.cache.get(key)
        if entry is None:
            return key, None
        return key, self._from_cache(entry)

    def _unwrap(self, exc: Exception) -> Exception:
        # An SDK error raised inside the local provider (or an injected fake) comes back wrapped by LiteLLM;
        # misuse (UserError, ModelError, the guard) is raised as itself, never retried.
        inner = sdk_error_in_chain(exc)
        if inner is not None and not isinstance(inner, LLMCallError):
            raise inner
        if isinstance(inner, LLMCallError):
            return inner
        return exc

    def _secrets(self) -> list[str | None]:
        return [self.litellm_kwargs.get("api_key")]

    def _fail(self, exc: BaseException, attempts: int) -> LLMCallError:
        """The SDK error for a failed call: config (raise), transient (fallback may act), or as it is.

        Its message is redacted; when the provider's own exception text holds a secret, the chain is cut
        (``__cause__`` left ``None``) so a printed traceback cannot show it either.
        """
        if isinstance(exc, LLMCallError):
            return exc
        text = redact(f"{type(exc).__name__}: {exc}", self._secrets())
        status = status_code_of(exc)
        kind = config_kind(exc)
        if kind is None and not self._connected and is_connect_failure(exc):
            kind = "unreachable"
        err: LLMCallError
        if kind is not None:
            hint = _CONFIG_HINTS.get(kind, "")
            err = LLMConfigError(
                f"{text}{hint}", model=self.model, status_code=status, attempts=attempts, kind=kind
            )
        else:
            err = LLMCallError(text, model=self.model, status_code=status, attempts=attempts)
        err.__cause__ = None if contains_secret(str(exc), self._secrets()) else exc
        return err

    def _timeout(self, attempts: int, last: BaseException | None = None) -> LLMTimeoutError:
        budget = self.timeout
        why = f"; last error: {redact(f'{type(last).__name__}: {last}', self._secrets())}" if last else ""
        return LLMTimeoutError(
            f"call did not finish within its deadline ({budget} s per call, or the caller's "
            f"call_deadline){why}",
            model=self.model,
            deadline_s=budget,
            attempts=attempts,
        )

    def _record(self, usage: Usage) -> None:
        with self._usage_lock:
            self.usage = self.usage + usage

    def _retrying(self, is_async: bool) -> Any:
        """tenacity's retry loop: our classification, our backoff, the injected sleep, the deadline."""
        import tenacity

        def wait(rs: Any) -> float:
            return self.backoff.delay(rs.attempt_number - 1, rs.outcome.exception())

        def stop(rs: Any) -> bool:
            deadline = current_deadline()
            out_of_time = deadline is not None and time.monotonic() + rs.upcoming_sleep >= deadline
            return rs.attempt_number > self.retries or out_of_time

        cls = tenacity.AsyncRetrying if is_async else tenacity.Retrying
        return cls(
            stop=stop,
            wait=wait,
            retry=tenacity.retry_if_exception(is_retryable),
            sleep=self._asleep if is_async else self._sleep,
            reraise=True,
        )

    def _bounded_request(self, request: dict[str, Any]) -> tuple[dict[str, Any], float | None]:
        """This attempt's request (its transport timeout no longer than the time left) and the time left."""
        left = None
        deadline = current_deadline()
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._timeout(0)
            # the transport's own (per-read) timeout no longer than the time left, rounded up to 0.1 s
            cap = math.ceil(left * 10) / 10
            given = request.get("timeout")
            request = {**request, "timeout": min(given, cap) if isinstance(given, (int, float)) else cap}
        return request, left

    def _attempt(self, fn: Callable[..., Any], request: dict[str, Any]) -> Any:
        req, left = self._bounded_request(request)
        try:
            if left is None or self.in_process:
                # local/ enforces the deadline itself (generation stops at it): no thread to abandon
                return fn(**req)
            return _call_within(fn, req, left, lambda: self._timeout(1))
        except LLMTimeoutError:
            raise
        except Exception as caught:
            inner = self._unwrap(caught)
            if inner is caught:
                raise
            raise inner from caught

    async def _aattempt(self, fn: Callable[..., Awaitable[Any]], request: dict[str, Any]) -> Any:
        req, left = self._bounded_request(request)
        try:
            if left is None or self.in_process:
                return await fn(**req)
            try:
                return await asyncio.wait_for(fn(**req), left)
            except TimeoutError:
                deadline = current_deadline()
                if deadline is not None and time.monotonic() >= deadline - 0.01:
                    raise self._timeout(1) from None
                raise
        except LLMTimeoutError:
            raise
        except Exception as caught:
            inner = self._unwrap(caught)
            if inner is caught:
                raise
            raise inner from caught

    def _outcome(self, exc: BaseException, attempts: int) -> BaseException:
        """What a failed call raises once tenacity stops: a timeout when the deadline cut the retries."""
        if isinstance(exc, SepsisSDKError) and not isinstance(exc, LLMCallError):
            return exc  # misuse (UserError, ModelError, the guard): raised as itself
        if isinstance(exc, LLMTimeoutError):
            return exc
        deadline = current_deadline()
        retryable = is_retryable(exc)
        if retryable and attempts <= self.retries and deadline is not None:
            return self._timeout(attempts, exc)  # stopped early: no time left for another attempt
        return self._fail(exc, attempts)

    def call_raw(self, request: dict[str, Any]) -> tuple[Any, Usage]:
        """One request with guard, cache, retries and the total deadline; returns the raw reply and its
        usage (recorded)."""
        key, cached = self._lookup(request)
        if cached is not None:  # a cache hit is not a request: served even while requests are blocked
            usage = Usage(calls=1, cached_calls=1)
            self._record(usage)
            return cached, usage
        check_request(self.model, injected=self._injected(False), in_process=self.in_process)
        fn = self._sync_fn()
        with call_deadline(self.timeout):
            retrying = self._retrying(is_async=False)
            start = time.perf_counter()
            try:
                for attempt in retrying:
                    with attempt:
                        start = time.perf_counter()
                        raw = self._attempt(fn, request)
            except Exception as exc:
                err = self._outcome(exc, retrying.statistics.get("attempt_number", 1))
                raise err from (err.__cause__ if err is not exc else exc.__cause__)
        return self._done(key, raw, time.perf_counter() - start)

    async def acall_raw(self, request: dict[str, Any]) -> tuple[Any, Usage]:
        """Async :meth:`call_raw`."""
        key, cached = self._lookup(request)
        if cached is not None:  # a cache hit is not a request: served even while requests are blocked
            usage = Usage(calls=1, cached_calls=1)
            self._record(usage)
            return cached, usage
        check_request(self.model, injected=self._injected(True), in_process=self.in_process)
        fn = self._async_fn()
        with call_deadline(self.timeout):
            retrying = self._retrying(is_async=True)
            start = time.perf_counter()
            try:
                async for attempt in retrying:
                    with attempt:
                        start = time.perf_counter()
                        raw = await self._aattempt(fn, request)
            except Exception as exc:
                err = self._outcome(exc, retrying.statistics.get("attempt_number", 1))
                raise err from (err.__cause__ if err is not exc else exc.__cause__)
        return self._done(key, raw, time.perf_counter() - start)

    def _done(self, key: str | None, raw: Any, latency: float) -> tuple[Any, Usage]:
        self._connected = True
        usage = self._usage_of(raw, latency)
        self._record(usage)
        if key is not None:
            self._to_cache(key, raw, usage)
        return raw, usage

    def check_config(self) -> None:
        """Check what can be checked without a request (the graphs call this when they are built).

        For ``local/`` models: the model and adapter paths exist and torch/transformers are installed
        (found, not imported). Hosted and served models are checked by their first call (an unknown
        provider, rejected credentials or no server there raise :class:`~sepsis_sdk.errors.LLMConfigError`).

        Raises:
            MissingDependencyError: torch or transformers is missing for a local model.
            ModelError: a local model or adapter path does not exist.
        """
        if self.in_process:
            from sepsis_sdk.llm._local import check_local_config

            check_local_config(self.model, adapter=self.litellm_kwargs.get("adapter"))

    # ------------------------------------------------------------------ ChatModel
    def complete(
        self,
        messages: list[Message],
        *,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: Any = None,
        **kwargs: Any,
    ) -> ChatResponse:
        """One reply (text and/or tool calls).

        Raises:
            LLMCallError: the provider failed after retries (carries ``status_code`` and ``attempts``).
            LLMOutputError: the reply had no choices.
            RealRequestBlockedError: inside :func:`sepsis_sdk.testing.block_real_requests` without a mock.
        """
        raw, usage = self.call_raw(self._request(messages, tools, tool_choice, kwargs))
        self.last_usage = usage
        return response_from_raw(raw, usage, model=self.model)

    async def acomplete(
        self,
        messages: list[Message],
        *,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: Any = None,
        **kwargs: Any,
    ) -> ChatResponse:
        """Async :meth:`complete`."""
        raw, usage = await self.acall_raw(self._request(messages, tools, tool_choice, kwargs))
        self.last_usage = usage
        return response_from_raw(raw, usage, model=self.model)

    def _mode(self, mode: str | None) -> Any:
        instructor = require("instructor", "llm", "structured outputs")
        name = mode or self.structured_mode
        if name not in _MODES:
            raise UserError(f"structured mode must be one of {sorted(_MODES)}, got {name!r}")
        return instructor, getattr(instructor.Mode, _MODES[name])

    def _structured_error(self, exc: Exception, response_model: type[BaseModel]) -> Exception:
        # Any SDK error in the chain is what happened (a missing dependency, a bad path, a config error,
        # a timeout): never report it as "reply did not validate".
        inner = sdk_error_in_chain(exc)
        if inner is not None:
            return inner
        if not any(c.__name__ == "InstructorRetryException" for c in type(exc).__mro__):
            if isinstance(exc, LLMError):
                return exc
            return LLMOutputError(
                f"structured output into {response_model.__name__} failed: {type(exc).__name__}: {exc}",
                model=self.model,
            )
        last = getattr(exc, "last_completion", None)
        raw_text: Any = None
        if last is not None:
            try:
                message = _get(_get(last, "choices")[0], "message")
                calls = _get(message, "tool_calls") or []
                raw_text = (
                    _get(_get(calls[0], "function"), "arguments") if calls else _get(message, "content")
                )
            except (TypeError, IndexError):
                raw_text = _dump(last)
        attempts = int(getattr(exc, "n_attempts", 0) or 0)
        err = LLMOutputError(
            redact(
                f"reply did not validate into {response_model.__name__} after {attempts} attempt(s): {exc}",
                self._secrets(),
            ),
            raw=raw_text,
            model=self.model,
            attempts=attempts,
        )
        return err

    def _structured_kwargs(
        self,
        messages: list[Message],
        response_model: type[BaseModel],
        reasks: int | None,
        kwargs: dict[str, Any],
    ) -> dict[str, Any]:
        if not (isinstance(response_model, type) and issubclass(response_model, BaseModel)):
            raise UserError(f"response_model must be a pydantic BaseModel subclass, got {response_model!r}")
        return {
            "messages": messages,
            "response_model": response_model,
            "max_retries": self.max_reasks if reasks is None else int(reasks),
            **kwargs,
        }

    def structured_response(
        self,
        messages: list[Message],
        response_model: type[T],
        *,
        max_reasks: int | None = None,
        mode: str | None = None,
        **kwargs: Any,
    ) -> StructuredResponse[T]:
        """A reply validated into ``response_model`` through instructor, with the usage of this call.

        Transport retries, the guard and the cache apply to every attempt (instructor calls back into this
        object); the returned usage sums every attempt and re-ask of this call only, so it is right under
        any concurrency.

        Raises:
            LLMOutputError: still invalid after ``max_reasks`` re-asks (``raw`` holds the last reply).
            LLMCallError: the provider failed after retries.
        """
        instructor, imode = self._mode(mode)
        request = self._structured_kwargs(messages, response_model, max_reasks, kwargs)
        spent = [Usage()]  # this call's attempts only; the closure adds each attempt's own usage

        def _completion(**kw: Any) -> Any:
            kw.pop("model", None)
            msgs = kw.pop("messages")
            tools = kw.pop("tools", None)
            choice = kw.pop("tool_choice", None)
            raw, usage = self.call_raw(self._request(msgs, tools, choice, kw))
            spent[0] = spent[0] + usage
            return raw

        client = instructor.from_litellm(_completion, mode=imode, async_client=False)
        try:
            with call_deadline(self.timeout):  # one clock for every attempt and re-ask of this call
                value = _clean(client.create(**request), response_model)
        except Exception as exc:
            err = self._structured_error(exc, response_model)
            if err is sdk_error_in_chain(exc):
                raise err from err.__cause__  # the SDK error as it was raised (its own chain)
            raise err from exc
        finally:
            self.last_usage = spent[0]
        return StructuredResponse(value, spent[0])

    async def astructured_response(
        self,
        messages: list[Message],
        response_model: type[T],
        *,
        max_reasks: int | None = None,
        mode: str | None = None,
        **kwargs: Any,
    ) -> StructuredResponse[T]:
        """Async :meth:`structured_response`."""
        instructor, imode = self._mode(mode)
        request = self._structured_kwargs(messages, response_model, max_reasks, kwargs)
        spent = [Usage()]

        async def _acompletion(**kw: Any) -> Any:
            kw.pop("model", None)
            msgs = kw.pop("messages")
            tools = kw.pop("tools", None)
            choice = kw.pop("tool_choice", None)
            raw, usage = await self.acall_raw(self._request(msgs, tools, choice, kw))
            spent[0] = spent[0] + usage
            return raw

        client = instructor.from_litellm(_acompletion, mode=imode, async_client=True)
        try:
            with call_deadline(self.timeout):
                value = _clean(await client.create(**request), response_model)
        except Exception as exc:
            err = self._structured_error(exc, response_model)
            if err is sdk_error_in_chain(exc):
                raise err from err.__cause__  # the SDK error as it was raised (its own chain)
            raise err from exc
        finally:
            self.last_usage = spent[0]
        return StructuredResponse(value, spent[0])

    def structured(
        self,
        messages: list[Message],
        response_model: type[T],
        *,
        max_reasks: int | None = None,
        mode: str | None = None,
        **kwargs: Any,
    ) -> T:
        """A reply validated into ``response_model`` (see :meth:`structured_response` for its usage).

        ``last_usage`` holds the total of all attempts (per object: with concurrent calls, use
        :meth:`structured_response`).

        Raises:
            LLMOutputError: still invalid after ``max_reasks`` re-asks (``raw`` holds the last reply).
            LLMCallError: the provider failed after retries.
        """
        return self.structured_response(
            messages, response_model, max_reasks=max_reasks, mode=mode, **kwargs
        ).value

    async def astructured(
        self,
        messages: list[Message],
        response_model: type[T],
        *,
        max_reasks: int | None = None,
        mode: str | None = None,
        **kwargs: Any,
    ) -> T:
        """Async :meth:`structured`."""
        reply = await self.astructured_response(
            messages, response_model, max_reasks=max_reasks, mode=mode, **kwargs
        )
        return reply.value

    def cache_path(self) -> Path | None:
        """The reply-cache folder, or ``None`` when caching is off."""
        return self.cache.directory if self.cache is not None else None


def _clean(obj: Any, response_model: type[T]) -> T:
    # instructor returns a subclass instance carrying the raw completion and usage in its __dict__, which
    # breaks ``==`` with plain instances; hand back an instance of exactly ``response_model`` (fields are
    # already validated, so no second validation).
    if type(obj) is response_model and set(vars(obj)) <= set(response_model.model_fields):
        return obj
    values = {name: getattr(obj, name) for name in response_model.model_fields}
    clean = response_model.model_construct(_fields_set=set(obj.model_fields_set), **values)
    if obj.__pydantic_private__:
        object.__setattr__(clean, "__pydantic_private__", dict(obj.__pydantic_private__))
    return clean
