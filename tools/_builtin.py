"""The built-in tools: ``simulate``, ``check_guidelines`` and ``patient_history``."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from sepsis_sdk.actions import Action
from sepsis_sdk.render import action_label, history_trends, render_history
from sepsis_sdk.safety import as_safety_checker
from sepsis_sdk.tools._base import FunctionTool, ToolContext, ToolResult, tool
from sepsis_sdk.tools._simulate import simulate_actions

MAX_SIMULATED = 8  # = the most candidates a PSR round may propose (graphs.Proposals)


class ActionChoice(BaseModel):
    """One treatment: IV-fluid level and vasopressor level, 0 (none) to 4 (highest quartile)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    fluid: int = Field(ge=0, le=4, description="IV fluid level 0-4 (0 none, 4 >530 mL/4h)")
    vaso: int = Field(ge=0, le=4, description="vasopressor level 0-4 (0 none, 4 >0.45 ug/kg/min)")

    def to_action(self) -> Action:
        return Action(fluid=self.fluid, vaso=self.vaso)


@tool
def simulate(
    actions: Annotated[list[ActionChoice], Field(min_length=1, max_length=MAX_SIMULATED)],
    horizon: Annotated[int | None, Field(ge=1, le=24)] = None,
    ctx: ToolContext = None,  # type: ignore[assignment]
) -> ToolResult:
    """Simulate candidate treatments with the clinical world model and compare predicted outcomes.

    Args:
        actions: up to 8 candidate treatments, each held for the whole horizon.
        horizon: number of 4-hour steps to simulate (default: the agent's horizon).
    """
    history = ctx.require_history("simulate")
    report = simulate_actions(
        ctx.world_model,
        history,
        [a.to_action() for a in actions],
        horizon=horizon or ctx.horizon,
        n_samples=ctx.n_samples,
        seed=ctx.seed,
        schema=ctx.resolved_schema(),
        continuation=ctx.continuation,
    )
    return report.to_tool_result()


@tool
def check_guidelines(
    fluid: Annotated[int, Field(ge=0, le=4)], vaso: Annotated[int, Field(ge=0, le=4)], ctx: ToolContext = None
) -> ToolResult:  # type: ignore[assignment]
    """Check which guideline and safety rules a treatment would break for this patient now.

    Args:
        fluid: IV fluid level 0-4.
        vaso: vasopressor level 0-4.
    """
    history = ctx.require_history("check_guidelines")
    action = Action(fluid=fluid, vaso=vaso)
    checker = as_safety_checker(ctx.safety)
    findings = checker.check(history, action.index, ctx.resolved_schema())
    broken = [f for f in findings if f.violated]
    lines = [f"{action_label(action)}:"]
    if broken:
        lines += [f"- breaks {f.rule_id}{'' if f.hard else ' (advisory)'}: {f.reason}" for f in broken]
    else:
        lines.append(
            "- breaks no rule" + (f" (checked {len(findings)})" if findings else " (no rules loaded)")
        )
    data = {
        "action": action.index,
        "fluid": fluid,
        "vaso": vaso,
        "findings": [f.to_dict() for f in findings],
        "violated": [f.rule_id for f in broken],
        "admissible": None,  # unknown: tools never read the hidden ICU-Sepsis admissible sets
    }
    return ToolResult(content="\n".join(lines), data=data)


@tool
def patient_history(n_steps: Annotated[int, Field(ge=1, le=48)] = 6, ctx: ToolContext = None) -> ToolResult:  # type: ignore[assignment]
    """Show the trends of the patient's key vitals and labs and the treatments given.

    Args:
        n_steps: how many recent 4-hour steps to show.
    """
    history = ctx.require_history("patient_history")
    schema = ctx.resolved_schema()
    text = render_history(history, schema, n_steps)
    return ToolResult(
        content=text,
        data={
            "patient_id": history.patient_id,
            "t": history.t,
            "trends": history_trends(history, schema, n_steps),
            "actions": list(history.actions[-n_steps:]),
        },
    )


def builtin_tools() -> list[FunctionTool]:
    """The three built-in tools, in a fixed order."""
    return [simulate, check_guidelines, patient_history]
