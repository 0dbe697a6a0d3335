"""The graphs' shared state and the LLM-facing output models (the run context is in ``_context``)."""

from __future__ import annotations

import operator
import warnings
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field

from sepsis_sdk.actions import Action
from sepsis_sdk.types import PatientHistory


def merge_usage(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    """Reducer: add token counts, calls and latency of LLM calls."""
    out = dict(left or {})
    for k, v in (right or {}).items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = out.get(k, 0) + v
        else:
            out[k] = v
    return out


class AgentState(TypedDict, total=False):
    """State of every agent graph (PSR, direct, tool-calling).

    Inputs: ``history`` (a :class:`~sepsis_sdk.PatientHistory` or its dict). Everything else is written
    by nodes. Fields with a reducer accumulate across nodes and rounds; the others are overwritten.

    Attributes:
        history: the patient.
        observation: the patient rendered as prompt text (by ``observe``).
        messages: the conversation (tool-calling graph), appended to.
        round: PSR round (1-based) of the current proposals.
        candidates: the current round's proposals ``{action, fluid, vaso, rationale}``.
        simulation: the current round's :meth:`SimulationReport.to_dict` (or ``None``).
        critique: the judge's per-candidate critique of the current round.
        choice: the model's chosen action ``{action, rationale, decision}`` before the guard.
        failure: why the model could not decide (beyond retries); the guard then uses the fallback.
        failure_kind: what kind of failure (see :data:`FAILURE_KINDS`): ``"transport"`` (429/5xx or a
            lost connection, after retries), ``"timeout"`` (a call's total deadline), ``"deadline"`` (the
            decision's deadline), ``"invalid_output"`` (replies that never validated or no valid
            prescription), ``"no_action"``. Configuration errors never get here: they raise.
        deadline_at: wall-clock time (``time.time()``) by which the decision must be made (by ``observe``).
        final: the prescription ``{action, fluid, vaso, rationale, source, overridden, reasons}``.
        events: the trace: one JSON-serialisable record per notable step (appended to).
        usage: LLM tokens, calls and latency (summed).
        turns: model turns taken (tool-calling graph).
    """

    history: PatientHistory | dict[str, Any]
    observation: str
    messages: Annotated[list[dict[str, Any]], operator.add]
    round: int
    candidates: list[dict[str, Any]]
    simulation: dict[str, Any] | None
    critique: dict[str, Any] | None
    choice: dict[str, Any] | None
    failure: str | None
    failure_kind: str | None
    deadline_at: float | None
    final: dict[str, Any] | None
    events: Annotated[list[dict[str, Any]], operator.add]
    usage: Annotated[dict[str, Any], merge_usage]
    turns: int


#: Why a fallback acted (``final["failure_kind"]`` and ``trace["fallback_reason"]["kind"]``).
FAILURE_KINDS = ("transport", "timeout", "deadline", "invalid_output", "no_action")


# ---------------------------------------------------------------------------------------------- LLM outputs
class CandidateProposal(BaseModel):
    """One candidate treatment proposed by the model."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    fluid: int = Field(ge=0, le=4, description="IV fluid level 0-4")
    vaso: int = Field(ge=0, le=4, description="vasopressor level 0-4")
    rationale: str = Field(default="", description="one sentence: why this candidate is worth simulating")


class Proposals(BaseModel):
    """The model's candidate treatments for this round."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    candidates: list[CandidateProposal] = Field(min_length=1, max_length=8)
    reasoning: str = Field(default="", description="brief assessment of the patient")


class RefineDecision(BaseModel):
    """The model's choice after reading the simulations and the critique."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    decision: Literal["commit", "revise"] = Field(
        description="commit = prescribe the chosen treatment; revise = propose new candidates"
    )
    fluid: int = Field(ge=0, le=4, description="IV fluid level 0-4 of the chosen treatment")
    vaso: int = Field(ge=0, le=4, description="vasopressor level 0-4 of the chosen treatment")
    rationale: str = Field(default="", description="why, citing the simulated outcomes")


class Prescription(BaseModel):
    """A treatment decision (direct graph)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    fluid: int = Field(ge=0, le=4, description="IV fluid level 0-4")
    vaso: int = Field(ge=0, le=4, description="vasopressor level 0-4")
    rationale: str = Field(default="", description="brief clinical reasoning")


# ---------------------------------------------------------------------------------------------- deprecated
@dataclass
class AgentDeps:
    """Deprecated: the graphs' run context is :class:`~sepsis_sdk.graphs.AgentContext` (with per-graph
    options :class:`~sepsis_sdk.graphs.PSROptions`, :class:`~sepsis_sdk.graphs.DirectOptions`,
    :class:`~sepsis_sdk.graphs.ToolCallingOptions`).

    Still accepted for one release wherever a context is: ``bind(node, deps)`` converts it once with
    :meth:`to_context` (a node written as ``node(state, *, deps)`` receives it unchanged).
    """

    model: Any = None
    tools: Any = None
    world_model: Any = None
    judge: Any = None
    guard: Any = None
    schema: Any = None
    n_candidates: int = 3
    max_rounds: int = 3
    horizon: int = 6
    n_samples: int = 8
    seed: int = 0
    max_retries: int = 1
    max_turns: int = 6
    history_steps: int = 6
    system_prompt: str | None = None
    graph: str = "psr"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        warnings.warn(
            "AgentDeps is deprecated; use sepsis_sdk.graphs.AgentContext.create(...) with PSROptions, "
            "DirectOptions or ToolCallingOptions",
            DeprecationWarning,
            stacklevel=3,
        )

    def to_context(self) -> Any:
        """The equivalent :class:`~sepsis_sdk.graphs.AgentContext` (registry and guard copied)."""
        from sepsis_sdk.graphs._context import AgentContext, _AllOptions, protocol_registry

        extra_tools = bool(self.extra.get("extra_tools"))
        options = _AllOptions(
            n_candidates=self.n_candidates, max_rounds=self.max_rounds, horizon=self.horizon,
            n_samples=self.n_samples, seed=self.seed, max_retries=self.max_retries, max_turns=self.max_turns,
            history_steps=self.history_steps, system_prompt=self.system_prompt, extra_tools=extra_tools,
        )  # fmt: skip
        ctx = AgentContext.create(
            self.model,
            tools=self.tools,
            world_model=self.world_model,
            judge=self.judge,
            guard=self.guard,
            schema=self.schema,
            options=options,
            graph=self.graph,
        )
        if "extra_tools" in self.extra:  # built for the tool-calling graph: the protocol tools
            ctx = ctx.replace(tools=protocol_registry(self.tools, extra_tools))
        return ctx


def as_history(value: PatientHistory | dict[str, Any]) -> PatientHistory:
    """Accept a :class:`PatientHistory` or its dict form (JSON inputs, LangGraph Studio)."""
    if isinstance(value, PatientHistory):
        return value
    return PatientHistory.model_validate(value)


def action_dict(action: int, **extra: Any) -> dict[str, Any]:
    a = Action.from_index(action)
    return {"action": int(action), "fluid": a.fluid, "vaso": a.vaso, **extra}
