"""Compose your own graph from the public nodes: PSR where the judge, not the LLM, makes the final pick.

observe -> propose (LLM) -> simulate (world model) -> pick_best (the critique's best score) -> guard ->
prescribe. Every node is ``node(state, *, deps)``; ``bind(node, deps)`` fixes its dependencies.

    python examples/rewire_graph.py
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from sepsis_sdk.graphs import AgentDeps, AgentState, Guard, bind, build_trace, nodes
from sepsis_sdk.graphs._state import action_dict
from sepsis_sdk.sources.icu_sepsis import sample_cohort
from sepsis_sdk.testing import ScriptedChatModel
from sepsis_sdk.tools import ToolRegistry
from sepsis_sdk.world_model.fake import FakeWorldModel


def pick_best(state: AgentState, *, deps: AgentDeps) -> dict:
    """Commit to the candidate the judge scores highest (no second LLM call)."""
    crit = nodes.critique(state, deps)
    if crit["best"] is None:
        return {"failure": "no simulation to choose from", "critique": crit}
    return {
        "critique": crit,
        "choice": action_dict(crit["best"], rationale="highest critique score", decision="commit"),
    }


def main() -> None:
    model = ScriptedChatModel(
        [{"candidates": [{"fluid": 0, "vaso": 0}, {"fluid": 2, "vaso": 1}, {"fluid": 4, "vaso": 2}]}]
    )
    wm = FakeWorldModel()
    deps = AgentDeps(
        model=model,
        tools=ToolRegistry.default(),
        world_model=wm,
        guard=Guard().with_default_fallback(wm),
        graph="psr-judge-picks",
    )
    b = StateGraph(AgentState)
    for name, fn in [("observe", nodes.observe), ("propose", nodes.propose), ("simulate", nodes.simulate),
                     ("pick_best", pick_best), ("guard", nodes.guard), ("prescribe", nodes.prescribe)]:  # fmt: skip
        b.add_node(name, bind(fn, deps))
    b.add_edge(START, "observe")
    b.add_edge("observe", "propose")
    b.add_conditional_edges("propose", nodes.route_after_propose, {"simulate": "simulate", "guard": "guard"})
    b.add_edge("simulate", "pick_best")
    b.add_edge("pick_best", "guard")
    b.add_edge("guard", "prescribe")
    b.add_edge("prescribe", END)
    graph = b.compile()
    print(graph.get_graph().draw_mermaid())
    history = next(iter(sample_cohort(3, seed=0).episodes())).history(1)
    trace = build_trace(graph.invoke({"history": history}))
    print("action", trace["action"], trace["source"], trace["rationale"], trace["guard_reasons"])


if __name__ == "__main__":
    main()
