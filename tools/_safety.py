"""Moved to :mod:`sepsis_sdk.safety` (the one home of safety); this shim keeps old imports working for one release.

The ICU-Sepsis admissibility lookup that lived here reads hidden truth: it is now
:func:`sepsis_sdk.truth.hidden_admissible_mask` (``sepsis_sdk.tools.admissible_mask`` warns and forwards).
"""

from sepsis_sdk.safety import (  # noqa: F401
    DEFAULT_HARD_RULES,
    NoRules,
    RuleFinding,
    RuleSetChecker,
    SafetyChecker,
    as_safety_checker,
    hard_rule_mask,
    violations,
)
from sepsis_sdk.safety import hard_rule_mask as safety_matrix  # noqa: F401 - the former name
