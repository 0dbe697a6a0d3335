"""The one verdict type: what one rule says about one proposed action for one decision."""

from __future__ import annotations

import warnings
from dataclasses import KW_ONLY, asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class RuleVerdict:
    """One rule's verdict on one proposed action at one decision.

    Returned by :meth:`RuleSet.check` and by every :class:`SafetyChecker` (the ``check_guidelines``
    tool, the guard, the planner). ``RuleResult`` and ``RuleFinding`` are aliases of this class.

    Attributes:
        rule_id: the rule (``G1``).
        applicable: False when the rule cannot be judged here (the cohort lacks a feature, or a value is
            missing at this decision).
        violated: True / False when applicable, None otherwise. A rule whose state condition does not hold
            is applicable and not violated (``triggered`` is False).
        reason: one line saying why, with the values involved.
        triggered: whether the rule's state condition holds (None when not applicable).
        approximate: True when a value came through an approximate unit mapping.
        kind: ``guideline`` or ``hazard``.
        hard: whether the guard (and the planner) enforce the rule; set by the checker. A verdict built by
            hand is enforced unless told otherwise (the behaviour of the former ``RuleFinding``).

    Example:
        >>> v = RuleVerdict("G1", True, True, "violated: lactate 3.1 and no treatment")
        >>> v.to_dict()["violated"], v.hard
        (True, True)
    """

    rule_id: str
    applicable: bool
    violated: bool | None
    reason: str = ""
    _: KW_ONLY
    triggered: bool | None = None
    approximate: bool = False
    kind: str = "guideline"
    hard: bool = True

    def to_dict(self) -> dict[str, Any]:
        """The verdict as a JSON-serialisable dict."""
        return asdict(self)

    def as_dict(self) -> dict[str, Any]:
        """Deprecated spelling of :meth:`to_dict`."""
        warn_as_dict(type(self).__name__)
        return self.to_dict()


def warn_as_dict(cls: str) -> None:
    """Warn that ``<cls>.as_dict`` is the deprecated spelling of ``to_dict``."""
    warnings.warn(f"{cls}.as_dict() is deprecated; use {cls}.to_dict()", DeprecationWarning, stacklevel=3)
