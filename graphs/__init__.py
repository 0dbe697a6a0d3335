"""Agent graphs on LangGraph: propose–simulate–refine, direct (no tools), and the SepsisAgent tool protocol.

The factories are thin: they build one run context (:class:`AgentContext`, with per-graph options
:class:`PSROptions`, :class:`DirectOptions`, :class:`ToolCallingOptions`), bind the public node functions
(:mod:`sepsis_sdk.graphs.nodes`) to it and wire them. Rebuild or rewire a graph from the same pieces (see
docs/agent.md); a run may pass its own context (``graph.invoke(inputs, context=ctx)``).

Example:
    >>> from sepsis_sdk.graphs import build_psr_graph
    >>> graph = build_psr_graph("local/smollm2", world_model=wm)     # doctest: +SKIP
    >>> out = graph.invoke({"history": history})                      # doctest: +SKIP
    >>> out["final"]["action"], out["final"]["rationale"]             # doctest: +SKIP
"""

if __name__ != "sepsis_sdk.graphs":  # pragma: no cover - guards against a second copy via `import graphs`
    raise ImportError(
        f"this folder is the package 'sepsis_sdk.graphs'; import it as that, not as {__name__!r}"
    )

from sepsis_sdk.graphs import nodes
from sepsis_sdk.graphs._context import (
    AgentContext,
    AgentOptions,
    DirectOptions,
    PSROptions,
    SimulationOptions,
    ToolCallingOptions,
    as_chat_model,
    bind,
)
from sepsis_sdk.graphs._critique import SimulationCritic, candidate_evidence, simulation_rubric, verdict_score
from sepsis_sdk.graphs._factories import (
    build_direct_graph,
    build_psr_graph,
    build_tool_calling_graph,
    checkpoint_serde,
    sqlite_checkpointer,
)
from sepsis_sdk.graphs._guard import Guard, GuardResult
from sepsis_sdk.graphs._prompts import (
    PRESCRIPTION_TOOL,
    SIMULATION_TOOL,
    SYSTEM,
    direct_prompt,
    propose_prompt,
    refine_prompt,
)
from sepsis_sdk.graphs._state import (
    AgentDeps,
    AgentState,
    CandidateProposal,
    Prescription,
    Proposals,
    RefineDecision,
    as_history,
)
from sepsis_sdk.graphs._trace import build_trace, dump_trace
from sepsis_sdk.safety import HoldSafePolicy, allowed_mask, nearest_allowed

__all__ = [
    "PRESCRIPTION_TOOL",
    "SIMULATION_TOOL",
    "SYSTEM",
    "AgentContext",
    "AgentDeps",
    "AgentOptions",
    "AgentState",
    "CandidateProposal",
    "DirectOptions",
    "Guard",
    "GuardResult",
    "HoldSafePolicy",
    "PSROptions",
    "Prescription",
    "Proposals",
    "RefineDecision",
    "SimulationCritic",
    "SimulationOptions",
    "ToolCallingOptions",
    "allowed_mask",
    "as_chat_model",
    "as_history",
    "bind",
    "build_direct_graph",
    "build_psr_graph",
    "build_tool_calling_graph",
    "build_trace",
    "candidate_evidence",
    "checkpoint_serde",
    "direct_prompt",
    "dump_trace",
    "nearest_allowed",
    "nodes",
    "propose_prompt",
    "refine_prompt",
    "simulation_rubric",
    "sqlite_checkpointer",
    "verdict_score",
]
