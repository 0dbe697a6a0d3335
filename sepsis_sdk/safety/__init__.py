"""Safety in one home: the rules as data, the engine, the checker, allowed-action masks, the last resort.

- Rules are declared in ``rules.yaml`` (:func:`load_rules` -> :class:`RuleSet`). One vectorised evaluator
  judges a single decision (:meth:`RuleSet.check`), all 25 actions of one state
  (:meth:`RuleSet.action_violations`) and whole cohorts (:meth:`RuleSet.evaluate_cohort`).
- :class:`RuleVerdict` is the one verdict type (``RuleResult`` and ``RuleFinding`` are its old names).
- A :class:`SafetyChecker` answers "which rules would this action break for this patient now";
  :class:`RuleSetChecker` wraps a rule set and marks the rules the guard enforces (``hard``).
- :func:`hard_rule_mask` and :func:`allowed_mask` give the ``(25,)`` masks the guard and the planner use,
  :func:`nearest_allowed` the minimal correction, :class:`HoldSafePolicy` the last-resort policy.

Admissibility (ICU-Sepsis actions seen too rarely in the data) is hidden truth and is not read here: pass
a mask or a lookup explicitly (``admissible=``, e.g. :func:`sepsis_sdk.truth.hidden_admissible_mask`).

Example:
    >>> from sepsis_sdk.safety import RuleContext, load_rules
    >>> rules = load_rules()
    >>> ctx = RuleContext(fluid=0, vaso=0, t=0, values={"map": 60.0, "lactate": 3.0})
    >>> [r.rule_id for r in rules.check(ctx) if r.violated]
    ['G1', 'SSC1']
"""

from sepsis_sdk.safety._allowed import AdmissibleFn, HoldSafePolicy, allowed_mask, nearest_allowed
from sepsis_sdk.safety._checker import (
    DEFAULT_HARD_RULES,
    NoRules,
    RuleSetChecker,
    SafetyChecker,
    as_safety_checker,
    hard_rule_mask,
    violations,
)
from sepsis_sdk.safety._engine import (
    CohortRuleResults,
    RuleContext,
    RuleSet,
    VariableSource,
    load_rules,
    resolve_variables,
)
from sepsis_sdk.safety._expr import ExpressionError
from sepsis_sdk.safety._model import Definition, RuleFile, RuleSpec, VariableSpec, ZReference
from sepsis_sdk.safety._verdict import RuleVerdict

# Old names of the one verdict type, kept as plain aliases (isinstance keeps working).
RuleResult = RuleVerdict
RuleFinding = RuleVerdict

__all__ = [  # noqa: RUF022 - plain sorted() order, which the public-surface test checks
    "AdmissibleFn",
    "CohortRuleResults",
    "DEFAULT_HARD_RULES",
    "Definition",
    "ExpressionError",
    "HoldSafePolicy",
    "NoRules",
    "RuleContext",
    "RuleFile",
    "RuleFinding",
    "RuleResult",
    "RuleSet",
    "RuleSetChecker",
    "RuleSpec",
    "RuleVerdict",
    "SafetyChecker",
    "VariableSource",
    "VariableSpec",
    "ZReference",
    "allowed_mask",
    "as_safety_checker",
    "hard_rule_mask",
    "load_rules",
    "nearest_allowed",
    "resolve_variables",
    "violations",
]
