"""Log-likelihood decisions: the model's own likelihood picks among fixed answer openings.

**Direct graph** (``decide_loglik``): same prompt as the generating ``decide`` node (system prompt +
:func:`direct_prompt`), but instead of generating a JSON reply the model scores the 25 ways its reply can
begin, ``{"fluid": F, "vaso": V``, and the most likely one is the choice
(:class:`~sepsis_sdk.llm.LogLikChooser`: the prompt runs once, its KV cache is reused by the 25 short
continuations). No sampling, no parsing, no invalid replies; the guard still checks the choice like any
other.

**PSR graph** (``propose_loglik``, ``refine_loglik``): propose scores the 25 openings
``{"candidates": [{"fluid": F, "vaso": V`` under the unchanged propose prompt and takes the K most likely
as the candidates; simulate runs the world model on them as usual; refine scores
``{"decision": "commit", "fluid": F, "vaso": V`` for those K only, under the unchanged refine prompt, and
commits the most likely. The openings are written as ``json.dumps`` writes the stage-II transcripts
(``training.llm_data.psr_examples``), so a model trained on them is scored on the text it learned. One
round: a revision cannot be scored without generating new candidates' text, so the factory fixes
``max_rounds=1`` (the refine prompt then says no rounds are left, as in the transcripts).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sepsis_sdk.actions import Action, all_actions
from sepsis_sdk.graphs import _prompts as P
from sepsis_sdk.graphs import nodes as N
from sepsis_sdk.graphs._context import context_of
from sepsis_sdk.graphs._state import AgentState, action_dict
from sepsis_sdk.graphs.nodes import _failure_update, _system, call_model
from sepsis_sdk.llm import as_chooser

if TYPE_CHECKING:  # pragma: no cover
    from langgraph.runtime import Runtime

    from sepsis_sdk.graphs._context import AgentContext, DirectOptions, PSROptions

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


# ---------------------------------------------------------------------------------------------- PSR
def propose_options() -> list[str]:
    """The 25 openings of a propose reply scored, in action-index order.

    Written exactly as ``json.dumps`` writes the stage-II training transcripts
    (:func:`sepsis_sdk.training.llm_data.psr_examples`): ``{"candidates": [{"fluid": F, "vaso": V``.
    """
    return [f'{{"candidates": [{{"fluid": {a.fluid}, "vaso": {a.vaso}' for a in all_actions()]


def refine_options(actions: list[int]) -> list[str]:
    """The openings of a committing refine reply for ``actions``: ``{"decision": "commit", "fluid": F, "vaso": V``."""
    out = []
    for i in actions:
        a = Action.from_index(int(i))
        out.append(f'{{"decision": "commit", "fluid": {a.fluid}, "vaso": {a.vaso}')
    return out


def _top(logprobs: tuple[float, ...] | list[float], k: int) -> list[int]:
    """Indices of the ``k`` largest values, best first; ties go to the lower index (the chooser's rule)."""
    return sorted(range(len(logprobs)), key=lambda i: (-logprobs[i], i))[:k]


def propose_loglik(state: AgentState, runtime: Runtime[AgentContext[PSROptions]]) -> dict[str, Any]:
    """PSR, ``decide="loglik"``: the K most likely of the 25 propose openings are the candidates.

    The prompt is the generating :func:`~sepsis_sdk.graphs.nodes.propose` node's (system prompt +
    :func:`propose_prompt` for K candidates, no feedback: this mode runs one round); the model scores
    ``{"candidates": [{"fluid": F, "vaso": V`` for the 25 actions in one pass and the top K, in order, are
    simulated next. A scoring failure goes to the fallback like a failed generation.
    """
    ctx = context_of(runtime)
    k = ctx.options.n_candidates
    rnd = int(state.get("round", 0)) + 1
    messages = [
        _system(ctx, P.SYSTEM),
        {"role": "user", "content": P.propose_prompt(state["observation"], k)},
    ]
    chooser = as_chooser(ctx.model)
    options = propose_options()
    out, usage, events = call_model(ctx, "propose", lambda: chooser.choose(messages, options),
                                    deadline_at=state.get("deadline_at"))  # fmt: skip
    if out is None:
        return {"round": rnd, **_failure_update("propose", ctx, events), "usage": usage, "events": events}
    probs = out.probs
    cands = []
    for r, i in enumerate(_top(out.logprobs, k), start=1):
        why = f"{r}{_ordinal(r)} most likely opening under the model (p = {probs[i]:.2f} among the 25)"
        cands.append(action_dict(i, rationale=why, p_model=probs[i]))
    events.append(
        {"node": "propose", "type": "proposal", "round": rnd, "candidates": cands,
         "reasoning": f"the {k} most likely of the 25 actions under the model (log-likelihood)",
         "usage": usage, "logprobs": [round(x, 4) for x in out.logprobs]}
    )  # fmt: skip
    return {"round": rnd, "candidates": cands, "simulation": None, "critique": None, "usage": usage,
            "events": events}  # fmt: skip


def _ordinal(n: int) -> str:
    return {1: "st", 2: "nd", 3: "rd"}.get(n if n < 20 else n % 10, "th")


def refine_loglik(state: AgentState, runtime: Runtime[AgentContext[PSROptions]]) -> dict[str, Any]:
    """PSR, ``decide="loglik"``: commit to the candidate whose commit opening is the most likely.

    Same critique (the judge) and prompt as the generating :func:`~sepsis_sdk.graphs.nodes.refine` node
    with no rounds left; the model scores ``{"decision": "commit", "fluid": F, "vaso": V`` for the
    simulated candidates only, and the most likely is committed (never a revision: one round).
    """
    ctx = context_of(runtime)
    rnd = int(state.get("round", 1))
    # This mode never revises, so the prompt says no rounds are left (as the stage-II transcripts do), even
    # under a context passed at invoke with more rounds; the factory fixes max_rounds=1 to match.
    crit, messages, events = N._refine_turn(state, ctx, rounds_left=0)
    actions = [int(c["action"]) for c in state.get("candidates", [])]
    chooser = as_chooser(ctx.model)
    options = refine_options(actions)
    out, usage, errs = call_model(ctx, "refine", lambda: chooser.choose(messages, options),
                                  deadline_at=state.get("deadline_at"))  # fmt: skip
    events += errs
    if out is None:
        return {"critique": crit, **_failure_update("refine", ctx, errs), "usage": usage, "events": events}
    p = out.probs[out.index]
    choice = action_dict(
        actions[out.index],
        rationale=f"most likely commit among the {len(actions)} simulated candidates under the model "
        f"(p = {p:.2f} among them)",
        decision="commit",
        model_decision="commit",
        round=rnd,
        p_model=p,
    )
    events.append({"node": "refine", "type": "choice", **choice, "usage": usage, "candidates": actions,
                   "logprobs": [round(x, 4) for x in out.logprobs]})  # fmt: skip
    return {"critique": crit, "choice": choice, "usage": usage, "events": events}
