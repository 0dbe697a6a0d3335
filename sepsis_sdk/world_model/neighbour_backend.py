"""Neighbour backend: a non-parametric world model that replays observed transitions of look-alike patients.

It indexes the training cohort's transitions ``(state, action) -> (next state, how the step ended)``. To
predict or sample the step after ``(s, a)`` it takes the training transitions whose state is nearest to
``s`` (normalised model space, static features included) and whose action is ``a``, and samples one of
them: the patient dies, leaves alive, or moves on to that transition's next observation. So the predicted
distribution keeps every mode the data shows, and on ICU-Sepsis, where next states are one of 713
discrete points, every sampled next observation *is* an observed state (a Gaussian head averages those
points into states no patient is in, and multi-step rollouts drift).

**The neighbour set.** Transitions are grouped into *pairs* (a distinct state, an action). A query finds
the pairs nearest to ``(s, a)`` in the key space ``[z(s), static_weight * z(static), action_scale *
fluid_level, action_scale * vaso_level]`` and takes them in order of distance until they hold ``k``
transitions: all of the nearest pair (an exact duplicate of ``s`` first; on ICU-Sepsis observations
recur), then whole pairs, and the last one in part, so the set holds ``max(k, n_nearest)`` transitions.
With enough data on ``(s, a)`` this is the counted (maximum-likelihood) transition model; where the data
are thin it borrows from the nearest states given the same action. ``action_scale`` is the distance one
action level counts for: the default (1000) means "the same action first"; an action that was never given
in the whole cohort falls back to the nearest action levels (a kernel over actions). A smaller value
(e.g. 2) borrows from neighbouring doses as well.

**Next state.** ``target="state"`` samples the neighbour's next observation itself (what keeps samples on
observed states); ``"delta"`` applies the neighbour's change to the query's own state (what continuous
MIMIC-like data need: a look-alike is never the same patient). ``"auto"`` (default) picks ``"state"`` when
the cohort's observations are discrete (at least half of the rows repeat another row's state, as on
ICU-Sepsis from a few hundred patients on), else ``"delta"``.
Features missing at the neighbour's next step are carried forward.

**Uncertainty.** ``n_members`` bootstrap members each resample the training *patients* (integer weights
per transition); a member's distribution is the weighted one, so the members disagree most where few
transitions support a prediction. ``epistemic_std`` is the spread of the members' means; rollouts draw one
member per sample and step (as the parametric backends do).

**Support.** ``support(s, a) = n / (n + support_count)`` where ``n = sum_j n_j exp(-(d_j / h)^2)`` sums
the transitions of the retrieved pairs ``j`` weighted by their distance ``d_j`` from the query (action
part included), and ``h`` is the median distance between a training state and its nearest other distinct
state. So an exact look-alike counts 1, one at the typical spacing 0.37, a different action ~0; with the
default ``support_count = 5`` five exact look-alikes given ``a`` make support 0.5, 45 make 0.9. Monotone in
the count and falling with distance; 0 where no training patient like this was given ``a``.

Nearest neighbours come from scikit-learn (``sklearn.neighbors.NearestNeighbors``, in the ``xgboost``
extra). Queries are deduplicated first (on ICU-Sepsis a rollout of 713 states x 25 plans x 16 samples asks
about at most 713 x 25 distinct (state, action) pairs per step), so every call is vectorised over
patients x candidates x samples; only the horizon steps loop.
"""

from __future__ import annotations

import time
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sepsis_sdk._lazy import require
from sepsis_sdk.actions import N_ACTIONS
from sepsis_sdk.errors import ModelError, UserError
from sepsis_sdk.features import FeatureSchema
from sepsis_sdk.types import PatientHistory
from sepsis_sdk.world_model._base import WorldModelBase, read_saved_model, write_saved_model
from sepsis_sdk.world_model._data import CONTINUE, DEATH, DISCHARGE, cohort_windows
from sepsis_sdk.world_model._protocol import HistoryBatch, NextStatePrediction, Rollout
from sepsis_sdk.world_model._space import Normaliser

FORMAT_VERSION = 1
_CHUNK = 256  # unique query rows per block when drawing the systematic samples of predict()


class NeighbourConfig(BaseModel):
    """Settings of the neighbour world model (saved in ``config.json``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    k: int = Field(50, ge=1, description="training transitions per neighbour set (at least)")
    n_members: int = Field(5, ge=1, description="bootstrap members (resampled patients)")
    target: Literal["auto", "state", "delta"] = "auto"
    action_scale: float = Field(1000.0, gt=0, description="key distance of one action level")
    static_weight: float = Field(1.0, ge=0, description="weight of the static features in the key")
    prior_count: float | None = Field(
        None,
        ge=0,
        description="weight of the state's transitions under any action (None: 5 in 'state' mode, else 0)",
    )
    support_count: float = Field(5.0, gt=0, description="weighted count that gives support 0.5")
    count_scale: float = Field(
        0.0,
        ge=0,
        description="data_counts: kernel width relative to the support bandwidth (0: exact look-alikes only; "
        "measured best for planning on ICU-Sepsis, docs/decisions.md)",
    )
    point: Literal["median", "mean"] = Field(
        "median", description="predict().mean: per-feature median (minimises MAE) or mean"
    )
    predict_samples: int = Field(256, ge=16, description="systematic draws behind predict() quantiles")
    missing_next: Literal["carry", "skip"] = Field(
        "carry",
        description="a neighbour's unobserved next value: carried forward ('carry': shrinks the "
        "prediction towards persistence, measured better on the synthetic cohort) or left out ('skip')",
    )
    recur_share: float = Field(
        0.5, ge=0, le=1, description="target='auto': 'state' when this share of rows repeat a state"
    )
    seed: int = 0


def _make_config(config: NeighbourConfig | None = None, **overrides: Any) -> NeighbourConfig:
    """A :class:`NeighbourConfig` from ``config`` and field overrides; a bad value is a :class:`UserError`."""
    try:
        base = config.model_dump() if config is not None else {}
        return NeighbourConfig(**{**base, **overrides})
    except ValidationError as exc:
        errs = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise UserError(f"neighbour world model: bad config ({errs})") from None


@dataclass(frozen=True)
class _Sets:
    """Neighbour sets of ``U`` distinct queries: retrieved pairs, distances, per-pair fraction used."""

    idx: np.ndarray  # (U, J + 25) pair ids: J same-action pairs, nearest first, then the state's 25
    dist: np.ndarray  # (U, J) distances of the same-action pairs
    frac: np.ndarray  # (U, J + 25) weight of each transition of each pair in the set


class NeighbourWorldModel(WorldModelBase):
    """Replays observed transitions of the nearest training (state, action) pairs; see the module doc.

    Build it with :meth:`fit`; the constructor takes the indexed transitions (what :meth:`load` restores).
    """

    backend = "neighbour"
    config_class = NeighbourConfig
    name = "neighbour"

    def __init__(
        self,
        schema: FeatureSchema,
        config: NeighbourConfig,
        normaliser: Normaliser,
        *,
        keys: np.ndarray,
        trans_key: np.ndarray,
        trans_action: np.ndarray,
        trans_term: np.ndarray,
        next_idx: np.ndarray,
        next_table: np.ndarray,
        weights: np.ndarray,
        mode: str,
        next_observed: np.ndarray | None = None,
        bandwidth: float,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.schema = schema
        self.config = config
        self.window = 1  # the key is the current state (+ static): Markov, as ICU-Sepsis is
        self.normaliser = normaliser
        self.support_index = None
        self.std_scale = np.ones(len(schema))
        self.mode = str(mode)
        self.bandwidth = float(bandwidth)
        self.info = dict(info or {})
        self.keys = np.asarray(keys, dtype=np.float32)  # (n_keys, D + S): z of state, weighted z of static
        self.next_table = np.asarray(next_table, dtype=np.float64)  # (n_next, D) stored next observations
        self._raw = {
            "trans_key": np.asarray(trans_key, dtype=np.int64),
            "trans_action": np.asarray(trans_action, dtype=np.int64),
            "trans_term": np.asarray(trans_term, dtype=np.int64),
            "next_idx": np.asarray(next_idx, dtype=np.int64),
            "weights": np.asarray(weights, dtype=np.int32),
            # (T, D) which next values were observed: a missing one is carried forward in samples and
            # left out of the predicted distribution of that feature
            "next_observed": (
                np.ones((len(trans_term), len(schema)), dtype=bool)
                if next_observed is None
                else np.asarray(next_observed, dtype=bool)
            ),
        }
        self._build()

    # ------------------------------------------------------------------ index
    def _build(self) -> None:
        """Group transitions into (state, action) pairs and precompute per-pair, per-member tallies."""
        nb = require("sklearn.neighbors", "xgboost", "the neighbour world model")
        r = self._raw
        d = len(self.schema)
        m = self.n_members
        nz = self.normaliser
        code = r["trans_key"] * N_ACTIONS + r["trans_action"]
        # sort by pair, then continuing transitions first (so a pair's continuations are one range)
        order = np.lexsort((r["trans_term"] != CONTINUE, code))
        code, term = code[order], r["trans_term"][order]
        self._next_idx = r["next_idx"][order]
        self._next_obs = r["next_observed"][order]
        if self.config.missing_next == "carry":  # a carried-forward value counts as the next value
            self._next_obs = np.ones_like(self._next_obs)
        self._all_observed = bool(self._next_obs.all())
        w = r["weights"][:, order].astype(np.float64)  # (M, T)
        pair_code, start, pair_of = np.unique(code, return_index=True, return_inverse=True)
        n_pairs = len(pair_code)
        self._pair_key = pair_code // N_ACTIONS
        self._pair_action = pair_code % N_ACTIONS
        self._start = start
        is_c, is_d, is_s = term == CONTINUE, term == DEATH, term == DISCHARGE
        self._n_full = np.bincount(pair_of, minlength=n_pairs).astype(np.float64)
        self._n_cont = np.bincount(pair_of, weights=is_c, minlength=n_pairs).astype(np.int64)
        self._n_death = np.bincount(pair_of, weights=is_d, minlength=n_pairs).astype(np.float64)

        def per_member(mask: np.ndarray) -> np.ndarray:
            return np.stack(
                [np.bincount(pair_of, weights=w[j] * mask, minlength=n_pairs) for j in range(m)], 1
            )

        self._cont = per_member(is_c)  # (P, M) weighted continuations
        self._death = per_member(is_d)
        self._dis = per_member(is_s)
        self._cum = np.concatenate([np.zeros((m, 1)), np.cumsum(w * is_c, axis=1)], axis=1)  # (M, T + 1)
        # z of every next observation, computed as a history's current value is (float32)
        with np.errstate(invalid="ignore"):
            self._next_z = nz.to_model(self.next_table).astype(np.float32)
        # what a continuation adds, per member: sums of the target (next z, or its change) and its square
        tz = self._next_z[self._next_idx].astype(np.float64)
        if self.mode == "delta":
            tz = tz - self.keys[self._pair_key[pair_of], :d].astype(np.float64)
        self._sum = np.zeros((n_pairs, m, d), dtype=np.float32)
        self._sumsq = np.zeros((n_pairs, m, d), dtype=np.float32)
        self._nobs = np.zeros((n_pairs, m, d), dtype=np.float32)
        for j in range(m):
            wc = w[j] * is_c
            for c in range(d):
                wo = wc * self._next_obs[:, c]
                self._sum[:, j, c] = np.bincount(pair_of, weights=wo * tz[:, c], minlength=n_pairs)
                self._sumsq[:, j, c] = np.bincount(pair_of, weights=wo * tz[:, c] ** 2, minlength=n_pairs)
                self._nobs[:, j, c] = np.bincount(pair_of, weights=wo, minlength=n_pairs)
        self._pair_points = self._key_space(self.keys[self._pair_key], self._pair_action)
        self._n_query = int(min(n_pairs, self.config.k))
        self._nn = nb.NearestNeighbors(n_neighbors=self._n_query).fit(self._pair_points)
        # the prior: every pair of the nearest distinct state, whatever the action
        n_keys = len(self.keys)
        self._key_pairs = np.full((n_keys, N_ACTIONS), -1, dtype=np.int64)
        self._key_pairs[self._pair_key, self._pair_action] = np.arange(n_pairs)
        self._key_total = np.bincount(self._pair_key, weights=self._n_full, minlength=n_keys)
        self._nn_keys = nb.NearestNeighbors(n_neighbors=1).fit(self.keys.astype(np.float64))
        prior = self.config.prior_count
        self._prior = float(prior if prior is not None else (5.0 if self.mode == "state" else 0.0))
        # exact look-up of training states (a fixed random projection as hash, equality checked)
        self._hvec = np.random.default_rng(7).standard_normal(self.keys.shape[1])
        kh = self.keys.astype(np.float64) @ self._hvec
        self._korder = np.argsort(kh, kind="stable")
        self._khash = kh[self._korder]
        self._table: _Sets | None = None
        if self.mode == "state":  # discrete: tabulate the sets of every (training state, action)
            n_keys = len(self.keys)
            found, inv = self._search(
                np.repeat(self.keys, N_ACTIONS, axis=0), np.tile(np.arange(N_ACTIONS), n_keys)
            )
            self._table = _Sets(found.idx[inv], found.dist[inv], found.frac[inv])

    def _key_space(self, key: np.ndarray, action: np.ndarray) -> np.ndarray:
        lam = self.config.action_scale
        act = np.asarray(action, dtype=np.int64)
        return np.concatenate(
            [np.asarray(key, dtype=np.float64), lam * (act // 5)[:, None], lam * (act % 5)[:, None]], axis=1
        )

    @property
    def n_members(self) -> int:
        return self.config.n_members

    @property
    def n_transitions(self) -> int:
        return len(self._raw["trans_term"])

    # ------------------------------------------------------------------ training
    @classmethod
    def fit(
        cls,
        cohort: Any,
        config: NeighbourConfig | None = None,
        *,
        progress: Callable[[int, int, dict[str, float]], None] | None = None,
        **overrides: Any,
    ) -> NeighbourWorldModel:
        """Index the transitions of a :class:`~sepsis_sdk.Cohort` (split off your test patients first).

        Args:
            cohort: the training cohort.
            config: settings (default :class:`NeighbourConfig`); keyword ``overrides`` replace fields
                (``NeighbourWorldModel.fit(cohort, k=10)``).
            progress: called once with ``(1, 1, {})`` when the index is built (for symmetry with the
                trained backends).

        Raises:
            UserError: an empty cohort, or a bad setting (``k < 1``, ...).
            ModelError: a cohort with no transition of known outcome.
        """
        cfg = _make_config(config, **overrides)
        if cohort is None or not hasattr(cohort, "schema") or not hasattr(cohort, "features"):
            raise UserError(f"neighbour world model: need a Cohort, got {type(cohort).__name__}")
        if len(cohort) == 0:
            raise UserError("neighbour world model: the cohort is empty (no rows to index)")
        t0 = time.perf_counter()
        schema = cohort.schema
        x, mask = cohort.features(), cohort.masks()
        nz = Normaliser.fit(schema, x, mask & np.isfinite(x), cohort.static_matrix())
        data = cohort_windows(cohort, nz, 1)
        keep = np.flatnonzero(data.term >= 0)  # an unknown ending teaches neither a hazard nor a next state
        if not len(keep):
            raise ModelError(
                f"neighbour world model: cohort {cohort.source!r} has no transition of known outcome"
            )
        data = data.take(keep)
        d = len(schema)
        cur_z = data.inputs.last.astype(np.float32)
        key = np.concatenate([cur_z, (cfg.static_weight * data.inputs.s).astype(np.float32)], axis=1)
        keys, trans_key = np.unique(key, axis=0, return_inverse=True)
        trans_key = trans_key.ravel()
        # next observation: observed values, else the neighbour's own current value (carried forward)
        cur_stored = np.where(np.isfinite(data.current_stored), data.current_stored, nz.to_stored(cur_z))
        nxt = np.where(data.target_mask, data.next_stored, cur_stored)
        next_table, next_idx = np.unique(nxt, axis=0, return_inverse=True)
        n_distinct = len(keys)
        mode = cfg.target
        if mode == "auto":
            recur = np.bincount(trans_key, minlength=n_distinct)[trans_key] > 1
            mode = "state" if recur.mean() >= cfg.recur_share else "delta"
        # bootstrap members: resample patients; member weights are the times each patient was drawn
        rng = np.random.default_rng(cfg.seed)
        eps, ep_of = np.unique(data.episode, return_inverse=True)
        if cfg.n_members == 1:
            weights = np.ones((1, len(data)), dtype=np.int32)
        else:
            draws = [
                np.bincount(rng.integers(0, len(eps), len(eps)), minlength=len(eps))
                for _ in range(cfg.n_members)
            ]
            weights = np.stack([c[ep_of] for c in draws]).astype(np.int32)
        bandwidth = _spacing(keys[:, :d], rng)
        model = cls(
            schema,
            cfg,
            nz,
            keys=keys,
            trans_key=trans_key,
            trans_action=data.inputs.act[:, -1],
            trans_term=data.term,
            next_idx=next_idx.ravel(),
            next_table=next_table,
            weights=weights,
            mode=mode,
            next_observed=data.target_mask | (data.term != CONTINUE)[:, None],
            bandwidth=bandwidth,
        )
        model.info = {
            "train_rows": int(len(data)),
            "train_patients": int(len(eps)),
            "distinct_states": int(n_distinct),
            "pairs": int(len(model._n_full)),
            "target": mode,
            "bandwidth": round(bandwidth, 6),
            "source": cohort.source,
            "seconds": round(time.perf_counter() - t0, 2),
            "device": "cpu",
        }
        if progress is not None:
            progress(1, 1, {})
        return model

    # ------------------------------------------------------------------ queries
    def _query_keys(self, hb: HistoryBatch) -> np.ndarray:
        """``(B, D + S)`` float32 keys of the current states (the same pipeline as the training keys)."""
        inp = self._inputs(hb)
        s = (self.config.static_weight * inp.s).astype(np.float32)
        return np.concatenate([inp.last.astype(np.float32), s], axis=1)

    def _sets(self, key: np.ndarray, action: np.ndarray) -> tuple[_Sets, np.ndarray]:
        """Neighbour sets of the distinct (key, action) rows among the queries, and each query's row.

        On discrete data (``"state"`` mode) the sets of every (training state, action) are tabulated
        when the model is built, so a query whose state is a training state (every step of a rollout
        after the first) is a table look-up; the others are searched.
        """
        key = np.asarray(key, dtype=np.float32)
        action = np.asarray(action, dtype=np.int64)
        if self._table is None:
            return self._search(key, action)
        kid = self._exact_key(key)
        hit = kid >= 0
        inv = np.empty(len(key), dtype=np.int64)
        parts: list[_Sets] = []
        if hit.any():
            ucode, cinv = np.unique(kid[hit] * N_ACTIONS + action[hit], return_inverse=True)
            t = self._table
            parts.append(_Sets(t.idx[ucode], t.dist[ucode], t.frac[ucode]))
            inv[hit] = cinv.ravel()
        if (~hit).any():
            found, ginv = self._search(key[~hit], action[~hit])
            inv[~hit] = ginv + (len(parts[0].idx) if parts else 0)
            parts.append(found)
        if len(parts) == 1:
            return parts[0], inv
        return _Sets(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("idx", "dist", "frac"))), inv

    def _exact_key(self, key: np.ndarray) -> np.ndarray:
        """Index of the training state equal (bit for bit) to each query key, or -1."""
        h = key.astype(np.float64) @ self._hvec
        pos = np.minimum(np.searchsorted(self._khash, h), len(self._khash) - 1)
        cand = self._korder[pos]
        ok = (self._khash[pos] == h) & (self.keys[cand] == key).all(1)
        return np.where(ok, cand, -1)

    def _search(self, key: np.ndarray, action: np.ndarray) -> tuple[_Sets, np.ndarray]:
        """:meth:`_sets` by nearest-neighbour search (distinct query rows first)."""
        q = self._key_space(key, action)
        uq, inv = np.unique(q, axis=0, return_inverse=True)
        dist, idx = self._nn.kneighbors(uq, n_neighbors=self._n_query)
        n = self._n_full[idx]
        prev = np.cumsum(n, axis=1) - n
        eff = np.clip(self.config.k - prev, 0.0, n)
        eff[:, 0] = n[:, 0]  # all of the nearest pair (the counted model where it holds >= k transitions)
        frac = eff / n * self._kernel(dist)  # a look-alike further away counts less
        # prior: the nearest state's transitions under every action, total weight prior_count, so an
        # action seldom or never given in this state leans on what happened here under the others
        dk, kq = self._nn_keys.kneighbors(uq[:, : self.keys.shape[1]], n_neighbors=1)
        pp = self._key_pairs[kq[:, 0]]  # (U, 25)
        w = self._prior * self._kernel(dk) / self._key_total[kq[:, 0], None]
        pfrac = np.where(pp >= 0, w, 0.0)
        return _Sets(
            np.concatenate([idx, np.maximum(pp, 0)], 1), dist, np.concatenate([frac, pfrac], 1)
        ), inv.ravel()

    def _kernel(self, dist: np.ndarray) -> np.ndarray:
        """Weight of a look-alike at ``dist``: ``exp(-(d / h)^2)``, floored (no underflow to 0)."""
        return np.exp(-np.minimum((dist / self.bandwidth) ** 2, 25.0))

    def _tallies(self, sets: _Sets, moments: bool = True) -> dict[str, np.ndarray]:
        """Per distinct query and member: hazards, continuation weight, mean (and variance) of the target.

        The sets are one sparse ``(U, pairs)`` weight matrix, so every tally is a sparse-dense product
        (no ``(U, J, M, D)`` temporary). ``moments=False`` skips the variance (rollouts need only means).
        """
        sparse = require("scipy.sparse", "xgboost", "the neighbour world model")
        u, jj = sets.idx.shape
        n_pairs = len(self._n_full)
        w = sparse.csr_matrix(
            (sets.frac.ravel(), (np.repeat(np.arange(u), jj), sets.idx.ravel())), shape=(u, n_pairs)
        )
        m = self.n_members
        d = len(self.schema)
        cont = w @ self._cont  # (U, M)
        death = w @ self._death
        dis = w @ self._dis
        tot = cont + death + dis
        # a member whose resample dropped every transition of the set falls back to the full data
        fc = w @ self._cont.mean(1)
        fd = w @ self._death.mean(1)
        fs = w @ self._dis.mean(1)
        empty = tot <= 0
        tot_f = np.maximum(fc + fd + fs, 1e-12)[:, None]
        p_death = np.where(empty, fd[:, None] / tot_f, death / np.maximum(tot, 1e-12))
        p_dis = np.where(empty, fs[:, None] / tot_f, dis / np.maximum(tot, 1e-12))
        nobs = np.asarray(w @ self._nobs.reshape(n_pairs, m * d), dtype=np.float64).reshape(u, m, d)
        c = np.maximum(nobs, 1e-12)
        mu = np.asarray(w @ self._sum.reshape(n_pairs, m * d), dtype=np.float64).reshape(u, m, d) / c
        out = {
            "p_death": np.clip(p_death, 0.0, 1.0),
            "p_discharge": np.clip(p_dis, 0.0, 1.0),
            "cont": cont,
            "mu": mu,
            "nobs": nobs,
        }
        if moments:
            s2 = np.asarray(w @ self._sumsq.reshape(n_pairs, m * d), dtype=np.float64).reshape(u, m, d)
            out["var"] = np.maximum(s2 / c - mu**2, 0.0)
        return out

    def _support_sets(self, sets: _Sets) -> np.ndarray:
        kern = np.exp(-((sets.dist / self.bandwidth) ** 2))
        n = (self._n_full[sets.idx[:, : sets.dist.shape[1]]] * kern).sum(1)
        return n / (n + self.config.support_count)

    def _draw(
        self, sets: _Sets, rows: np.ndarray, member: np.ndarray, u_pair: np.ndarray, u_in: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """One continuation per query: ``(transition index or -1, pair id)`` for set rows ``rows``."""
        idx = sets.idx[rows]  # (R, J)
        wts = sets.frac[rows] * self._cont[idx, member[:, None]]
        cum = np.cumsum(wts, axis=1)
        total = cum[:, -1]
        j = np.minimum((cum < (u_pair * total)[:, None]).sum(1), idx.shape[1] - 1)
        pair = idx[np.arange(len(rows)), j]
        start = self._start[pair]
        stop = start + self._n_cont[pair]
        lo_w = self._cum[member, start]
        hi_w = self._cum[member, stop]
        target = lo_w + u_in * (hi_w - lo_w)
        t = np.empty(len(rows), dtype=np.int64)
        for mm in np.unique(member):  # searchsorted per member (at most n_members calls)
            sel = member == mm
            t[sel] = np.searchsorted(self._cum[mm], target[sel], side="right") - 1
        t = np.clip(t, start, np.maximum(stop - 1, start))
        t = np.where(total > 0, t, -1)
        return t, pair

    def _next_from(self, t: np.ndarray, pair: np.ndarray, zq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stored and model-space next states for drawn transitions ``t`` from query states ``zq``."""
        nz = self.normaliser
        d = len(self.schema)
        ok = t >= 0
        ti = np.where(ok, t, 0)
        if self.mode == "state":
            z = np.where(ok[:, None], self._next_z[self._next_idx[ti]], zq)
            stored = np.where(ok[:, None], self.next_table[self._next_idx[ti]], nz.to_stored(zq))
            return np.clip(stored, nz.lower, nz.upper), z.astype(np.float32)
        delta = self._next_z[self._next_idx[ti]] - self.keys[self._pair_key[pair], :d]
        z = np.clip(zq.astype(np.float64) + np.where(ok[:, None], delta, 0.0), nz.z_lower, nz.z_upper)
        return nz.to_stored(z), z.astype(np.float32)

    # ------------------------------------------------------------------ finite support (exact planning)
    @property
    def has_finite_support(self) -> bool:
        """True in ``"state"`` mode without static features: next states are observed rows (exact values)."""
        from sepsis_sdk.world_model._neighbour_support import has_finite_support

        return has_finite_support(self)

    def support_batch(self) -> HistoryBatch:
        """The observed next observations as one-step histories (see ``FiniteSupportModel``)."""
        from sepsis_sdk.world_model._neighbour_support import support_batch

        return support_batch(self)

    def transition_triplets(
        self, batch: HistoryBatch, member: int = 0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The model's next-state law of every (patient, action) as sparse triplets (``FiniteSupportModel``)."""
        from sepsis_sdk.world_model._neighbour_support import transition_triplets

        return transition_triplets(self, batch, member)

    def point_triplets(self, batch: HistoryBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`transition_triplets` of the full data (no bootstrap resampling): the point estimate."""
        from sepsis_sdk.world_model._neighbour_support import transition_triplets

        return transition_triplets(self, batch, None)

    # ------------------------------------------------------------------ the protocol
    def predict(
        self, histories: HistoryBatch | Sequence[PatientHistory], actions: Any
    ) -> NextStatePrediction:
        """Next-state distribution of each patient ``b`` under ``actions[b]`` (0-24; a scalar is shared).

        ``mean`` is the per-feature median of the neighbour distribution (``point="mean"``: its mean);
        ``lower``/``upper`` its 5 %/95 % points; ``std`` the members' mixture SD and ``epistemic_std`` the
        spread of the members' means (model space, mapped through the local slope); ``p_death``/
        ``p_discharge`` the members' mean shares of transitions that ended so. Quantiles come from
        ``predict_samples`` systematic draws with fixed random numbers, so they do not depend on the batch.
        """
        hb = self._as_batch(histories)
        a = self._check_actions(actions, hb.size)
        if a.shape != (hb.size,):
            raise ModelError(f"{self.name}: need one action per patient ({hb.size}), got shape {a.shape}")
        key = self._query_keys(hb)
        return self._predict_keys(key, a)

    def _predict_keys(self, key: np.ndarray, a: np.ndarray) -> NextStatePrediction:
        sets, inv = self._sets(key, a)
        # distinct rows: the first query of each
        first = np.zeros(len(sets.idx), dtype=np.int64)
        first[inv[::-1]] = np.arange(len(inv))[::-1]
        tal = self._tallies(sets)
        d = len(self.schema)
        zq = key[first, :d]
        nz = self.normaliser
        mu, var = tal["mu"], tal["var"]  # (U, M, D) of the target
        if self.mode == "delta":
            mu = mu + zq[:, None, :].astype(np.float64)
        has = tal["cont"] > 0
        # a member (or feature) with no observed continuation: the current value carries forward
        seen = tal["nobs"] > 0
        mu = np.where(seen, mu, zq[:, None, :])
        var = np.where(seen, var, 0.0)
        w = np.where(has, 1.0, 0.0)
        w = np.where(w.sum(1, keepdims=True) > 0, w, 1.0)
        w = w / w.sum(1, keepdims=True)
        zmean = (w[..., None] * mu).sum(1)
        epi = np.sqrt((w[..., None] * (mu - zmean[:, None]) ** 2).sum(1))
        sd = np.sqrt((w[..., None] * var).sum(1) + epi**2)
        lower, upper, med = self._quantiles(sets, zq)
        if self.config.point == "median":
            point = med
            zpoint = nz.to_model(point)
        else:
            zpoint = np.clip(zmean, nz.z_lower, nz.z_upper)
            point = nz.to_stored(zpoint)
        lower, upper = np.minimum(lower, point), np.maximum(upper, point)
        slope = nz.stored_slope(np.clip(zpoint, nz.z_lower, nz.z_upper))
        sup = self._support_sets(sets)
        return NextStatePrediction(
            mean=point[inv],
            std=(sd * slope)[inv],
            epistemic_std=(epi * slope)[inv],
            lower=lower[inv],
            upper=upper[inv],
            p_death=tal["p_death"].mean(1)[inv],
            p_discharge=tal["p_discharge"].mean(1)[inv],
            support=sup[inv],
        )

    def _quantiles(self, sets: _Sets, zq: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """5 %, 95 % and 50 % points (stored space) of each distinct query's next state, from draws."""
        s = self.config.predict_samples
        m = self.n_members
        rng = np.random.default_rng(20240517)  # fixed: the same draws for every query and call
        u_pair = (np.arange(s) + rng.random(s)) / s
        u_in = rng.random(s)
        member = np.arange(s) % m
        u = len(sets.idx)
        d = len(self.schema)
        out = np.empty((3, u, d))
        for lo in range(0, u, _CHUNK):
            rows = np.arange(lo, min(u, lo + _CHUNK))
            rr = np.repeat(rows, s)
            t, pair = self._draw(
                sets, rr, np.tile(member, len(rows)), np.tile(u_pair, len(rows)), np.tile(u_in, len(rows))
            )
            stored, _ = self._next_from(t, pair, np.repeat(zq[rows], s, axis=0))
            stored = stored.reshape(len(rows), s, d)
            if self._all_observed:
                out[:, rows] = np.quantile(stored, [0.05, 0.95, 0.5], axis=1)
                continue
            obs = (self._next_obs[np.maximum(t, 0)] & (t >= 0)[:, None]).reshape(len(rows), s, d)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-missing features: handled below
                q = np.nanquantile(np.where(obs, stored, np.nan), [0.05, 0.95, 0.5], axis=1)
            out[:, rows] = np.where(np.isfinite(q), q, stored[:, 0][None])
        return out[0], out[1], out[2]

    def support(self, histories: HistoryBatch | Sequence[PatientHistory], actions: Any) -> np.ndarray:
        """``(B,)`` how well the training transitions cover (current state, action): see the module doc."""
        hb = self._as_batch(histories)
        a = self._check_actions(actions, hb.size)
        if a.shape != (hb.size,):
            raise ModelError(f"{self.name}: need one action per patient ({hb.size}), got shape {a.shape}")
        sets, inv = self._sets(self._query_keys(hb), a)
        return self._support_sets(sets)[inv]

    def support_all(self, histories: HistoryBatch | Sequence[PatientHistory]) -> np.ndarray:
        """``(B, 25)`` support of every action for each patient (one batched neighbour search)."""
        hb = self._as_batch(histories)
        key = self._query_keys(hb)
        b = len(key)
        sets, inv = self._sets(np.repeat(key, N_ACTIONS, axis=0), np.tile(np.arange(N_ACTIONS), b))
        return self._support_sets(sets)[inv].reshape(b, N_ACTIONS)

    def data_counts(self, histories: HistoryBatch | Sequence[PatientHistory]) -> np.ndarray:
        """``(B, 25)`` training transitions in each (state, action)'s neighbour set, weighted by distance.

        What pessimistic planning divides its penalty by (:mod:`sepsis_sdk.world_model.optimize`). An exact
        look-alike counts 1 and one at distance ``d`` counts ``exp(-(d / (count_scale * h))^2)``
        (``count_scale=0``: exact look-alikes only); on ICU-Sepsis, with ``k=1`` it is the plain count of
        (state, action) in the training cohort wherever the pair was seen (checked in the tests).
        """
        hb = self._as_batch(histories)
        key = self._query_keys(hb)
        b = len(key)
        sets, inv = self._sets(np.repeat(key, N_ACTIONS, axis=0), np.tile(np.arange(N_ACTIONS), b))
        jj = sets.dist.shape[1]  # the same-action part of each set (the prior's pairs are not this action)
        scale = self.config.count_scale * self.bandwidth
        if scale > 0:
            kern = np.exp(-np.minimum((sets.dist / scale) ** 2, 700.0))
        else:  # exact look-alikes only (float32 keys: distance below 1e-6)
            kern = (sets.dist < 1e-6).astype(np.float64)
        n = (self._n_full[sets.idx[:, :jj]] * sets.frac[:, :jj] * kern).sum(1)
        return n[inv].reshape(b, N_ACTIONS)

    def rollout(
        self,
        histories: HistoryBatch | Sequence[PatientHistory],
        plans: Any,
        *,
        n_samples: int = 8,
        seed: int = 0,
        noise: bool = True,
    ) -> Rollout:
        """Simulate action plans for every patient, all at once (see :meth:`WorldModelBase.rollout`).

        Each step, every sample draws one member, then one continuation of its neighbour set (a training
        transition's next observation, or its change in ``"delta"`` mode), and terminates with the
        members' mean hazards. ``p_death``/``p_discharge`` integrate the hazards along each sampled path.
        ``noise=False`` gives the central path: each step moves to the predicted per-feature median (or
        mean) and nobody is sampled to terminate.
        """
        hb = self._as_batch(histories)
        b = hb.size
        p = self._check_actions(plans, 0, "plans")
        if p.ndim == 1:
            p = p[None, None, :]
        if p.ndim == 2:
            p = np.broadcast_to(p[None], (b, *p.shape))
        if p.ndim != 3 or p.shape[0] != b or p.shape[1] < 1 or p.shape[2] < 1:
            raise ModelError(
                f"{self.name}: plans must be (B={b}, K, H), (K, H) or (H,), got shape {np.shape(plans)}"
            )
        if int(n_samples) < 1:
            raise ModelError(f"{self.name}: n_samples must be >= 1, got {n_samples}")
        k, h_len, n = p.shape[1], p.shape[2], int(n_samples)
        d = len(self.schema)
        r = b * k * n
        key0 = self._query_keys(hb)
        first_support = self.support_all(hb)[np.arange(b)[:, None], p[:, :, 0]]
        key = np.repeat(key0, k * n, axis=0)  # rows ordered (b, k, n)
        plan_rows = np.repeat(p.reshape(b * k, h_len), n, axis=0)
        u, member = self._streams(hb, seed, k * n, h_len)
        nz = self.normaliser
        states = np.full((r, h_len, d), np.nan)
        epi_path = np.full((r, h_len, d), np.nan)
        alive_hist = np.zeros((r, h_len), dtype=bool)
        alive = np.ones(r, dtype=bool)
        ended = np.zeros(r, dtype=np.int8)
        surv = np.ones(r)
        pd_acc = np.zeros(r)
        pc_acc = np.zeros(r)
        for t in range(h_len):
            # a sample that ended stays ended: only the rest are simulated (noise=False: nobody ends)
            live = np.flatnonzero(alive)
            if not len(live):
                break
            zq = key[live, :d]
            a = plan_rows[live, t]
            sets, inv = self._sets(key[live], a)
            tal = self._tallies(sets, moments=False)
            mem = member[live, t] % self.n_members
            pdth = tal["p_death"].mean(1)[inv]
            pdis = np.minimum(tal["p_discharge"].mean(1)[inv], 1.0 - pdth)
            if noise:
                tr, pair = self._draw(sets, inv, mem, u[live, t, 0], u[live, t, 1])
                stored, znew = self._next_from(tr, pair, zq)
            else:
                pred = self._predict_keys(key[live], a)
                stored = pred.mean
                with np.errstate(invalid="ignore"):
                    znew = nz.to_model(stored).astype(np.float32)
            epi_path[live, t] = self._disagreement(sets, inv, zq, tal)
            pd_acc[live] += surv[live] * pdth
            pc_acc[live] += surv[live] * pdis
            surv[live] = surv[live] * (1.0 - pdth - pdis)
            uu = u[live, t, 2]
            died = (uu < pdth) & noise
            left = ~died & (uu < pdth + pdis) & noise
            ended[live[died]] = 1
            ended[live[left]] = 2
            alive[live[died | left]] = False
            alive_hist[:, t] = alive
            go = live[~(died | left)]
            states[go, t] = stored[~(died | left)]
            key[live, :d] = znew
        return Rollout.from_paths(
            states, alive_hist, epi_path, pd_acc, pc_acc, ended, (b, k, n), first_support, p
        )

    def _disagreement(self, sets: _Sets, inv: np.ndarray, zq: np.ndarray, tal: dict[str, np.ndarray]) -> Any:
        """Spread of the members' mean next states (stored space) for each live row: the path's disagreement.

        Per distinct query: its rows share the state, so the state of its first row stands in.
        """
        if self.n_members <= 1:
            return 0.0
        nz = self.normaliser
        first = np.empty(len(sets.idx), dtype=np.int64)
        first[inv[::-1]] = np.arange(len(inv))[::-1]
        zu = zq[first][:, None, :].astype(np.float64)
        mu = tal["mu"] + (zu if self.mode == "delta" else 0.0)
        mu = np.where(tal["nobs"] > 0, mu, zu)
        return nz.to_stored(np.clip(mu, nz.z_lower, nz.z_upper)).std(1)[inv]

    def _streams(self, hb: HistoryBatch, seed: int, kn: int, h: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-patient uniforms ``(R, H, 3)`` and member draws ``(R, H)``, keyed by seed and history."""
        b = hb.size
        u = np.empty((b, kn, h, 3))
        member = np.empty((b, kn, h), dtype=np.int64)
        for i in range(b):  # one generator per patient (not per step): futures do not depend on the batch
            key = zlib.crc32(np.ascontiguousarray(np.nan_to_num(hb.x[i], nan=-999.0)).tobytes())
            key = zlib.crc32(np.ascontiguousarray(hb.actions[i]).tobytes(), key)
            key = zlib.crc32(np.ascontiguousarray(np.nan_to_num(hb.static[i], nan=-999.0)).tobytes(), key)
            rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, key])
            u[i] = rng.random((kn, h, 3))
            member[i] = rng.integers(0, 1 << 30, (kn, h))
        return u.reshape(b * kn, h, 3), member.reshape(b * kn, h)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write ``config.json`` and ``transitions.npz`` (the indexed transitions) into ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        np.savez(path / "transitions.npz", keys=self.keys, next_table=self.next_table, **self._raw)
        write_saved_model(self, path, self.backend, FORMAT_VERSION, mode=self.mode, bandwidth=self.bandwidth)
        return path

    @classmethod
    def load(cls, path: str | Path) -> NeighbourWorldModel:
        """Load a model written by :meth:`save` (the neighbour index is rebuilt: identical predictions)."""
        path = Path(path)
        raw, schema, nz, _sup = read_saved_model(path, cls.backend)
        cfg = NeighbourConfig.model_validate(raw["config"])
        f = path / "transitions.npz"
        if not f.exists():
            raise ModelError(f"{path}: no transitions.npz (incomplete neighbour world model)")
        with np.load(f, allow_pickle=False) as arrs:
            a = {k: arrs[k] for k in arrs.files}
        return cls(
            schema,
            cfg,
            nz,
            keys=a["keys"],
            trans_key=a["trans_key"],
            trans_action=a["trans_action"],
            trans_term=a["trans_term"],
            next_idx=a["next_idx"],
            next_table=a["next_table"],
            weights=a["weights"],
            mode=raw["mode"],
            next_observed=a.get("next_observed"),
            bandwidth=raw["bandwidth"],
            info=raw.get("info"),
        )


def _spacing(z: np.ndarray, rng: np.random.Generator, n_probe: int = 2000) -> float:
    """Median distance from a distinct training state to its nearest other one (the kernel bandwidth)."""
    if len(z) < 2:
        return 1.0
    nb = require("sklearn.neighbors", "xgboost", "the neighbour world model")
    probe = z[rng.choice(len(z), min(n_probe, len(z)), replace=False)]
    dist, _ = nb.NearestNeighbors(n_neighbors=2).fit(z).kneighbors(probe)
    med = float(np.median(dist[:, 1]))
    return med if med > 1e-9 else 1.0


__all__ = ["NeighbourConfig", "NeighbourWorldModel"]
