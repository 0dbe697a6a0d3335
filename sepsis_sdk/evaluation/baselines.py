"""Baseline policies and the base class of Markov policies on the current observation.

Baselines (DESIGN.md / issue 5): the clinicians (a behaviour model fitted on the training split),
uniform random, d3rlpy offline RL (:func:`sepsis_sdk.training.offline_rl.train_offline_rl`), the
AI-Clinician-style tabular policy (:class:`sepsis_sdk.policies.tabular.TabularPolicy`), the world-model
planner and the LLM graphs (agent area). Everything is a :class:`~sepsis_sdk.policies.Policy`;
:func:`build_baseline` makes the non-LLM ones by name so the report and the CLI can list them in a config.

Markov policies here also offer ``cohort_probabilities(cohort)``, a vectorised path over a whole cohort
(building one :class:`~sepsis_sdk.PatientHistory` per row is slow), and set ``markov = True`` so their
true value on ICU-Sepsis is computed exactly from a state table instead of by Monte Carlo.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sepsis_sdk.actions import N_ACTIONS
from sepsis_sdk.errors import UserError
from sepsis_sdk.policies._base import check_probabilities
from sepsis_sdk.types import PatientHistory

if TYPE_CHECKING:
    from sepsis_sdk.cohort import Cohort

BASELINES: dict[str, str] = {
    "clinician": "behaviour model of the clinicians fitted on the training split (what they would do)",
    "random": "uniform over the 25 actions",
    "tabular": "AI-Clinician-style: k-means states, counted transitions, policy iteration",
    "bc": "d3rlpy DiscreteBC (behaviour cloning, greedy)",
    "dqn": "d3rlpy DQN",
    "double_dqn": "d3rlpy DoubleDQN",
    "bcq": "d3rlpy DiscreteBCQ",
    "cql": "d3rlpy DiscreteCQL",
    "planner": "world-model planner (agent area), needs a world model",
}
OFFLINE_RL = ("bc", "dqn", "double_dqn", "bcq", "cql")


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


class BehaviourPolicy:
    """The clinicians as a policy: a fitted behaviour model (see :mod:`sepsis_sdk.evaluation.behaviour`)."""

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


class RandomPolicy:
    """Uniform over the 25 actions (Markov)."""

    markov = True
    name = "random"

    def action_probabilities(self, histories: Sequence[PatientHistory]) -> np.ndarray:
        return np.full((len(histories), N_ACTIONS), 1.0 / N_ACTIONS)

    def cohort_probabilities(self, cohort: Cohort) -> np.ndarray:
        return np.full((len(cohort), N_ACTIONS), 1.0 / N_ACTIONS)


def build_baseline(
    name: str, train: Cohort, *, seed: int = 0, n_steps: int | None = None, **options: Any
) -> Any:
    """Train (or build) baseline ``name`` on the training cohort ``train``.

    Args:
        name: one of :data:`BASELINES` except ``planner`` (which needs a world model: build it with the
            agent area's ``WorldModelPlannerPolicy``).
        train: the training split.
        seed: seed of any training.
        n_steps: gradient steps for offline RL (default 10,000).
        **options: passed to the trainer (e.g. ``n_clusters`` for ``tabular``, ``kind`` for ``clinician``).
    """
    if name == "random":
        return RandomPolicy()
    if name == "clinician":
        from sepsis_sdk.evaluation.behaviour import fit_behaviour_policy

        kw = {"kind": options.pop("kind", "logistic"), "softening": options.pop("softening", 0.01)}
        model = fit_behaviour_policy(train, **kw, **options)
        return BehaviourPolicy(model, train.schema.names, name="clinician", static_names=train.schema.static)
    if name == "tabular":
        from sepsis_sdk.policies.tabular import fit_tabular_policy

        return fit_tabular_policy(train, seed=seed, **options)
    if name in OFFLINE_RL:
        from sepsis_sdk.training.offline_rl import train_offline_rl

        return train_offline_rl(train, name, n_steps=n_steps or 10_000, seed=seed, **options)
    if name == "planner":
        raise UserError(
            "the planner needs a world model: build WorldModelPlannerPolicy(world_model, ...) yourself"
        )
    raise UserError(f"unknown baseline {name!r}; choose from {sorted(BASELINES)}")


__all__ = [
    "BASELINES",
    "OFFLINE_RL",
    "BehaviourPolicy",
    "FeaturePolicy",
    "RandomPolicy",
    "build_baseline",
    "current_features",
    "training_fill",
]
