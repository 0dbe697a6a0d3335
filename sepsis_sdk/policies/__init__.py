"""Policies: anything that maps patient histories to a distribution over the 25 actions."""

from sepsis_sdk.policies._base import (
    FunctionPolicy,
    Policy,
    StateTablePolicy,
    UniformPolicy,
    check_probabilities,
    one_hot,
)

__all__ = ["FunctionPolicy", "Policy", "StateTablePolicy", "UniformPolicy", "check_probabilities", "one_hot"]
