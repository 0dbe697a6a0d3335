"""The run's trace: one JSON-serialisable record of what the agent proposed, simulated, judged and did."""

from __future__ import annotations

import json
import math
from typing import Any

from sepsis_sdk.llm import redact_obj


def _clean(x: Any) -> Any:
    """Make a value strict-JSON safe (NaN/inf -> None, tuples -> lists, objects -> str); secrets are
    redacted from the result by :func:`build_trace` and :func:`dump_trace`."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if x is None or isinstance(x, (str, int, bool)):
        return x
    if hasattr(x, "model_dump"):
        return _clean(x.model_dump(mode="json"))
    if hasattr(x, "item"):
        return _clean(x.item())
    return str(x)


def build_trace(state: dict[str, Any]) -> dict[str, Any]:
    """The trace of a finished (or interrupted) run from its final state.

    Keys: ``graph``, ``patient_id``, ``t``, ``final`` (action, levels, source, rationale, guard reasons),
    ``proposals``, ``simulations``, ``critiques``, ``choices``, ``tool_calls``, ``errors``, ``guard``,
    ``fallback`` (``None`` unless the fallback acted), ``fallback_reason`` (``{"kind", "detail"}`` when
    it acted: ``kind`` one of ``"transport"``, ``"timeout"``, ``"deadline"``, ``"invalid_output"``,
    ``"no_action"``), ``usage`` (tokens, calls, LLM latency),
    ``latency_s`` (wall time of the run), ``events`` (everything, in order).
    """
    events = list(state.get("events", []))
    obs = next((e for e in events if e.get("type") == "observation"), {})
    final = state.get("final") or {}
    presc = next((e for e in reversed(events) if e.get("type") == "prescription"), {})
    guard_ev = next((e for e in reversed(events) if e.get("node") == "guard"), None)

    def of(kind: str) -> list[dict[str, Any]]:
        return [e for e in events if e.get("type") == kind]

    trace = {
        "graph": obs.get("graph"),
        "patient_id": obs.get("patient_id"),
        "t": obs.get("t"),
        "final": final,
        "action": final.get("action"),
        "rationale": final.get("rationale", ""),
        "source": final.get("source"),
        "overridden": bool(final.get("overridden")),
        "guard_reasons": final.get("reasons", []),
        "fallback": final.get("fallback") if final.get("source") == "fallback" else None,
        "fallback_reason": (
            {"kind": final.get("failure_kind"), "detail": (final.get("reasons") or [None])[0]}
            if final.get("source") == "fallback"
            else None
        ),
        "proposals": of("proposal"),
        "simulations": of("simulation"),
        "critiques": of("critique"),
        "choices": of("choice"),
        "tool_calls": of("tool_call") + of("model_turn"),
        "errors": of("error"),
        "guard": guard_ev,
        "usage": dict(state.get("usage") or {}),
        "latency_s": presc.get("elapsed_s"),
        "rounds": state.get("round", 0),
        "events": events,
    }
    return redact_obj(_clean(trace))


def dump_trace(state_or_trace: dict[str, Any], path: str | None = None, *, indent: int = 2) -> str:
    """Strict JSON text of a trace (built from a state when given one); written to ``path`` if given."""
    trace = (
        state_or_trace
        if "events" in state_or_trace and "final" in state_or_trace and "graph" in state_or_trace
        else build_trace(state_or_trace)
    )
    text = json.dumps(redact_obj(_clean(trace)), indent=indent, allow_nan=False)
    if path is not None:
        from pathlib import Path

        Path(path).write_text(text)
    return text
