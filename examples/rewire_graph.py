"""Compose your own graph from the public nodes: PSR where the judge, not the LLM, makes the final pick.

observe -> propose (LLM) -> simulate (world model) -> pick_best (the critique's best score) -> guard ->
prescribe. Every node is ``node(state, runtime)`` and reads the run context, ``runtime.context`` (an
:class:`~sepsis_sdk.graphs.AgentContext`); ``bind(node, ctx)`` makes ``ctx`` its default, so
``graph.invoke(inputs)`` needs no context, and ``graph.invoke(inputs, context=other)`` still overrides it.

    python examples/rewire_graph.py
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from sepsis_sdk.actions import Action
from sepsis_sdk.graphs import AgentContext, AgentState, PSROptions, bind, build_trace, nodes
from sepsis_sdk.sources.icu_sepsis import sample_cohort
from sepsis_sdk.testing import ScriptedChatModel
from sepsis_sdk.world_model.fake import FakeWorldModel


def pick_best(state: AgentState, runtime) -> dict:
    """Commit to the candidate the judge scores highest (no second LLM call)."""
    crit = nodes.critique(state, runtime)  # the run context's judge and guard
    if crit["best"] is None:
        return {"failure": "no simulation to choose from", "critique": crit}
    a = Action.from_index(crit["best"])
    choice = {"action": a.index, "fluid": a.fluid, "vaso": a.vaso, "rationale": "highest critique score"}
    return {"critique": crit, "choice": {**choice, "decision": "commit"}}


def main() -> None:
    model = ScriptedChatModel(
        [{"candidates": [{"fluid": 0, "vaso": 0}, {"fluid": 2, "vaso": 1}, {"fluid": 4, "vaso": 2}]}]
    )
    wm = FakeWorldModel()
    # one context for the run: the default tools, the guard with its planner fallback on this world model
    ctx = AgentContext.create(
        model, world_model=wm, options=PSROptions(n_candidates=3), graph="psr-judge-picks"
    )
    b = StateGraph(AgentState, context_schema=AgentContext)
    for name, fn in [("observe", nodes.observe), ("propose", nodes.propose), ("simulate", nodes.simulate),
                     ("pick_best", pick_best), ("guard", nodes.guard), ("prescribe", nodes.prescribe)]:  # fmt: skip
        b.add_node(name, bind(fn, ctx))
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
