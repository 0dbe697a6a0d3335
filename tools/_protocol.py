"""The SepsisAgent release's two tools, ``simulation`` and ``prescription``, as registry tools.

Tool names, argument names and JSON schemas follow the release (DESIGN.md §3.7), so a model trained on it
runs unchanged: ``simulation(actions)`` takes at most 3 actions written ``"[vasopressor, fluid]"``, and
``prescription(vasopressor, iv_fluid)`` takes two levels 0-4. Arguments are validated by pydantic models
that also accept what models commonly send instead (a ``[vaso, fluid]`` list, the whole list as one JSON
string, levels as ``"2"`` or ``2.0``); anything else comes back to the model as a readable tool error.
The ``[vaso, fluid]`` order is converted to the SDK's canonical :class:`~sepsis_sdk.actions.Action` here
and nowhere else.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sepsis_sdk.actions import Action
from sepsis_sdk.errors import InvalidActionError
from sepsis_sdk.tools._base import FunctionTool, ToolContext, ToolResult, tool
from sepsis_sdk.tools._simulate import simulate_actions

MAX_PROTOCOL_ACTIONS = 3  # the release's limit per `simulation` call

SIMULATION_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "simulation",
        "description": "Simulate the patient's next states under up to 3 candidate actions.",
        "parameters": {
            "type": "object",
            "properties": {
                "actions": {
                    "type": "array",
                    "items": {
                        "type": "string",
                        "description": 'an action "[vasopressor, fluid]", e.g. "[1, 2]"',
                    },
                    "maxItems": MAX_PROTOCOL_ACTIONS,
                    "description": 'candidate actions, each "[vasopressor, fluid]" with levels 0-4',
                }
            },
            "required": ["actions"],
        },
    },
}

PRESCRIPTION_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "prescription",
        "description": "Prescribe the treatment for the next 4 hours (ends the decision).",
        "parameters": {
            "type": "object",
            "properties": {
                "vasopressor": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": 4,
                    "description": "vasopressor level 0-4",
                },
                "iv_fluid": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": 4,
                    "description": "IV fluid level 0-4",
                },
            },
            "required": ["vasopressor", "iv_fluid"],
        },
    },
}


def _is_level(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _action_items(value: Any) -> list[Any]:
    """The list of actions a model meant: a list, a JSON list in a string, one pair, or one pair string."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith(("[[", '["', "['")):
            try:
                value = json.loads(text.replace("'", '"'))
            except json.JSONDecodeError as exc:
                raise ValueError(f"cannot read the actions list {text!r}: {exc}") from exc
        else:
            value = [text]
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_level(v) for v in value):
        value = [list(value)]  # one [vaso, fluid] pair given bare
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError('`actions` must be a non-empty list of "[vasopressor, fluid]" strings')
    return list(value)


class SimulationArgs(BaseModel):
    """Arguments of ``simulation``: 1 to 3 actions, each ``"[vasopressor, fluid]"`` or ``[vaso, fluid]``.

    Example:
        >>> [a.index for a in SimulationArgs(actions=["[1, 2]", [0, 3]]).actions]
        [11, 15]
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)
    actions: tuple[Action, ...] = Field(description='candidate actions, each "[vasopressor, fluid]" 0-4')

    @field_validator("actions", mode="before")
    @classmethod
    def _parse(cls, value: Any) -> tuple[Action, ...]:
        items = _action_items(value)
        if len(items) > MAX_PROTOCOL_ACTIONS:
            raise ValueError(f"at most {MAX_PROTOCOL_ACTIONS} actions per simulation, got {len(items)}")
        out = []
        for item in items:
            if isinstance(item, Action):
                out.append(item)
                continue
            if not isinstance(item, (str, list, tuple)):
                raise ValueError(f'each action is "[vasopressor, fluid]", got {item!r}')
            try:
                out.append(Action.from_sepsisagent(list(item) if isinstance(item, tuple) else item))
            except InvalidActionError as exc:
                raise ValueError(str(exc)) from exc
        return tuple(out)


class PrescriptionArgs(BaseModel):
    """Arguments of ``prescription``: the vasopressor and IV-fluid levels, integers 0-4.

    Example:
        >>> PrescriptionArgs(vasopressor=1, iv_fluid="2").to_action().index
        11
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    vasopressor: int = Field(ge=0, le=4, description="vasopressor level 0-4")
    iv_fluid: int = Field(ge=0, le=4, description="IV fluid level 0-4")

    @field_validator("vasopressor", "iv_fluid", mode="before")
    @classmethod
    def _no_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):  # pydantic would read True as 1
            raise ValueError(f"level must be an integer 0-4, got {value!r}")
        return value

    def to_action(self) -> Action:
        return Action(fluid=self.iv_fluid, vaso=self.vasopressor)


@tool(
    name="simulation",
    description=SIMULATION_TOOL["function"]["description"],
    args_model=SimulationArgs,
    parameters=SIMULATION_TOOL["function"]["parameters"],
    invalid_message=(
        'Tool {name!r} failed: {problems}. Actions are strings "[vasopressor, fluid]" with levels 0-4, '
        f"at most {MAX_PROTOCOL_ACTIONS} per call."
    ),
)
def simulation(actions: tuple[Action, ...], ctx: ToolContext = None) -> ToolResult:  # type: ignore[assignment]
    """Simulate the candidate actions with the run's world model (its horizon, samples and seed)."""
    report = simulate_actions(
        ctx.world_model,
        ctx.require_history("simulation"),
        list(actions),
        horizon=ctx.horizon,
        n_samples=ctx.n_samples,
        seed=ctx.seed,
        schema=ctx.resolved_schema(),
        continuation=ctx.continuation,
    )
    return report.to_tool_result()


@tool(
    name="prescription",
    description=PRESCRIPTION_TOOL["function"]["description"],
    args_model=PrescriptionArgs,
    parameters=PRESCRIPTION_TOOL["function"]["parameters"],
    invalid_message=(
        "Invalid prescription ({problems}). Call `prescription` again with integer `vasopressor` and "
        "`iv_fluid` between 0 and 4."
    ),
)
def prescription(vasopressor: int, iv_fluid: int) -> ToolResult:
    """Record the prescription; ``value`` is the canonical :class:`~sepsis_sdk.actions.Action`."""
    action = Action(fluid=iv_fluid, vaso=vasopressor)
    data = {
        "action": action.index,
        "fluid": action.fluid,
        "vaso": action.vaso,
        "sepsisagent": [vasopressor, iv_fluid],
    }
    return ToolResult(content="Prescription recorded.", data=data, value=action)


def protocol_tools() -> list[FunctionTool]:
    """``simulation`` and ``prescription``, in the release's order."""
    return [simulation, prescription]
