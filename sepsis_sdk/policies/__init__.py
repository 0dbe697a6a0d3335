"""Policies: anything that maps patient histories to a distribution over the 25 actions."""

from sepsis_sdk.policies._base import (
    FunctionPolicy,
    Policy,
    StateTablePolicy,
    UniformPolicy,
    check_probabilities,
    one_hot,
)
from sepsis_sdk.policies.graph_policy import AgentDecision, GraphPolicy
from sepsis_sdk.policies.planner import PlannerDecision, WorldModelPlannerPolicy

__all__ = [
    "AgentDecision",
    "FunctionPolicy",
    "GraphPolicy",
    "PlannerDecision",
    "Policy",
    "StateTablePolicy",
    "UniformPolicy",
    "WorldModelPlannerPolicy",
    "check_probabilities",
    "one_hot",
]
