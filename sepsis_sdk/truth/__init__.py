"""Ground truth: what a policy is really worth where the true dynamics are known.

The truth layer (with the ICU-Sepsis cohort sampler it drives) is the only part of the SDK that reads
hidden dynamics (transition matrix, admissible sets, ``state_id``); learning code only ever sees sampled
cohorts. ``tests/test_truth_invariant.py`` enforces this.

One interface, :class:`GroundTruth`, with two implementations:

- :class:`ICUSepsisTruth`: exact values of Markov policies (a linear solve over the 713 states) and the
  batched true-MDP simulator (:func:`sepsis_sdk.sources.icu_sepsis.rollout`, the same one that samples
  cohorts) for history-dependent policies; plus row-level truth for world-model evaluation.
- :class:`SyntheticTruth`: the synthetic generator's counterfactual simulator.

:func:`truth_for` returns the one that applies to a cohort (``None`` for real data). The exact ICU-Sepsis
functions (:func:`true_value`, :func:`q_values`, :func:`optimal_policy`, ...) stay available directly.

Example:
    >>> from sepsis_sdk.truth import true_value
    >>> round(true_value("clinician_raw"), 4)
    0.7818
"""

from __future__ import annotations

from sepsis_sdk.truth._admissible import hidden_admissible_mask
from sepsis_sdk.truth._base import GroundTruth, TruthBase, TruthValue, register_truth, truth_for
from sepsis_sdk.truth._icu_sepsis import (
    BUILTIN_POLICIES,
    ICUSepsisTruth,
    OptimalSolution,
    builtin_policy,
    death_within,
    death_within_constant,
    monte_carlo_value,
    optimal_policy,
    q_values,
    state_values,
    true_value,
)
from sepsis_sdk.truth._synthetic import SyntheticTruth
from sepsis_sdk.types import MonteCarloResult

__all__ = [
    "BUILTIN_POLICIES",
    "GroundTruth",
    "ICUSepsisTruth",
    "MonteCarloResult",
    "OptimalSolution",
    "SyntheticTruth",
    "TruthBase",
    "TruthValue",
    "builtin_policy",
    "death_within",
    "death_within_constant",
    "hidden_admissible_mask",
    "monte_carlo_value",
    "optimal_policy",
    "q_values",
    "register_truth",
    "state_values",
    "true_value",
    "truth_for",
]
