"""The direct graph's log-likelihood decision: the model's own likelihood picks one of the 25 actions.

Same prompt as the generating ``decide`` node (system prompt + :func:`direct_prompt`), but instead of
generating a JSON reply the model scores the 25 ways its reply can begin, ``{"fluid": F, "vaso": V``, and
the most likely one is the choice (:class:`~sepsis_sdk.llm.LogLikChooser`: the prompt runs once, its KV
cache is reused by the 25 short continuations). No sampling, no parsing, no invalid replies; the guard
still checks the choice like any other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sepsis_sdk.actions import all_actions
from sepsis_sdk.graphs import _prompts as P
from sepsis_sdk.graphs._context import context_of
from sepsis_sdk.graphs._state import AgentState, action_dict
from sepsis_sdk.graphs.nodes import _failure_update, _system, call_model
from sepsis_sdk.llm import as_chooser

if TYPE_CHECKING:  # pragma: no cover
    from langgraph.runtime import Runtime

    from sepsis_sdk.graphs._context import AgentContext, DirectOptions

DECIDE_MODES = ("generate", "loglik")


def action_options() -> list[str]:
    """The 25 answer openings scored, in action-index order (the key order of :func:`direct_prompt`)."""
    return [f'{{"fluid": {a.fluid}, "vaso": {a.vaso}' for a in all_actions()]


def check_chooser(ctx: AgentContext[Any]) -> None:
    """Fail at graph build when the model cannot score answers (a hosted model, a missing local path)."""
    chooser = as_chooser(ctx.model)
    check = getattr(chooser, "check_config", None)
    if callable(check):
        check()


def decide_loglik(state: AgentState, runtime: Runtime[AgentContext[DirectOptions]]) -> dict[str, Any]:
    """Direct graph, ``decide="loglik"``: the most likely of the 25 actions under the model, one pass."""
    ctx = context_of(runtime)
    messages = [_system(ctx, P.SYSTEM), {"role": "user", "content": P.direct_prompt(state["observation"])}]
    chooser = as_chooser(ctx.model)
    options = action_options()
    out, usage, events = call_model(ctx, "decide", lambda: chooser.choose(messages, options),
                                    deadline_at=state.get("deadline_at"))  # fmt: skip
    if out is None:
        return {**_failure_update("decide", ctx, events), "usage": usage, "events": events}
    p = out.probs[out.index]
    choice = action_dict(
        out.index,
        rationale=f"most likely of the 25 actions under the model (p = {p:.2f} among them)",
        decision="commit",
        p_model=p,
    )
    events.append({"node": "decide", "type": "choice", **choice, "usage": usage,
                   "logprobs": [round(x, 4) for x in out.logprobs]})  # fmt: skip
    return {"choice": choice, "usage": usage, "events": events}
