"""Add your own tool: a decorated function becomes an OpenAI-format tool the agent can call.

The schema comes from the type hints and the Google docstring; a ``ToolContext`` parameter is injected
(the patient, the world model) and hidden from the model; an exception comes back to the model as a
message it can read.

    python examples/custom_tool.py
"""

from __future__ import annotations

import json
from typing import Annotated

from pydantic import Field

from sepsis_sdk.graphs import build_tool_calling_graph
from sepsis_sdk.sources.icu_sepsis import sample_cohort
from sepsis_sdk.testing import ScriptedChatModel, tool_call
from sepsis_sdk.tools import ToolContext, ToolRegistry, tool
from sepsis_sdk.world_model.fake import FakeWorldModel


@tool
def sofa_trend(n_steps: Annotated[int, Field(ge=1, le=12)] = 3, ctx: ToolContext = None) -> str:  # type: ignore[assignment]
    """SOFA score over the last steps (points).

    Args:
        n_steps: how many recent 4-hour steps to show.
    """
    h = ctx.require_history("sofa_trend")
    j = h.feature_names.index("sofa")
    return ", ".join(f"t{o.t}: {o.values[j]:.0f}" for o in h.observations[-n_steps:])


def main() -> None:
    print(json.dumps(sofa_trend.parameters, indent=1))
    tools = ToolRegistry([sofa_trend])
    history = next(iter(sample_cohort(3, seed=0).episodes())).history(2)
    print(tools.invoke("sofa_trend", {"n_steps": 2}, ToolContext(history=history)).content)
    print(tools.invoke("sofa_trend", {"n_steps": 99}, ToolContext(history=history)).content)  # error message

    # offered next to the SepsisAgent protocol's two tools (extra_tools=True: not the official protocol)
    model = ScriptedChatModel(
        [
            tool_call("sofa_trend", {"n_steps": 3}),
            tool_call("prescription", {"vasopressor": 0, "iv_fluid": 2}),
        ]
    )
    graph = build_tool_calling_graph(model, tools, world_model=FakeWorldModel(), extra_tools=True)
    state = graph.invoke({"history": history})
    print([t["function"]["name"] for t in model.calls[0].tools], "->", state["final"]["action"])
    print("tool reply the model saw:", next(m["content"] for m in state["messages"] if m["role"] == "tool"))


if __name__ == "__main__":
    main()
