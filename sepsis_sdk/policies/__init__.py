"""Policies: anything that maps patient histories to a distribution over the 25 actions.

One home for every policy and baseline: the protocols (:class:`Policy`, :class:`CohortPolicy`), the simple
policies, the feature-based Markov base (:class:`FeaturePolicy`, :class:`BehaviourPolicy`), the tabular
AI-Clinician policy, the world-model planner, LLM graphs as policies, and the baseline registry
(:func:`register_baseline`, :func:`build_baseline`, :func:`baseline_names`). The d3rlpy wrappers live in
:mod:`sepsis_sdk.training.offline_rl` and are registered here lazily.
"""

from __future__ import annotations

import warnings
from typing import Any

from sepsis_sdk.policies._base import (
    CohortPolicy,
    FunctionPolicy,
    Policy,
    PolicyBase,
    StateTablePolicy,
    UniformPolicy,
    check_probabilities,
    one_hot,
)
from sepsis_sdk.policies._features import BehaviourPolicy, FeaturePolicy, current_features, training_fill
from sepsis_sdk.policies.baselines import (
    BASELINES,
    OFFLINE_RL,
    baseline_descriptions,
    baseline_names,
    build_baseline,
    register_baseline,
)
from sepsis_sdk.policies.graph_policy import AgentDecision, GraphPolicy
from sepsis_sdk.policies.planner import PlannerDecision, WorldModelPlannerPolicy

__all__ = [
    "BASELINES",
    "OFFLINE_RL",
    "AgentDecision",
    "BehaviourPolicy",
    "CohortPolicy",
    "FeaturePolicy",
    "FunctionPolicy",
    "GraphPolicy",
    "PlannerDecision",
    "Policy",
    "PolicyBase",
    "StateTablePolicy",
    "UniformPolicy",
    "WorldModelPlannerPolicy",
    "baseline_descriptions",
    "baseline_names",
    "build_baseline",
    "check_probabilities",
    "current_features",
    "one_hot",
    "register_baseline",
    "training_fill",
]

_DEPRECATED = {"RandomPolicy": "UniformPolicy"}


def __getattr__(name: str) -> Any:
    if name in _DEPRECATED:
        new = _DEPRECATED[name]
        warnings.warn(
            f"sepsis_sdk.policies.{name} is deprecated; use {new}", DeprecationWarning, stacklevel=2
        )
        return globals()[new]
    raise AttributeError(f"module 'sepsis_sdk.policies' has no attribute {name!r}")
