"""`SchemaChatModel`: a fake that needs no script (calls each tool once with schema-valid arguments).

Modelled on pydantic-ai's ``TestModel``: handy for smoke-testing a graph or a tool loop end to end before
writing precise scripts.
"""

from __future__ import annotations

import json
import threading
from typing import Any, TypeVar

from pydantic import BaseModel

from sepsis_sdk.errors import UserError
from sepsis_sdk.llm import ChatResponse, Message, StructuredResponse, ToolCall, Usage

T = TypeVar("T", bound=BaseModel)


def example_from_schema(schema: dict[str, Any], *, defs: dict[str, Any] | None = None, depth: int = 0) -> Any:
    """A small value that satisfies ``schema`` (required keys only, lower bounds, first enum value).

    Example:
        >>> example_from_schema({"type": "object", "properties": {"level": {"type": "integer", "minimum": 1}},
        ...                      "required": ["level"]})
        {'level': 1}
    """
    defs = {**(defs or {}), **schema.get("$defs", {}), **schema.get("definitions", {})}
    if depth > 20:
        return None
    if "$ref" in schema:
        target = defs.get(schema["$ref"].split("/")[-1], {})
        return example_from_schema(
            {**target, **{k: v for k, v in schema.items() if k != "$ref"}}, defs=defs, depth=depth + 1
        )
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            options = [o for o in schema[key] if o.get("type") != "null"] or schema[key]
            return example_from_schema(options[0], defs=defs, depth=depth + 1)
    if isinstance(schema.get("allOf"), list) and schema["allOf"]:
        return example_from_schema(schema["allOf"][0], defs=defs, depth=depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else ("array" if "items" in schema else "string")
    if kind == "object":
        props = schema.get("properties", {})
        return {
            name: example_from_schema(props.get(name, {}), defs=defs, depth=depth + 1)
            for name in schema.get("required", [])
        }
    if kind == "array":
        n = int(schema.get("minItems", 0))
        return [example_from_schema(schema.get("items", {}), defs=defs, depth=depth + 1) for _ in range(n)]
    if kind in ("integer", "number"):
        value: float = 0
        if "minimum" in schema:
            value = schema["minimum"]
        elif "exclusiveMinimum" in schema:
            value = schema["exclusiveMinimum"] + (1 if kind == "integer" else 0.5)
        elif "maximum" in schema and schema["maximum"] < 0:
            value = schema["maximum"]
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return "a" * max(1, int(schema.get("minLength", 1)))


class SchemaChatModel:
    """A chat model that calls each offered tool once (schema-valid arguments), then answers.

    ``complete`` with tools returns a call to the first tool not yet called in the conversation (a forced
    ``tool_choice`` is honoured); once every tool has been called, or without tools, it answers
    ``final_text``. ``structured`` returns the smallest valid instance of the response model. Calls are
    recorded in ``calls`` (messages and tools).

    Args:
        final_text: the text answer.
        arguments: per-tool overrides ``{tool name: arguments}`` instead of generated ones.
        call_tools: ``False`` to never call tools.
        name: the model's name.

    Example:
        >>> tools = [{"type": "function", "function": {"name": "prescription", "parameters": {"type": "object",
        ...     "properties": {"vasopressor": {"type": "integer", "minimum": 0}}, "required": ["vasopressor"]}}}]
        >>> model = SchemaChatModel()
        >>> model.complete([{"role": "user", "content": "go"}], tools=tools).tool_calls[0].arguments
        {'vasopressor': 0}
    """

    def __init__(
        self,
        *,
        final_text: str = "done",
        arguments: dict[str, dict[str, Any]] | None = None,
        call_tools: bool = True,
        name: str = "schema",
    ) -> None:
        self.final_text = final_text
        self.arguments = dict(arguments or {})
        self.call_tools = call_tools
        self.name = name
        self.calls: list[dict[str, Any]] = []
        self.usage = Usage()
        self._n = 0
        self._lock = threading.Lock()

    def _spend(self, usage: Usage) -> None:
        with self._lock:
            self.usage = self.usage + usage

    def _called(self, messages: list[Message]) -> set[str]:
        names = set()
        for m in messages:
            for c in m.get("tool_calls") or []:
                fn = c.get("function", {}) if isinstance(c, dict) else {}
                if fn.get("name"):
                    names.add(fn["name"])
        return names

    def _reply(
        self, messages: list[Message], tools: list[dict[str, Any]] | None, tool_choice: Any
    ) -> ChatResponse:
        self.calls.append(
            {"messages": [dict(m) for m in messages], "tools": tools, "tool_choice": tool_choice}
        )
        self._spend(Usage(calls=1))
        if tools and self.call_tools and tool_choice != "none":
            by_name = {t["function"]["name"]: t["function"] for t in tools}
            forced = (
                (tool_choice.get("function") or {}).get("name") if isinstance(tool_choice, dict) else None
            )
            if forced and forced not in by_name:
                raise UserError(f"tool_choice names {forced!r}, which is not among the tools offered")
            pending = [forced] if forced else [n for n in by_name if n not in self._called(messages)]
            if pending or tool_choice == "required":
                tool = pending[0] if pending else next(iter(by_name))
                args = self.arguments.get(tool)
                if args is None:
                    args = example_from_schema(by_name[tool].get("parameters") or {"type": "object"})
                self._n += 1
                call = ToolCall(f"schema_call_{self._n}", tool, args, json.dumps(args))
                return ChatResponse(
                    tool_calls=[call], model=self.name, finish_reason="tool_calls", usage=Usage(calls=1)
                )
        return ChatResponse(text=self.final_text, model=self.name, finish_reason="stop", usage=Usage(calls=1))

    def complete(
        self,
        messages: list[Message],
        *,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: Any = None,
        **kwargs: Any,
    ) -> ChatResponse:
        """A tool call for the next uncalled tool, else ``final_text``."""
        return self._reply(messages, tools, tool_choice)

    async def acomplete(
        self,
        messages: list[Message],
        *,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: Any = None,
        **kwargs: Any,
    ) -> ChatResponse:
        """Async :meth:`complete`."""
        return self._reply(messages, tools, tool_choice)

    def structured_response(
        self, messages: list[Message], response_model: type[T], **kwargs: Any
    ) -> StructuredResponse[T]:
        """The smallest valid ``response_model`` instance its JSON schema describes, with its usage."""
        if not (isinstance(response_model, type) and issubclass(response_model, BaseModel)):
            raise UserError(f"response_model must be a pydantic BaseModel subclass, got {response_model!r}")
        self.calls.append({"messages": [dict(m) for m in messages], "response_model": response_model})
        self._spend(Usage(calls=1))
        value = response_model.model_validate(example_from_schema(response_model.model_json_schema()))
        return StructuredResponse(value, Usage(calls=1))

    async def astructured_response(
        self, messages: list[Message], response_model: type[T], **kwargs: Any
    ) -> StructuredResponse[T]:
        """Async :meth:`structured_response`."""
        return self.structured_response(messages, response_model, **kwargs)

    def structured(self, messages: list[Message], response_model: type[T], **kwargs: Any) -> T:
        """The smallest valid ``response_model`` instance its JSON schema describes."""
        return self.structured_response(messages, response_model, **kwargs).value

    async def astructured(self, messages: list[Message], response_model: type[T], **kwargs: Any) -> T:
        """Async :meth:`structured`."""
        return self.structured_response(messages, response_model, **kwargs).value
