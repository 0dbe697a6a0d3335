"""Feature schemas: what each column of a cohort means, its unit, plausible bounds and transform.

A :class:`FeatureSchema` is attached to every cohort and every world model, so a saved model knows the
features it was trained on and a simulator can keep every value inside its plausible bounds.

Transforms name how a value is **stored** in the cohort relative to clinical units:

- ``"raw"``: clinical units.
- ``"log1p"``: ``log(1 + x)`` of the clinical value (e.g. urine output).
- ``"z"``: a z-score against unpublished cohort statistics (ICU-Sepsis); shown as "N SD".
- ``"zlog"``: a z-score of ``log(x + 0.1)`` (ICU-Sepsis skewed labs); shown as "N SD (log)".
- ``"binary"``: a 0/1 flag, possibly shifted (ICU-Sepsis stores raw - 0.5).

Models should simulate skewed labs in log space: :attr:`FeatureSpec.log_model` says when.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sepsis_sdk.errors import UserError

Transform = Literal["raw", "log1p", "z", "zlog", "binary"]
Kind = Literal["continuous", "binary", "ordinal"]


class FeatureSpec(BaseModel):
    """One feature.

    Attributes:
        name: column name in the cohort.
        unit: clinical unit, or ``"SD"`` for z-scored features.
        kind: continuous, binary or ordinal.
        lower: smallest plausible stored value (inclusive).
        upper: largest plausible stored value (inclusive).
        transform: how the stored value relates to clinical units.
        log_model: simulate ``log(x - lower + 1)`` instead of ``x`` (right-skewed, positive labs).
        offset: added to the stored value before display (ICU-Sepsis stores some flags as raw - 0.5).
        description: free text.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(min_length=1)
    unit: str = ""
    kind: Kind = "continuous"
    lower: float
    upper: float
    transform: Transform = "raw"
    log_model: bool = False
    offset: float = 0.0
    description: str = ""

    @model_validator(mode="after")
    def _check_bounds(self) -> FeatureSpec:
        if not (math.isfinite(self.lower) and math.isfinite(self.upper)) or self.lower >= self.upper:
            raise ValueError(
                f"feature {self.name!r}: need finite lower < upper, got {self.lower}, {self.upper}"
            )
        return self

    def clip(self, value: float) -> float:
        return min(max(value, self.lower), self.upper)

    def to_display(self, stored: float) -> str:
        """Format a stored value for a prompt or a table, in clinical units where they are known."""
        if stored != stored:
            return "missing"
        if self.transform == "z":
            return f"{stored:+.1f} SD"
        if self.transform == "zlog":
            return f"{stored:+.1f} SD (log scale)"
        stored = stored + self.offset
        if self.transform == "binary":
            return "yes" if stored > 0.5 else "no"
        value = math.expm1(stored) if self.transform == "log1p" else stored
        fmt = f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
        return f"{fmt} {self.unit}".strip()


class FeatureSchema(BaseModel):
    """An ordered, named set of :class:`FeatureSpec` (the dynamic features of a cohort)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    features: tuple[FeatureSpec, ...]
    static: tuple[str, ...] = ()
    synthetic: bool = False

    @model_validator(mode="after")
    def _unique(self) -> FeatureSchema:
        names = [f.name for f in self.features]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"schema {self.name!r}: duplicate feature names {dup}")
        return self

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def __len__(self) -> int:
        return len(self.features)

    def __iter__(self) -> Iterator[FeatureSpec]:  # type: ignore[override]
        return iter(self.features)

    def __getitem__(self, name: str) -> FeatureSpec:
        for f in self.features:
            if f.name == name:
                return f
        raise UserError(f"schema {self.name!r} has no feature {name!r}; it has {self.names}")

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise UserError(f"schema {self.name!r} has no feature {name!r}") from None

    def has(self, *names: str) -> bool:
        have = set(self.names)
        return all(n in have for n in names)

    def bounds(self) -> tuple[list[float], list[float]]:
        """Lower and upper bounds in feature order."""
        return [f.lower for f in self.features], [f.upper for f in self.features]

    def subset(self, names: Sequence[str]) -> FeatureSchema:
        return self.model_copy(update={"features": tuple(self[n] for n in names)})

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str) -> FeatureSchema:
        return cls.model_validate_json(text)


def mask_column(name: str) -> str:
    """Name of the missingness-mask column of feature ``name`` (True = observed)."""
    return f"mask__{name}"


def specs(items: Iterable[dict]) -> tuple[FeatureSpec, ...]:
    return tuple(FeatureSpec(**d) for d in items)


__all__ = ["FeatureSchema", "FeatureSpec", "mask_column"]
