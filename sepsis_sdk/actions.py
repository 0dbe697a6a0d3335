"""The 25 treatment actions: IV-fluid level x vasopressor level, each 0-4.

The canonical order in this SDK is **fluid-major**, as in AI Clinician and ICU-Sepsis:
``index = 5 * fluid + vaso``. The official SepsisAgent tools write actions as ``[vaso, fluid]``;
convert at that boundary with :meth:`Action.to_sepsisagent` / :meth:`Action.from_sepsisagent`.

Example:
    >>> a = Action(fluid=3, vaso=1)
    >>> a.index
    16
    >>> Action.from_index(16) == a
    True
    >>> a.to_sepsisagent()
    [1, 3]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sepsis_sdk.errors import InvalidActionError

N_LEVELS = 5
N_ACTIONS = N_LEVELS * N_LEVELS


class DoseBin(BaseModel):
    """One dose level: ``low < dose <= high`` in ``unit`` (level 0 means none given)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    level: int = Field(ge=0, le=4)
    low: float
    high: float | None
    unit: str

    def label(self) -> str:
        if self.level == 0:
            return "none"
        if self.high is None:
            return f">{self.low:g} {self.unit}"
        return f"{self.low:g}-{self.high:g} {self.unit}"


# AI Clinician convention (DESIGN.md 3.2): level 0 = none, levels 1-4 = quartiles of non-zero doses.
FLUID_BINS: tuple[DoseBin, ...] = (
    DoseBin(level=0, low=0.0, high=0.0, unit="mL/4h"),
    DoseBin(level=1, low=0.0, high=50.0, unit="mL/4h"),
    DoseBin(level=2, low=50.0, high=180.0, unit="mL/4h"),
    DoseBin(level=3, low=180.0, high=530.0, unit="mL/4h"),
    DoseBin(level=4, low=530.0, high=None, unit="mL/4h"),
)
VASO_BINS: tuple[DoseBin, ...] = (
    DoseBin(level=0, low=0.0, high=0.0, unit="ug/kg/min"),
    DoseBin(level=1, low=0.0, high=0.08, unit="ug/kg/min"),
    DoseBin(level=2, low=0.08, high=0.22, unit="ug/kg/min"),
    DoseBin(level=3, low=0.22, high=0.45, unit="ug/kg/min"),
    DoseBin(level=4, low=0.45, high=None, unit="ug/kg/min"),
)
# Representative dose per level (bin medians of the AI-Clinician cohort where known, midpoints otherwise),
# used by simulators that need a number rather than a level.
FLUID_REPRESENTATIVE = (0.0, 30.0, 110.0, 330.0, 850.0)
VASO_REPRESENTATIVE = (0.0, 0.04, 0.15, 0.33, 0.7)


def bin_dose(dose: float, edges: Sequence[float]) -> int:
    """Level 0-4 of a non-negative dose given the 3 inner edges between levels 1-4.

    ``dose <= 0`` is level 0; otherwise level 1 + the number of inner edges strictly below the dose.
    """
    if dose != dose or dose <= 0:  # NaN or none given
        return 0
    return 1 + sum(1 for e in edges if dose > e)


FLUID_EDGES = (50.0, 180.0, 530.0)
VASO_EDGES = (0.08, 0.22, 0.45)


class Action(BaseModel):
    """One treatment decision: an IV-fluid level and a vasopressor level (each 0-4)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    fluid: int = Field(ge=0, le=4, description="IV fluid level, 0 = none, 4 = >530 mL/4h")
    vaso: int = Field(ge=0, le=4, description="vasopressor level, 0 = none, 4 = >0.45 ug/kg/min")

    def __init__(self, *args: Any, **data: Any) -> None:
        if args:
            if len(args) != 2 or data:
                raise InvalidActionError("Action takes fluid and vaso (positionally or by keyword)")
            data = {"fluid": args[0], "vaso": args[1]}
        for k in ("fluid", "vaso"):
            v = data.get(k)
            if isinstance(v, bool) or (v is not None and not isinstance(v, int) and not _is_int_like(v)):
                raise InvalidActionError(f"{k} level must be an integer 0-4, got {v!r}")
            if v is not None and not 0 <= int(v) <= 4:
                raise InvalidActionError(f"{k} level must be 0-4, got {v!r}")
        super().__init__(**data)

    @property
    def index(self) -> int:
        """Canonical index ``5 * fluid + vaso`` (0-24)."""
        return N_LEVELS * self.fluid + self.vaso

    @classmethod
    def from_index(cls, index: int) -> Action:
        """The action with canonical index ``index``; raises :class:`InvalidActionError` outside 0-24."""
        index = validate_index(index)
        return _ALL[index]

    def to_sepsisagent(self) -> list[int]:
        """``[vaso, fluid]``: the order used by the official SepsisAgent tools."""
        return [self.vaso, self.fluid]

    @classmethod
    def from_sepsisagent(cls, pair: Sequence[int] | str) -> Action:
        """Parse the official ``[vaso, fluid]`` order, as a list or as a string like ``"[2, 3]"``."""
        if isinstance(pair, str):
            text = pair.strip().strip("[]()")
            parts = [p for p in text.replace(";", ",").split(",") if p.strip()]
            try:
                pair = [int(p.strip()) for p in parts]
            except ValueError as exc:
                raise InvalidActionError(f"cannot parse a [vaso, fluid] pair from {text!r}") from exc
        if len(pair) != 2:
            raise InvalidActionError(f"expected [vaso, fluid], got {list(pair)!r}")
        return cls(fluid=pair[1], vaso=pair[0])

    def describe(self) -> str:
        """Human-readable doses, e.g. ``"IV fluid 180-530 mL/4h, vasopressor none"``."""
        return f"IV fluid {FLUID_BINS[self.fluid].label()}, vasopressor {VASO_BINS[self.vaso].label()}"

    def __str__(self) -> str:
        return f"Action(fluid={self.fluid}, vaso={self.vaso})"


def _is_int_like(v: Any) -> bool:
    try:
        import numpy as np

        return isinstance(v, np.integer)
    except ImportError:  # pragma: no cover
        return False


def validate_index(index: Any) -> int:
    """Return ``index`` as an int if it is a valid canonical action index (0-24), else raise."""
    if isinstance(index, bool):
        raise InvalidActionError(f"action index must be an integer 0-{N_ACTIONS - 1}, got {index!r}")
    try:
        as_int = int(index)
    except (TypeError, ValueError) as exc:
        raise InvalidActionError(f"action index must be an integer 0-{N_ACTIONS - 1}, got {index!r}") from exc
    if as_int != index or not 0 <= as_int < N_ACTIONS:
        raise InvalidActionError(f"action index must be an integer 0-{N_ACTIONS - 1}, got {index!r}")
    return as_int


def all_actions() -> tuple[Action, ...]:
    """The 25 actions in canonical index order."""
    return _ALL


def indices(actions: Iterable[Action | int]) -> list[int]:
    """Canonical indices of a mix of :class:`Action` objects and indices (validated)."""
    return [a.index if isinstance(a, Action) else validate_index(a) for a in actions]


_ALL: tuple[Action, ...] = tuple(
    Action.model_construct(fluid=f, vaso=v) for f in range(N_LEVELS) for v in range(N_LEVELS)
)

__all__ = [
    "FLUID_BINS",
    "FLUID_EDGES",
    "N_ACTIONS",
    "VASO_BINS",
    "VASO_EDGES",
    "Action",
    "DoseBin",
    "all_actions",
    "bin_dose",
    "indices",
    "validate_index",
]
