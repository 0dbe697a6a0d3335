"""Public node functions of the agent graphs.

Every node is ``node(state, *, deps) -> partial state update``; bind its dependencies with
``functools.partial(node, deps=deps)`` (see :class:`AgentDeps`) to rewire your own graph. Routing
functions (``route_*``) return the next node's name.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from sepsis_sdk.actions import Action
from sepsis_sdk.errors import InvalidActionError, LLMError
from sepsis_sdk.graphs import _prompts as P
from sepsis_sdk.graphs._critique import candidate_evidence, render_critique, simulation_rubric, verdict_score
from sepsis_sdk.graphs._guard import Guard
from sepsis_sdk.graphs._state import (
    AgentDeps,
    AgentState,
    Prescription,
    Proposals,
    RefineDecision,
    action_dict,
    as_history,
)
from sepsis_sdk.render import render_history
from sepsis_sdk.safety import hard_rule_mask, violations
from sepsis_sdk.tools._base import ToolContext, ToolRegistry, as_registry
from sepsis_sdk.types import PatientHistory


# ---------------------------------------------------------------------------------------------- helpers
def _schema(deps: AgentDeps, history: PatientHistory) -> Any:
    from sepsis_sdk.render import schema_for

    return schema_for(history, deps.schema, deps.world_model)


def _registry(deps: AgentDeps) -> ToolRegistry:
    if not isinstance(deps.tools, ToolRegistry):
        deps.tools = as_registry(deps.tools)
    return deps.tools


def _guard(deps: AgentDeps) -> Guard:
    if deps.guard is None:
        deps.guard = Guard()
    if isinstance(deps.guard, Guard):
        # with_default_fallback returns a configured copy: the guard the user passed is never changed
        deps.guard = deps.guard.with_default_fallback(deps.world_model)
    return deps.guard


def tool_context(state: AgentState, deps: AgentDeps) -> ToolContext:
    """The :class:`ToolContext` tools see in this run."""
    h = as_history(state["history"])
    guard = deps.guard if isinstance(deps.guard, Guard) else None
    return ToolContext(
        history=h,
        world_model=deps.world_model,
        schema=_schema(deps, h),
        safety=guard.safety if guard is not None else None,
        horizon=deps.horizon,
        n_samples=deps.n_samples,
        seed=deps.seed,
    )


def _usage_of(model: Any) -> dict[str, float]:
    u = getattr(model, "usage", None)
    if u is None:
        return {}
    if hasattr(u, "as_dict"):
        u = u.as_dict()
    if not isinstance(u, dict):
        return {}
    return {k: float(v) for k, v in u.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _failure(step: str, deps: AgentDeps, events: list[dict[str, Any]]) -> str:
    """The trace's failure text after a model call that never gave valid output."""
    last = events[-1]["error"] if events else "no output"
    return f"{step} failed after {1 + deps.max_retries} attempt(s): {last}"


def call_model(
    deps: AgentDeps, node: str, fn: Callable[[], Any]
) -> tuple[Any, dict[str, Any], list[dict[str, Any]]]:
    """Call the model (``fn``) with up to ``deps.max_retries`` extra attempts on :class:`LLMError`.

    Returns ``(result or None, usage update, error events)``. Token counts come from the model's
    cumulative ``usage`` when it keeps one (``LiteLLMChat`` does); latency is measured here.
    """
    events: list[dict[str, Any]] = []
    usage: dict[str, Any] = {}
    for attempt in range(1 + max(0, deps.max_retries)):
        before = _usage_of(deps.model)
        t0 = time.perf_counter()
        try:
            out = fn()
        except LLMError as exc:
            dt = time.perf_counter() - t0
            usage = _add(usage, {"llm_latency_s": dt, "llm_errors": 1})
            events.append(
                {
                    "node": node,
                    "type": "error",
                    "attempt": attempt + 1,
                    "error": f"{type(exc).__name__}: {exc}",
                }
            )
            continue
        dt = time.perf_counter() - t0
        after = _usage_of(deps.model)
        delta = {
            k: after[k] - before.get(k, 0.0)
            for k in ("prompt_tokens", "completion_tokens", "cost_usd")
            if k in after
        }
        usage = _add(usage, {"llm_calls": 1, "llm_latency_s": dt, **delta})
        return out, usage, events
    return None, usage, events


def _add(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + v
    return out


def _level(v: Any) -> int:
    """A dose level from a model's argument: an int, or a float/str holding an integer."""
    if isinstance(v, bool):
        raise InvalidActionError(f"level must be an integer 0-4, got {v!r}")
    f = float(v)
    if f != int(f):
        raise InvalidActionError(f"level must be an integer 0-4, got {v!r}")
    return int(f)


def _system(deps: AgentDeps, default: str) -> dict[str, Any]:
    return {"role": "system", "content": deps.system_prompt or default}


# ---------------------------------------------------------------------------------------------- nodes
def observe(state: AgentState, *, deps: AgentDeps) -> dict[str, Any]:
    """Validate the history and render it as prompt text."""
    h = as_history(state["history"])
    text = render_history(h, _schema(deps, h), deps.history_steps)
    return {
        "history": h,
        "observation": text,
        "round": 0,
        "turns": 0,
        "failure": None,
        "choice": None,
        "candidates": [],
        "simulation": None,
        "critique": None,
        "final": None,
        "events": [{"node": "observe", "type": "observation", "patient_id": h.patient_id, "t": h.t,
                    "graph": deps.graph, "started_at": time.time(), "text": text}],
    }  # fmt: skip


def propose(state: AgentState, *, deps: AgentDeps) -> dict[str, Any]:
    """Ask the model for K distinct candidate actions with rationales (structured output)."""
    rnd = int(state.get("round", 0)) + 1
    feedback = ""
    if rnd > 1 and state.get("critique"):
        feedback = state["critique"].get("text", "")
        if state.get("choice") and state["choice"].get("rationale"):
            feedback += f"\nYou asked to revise: {state['choice']['rationale']}"
    messages = [
        _system(deps, P.SYSTEM),
        {"role": "user", "content": P.propose_prompt(state["observation"], deps.n_candidates, feedback)},
    ]
    out, usage, events = call_model(deps, "propose", lambda: deps.model.structured(messages, Proposals))
    if out is None:
        return {
            "round": rnd,
            "failure": _failure("propose", deps, events),
            "usage": usage,
            "events": events,
        }
    seen: list[int] = []
    cands = []
    for c in out.candidates:
        idx = Action(fluid=c.fluid, vaso=c.vaso).index
        if idx in seen:
            continue
        seen.append(idx)
        cands.append(action_dict(idx, rationale=c.rationale))
        if len(cands) == deps.n_candidates:
            break
    events.append(
        {"node": "propose", "type": "proposal", "round": rnd, "candidates": cands, "reasoning": out.reasoning}
    )
    return {
        "round": rnd,
        "candidates": cands,
        "simulation": None,
        "critique": None,
        "usage": usage,
        "events": events,
    }


def simulate(state: AgentState, *, deps: AgentDeps) -> dict[str, Any]:
    """Simulate all candidates with the ``simulate`` tool (one batched rollout)."""
    reg = _registry(deps)
    args = {
        "actions": [{"fluid": c["fluid"], "vaso": c["vaso"]} for c in state.get("candidates", [])],
        "horizon": deps.horizon,
    }
    t0 = time.perf_counter()
    res = reg.invoke("simulate", args, tool_context(state, deps))
    dt = time.perf_counter() - t0
    if not res.ok:
        sim = {"error": res.error, "text": res.content}
        ev = {
            "node": "simulate",
            "type": "error",
            "round": state.get("round", 0),
            "error": res.error,
            "latency_s": dt,
        }
        return {"simulation": sim, "events": [ev]}
    sim = dict(res.data) if isinstance(res.data, dict) else {"data": res.data}
    sim["text"] = res.content
    ev = {
        "node": "simulate",
        "type": "simulation",
        "round": state.get("round", 0),
        "latency_s": dt,
        "report": res.data,
    }
    return {"simulation": sim, "events": [ev]}


def critique(state: AgentState, deps: AgentDeps) -> dict[str, Any]:
    """Judge each simulated candidate with ``deps.judge`` on :func:`simulation_rubric` (used by refine)."""
    from sepsis_sdk.graphs._critique import SimulationCritic

    judge = deps.judge or SimulationCritic()
    rubric = simulation_rubric()
    h = as_history(state["history"])
    schema = _schema(deps, h)
    guard = _guard(deps)
    sim = state.get("simulation") or {}
    cands = sim.get("candidates") or []
    if not cands:
        return {
            "items": [],
            "text": "No simulation is available: " + str(sim.get("error") or "not run") + ".",
            "best": None,
        }
    best = min(c["p_death"] for c in cands)
    unsafe = hard_rule_mask(guard.safety, h, schema)  # all 25 at once; rule ids only where needed
    items = []
    for c in cands:
        broken = (
            [f.rule_id for f in violations(guard.safety, h, c["action"], schema) if f.hard]
            if unsafe[c["action"]]
            else []
        )
        ev = candidate_evidence(c, best_p_death=best, violated=broken)
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
        })  # fmt: skip
    return {
        "items": items,
        "text": render_critique(items),
        "best": max(items, key=lambda x: x["score"])["action"],
    }


def refine(state: AgentState, *, deps: AgentDeps) -> dict[str, Any]:
    """Critique the simulated outcomes with the judge, then let the model commit or ask to revise."""
    t0 = time.perf_counter()
    crit = critique(state, deps)
    crit_dt = time.perf_counter() - t0
    rnd = int(state.get("round", 1))
    rounds_left = max(0, deps.max_rounds - rnd)
    sim_text = (state.get("simulation") or {}).get("text", "No simulation available.")
    messages = [
        _system(deps, P.SYSTEM),
        {
            "role": "user",
            "content": P.refine_prompt(state["observation"], sim_text, crit["text"], rounds_left),
        },
    ]
    events: list[dict[str, Any]] = [
        {"node": "refine", "type": "critique", "round": rnd, "latency_s": crit_dt, **crit}
    ]
    out, usage, errs = call_model(deps, "refine", lambda: deps.model.structured(messages, RefineDecision))
    events += errs
    if out is None:
        return {
            "critique": crit,
            "failure": _failure("refine", deps, errs),
            "usage": usage,
            "events": events,
        }
    decision = out.decision if rounds_left > 0 else "commit"
    choice = action_dict(
        Action(fluid=out.fluid, vaso=out.vaso).index,
        rationale=out.rationale,
        decision=decision,
        model_decision=out.decision,
        round=rnd,
    )
    events.append({"node": "refine", "type": "choice", **choice})
    return {"critique": crit, "choice": choice, "usage": usage, "events": events}


def decide(state: AgentState, *, deps: AgentDeps) -> dict[str, Any]:
    """Direct graph: the model prescribes from the patient text alone (no tools)."""
    messages = [_system(deps, P.SYSTEM), {"role": "user", "content": P.direct_prompt(state["observation"])}]
    out, usage, events = call_model(deps, "decide", lambda: deps.model.structured(messages, Prescription))
    if out is None:
        return {
            "failure": _failure("decide", deps, events),
            "usage": usage,
            "events": events,
        }
    choice = action_dict(
        Action(fluid=out.fluid, vaso=out.vaso).index, rationale=out.rationale, decision="commit"
    )
    events.append({"node": "decide", "type": "choice", **choice})
    return {"choice": choice, "usage": usage, "events": events}


def guard(state: AgentState, *, deps: AgentDeps) -> dict[str, Any]:
    """Make the final action valid, admissible and safe; run the fallback if the model failed."""
    h = as_history(state["history"])
    g = _guard(deps)
    choice = state.get("choice") or {}
    failure = state.get("failure")
    t0 = time.perf_counter()
    res = g.check(h, choice.get("action") if not failure else None, _schema(deps, h), failure=failure)
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


def prescribe(state: AgentState, *, deps: AgentDeps) -> dict[str, Any]:
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
def observe_conversation(state: AgentState, *, deps: AgentDeps) -> dict[str, Any]:
    """Tool-calling graph: render the patient and open the conversation (SepsisAgent protocol)."""
    upd = observe(state, deps=deps)
    upd["messages"] = [
        _system(deps, P.SEPSISAGENT_SYSTEM),
        {"role": "user", "content": upd["observation"] + "\n\nRecommend the treatment for the next 4 hours."},
    ]
    return upd


def protocol_tools(deps: AgentDeps) -> list[dict[str, Any]]:
    """``simulation`` and ``prescription`` (SepsisAgent protocol) plus any extra registry tools."""
    base = [P.SIMULATION_TOOL, P.PRESCRIPTION_TOOL]
    if not deps.extra.get("extra_tools"):
        return base
    reserved = ("simulation", "prescription", "simulate")
    return base + [s for s in _registry(deps).schemas() if s["function"]["name"] not in reserved]


def agent(state: AgentState, *, deps: AgentDeps) -> dict[str, Any]:
    """One model turn with the protocol tools; a valid ``prescription`` call ends the loop."""
    turn = int(state.get("turns", 0)) + 1
    msgs = list(state.get("messages", []))
    out, usage, events = call_model(
        deps, "agent", lambda: deps.model.complete(msgs, tools=protocol_tools(deps), tool_choice="auto")
    )
    if out is None:
        return {
            "turns": turn,
            "failure": _failure("model call", deps, events),
            "usage": usage,
            "events": events,
        }
    new: list[dict[str, Any]] = [out.as_message()]
    calls = list(out.tool_calls)
    events.append(
        {
            "node": "agent",
            "type": "model_turn",
            "turn": turn,
            "text": out.text,
            "tool_calls": [{"name": c.name, "arguments": c.arguments or c.raw_arguments} for c in calls],
        }
    )
    upd: dict[str, Any] = {"turns": turn, "usage": usage, "events": events}
    presc = next((c for c in calls if c.name == "prescription"), None)
    if presc is not None:
        try:
            args = presc.arguments if presc.arguments else json.loads(presc.raw_arguments or "{}")
            act = Action.from_sepsisagent([_level(args["vasopressor"]), _level(args["iv_fluid"])])
        except (KeyError, TypeError, ValueError, InvalidActionError, json.JSONDecodeError) as exc:
            msg = (
                f"Invalid prescription ({type(exc).__name__}: {exc}). Call `prescription` again with integer "
                "`vasopressor` and `iv_fluid` between 0 and 4."
            )
            new += [
                {"role": "tool", "tool_call_id": c.id, "content": msg if c is presc else "skipped"}
                for c in calls
            ]
            events.append({"node": "agent", "type": "error", "turn": turn, "error": msg})
            upd["messages"] = new
            if turn >= deps.max_turns:
                upd["failure"] = f"no valid prescription after {turn} turns: {msg}"
            return upd
        new.append({"role": "tool", "tool_call_id": presc.id, "content": "Prescription recorded."})
        upd["messages"] = new
        upd["choice"] = action_dict(act.index, rationale=out.text or "", decision="commit")
        return upd
    if not calls:
        new.append({"role": "user", "content": P.NUDGE})
        upd["messages"] = new
        if turn >= deps.max_turns:
            upd["failure"] = f"no prescription after {turn} turns"
        return upd
    upd["messages"] = new
    if turn >= deps.max_turns:
        upd["failure"] = f"no prescription after {turn} turns (still calling tools)"
    return upd


def run_tools(state: AgentState, *, deps: AgentDeps) -> dict[str, Any]:
    """Execute the last assistant message's tool calls; errors go back to the model as tool messages."""
    from sepsis_sdk.tools._simulate import simulate_actions

    last = next(m for m in reversed(state.get("messages", [])) if m.get("role") == "assistant")
    ctx = tool_context(state, deps)
    msgs: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for call in last.get("tool_calls") or []:
        name = call["function"]["name"]
        raw = call["function"].get("arguments") or "{}"
        t0 = time.perf_counter()
        if name == "simulation":
            try:
                args = json.loads(raw) if isinstance(raw, str) else raw
                acts = args["actions"]
                if isinstance(acts, str):
                    acts = (
                        json.loads(acts)
                        if acts.strip().startswith("[[") or acts.strip().startswith('["')
                        else [acts]
                    )
                if not isinstance(acts, list) or not acts:
                    raise ValueError('`actions` must be a non-empty list of "[vasopressor, fluid]" strings')
                if len(acts) > 3:
                    raise ValueError(f"at most 3 actions per simulation, got {len(acts)}")
                parsed = [Action.from_sepsisagent(a if isinstance(a, (str, list)) else str(a)) for a in acts]
                report = simulate_actions(
                    deps.world_model,
                    ctx.require_history("simulation"),
                    parsed,
                    horizon=deps.horizon,
                    n_samples=deps.n_samples,
                    seed=deps.seed,
                    schema=ctx.resolved_schema(),
                )
                content = report.to_text()
                data: Any = report.as_dict()
                err = None
            except Exception as exc:
                content = (
                    f"Tool 'simulation' failed: {type(exc).__name__}: {exc}. Actions are strings "
                    '"[vasopressor, fluid]" with levels 0-4, at most 3 per call.'
                )
                data, err = None, f"{type(exc).__name__}: {exc}"
        else:
            res = _registry(deps).invoke(name, raw, ctx)
            content, data, err = res.content, res.data, res.error
        msgs.append({"role": "tool", "tool_call_id": call["id"], "content": content})
        ev = {
            "node": "tools",
            "type": "simulation" if name == "simulation" and err is None else "tool_call",
            "tool": name,
            "arguments": raw,
            "latency_s": time.perf_counter() - t0,
            "error": err,
        }
        if name == "simulation" and err is None:
            ev["report"] = data
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
