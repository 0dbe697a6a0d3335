"""The tool protocol, the ``@tool`` decorator and the registry.

A tool is anything with a ``name``, a ``description``, a JSON-schema ``parameters`` object and an
``invoke(arguments, context)`` method. :func:`tool` turns a plain function into one: the schema comes
from the type hints (through pydantic) and the descriptions from the Google-style docstring. A parameter
annotated :class:`ToolContext` is injected at call time (the patient's history, the world model, the
safety rules) and hidden from the model.

Errors never escape :meth:`ToolRegistry.invoke`: invalid arguments and exceptions raised by the tool come
back as a :class:`ToolResult` whose ``content`` tells the model what went wrong, so it can correct itself
(the LangGraph ``ToolNode`` habit).
"""

from __future__ import annotations

import inspect
import json
import re
import typing
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from sepsis_sdk.errors import UserError

if typing.TYPE_CHECKING:
    from sepsis_sdk.features import FeatureSchema
    from sepsis_sdk.types import PatientHistory
    from sepsis_sdk.world_model import WorldModel


@dataclass(frozen=True)
class ToolSettings:
    """The run settings a tool may read: the world model, the schema, the safety rules, simulation defaults.

    A graph's run context (:class:`~sepsis_sdk.graphs.AgentContext`) has the same attributes and is used
    in its place, by reference; this class serves tools called outside a graph.

    Attributes:
        world_model: a :class:`~sepsis_sdk.world_model.WorldModel` (needed by ``simulate``).
        schema: feature schema used to render values in clinical units (defaults to the world model's,
            else inferred from the history).
        safety: a safety checker (see :func:`sepsis_sdk.tools.as_safety_checker`); ``None`` = the SDK's
            default rules.
        horizon: default simulation horizon (4-hour steps).
        n_samples: samples per candidate in simulations.
        seed: RNG seed for simulations (same seed, same numbers).
        continuation: how care continues after a simulated candidate (a fitted behaviour model, a
            Policy or a Continuation); with it, ``simulate`` also reports each candidate's closed-loop
            value (see :func:`sepsis_sdk.world_model.value.action_values`).
    """

    world_model: WorldModel | None = None
    schema: FeatureSchema | None = None
    safety: Any = None
    horizon: int = 6
    n_samples: int = 8
    seed: int = 0
    continuation: Any = None


class ToolContext:
    """What a tool may look at besides the model's arguments (injected, never shown to the model).

    The patient is the call's own; everything else is read through ``run``, a reference to the run's
    settings (inside a graph: its :class:`~sepsis_sdk.graphs.AgentContext`, so a tool can also reach the
    chat model, the judge or the guard), never a copy of them.

    Args:
        history: the patient being treated.
        world_model: settings for a tool called outside a graph (see :class:`ToolSettings`); leave them
            out when passing ``run``.
        schema: see :class:`ToolSettings`.
        safety: see :class:`ToolSettings`.
        horizon: see :class:`ToolSettings`.
        n_samples: see :class:`ToolSettings`.
        seed: see :class:`ToolSettings`.
        extra: free slot for users' own tools.
        run: the run's settings: any object with the :class:`ToolSettings` attributes.
        continuation: see :class:`ToolSettings`.

    Example:
        >>> ToolContext(horizon=3).horizon
        3
    """

    __slots__ = ("extra", "history", "run")

    def __init__(
        self,
        history: PatientHistory | None = None,
        world_model: WorldModel | None = None,
        schema: FeatureSchema | None = None,
        safety: Any = None,
        horizon: int = 6,
        n_samples: int = 8,
        seed: int = 0,
        extra: dict[str, Any] | None = None,
        *,
        run: Any = None,
        continuation: Any = None,
    ) -> None:
        settings = ToolSettings(world_model, schema, safety, horizon, n_samples, seed, continuation)
        if run is not None and settings != ToolSettings():
            raise UserError(
                "ToolContext takes either run= or the settings (world_model, schema, ...), not both"
            )
        self.history = history
        self.run = run if run is not None else settings
        self.extra: dict[str, Any] = dict(extra or {})

    @property
    def world_model(self) -> WorldModel | None:
        return self.run.world_model

    @property
    def schema(self) -> FeatureSchema | None:
        return self.run.schema

    @property
    def safety(self) -> Any:
        return self.run.safety

    @property
    def horizon(self) -> int:
        return self.run.horizon

    @property
    def n_samples(self) -> int:
        return self.run.n_samples

    @property
    def seed(self) -> int:
        return self.run.seed

    @property
    def continuation(self) -> Any:
        return getattr(self.run, "continuation", None)

    def __repr__(self) -> str:
        pid = getattr(self.history, "patient_id", None)
        return f"ToolContext(history={pid!r}, run={type(self.run).__name__})"

    def require_history(self, tool: str) -> PatientHistory:
        if self.history is None:
            raise UserError(f"tool {tool!r} needs a patient history in its ToolContext")
        return self.history

    def resolved_schema(self) -> FeatureSchema:
        """The schema to render values with: explicit, else the world model's (when its features are the
        history's), else inferred from the history."""
        from sepsis_sdk.render import schema_for

        return schema_for(self.require_history("schema"), self.schema, self.world_model)


@dataclass
class ToolResult:
    """What a tool returns.

    Attributes:
        content: text shown to the model (a tool message).
        data: JSON-serialisable structured result (for traces, tables and code).
        error: set when the call failed; ``content`` then explains the failure to the model.
        value: the Python object the tool returned (not serialised; e.g. a ``SimulationReport``).
    """

    content: str
    data: Any = None
    error: str | None = None
    value: Any = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """``content``, ``data`` and ``error`` as a plain dict."""
        return {"content": self.content, "data": self.data, "error": self.error}

    def as_dict(self) -> dict[str, Any]:
        """Deprecated alias of :meth:`to_dict`."""
        warnings.warn("ToolResult.as_dict() is deprecated; use to_dict()", DeprecationWarning, stacklevel=2)
        return self.to_dict()


@runtime_checkable
class Tool(Protocol):
    """A callable the agent (or a graph node) can use."""

    name: str
    description: str
    parameters: dict[str, Any]

    def invoke(self, arguments: Mapping[str, Any], context: ToolContext | None = None) -> ToolResult: ...


def openai_schema(t: Tool) -> dict[str, Any]:
    """The tool in the OpenAI tools format (``{"type": "function", "function": {...}}``)."""
    return {
        "type": "function",
        "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
    }


# ---------------------------------------------------------------------------------------------- docstrings
def parse_google_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a docstring into (description, {argument: description}), through ``docstring_parser``.

    Google style is the SDK's; ReST (``:param x:``), NumPy and Epydoc docstrings are read too (the
    library detects the style). The description is the first paragraph on one line (what the model
    needs; later paragraphs stay for humans); ``*args``/``**kwargs`` are listed without their stars.

    Example:
        >>> parse_google_docstring("Recent lactate.\\n\\nArgs:\\n    n_steps: how many\\n        4-hour steps.")
        ('Recent lactate.', {'n_steps': 'how many 4-hour steps.'})
    """
    if not doc or not doc.strip():
        return "", {}
    import docstring_parser

    parsed = docstring_parser.parse(inspect.cleandoc(doc))
    summary = parsed.short_description or ""
    if parsed.long_description and not parsed.blank_after_short_description:
        summary += "\n" + parsed.long_description  # the first paragraph ran over several lines
    description = " ".join(summary.split("\n\n")[0].split())
    args = {
        p.arg_name.lstrip("*"): " ".join((p.description or "").split())
        for p in parsed.params
        if p.args and p.args[0] in ("param", "parameter", "arg", "argument", "key", "keyword")
    }
    return description, args


def _clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Drop pydantic's ``title`` noise; keep everything a provider needs."""

    def walk(node: Any, in_properties: bool = False) -> Any:
        if isinstance(node, dict):
            return {
                k: walk(v, in_properties=(k == "properties"))
                for k, v in node.items()
                if not (k == "title" and not in_properties and isinstance(v, str))
            }
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    out = walk(schema)
    out.setdefault("properties", {})
    out["type"] = "object"
    return out


# ---------------------------------------------------------------------------------------------- function tools
_INVALID = "Invalid arguments for tool {name!r}: {problems}. Fix the arguments and call it again."


class FunctionTool:
    """A tool made from a Python function (see :func:`tool`).

    Args:
        fn: the function; a parameter annotated :class:`ToolContext` is injected, the others are arguments.
        name: the name the model calls (default: the function's).
        description: default: the docstring's first paragraph.
        args_model: a pydantic model validating the arguments (its fields must be the function's
            parameters); default: one built from the type hints.
        parameters: the JSON schema shown to the model, when it must be exactly a given one (a released
            protocol); default: the argument model's.
        invalid_message: the text the model reads after invalid arguments, with ``{name}`` and
            ``{problems}`` placeholders.

    Attributes:
        name: the name the model calls.
        description: from the docstring's first paragraph (or given).
        parameters: JSON schema of the arguments (OpenAI tools format's ``parameters``).
        fn: the wrapped function.
        args_model: the pydantic model that validates arguments.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        args_model: type[BaseModel] | None = None,
        parameters: dict[str, Any] | None = None,
        invalid_message: str | None = None,
    ) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        doc_description, arg_docs = parse_google_docstring(fn.__doc__)
        self.description = description if description is not None else doc_description
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", self.name):
            raise UserError(f"tool name {self.name!r} must match [A-Za-z0-9_-]{{1,64}} (OpenAI tools rule)")
        hints = typing.get_type_hints(fn, include_extras=True)
        sig = inspect.signature(fn)
        fields: dict[str, Any] = {}
        self._context_param: str | None = None
        for pname, param in sig.parameters.items():
            ann = hints.get(pname, Any)
            if _is_context(ann):
                self._context_param = pname
                continue
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise UserError(f"tool {self.name!r}: *args/**kwargs cannot be described to a model")
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[pname] = (ann, Field(default, description=arg_docs.get(pname) or None))
        if args_model is not None:
            if set(args_model.model_fields) != set(fields):
                raise UserError(
                    f"tool {self.name!r}: args_model fields {sorted(args_model.model_fields)} must be the "
                    f"function's parameters {sorted(fields)}"
                )
            self.args_model: type[BaseModel] = args_model
        else:
            self.args_model = create_model(  # type: ignore[call-overload]
                f"{self.name}_arguments", __config__=ConfigDict(extra="forbid"), **fields
            )
        self.parameters = (
            dict(parameters) if parameters is not None else _clean_schema(self.args_model.model_json_schema())
        )
        self.invalid_message = invalid_message or _INVALID

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"FunctionTool(name={self.name!r})"

    def invoke(self, arguments: Mapping[str, Any], context: ToolContext | None = None) -> ToolResult:
        """Validate ``arguments`` and call the function; failures become a readable :class:`ToolResult`."""
        try:
            parsed = self.args_model.model_validate(dict(arguments or {}))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors()
            )
            msg = self.invalid_message.format(name=self.name, problems=problems)
            return ToolResult(content=msg, error=msg)
        kwargs = {k: getattr(parsed, k) for k in type(parsed).model_fields}
        if self._context_param is not None:
            kwargs[self._context_param] = context or ToolContext()
        try:
            out = self.fn(**kwargs)
        except Exception as exc:
            return error_result(self.name, exc)
        return as_result(out)


def _is_context(ann: Any) -> bool:
    args = (
        [a for a in typing.get_args(ann) if a is not type(None)]
        if typing.get_origin(ann) is not None
        else [ann]
    )
    return any(isinstance(a, type) and issubclass(a, ToolContext) for a in args)


def error_result(name: str, exc: BaseException) -> ToolResult:
    """The message a model sees when tool ``name`` raised ``exc``."""
    msg = f"Tool {name!r} failed: {type(exc).__name__}: {exc}. You may retry with other arguments or go on without it."
    return ToolResult(content=msg, error=f"{type(exc).__name__}: {exc}")


def as_result(out: Any) -> ToolResult:
    """Normalise what a tool function returned into a :class:`ToolResult`."""
    if isinstance(out, ToolResult):
        return out
    if hasattr(out, "to_tool_result"):
        return out.to_tool_result()
    if isinstance(out, str):
        return ToolResult(content=out, data=out)
    if isinstance(out, BaseModel):
        data = out.model_dump(mode="json")
        return ToolResult(content=json.dumps(data), data=data, value=out)
    try:
        text = json.dumps(out, default=str)
    except (TypeError, ValueError):
        text = str(out)
    return ToolResult(content=text, data=out, value=out)


@typing.overload
def tool(fn: Callable[..., Any], /) -> FunctionTool: ...
@typing.overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    args_model: type[BaseModel] | None = None,
    parameters: dict[str, Any] | None = None,
    invalid_message: str | None = None,
) -> Callable[[Callable[..., Any]], FunctionTool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    args_model: type[BaseModel] | None = None,
    parameters: dict[str, Any] | None = None,
    invalid_message: str | None = None,
) -> FunctionTool | Callable[[Callable[..., Any]], FunctionTool]:
    """Turn a function into a :class:`Tool`; its schema comes from type hints and the Google docstring.

    The keyword arguments are :class:`FunctionTool`'s (an explicit argument model, a fixed schema, the
    invalid-arguments text).

    Example:
        >>> @tool
        ... def lactate_trend(n_steps: int = 3, ctx: ToolContext = None) -> str:
        ...     '''Recent lactate values.
        ...
        ...     Args:
        ...         n_steps: how many 4-hour steps to show.
        ...     '''
        ...     return "2.1 -> 3.4 mmol/L"
        >>> lactate_trend.parameters["properties"]["n_steps"]["description"]
        'how many 4-hour steps to show.'
    """
    kw: dict[str, Any] = {"name": name, "description": description, "args_model": args_model,
                          "parameters": parameters, "invalid_message": invalid_message}  # fmt: skip
    if fn is not None:
        return FunctionTool(fn, **kw)
    return lambda f: FunctionTool(f, **kw)


# ---------------------------------------------------------------------------------------------- registry
class ToolRegistry:
    """An ordered set of tools by name; graphs take one (or a plain list of tools).

    Example:
        >>> reg = ToolRegistry.default()          # simulate, check_guidelines, patient_history
        >>> reg.add(lactate_trend)                # doctest: +SKIP
        >>> [s["function"]["name"] for s in reg.schemas()]  # doctest: +SKIP
    """

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for t in tools:
            self.add(t)

    @classmethod
    def default(cls) -> ToolRegistry:
        """A new registry with the built-in tools (``simulate``, ``check_guidelines``, ``patient_history``)."""
        from sepsis_sdk.tools._builtin import builtin_tools

        return cls(builtin_tools())

    def add(self, t: Tool | Callable[..., Any], *, replace: bool = False) -> Tool:
        """Register a tool (a plain function is wrapped with :func:`tool`); returns the tool."""
        if not isinstance(t, Tool):
            if not callable(t):
                raise UserError(f"cannot register {t!r} as a tool")
            t = tool(t)
        if t.name in self._tools and not replace:
            raise UserError(f"a tool named {t.name!r} is already registered (pass replace=True)")
        self._tools[t.name] = t
        return t

    def copy(self) -> ToolRegistry:
        """A new registry with the same tools (the tools themselves are shared; they hold no run state)."""
        return type(self)(self._tools.values())

    def remove(self, name: str) -> None:
        self._tools.pop(name, None)

    def get(self, name: str) -> Tool:
        try:
            return self._tools[name]
        except KeyError:
            raise UserError(f"no tool named {name!r}; registered: {sorted(self._tools)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def schemas(self, names: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """OpenAI tools-format schemas (all tools, or those named)."""
        chosen = self._tools.values() if names is None else [self.get(n) for n in names]
        return [openai_schema(t) for t in chosen]

    def invoke(
        self, name: str, arguments: Mapping[str, Any] | str | None, context: ToolContext | None = None
    ) -> ToolResult:
        """Call tool ``name``; unknown names, bad JSON and exceptions come back as error results."""
        if name not in self._tools:
            msg = f"There is no tool named {name!r}. Available tools: {', '.join(self._tools) or 'none'}."
            return ToolResult(content=msg, error=msg)
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError as exc:
                msg = f"Tool {name!r} failed: its arguments are not valid JSON ({exc}). Send a JSON object."
                return ToolResult(content=msg, error=msg)
        if arguments is not None and not isinstance(arguments, Mapping):
            msg = f"The arguments for tool {name!r} must be a JSON object, got {type(arguments).__name__}."
            return ToolResult(content=msg, error=msg)
        try:
            return self._tools[name].invoke(arguments or {}, context)
        except Exception as exc:  # a hand-written Tool that raises instead of returning an error
            return error_result(name, exc)


def as_registry(tools: ToolRegistry | Iterable[Tool | Callable[..., Any]] | None) -> ToolRegistry:
    """Accept a registry, a list of tools/functions, or ``None`` (the built-ins)."""
    if tools is None:
        return ToolRegistry.default()
    if isinstance(tools, ToolRegistry):
        return tools
    reg = ToolRegistry()
    for t in tools:
        reg.add(t)
    return reg
