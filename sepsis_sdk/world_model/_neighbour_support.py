"""The neighbour world model as a finite-support model: its next-state law as sparse transition triplets.

In ``"state"`` mode (discrete observations, as on ICU-Sepsis) the neighbour model's next observation is
always one of the training cohort's observed next observations (``next_table``), so its predictive law
is a finite distribution. Written out, it lets :func:`~sepsis_sdk.world_model.value.action_values` compute
closed-loop values **exactly** under the model (no Monte-Carlo noise), one value per bootstrap member.

For a query ``(s, a)`` and member ``m`` the model samples a pair ``j`` of its neighbour set with probability
proportional to ``frac_j * cont_m(pair_j)``, then one of that pair's continuing transitions ``t`` with
probability proportional to the member's weight ``w_m(t)``; it terminates with the member's death /
discharge shares. So ``P(next = next_table[next_idx[t]]) = (1 - p_death - p_discharge) * frac_j * w_m(t) /
sum_j frac_j cont_m(pair_j)`` — the same numbers ``rollout`` samples from.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sepsis_sdk.actions import N_ACTIONS
from sepsis_sdk.world_model._protocol import HistoryBatch


def has_finite_support(model: Any) -> bool:
    """True when the model's next states are observed rows (``"state"`` mode, no static features)."""
    return getattr(model, "mode", None) == "state" and not len(model.schema.static)


def support_batch(model: Any) -> HistoryBatch:
    """The model's observed next observations as one-step histories."""
    return HistoryBatch.from_observations(model.next_table)


def _ranges(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(start, start + len)`` for every pair (vectorised)."""
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offs = np.cumsum(lens) - lens
    return np.repeat(starts - offs, lens) + np.arange(total)


def transition_triplets(
    model: Any, batch: HistoryBatch, member: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rows, cols, probs)`` of every (patient, action) of ``batch`` under bootstrap member ``member``.

    Row ``b * 25 + a``; column ``j < M`` is ``next_table[j]``, ``M`` death, ``M + 1`` discharge alive.
    ``member=None`` is the point estimate on the full data (every transition once, no resampling): with
    ``k=1`` on ICU-Sepsis that is the counted maximum-likelihood law.
    """
    if not has_finite_support(model):
        from sepsis_sdk.errors import UserError

        raise UserError(f"{model.name}: only 'state' mode without static features has a finite support")
    b = batch.size
    key = np.repeat(model._query_keys(batch), N_ACTIONS, axis=0)
    acts = np.tile(np.arange(N_ACTIONS), b)
    sets, inv = model._sets(key, acts)
    tal = model._tallies(sets, moments=False)
    u, jj = sets.idx.shape
    m_next = len(model.next_table)
    # (T,) continuing weight of each transition: 1 on the full data (member None), else this member's
    w_member = np.ones(model._cum.shape[1] - 1) if member is None else np.diff(model._cum[member])
    w_full = np.diff(model._cum, axis=1).mean(0)  # all members: the fallback of an emptied member
    pairs = sets.idx.ravel()
    lens = model._n_cont[pairs]
    t = _ranges(model._start[pairs], lens)
    u_of = np.repeat(np.repeat(np.arange(u), jj), lens)
    f = np.repeat(sets.frac.ravel(), lens)
    wt = f * w_member[t]
    denom = np.bincount(u_of, weights=wt, minlength=u)
    empty = denom <= 0
    if empty.any():  # this member's resample dropped every transition of the set: use all members
        use_full = empty[u_of]
        wt = np.where(use_full, f * w_full[t], wt)
        denom = np.bincount(u_of, weights=wt, minlength=u)
    if member is None:
        p_d, p_q = _full_hazards(model, sets)
    else:
        p_d = np.asarray(tal["p_death"])[:, member]
        p_q = np.asarray(tal["p_discharge"])[:, member]
    stay = np.clip(1.0 - p_d - p_q, 0.0, 1.0)
    prob = stay[u_of] * wt / np.maximum(denom[u_of], 1e-300)
    col = model._next_idx[t]
    # per distinct query u: continuing entries, then death and discharge
    u_rows = np.concatenate([u_of, np.arange(u), np.arange(u)])
    u_cols = np.concatenate([col, np.full(u, m_next), np.full(u, m_next + 1)])
    u_prob = np.concatenate([prob, p_d, p_q])
    keep = u_prob > 0
    u_rows, u_cols, u_prob = u_rows[keep], u_cols[keep], u_prob[keep]
    # expand to the query rows (several queries may share one distinct set)
    order = np.argsort(u_rows, kind="stable")
    u_rows, u_cols, u_prob = u_rows[order], u_cols[order], u_prob[order]
    counts = np.bincount(u_rows, minlength=u)
    ptr = np.concatenate([[0], np.cumsum(counts)])
    q_lens = counts[inv]
    idx = _ranges(ptr[inv], q_lens)
    rows = np.repeat(np.arange(len(inv)), q_lens)
    return rows, u_cols[idx], u_prob[idx]


def _full_hazards(model: Any, sets: Any) -> tuple[np.ndarray, np.ndarray]:
    """Death and discharge shares of each neighbour set on the full data (no resampling)."""
    u, jj = sets.idx.shape
    pairs = sets.idx.ravel()
    f = sets.frac.ravel()
    u_of = np.repeat(np.arange(u), jj)
    tot = np.bincount(u_of, weights=f * model._n_full[pairs], minlength=u)
    dead = np.bincount(u_of, weights=f * model._n_death[pairs], minlength=u)
    cont = np.bincount(u_of, weights=f * model._n_cont[pairs], minlength=u)
    tot = np.maximum(tot, 1e-12)
    return dead / tot, np.clip((tot - dead - cont) / tot, 0.0, 1.0)


__all__ = ["has_finite_support", "support_batch", "transition_triplets"]
