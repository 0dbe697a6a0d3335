"""The model space of a world model: per-feature transform, normalisation and bounds.

Backends learn in a **normalised model space**: each stored value ``x`` is first mapped to
``y = log(x - lower + 1)`` when the feature's :attr:`~sepsis_sdk.FeatureSpec.log_model` is set (right-skewed,
positive labs such as bilirubin or urine output) and kept as ``y = x`` otherwise, then z-scored with the
training cohort's mean and SD of ``y``. Both maps are monotone, so clipping a sample to the feature's
bounds in model space is the same as clipping in stored space, and quantiles map exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sepsis_sdk.features import FeatureSchema


@dataclass(frozen=True)
class Normaliser:
    """Per-feature map between stored space and normalised model space.

    Attributes:
        log: ``(D,)`` bool, model ``log(x - lower + 1)``.
        lower: ``(D,)`` stored lower bounds.
        upper: ``(D,)`` stored upper bounds.
        mean: ``(D,)`` mean of ``y`` on the training data.
        scale: ``(D,)`` SD of ``y`` on the training data (1 where constant).
        static_mean: ``(S,)`` mean of static features.
        static_scale: ``(S,)`` SD of static features.
    """

    log: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    static_mean: np.ndarray
    static_scale: np.ndarray

    @classmethod
    def identity(cls, schema: FeatureSchema) -> Normaliser:
        """No transform and no scaling (used by the fake model): model space = stored space."""
        lo, hi = (np.asarray(b, dtype=np.float64) for b in schema.bounds())
        d, s = len(schema), len(schema.static)
        return cls(np.zeros(d, bool), lo, hi, np.zeros(d), np.ones(d), np.zeros(s), np.ones(s))

    @classmethod
    def fit(
        cls, schema: FeatureSchema, x: np.ndarray, mask: np.ndarray, static: np.ndarray | None = None
    ) -> Normaliser:
        """Fit on stored values ``x`` ``(n, D)`` where ``mask`` is True (NaN elsewhere is ignored)."""
        lo, hi = (np.asarray(b, dtype=np.float64) for b in schema.bounds())
        log = np.array([f.log_model for f in schema.features], dtype=bool)
        base = cls(log, lo, hi, np.zeros(len(lo)), np.ones(len(lo)), np.zeros(0), np.ones(0))
        y = base._forward_transform(np.clip(x, lo, hi))
        y = np.where(mask & np.isfinite(y), y, np.nan)
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.nanmean(y, axis=0)
                scale = np.nanstd(y, axis=0)
        mean = np.where(np.isfinite(mean), mean, 0.0)
        scale = np.where(np.isfinite(scale) & (scale > 1e-8), scale, 1.0)
        s = np.zeros((0, 0)) if static is None else np.asarray(static, dtype=np.float64)
        if s.size:
            smean = np.nan_to_num(np.nanmean(s, axis=0))
            sscale = np.nanstd(s, axis=0)
            sscale = np.where(np.isfinite(sscale) & (sscale > 1e-8), sscale, 1.0)
        else:
            smean = np.zeros(s.shape[1] if s.ndim == 2 else 0)
            sscale = np.ones_like(smean)
        return cls(log, lo, hi, mean, scale, smean, sscale)

    # ------------------------------------------------------------------ maps
    def _forward_transform(self, x: np.ndarray) -> np.ndarray:
        if not self.log.any():
            return np.asarray(x, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.log, np.log(np.maximum(x - self.lower, 0.0) + 1.0), x)

    def _inverse_transform(self, y: np.ndarray) -> np.ndarray:
        if not self.log.any():
            return y
        with np.errstate(over="ignore"):
            return np.where(self.log, np.expm1(np.minimum(y, 700.0)) + self.lower, y)

    def to_model(self, x: np.ndarray) -> np.ndarray:
        """Stored -> normalised model space (NaN stays NaN)."""
        return (self._forward_transform(np.asarray(x, dtype=np.float64)) - self.mean) / self.scale

    def to_stored(self, z: np.ndarray) -> np.ndarray:
        """Normalised model space -> stored space, clipped to the bounds."""
        x = self._inverse_transform(np.asarray(z, dtype=np.float64) * self.scale + self.mean)
        return np.clip(x, self.lower, self.upper)

    def stored_slope(self, z: np.ndarray) -> np.ndarray:
        """``d stored / d z`` at ``z`` (for turning model-space spreads into stored-space spreads)."""
        if not self.log.any():
            return np.broadcast_to(self.scale, np.shape(z)).copy()
        y = np.asarray(z) * self.scale + self.mean
        return np.where(self.log, np.exp(np.minimum(y, 700.0)) * self.scale, self.scale)

    @property
    def z_lower(self) -> np.ndarray:
        return self.to_model(self.lower)

    @property
    def z_upper(self) -> np.ndarray:
        return self.to_model(self.upper)

    def static_to_model(self, s: np.ndarray) -> np.ndarray:
        if s.shape[-1] == 0:
            return np.asarray(s, dtype=np.float64)
        return np.nan_to_num((np.asarray(s, dtype=np.float64) - self.static_mean) / self.static_scale)

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        return {k: np.asarray(getattr(self, k)).tolist() for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normaliser:
        return cls(
            log=np.asarray(d["log"], dtype=bool),
            **{k: np.asarray(d[k], dtype=np.float64) for k in cls.__dataclass_fields__ if k != "log"},
        )


def to_clinical(schema: FeatureSchema, x: np.ndarray) -> np.ndarray:
    """Stored values ``(..., D)`` -> clinical units where the transform makes them known.

    ``raw`` and ``binary`` features get their display offset added, ``log1p`` features are exponentiated;
    ``z`` and ``zlog`` features (ICU-Sepsis) have no published cohort statistics and stay z-scores.
    """
    x = np.asarray(x, dtype=np.float64)
    out = x.copy()
    for j, f in enumerate(schema.features):
        if f.transform in ("raw", "binary"):
            out[..., j] = x[..., j] + f.offset
        elif f.transform == "log1p":
            out[..., j] = np.expm1(x[..., j] + f.offset)
    return out


def clinical_known(schema: FeatureSchema) -> np.ndarray:
    """``(D,)`` bool: features whose clinical units are known (not z-scores)."""
    return np.array([f.transform not in ("z", "zlog") for f in schema.features], dtype=bool)
