"""Pluggable rewards: survival (ICU-Sepsis) and the Raghu-style shaped reward (used by SepsisAgent).

A reward is a callable ``reward(prev, next, outcome) -> float`` on one transition, where ``prev`` and ``next``
map feature names to stored values (``next`` is ``None`` when the transition ends the episode) and
``outcome`` is ``"survival"``, ``"death"`` or ``None`` (not terminal). :meth:`Reward.relabel` recomputes
a cohort's ``reward`` column vectorised, so any cohort can be evaluated under any reward.

Example:
    >>> r = RaghuReward()
    >>> r({"sofa": 6, "lactate": 3.0}, {"sofa": 5, "lactate": 2.0}, None)  # improving patient
    1.648...
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import numpy as np

from sepsis_sdk.errors import UserError

if TYPE_CHECKING:
    from sepsis_sdk.cohort import Cohort

Outcome = Literal["survival", "death"] | None


@runtime_checkable
class Reward(Protocol):
    """A reward on one transition; see the module docstring."""

    name: str

    def __call__(
        self, prev: Mapping[str, float], next: Mapping[str, float] | None, outcome: Outcome
    ) -> float: ...

    def relabel(self, cohort: Cohort) -> Cohort: ...


def _terminal_outcomes(cohort: Cohort) -> np.ndarray:
    """Per row: +1 the row ends in survival, -1 in death, 0 not terminal or unknown outcome."""
    df = cohort.data
    done = df["done"].to_numpy(dtype=bool)
    if "outcome" not in df.columns:
        raise UserError(
            f"{cohort.source}: the cohort has no 'outcome' column, so terminal rewards are unknown"
        )
    oc = df["outcome"].to_numpy()
    out = np.zeros(len(df))
    out[done & (oc == 1)] = 1.0
    out[done & (oc == 0)] = -1.0
    return out


def _with_rewards(cohort: Cohort, rewards: np.ndarray, name: str) -> Cohort:
    from sepsis_sdk.cohort import Cohort

    data = cohort.data.copy()
    data["reward"] = rewards
    return Cohort(
        data, cohort.schema, source=cohort.source, meta={**cohort.meta, "reward": name}, validate=False
    )


class SurvivalReward:
    """+1 on the transition that ends in survival, 0 otherwise (ICU-Sepsis; gamma 1 => value = P(survival))."""

    name = "survival"

    def __init__(self, survival: float = 1.0, death: float = 0.0) -> None:
        self.survival = survival
        self.death = death

    def __call__(
        self, prev: Mapping[str, float], next: Mapping[str, float] | None, outcome: Outcome
    ) -> float:
        if outcome == "survival":
            return self.survival
        if outcome == "death":
            return self.death
        return 0.0

    def relabel(self, cohort: Cohort) -> Cohort:
        term = _terminal_outcomes(cohort)
        r = np.where(term > 0, self.survival, np.where(term < 0, self.death, 0.0))
        return _with_rewards(cohort, r, self.name)


class RaghuReward:
    """Raghu et al.-style shaped reward, as used by SepsisAgent (DESIGN.md 3.4).

    Per non-terminal step: ``-0.025 * [SOFA unchanged and > 0] - 0.125 * (SOFA' - SOFA)
    - 2 * tanh(lactate' - lactate)``; on the terminal transition ``+15`` alive, ``-15`` death.

    Args:
        sofa: feature name of the SOFA score.
        lactate: feature name of lactate. On ICU-Sepsis (``Arterial_lactate``) this is a z-score, so the
            tanh term is in SD units there; say so when reporting.
        terminal: magnitude of the terminal reward.
    """

    name = "raghu"

    def __init__(self, *, sofa: str = "sofa", lactate: str = "lactate", terminal: float = 15.0) -> None:
        self.sofa = sofa
        self.lactate = lactate
        self.terminal = terminal

    def __call__(
        self, prev: Mapping[str, float], next: Mapping[str, float] | None, outcome: Outcome
    ) -> float:
        if outcome == "survival":
            return self.terminal
        if outcome == "death":
            return -self.terminal
        if next is None:
            return 0.0
        s0, s1 = float(prev[self.sofa]), float(next[self.sofa])
        l0, l1 = float(prev[self.lactate]), float(next[self.lactate])
        r = 0.0
        if s1 == s0 and s1 > 0:
            r -= 0.025
        r -= 0.125 * (s1 - s0)
        if math.isfinite(l0) and math.isfinite(l1):
            r -= 2.0 * math.tanh(l1 - l0)
        return r

    def relabel(self, cohort: Cohort) -> Cohort:
        for col in (self.sofa, self.lactate):
            if col not in cohort.data.columns:
                raise UserError(
                    f"{cohort.source}: RaghuReward needs column {col!r}; pass sofa=/lactate= names"
                )
        df = cohort.data
        done = df["done"].to_numpy(dtype=bool)
        sofa = df[self.sofa].to_numpy(dtype=np.float64)
        lac = df[self.lactate].to_numpy(dtype=np.float64)
        nxt = np.minimum(np.arange(len(df)) + 1, len(df) - 1)
        ds = sofa[nxt] - sofa
        dl = lac[nxt] - lac
        step = -0.025 * ((ds == 0) & (sofa[nxt] > 0)) - 0.125 * ds - 2.0 * np.tanh(np.nan_to_num(dl))
        term = _terminal_outcomes(cohort) * self.terminal
        r = np.where(done, term, step)
        return _with_rewards(cohort, r, self.name)


def get_reward(name: str, **kwargs: object) -> Reward:
    """A reward by name: ``"survival"`` or ``"raghu"``."""
    table = {"survival": SurvivalReward, "raghu": RaghuReward}
    if name not in table:
        raise UserError(f"unknown reward {name!r}; choose from {sorted(table)}")
    return table[name](**kwargs)  # type: ignore[arg-type]


__all__ = ["RaghuReward", "Reward", "SurvivalReward", "get_reward"]
