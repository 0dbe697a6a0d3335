"""Thin, keyword-only factories that wire the public nodes into compiled LangGraph graphs.

Each factory builds one :class:`~sepsis_sdk.graphs.AgentContext` from what it is given (copies: the
user's guard, registry and options are never changed), compiles the graph with
``context_schema=AgentContext`` and binds the context as every node's default; a run may still pass its
own (``graph.invoke(inputs, context=ctx)``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sepsis_sdk._lazy import require
from sepsis_sdk.errors import UserError
from sepsis_sdk.graphs import nodes as N
from sepsis_sdk.graphs._context import (
    AgentContext,
    AgentOptions,
    DirectOptions,
    PSROptions,
    ToolCallingOptions,
    bind,
    protocol_registry,
)
from sepsis_sdk.graphs._guard import Guard
from sepsis_sdk.graphs._state import AgentState
from sepsis_sdk.judge import Judge
from sepsis_sdk.llm import ChatModel
from sepsis_sdk.world_model import WorldModel


def _options(cls: type[AgentOptions], options: AgentOptions | None, **given: Any) -> Any:
    """``options`` (default ``cls()``) with the keyword arguments the caller set (``None`` = not set)."""
    base = options if options is not None else cls()
    if not isinstance(base, cls):
        raise UserError(f"options must be a {cls.__name__}, got {type(base).__name__}")
    changes = {k: v for k, v in given.items() if v is not None}
    return dataclasses.replace(base, **changes) if changes else base  # a new object: never the caller's


def _builder(ctx: AgentContext[Any], named_nodes: dict[str, Any]) -> Any:
    require("langgraph", "agent", "agent graphs")
    from langgraph.graph import StateGraph

    b = StateGraph(AgentState, context_schema=AgentContext)
    for name, node in named_nodes.items():
        b.add_node(name, bind(node, ctx))
    return b


def build_psr_graph(
    model: ChatModel | str,
    tools: Any = None,
    *,
    world_model: WorldModel,
    continuation: Any = None,
    n_candidates: int | None = None,
    max_rounds: int | None = None,
    horizon: int | None = None,
    n_samples: int | None = None,
    judge: Judge | None = None,
    guard: Guard | None = None,
    fallback: Any = None,
    safety: Any = None,
    checkpointer: Any = None,
    seed: int | None = None,
    max_retries: int | None = None,
    history_steps: int | None = None,
    system_prompt: str | None = None,
    deadline_s: float | None = None,
    options: PSROptions | None = None,
    decide: str = "generate",
    simulation_report: str | None = None,
    refine_critique: bool | None = None,
    name: str | None = None,
) -> Any:
    """Propose–simulate–refine: observe → propose → simulate → refine (→ propose …) → guard → prescribe.

    Args:
        model: a :class:`~sepsis_sdk.llm.ChatModel` or a LiteLLM model string.
        tools: a :class:`~sepsis_sdk.tools.ToolRegistry` or list of tools (default: the built-ins), copied;
            the simulate node calls the one named ``simulate``.
        world_model: the clinical world model (:class:`~sepsis_sdk.world_model.WorldModel`).
        continuation: how care continues after a candidate (``fit_continuation(training_cohort)``): the
            simulation then reports each candidate's closed-loop value, and the fallback planner improves
            on it (without it the planner holds each action for the horizon).
        n_candidates: K, candidates proposed and simulated per round (default 3).
        max_rounds: rounds before the model must commit (default 3).
        horizon: H, simulated 4-hour steps (default 6).
        n_samples: sampled futures per candidate (default 8).
        judge: a :class:`~sepsis_sdk.judge.Judge` for the refine critique (default: rule-based
            :class:`SimulationCritic`).
        guard: a :class:`Guard` (default: SDK safety rules, planner fallback); the graph configures a
            copy, so one guard may serve several graphs.
        fallback: the policy that acts when the model fails (default: the world-model planner).
        safety: safety rules for the default guard (``None`` SDK rules, ``False`` none).
        checkpointer: a LangGraph checkpointer (e.g. ``SqliteSaver``) for durable, resumable runs.
        seed: simulation seed (default 0).
        max_retries: extra attempts of a failed LLM call, after the chat model's own retries (default 1).
        history_steps: steps of history in the prompt (default 6).
        system_prompt: replaces the default system prompt.
        deadline_s: the decision's total deadline in seconds (default 300): after it no model call is
            made, the fallback acts and the trace says so (``fallback_reason.kind == "deadline"``).
        options: a :class:`PSROptions` holding all of the above options at once; keyword arguments given
            here override its values.
        decide: ``"generate"`` (default: the model writes JSON replies) or ``"loglik"`` (an in-process
            ``local/`` model only): propose takes the ``n_candidates`` most likely of the 25 openings
            ``{"candidates": [{"fluid": F, "vaso": V`` under the same propose prompt, simulate runs as
            usual, and refine commits the candidate whose ``{"decision": "commit", "fluid": F, "vaso": V``
            is the most likely under the same refine prompt (:class:`~sepsis_sdk.llm.LogLikChooser`; no
            generation, no invalid replies; the guard still checks the action, a scoring failure goes to
            the fallback). This mode runs one round: ``max_rounds`` is set to 1 (over ``options``), so the refine prompt says
            no rounds are left (a revision would need new candidates' text, which only generation
            writes); an explicit ``max_rounds`` above 1 is a :class:`~sepsis_sdk.errors.UserError` rather
            than silently ignored. A hosted model fails here, at build.
        simulation_report: what the refine prompt shows of the simulation (default ``"full"``: the
            ``simulate`` tool's text; ``"values"``: without the key-feature paths, a shorter prompt for
            small local models; ``"cautious"``; ``"brief"``: one line per candidate). See
            :class:`PSROptions`.
        refine_critique: whether the refine prompt includes the judge's critique (default ``True``;
            ``False`` shortens it, the critique is still traced). See :class:`PSROptions`.
        name: the graph's name (default ``"psr"``, ``"psr_loglik"`` with ``decide="loglik"``).

    Returns:
        A compiled LangGraph graph; ``graph.invoke({"history": history})["final"]`` is the prescription.

    Raises:
        UserError: an unknown ``decide`` or ``simulation_report``; ``decide="loglik"`` with a hosted model
            or ``max_rounds > 1``.
    """
    from sepsis_sdk.graphs import _loglik

    if decide not in _loglik.DECIDE_MODES:
        raise UserError(f"decide must be one of {_loglik.DECIDE_MODES}, got {decide!r}")
    if decide == "loglik":
        if max_rounds is not None and max_rounds != 1:
            raise UserError(
                f"decide='loglik' runs one propose-simulate-refine round (it scores commit openings only), "
                f"so max_rounds must be 1 or unset, got {max_rounds}"
            )
        max_rounds = 1
    name = name or ("psr" if decide == "generate" else "psr_loglik")
    opts = _options(PSROptions, options, n_candidates=n_candidates, max_rounds=max_rounds, horizon=horizon,
                    n_samples=n_samples, seed=seed, max_retries=max_retries, history_steps=history_steps,
                    system_prompt=system_prompt, deadline_s=deadline_s,
                    simulation_report=simulation_report, refine_critique=refine_critique)  # fmt: skip
    ctx = AgentContext.create(model, tools=tools, world_model=world_model, judge=judge, guard=guard,
                              fallback=fallback, safety=safety, options=opts, graph=name,
                              continuation=continuation)  # fmt: skip
    if decide == "loglik":
        _loglik.check_chooser(ctx)  # a hosted model or a bad local path fails here, at build
        propose, refine = _loglik.propose_loglik, _loglik.refine_loglik
    else:
        propose, refine = N.propose, N.refine
    b = _builder(ctx, {"observe": N.observe, "propose": propose, "simulate": N.simulate, "refine": refine,
                       "guard": N.guard, "prescribe": N.prescribe})  # fmt: skip
    from langgraph.graph import END, START

    b.add_edge(START, "observe")
    b.add_edge("observe", "propose")
    b.add_conditional_edges("propose", N.route_after_propose, ["simulate", "guard"])
    b.add_edge("simulate", "refine")
    b.add_conditional_edges("refine", N.route_after_refine, ["propose", "guard"])
    b.add_edge("guard", "prescribe")
    b.add_edge("prescribe", END)
    return b.compile(checkpointer=checkpointer, name=name)


def build_direct_graph(
    model: ChatModel | str,
    *,
    world_model: WorldModel | None = None,
    continuation: Any = None,
    guard: Guard | None = None,
    fallback: Any = None,
    safety: Any = None,
    checkpointer: Any = None,
    max_retries: int | None = None,
    history_steps: int | None = None,
    system_prompt: str | None = None,
    deadline_s: float | None = None,
    options: DirectOptions | None = None,
    decide: str = "generate",
    name: str | None = None,
) -> Any:
    """The "base LLM" baseline: observe → decide (no tools) → guard → prescribe.

    ``world_model`` is optional: it is only used by the default fallback (the planner); without one the
    fallback is :class:`HoldSafePolicy`. ``options`` is a :class:`DirectOptions`; other arguments as in
    :func:`build_psr_graph`. ``decide="loglik"`` (an in-process ``local/`` model only) picks the most
    likely of the 25 actions by the model's own log-likelihood in one forward pass instead of generating a
    reply (:class:`~sepsis_sdk.llm.LogLikChooser`); the guard still checks it. ``name`` defaults to
    ``"direct"`` (``"direct_loglik"`` with ``decide="loglik"``).
    """
    from sepsis_sdk.graphs import _loglik

    if decide not in _loglik.DECIDE_MODES:
        raise UserError(f"decide must be one of {_loglik.DECIDE_MODES}, got {decide!r}")
    name = name or ("direct" if decide == "generate" else "direct_loglik")
    opts = _options(DirectOptions, options, max_retries=max_retries, history_steps=history_steps,
                    system_prompt=system_prompt, deadline_s=deadline_s)  # fmt: skip
    ctx = AgentContext.create(model, tools=[], world_model=world_model, guard=guard, fallback=fallback,
                              safety=safety, options=opts, graph=name, continuation=continuation)  # fmt: skip
    if decide == "loglik":
        _loglik.check_chooser(ctx)  # a hosted model or a bad local path fails here, at build
    decide_node = N.decide if decide == "generate" else _loglik.decide_loglik
    b = _builder(
        ctx, {"observe": N.observe, "decide": decide_node, "guard": N.guard, "prescribe": N.prescribe}
    )
    from langgraph.graph import END, START

    b.add_edge(START, "observe")
    b.add_edge("observe", "decide")
    b.add_edge("decide", "guard")
    b.add_edge("guard", "prescribe")
    b.add_edge("prescribe", END)
    return b.compile(checkpointer=checkpointer, name=name)


def build_tool_calling_graph(
    model: ChatModel | str,
    tools: Any = None,
    *,
    world_model: WorldModel,
    continuation: Any = None,
    horizon: int | None = None,
    n_samples: int | None = None,
    max_turns: int | None = None,
    extra_tools: bool | None = None,
    guard: Guard | None = None,
    fallback: Any = None,
    safety: Any = None,
    checkpointer: Any = None,
    seed: int | None = None,
    max_retries: int | None = None,
    history_steps: int | None = None,
    system_prompt: str | None = None,
    deadline_s: float | None = None,
    options: ToolCallingOptions | None = None,
    name: str = "tool_calling",
) -> Any:
    """The official SepsisAgent protocol: the model calls ``simulation`` (≤ 3 ``"[vaso,fluid]"`` actions)
    over the OpenAI tools API, turn after turn, until it calls ``prescription(vasopressor, iv_fluid)``.

    observe → agent ⇄ tools → guard → prescribe. Both are registry tools
    (:data:`sepsis_sdk.tools.simulation`, :data:`sepsis_sdk.tools.prescription`) with validated arguments;
    actions are converted between ``[vaso, fluid]`` and the SDK's canonical order there only. A model
    served with vLLM (``hosted_vllm/...``) that was trained on the protocol runs unchanged.

    Args:
        model: a :class:`~sepsis_sdk.llm.ChatModel` or LiteLLM model string.
        tools: extra tools offered to the model when ``extra_tools`` is true (default: none beyond the
            protocol's two).
        world_model: the simulator behind ``simulation``.
        max_turns: model turns before the fallback acts (default 6).
        extra_tools: also offer the registry's tools (not part of the official protocol; default False).
        options: a :class:`ToolCallingOptions` (keyword arguments given here override its values).
        Other arguments as in :func:`build_psr_graph`.
    """
    opts = _options(ToolCallingOptions, options, horizon=horizon, n_samples=n_samples, max_turns=max_turns,
                    extra_tools=extra_tools, seed=seed, max_retries=max_retries, history_steps=history_steps,
                    system_prompt=system_prompt, deadline_s=deadline_s)  # fmt: skip
    ctx = AgentContext.create(model, tools=protocol_registry(tools, opts.extra_tools), world_model=world_model,
                              guard=guard, fallback=fallback, safety=safety, options=opts, graph=name,
                              continuation=continuation)  # fmt: skip
    b = _builder(ctx, {"observe": N.observe_conversation, "agent": N.agent, "tools": N.run_tools,
                       "guard": N.guard, "prescribe": N.prescribe})  # fmt: skip
    from langgraph.graph import END, START

    b.add_edge(START, "observe")
    b.add_edge("observe", "agent")
    b.add_conditional_edges("agent", N.route_after_agent, ["tools", "agent", "guard"])
    b.add_edge("tools", "agent")
    b.add_edge("guard", "prescribe")
    b.add_edge("prescribe", END)
    return b.compile(checkpointer=checkpointer, name=name)


def sqlite_checkpointer(path: str) -> Any:
    """A LangGraph SQLite checkpointer on ``path`` (``":memory:"`` allowed) for durable runs.

    Example:
        >>> saver = sqlite_checkpointer("runs.sqlite")                       # doctest: +SKIP
        >>> g = build_psr_graph(model, world_model=wm, checkpointer=saver)  # doctest: +SKIP
        >>> g.invoke({"history": h}, {"configurable": {"thread_id": "patient-1/t3"}})  # doctest: +SKIP
    """
    require("langgraph.checkpoint.sqlite", "agent", "durable agent runs")
    import sqlite3

    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(path, check_same_thread=False)
    return SqliteSaver(conn, serde=checkpoint_serde())


# Types of ours that live in graph state and are stored in checkpoints (LangGraph's msgpack serializer
# refuses, or will refuse, to rebuild types it was not told about).
CHECKPOINT_TYPES: tuple[tuple[str, str], ...] = (
    ("sepsis_sdk.types", "PatientHistory"),
    ("sepsis_sdk.types", "Observation"),
)


def checkpoint_serde() -> Any:
    """A LangGraph serializer that may rebuild the SDK's state types; pass it to any checkpointer.

    Example:
        >>> from langgraph.checkpoint.memory import InMemorySaver     # doctest: +SKIP
        >>> saver = InMemorySaver(serde=checkpoint_serde())            # doctest: +SKIP
    """
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    return JsonPlusSerializer(allowed_msgpack_modules=list(CHECKPOINT_TYPES))
