"""The tool protocol: schemas from type hints and docstrings, the registry, errors as messages."""

from __future__ import annotations

import json
from typing import Annotated, ClassVar, Literal

import pytest
from pydantic import Field

from sepsis_sdk.errors import UserError
from sepsis_sdk.tools import (
    Tool,
    ToolContext,
    ToolRegistry,
    ToolResult,
    as_registry,
    openai_schema,
    parse_google_docstring,
    tool,
)


@tool
def lactate_trend(n_steps: int, unit: Literal["mmol/L", "mg/dL"] = "mmol/L", ctx: ToolContext = None) -> str:
    """Recent lactate values of the patient.

    Longer explanation for humans, not sent.

    Args:
        n_steps: how many 4-hour steps
            to show (continued line).
        unit: unit to report in.
    """
    return f"{n_steps} steps in {unit}; horizon {ctx.horizon}"


@tool(name="explode")
def _explode(level: Annotated[int, Field(ge=0, le=4)]) -> dict:
    """Always fails.

    Args:
        level: a level.
    """
    raise RuntimeError(f"boom at level {level}")


def test_schema_from_hints_and_docstring():
    s = openai_schema(lactate_trend)
    assert s["type"] == "function"
    fn = s["function"]
    assert fn["name"] == "lactate_trend"
    assert fn["description"] == "Recent lactate values of the patient."
    props = fn["parameters"]["properties"]
    assert set(props) == {"n_steps", "unit"}  # the injected context is hidden from the model
    assert props["n_steps"] == {
        "type": "integer",
        "description": "how many 4-hour steps to show (continued line).",
    }
    assert props["unit"]["enum"] == ["mmol/L", "mg/dL"] and props["unit"]["default"] == "mmol/L"
    assert fn["parameters"]["required"] == ["n_steps"]
    assert fn["parameters"]["additionalProperties"] is False
    assert isinstance(lactate_trend, Tool)


def test_docstring_parser_handles_types_and_sections():
    desc, args = parse_google_docstring(
        """Do a thing.

        Args:
            a (int): first.
            b: second
                more.

        Returns:
            nothing: ignored.
        """
    )
    assert desc == "Do a thing."
    assert args == {"a": "first.", "b": "second more."}


def test_invoke_injects_context_and_validates():
    res = lactate_trend.invoke({"n_steps": 3}, ToolContext(horizon=9))
    assert res.ok and res.content == "3 steps in mmol/L; horizon 9"
    bad = lactate_trend.invoke({"n_steps": "many"})
    assert not bad.ok and "n_steps" in bad.content and "Fix the arguments" in bad.content
    extra = lactate_trend.invoke({"n_steps": 1, "colour": "red"})
    assert not extra.ok and "colour" in extra.content


def test_exception_comes_back_as_a_message():
    res = _explode.invoke({"level": 2})
    assert not res.ok
    assert "RuntimeError: boom at level 2" in res.content and "retry" in res.content
    assert _explode.invoke({"level": 7}).error  # schema bounds enforced before the call


def test_registry_add_invoke_and_errors():
    reg = ToolRegistry.default()
    assert reg.names == ["simulate", "check_guidelines", "patient_history"]
    reg.add(lactate_trend)
    with pytest.raises(UserError, match="already registered"):
        reg.add(lactate_trend)
    assert [s["function"]["name"] for s in reg.schemas(["lactate_trend"])] == ["lactate_trend"]
    assert reg.invoke("lactate_trend", '{"n_steps": 2}').content.startswith("2 steps")
    assert "not valid JSON" in reg.invoke("lactate_trend", "{n_steps: 2").content
    assert "no tool named" in reg.invoke("nope", {}).content.lower()
    assert "must be a JSON object" in reg.invoke("lactate_trend", "[1, 2]").content

    def plain(x: float) -> float:
        """Double it.

        Args:
            x: a number.
        """
        return 2 * x

    t = reg.add(plain)
    assert t.name == "plain" and json.loads(reg.invoke("plain", {"x": 1.5}).content) == 3.0


def test_as_registry_and_bad_names():
    assert as_registry(None).names == ToolRegistry.default().names
    assert as_registry([lactate_trend]).names == ["lactate_trend"]
    with pytest.raises(UserError):
        tool(name="bad name!")(lambda: 1)
    with pytest.raises(UserError, match="args"):
        tool(name="varargs")(lambda *a: 1)


def test_hand_written_tool_that_raises_is_contained():
    class Raw:
        name = "raw"
        description = "raw tool"
        parameters: ClassVar[dict] = {"type": "object", "properties": {}}

        def invoke(self, arguments, context=None) -> ToolResult:
            raise ValueError("bad state")

    reg = ToolRegistry([Raw()])
    res = reg.invoke("raw", {})
    assert not res.ok and "ValueError: bad state" in res.content
