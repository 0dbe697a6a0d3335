"""Markov policies on the current observation's stored features (the base of the fitted baselines).

:class:`FeaturePolicy` is what the tabular policy and the d3rlpy wrappers subclass; :class:`BehaviourPolicy`
wraps a fitted behaviour model. Both are :class:`~sepsis_sdk.policies.CohortPolicy` (vectorised over a
cohort) and ``markov``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sepsis_sdk.actions import N_ACTIONS
from sepsis_sdk.errors import UserError
from sepsis_sdk.policies._base import PolicyBase, check_probabilities
from sepsis_sdk.types import PatientHistory

if TYPE_CHECKING:
    from sepsis_sdk.cohort import Cohort


def current_features(histories: Sequence[PatientHistory]) -> np.ndarray:
    """``(n, D)`` current observation of each history (NaN where missing)."""
    if not histories:
        return np.zeros((0, 0))
    rows = []
    for h in histories:
        v = np.asarray(h.current.values, dtype=np.float64)
        if h.current.mask is not None:
            v = np.where(np.asarray(h.current.mask), v, np.nan)
        rows.append(v)
    return np.stack(rows)


@dataclass
class FeaturePolicy:
    """Base of Markov policies that act on the current observation's stored features.

    Subclasses implement :meth:`probabilities_from_features`. Missing values are filled with the training
    means kept in ``fill``.

    Attributes:
        name: shown in reports.
        feature_names: the schema features, in order, the policy was trained on.
        fill: per-feature value used where a feature is missing.
    """

    name: str
    feature_names: tuple[str, ...]
    fill: np.ndarray = field(repr=False)
    markov: bool = field(default=True, init=False)

    def probabilities_from_features(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.feature_names):
            raise UserError(f"{self.name}: expected (n, {len(self.feature_names)}) features, got {x.shape}")
        return np.where(np.isfinite(x), x, self.fill[None, :])

    def action_probabilities(self, histories: Sequence[PatientHistory]) -> np.ndarray:
        if not histories:
            return np.zeros((0, N_ACTIONS))
        names = tuple(histories[0].feature_names)
        x = current_features(histories)
        if names and names != self.feature_names:
            idx = [names.index(n) for n in self.feature_names]
            x = x[:, idx]
        return check_probabilities(
            self.probabilities_from_features(self._prepare(x)), len(histories), self.name
        )

    def cohort_probabilities(self, cohort: Cohort) -> np.ndarray:
        """``(n_rows, 25)`` probabilities at every row of ``cohort`` (vectorised)."""
        missing = [n for n in self.feature_names if n not in cohort.schema.names]
        if missing:
            raise UserError(f"{self.name}: cohort {cohort.source!r} lacks features {missing}")
        x = cohort.data[list(self.feature_names)].to_numpy(dtype=np.float64)
        x = np.where(cohort.masks()[:, [cohort.schema.index(n) for n in self.feature_names]], x, np.nan)
        return check_probabilities(self.probabilities_from_features(self._prepare(x)), len(cohort), self.name)


def training_fill(cohort: Cohort) -> np.ndarray:
    """Per-feature means of the observed values (0 where never observed)."""
    x = np.where(cohort.masks(), cohort.features(), np.nan)
    with np.errstate(all="ignore"):
        m = np.nanmean(x, axis=0) if len(x) else np.zeros(x.shape[1])
    return np.where(np.isfinite(m), m, 0.0)


class BehaviourPolicy(PolicyBase):
    """The clinicians as a policy: a fitted behaviour model (see :mod:`sepsis_sdk.evaluation.behaviour`).

    Args:
        model: a fitted behaviour model (``action_probabilities_from_features`` and ``probabilities``).
        feature_names: the schema features the model was fitted on.
        name: shown in reports.
        static_names: static features the model reads.
    """

    markov = True

    def __init__(
        self,
        model: Any,
        feature_names: Sequence[str],
        name: str = "clinician",
        static_names: Sequence[str] = (),
    ) -> None:
        self.model = model
        self.feature_names = tuple(feature_names)
        self.static_names = tuple(static_names)
        self.name = name

    def action_probabilities(self, histories: Sequence[PatientHistory]) -> np.ndarray:
        x = current_features(histories)
        names = tuple(histories[0].feature_names) if histories else ()
        if names and names != self.feature_names:
            x = x[:, [names.index(n) for n in self.feature_names]]
        static = None
        if self.static_names:
            static = np.array([[h.static.get(k, np.nan) for k in self.static_names] for h in histories])
        probs = self.model.action_probabilities_from_features(x, static)
        return check_probabilities(probs, len(histories), self.name)

    def cohort_probabilities(self, cohort: Cohort) -> np.ndarray:
        return check_probabilities(self.model.probabilities(cohort), len(cohort), self.name)


__all__ = ["BehaviourPolicy", "FeaturePolicy", "current_features", "training_fill"]
