"""A deterministic world model for tests: no training, fixed action effects, the full protocol.

Example:
    >>> from sepsis_sdk.world_model import FakeWorldModel
    >>> wm = FakeWorldModel(effects={"MeanBP": (0.05, 0.1)})   # +0.05 per fluid level, +0.1 per vaso level
    >>> pred = wm.predict([history], actions=[7])                 # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from sepsis_sdk.actions import N_ACTIONS
from sepsis_sdk.errors import UserError
from sepsis_sdk.features import FeatureSchema
from sepsis_sdk.world_model._base import StepOutput, WorldModelBase
from sepsis_sdk.world_model._data import Windows
from sepsis_sdk.world_model._space import Normaliser

_MAP_NAMES = ("meanbp", "map", "mean_bp", "mbp")
_LACTATE_NAMES = ("arterial_lactate", "lactate")

HazardFn = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


class FakeWorldModel(WorldModelBase):
    """Each action shifts chosen features by fixed amounts; termination hazards are constants.

    Args:
        schema: the features (default: the ICU-Sepsis schema).
        effects: feature name -> ``(shift per fluid level, shift per vasopressor level)`` in stored units.
            Default: the MAP-like feature rises by 1 % of its range per fluid level and 2 % per vasopressor
            level; the lactate-like feature falls by 1 % of its range per fluid level.
        drift: feature name -> change per step whatever the action (default none).
        p_death: hazard of death per step (or see ``hazard``).
        p_discharge: hazard of discharge alive per step.
        hazard: optional ``(state (R, D) stored, action (R,)) -> (p_death (R,), p_discharge (R,))``.
        noise: SD of the Gaussian noise per step in stored units (0 = fully deterministic rollouts).
        support: constant support, or ``(state (R, D) stored, action (R,)) -> (R,)`` in [0, 1].
        window: history window length.
    """

    name = "fake"

    def __init__(
        self,
        schema: FeatureSchema | None = None,
        *,
        effects: Mapping[str, tuple[float, float]] | None = None,
        drift: Mapping[str, float] | None = None,
        p_death: float = 0.02,
        p_discharge: float = 0.05,
        hazard: HazardFn | None = None,
        noise: float = 0.0,
        support: float | Callable[[np.ndarray, np.ndarray], np.ndarray] = 1.0,
        window: int = 4,
    ) -> None:
        if schema is None:
            from sepsis_sdk.sources.icu_sepsis import icu_sepsis_schema

            schema = icu_sepsis_schema()
        if not 0.0 <= p_death <= 1.0 or not 0.0 <= p_discharge <= 1.0 or p_death + p_discharge > 1.0:
            raise UserError(f"hazards must be probabilities summing to <= 1, got {p_death}, {p_discharge}")
        if noise < 0 or window < 1:
            raise UserError(f"need noise >= 0 and window >= 1, got {noise}, {window}")
        self.schema = schema
        self.window = int(window)
        self.normaliser = Normaliser.identity(schema)
        d = len(schema)
        lo, hi = (np.asarray(v) for v in schema.bounds())
        if effects is None:
            effects = {}
            lower = {n.lower(): n for n in schema.names}
            for key in _MAP_NAMES:
                if key in lower:
                    j = schema.index(lower[key])
                    effects[lower[key]] = (0.01 * (hi[j] - lo[j]), 0.02 * (hi[j] - lo[j]))
                    break
            for key in _LACTATE_NAMES:
                if key in lower:
                    j = schema.index(lower[key])
                    effects[lower[key]] = (-0.01 * (hi[j] - lo[j]), 0.0)
                    break
        self.effects = dict(effects)
        # table (25, D): change of each feature under each action
        self._shift = np.zeros((N_ACTIONS, d))
        fluid = np.arange(N_ACTIONS) // 5
        vaso = np.arange(N_ACTIONS) % 5
        for fname, (per_fluid, per_vaso) in self.effects.items():
            j = schema.index(fname)
            self._shift[:, j] = per_fluid * fluid + per_vaso * vaso
        self._drift = np.zeros(d)
        for fname, v in (drift or {}).items():
            self._drift[schema.index(fname)] = v
        self.p_death_const = float(p_death)
        self.p_discharge_const = float(p_discharge)
        self.hazard = hazard
        self.noise = float(noise)
        self._support = support

    def _step(self, inputs: Windows) -> StepOutput:
        a = inputs.act[:, -1]
        mean = (self._shift[a] + self._drift)[None]
        std = np.full_like(mean, self.noise)
        if self.hazard is not None:
            pd, pc = self.hazard(self.normaliser.to_stored(inputs.last), a)
            pd, pc = np.asarray(pd, dtype=np.float64), np.asarray(pc, dtype=np.float64)
        else:
            pd = np.full(len(a), self.p_death_const)
            pc = np.full(len(a), self.p_discharge_const)
        return StepOutput(mean=mean, std=std, p_death=pd, p_discharge=pc)

    def _support_z(self, last: np.ndarray, actions: np.ndarray) -> np.ndarray:
        if callable(self._support):
            out = np.asarray(self._support(self.normaliser.to_stored(last), actions), dtype=np.float64)
            return np.clip(out, 0.0, 1.0)
        return np.full(len(last), float(self._support))

    def _support_all_z(self, last: np.ndarray) -> np.ndarray:
        return np.stack([self._support_z(last, np.full(len(last), a)) for a in range(N_ACTIONS)], axis=1)
