"""Behaviour-data support of a (state, action): nearest-neighbour counts in the training cohort.

``support(s, a) = min(1, c_a(s) / full_count)`` where ``c_a(s)`` counts, among the ``k`` training states
nearest to ``s`` (Euclidean, normalised model space) that also lie within ``radius``, those after which
the clinicians chose ``a``. ``radius`` is the 95th percentile of the training states' own ``k``-th
neighbour distance, so a state far from every training patient has no support for any action, and an
action that ``full_count`` or more of a patient's ``k`` nearest look-alikes received has full support.
Defaults: ``k = 25``, ``full_count = 5`` (one in five look-alikes). The reference set is capped at
20,000 states (a fixed random subsample) so a query costs one small matrix product.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sepsis_sdk.actions import N_ACTIONS


@dataclass(frozen=True)
class SupportIndex:
    """Reference states (normalised, NaN imputed as 0) and the actions taken in them."""

    states: np.ndarray  # (n, D) float32
    actions: np.ndarray  # (n,) int
    radius: float
    k: int = 25
    full_count: float = 5.0

    @classmethod
    def fit(
        cls,
        z: np.ndarray,
        actions: np.ndarray,
        *,
        k: int = 25,
        full_count: float = 5.0,
        max_ref: int = 20_000,
        seed: int = 0,
    ) -> SupportIndex:
        z = np.nan_to_num(np.asarray(z, dtype=np.float32))
        actions = np.asarray(actions, dtype=np.int64)
        rng = np.random.default_rng(seed)
        if len(z) > max_ref:
            keep = np.sort(rng.choice(len(z), max_ref, replace=False))
            z, actions = z[keep], actions[keep]
        k = int(max(1, min(k, len(z))))
        probe = z[rng.choice(len(z), min(500, len(z)), replace=False)]
        # +1: a probe finds itself at distance 0
        d = _knn_dist(probe, z, min(k + 1, len(z)))
        radius = float(np.quantile(d[:, -1], 0.95)) if len(d) else 0.0
        return cls(z, actions, max(radius, 1e-6), k, float(full_count))

    def counts(self, z: np.ndarray) -> np.ndarray:
        """``(B, 25)`` number of near look-alikes of each query state that received each action."""
        z = np.nan_to_num(np.asarray(z, dtype=np.float32))
        out = np.zeros((len(z), N_ACTIONS), dtype=np.float64)
        if len(self.states) == 0 or len(z) == 0:
            return out
        for lo in range(0, len(z), 2048):
            q = z[lo : lo + 2048]
            d2 = _sq_dist(q, self.states)
            k = min(self.k, d2.shape[1])
            idx = np.argpartition(d2, k - 1, axis=1)[:, :k]
            near = np.take_along_axis(d2, idx, axis=1) <= self.radius**2
            acts = self.actions[idx]
            rows = np.repeat(np.arange(len(q)), k)
            np.add.at(out[lo : lo + len(q)], (rows[near.ravel()] - 0, acts.ravel()[near.ravel()]), 1.0)
        return out

    def support(self, z: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """``(B,)`` support of each (state, action) pair in [0, 1]."""
        c = self.counts(z)
        return np.minimum(1.0, c[np.arange(len(c)), np.asarray(actions, dtype=np.int64)] / self.full_count)

    def support_all(self, z: np.ndarray) -> np.ndarray:
        """``(B, 25)`` support of every action."""
        return np.minimum(1.0, self.counts(z) / self.full_count)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"support_states": self.states, "support_actions": self.actions}

    def config(self) -> dict[str, Any]:
        return {"radius": self.radius, "k": self.k, "full_count": self.full_count}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], config: dict[str, Any]) -> SupportIndex:
        return cls(
            np.asarray(arrays["support_states"], dtype=np.float32),
            np.asarray(arrays["support_actions"], dtype=np.int64),
            float(config["radius"]),
            int(config["k"]),
            float(config["full_count"]),
        )


def _sq_dist(q: np.ndarray, r: np.ndarray) -> np.ndarray:
    d2 = (q * q).sum(1)[:, None] + (r * r).sum(1)[None, :] - 2.0 * (q @ r.T)
    return np.maximum(d2, 0.0)


def _knn_dist(q: np.ndarray, r: np.ndarray, k: int) -> np.ndarray:
    d2 = _sq_dist(q, r)
    part = np.partition(d2, k - 1, axis=1)[:, :k]
    return np.sqrt(np.sort(part, axis=1))
