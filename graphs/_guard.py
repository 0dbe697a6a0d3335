"""The guard: the last node before a prescription, and the reason every graph's output is valid.

Order of checks:

1. If the model failed (no valid action after its retries), the **fallback policy** acts (default: the
   world-model planner when a world model is available, else :class:`HoldSafePolicy`). If the fallback
   fails too, :class:`HoldSafePolicy` acts. The trace records which.
2. The action must be one of the 25 (an out-of-range value is treated as a failure, step 1).
3. Where admissibility is known (ICU-Sepsis histories carry ``state_id``), an inadmissible action is
   replaced.
4. An action breaking a **hard** safety rule is replaced.

A replaced action becomes the nearest action (fewest level changes, then lower total intensity) that is
admissible and breaks no hard rule: the guard corrects the model's intent minimally rather than
substituting its own plan. Every replacement is logged with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sepsis_sdk.actions import N_ACTIONS, Action, validate_index
from sepsis_sdk.errors import InvalidActionError
from sepsis_sdk.features import FeatureSchema
from sepsis_sdk.tools._render import short_action
from sepsis_sdk.tools._safety import admissible_mask, as_safety_checker, safety_matrix, violations
from sepsis_sdk.types import PatientHistory

_LEVELS = np.array([[a // 5, a % 5] for a in range(N_ACTIONS)])


@dataclass
class GuardResult:
    """The guard's verdict.

    Attributes:
        action: the final canonical index (always 0-24).
        proposed: what reached the guard (``None`` after a model failure).
        source: ``"model"``, ``"guard"`` (model action replaced) or ``"fallback"``.
        overridden: the proposed action was replaced.
        reasons: why (rule ids and values, inadmissibility, failures).
        fallback: name of the policy that acted on a failure, if any.
        fallback_detail: what the fallback reported (e.g. the planner's scores).
    """

    action: int
    proposed: int | None
    source: str
    overridden: bool = False
    reasons: list[str] = field(default_factory=list)
    fallback: str | None = None
    fallback_detail: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        a = Action.from_index(self.action)
        return {
            "action": self.action,
            "fluid": a.fluid,
            "vaso": a.vaso,
            "proposed": self.proposed,
            "source": self.source,
            "overridden": self.overridden,
            "reasons": self.reasons,
            "fallback": self.fallback,
            "fallback_detail": self.fallback_detail,
        }


class HoldSafePolicy:
    """Last-resort policy: keep the previous action (no treatment at t=0) if it is safe and admissible,
    else the nearest action that is. Needs no model; used when no world model is available."""

    name = "hold-safe"

    def __init__(self, safety: Any = None) -> None:
        self.safety = as_safety_checker(safety)

    def choose(self, history: PatientHistory, schema: FeatureSchema) -> int:
        start = history.previous_action if history.previous_action is not None else 0
        ok = allowed_mask(history, schema, self.safety)
        return nearest_allowed(start, ok)

    def action_probabilities(self, histories: list[PatientHistory]) -> np.ndarray:
        from sepsis_sdk.tools._render import infer_schema

        out = np.zeros((len(histories), N_ACTIONS))
        for i, h in enumerate(histories):
            out[i, self.choose(h, infer_schema(h))] = 1.0
        return out


def allowed_mask(
    history: PatientHistory,
    schema: FeatureSchema,
    checker: Any,
    *,
    use_admissibility: bool = True,
    notes: list[str] | None = None,
) -> np.ndarray:
    """``(25,)`` True where the action is admissible (or unknown) and breaks no hard rule.

    When no action is both, admissibility is relaxed first (the hard rules are clinical; admissibility
    only says the data were thin), then safety; what was relaxed is appended to ``notes``.
    """
    safe = ~safety_matrix(checker, history, schema)
    adm = admissible_mask(history) if use_admissibility else None
    if adm is None:
        adm = np.ones(N_ACTIONS, dtype=bool)
    ok = safe & adm
    if ok.any():
        return ok
    if safe.any():
        if notes is not None:
            notes.append("no admissible action meets the hard rules in this state: admissibility relaxed")
        return safe
    if notes is not None:
        notes.append("every action breaks a hard rule here: safety relaxed")
    return adm


def nearest_allowed(action: int, ok: np.ndarray) -> int:
    """The allowed action nearest ``action`` (L1 over levels; ties: lower total intensity, lower index)."""
    if ok[action]:
        return action
    if not ok.any():
        return action
    dist = np.abs(_LEVELS - _LEVELS[action]).sum(1)
    key = [(dist[a], _LEVELS[a].sum(), a) for a in range(N_ACTIONS) if ok[a]]
    return int(min(key)[2])


class Guard:
    """Validates and, where needed, replaces the model's action.

    Args:
        safety: safety rules (``None`` = the SDK's defaults, ``False`` = none, a RuleSet or a checker).
        fallback: the policy that acts when the model fails: a :class:`~sepsis_sdk.policies.Policy`, or
            ``None`` for the default (the world-model planner when the graph has a world model, else
            :class:`HoldSafePolicy`).
        use_admissibility: replace ICU-Sepsis inadmissible actions (when ``history.state_id`` is known).
        enforce_safety: replace actions that break a hard rule (False: report only).
    """

    def __init__(
        self,
        *,
        safety: Any = None,
        fallback: Any = None,
        use_admissibility: bool = True,
        enforce_safety: bool = True,
    ) -> None:
        self.safety = as_safety_checker(safety)
        self.fallback = fallback
        self.use_admissibility = use_admissibility
        self.enforce_safety = enforce_safety
        self._hold = HoldSafePolicy(self.safety)

    def with_default_fallback(self, world_model: Any) -> Guard:
        """Fill in the default fallback (the world-model planner) when none was given."""
        if self.fallback is None and world_model is not None:
            from sepsis_sdk.policies.planner import WorldModelPlannerPolicy

            self.fallback = WorldModelPlannerPolicy(
                world_model, safety=self.safety, use_admissibility=self.use_admissibility
            )
        return self

    def _run_fallback(
        self, history: PatientHistory, schema: FeatureSchema, reasons: list[str]
    ) -> tuple[int, str, dict[str, Any] | None]:
        fb = self.fallback
        if fb is not None:
            try:
                if hasattr(fb, "decide"):
                    d = fb.decide(history)
                    detail = d.as_dict() if hasattr(d, "as_dict") else None
                    return (
                        validate_index(getattr(d, "action", d)),
                        getattr(fb, "name", type(fb).__name__),
                        detail,
                    )
                probs = np.asarray(fb.action_probabilities([history]), dtype=float)[0]
                return int(np.argmax(probs)), getattr(fb, "name", type(fb).__name__), None
            except Exception as exc:
                reasons.append(
                    f"fallback {getattr(fb, 'name', type(fb).__name__)} failed: {type(exc).__name__}: {exc}"
                )
        return self._hold.choose(history, schema), self._hold.name, None

    def check(
        self,
        history: PatientHistory,
        action: Any,
        schema: FeatureSchema | None = None,
        *,
        failure: str | None = None,
    ) -> GuardResult:
        """The final action for ``history`` given the model's ``action`` (or its ``failure``).

        ``schema`` says how the history's values are stored (default: inferred from its feature names).
        """
        if schema is None:
            from sepsis_sdk.tools._render import infer_schema

            schema = infer_schema(history)
        reasons: list[str] = []
        proposed = 0
        if failure is None and action is not None:
            try:
                proposed = validate_index(action)
            except InvalidActionError as exc:
                failure = f"invalid action from the model: {exc}"
        elif failure is None:
            failure = "the model gave no action"
        notes: list[str] = []
        ok = allowed_mask(
            history,
            schema,
            self.safety if self.enforce_safety else as_safety_checker(False),
            use_admissibility=self.use_admissibility,
            notes=notes,
        )
        if failure is not None:
            reasons.append(failure)
            act, name, detail = self._run_fallback(history, schema, reasons)
            if not ok[act]:
                fixed = nearest_allowed(act, ok)
                if fixed != act:
                    reasons.append(
                        f"fallback action {short_action(act)} replaced by {short_action(fixed)} "
                        + "; ".join(self._why(history, act, schema))
                    )
                    act = fixed
            return GuardResult(
                action=act,
                proposed=None,
                source="fallback",
                overridden=False,
                reasons=reasons + notes,
                fallback=name,
                fallback_detail=detail,
            )
        if ok[proposed]:
            return GuardResult(action=proposed, proposed=proposed, source="model", reasons=notes)
        why = self._why(history, proposed, schema)
        fixed = nearest_allowed(proposed, ok)
        reasons.append(f"{short_action(proposed)} replaced by {short_action(fixed)}: " + "; ".join(why))
        reasons += notes
        return GuardResult(
            action=fixed, proposed=proposed, source="guard", overridden=fixed != proposed, reasons=reasons
        )

    def _why(self, history: PatientHistory, action: int, schema: FeatureSchema) -> list[str]:
        why = []
        adm = admissible_mask(history) if self.use_admissibility else None
        if adm is not None and not adm[action]:
            why.append("inadmissible in this ICU-Sepsis state")
        if self.enforce_safety:
            why += [
                f"{f.rule_id}: {f.reason}" for f in violations(self.safety, history, action, schema) if f.hard
            ]
        return why
