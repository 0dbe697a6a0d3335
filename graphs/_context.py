"""The agent's run context and the per-graph options: what every node and tool of a run refers to.

LangGraph's idiom: a graph is compiled with ``context_schema=AgentContext``; a node declares a
``runtime: Runtime[AgentContext]`` parameter and reads ``runtime.context``; a run may pass its own with
``graph.invoke(inputs, context=ctx)``. The factories build one context per graph (copying what the user
passed, never changing it) and :func:`bind` makes it the default of each node, so ``graph.invoke(inputs)``
needs no context. Tools see the same object by reference (``ToolContext.run``), never a copy of its
fields.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sepsis_sdk.errors import UserError
from sepsis_sdk.features import FeatureSchema
from sepsis_sdk.graphs._critique import SimulationCritic
from sepsis_sdk.graphs._guard import Guard
from sepsis_sdk.judge import Judge
from sepsis_sdk.llm import ChatModel
from sepsis_sdk.tools import ToolContext, ToolRegistry, as_registry, protocol_tools
from sepsis_sdk.types import PatientHistory
from sepsis_sdk.world_model import WorldModel

SIMULATION_REPORTS = ("full", "values", "cautious", "brief")  # PSROptions.simulation_report
PROTOCOL_RESERVED = ("simulation", "prescription", "simulate")  # never offered as extras beside the protocol


# ---------------------------------------------------------------------------------------------- options
@dataclass(frozen=True, kw_only=True)
class AgentOptions:
    """Options every graph has.

    Attributes:
        max_retries: extra attempts of a node's LLM call after an :class:`~sepsis_sdk.errors.LLMError`
            (on top of the chat model's own retries) before the guard's fallback acts.
        history_steps: steps of history shown in the prompt.
        system_prompt: replaces the default system prompt.
        deadline_s: the decision's total deadline in seconds (every model call, tool and retry of one
            ``invoke``); once it passes, no further model call is made, the fallback acts and the trace
            says so (``failure_kind`` ``"deadline"``). ``None``: no deadline.
    """

    max_retries: int = 1
    history_steps: int = 6
    system_prompt: str | None = None
    deadline_s: float | None = 300.0

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.history_steps < 1:
            raise UserError(
                f"need max_retries >= 0 and history_steps >= 1; got {self.max_retries}, {self.history_steps}"
            )
        if self.deadline_s is not None and not self.deadline_s > 0:
            raise UserError(f"deadline_s must be > 0 seconds or None, got {self.deadline_s}")

    def replace(self, **changes: Any) -> Any:
        """A copy with ``changes`` (validated again)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, kw_only=True)
class DirectOptions(AgentOptions):
    """Options of the direct (no tools) graph: the common ones only."""


@dataclass(frozen=True, kw_only=True)
class SimulationOptions(AgentOptions):
    """Options of graphs that simulate (the ``simulate``/``simulation`` tools read them).

    Attributes:
        horizon: H, simulated 4-hour steps.
        n_samples: sampled futures per candidate.
        seed: simulation seed.
    """

    horizon: int = 6
    n_samples: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.horizon < 1 or self.n_samples < 1:
            raise UserError(f"need horizon >= 1 and n_samples >= 1; got {self.horizon}, {self.n_samples}")


@dataclass(frozen=True, kw_only=True)
class PSROptions(SimulationOptions):
    """Options of the propose–simulate–refine graph.

    Attributes:
        n_candidates: K, candidates proposed (and simulated) per round, 1-8.
        max_rounds: rounds before the model must commit.
        simulation_report: what the refine prompt shows of the simulation: ``"full"`` (the ``simulate``
            tool's text: outcomes, values and each candidate's key-feature paths) or ``"values"`` (the
            same without the paths: the refine prompt is ~450 tokens shorter for 3 candidates, so a small
            local model decides faster; the trace's simulation data keep the paths either way) or
            ``"cautious"`` (the values-only report plus each candidate's cautious value, the planner's
            pessimistic score, and a closing line that ranks by it; needs a continuation that offers them,
            such as ``WorldModelPlannerPolicy.planned_continuation()``, else the simulate node raises) or
            ``"brief"`` (one line per candidate: value, support and, when the continuation offers them,
            the cautious value the closing line then ranks by; 273 tokens for 5 candidates against 702
            for ``"cautious"``, SmolLM2 tokenizer, measured on one ICU-Sepsis state).
        refine_critique: whether the refine prompt includes the judge's critique of the simulated
            candidates (default ``True``). The critique is computed and traced either way; ``False``
            leaves it out of the prompt, about 400 tokens for 5 candidates (389-415 measured) that restate the
            report's numbers, so a small local model decides faster (``build_psr_graph(...,
            refine_critique=False)``; a model must be run with the prompt it was trained on).
    """

    n_candidates: int = 3
    max_rounds: int = 3
    simulation_report: str = "full"
    refine_critique: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.n_candidates <= 8 or self.max_rounds < 1 or self.horizon < 1:
            raise UserError(
                f"need 1 <= n_candidates <= 8, max_rounds >= 1, horizon >= 1; got {self.n_candidates}, "
                f"{self.max_rounds}, {self.horizon}"
            )
        if self.simulation_report not in SIMULATION_REPORTS:
            raise UserError(
                f"simulation_report must be one of {SIMULATION_REPORTS}, got {self.simulation_report!r}"
            )
        super().__post_init__()


@dataclass(frozen=True, kw_only=True)
class ToolCallingOptions(SimulationOptions):
    """Options of the SepsisAgent tool-protocol graph.

    Attributes:
        max_turns: model turns before the fallback acts.
        extra_tools: also offer the registry's tools (not part of the official protocol).
    """

    max_turns: int = 6
    extra_tools: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_turns < 1:
            raise UserError(f"need max_turns >= 1, got {self.max_turns}")


@dataclass(frozen=True, kw_only=True)
class _AllOptions(PSROptions, ToolCallingOptions):
    """Every option (what a deprecated ``AgentDeps`` carried), for nodes of any graph."""


OptionsT = TypeVar("OptionsT", bound=AgentOptions)


# ---------------------------------------------------------------------------------------------- the context
@dataclass(frozen=True, kw_only=True)
class AgentContext(Generic[OptionsT]):
    """One agent run's dependencies, shared by reference by every node and tool (never copied).

    Build one with :meth:`create` (it copies what it is given); change one with :meth:`replace`. It also
    has the attributes tools read (``world_model``, ``schema``, ``safety``, ``horizon``, ``n_samples``,
    ``seed``: see :class:`~sepsis_sdk.tools.ToolSettings`), so it is what ``ToolContext.run`` refers to.

    Attributes:
        model: the chat model.
        tools: the tool registry (the PSR simulate node calls ``simulate``; the tool-calling graph offers
            and dispatches ``simulation``/``prescription`` and any extras).
        guard: the final safety net, its fallback already configured.
        world_model: the world model behind the simulation tools and the default fallback planner.
        judge: critiques simulated outcomes in ``refine``.
        schema: for rendering values (default: the world model's, else inferred from the history).
        options: the graph's options (:class:`PSROptions`, :class:`DirectOptions`,
            :class:`ToolCallingOptions`).
        graph: the graph's name in traces.

    Example:
        >>> ctx = AgentContext.create(model, world_model=wm, options=PSROptions(n_candidates=2))  # doctest: +SKIP
        >>> graph.invoke({"history": h}, context=ctx.replace(model=other_model))                # doctest: +SKIP
    """

    model: ChatModel
    tools: ToolRegistry
    guard: Guard
    world_model: WorldModel | None = None
    continuation: Any = None
    judge: Judge = field(default_factory=SimulationCritic)
    schema: FeatureSchema | None = None
    options: OptionsT = field(default_factory=AgentOptions)  # type: ignore[assignment]
    graph: str = "agent"

    @classmethod
    def create(
        cls,
        model: ChatModel | str,
        *,
        tools: ToolRegistry | list[Any] | None = None,
        world_model: WorldModel | None = None,
        judge: Judge | None = None,
        guard: Guard | None = None,
        fallback: Any = None,
        safety: Any = None,
        schema: FeatureSchema | None = None,
        options: AgentOptions | None = None,
        graph: str = "agent",
        continuation: Any = None,
    ) -> AgentContext[Any]:
        """A context from what a user passes; the registry and the guard are copies, never changed.

        Args:
            model: a :class:`~sepsis_sdk.llm.ChatModel` or a LiteLLM model string.
            tools: a registry or a list of tools (default: the built-ins).
            world_model: the world model.
            judge: default :class:`SimulationCritic`.
            guard: a :class:`Guard` (copied); default: SDK safety rules (or ``safety``) and ``fallback``.
            fallback: the policy that acts when the model fails (default: the world-model planner).
            safety: safety rules for the default guard.
            schema: the schema values are rendered with.
            options: the graph's options (default :class:`AgentOptions`).
            graph: the graph's name in traces.
            continuation: how care continues after a candidate (e.g.
                ``fit_continuation(training_cohort)``): the simulate tools then report closed-loop values,
                and the default fallback planner improves on it.
        """
        if continuation is not None:
            from sepsis_sdk.world_model.value import as_continuation

            continuation = as_continuation(continuation, world_model=world_model)
        chat = as_chat_model(model)
        check = getattr(chat, "check_config", None)
        if callable(check):  # configuration errors raise here, at graph build, not as a fallback later
            check()
        return cls(
            model=chat,
            tools=as_registry(tools).copy(),
            guard=configured_guard(guard, fallback, safety, world_model, continuation),
            world_model=world_model,
            continuation=continuation,
            judge=judge if judge is not None else SimulationCritic(),
            schema=schema,
            options=options if options is not None else AgentOptions(),
            graph=graph,
        )

    def replace(self, **changes: Any) -> AgentContext[OptionsT]:
        """A copy with ``changes`` (e.g. another model for one run)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        # LangGraph (Studio, the server) asks the context schema for a JSON schema; a run context holds
        # live objects (a chat model, a world model), not JSON, so it is an instance check with an empty
        # JSON schema: such graphs are configured by their factory, not by a Studio form.
        from pydantic_core import core_schema

        return core_schema.json_or_python_schema(
            json_schema=core_schema.any_schema(), python_schema=core_schema.is_instance_schema(cls)
        )

    # what tools read (see ToolSettings)
    @property
    def safety(self) -> Any:
        return self.guard.safety

    @property
    def horizon(self) -> int:
        return int(getattr(self.options, "horizon", 6))

    @property
    def n_samples(self) -> int:
        return int(getattr(self.options, "n_samples", 8))

    @property
    def seed(self) -> int:
        return int(getattr(self.options, "seed", 0))

    def schema_for(self, history: PatientHistory) -> FeatureSchema:
        """The schema ``history``'s values are rendered with."""
        from sepsis_sdk.render import schema_for

        return schema_for(history, self.schema, self.world_model)

    def tool_context(self, history: PatientHistory) -> ToolContext:
        """What a tool sees in this run: the patient, and this context by reference."""
        return ToolContext(history=history, run=self)


def as_chat_model(model: Any) -> ChatModel:
    """A :class:`~sepsis_sdk.llm.ChatModel`; a string is a LiteLLM model name (``"local/smollm2"``, ...)."""
    if isinstance(model, str):
        from sepsis_sdk.llm import LiteLLMChat

        return LiteLLMChat(model)
    if model is None or not (hasattr(model, "complete") and hasattr(model, "structured")):
        raise UserError(f"model must be a ChatModel or a LiteLLM model string, got {type(model).__name__}")
    return model


def configured_guard(
    guard: Guard | None, fallback: Any, safety: Any, world_model: WorldModel | None, continuation: Any = None
) -> Guard:
    """The graph's own guard: the user's copied (never changed), with ``fallback`` or the default set."""
    if guard is None:
        out = Guard(fallback=fallback, safety=safety)
    elif not isinstance(guard, Guard):
        raise UserError(f"guard must be a sepsis_sdk.graphs.Guard, got {type(guard).__name__}")
    else:
        out = copy.copy(guard)  # the graph's own: the user's guard may serve other graphs, or change later
        if fallback is not None:
            out.fallback = fallback
    return out.with_default_fallback(world_model, continuation)


def protocol_registry(tools: ToolRegistry | list[Any] | None, extra_tools: bool) -> ToolRegistry:
    """``simulation`` and ``prescription``, plus the extras of ``tools`` when ``extra_tools`` is set."""
    reg = ToolRegistry(protocol_tools())
    if extra_tools and tools is not None:
        for t in as_registry(tools):
            if t.name not in PROTOCOL_RESERVED:
                reg.add(t)
    return reg


# ---------------------------------------------------------------------------------------------- binding
def context_of(runtime: Any) -> AgentContext[Any]:
    """The :class:`AgentContext` of a node's ``runtime`` (a deprecated ``AgentDeps`` is converted)."""
    ctx = getattr(runtime, "context", runtime)
    if isinstance(ctx, AgentContext):
        return ctx
    to_context = getattr(ctx, "to_context", None)
    if callable(to_context):
        return to_context()
    raise UserError(
        "this node needs an AgentContext: invoke the graph with context=AgentContext.create(...), or add "
        f"the node with bind(node, context); got {type(ctx).__name__}"
    )


def bind(node: Callable[..., Any], context: Any) -> Callable[..., Any]:
    """``node`` with ``context`` as its default run context (a run's own ``context=`` still wins).

    ``context`` is an :class:`AgentContext` (or a deprecated ``AgentDeps``). A node written the old way,
    ``node(state, *, deps)``, gets ``deps=context`` as before. The node's name is kept (drawings, traces).
    """
    params = inspect.signature(node).parameters
    if "deps" in params:  # a pre-context node: node(state, *, deps)
        legacy = functools.partial(node, deps=context)
        functools.update_wrapper(legacy, node)
        return legacy
    ctx = context_of(context)
    if "runtime" not in params:
        return node  # it reads no context

    @functools.wraps(node)
    def bound(state: Any, runtime: Any) -> Any:
        # None, or the empty context LangGraph's server sends with every run ({}), leaves the default
        given = getattr(runtime, "context", None)
        if given is None or (isinstance(given, dict) and not given):
            runtime = runtime.override(context=ctx)
        return node(state, runtime=runtime)

    return bound
