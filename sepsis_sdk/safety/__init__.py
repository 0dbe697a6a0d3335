"""Guideline and safety rules declared as data (``rules.yaml``) and the engine that applies them.

Example:
    >>> from sepsis_sdk.safety import RuleContext, load_rules
    >>> rules = load_rules()
    >>> ctx = RuleContext(fluid=0, vaso=0, t=0, values={"map": 60.0, "lactate": 3.0})
    >>> [r.rule_id for r in rules.check(ctx) if r.violated]
    ['G1', 'SSC1']
"""

from sepsis_sdk.safety._engine import (
    CohortRuleResults,
    RuleContext,
    RuleResult,
    RuleSet,
    VariableSource,
    load_rules,
    resolve_variables,
)
from sepsis_sdk.safety._expr import ExpressionError
from sepsis_sdk.safety._model import Definition, RuleFile, RuleSpec, VariableSpec, ZReference

__all__ = [
    "CohortRuleResults",
    "Definition",
    "ExpressionError",
    "RuleContext",
    "RuleFile",
    "RuleResult",
    "RuleSet",
    "RuleSpec",
    "VariableSource",
    "VariableSpec",
    "ZReference",
    "load_rules",
    "resolve_variables",
]
