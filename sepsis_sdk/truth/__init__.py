"""Ground truth: what a policy is really worth where the true dynamics are known.

The truth layer is the only part of the SDK (with the ICU-Sepsis cohort sampler it drives) that reads hidden
dynamics; learning code only ever sees sampled cohorts.

- :mod:`sepsis_sdk.truth._icu_sepsis`: exact values on the ICU-Sepsis MDP (policy evaluation, value
  iteration, built-in policies).

Example:
    >>> from sepsis_sdk.truth import true_value
    >>> round(true_value("clinician_raw"), 4)
    0.7818
"""

from __future__ import annotations

from sepsis_sdk.truth._icu_sepsis import (
    BUILTIN_POLICIES,
    MonteCarloResult,
    OptimalSolution,
    builtin_policy,
    death_within,
    monte_carlo_value,
    optimal_policy,
    q_values,
    state_values,
    true_value,
)

__all__ = [
    "BUILTIN_POLICIES",
    "MonteCarloResult",
    "OptimalSolution",
    "builtin_policy",
    "death_within",
    "monte_carlo_value",
    "optimal_policy",
    "q_values",
    "state_values",
    "true_value",
]
