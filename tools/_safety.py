"""One adapter between the agent layer and the safety rules (:mod:`sepsis_sdk.safety`).

Every agent-side consumer (the ``check_guidelines`` tool, the refine judge, the guard, the world-model
planner) asks a :class:`SafetyChecker` which rules an action would break for a patient now. The default
checker wraps the SDK's rule set (G1/G2 guidelines and the hazard rules); tests and users can pass their
own object with the same ``check`` method, or ``False`` for no rules.

Admissibility is separate: on ICU-Sepsis, an action seen 20 times or fewer in a state is not admissible.
That table is public information about the MDP (not its dynamics), so the guard and the planner use it
through :func:`admissible_mask`, and only when the history carries an ICU-Sepsis ``state_id``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from sepsis_sdk.actions import N_ACTIONS
from sepsis_sdk.features import FeatureSchema
from sepsis_sdk.types import PatientHistory


@dataclass(frozen=True)
class RuleFinding:
    """One rule's verdict on one action.

    Attributes:
        rule_id: e.g. ``"G1"``.
        applicable: the rule's condition holds for this patient now.
        violated: the action breaks the rule.
        reason: why, in words (with the values involved).
        hard: a hard rule makes the guard override the action; a soft one is only reported.
    """

    rule_id: str
    applicable: bool
    violated: bool
    reason: str = ""
    hard: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "applicable": self.applicable,
            "violated": self.violated,
            "reason": self.reason,
            "hard": self.hard,
        }


@runtime_checkable
class SafetyChecker(Protocol):
    """Which rules ``action`` (0-24) would break for ``history`` now."""

    name: str

    def check(self, history: PatientHistory, action: int, schema: FeatureSchema) -> list[RuleFinding]: ...


# Rules the guard enforces by default: SepsisAgent's guidelines (G1, G2) and the AI-Clinician hazard
# scenarios (H1-H3). The Surviving Sepsis Campaign rules (SSC1, SSC2) are reported, not enforced: they
# would force top-bin fluids or a vasopressor from a coarse 4-hour summary, which we leave to the
# clinician and the model.
DEFAULT_HARD_RULES: tuple[str, ...] = ("G1", "G2", "H1", "H2", "H3")


class RuleSetChecker:
    """Wraps a :mod:`sepsis_sdk.safety` rule set (``RuleSet.check(RuleContext)``).

    Args:
        rules: a ``RuleSet``; ``None`` loads the SDK's default rules (``rules.yaml``).
        hard: ids of the rules that make the guard (and the planner) replace an action; the others are
            reported only. Default :data:`DEFAULT_HARD_RULES`.
    """

    name = "sepsis_sdk.safety"

    def __init__(self, rules: Any = None, *, hard: Sequence[str] | None = None) -> None:
        from sepsis_sdk import safety

        self._safety = safety
        self.rules = rules if rules is not None else safety.load_rules()
        self.hard = frozenset(DEFAULT_HARD_RULES if hard is None else hard)
        self._cache: dict[tuple[int, int], tuple[Any, Any, Any]] = {}

    def _context(self, history: PatientHistory, action: int, schema: FeatureSchema) -> Any:
        # The patient part of the context (unit conversions) is the same for all 25 actions: build it
        # once per (history, schema) and swap the action in.
        key = (id(history), id(schema))
        hit = self._cache.get(key)
        if hit is not None and hit[0] is history and hit[1] is schema:
            import dataclasses

            a = divmod(int(action), 5)
            return dataclasses.replace(hit[2], fluid=a[0], vaso=a[1])
        ctx = self._safety.RuleContext.from_history(history, int(action), schema, rules=self.rules)
        if len(self._cache) > 256:
            self._cache.clear()
        self._cache[key] = (history, schema, ctx)
        return ctx

    def check(self, history: PatientHistory, action: int, schema: FeatureSchema) -> list[RuleFinding]:
        out = []
        for r in self.rules.check(self._context(history, action, schema)):
            out.append(
                RuleFinding(
                    rule_id=str(r.rule_id),
                    applicable=bool(r.applicable),
                    violated=bool(r.violated),
                    reason=str(getattr(r, "reason", "") or ""),
                    hard=str(r.rule_id) in self.hard,
                )
            )
        return out

    def hard_mask(self, history: PatientHistory, schema: FeatureSchema) -> np.ndarray:
        """``(25,)`` True where the action breaks a hard rule, all 25 actions in one vectorised pass.

        Uses ``RuleSet.action_violations`` (one evaluation per rule instead of one ``check`` per action,
        ~25x faster). A rule that cannot be judged for every action is skipped, as ``check`` reports it
        not applicable.
        """
        mask = np.zeros(N_ACTIONS, dtype=bool)
        for rule_id, violated in self.rules.action_violations(self._context(history, 0, schema)).items():
            if rule_id in self.hard and violated is not None:
                mask |= violated
        return mask


class NoRules:
    """A checker with no rules (``safety=False``)."""

    name = "none"

    def check(self, history: PatientHistory, action: int, schema: FeatureSchema) -> list[RuleFinding]:
        return []

    def hard_mask(self, history: PatientHistory, schema: FeatureSchema) -> np.ndarray:
        return np.zeros(N_ACTIONS, dtype=bool)


def as_safety_checker(safety: Any = None) -> SafetyChecker:
    """Normalise ``safety``: ``None`` = the SDK's default rules, ``False`` = none, a ``RuleSet``, or a checker."""
    if safety is False:
        return NoRules()
    if safety is None:
        return _default_checker()
    if isinstance(safety, SafetyChecker):
        return safety
    if hasattr(safety, "check"):
        return RuleSetChecker(safety)
    from sepsis_sdk.errors import UserError

    raise UserError(f"safety must be None, False, a RuleSet or a SafetyChecker, got {type(safety).__name__}")


@functools.lru_cache(maxsize=1)
def _default_checker() -> SafetyChecker:
    try:
        return RuleSetChecker()
    except ImportError:  # the safety module is an SDK part; without it there are no rules to apply
        return NoRules()


def violations(
    checker: SafetyChecker, history: PatientHistory, action: int, schema: FeatureSchema
) -> list[RuleFinding]:
    """Only the findings where the rule is broken."""
    return [f for f in checker.check(history, action, schema) if f.violated]


def safety_matrix(checker: SafetyChecker, history: PatientHistory, schema: FeatureSchema) -> np.ndarray:
    """``(25,)`` bool: True where the action breaks at least one hard rule."""
    if hasattr(checker, "hard_mask"):
        return np.asarray(checker.hard_mask(history, schema), dtype=bool)
    return np.array(
        [any(f.hard for f in violations(checker, history, a, schema)) for a in range(N_ACTIONS)], dtype=bool
    )


def admissible_mask(history: PatientHistory) -> np.ndarray | None:
    """``(25,)`` bool admissibility on ICU-Sepsis (from ``history.state_id``), else ``None`` (unknown)."""
    sid = history.state_id
    if sid is None:
        return None
    from sepsis_sdk.sources.icu_sepsis import N_CLINICAL, load_mdp

    if not 0 <= sid < N_CLINICAL:
        return None
    return np.asarray(load_mdp().admissible[sid], dtype=bool)
