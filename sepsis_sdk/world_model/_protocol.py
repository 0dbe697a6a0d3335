"""The WorldModel protocol and its batch types, shared by every backend, tool, planner and evaluator.

Shapes use: ``B`` patients, ``W`` history window, ``D`` features, ``K`` candidate plans, ``N`` samples,
``H`` horizon. Values are in the cohort's **stored** space (the schema's space); backends convert to and
from their own normalised space internally, and :meth:`WorldModel.to_clinical` renders clinical units.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from sepsis_sdk.features import FeatureSchema


@dataclass(frozen=True)
class HistoryBatch:
    """The last ``W`` observations of ``B`` patients, left-padded.

    Attributes:
        x: ``(B, W, D)`` stored values (NaN where missing or padded).
        mask: ``(B, W, D)`` True where observed.
        actions: ``(B, W)`` action taken after each observation; the last column (the current decision)
            and padded steps are ``-1``.
        valid: ``(B, W)`` True for real (not padded) steps.
        static: ``(B, S)`` static features.
    """

    x: np.ndarray
    mask: np.ndarray
    actions: np.ndarray
    valid: np.ndarray
    static: np.ndarray

    @property
    def size(self) -> int:
        return self.x.shape[0]

    @classmethod
    def from_observations(cls, x: np.ndarray) -> HistoryBatch:
        """One-step histories of ``(B, D)`` current observations (NaN = missing), no static features.

        What Markov models need for "the patient is in this state now" (finite-support models' support
        states, the oracle's queries).
        """
        x = np.asarray(x, dtype=np.float64)
        b = len(x)
        return cls(
            x=x[:, None, :].copy(),
            mask=np.isfinite(x)[:, None, :],
            actions=np.full((b, 1), -1, dtype=np.int64),
            valid=np.ones((b, 1), dtype=bool),
            static=np.zeros((b, 0)),
        )


@dataclass(frozen=True)
class NextStatePrediction:
    """One-step predictive distribution for ``B`` (patient, action) pairs, in stored space.

    ``mean``/``std`` are the mixture moments over the ensemble; ``epistemic_std`` is the spread of the
    members' means (disagreement); ``lower``/``upper`` a central 90 % predictive interval, inside bounds.
    """

    mean: np.ndarray  # (B, D)
    std: np.ndarray  # (B, D)
    epistemic_std: np.ndarray  # (B, D)
    lower: np.ndarray  # (B, D)
    upper: np.ndarray  # (B, D)
    p_death: np.ndarray  # (B,)
    p_discharge: np.ndarray  # (B,) survival / discharge alive
    support: np.ndarray  # (B,) in [0, 1]: how well the training data covers this (state, action)


@dataclass(frozen=True)
class Rollout:
    """Simulated futures of ``B`` patients under ``K`` plans, ``N`` samples each, ``H`` steps.

    Attributes:
        states: ``(B, K, N, H, D)`` sampled states after each step (stored space, inside bounds); after a
            sample terminates its states are NaN.
        alive: ``(B, K, N, H)`` True while the sample has not terminated (after step h).
        p_death: ``(B, K)`` probability of death within H steps (mean over samples of the per-step hazards).
        p_discharge: ``(B, K)`` probability of survival/discharge within H steps.
        mean: ``(B, K, H, D)`` mean over samples of states (among alive samples).
        std: ``(B, K, H, D)`` total spread over samples.
        epistemic_std: ``(B, K, H, D)`` ensemble disagreement along the mean path.
        support: ``(B, K)`` support of the first action of each plan.
        plans: ``(B, K, H)`` the simulated action indices.
        terminal: ``(B, K, N)`` int8, how each sample ended within H steps: 0 still in the ICU, 1 died,
            2 discharged alive / survived (None for backends that do not report it).
    """

    states: np.ndarray
    alive: np.ndarray
    p_death: np.ndarray
    p_discharge: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    epistemic_std: np.ndarray
    support: np.ndarray
    plans: np.ndarray
    terminal: np.ndarray | None = None

    @classmethod
    def from_paths(
        cls, states: np.ndarray, alive: np.ndarray, epistemic: np.ndarray, p_death: np.ndarray,
        p_discharge: np.ndarray, terminal: np.ndarray, shape: tuple[int, int, int], support: np.ndarray,
        plans: np.ndarray,
    ) -> Rollout:  # fmt: skip
        """A rollout from per-row paths, rows ordered (patient, plan, sample) — every backend's summary.

        Args:
            states: ``(B*K*N, H, D)`` sampled states (NaN after a sample ended).
            alive: ``(B*K*N, H)``; epistemic: ``(B*K*N, H, D)`` disagreement along each path.
            p_death / p_discharge: ``(B*K*N,)`` integrated hazards; terminal: ``(B*K*N,)`` how each ended.
            shape: ``(B, K, N)``; support: ``(B, K)``; plans: ``(B, K, H)``.
        """
        import warnings

        b, k, n = shape
        h_len, d = states.shape[1], states.shape[2]
        states = states.reshape(b, k, n, h_len, d)
        alive5 = alive.reshape(b, k, n, h_len)
        epi5 = np.where(alive5[..., None], epistemic.reshape(b, k, n, h_len, d), np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN steps: every sample ended
            mean = np.nanmean(states, axis=2)
            std = np.nanstd(states, axis=2)
            epi = np.nanmean(epi5, axis=2)
        return cls(
            states=states,
            alive=alive5,
            p_death=p_death.reshape(b, k, n).mean(2),
            p_discharge=p_discharge.reshape(b, k, n).mean(2),
            mean=mean,
            std=std,
            epistemic_std=epi,
            support=support,
            plans=np.ascontiguousarray(plans),
            terminal=terminal.reshape(b, k, n),
        )


@runtime_checkable
class WorldModel(Protocol):
    """A learned simulator of patient dynamics under treatment."""

    schema: FeatureSchema
    window: int

    def batch(self, histories: Sequence[object]) -> HistoryBatch:
        """Convert :class:`~sepsis_sdk.PatientHistory` objects into a validated :class:`HistoryBatch`."""
        ...

    def predict(self, histories: HistoryBatch, actions: np.ndarray) -> NextStatePrediction:
        """Next-state distribution of each patient ``b`` under ``actions[b]`` (0-24)."""
        ...

    def rollout(
        self, histories: HistoryBatch, plans: np.ndarray, *, n_samples: int = 8, seed: int = 0
    ) -> Rollout:
        """Simulate ``plans`` (``(B, K, H)`` action indices, or ``(K, H)`` shared) for every patient."""
        ...

    def support(self, histories: HistoryBatch, actions: np.ndarray) -> np.ndarray:
        """``(B,)`` coverage of (state, action) by the training data, in [0, 1]."""
        ...
