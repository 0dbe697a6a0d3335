"""Run-time records of patients: an observation, a step, an episode, and the history a policy sees."""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from sepsis_sdk.actions import Action, validate_index


class Observation(BaseModel):
    """What is known about a patient at one 4-hour decision point.

    Attributes:
        t: decision index (0 = first 4-h bloc of the episode).
        values: one stored value per schema feature (NaN where missing).
        mask: ``True`` where the value was observed (not imputed or missing).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    t: int = Field(ge=0)
    values: tuple[float, ...]
    mask: tuple[bool, ...] | None = None

    @model_validator(mode="after")
    def _check(self) -> Observation:
        mask = self.mask
        if mask is not None and len(mask) != len(self.values):
            raise ValueError(f"mask has {len(mask)} entries but values has {len(self.values)}")
        for i, v in enumerate(self.values):
            observed = mask[i] if mask is not None else True
            if observed and not math.isfinite(v):
                raise ValueError(f"value {i} is {v} but marked observed")
        return self

    @property
    def observed(self) -> tuple[bool, ...]:
        return self.mask if self.mask is not None else tuple(True for _ in self.values)


class Step(BaseModel):
    """An observation, the action taken, and what followed."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    observation: Observation
    action: int = Field(ge=0, le=24)
    reward: float = 0.0
    done: bool = False
    state_id: int | None = Field(default=None, description="ICU-Sepsis hidden state (scoring only)")

    @property
    def action_obj(self) -> Action:
        return Action.from_index(self.action)


class Episode(BaseModel):
    """One patient's stay: a sequence of :class:`Step` plus static features and the outcome."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    patient_id: str
    steps: tuple[Step, ...]
    static: dict[str, float] = Field(default_factory=dict)
    outcome: int | None = Field(default=None, description="1 survived, 0 died, None unknown")
    feature_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def actions(self) -> list[int]:
        return [s.action for s in self.steps]

    @property
    def rewards(self) -> list[float]:
        return [s.reward for s in self.steps]

    def history(self, t: int) -> PatientHistory:
        """The history a policy sees at decision ``t``: observations 0..t and actions 0..t-1."""
        if not 0 <= t < len(self.steps):
            raise IndexError(f"episode {self.patient_id} has {len(self.steps)} steps; no step {t}")
        return PatientHistory(
            patient_id=self.patient_id,
            observations=tuple(s.observation for s in self.steps[: t + 1]),
            actions=tuple(s.action for s in self.steps[:t]),
            static=self.static,
            feature_names=self.feature_names,
            state_id=self.steps[t].state_id,
        )


class PatientHistory(BaseModel):
    """Everything a policy may look at when deciding: past observations, past actions, static features.

    ``len(actions) == len(observations) - 1``: the last observation is the current one, not yet treated.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    patient_id: str = "patient"
    observations: tuple[Observation, ...] = Field(min_length=1)
    actions: tuple[int, ...] = ()
    static: dict[str, float] = Field(default_factory=dict)
    feature_names: tuple[str, ...] = ()
    state_id: int | None = None

    @model_validator(mode="after")
    def _check(self) -> PatientHistory:
        if len(self.actions) != len(self.observations) - 1:
            raise ValueError(
                f"a history needs one action fewer than observations, got {len(self.actions)} actions "
                f"for {len(self.observations)} observations"
            )
        for a in self.actions:
            validate_index(a)
        n = len(self.observations[0].values)
        if any(len(o.values) != n for o in self.observations):
            raise ValueError("all observations of a history must have the same number of features")
        if self.feature_names and len(self.feature_names) != n:
            raise ValueError(f"{len(self.feature_names)} feature names for {n} values")
        return self

    @property
    def current(self) -> Observation:
        return self.observations[-1]

    @property
    def t(self) -> int:
        return self.current.t

    @property
    def previous_action(self) -> int | None:
        return self.actions[-1] if self.actions else None

    def value(self, name: str) -> float:
        """Current stored value of feature ``name`` (NaN when missing)."""
        return self.current.values[self.feature_names.index(name)]

    def to_dict(self) -> dict[str, Any]:
        """The history as plain Python (``model_dump``)."""
        return self.model_dump()

    def as_dict(self) -> dict[str, Any]:
        """Deprecated alias of :meth:`to_dict` (one spelling across the SDK)."""
        warnings.warn("PatientHistory.as_dict is deprecated; use to_dict", DeprecationWarning, stacklevel=2)
        return self.to_dict()


@dataclass(frozen=True)
class MonteCarloResult:
    """A Monte Carlo value estimate with a normal-approximation confidence interval.

    Defined here (not in :mod:`sepsis_sdk.truth`, which re-exports it) so that simulators in
    :mod:`sepsis_sdk.sources` can return it without importing the truth layer that builds on them.

    Attributes:
        mean: mean return over the simulated episodes.
        ci_low, ci_high: the interval at ``level``.
        n_episodes: episodes simulated.
        level: confidence level of the interval.
        unfinished: episodes cut at the simulator's step cap (their return counts as 0).
    """

    mean: float
    ci_low: float
    ci_high: float
    n_episodes: int
    level: float
    unfinished: int = 0

    @classmethod
    def from_returns(cls, returns: Any, level: float = 0.95, *, unfinished: int = 0) -> MonteCarloResult:
        """The estimate from per-episode returns (standard error over episodes; infinite for one)."""
        from statistics import NormalDist

        r = np.asarray(returns, dtype=np.float64)
        mean = float(r.mean())
        se = float(r.std(ddof=1) / math.sqrt(len(r))) if len(r) > 1 else float("inf")
        z = NormalDist().inv_cdf(0.5 + level / 2)
        return cls(mean=mean, ci_low=mean - z * se, ci_high=mean + z * se, n_episodes=len(r), level=level,
                   unfinished=int(unfinished))  # fmt: skip

    def covers(self, value: float) -> bool:
        """Whether ``value`` lies in the interval."""
        return self.ci_low <= value <= self.ci_high

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict."""
        return asdict(self)


__all__ = ["Episode", "MonteCarloResult", "Observation", "PatientHistory", "Step"]
