"""Public node functions of the agent graphs.

Every node is ``node(state, runtime) -> partial state update`` in LangGraph's idiom: ``runtime.context``
is the run's :class:`~sepsis_sdk.graphs.AgentContext` (model, tools, world model, judge, guard, options),
referenced, never copied. Rewire your own graph with ``StateGraph(AgentState,
context_schema=AgentContext)`` and either invoke it with ``context=ctx`` or add each node as
``bind(node, ctx)`` (the context becomes its default). Routing functions (``route_*``) return the next
node's name.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sepsis_sdk.actions import Action
from sepsis_sdk.errors import (
    InvalidActionError,
    LLMConfigError,
    LLMError,
    LLMOutputError,
    LLMTimeoutError,
    ModelError,
    PatientSchemaError,
    RealRequestBlockedError,
)
from sepsis_sdk.graphs import _prompts as P
from sepsis_sdk.graphs._context import AgentContext, context_of
from sepsis_sdk.graphs._critique import candidate_evidence, render_critique, simulation_rubric, verdict_score
from sepsis_sdk.graphs._state import (
    AgentState,
    Prescription,
    Proposals,
    RefineDecision,
    action_dict,
    as_history,
)
from sepsis_sdk.llm import call_deadline, call_structured, redact
from sepsis_sdk.render import render_history
from sepsis_sdk.safety import hard_rule_mask, violations
from sepsis_sdk.tools import ToolContext, ToolResult

if TYPE_CHECKING:  # langgraph is an optional extra; LangGraph injects `runtime` by the parameter's name
    from langgraph.runtime import Runtime

    from sepsis_sdk.graphs._context import DirectOptions, PSROptions, ToolCallingOptions


# ---------------------------------------------------------------------------------------------- helpers
def tool_context(state: AgentState, context: Any) -> ToolContext:
    """The :class:`ToolContext` tools see in this run: the patient, and the run context by reference."""
    return context_of(context).tool_context(as_history(state["history"]))


def _failure(step: str, ctx: AgentContext[Any], events: list[dict[str, Any]]) -> str:
    """The trace's failure text after a model call that never gave valid output."""
    last = events[-1]["error"] if events else "no output"
    tries = len([e for e in events if e.get("type") == "error" and e.get("kind") != "deadline"])
    return f"{step} failed after {tries} attempt(s): {last}"


def _failure_update(step: str, ctx: AgentContext[Any], events: list[dict[str, Any]]) -> dict[str, Any]:
    """``failure`` and ``failure_kind`` for the state after a model call that never gave valid output."""
    kind = events[-1].get("kind", "invalid_output") if events else "invalid_output"
    return {"failure": _failure(step, ctx, events), "failure_kind": kind}


def failure_kind_of(exc: BaseException) -> str:
    """The fallback reason kind of a run-time model failure (configuration errors never get one)."""
    if isinstance(exc, LLMTimeoutError):
        return "timeout"
    if isinstance(exc, LLMOutputError):
        return "invalid_output"
    return "transport"


def _usage_update(reply: Any, latency: float) -> dict[str, Any]:
    """This call's own usage, read from the reply (a ChatResponse or a StructuredResponse)."""
    out: dict[str, Any] = {"llm_calls": 1, "llm_latency_s": latency}
    usage = getattr(reply, "usage", None)
    if usage is not None and hasattr(usage, "prompt_tokens"):
        out.update(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost_usd=usage.cost_usd,
        )
    return out


def call_model(
    context: Any, node: str, fn: Callable[[], Any], *, deadline_at: float | None = None
) -> tuple[Any, dict[str, Any], list[dict[str, Any]]]:
    """Call the model (``fn``) with up to ``options.max_retries`` extra attempts on a run-time failure.

    ``fn`` returns a :class:`~sepsis_sdk.llm.ChatResponse` or a :class:`~sepsis_sdk.llm.StructuredResponse`
    (see :func:`~sepsis_sdk.llm.call_structured`); tokens and cost are that reply's own, so concurrent
    decisions on one model each record exactly theirs. Latency is measured here.

    Only run-time failures are caught (transport errors after the chat model's own retries, timeouts,
    replies that do not validate): each becomes an error event with its ``kind``, and after the last
    attempt the caller hands the decision to the fallback. Configuration errors
    (:class:`~sepsis_sdk.errors.LLMConfigError`, a missing dependency, a bad model path) raise.

    Args:
        context: the run context (or a node's ``runtime``).
        node: the node's name in events.
        fn: the call.
        deadline_at: the decision's deadline (``time.time()``, from ``state["deadline_at"]``): no attempt
            starts after it, and each runs within the time left (:func:`~sepsis_sdk.llm.call_deadline`).

    Returns:
        ``(reply, or its value for a structured reply, or None; usage update; error events)``.
    """
    ctx = context_of(context)
    events: list[dict[str, Any]] = []
    usage: dict[str, Any] = {}
    for attempt in range(1 + max(0, ctx.options.max_retries)):
        left = None if deadline_at is None else deadline_at - time.time()
        if left is not None and left <= 0:
            events.append(_deadline_event(node, attempt + 1, ctx))
            break
        t0 = time.perf_counter()
        try:
            with call_deadline(left):
                out = fn()
        except (LLMConfigError, RealRequestBlockedError):
            raise  # configuration (or a test's blocked request) is not a model failure: never a fallback
        except LLMError as exc:
            usage = _add(usage, {"llm_latency_s": time.perf_counter() - t0, "llm_errors": 1})
            kind = failure_kind_of(exc)
            if kind == "timeout" and deadline_at is not None and time.time() >= deadline_at - 0.05:
                kind = "deadline"
            events.append({"node": node, "type": "error", "attempt": attempt + 1, "kind": kind,
                           "error": redact(f"{type(exc).__name__}: {exc}")})  # fmt: skip
            if kind == "deadline":
                break
            continue
        usage = _add(usage, _usage_update(out, time.perf_counter() - t0))
        return getattr(out, "value", out), usage, events
    return None, usage, events


def _deadline_event(node: str, attempt: int, ctx: AgentContext[Any]) -> dict[str, Any]:
    return {"node": node, "type": "error", "attempt": attempt, "kind": "deadline",
            "error": f"the decision's deadline ({ctx.options.deadline_s} s) passed before {node} could "
                     "call the model"}  # fmt: skip


def _add(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + v
    return out


def _system(ctx: AgentContext[Any], default: str) -> dict[str, Any]:
    return {"role": "system", "content": ctx.options.system_prompt or default}


# ---------------------------------------------------------------------------------------------- nodes
def check_patient(ctx: AgentContext[Any], history: Any) -> None:
    """Raise :class:`~sepsis_sdk.errors.PatientSchemaError` if ``history`` does not fit the world model.

    Every graph runs this in ``observe``, before any model call: a patient with other features than the
    world model's schema (names, count, NaN marked observed, past actions outside 0-24) is bad input, not
    something to discover in a simulation error after the LLM has been paid.
    """
    wm = ctx.world_model
    batch = getattr(wm, "batch", None)
    if wm is None or not callable(batch):
        return
    try:
        batch([history])
    except (ModelError, InvalidActionError) as exc:
        schema = getattr(wm, "schema", None)
        n = len(schema) if schema is not None else "?"
        raise PatientSchemaError(
            f"patient {history.patient_id!r} ({len(history.feature_names or history.current.values)} "
            f"features) does not fit the world model's schema {getattr(schema, 'name', '?')!r} ({n} "
            f"features): {exc}"
        ) from exc


def observe(state: AgentState, runtime: Runtime[AgentContext[Any]]) -> dict[str, Any]:
    """Validate the history against the world model's schema and render it as prompt text.

    Raises:
        PatientSchemaError: the patient does not fit the world model (see :func:`check_patient`).
    """
    ctx = context_of(runtime)
    h = as_history(state["history"])
    check_patient(ctx, h)
    text = render_history(h, ctx.schema_for(h), ctx.options.history_steps)
    deadline_s = ctx.options.deadline_s
    return {
        "history": h,
        "observation": text,
        "round": 0,
        "turns": 0,
        "failure": None,
        "failure_kind": None,
        "deadline_at": None if deadline_s is None else time.time() + float(deadline_s),
        "choice": None,
        "candidates": [],
        "simulation": None,
        "critique": None,
        "final": None,
        "events": [{"node": "observe", "type": "observation", "patient_id": h.patient_id, "t": h.t,
                    "graph": ctx.graph, "started_at": time.time(), "text": text}],
    }  # fmt: skip


def propose(state: AgentState, runtime: Runtime[AgentContext[PSROptions]]) -> dict[str, Any]:
    """Ask the model for K distinct candidate actions with rationales (structured output)."""
    ctx = context_of(runtime)
    k = ctx.options.n_candidates
    rnd = int(state.get("round", 0)) + 1
    feedback = ""
    if rnd > 1 and state.get("critique"):
        feedback = state["critique"].get("text", "")
        if state.get("choice") and state["choice"].get("rationale"):
            feedback += f"\nYou asked to revise: {state['choice']['rationale']}"
    messages = [
        _system(ctx, P.SYSTEM),
        {"role": "user", "content": P.propose_prompt(state["observation"], k, feedback)},
    ]
    out, usage, events = call_model(ctx, "propose", lambda: call_structured(ctx.model, messages, Proposals),
                                    deadline_at=state.get("deadline_at"))  # fmt: skip
    if out is None:
        return {"round": rnd, **_failure_update("propose", ctx, events), "usage": usage, "events": events}
    seen: list[int] = []
    cands = []
    for c in out.candidates:
        idx = Action(fluid=c.fluid, vaso=c.vaso).index
        if idx in seen:
            continue
        seen.append(idx)
        cands.append(action_dict(idx, rationale=c.rationale))
        if len(cands) == k:
            break
    events.append(
        {"node": "propose", "type": "proposal", "round": rnd, "candidates": cands, "reasoning": out.reasoning,
         "usage": usage}
    )  # fmt: skip
    return {"round": rnd, "candidates": cands, "simulation": None, "critique": None, "usage": usage,
            "events": events}  # fmt: skip


def simulate(state: AgentState, runtime: Runtime[AgentContext[PSROptions]]) -> dict[str, Any]:
    """Simulate all candidates with the registry's ``simulate`` tool (one batched rollout)."""
    ctx = context_of(runtime)
    args = {
        "actions": [{"fluid": c["fluid"], "vaso": c["vaso"]} for c in state.get("candidates", [])],
        "horizon": ctx.horizon,
    }
    t0 = time.perf_counter()
    res = ctx.tools.invoke("simulate", args, tool_context(state, ctx))
    dt = time.perf_counter() - t0
    rnd = state.get("round", 0)
    if not res.ok:
        ev = {"node": "simulate", "type": "error", "round": rnd, "error": res.error, "latency_s": dt}
        return {"simulation": {"error": res.error, "text": res.content}, "events": [ev]}
    sim = dict(res.data) if isinstance(res.data, dict) else {"data": res.data}
    sim["text"] = res.content
    report = getattr(ctx.options, "simulation_report", "full")
    if report != "full" and callable(getattr(res.value, "to_text", None)):  # the built-in tool's report
        # "values": without paths; "cautious": also ranked by the planner's pessimistic score (a report
        # without cautious values raises UserError here: a configuration error, not a transient one)
        if report == "brief":  # ranked by the cautious value when the continuation offers one
            rank = "cautious" if res.value.has_cautious else "value"
            sim["text"] = res.value.to_text(rank=rank, brief=True)
        else:
            sim["text"] = res.value.to_text(paths=False, rank="cautious" if report == "cautious" else "value")
    ev = {"node": "simulate", "type": "simulation", "round": rnd, "latency_s": dt, "report": res.data}
    return {"simulation": sim, "events": [ev]}


def critique(state: AgentState, context: Any) -> dict[str, Any]:
    """Judge each simulated candidate with the context's judge on :func:`simulation_rubric` (used by refine).

    ``context`` is an :class:`~sepsis_sdk.graphs.AgentContext` (or a node's ``runtime``).
    """
    ctx = context_of(context)
    judge = ctx.judge
    rubric = simulation_rubric()
    h = as_history(state["history"])
    schema = ctx.schema_for(h)
    sim = state.get("simulation") or {}
    cands = sim.get("candidates") or []
    if not cands:
        return {
            "items": [],
            "text": "No simulation is available: " + str(sim.get("error") or "not run") + ".",
            "best": None,
        }
    best = min(c["p_death"] for c in cands)
    values = [c.get("value") for c in cands]
    best_value = max(values) if all(v is not None for v in values) else None  # type: ignore[type-var]
    safety = ctx.guard.safety
    unsafe = hard_rule_mask(safety, h, schema)  # all 25 at once; rule ids only where needed
    items = []
    for c in cands:
        broken = (
            [f.rule_id for f in violations(safety, h, c["action"], schema) if f.hard]
            if unsafe[c["action"]]
            else []
        )
        ev = candidate_evidence(c, best_p_death=best, violated=broken, best_value=best_value)
        try:
            verdict = judge.judge(rubric, ev)
            err = verdict.error
        except Exception as exc:  # a judge failing leaves the candidate unscored, never silently 0
            verdict, err = None, f"{type(exc).__name__}: {exc}"
        items.append({
            "action": c["action"],
            "score": verdict_score(rubric, verdict) if verdict is not None else 0.0,
            "verdicts": [v.model_dump() for v in verdict.verdicts] if verdict is not None else [],
            "error": err,
            "judge": getattr(judge, "name", type(judge).__name__),
            "value": c.get("value"),
        })  # fmt: skip
    return {
        "items": items,
        "text": render_critique(items),
        # ties on the rubric go to the higher closed-loop value when there is one
        "best": max(items, key=lambda x: (x["score"], x["value"] if x["value"] is not None else -1.0))[
            "action"
        ],
    }


def _refine_turn(
    state: AgentState, ctx: AgentContext[Any], rounds_left: int
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """What every refine node does before asking the model: the critique and the refine prompt.

    Returns ``(critique, messages, events)``; the events hold the critique's, with its latency.
    """
    t0 = time.perf_counter()
    crit = critique(state, ctx)
    crit_dt = time.perf_counter() - t0
    sim_text = (state.get("simulation") or {}).get("text", "No simulation available.")
    shown = crit["text"] if getattr(ctx.options, "refine_critique", True) else None  # traced either way
    messages = [
        _system(ctx, P.SYSTEM),
        {"role": "user", "content": P.refine_prompt(state["observation"], sim_text, shown, rounds_left)},
    ]
    rnd = int(state.get("round", 1))
    events = [{"node": "refine", "type": "critique", "round": rnd, "latency_s": crit_dt, **crit}]
    return crit, messages, events


def refine(state: AgentState, runtime: Runtime[AgentContext[PSROptions]]) -> dict[str, Any]:
    """Critique the simulated outcomes with the judge, then let the model commit or ask to revise."""
    ctx = context_of(runtime)
    rnd = int(state.get("round", 1))
    rounds_left = max(0, ctx.options.max_rounds - rnd)
    crit, messages, events = _refine_turn(state, ctx, rounds_left)
    out, usage, errs = call_model(ctx, "refine", lambda: call_structured(ctx.model, messages, RefineDecision),
                                  deadline_at=state.get("deadline_at"))  # fmt: skip
    events += errs
    if out is None:
        return {"critique": crit, **_failure_update("refine", ctx, errs), "usage": usage, "events": events}
    decision = out.decision if rounds_left > 0 else "commit"
    choice = action_dict(
        Action(fluid=out.fluid, vaso=out.vaso).index,
        rationale=out.rationale,
        decision=decision,
        model_decision=out.decision,
        round=rnd,
    )
    events.append({"node": "refine", "type": "choice", **choice, "usage": usage})
    return {"critique": crit, "choice": choice, "usage": usage, "events": events}


def decide(state: AgentState, runtime: Runtime[AgentContext[DirectOptions]]) -> dict[str, Any]:
    """Direct graph: the model prescribes from the patient text alone (no tools)."""
    ctx = context_of(runtime)
    messages = [_system(ctx, P.SYSTEM), {"role": "user", "content": P.direct_prompt(state["observation"])}]
    out, usage, events = call_model(ctx, "decide", lambda: call_structured(ctx.model, messages, Prescription),
                                    deadline_at=state.get("deadline_at"))  # fmt: skip
    if out is None:
        return {**_failure_update("decide", ctx, events), "usage": usage, "events": events}
    choice = action_dict(
        Action(fluid=out.fluid, vaso=out.vaso).index, rationale=out.rationale, decision="commit"
    )
    events.append({"node": "decide", "type": "choice", **choice, "usage": usage})
    return {"choice": choice, "usage": usage, "events": events}


def guard(state: AgentState, runtime: Runtime[AgentContext[Any]]) -> dict[str, Any]:
    """Make the final action valid, admissible and safe; run the fallback if the model failed."""
    ctx = context_of(runtime)
    h = as_history(state["history"])
    choice = state.get("choice") or {}
    failure = state.get("failure")
    t0 = time.perf_counter()
    res = ctx.guard.check(
        h,
        choice.get("action") if not failure else None,
        ctx.schema_for(h),
        failure=failure,
        failure_kind=state.get("failure_kind"),
    )
    ev = {
        "node": "guard",
        "type": "fallback" if res.source == "fallback" else "guard",
        "latency_s": time.perf_counter() - t0,
        **res.to_dict(),
    }
    rationale = (
        choice.get("rationale", "")
        if res.source != "fallback"
        else f"fallback policy {res.fallback} acted: {failure}"
    )
    return {"final": {**res.to_dict(), "rationale": rationale}, "events": [ev]}


def prescribe(state: AgentState, runtime: Runtime[AgentContext[Any]] | None = None) -> dict[str, Any]:
    """Write the prescription (the graph's output) and close the trace."""
    final = dict(state.get("final") or {})
    a = Action.from_index(final["action"])
    final["description"] = a.describe()
    final["sepsisagent"] = a.to_sepsisagent()
    final["rounds"] = state.get("round", 0)
    started = next(
        (e.get("started_at") for e in state.get("events", []) if e.get("type") == "observation"), None
    )
    ev = {"node": "prescribe", "type": "prescription", **final}
    if started is not None:
        ev["elapsed_s"] = time.time() - started
    return {"final": final, "events": [ev]}


# ---------------------------------------------------------------------------------------------- tool-calling
def observe_conversation(
    state: AgentState, runtime: Runtime[AgentContext[ToolCallingOptions]]
) -> dict[str, Any]:
    """Tool-calling graph: render the patient and open the conversation (SepsisAgent protocol)."""
    ctx = context_of(runtime)
    upd = observe(state, runtime=ctx)
    upd["messages"] = [
        _system(ctx, P.SEPSISAGENT_SYSTEM),
        {"role": "user", "content": upd["observation"] + "\n\nRecommend the treatment for the next 4 hours."},
    ]
    return upd


def protocol_tools(context: Any) -> list[dict[str, Any]]:
    """The tools offered to the model: the registry's (``simulation``, ``prescription`` and any extras)."""
    return context_of(context).tools.schemas()


def _prescribed(ctx: AgentContext[Any], state: AgentState, call: Any) -> ToolResult:
    # Through the registry like every tool: its argument model validates the levels.
    return ctx.tools.invoke("prescription", call.raw_arguments or call.arguments, tool_context(state, ctx))


def agent(state: AgentState, runtime: Runtime[AgentContext[ToolCallingOptions]]) -> dict[str, Any]:
    """One model turn with the protocol tools; a valid ``prescription`` call ends the loop."""
    ctx = context_of(runtime)
    max_turns = ctx.options.max_turns
    turn = int(state.get("turns", 0)) + 1
    msgs = list(state.get("messages", []))
    out, usage, events = call_model(
        ctx,
        "agent",
        lambda: ctx.model.complete(msgs, tools=protocol_tools(ctx), tool_choice="auto"),
        deadline_at=state.get("deadline_at"),
    )
    if out is None:
        return {"turns": turn, **_failure_update("model call", ctx, events), "usage": usage, "events": events}
    new: list[dict[str, Any]] = [out.as_message()]
    calls = list(out.tool_calls)
    events.append({"node": "agent", "type": "model_turn", "turn": turn, "text": out.text, "usage": usage,
                   "tool_calls": [{"name": c.name, "arguments": c.arguments or c.raw_arguments} for c in calls]})  # fmt: skip
    upd: dict[str, Any] = {"turns": turn, "usage": usage, "events": events}
    presc = next((c for c in calls if c.name == "prescription"), None)
    if presc is not None:
        res = _prescribed(ctx, state, presc)
        if not res.ok:
            new += [{"role": "tool", "tool_call_id": c.id, "content": res.content if c is presc else "skipped"}
                    for c in calls]  # fmt: skip
            events.append({"node": "agent", "type": "error", "turn": turn, "error": res.content})
            upd["messages"] = new
            if turn >= max_turns:
                upd["failure"] = f"no valid prescription after {turn} turns: {res.content}"
                upd["failure_kind"] = "invalid_output"
            return upd
        new.append({"role": "tool", "tool_call_id": presc.id, "content": res.content})
        upd["messages"] = new
        upd["choice"] = action_dict(res.data["action"], rationale=out.text or "", decision="commit")
        return upd
    upd["messages"] = new
    if not calls:
        new.append({"role": "user", "content": P.NUDGE})
        if turn >= max_turns:
            upd["failure"], upd["failure_kind"] = f"no prescription after {turn} turns", "no_action"
    elif turn >= max_turns:
        upd["failure"] = f"no prescription after {turn} turns (still calling tools)"
        upd["failure_kind"] = "no_action"
    return upd


def run_tools(state: AgentState, runtime: Runtime[AgentContext[ToolCallingOptions]]) -> dict[str, Any]:
    """Execute the last assistant message's tool calls through the registry (``simulation`` included);
    invalid arguments and tool errors go back to the model as tool messages."""
    ctx = context_of(runtime)
    last = next(m for m in reversed(state.get("messages", [])) if m.get("role") == "assistant")
    tctx = tool_context(state, ctx)
    msgs: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for call in last.get("tool_calls") or []:
        name = call["function"]["name"]
        raw = call["function"].get("arguments") or "{}"
        t0 = time.perf_counter()
        res = ctx.tools.invoke(name, raw, tctx)
        msgs.append({"role": "tool", "tool_call_id": call["id"], "content": res.content})
        simulated = name == "simulation" and res.ok
        ev = {"node": "tools", "type": "simulation" if simulated else "tool_call", "tool": name, "arguments": raw,
              "latency_s": time.perf_counter() - t0, "error": res.error}  # fmt: skip
        if simulated:
            ev["report"] = res.data
        events.append(ev)
    return {"messages": msgs, "events": events}


# ---------------------------------------------------------------------------------------------- routing
def route_after_propose(state: AgentState) -> str:
    """``"guard"`` when the model failed (the fallback acts), else ``"simulate"``."""
    return "guard" if state.get("failure") else "simulate"


def route_after_refine(state: AgentState) -> str:
    """``"propose"`` when the model asked to revise (rounds left), else ``"guard"``."""
    if state.get("failure"):
        return "guard"
    choice = state.get("choice") or {}
    return "propose" if choice.get("decision") == "revise" else "guard"


def route_after_agent(state: AgentState) -> str:
    """``"guard"`` after a prescription or a failure; ``"tools"`` for tool calls; else ``"agent"``."""
    if state.get("failure") or state.get("choice"):
        return "guard"
    last = next((m for m in reversed(state.get("messages", [])) if m.get("role") == "assistant"), None)
    if last is not None and last.get("tool_calls") and state["messages"][-1].get("role") == "assistant":
        return "tools"
    return "agent"
