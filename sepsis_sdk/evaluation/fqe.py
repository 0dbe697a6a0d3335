"""Fitted-Q evaluation (FQE): the target policy's Q-function learned from a cohort.

FQE repeats a regression: ``Q_{k+1}(s_t, a_t) <- r_t + gamma * (1 - done_t) * sum_a pi_e(a | s_{t+1}) Q_k(s_{t+1}, a)``,
starting from ``Q_0 = 0``. With gamma = 1 and episodic data, iteration ``k`` is the value of the next ``k``
steps, so it converges once ``k`` passes the longest episode (faster in practice). Predictions are clipped to
the range of returns seen in the cohort (a Q-value of survival outside [0, 1] is never right, and clipping
stops a linear model from drifting when gamma = 1).

Models (``model=``):

- ``"linear"``: ``Q(s, a) = phi(s)^T (beta + theta_a)``, ridge-penalised per-action deviations ``theta_a``
  from a shared ``beta``: rare actions borrow strength from common ones. The normal equations do not change
  between iterations, so they are factorised once and every iteration is two matrix products and a
  triangular solve.
- ``"tabular"``: per distinct state (exact feature vector; k-means clusters when there are more than
  ``max_states`` distinct vectors, the AI-Clinician recipe), the mean target per action, shrunk towards the
  state's mean target with ``prior`` pseudo-counts (so unseen actions get the state's behaviour value).
  On ICU-Sepsis, whose features identify the state, this is certainty-equivalent model-based evaluation.
- ``"xgboost"``: gradient-boosted trees on ``[features, fluid level, vaso level]``, each iteration
  *continues* boosting a few rounds towards the new targets (so the ensemble tracks the moving target
  without refitting from scratch).

d3rlpy's ``DiscreteFQE`` is not wrapped (yet): it evaluates only deterministic policies given as a d3rlpy
algorithm (``algo.predict``), while our targets are arbitrary per-row action distributions.
- ``"auto"``: ``"tabular"`` when the cohort has at most ``max(1000, n_rows / 20)`` distinct feature
  vectors (a discrete-state cohort such as ICU-Sepsis), else ``"linear"``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from sepsis_sdk._lazy import require
from sepsis_sdk.actions import N_ACTIONS
from sepsis_sdk.errors import ModelError, UserError
from sepsis_sdk.evaluation.behaviour import Featurizer, _StateIndex, cohort_inputs, single_threaded

if TYPE_CHECKING:
    from sepsis_sdk.cohort import Cohort

_MODELS = ("auto", "linear", "tabular", "xgboost")


@runtime_checkable
class QModel(Protocol):
    """Anything that gives ``(n, 25)`` Q-values for feature rows (and optional static rows)."""

    def q(self, x: np.ndarray, static: np.ndarray | None = None) -> np.ndarray: ...


# ---------------------------------------------------------------------------------------------- backends
class _Linear:
    def __init__(
        self, phi: np.ndarray, actions: np.ndarray, ridge: float, weight: np.ndarray | None = None
    ) -> None:
        scipy_linalg = require("scipy.linalg", "xgboost", "linear FQE")
        n, d = phi.shape
        self.d = d
        w = np.ones(n) if weight is None else weight
        onehot = np.zeros((n, N_ACTIONS))
        onehot[np.arange(n), actions] = w  # row weights ride on the one-hot (bootstrap counts)
        self.onehot = onehot
        self.phi = phi
        self.w = w
        size = d * (N_ACTIONS + 1)
        m = np.zeros((size, size))
        m[:d, :d] = phi.T @ (phi * w[:, None]) + 1e-6 * n * np.eye(d)
        for a in range(N_ACTIONS):
            sel = actions == a
            pa = phi[sel]
            g = pa.T @ (pa * w[sel, None])
            s = slice(d * (a + 1), d * (a + 2))
            m[:d, s] = g
            m[s, :d] = g
            m[s, s] = g + ridge * np.eye(d)
        self._factor = scipy_linalg.cho_factor(m)
        self._solve = scipy_linalg.cho_solve
        self.coef = np.zeros((d, N_ACTIONS))

    def fit(self, y: np.ndarray) -> None:
        b_shared = self.phi.T @ (self.w * y)
        b_act = (self.onehot * y[:, None]).T @ self.phi  # (25, d)
        sol = self._solve(self._factor, np.concatenate([b_shared, b_act.ravel()]))
        beta, theta = sol[: self.d], sol[self.d :].reshape(N_ACTIONS, self.d)
        self.coef = beta[:, None] + theta.T

    def predict(self, phi: np.ndarray) -> np.ndarray:
        return phi @ self.coef


def _with_intercept(z: np.ndarray) -> np.ndarray:
    return np.concatenate([z, np.ones((len(z), 1))], axis=1)


class _Tabular:
    def __init__(
        self,
        z: np.ndarray,
        actions: np.ndarray,
        *,
        max_states: int,
        prior: float,
        seed: int,
        weight: np.ndarray | None = None,
    ) -> None:
        self.prior = prior
        self.weight = weight
        index = _StateIndex(z)
        self.kmeans = None
        if len(index) > max_states:
            cluster = require("sklearn.cluster", "xgboost", "tabular FQE on continuous features")
            self.kmeans = cluster.MiniBatchKMeans(n_clusters=max_states, random_state=seed, n_init=3).fit(z)
            self.state = self.kmeans.labels_.astype(np.int64)
            self.n_states = max_states
        else:
            self.index = index
            self.state = index.inverse
            self.n_states = len(index)
        self.actions = actions
        self.cell = self.state * N_ACTIONS + actions
        size = self.n_states * N_ACTIONS
        self.count = (
            np.bincount(self.cell, weights=weight, minlength=size)
            .reshape(self.n_states, N_ACTIONS)
            .astype(np.float64)
        )
        self.state_count = self.count.sum(1)
        self.table = np.zeros((self.n_states, N_ACTIONS))

    def fit(self, y: np.ndarray) -> None:
        size = self.n_states * N_ACTIONS
        wy = y if self.weight is None else y * self.weight
        sums = np.bincount(self.cell, weights=wy, minlength=size).reshape(self.n_states, N_ACTIONS)
        state_mean = sums.sum(1) / np.maximum(self.state_count, 1.0)
        self.table = (sums + self.prior * state_mean[:, None]) / (self.count + self.prior)

    def states_of(self, z: np.ndarray) -> np.ndarray:
        if self.kmeans is not None:
            return self.kmeans.predict(z).astype(np.int64)
        idx = self.index.index(z)
        unknown = np.flatnonzero(idx < 0)
        if unknown.size:  # nearest known state, in chunks to bound memory
            keys = self.index.keys
            for lo in range(0, unknown.size, 2048):
                rows = unknown[lo : lo + 2048]
                d2 = ((z[rows, None, :] - keys[None, :, :]) ** 2).sum(-1)
                idx[rows] = d2.argmin(1)
        return idx

    def predict_rows(self) -> np.ndarray:
        return self.table[self.state]

    def predict(self, z: np.ndarray) -> np.ndarray:
        return self.table[self.states_of(z)]


class _XGB:
    def __init__(
        self,
        z: np.ndarray,
        actions: np.ndarray,
        *,
        seed: int,
        rounds: int,
        params: dict[str, Any],
        weight: np.ndarray | None = None,
    ) -> None:
        self.xgb = require("xgboost", "xgboost", "xgboost FQE")
        self.weight = weight
        self.params = {
            "max_depth": 6,
            "eta": 0.3,
            "subsample": 0.8,
            "lambda": 1.0,
            "nthread": 2,
            "seed": seed,
            "objective": "reg:squarederror",
            "verbosity": 0,
        }
        self.params.update(params)
        self.rounds = rounds
        self.x = _xgb_inputs(z, actions)
        self.booster = None

    def fit(self, y: np.ndarray) -> None:
        dtrain = self.xgb.DMatrix(self.x, label=y, weight=self.weight)
        self.booster = self.xgb.train(
            self.params, dtrain, num_boost_round=self.rounds, xgb_model=self.booster
        )

    def predict(self, z: np.ndarray) -> np.ndarray:
        out = np.zeros((len(z), N_ACTIONS))
        if self.booster is None:
            return out
        step = max(1, 40_000 // N_ACTIONS)
        for lo in range(0, len(z), step):
            zc = z[lo : lo + step]
            rep = np.repeat(zc, N_ACTIONS, axis=0)
            acts = np.tile(np.arange(N_ACTIONS), len(zc))
            pred = self.booster.inplace_predict(_xgb_inputs(rep, acts))
            out[lo : lo + step] = np.asarray(pred).reshape(len(zc), N_ACTIONS)
        return out


def _xgb_inputs(z: np.ndarray, actions: np.ndarray) -> np.ndarray:
    a = np.asarray(actions)
    return np.concatenate([z, (a // 5)[:, None], (a % 5)[:, None]], axis=1).astype(np.float32)


# ---------------------------------------------------------------------------------------------- model
@dataclass
class FQEModel:
    """A fitted Q-function of one target policy.

    Attributes:
        kind: the model kind actually used (``"auto"`` resolved).
        gamma: discount.
        featurizer: input transform.
        backend: the fitted regressor.
        clip: Q-values are clipped to this range (returns seen in the cohort).
        iterations: FQE iterations run.
        converged: whether the largest change of Q on the data fell below ``tol``.
        history: mean ``V(s_0)`` after each iteration (a convergence trace).
    """

    kind: str
    gamma: float
    featurizer: Featurizer
    backend: Any
    clip: tuple[float, float]
    iterations: int = 0
    converged: bool = False
    history: list[float] = field(default_factory=list)

    def q(self, x: np.ndarray, static: np.ndarray | None = None) -> np.ndarray:
        """``(n, 25)`` Q-values of feature rows (schema order) and optional static rows."""
        z = self.featurizer.transform(x, static)
        out = self.backend.predict(_with_intercept(z) if self.kind == "linear" else z)
        return np.clip(out, *self.clip)

    def q_cohort(self, cohort: Cohort) -> np.ndarray:
        """``(n_rows, 25)`` Q-values for every row of ``cohort``."""
        x, static = cohort_inputs(cohort)
        return self.q(x, static)

    def value(self, cohort: Cohort, target_probs: np.ndarray) -> float:
        """The direct-method estimate: mean over episodes of ``V(s_0) = sum_a pi_e(a|s_0) Q(s_0, a)``."""
        first = np.r_[
            True, cohort.data["patient_id"].to_numpy()[1:] != cohort.data["patient_id"].to_numpy()[:-1]
        ]
        q = self.q_cohort(cohort)
        return float((np.asarray(target_probs)[first] * q[first]).sum(1).mean())


def _single_threaded_call(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with single_threaded():  # see behaviour.single_threaded: BLAS threads spin on shared machines
            return fn(*args, **kwargs)

    return wrapper


@_single_threaded_call
def fit_fqe(
    cohort: Cohort,
    target_probs: np.ndarray,
    *,
    gamma: float = 1.0,
    n_iter: int | None = None,
    model: str = "auto",
    seed: int = 0,
    tol: float = 1e-5,
    ridge: float = 10.0,
    max_states: int = 1000,
    prior: float = 1.0,
    rounds_per_iter: int = 5,
    sample_weight: np.ndarray | None = None,
    **params: Any,
) -> FQEModel:
    """Fit the target policy's Q-function on a cohort by fitted-Q evaluation.

    Args:
        cohort: behaviour data.
        target_probs: ``(n_rows, 25)`` target-policy probabilities at every row.
        gamma: discount.
        n_iter: maximum iterations (default: 10 x (longest episode + 1) within [200, 1000] for linear and
            tabular, longest episode + 1 up to 60 for xgboost).
        model: ``"auto"``, ``"linear"``, ``"tabular"`` or ``"xgboost"`` (module docstring).
        seed: seed for k-means / xgboost.
        tol: stop when no Q-value on the data changes by more than this.
        ridge: linear model: penalty of the per-action deviations.
        max_states: tabular model: above this many distinct feature vectors, cluster with k-means.
        prior: tabular model: pseudo-counts pulling ``Q(s, a)`` towards the state's mean target.
        rounds_per_iter: xgboost: boosting rounds added per FQE iteration.
        sample_weight: optional ``(n_rows,)`` non-negative row weights (a bootstrap resample of patients is
            each row weighted by its patient's draw count: how :func:`fqe_refit_bootstrap` refits).
        **params: xgboost booster parameters.

    Returns:
        A fitted :class:`FQEModel` (``.q(features)`` gives ``(n, 25)`` Q-values).
    """
    if model not in _MODELS:
        raise UserError(f"unknown FQE model {model!r}; choose from {list(_MODELS)}")
    if not 0.0 < gamma <= 1.0:
        raise UserError(f"gamma must be in (0, 1], got {gamma}")
    n = len(cohort)
    pe = np.asarray(target_probs, dtype=np.float64)
    if pe.shape != (n, N_ACTIONS):
        raise UserError(f"target_probs must have shape ({n}, {N_ACTIONS}), got {pe.shape}")
    weight = None
    if sample_weight is not None:
        weight = np.asarray(sample_weight, dtype=np.float64)
        if weight.shape != (n,) or not np.isfinite(weight).all() or (weight < 0).any() or weight.sum() <= 0:
            raise UserError(f"sample_weight must be ({n},) finite, non-negative and not all 0")
    x, static = cohort_inputs(cohort)
    featurizer = Featurizer.fit(x, static)
    z = featurizer.transform(x, static)
    actions = cohort.actions
    reward = cohort.data["reward"].to_numpy(dtype=np.float64)
    done = cohort.data["done"].to_numpy(dtype=bool)
    ep = cohort.episode_index()
    lengths = np.bincount(ep)
    returns = np.bincount(ep, weights=reward * gamma ** _positions(ep))
    lo, hi = float(min(0.0, returns.min(), reward.min())), float(max(0.0, returns.max(), reward.max()))
    if model == "auto":
        n_distinct = len(np.unique(np.round(z, 6), axis=0))
        model = "tabular" if n_distinct <= max(1000, n // 20) else "linear"
    if n_iter is None:
        # gamma = 1 with states that recur (ICU-Sepsis) converges geometrically, not in "longest episode"
        # steps; linear/tabular iterations are cheap (one bincount or two matrix products), trees are not
        longest = int(lengths.max()) + 1
        n_iter = min(longest, 60) if model == "xgboost" else min(max(10 * longest, 200), 1000)

    nxt = np.arange(n) + 1
    nxt[done] = np.flatnonzero(done)
    cont = (~done).astype(np.float64) * gamma
    first = np.r_[True, ep[1:] != ep[:-1]]
    backend, predict_rows = _backend(
        model, z, actions, ridge=ridge, max_states=max_states, prior=prior, seed=seed,
        rounds=rounds_per_iter, params=params, weight=weight,
    )  # fmt: skip
    it, converged, history = _iterate(
        backend, predict_rows, reward=reward, cont=cont, pe=pe, nxt=nxt, first=first, clip=(lo, hi),
        n_iter=n_iter, tol=tol, who=f"FQE ({model}) on cohort {cohort.source!r}",
    )  # fmt: skip
    return FQEModel(
        kind=model,
        gamma=gamma,
        featurizer=featurizer,
        backend=backend,
        clip=(lo, hi),
        iterations=it,
        converged=converged,
        history=history,
    )


def _iterate(
    backend: Any,
    predict_rows: Callable[[], np.ndarray],
    *,
    reward: np.ndarray,
    cont: np.ndarray,
    pe: np.ndarray,
    nxt: np.ndarray,
    first: np.ndarray,
    clip: tuple[float, float],
    n_iter: int,
    tol: float,
    who: str,
) -> tuple[int, bool, list[float]]:
    """Fitted-Q iterations until no Q-value changes by more than ``tol``; ``(iterations, converged,
    value history)``. The backend keeps the last fit."""
    history: list[float] = []
    it = 0
    q_rows = np.zeros((len(reward), N_ACTIONS))
    pe_next = pe[nxt]
    for it in range(1, n_iter + 1):
        y = reward + cont * (pe_next * q_rows[nxt]).sum(1)
        backend.fit(y)
        q_new = np.clip(predict_rows(), *clip)
        if not np.isfinite(q_new).all():
            raise ModelError(f"{who} diverged at iteration {it}")
        delta = float(np.abs(q_new - q_rows).max())
        q_rows = q_new
        history.append(float((pe[first] * q_rows[first]).sum(1).mean()))
        if delta < tol:
            return it, True, history
    return it, False, history


def _backend(
    model: str,
    z: np.ndarray,
    actions: np.ndarray,
    *,
    ridge: float,
    max_states: int,
    prior: float,
    seed: int,
    rounds: int,
    params: dict[str, Any],
    weight: np.ndarray | None = None,
) -> tuple[Any, Callable[[], np.ndarray]]:
    """The regression backend of ``model`` and a function predicting ``(n_rows, 25)`` on the data."""
    if model == "linear":
        phi = _with_intercept(z)
        linear = _Linear(phi, actions, ridge, weight)
        return linear, lambda: linear.predict(phi)
    if model == "tabular":
        tab = _Tabular(z, actions, max_states=max_states, prior=prior, seed=seed, weight=weight)
        return tab, tab.predict_rows
    xgb = _XGB(z, actions, seed=seed, rounds=rounds, params=params, weight=weight)
    return xgb, lambda: xgb.predict(z)


def _positions(ep: np.ndarray) -> np.ndarray:
    starts = np.r_[0, np.flatnonzero(np.diff(ep)) + 1]
    lengths = np.diff(np.r_[starts, len(ep)])
    return np.arange(len(ep)) - np.repeat(starts, lengths)


__all__ = ["FQEModel", "QModel", "fit_fqe"]
