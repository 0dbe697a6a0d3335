"""The safety checker: which rules a proposed action breaks for a patient now, and the hard-rule mask.

Every agent-side consumer (the ``check_guidelines`` tool, the refine critique, the guard, the planner)
asks a :class:`SafetyChecker`. The default wraps the SDK's rule set (``rules.yaml``); users pass their own
object with the same ``check`` method, or ``False`` for no rules.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from sepsis_sdk.actions import N_ACTIONS, N_LEVELS
from sepsis_sdk.errors import UserError
from sepsis_sdk.safety._engine import RuleContext, RuleSet, load_rules
from sepsis_sdk.safety._verdict import RuleVerdict

if TYPE_CHECKING:
    from sepsis_sdk.features import FeatureSchema
    from sepsis_sdk.types import PatientHistory

# Rules the guard enforces by default: SepsisAgent's guidelines (G1, G2) and the AI-Clinician hazard
# scenarios (H1-H3). The Surviving Sepsis Campaign rules (SSC1, SSC2) are reported, not enforced: they
# would force top-bin fluids or a vasopressor from a coarse 4-hour summary, which we leave to the
# clinician and the model.
DEFAULT_HARD_RULES: tuple[str, ...] = ("G1", "G2", "H1", "H2", "H3")


@runtime_checkable
class SafetyChecker(Protocol):
    """Which rules ``action`` (0-24) would break for ``history`` now.

    A checker may also define ``hard_mask(history, schema) -> (25,) bool`` (True where the action breaks
    a hard rule) to answer :func:`hard_rule_mask` in one pass; without it, ``check`` is asked per action.
    """

    name: str

    def check(self, history: PatientHistory, action: int, schema: FeatureSchema) -> list[RuleVerdict]: ...


class RuleSetChecker:
    """A :class:`SafetyChecker` over a :class:`~sepsis_sdk.safety.RuleSet`.

    Args:
        rules: a ``RuleSet``; ``None`` loads the SDK's default rules (``rules.yaml``).
        hard: ids of the rules that make the guard (and the planner) replace an action; the others are
            reported only. Default :data:`DEFAULT_HARD_RULES`.

    Example:
        >>> from sepsis_sdk.safety import RuleSetChecker
        >>> RuleSetChecker(hard=["G1"]).hard
        frozenset({'G1'})
    """

    name = "sepsis_sdk.safety"

    def __init__(self, rules: RuleSet | None = None, *, hard: Sequence[str] | None = None) -> None:
        self.rules = rules if rules is not None else load_rules()
        self.hard = frozenset(DEFAULT_HARD_RULES if hard is None else hard)
        self._cache: dict[tuple[int, int], tuple[Any, Any, RuleContext]] = {}

    def context(self, history: PatientHistory, action: int, schema: FeatureSchema) -> RuleContext:
        """The rule context of proposing ``action`` for ``history`` (values converted per ``schema``)."""
        # The patient part (unit conversions) is the same for all 25 actions: build it once per
        # (history, schema) and swap the action in.
        key = (id(history), id(schema))
        hit = self._cache.get(key)
        if hit is not None and hit[0] is history and hit[1] is schema:
            fluid, vaso = divmod(int(action), N_LEVELS)
            return dataclasses.replace(hit[2], fluid=fluid, vaso=vaso)
        ctx = RuleContext.from_history(history, int(action), schema, rules=self.rules)
        if len(self._cache) > 256:
            self._cache.clear()
        self._cache[key] = (history, schema, ctx)
        return ctx

    def check(self, history: PatientHistory, action: int, schema: FeatureSchema) -> list[RuleVerdict]:
        """Every rule's verdict on ``action`` for ``history`` now (``hard`` set per :attr:`hard`)."""
        return self.rules.check(self.context(history, action, schema), hard=self.hard)

    def hard_mask(self, history: PatientHistory, schema: FeatureSchema) -> np.ndarray:
        """``(25,)`` True where the action breaks a hard rule, all 25 actions in one vectorised pass.

        A rule that cannot be judged for every action is skipped, as ``check`` reports it not applicable.
        """
        mask = np.zeros(N_ACTIONS, dtype=bool)
        for rule_id, violated in self.rules.action_violations(self.context(history, 0, schema)).items():
            if rule_id in self.hard and violated is not None:
                mask |= violated
        return mask


class NoRules:
    """A checker with no rules (what ``safety=False`` means)."""

    name = "none"

    def check(self, history: PatientHistory, action: int, schema: FeatureSchema) -> list[RuleVerdict]:
        """No rules, so no verdicts."""
        return []

    def hard_mask(self, history: PatientHistory, schema: FeatureSchema) -> np.ndarray:
        """Nothing is forbidden."""
        return np.zeros(N_ACTIONS, dtype=bool)


def as_safety_checker(safety: Any = None) -> SafetyChecker:
    """Normalise ``safety``: ``None`` = the SDK's default rules, ``False`` = none, a ``RuleSet``, or a checker.

    Raises:
        UserError: ``safety`` is none of these.
    """
    if safety is False:
        return NoRules()
    if safety is None:
        return _default_checker()
    if isinstance(safety, SafetyChecker):
        return safety
    if isinstance(safety, RuleSet) or hasattr(safety, "action_violations"):
        return RuleSetChecker(safety)
    raise UserError(f"safety must be None, False, a RuleSet or a SafetyChecker, got {type(safety).__name__}")


@functools.lru_cache(maxsize=1)
def _default_checker() -> SafetyChecker:
    return RuleSetChecker()


def violations(
    checker: SafetyChecker, history: PatientHistory, action: int, schema: FeatureSchema
) -> list[RuleVerdict]:
    """Only the verdicts where the rule is broken."""
    return [f for f in checker.check(history, action, schema) if f.violated]


def hard_rule_mask(checker: SafetyChecker, history: PatientHistory, schema: FeatureSchema) -> np.ndarray:
    """``(25,)`` bool: True where the action breaks at least one hard rule of ``checker``.

    Example:
        >>> from sepsis_sdk.safety import NoRules, hard_rule_mask
        >>> from sepsis_sdk.types import Observation, PatientHistory
        >>> h = PatientHistory(observations=(Observation(t=0, values=(1.0,)),), feature_names=("x",))
        >>> int(hard_rule_mask(NoRules(), h, None).sum())
        0
    """
    # hard_mask is an optional fast path of the protocol (one vectorised pass instead of 25 checks).
    fast = getattr(checker, "hard_mask", None)
    if fast is not None:
        return np.asarray(fast(history, schema), dtype=bool)
    return np.array(
        [any(f.hard for f in violations(checker, history, a, schema)) for a in range(N_ACTIONS)], dtype=bool
    )
