"""The guard: the last node before a prescription, and the reason every graph's output is valid.

Order of checks:

1. If the model failed (no valid action after its retries), the **fallback policy** acts (default: the
   world-model planner when a world model is available, else :class:`~sepsis_sdk.safety.HoldSafePolicy`).
   If the fallback fails too, ``HoldSafePolicy`` acts. The trace records which.
2. The action must be one of the 25 (an out-of-range value is treated as a failure, step 1).
3. Where an admissibility lookup was given (``admissible=``), an inadmissible action is replaced. None is
   used by default: the ICU-Sepsis admissible sets are hidden truth
   (:func:`sepsis_sdk.truth.hidden_admissible_mask`, for labelled validation runs).
4. An action breaking a **hard** safety rule is replaced.

A replaced action becomes the nearest action (fewest level changes, then lower total intensity) that is
admissible and breaks no hard rule: the guard corrects the model's intent minimally rather than
substituting its own plan. Every replacement is logged with its reason.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sepsis_sdk.actions import Action, validate_index
from sepsis_sdk.errors import InvalidActionError, UserError
from sepsis_sdk.features import FeatureSchema
from sepsis_sdk.render import infer_schema, short_action
from sepsis_sdk.safety import (
    AdmissibleFn,
    HoldSafePolicy,
    allowed_mask,
    as_safety_checker,
    nearest_allowed,
    violations,
)
from sepsis_sdk.types import PatientHistory

# Moved to sepsis_sdk.safety; still importable from here (and from sepsis_sdk.graphs).
__all__ = ["Guard", "GuardResult", "HoldSafePolicy", "allowed_mask", "nearest_allowed"]


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
        failure_kind: why the fallback acted (``"transport"``, ``"timeout"``, ``"deadline"``,
            ``"invalid_output"``, ``"no_action"``); ``None`` when it did not.
    """

    action: int
    proposed: int | None
    source: str
    overridden: bool = False
    reasons: list[str] = field(default_factory=list)
    fallback: str | None = None
    fallback_detail: dict[str, Any] | None = None
    failure_kind: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The verdict as a JSON-serialisable dict (with the final action's levels)."""
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
            "failure_kind": self.failure_kind,
        }

    def as_dict(self) -> dict[str, Any]:
        """Deprecated spelling of :meth:`to_dict`."""
        warnings.warn("GuardResult.as_dict() is deprecated; use to_dict()", DeprecationWarning, stacklevel=2)
        return self.to_dict()


class Guard:
    """Validates and, where needed, replaces the model's action.

    A guard is configuration: it is never changed by the graphs that use it, so one guard can serve many
    graphs (:meth:`with_default_fallback` returns a configured copy).

    Args:
        safety: safety rules (``None`` = the SDK's defaults, ``False`` = none, a RuleSet or a checker).
        fallback: the policy that acts when the model fails: a :class:`~sepsis_sdk.policies.Policy`, or
            ``None`` for the default (the world-model planner when the graph has a world model, else
            :class:`~sepsis_sdk.safety.HoldSafePolicy`).
        admissible: an admissibility lookup ``history -> (25,) bool | None``; inadmissible actions are
            replaced. None (default): no admissibility. ``sepsis_sdk.truth.hidden_admissible_mask`` gives
            the hidden ICU-Sepsis sets, for labelled validation runs only.
        enforce_safety: replace actions that break a hard rule (False: report only).
        use_admissibility: removed; False warns, True raises (pass ``admissible=`` instead).

    Example:
        >>> from sepsis_sdk.graphs import Guard
        >>> g = Guard()
        >>> g.with_default_fallback(None) is g     # nothing to fill in: the same guard
        True
    """

    def __init__(
        self,
        *,
        safety: Any = None,
        fallback: Any = None,
        admissible: AdmissibleFn | None = None,
        enforce_safety: bool = True,
        use_admissibility: bool | None = None,
    ) -> None:
        _removed_use_admissibility(use_admissibility)
        self.safety = as_safety_checker(safety)
        self.fallback = fallback
        self.admissible = admissible
        self.enforce_safety = enforce_safety
        self._hold = HoldSafePolicy(self.safety, admissible=admissible)

    def __repr__(self) -> str:
        fb = None if self.fallback is None else getattr(self.fallback, "name", type(self.fallback).__name__)
        return (
            f"Guard(safety={getattr(self.safety, 'name', self.safety)!r}, fallback={fb!r}, "
            f"admissible={getattr(self.admissible, '__name__', self.admissible)!r}, "
            f"enforce_safety={self.enforce_safety})"
        )

    def with_default_fallback(self, world_model: Any, continuation: Any = None) -> Guard:
        """This guard with the default fallback (the world-model planner) filled in, as a copy.

        With a ``continuation`` (how care continues: a fitted behaviour model) the planner improves on
        it by closed-loop values; without one it holds each action for its horizon (and says so in its
        decisions). Returns ``self`` when a fallback is already set or there is no world model; never
        changes ``self`` (a guard shared by two graphs keeps each graph's own world model as its fallback).
        """
        if self.fallback is not None or world_model is None:
            return self
        from sepsis_sdk.policies.planner import WorldModelPlannerPolicy

        out = copy.copy(self)
        out.fallback = WorldModelPlannerPolicy(
            world_model=world_model, safety=self.safety, continuation=continuation
        )
        return out

    def _allowed(self, history: PatientHistory, schema: FeatureSchema, notes: list[str]) -> np.ndarray:
        return allowed_mask(
            history,
            schema,
            self.safety if self.enforce_safety else False,
            admissible=self._admissible(history),
            notes=notes,
        )

    def _admissible(self, history: PatientHistory) -> np.ndarray | None:
        return self.admissible(history) if self.admissible is not None else None

    def _run_fallback(
        self, history: PatientHistory, schema: FeatureSchema, reasons: list[str]
    ) -> tuple[int, str, dict[str, Any] | None]:
        fb = self.fallback
        if fb is not None:
            name = getattr(fb, "name", type(fb).__name__)
            try:
                if hasattr(fb, "decide"):  # a planner: its decision says why (scores, exclusions)
                    d = fb.decide(history)
                    return validate_index(getattr(d, "action", d)), name, _detail(d)
                probs = np.asarray(fb.action_probabilities([history]), dtype=float)[0]
                return int(np.argmax(probs)), name, None
            except Exception as exc:  # any fallback failure ends in hold-safe, with the reason logged
                reasons.append(f"fallback {name} failed: {type(exc).__name__}: {exc}")
        return self._hold.choose(history, schema), self._hold.name, None

    def check(
        self,
        history: PatientHistory,
        action: Any,
        schema: FeatureSchema | None = None,
        *,
        failure: str | None = None,
        failure_kind: str | None = None,
    ) -> GuardResult:
        """The final action for ``history`` given the model's ``action`` (or its ``failure``).

        ``schema`` says how the history's values are stored (default: inferred from its feature names).
        ``failure_kind`` says why the model failed (recorded in the result when the fallback acts).
        """
        schema = schema if schema is not None else infer_schema(history)
        proposed = 0
        if failure is None and action is not None:
            try:
                proposed = validate_index(action)
            except InvalidActionError as exc:
                failure, failure_kind = f"invalid action from the model: {exc}", "invalid_output"
        elif failure is None:
            failure, failure_kind = "the model gave no action", "no_action"
        notes: list[str] = []
        ok = self._allowed(history, schema, notes)
        if failure is not None:
            result = self._on_failure(history, schema, ok, failure, notes)
            result.failure_kind = failure_kind or "invalid_output"
            return result
        if ok[proposed]:
            return GuardResult(action=proposed, proposed=proposed, source="model", reasons=notes)
        why = self._why(history, proposed, schema)
        fixed = nearest_allowed(proposed, ok)
        reasons = [f"{short_action(proposed)} replaced by {short_action(fixed)}: " + "; ".join(why), *notes]
        return GuardResult(
            action=fixed, proposed=proposed, source="guard", overridden=fixed != proposed, reasons=reasons
        )

    def _on_failure(
        self, history: PatientHistory, schema: FeatureSchema, ok: np.ndarray, failure: str, notes: list[str]
    ) -> GuardResult:
        reasons = [failure]
        act, name, detail = self._run_fallback(history, schema, reasons)
        fixed = nearest_allowed(act, ok)
        if fixed != act:
            reasons.append(
                f"fallback action {short_action(act)} replaced by {short_action(fixed)} "
                + "; ".join(self._why(history, act, schema))
            )
        return GuardResult(
            action=fixed,
            proposed=None,
            source="fallback",
            overridden=False,
            reasons=reasons + notes,
            fallback=name,
            fallback_detail=detail,
        )

    def _why(self, history: PatientHistory, action: int, schema: FeatureSchema) -> list[str]:
        why = []
        adm = self._admissible(history)
        if adm is not None and not adm[action]:
            why.append("inadmissible in this state (admissibility lookup)")
        if self.enforce_safety:
            why += [
                f"{f.rule_id}: {f.reason}" for f in violations(self.safety, history, action, schema) if f.hard
            ]
        return why


def _removed_use_admissibility(value: bool | None) -> None:
    # The switch read the hidden ICU-Sepsis admissible sets by default; they are now passed explicitly.
    if value is None:
        return
    if value:
        raise UserError(
            "Guard(use_admissibility=True) is gone: it read the hidden ICU-Sepsis admissible sets. Pass "
            "admissible=sepsis_sdk.truth.hidden_admissible_mask explicitly (labelled validation use only)"
        )
    warnings.warn(
        "Guard(use_admissibility=False) is deprecated and has no effect: admissibility is only used when "
        "admissible= is given",
        DeprecationWarning,
        stacklevel=3,
    )


def _detail(decision: Any) -> dict[str, Any] | None:
    """A fallback decision as a dict (``to_dict``, or the older ``as_dict`` spelling), if it has one."""
    for method in ("to_dict", "as_dict"):
        fn = getattr(decision, method, None)
        if fn is not None:
            return fn()
    return None
