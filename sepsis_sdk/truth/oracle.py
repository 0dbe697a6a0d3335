"""``OracleWorldModel``: the true ICU-Sepsis dynamics behind the :class:`~sepsis_sdk.world_model.WorldModel` API.

It exists to **validate planners**: with the true dynamics plugged in, a planner's value measures its own
code (scoring rule, continuation, pessimism), not a learned model's errors. It reads the transition
matrix, so it lives in the truth layer, and **learning code never imports it** (a test checks that no
module outside ``sepsis_sdk.truth`` and the benchmarks does).

The model is Markov in the observation: it maps the current observation (the 48 stored features of an
ICU-Sepsis state) back to its state by exact match, and its next state is one of the 713 clinical states
(or death / discharge). It implements :class:`~sepsis_sdk.world_model.value.FiniteSupportModel`, so
:func:`~sepsis_sdk.world_model.value.action_values` computes exact closed-loop values with it, and it
samples (``rollout``, ``sample_next``) for the Monte-Carlo path. Its ``support`` is 1 everywhere: it has no
training data, it *is* the truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sepsis_sdk._rowindex import RowIndex
from sepsis_sdk.errors import ModelError
from sepsis_sdk.sources.icu_sepsis import DEATH, N_ACTIONS, N_CLINICAL, SURVIVAL, icu_sepsis_schema, load_mdp
from sepsis_sdk.world_model import HistoryBatch, NextStatePrediction, Rollout

_M = N_CLINICAL  # support states; column M = death, M + 1 = discharge alive


class OracleWorldModel:
    """The exact ICU-Sepsis dynamics as a world model (validation only; see the module docstring).

    Example:
        >>> from sepsis_sdk.truth.oracle import OracleWorldModel
        >>> wm = OracleWorldModel()
        >>> p = wm.predict(wm.support_batch(), np.zeros(713, dtype=int))
        >>> bool(np.allclose(p.p_death + p.p_discharge <= 1.0, True))
        True
    """

    name = "oracle"
    window = 1
    n_members = 1

    def __init__(self) -> None:
        mdp = load_mdp()
        self.schema = icu_sepsis_schema()
        self._obs = mdp.observation(np.arange(N_CLINICAL))  # (713, 48)
        self._index = RowIndex(self._obs)
        tx = mdp.tx_mat[:N_CLINICAL]  # (713, 25, 716)
        self._next = np.concatenate([tx[..., :N_CLINICAL], tx[..., [DEATH]], tx[..., [SURVIVAL]]], -1)
        self._p_death = np.ascontiguousarray(tx[..., DEATH])  # (713, 25): read per step without the rows
        self._p_discharge = np.ascontiguousarray(tx[..., SURVIVAL])
        # Global offset CDF over the stay-states of every (s, a): one searchsorted samples any rows.
        stay = tx[..., :N_CLINICAL]
        mass = stay.sum(-1, keepdims=True)
        cond = np.where(mass > 0, stay / np.where(mass > 0, mass, 1.0), 1.0 / N_CLINICAL)
        self._cdf = (
            np.cumsum(cond, -1) + np.arange(N_CLINICAL * N_ACTIONS).reshape(N_CLINICAL, N_ACTIONS, 1)
        ).ravel()

    # ------------------------------------------------------------------ states
    def state_of(self, x: np.ndarray) -> np.ndarray:
        """Hidden state of each ``(n, 48)`` observation row (exact match).

        Raises:
            ModelError: a row that is not the observation of an ICU-Sepsis clinical state.
        """
        out = self._index.index(np.asarray(x, dtype=np.float64))
        if (out < 0).any():
            i = int(np.flatnonzero(out < 0)[0])
            raise ModelError(f"oracle: row {i} is not the observation of an ICU-Sepsis clinical state")
        return out

    def _states(self, batch: HistoryBatch) -> np.ndarray:
        return self.state_of(np.where(batch.mask[:, -1], batch.x[:, -1], np.nan))

    # ------------------------------------------------------------------ WorldModel protocol
    def batch(self, histories: Sequence[Any] | HistoryBatch) -> HistoryBatch:
        """One-step batch of the current observations (the oracle is Markov)."""
        if isinstance(histories, HistoryBatch):
            return histories
        hs = list(histories)
        if not hs:
            raise ModelError("oracle: empty batch of histories")
        x = np.array([h.current.values for h in hs], dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.schema):
            raise ModelError(f"oracle: histories must have {len(self.schema)} features, got shape {x.shape}")
        return self._batch_of(x)

    def _batch_of(self, x: np.ndarray) -> HistoryBatch:
        return HistoryBatch.from_observations(x)

    def support_batch(self) -> HistoryBatch:
        """The 713 clinical states as one-step histories."""
        return self._batch_of(self._obs.copy())

    def transition_triplets(
        self, batch: HistoryBatch, member: int = 0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sparse next-state distribution of every (row, action): see ``FiniteSupportModel``."""
        s = self._states(batch)
        t = self._next[s].reshape(len(s) * N_ACTIONS, _M + 2)
        rows, cols = np.nonzero(t)
        return rows, cols, t[rows, cols]

    def predict(self, histories: HistoryBatch, actions: np.ndarray) -> NextStatePrediction:
        """Moments of the next observation given the patient stays, and the death/discharge probabilities."""
        s = self._states(histories)
        a = np.asarray(actions, dtype=np.int64).reshape(-1)
        p = self._next[s, a]  # (B, M + 2)
        stay = p[:, :_M]
        w = stay / np.maximum(stay.sum(1, keepdims=True), 1e-12)
        mean = w @ self._obs
        std = np.sqrt(np.maximum(w @ self._obs**2 - mean**2, 0.0))
        order = np.argsort(self._obs, axis=0)  # (M, D): weighted 5 % / 95 % quantiles per feature
        sorted_obs = np.take_along_axis(self._obs, order, 0)
        lo_i = np.empty(mean.shape, dtype=np.int64)
        hi_i = np.empty(mean.shape, dtype=np.int64)
        for lo in range(0, len(w), 256):  # (256, M, D) cumulative weights at a time, not (B, M, D)
            cw = np.cumsum(w[lo : lo + 256][:, order], axis=1)
            lo_i[lo : lo + 256] = (cw < 0.05).sum(1).clip(0, _M - 1)
            hi_i[lo : lo + 256] = (cw < 0.95).sum(1).clip(0, _M - 1)
        cols = np.arange(self._obs.shape[1])
        return NextStatePrediction(
            mean=mean,
            std=std,
            epistemic_std=np.zeros_like(mean),
            lower=sorted_obs[lo_i, cols[None, :]],
            upper=sorted_obs[hi_i, cols[None, :]],
            p_death=p[:, _M],
            p_discharge=p[:, _M + 1],
            support=np.ones(len(s)),
        )

    def support(self, histories: HistoryBatch | Sequence[Any], actions: Any) -> np.ndarray:
        """1 everywhere: the oracle needs no data."""
        hb = self.batch(histories)
        return np.ones(hb.size)

    def data_counts(self, histories: HistoryBatch | Sequence[Any]) -> np.ndarray:
        """Infinite everywhere: the true dynamics carry no data uncertainty (no pessimism applies)."""
        return np.full((self.batch(histories).size, N_ACTIONS), np.inf)

    def _draw_stay(self, s: np.ndarray, a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        row = s * N_ACTIONS + a
        idx = np.searchsorted(self._cdf, row + rng.random(len(row)), side="right") - row * N_CLINICAL
        return np.clip(idx, 0, N_CLINICAL - 1)

    def sample_next(
        self, batch: HistoryBatch, actions: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A next observation given the patient stays, with the step's death / discharge probabilities."""
        s = self._states(batch)
        a = np.asarray(actions, dtype=np.int64).reshape(-1)
        return self._obs[self._draw_stay(s, a, rng)], self._p_death[s, a], self._p_discharge[s, a]

    def rollout(
        self,
        histories: HistoryBatch | Sequence[Any],
        plans: Any,
        *,
        n_samples: int = 8,
        seed: int = 0,
        noise: bool = True,
    ) -> Rollout:
        """Sampled futures of open-loop plans in the true MDP (hazards integrated along each path)."""
        hb = self.batch(histories)
        b = hb.size
        p = np.asarray(plans, dtype=np.int64)
        if p.ndim == 1:
            p = p[None, None, :]
        if p.ndim == 2:
            p = np.broadcast_to(p[None], (b, *p.shape))
        if p.ndim != 3 or p.shape[0] != b or p.min() < 0 or p.max() >= N_ACTIONS:
            raise ModelError(f"oracle: plans must be (B={b}, K, H) action indices 0-24, got shape {p.shape}")
        k, h, n = p.shape[1], p.shape[2], int(n_samples)
        if n < 1:
            raise ModelError(f"oracle: n_samples must be >= 1, got {n}")
        rng = np.random.default_rng(seed)
        r = b * k * n
        s = np.repeat(self._states(hb), k * n)
        acts = np.repeat(p.reshape(b * k, h), n, 0)
        d = self._obs.shape[1]
        states = np.full((r, h, d), np.nan)
        alive_hist = np.zeros((r, h), dtype=bool)
        alive = np.ones(r, dtype=bool)
        ended = np.zeros(r, dtype=np.int8)
        surv = np.ones(r)
        pd_acc = np.zeros(r)
        pq_acc = np.zeros(r)
        for t in range(h):
            pdth, pdis = self._p_death[s, acts[:, t]], self._p_discharge[s, acts[:, t]]
            pd_acc += surv * pdth
            pq_acc += surv * pdis
            surv = surv * (1.0 - pdth - pdis)
            if noise:
                u = rng.random(r)
                died, left = u < pdth, (u >= pdth) & (u < pdth + pdis)
                ended[alive & died] = 1
                ended[alive & left] = 2
                alive = alive & ~died & ~left
                s = self._draw_stay(s, acts[:, t], rng)
            else:
                s = np.argmax(self._next[s, acts[:, t], :_M], 1)
            alive_hist[:, t] = alive
            states[:, t] = np.where(alive[:, None], self._obs[s], np.nan)
        return Rollout.from_paths(
            states, alive_hist, np.zeros_like(states), pd_acc, pq_acc, ended, (b, k, n), np.ones((b, k)), p
        )


__all__ = ["OracleWorldModel"]
