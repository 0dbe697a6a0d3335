"""Deprecated: baselines moved to :mod:`sepsis_sdk.policies` (one home for every policy).

``FeaturePolicy``, ``BehaviourPolicy``, ``current_features``, ``training_fill``, ``build_baseline``,
``BASELINES`` and ``OFFLINE_RL`` import from :mod:`sepsis_sdk.policies`; ``RandomPolicy`` is
:class:`~sepsis_sdk.policies.UniformPolicy`. This module re-exports them, with a DeprecationWarning, for one
release.
"""

from __future__ import annotations

import warnings
from typing import Any

_MOVED = {
    "BASELINES": "BASELINES",
    "OFFLINE_RL": "OFFLINE_RL",
    "BehaviourPolicy": "BehaviourPolicy",
    "FeaturePolicy": "FeaturePolicy",
    "RandomPolicy": "UniformPolicy",
    "build_baseline": "build_baseline",
    "current_features": "current_features",
    "training_fill": "training_fill",
}
__all__ = sorted(_MOVED)


def __getattr__(name: str) -> Any:
    if name not in _MOVED:
        raise AttributeError(f"module 'sepsis_sdk.evaluation.baselines' has no attribute {name!r}")
    new = _MOVED[name]
    warnings.warn(
        f"sepsis_sdk.evaluation.baselines.{name} is deprecated; use sepsis_sdk.policies.{new}",
        DeprecationWarning,
        stacklevel=2,
    )
    import sepsis_sdk.policies as policies

    return getattr(policies, new)
