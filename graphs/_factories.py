"""Thin, keyword-only factories that wire the public nodes into compiled LangGraph graphs."""

from __future__ import annotations

import functools
from typing import Any

from sepsis_sdk._lazy import require
from sepsis_sdk.errors import UserError
from sepsis_sdk.graphs import nodes as N
from sepsis_sdk.graphs._guard import Guard
from sepsis_sdk.graphs._state import AgentDeps, AgentState
from sepsis_sdk.tools._base import as_registry


def as_chat_model(model: Any) -> Any:
    """A :class:`~sepsis_sdk.llm.ChatModel`; a string is a LiteLLM model name (``"local/smollm2"``, ...)."""
    if isinstance(model, str):
        from sepsis_sdk.llm import LiteLLMChat

        return LiteLLMChat(model)
    if model is None or not (hasattr(model, "complete") and hasattr(model, "structured")):
        raise UserError(f"model must be a ChatModel or a LiteLLM model string, got {type(model).__name__}")
    return model


def _guard(guard: Any, fallback: Any, safety: Any) -> Guard:
    if guard is None:
        return Guard(fallback=fallback, safety=safety)
    if not isinstance(guard, Guard):
        raise UserError(f"guard must be a sepsis_sdk.graphs.Guard, got {type(guard).__name__}")
    if fallback is not None:
        guard.fallback = fallback
    return guard


def bind(node: Any, deps: AgentDeps) -> Any:
    """``functools.partial(node, deps=deps)`` with the node's name kept (for drawings and traces)."""
    p = functools.partial(node, deps=deps)
    functools.update_wrapper(p, node)
    return p


def _compile(builder: Any, checkpointer: Any, name: str) -> Any:
    return builder.compile(checkpointer=checkpointer, name=name)


def build_psr_graph(
    model: Any,
    tools: Any = None,
    *,
    world_model: Any,
    n_candidates: int = 3,
    max_rounds: int = 3,
    horizon: int = 6,
    n_samples: int = 8,
    judge: Any = None,
    guard: Guard | None = None,
    fallback: Any = None,
    safety: Any = None,
    checkpointer: Any = None,
    seed: int = 0,
    max_retries: int = 1,
    history_steps: int = 6,
    system_prompt: str | None = None,
    name: str = "psr",
) -> Any:
    """Propose–simulate–refine: observe → propose → simulate → refine (→ propose …) → guard → prescribe.

    Args:
        model: a :class:`~sepsis_sdk.llm.ChatModel` or a LiteLLM model string.
        tools: a :class:`~sepsis_sdk.tools.ToolRegistry` or list of tools (default: the built-ins); the
            simulate node calls the one named ``simulate``.
        world_model: the clinical world model (:class:`~sepsis_sdk.world_model.WorldModel`).
        n_candidates: K, candidates proposed and simulated per round.
        max_rounds: rounds before the model must commit.
        horizon: H, simulated 4-hour steps.
        n_samples: sampled futures per candidate.
        judge: a :class:`~sepsis_sdk.judge.Judge` for the refine critique (default: rule-based
            :class:`SimulationCritic`).
        guard: a :class:`Guard` (default: SDK safety rules, ICU-Sepsis admissibility, planner fallback).
        fallback: the policy that acts when the model fails (default: the world-model planner).
        safety: safety rules for the default guard (``None`` SDK rules, ``False`` none).
        checkpointer: a LangGraph checkpointer (e.g. ``SqliteSaver``) for durable, resumable runs.
        seed: simulation seed.
        max_retries: extra attempts of a failed LLM call (after the chat model's own retries).
        history_steps: steps of history in the prompt.
        system_prompt: replaces the default system prompt.
        name: the graph's name.

    Returns:
        A compiled LangGraph graph; ``graph.invoke({"history": history})["final"]`` is the prescription.
    """
    if not 1 <= n_candidates <= 8 or max_rounds < 1 or horizon < 1:
        raise UserError(
            f"need 1 <= n_candidates <= 8, max_rounds >= 1, horizon >= 1; got {n_candidates}, {max_rounds}, {horizon}"
        )
    require("langgraph", "agent", "agent graphs")
    from langgraph.graph import END, START, StateGraph

    deps = AgentDeps(
        model=as_chat_model(model), tools=as_registry(tools), world_model=world_model, judge=judge,
        guard=_guard(guard, fallback, safety).with_default_fallback(world_model), n_candidates=n_candidates,
        max_rounds=max_rounds, horizon=horizon, n_samples=n_samples, seed=seed, max_retries=max_retries,
        history_steps=history_steps, system_prompt=system_prompt, graph=name,
    )  # fmt: skip
    b = StateGraph(AgentState)
    b.add_node("observe", bind(N.observe, deps))
    b.add_node("propose", bind(N.propose, deps))
    b.add_node("simulate", bind(N.simulate, deps))
    b.add_node("refine", bind(N.refine, deps))
    b.add_node("guard", bind(N.guard, deps))
    b.add_node("prescribe", bind(N.prescribe, deps))
    b.add_edge(START, "observe")
    b.add_edge("observe", "propose")
    b.add_conditional_edges("propose", N.route_after_propose, ["simulate", "guard"])
    b.add_edge("simulate", "refine")
    b.add_conditional_edges("refine", N.route_after_refine, ["propose", "guard"])
    b.add_edge("guard", "prescribe")
    b.add_edge("prescribe", END)
    return _compile(b, checkpointer, name)


def build_direct_graph(
    model: Any,
    *,
    world_model: Any = None,
    guard: Guard | None = None,
    fallback: Any = None,
    safety: Any = None,
    checkpointer: Any = None,
    max_retries: int = 1,
    history_steps: int = 6,
    system_prompt: str | None = None,
    name: str = "direct",
) -> Any:
    """The "base LLM" baseline: observe → decide (no tools) → guard → prescribe.

    ``world_model`` is optional: it is only used by the default fallback (the planner); without one the
    fallback is :class:`HoldSafePolicy`.
    """
    require("langgraph", "agent", "agent graphs")
    from langgraph.graph import END, START, StateGraph

    deps = AgentDeps(
        model=as_chat_model(model), tools=as_registry([]), world_model=world_model,
        guard=_guard(guard, fallback, safety).with_default_fallback(world_model), max_retries=max_retries,
        history_steps=history_steps, system_prompt=system_prompt, graph=name,
    )  # fmt: skip
    b = StateGraph(AgentState)
    b.add_node("observe", bind(N.observe, deps))
    b.add_node("decide", bind(N.decide, deps))
    b.add_node("guard", bind(N.guard, deps))
    b.add_node("prescribe", bind(N.prescribe, deps))
    b.add_edge(START, "observe")
    b.add_edge("observe", "decide")
    b.add_edge("decide", "guard")
    b.add_edge("guard", "prescribe")
    b.add_edge("prescribe", END)
    return _compile(b, checkpointer, name)


def build_tool_calling_graph(
    model: Any,
    tools: Any = None,
    *,
    world_model: Any,
    horizon: int = 6,
    n_samples: int = 8,
    max_turns: int = 6,
    extra_tools: bool = False,
    guard: Guard | None = None,
    fallback: Any = None,
    safety: Any = None,
    checkpointer: Any = None,
    seed: int = 0,
    max_retries: int = 1,
    history_steps: int = 6,
    system_prompt: str | None = None,
    name: str = "tool_calling",
) -> Any:
    """The official SepsisAgent protocol: the model calls ``simulation`` (≤ 3 ``"[vaso,fluid]"`` actions)
    over the OpenAI tools API, turn after turn, until it calls ``prescription(vasopressor, iv_fluid)``.

    observe → agent ⇄ tools → guard → prescribe. Actions are converted between ``[vaso, fluid]`` and the
    SDK's canonical order at this boundary only. A model served with vLLM (``hosted_vllm/...``) that was
    trained on the protocol runs unchanged.

    Args:
        model: a :class:`~sepsis_sdk.llm.ChatModel` or LiteLLM model string.
        tools: extra tools offered to the model when ``extra_tools`` is true (default: none beyond the
            protocol's two).
        world_model: the simulator behind ``simulation``.
        max_turns: model turns before the fallback acts.
        extra_tools: also offer the registry's tools (not part of the official protocol).
        Other arguments as in :func:`build_psr_graph`.
    """
    require("langgraph", "agent", "agent graphs")
    from langgraph.graph import END, START, StateGraph

    deps = AgentDeps(
        model=as_chat_model(model), tools=as_registry(tools if tools is not None else []), world_model=world_model,
        guard=_guard(guard, fallback, safety).with_default_fallback(world_model), horizon=horizon,
        n_samples=n_samples, seed=seed, max_retries=max_retries, max_turns=max_turns, history_steps=history_steps,
        system_prompt=system_prompt, graph=name, extra={"extra_tools": bool(extra_tools)},
    )  # fmt: skip
    b = StateGraph(AgentState)
    b.add_node("observe", bind(N.observe_conversation, deps))
    b.add_node("agent", bind(N.agent, deps))
    b.add_node("tools", bind(N.run_tools, deps))
    b.add_node("guard", bind(N.guard, deps))
    b.add_node("prescribe", bind(N.prescribe, deps))
    b.add_edge(START, "observe")
    b.add_edge("observe", "agent")
    b.add_conditional_edges("agent", N.route_after_agent, ["tools", "agent", "guard"])
    b.add_edge("tools", "agent")
    b.add_edge("guard", "prescribe")
    b.add_edge("prescribe", END)
    return _compile(b, checkpointer, name)


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
