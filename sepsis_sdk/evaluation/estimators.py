"""OPE estimators as registered classes, all fed by one matrix product.

Every estimator in :mod:`sepsis_sdk.evaluation.ope` is a function of **weighted sums of per-episode
summaries**: for a ``(B, n_episodes)`` weight (bootstrap count) matrix ``W`` and per-episode columns
``S``, it only needs ``W @ S``. An estimator is therefore one small class that declares

- :meth:`Estimator.summaries`: the per-episode columns it reads, by key (keys are shared: WIS and PHWIS
  both read ``wis_num``; each column is computed and multiplied once, however many estimators read it);
- :meth:`Estimator.statistic`: its ``(B,)`` values from :class:`WeightedSums` (slices of the one product).

:func:`make_statistics` stacks the columns of all requested estimators and computes one product per
weight matrix, so all estimators on all bootstrap resamples cost about one matrix product per chunk of
resamples (the registry feeds that product; there is no loop per estimator per resample).

Register your own with :func:`register_estimator` ("config -> create -> name": a name in
``OPEConfig.estimators`` or ``evaluate_ope(estimators=...)``, :func:`create_estimator` builds it,
``estimator_name`` names its row)::

    from sepsis_sdk.evaluation.estimators import Estimator, register_estimator

    @register_estimator
    class OrdinaryIS(Estimator):
        estimator_name = "is"

        def summaries(self, table):
            return {"is_num": lambda: table.final_weight * table.returns}

        def statistic(self, sums):
            return sums["is_num"] / sums["one"]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from sepsis_sdk.errors import UserError

Summaries = Mapping[str, Callable[[], np.ndarray]]


# ---------------------------------------------------------------------------------------------- table
@dataclass(frozen=True)
class EpisodeTable:
    """Per-episode padded arrays the estimators are built from (``(n_episodes, horizon)``).

    ``rho`` carries each episode's final weight past its end; ``rho_prev`` is ``rho`` shifted one step
    right with 1 in the first column; ``reward``, ``q_taken`` and ``v`` are 0 past the end.
    ``value_range`` is the range a policy's value can take (default: the returns seen, and 0); estimates
    outside it are impossible and get flagged, and the bounded estimators are clipped to it.
    """

    rho: np.ndarray
    rho_prev: np.ndarray
    reward: np.ndarray
    lengths: np.ndarray
    discount: np.ndarray
    q_taken: np.ndarray | None = None
    v: np.ndarray | None = None
    value_range: tuple[float, float] = (float("-inf"), float("inf"))

    @property
    def n_episodes(self) -> int:
        return self.rho.shape[0]

    @property
    def horizon(self) -> int:
        return self.rho.shape[1]

    @property
    def final_weight(self) -> np.ndarray:
        return self.rho[:, -1]

    @property
    def returns(self) -> np.ndarray:
        return (self.reward * self.discount).sum(1)


def build_episode_table(
    episode: np.ndarray,
    ratio: np.ndarray,
    reward: np.ndarray,
    *,
    gamma: float = 1.0,
    q_taken: np.ndarray | None = None,
    v: np.ndarray | None = None,
    value_range: tuple[float, float] | None = None,
) -> EpisodeTable:
    """Pad step arrays (rows grouped by episode, in time order) into an :class:`EpisodeTable`.

    Args:
        episode: ``(n_rows,)`` 0-based episode number of each row, non-decreasing.
        ratio: ``(n_rows,)`` per-step importance ratios ``pi_e / pi_b`` of the actions taken.
        reward: ``(n_rows,)`` rewards.
        gamma: discount.
        q_taken: optional ``(n_rows,)`` ``Q(s_t, a_t)``.
        v: optional ``(n_rows,)`` ``V(s_t) = sum_a pi_e(a|s_t) Q(s_t, a)``.
        value_range: ``(low, high)`` a value can take (default: ``min/max`` of the episodes' returns and 0;
            pass the reward's true range, e.g. ``(0, 1)`` for survival, when it is known).
    """
    episode = np.asarray(episode, dtype=np.int64)
    if episode.size and np.any(np.diff(episode) < 0):
        raise UserError("rows must be grouped by episode in order")
    n_ep = int(episode.max()) + 1 if episode.size else 0
    lengths = np.bincount(episode, minlength=n_ep)
    if (lengths == 0).any():
        raise UserError("episode numbers must be 0..n-1 without gaps")
    horizon = int(lengths.max()) if n_ep else 0
    starts = np.r_[0, np.cumsum(lengths)[:-1]]
    pos = np.arange(len(episode)) - starts[episode]

    def pad(values: np.ndarray, fill: float = 0.0) -> np.ndarray:
        out = np.full((n_ep, horizon), fill, dtype=np.float64)
        out[episode, pos] = values
        return out

    # cumulative products within episodes, past the end the ratio is 1 (absorbing, no decision)
    rho = np.cumprod(pad(np.asarray(ratio, dtype=np.float64), fill=1.0), axis=1)
    rho_prev = np.concatenate([np.ones((n_ep, 1)), rho[:, :-1]], axis=1)
    padded = pad(np.asarray(reward, dtype=np.float64))
    discount = gamma ** np.arange(horizon, dtype=np.float64)
    if value_range is None:
        returns = (padded * discount).sum(1)
        value_range = (min(0.0, float(returns.min(initial=0.0))), max(0.0, float(returns.max(initial=0.0))))
    lo, hi = (float(x) for x in value_range)
    if not lo <= hi:
        raise UserError(f"value_range must be (low, high) with low <= high, got {value_range}")
    return EpisodeTable(
        rho=rho,
        rho_prev=rho_prev,
        reward=padded,
        lengths=lengths,
        discount=discount,
        q_taken=None if q_taken is None else pad(q_taken),
        v=None if v is None else pad(v),
        value_range=(lo, hi),
    )


def safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with 0 where ``den == 0`` (a term with no weight contributes nothing)."""
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den != 0)
    return out


# ---------------------------------------------------------------------------------------------- sums
class WeightedSums:
    """The weighted sums ``W @ S`` of one weight matrix, sliced by summary key.

    ``sums["key"]`` is ``(B,)`` for a one-column summary and ``(B, width)`` otherwise;
    :meth:`matrix` is always ``(B, width)``. The key ``"one"`` (a column of ones, i.e. the total weight
    of each resample) is always present.
    """

    def __init__(self, product: np.ndarray, slices: Mapping[str, slice]) -> None:
        self._product = product
        self._slices = slices

    @property
    def n_rows(self) -> int:
        """``B``: the number of weight rows (resamples)."""
        return self._product.shape[0]

    def matrix(self, key: str) -> np.ndarray:
        """The ``(B, width)`` sums of summary ``key``."""
        return self._product[:, self._slices[key]]

    def __getitem__(self, key: str) -> np.ndarray:
        out = self.matrix(key)
        return out[:, 0] if out.shape[1] == 1 else out


# ---------------------------------------------------------------------------------------------- base
class Estimator:
    """Base class of an OPE estimator (subclass it and :func:`register_estimator` the class).

    Attributes:
        estimator_name: the registry name and the key of its estimate in results.
        needs_q: it reads ``table.q_taken``/``table.v`` (a Q-model is fitted when none is given).
        weighted: an importance-weighting estimator: its estimate carries the weight diagnostics and
            Kish's ESS of the final weights (False for the direct method: ESS is the episode count).
        bounded: its estimates always lie in ``table.value_range`` (by construction or by clipping).
    """

    estimator_name: ClassVar[str] = ""
    needs_q: ClassVar[bool] = False
    weighted: ClassVar[bool] = True
    bounded: ClassVar[bool] = False

    def summaries(self, table: EpisodeTable) -> Summaries:
        """Per-episode columns this estimator reads: key -> thunk returning ``(n_episodes,)`` or
        ``(n_episodes, width)``. The same key must mean the same column for every estimator."""
        raise NotImplementedError

    def statistic(self, sums: WeightedSums) -> np.ndarray:
        """The ``(B,)`` estimates from the weighted sums (NaN where a resample leaves it undefined)."""
        raise NotImplementedError

    def diagnostics(self, table: EpisodeTable) -> dict[str, float]:
        """Estimator-specific diagnostics added to its estimate (default none)."""
        return {}


_REGISTRY: dict[str, type[Estimator]] = {}


def register_estimator(cls: type[Estimator] | None = None, *, replace: bool = False):
    """Register an :class:`Estimator` subclass under its ``estimator_name`` (usable as a decorator).

    Args:
        cls: the estimator class.
        replace: allow replacing an estimator of the same name.

    Raises:
        UserError: no ``estimator_name``, or the name is taken and ``replace`` is False.
    """

    def add(c: type[Estimator]) -> type[Estimator]:
        name = getattr(c, "estimator_name", "")
        if not name:
            raise UserError(f"{c.__name__} has no estimator_name")
        if name in _REGISTRY and _REGISTRY[name] is not c and not replace:
            raise UserError(f"an OPE estimator named {name!r} is already registered (pass replace=True)")
        _REGISTRY[name] = c
        return c

    return add(cls) if cls is not None else add


def unregister_estimator(name: str) -> None:
    """Remove a registered estimator (built-ins included; mostly for tests)."""
    _REGISTRY.pop(name, None)


def available_estimators() -> tuple[str, ...]:
    """Names of the registered estimators, built-ins first."""
    return tuple(_REGISTRY)


def create_estimator(name: str | Estimator) -> Estimator:
    """The estimator registered as ``name`` (an :class:`Estimator` instance is returned as is)."""
    if isinstance(name, Estimator):
        return name
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise UserError(f"unknown estimators [{name!r}]; choose from {list(_REGISTRY)}") from None


def resolve_estimators(estimators: Sequence[str | Estimator]) -> list[Estimator]:
    """Instances for names or instances; errors name every unknown one."""
    unknown = [e for e in estimators if not isinstance(e, Estimator) and e not in _REGISTRY]
    if unknown or not estimators:
        raise UserError(f"unknown estimators {unknown}; choose from {list(_REGISTRY)}")
    return [create_estimator(e) for e in estimators]


# ---------------------------------------------------------------------------------------------- product
# Built-in columns are stacked in this fixed order whatever estimators are asked for and in whatever
# order, so each column's sums (and every number) do not depend on the request; others follow.
_CANONICAL = ("one", "wis_num", "wis_den", "pd_num", "pd_den", "ph_num", "ph_den", "ph_n")
_CANONICAL += ("dr", "wdr_q", "wdr_v", "v0")


def _stack(table: EpisodeTable, estimators: Sequence[Estimator]) -> tuple[np.ndarray, dict[str, slice]]:
    thunks: dict[str, Callable[[], np.ndarray]] = {"one": lambda: np.ones(table.n_episodes)}
    for est in estimators:
        for key, make in est.summaries(table).items():
            thunks.setdefault(key, make)
    rank = {k: i for i, k in enumerate(_CANONICAL)}
    keys = sorted(thunks, key=lambda k: (rank.get(k, len(rank)), list(thunks).index(k)))
    cols = []
    for k in keys:
        arr = np.asarray(thunks[k](), dtype=np.float64)
        cols.append(arr if arr.ndim == 2 else arr[:, None])
    offsets = np.r_[0, np.cumsum([c.shape[1] for c in cols])]
    slices = {k: slice(int(offsets[i]), int(offsets[i + 1])) for i, k in enumerate(keys)}
    return np.concatenate(cols, axis=1), slices


def make_statistics(
    table: EpisodeTable, estimators: Sequence[str | Estimator]
) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Estimator name -> function of a ``(B, n_episodes)`` weight (count) matrix returning ``(B,)``.

    All requested estimators share one matrix product ``W @ S`` with ``S`` the column-stacked
    per-episode summaries; the functions only slice the product, so asking for six estimators costs
    about one product. A row of ones gives the point estimate.
    """
    ests = resolve_estimators(list(estimators))
    missing_q = [e.estimator_name for e in ests if e.needs_q]
    if missing_q and (table.q_taken is None or table.v is None):
        raise UserError(f"{missing_q} need Q-values (pass q_model or let evaluate_ope fit one)")
    stacked, slices = _stack(table, ests)
    cache: list[tuple[np.ndarray, WeightedSums]] = []  # (weights, sums); holds the reference

    def sums_of(w: np.ndarray) -> WeightedSums:
        if not cache or cache[0][0] is not w:
            cache[:] = [(w, WeightedSums(w @ stacked, slices))]
        return cache[0][1]

    def stat(est: Estimator) -> Callable[[np.ndarray], np.ndarray]:
        return lambda w: est.statistic(sums_of(w))

    return {e.estimator_name: stat(e) for e in ests}


# ---------------------------------------------------------------------------------------------- built-ins
def _returns_weighted(table: EpisodeTable) -> dict[str, Callable[[], np.ndarray]]:
    return {"wis_num": lambda: table.final_weight * table.returns, "wis_den": lambda: table.final_weight}


def _per_decision(table: EpisodeTable) -> dict[str, Callable[[], np.ndarray]]:
    return {"pd_num": lambda: table.discount * table.rho * table.reward, "pd_den": lambda: table.rho}


@register_estimator
class WIS(Estimator):
    """Weighted importance sampling: ``sum_i rho_i G_i / sum_i rho_i``."""

    estimator_name = "wis"

    def summaries(self, table: EpisodeTable) -> Summaries:
        return _returns_weighted(table)

    def statistic(self, sums: WeightedSums) -> np.ndarray:
        num, den = sums["wis_num"], sums["wis_den"]
        return np.where(den > 0, safe_div(num, den), np.nan)


@register_estimator
class WPDIS(Estimator):
    """Weighted per-decision IS: ``sum_t gamma^t sum_i rho_it r_it / sum_i rho_it``."""

    estimator_name = "wpdis"

    def summaries(self, table: EpisodeTable) -> Summaries:
        return _per_decision(table)

    def statistic(self, sums: WeightedSums) -> np.ndarray:
        num, den = sums.matrix("pd_num"), sums.matrix("pd_den")  # width = horizon
        val = safe_div(num, den).sum(1)
        return np.where(den[:, -1] > 0, val, np.nan) if den.shape[1] else np.full(sums.n_rows, np.nan)


@register_estimator
class PHWIS(Estimator):
    """Per-horizon WIS: WIS within groups of equal length, averaged with weights by group size."""

    estimator_name = "phwis"

    def summaries(self, table: EpisodeTable) -> Summaries:
        groups, inv = np.unique(table.lengths, return_inverse=True)
        onehot = np.zeros((table.n_episodes, len(groups)))
        onehot[np.arange(table.n_episodes), inv] = 1.0
        rho_t = table.final_weight
        return {
            **_returns_weighted(table),
            "ph_num": lambda: onehot * (rho_t * table.returns)[:, None],
            "ph_den": lambda: onehot * rho_t[:, None],
            "ph_n": lambda: onehot,
        }

    def statistic(self, sums: WeightedSums) -> np.ndarray:
        num, den, n_g = sums.matrix("ph_num"), sums.matrix("ph_den"), sums.matrix("ph_n")
        size = np.where(den > 0, n_g, 0.0)
        total = size.sum(1)
        val = (size * safe_div(num, den)).sum(1)
        return np.where(total > 0, safe_div(val, total), np.nan)

    def diagnostics(self, table: EpisodeTable) -> dict[str, float]:
        return {"n_length_groups": float(len(np.unique(table.lengths)))}


@register_estimator
class DR(Estimator):
    """Doubly robust (Jiang & Li 2016), averaged over episodes."""

    estimator_name = "dr"
    needs_q = True

    def summaries(self, table: EpisodeTable) -> Summaries:
        d, q, v = table.discount, table.q_taken, table.v
        return {"dr": lambda: (d * (table.rho * (table.reward - q) + table.rho_prev * v)).sum(1)}

    def statistic(self, sums: WeightedSums) -> np.ndarray:
        return safe_div(sums["dr"], sums["one"])


@register_estimator
class WDR(Estimator):
    """Weighted doubly robust (Thomas & Brunskill 2016): DR with self-normalised weights."""

    estimator_name = "wdr"
    needs_q = True

    def summaries(self, table: EpisodeTable) -> Summaries:
        d, q, v = table.discount, table.q_taken, table.v
        return {
            **_per_decision(table),
            "wdr_q": lambda: d * table.rho * q,
            "wdr_v": lambda: d * table.rho_prev * v,
        }

    def statistic(self, sums: WeightedSums) -> np.ndarray:
        num_r, den = sums.matrix("pd_num"), sums.matrix("pd_den")
        num_q, num_v = sums.matrix("wdr_q"), sums.matrix("wdr_v")
        den_prev = np.concatenate([sums["one"][:, None], den[:, :-1]], axis=1)
        return (safe_div(num_r - num_q, den) + safe_div(num_v, den_prev)).sum(1)


@register_estimator
class FQE(Estimator):
    """The direct method: ``mean_i V(s_i0)`` with ``Q`` from fitted-Q evaluation."""

    estimator_name = "fqe"
    needs_q = True
    weighted = False

    def summaries(self, table: EpisodeTable) -> Summaries:
        v = table.v
        return {"v0": lambda: v[:, 0] if table.horizon else np.zeros(table.n_episodes)}

    def statistic(self, sums: WeightedSums) -> np.ndarray:
        return safe_div(sums["v0"], sums["one"])


class _Clipped:
    """Mixin: the estimate projected onto ``table.value_range`` (every resample too, so intervals as well).

    DR and WDR can leave the range of possible values when the importance weights are heavy-tailed
    (a planner's DR of 2.773 for a survival probability); the clipped versions cannot. A clipped estimate
    that sits on a bound is flagged ``at_bound`` by :func:`~sepsis_sdk.evaluation.ope.evaluate_ope`: the
    unclipped one was at or beyond it.
    """

    bounded = True
    _range: tuple[float, float] = (float("-inf"), float("inf"))

    def summaries(self, table: EpisodeTable) -> Summaries:
        self._range = table.value_range  # summaries() runs before statistic() (make_statistics)
        return super().summaries(table)  # type: ignore[misc]

    def statistic(self, sums: WeightedSums) -> np.ndarray:
        return np.clip(super().statistic(sums), *self._range)  # type: ignore[misc]


@register_estimator
class ClippedDR(_Clipped, DR):
    """Doubly robust, clipped to the range of possible values: a bounded DR."""

    estimator_name = "dr_clip"


@register_estimator
class ClippedWDR(_Clipped, WDR):
    """Weighted doubly robust (self-normalised weights), clipped to the range of possible values."""

    estimator_name = "wdr_clip"


# WIS and PHWIS are convex combinations of returns (always in range), the others can leave it
WIS.bounded = True
PHWIS.bounded = True

BUILTIN_ESTIMATORS: tuple[str, ...] = ("wis", "wpdis", "phwis", "dr", "wdr", "fqe")
BOUNDED_ESTIMATORS: tuple[str, ...] = ("wis", "phwis", "dr_clip", "wdr_clip")
"""Registered estimators whose values always lie in the range of possible values."""

__all__ = [
    "BOUNDED_ESTIMATORS",
    "BUILTIN_ESTIMATORS",
    "DR",
    "FQE",
    "PHWIS",
    "WDR",
    "WIS",
    "WPDIS",
    "ClippedDR",
    "ClippedWDR",
    "EpisodeTable",
    "Estimator",
    "WeightedSums",
    "available_estimators",
    "build_episode_table",
    "create_estimator",
    "make_statistics",
    "register_estimator",
    "resolve_estimators",
    "safe_div",
    "unregister_estimator",
]
