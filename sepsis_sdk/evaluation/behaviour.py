"""Behaviour-policy models: the clinicians' action probabilities, learned from a cohort.

Importance-sampling estimators divide by the behaviour probability of every action taken, so the model
must (1) give calibrated probabilities and (2) never give zero. :func:`fit_behaviour_policy` therefore

1. fits a multinomial classifier of the 25 actions on the state features (``"logistic"``: sklearn
   multinomial logistic regression; ``"gbm"``: sklearn histogram gradient boosting; ``"tabular"``:
   smoothed action counts per distinct state, see below);
2. calibrates it by **temperature scaling** on a held-out 20 % of patients (one parameter, so it cannot
   overfit, and it keeps the 25 classes coupled; one-vs-rest isotonic calibration would not);
3. **softens** it: ``p <- (1 - softening) * p + softening / 25``, so every action keeps at least
   ``softening / 25`` probability and importance ratios stay bounded by ``25 / softening``.

``"tabular"`` is meant for cohorts whose features identify a discrete state (ICU-Sepsis observations are
the cluster centre of the hidden state, so 713 distinct feature vectors): action frequencies per distinct
feature vector with a Dirichlet prior towards the cohort's overall action frequencies. On continuous
features every row is distinct and the model degenerates to the marginal; use ``"logistic"`` or
``"gbm"`` there.

On ICU-Sepsis the true behaviour policy is known; :class:`KnownBehaviour` serves it for validation only.

Example:
    >>> from sepsis_sdk.sources.icu_sepsis import sample_cohort
    >>> cohort = sample_cohort(500, seed=0)
    >>> model = fit_behaviour_policy(cohort, kind="logistic")
    >>> model.probabilities(cohort).shape
    (4640, 25)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from sepsis_sdk._lazy import require
from sepsis_sdk.actions import N_ACTIONS
from sepsis_sdk.errors import ModelError, UserError

if TYPE_CHECKING:
    from sepsis_sdk.cohort import Cohort

BehaviourKind = Literal["logistic", "gbm", "tabular"]
_KINDS = ("logistic", "gbm", "tabular")


# ---------------------------------------------------------------------------------------------- features
@dataclass
class Featurizer:
    """Standardises dynamic (+ static) features; imputes missing values and adds missingness flags.

    Missing values are replaced by the training mean (0 after standardising) and, for every column that
    had any missing value in training, a 0/1 "was missing" column is appended.
    """

    mean: np.ndarray
    scale: np.ndarray
    flag_columns: np.ndarray
    n_dynamic: int
    n_static: int

    @classmethod
    def fit(cls, x: np.ndarray, static: np.ndarray | None = None) -> Featurizer:
        full = _stack(x, static)
        with np.errstate(all="ignore"):
            mean = np.nanmean(full, axis=0) if len(full) else np.zeros(full.shape[1])
            sd = np.nanstd(full, axis=0) if len(full) else np.ones(full.shape[1])
        mean = np.where(np.isfinite(mean), mean, 0.0)
        sd = np.where(np.isfinite(sd) & (sd > 1e-12), sd, 1.0)
        flags = np.flatnonzero(np.isnan(full).any(0))
        n_static = 0 if static is None else static.shape[1]
        return cls(mean=mean, scale=sd, flag_columns=flags, n_dynamic=x.shape[1], n_static=n_static)

    @property
    def n_outputs(self) -> int:
        return len(self.mean) + len(self.flag_columns)

    def transform(self, x: np.ndarray, static: np.ndarray | None = None) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_dynamic:
            raise ModelError(f"expected a (n, {self.n_dynamic}) feature matrix, got shape {x.shape}")
        if self.n_static and static is None:
            raise ModelError(f"this model was fitted with {self.n_static} static features; pass static=")
        full = _stack(x, static if self.n_static else None)
        missing = np.isnan(full)
        z = (np.where(missing, self.mean, full) - self.mean) / self.scale
        if len(self.flag_columns):
            z = np.concatenate([z, missing[:, self.flag_columns].astype(np.float64)], axis=1)
        return z


def _stack(x: np.ndarray, static: np.ndarray | None) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if static is None or np.asarray(static).size == 0:
        return x
    static = np.asarray(static, dtype=np.float64)
    if static.shape[0] != x.shape[0]:
        raise ModelError(f"static has {static.shape[0]} rows but features have {x.shape[0]}")
    return np.concatenate([x, static], axis=1)


def cohort_inputs(cohort: Cohort) -> tuple[np.ndarray, np.ndarray | None]:
    """The model inputs of a cohort: dynamic features and static features (None when it has none)."""
    static = cohort.static_matrix() if cohort.schema.static else None
    return cohort.features(), static


# ---------------------------------------------------------------------------------------------- tabular
class _StateIndex:
    """Maps feature rows to discrete state keys (exact match after rounding); unknown rows -> -1."""

    def __init__(self, z: np.ndarray, decimals: int = 6) -> None:
        from sepsis_sdk._rowindex import RowIndex

        self.decimals = decimals
        keys, inverse = np.unique(np.round(z, decimals), axis=0, return_inverse=True)
        self.keys = keys
        self.inverse = inverse.reshape(-1)
        self._rows = RowIndex(keys, decimals)  # vectorised (a planner asks for millions of rows)

    def __len__(self) -> int:
        return len(self.keys)

    def index(self, z: np.ndarray) -> np.ndarray:
        return self._rows.index(z)


class _TabularClassifier:
    """Action frequencies per distinct state with a Dirichlet prior (strength ``prior``) on the marginal."""

    def __init__(self, prior: float = 1.0) -> None:
        self.prior = prior

    def fit(self, z: np.ndarray, y: np.ndarray) -> _TabularClassifier:
        self.states = _StateIndex(z)
        counts = np.zeros((len(self.states), N_ACTIONS))
        np.add.at(counts, (self.states.inverse, y), 1.0)
        self.marginal = (np.bincount(y, minlength=N_ACTIONS) + 1e-3) / (len(y) + 1e-3 * N_ACTIONS)
        self.table = (counts + self.prior * self.marginal) / (counts.sum(1, keepdims=True) + self.prior)
        return self

    def predict_proba25(self, z: np.ndarray) -> np.ndarray:
        idx = self.states.index(z)
        out = np.repeat(self.marginal[None, :], len(z), axis=0)
        known = idx >= 0
        out[known] = self.table[idx[known]]
        return out


# ---------------------------------------------------------------------------------------------- models
@dataclass
class BehaviourModel:
    """A fitted, calibrated, softened model of the behaviour (clinicians') policy.

    Attributes:
        kind: ``"logistic"``, ``"gbm"`` or ``"tabular"``.
        softening: mixing weight with the uniform distribution (every action >= softening / 25).
        temperature: calibration temperature (1.0 when not calibrated).
        featurizer: the input transform.
        estimator: the fitted classifier.
        classes: the action indices the classifier saw (others get 0 before softening).
        feature_names: input feature names, for error messages and reports.
        diagnostics: held-out log loss and accuracy before/after calibration, fit sizes.
    """

    kind: str
    softening: float
    temperature: float
    featurizer: Featurizer
    estimator: Any
    classes: np.ndarray
    feature_names: tuple[str, ...] = ()
    diagnostics: dict[str, float] = field(default_factory=dict)

    def _raw(self, z: np.ndarray) -> np.ndarray:
        return _predict25(self.kind, self.estimator, self.classes, z)

    def _finish(self, raw: np.ndarray) -> np.ndarray:
        p = _apply_temperature(raw, self.temperature)
        return (1.0 - self.softening) * p + self.softening / N_ACTIONS

    def action_probabilities_from_features(
        self, x: np.ndarray, static: np.ndarray | None = None
    ) -> np.ndarray:
        """``(n, 25)`` behaviour probabilities for feature rows (schema order) and optional static rows."""
        z = self.featurizer.transform(x, static)
        return self._finish(self._raw(z))

    def probabilities(self, cohort: Cohort) -> np.ndarray:
        """``(n_rows, 25)`` behaviour probabilities for every row of ``cohort``."""
        x, static = cohort_inputs(cohort)
        if x.shape[1] != self.featurizer.n_dynamic:
            raise ModelError(
                f"behaviour model was fitted on {self.featurizer.n_dynamic} features, cohort "
                f"{cohort.source!r} has {x.shape[1]}"
            )
        return self.action_probabilities_from_features(x, static)

    def taken_probabilities(self, cohort: Cohort) -> np.ndarray:
        """``(n_rows,)`` behaviour probability of the action actually taken in each row."""
        p = self.probabilities(cohort)
        return p[np.arange(len(p)), cohort.actions]


@dataclass
class KnownBehaviour:
    """The true behaviour policy as a table over ICU-Sepsis states (for estimator validation only).

    Real cohorts never have this; it lets us separate the error of the estimator from the error of the
    behaviour model. Rows are looked up by the cohort's hidden ``state_id``.
    """

    table: np.ndarray
    kind: str = "known"

    @classmethod
    def from_cohort(cls, cohort: Cohort) -> KnownBehaviour:
        """The policy an ICU-Sepsis cohort was sampled with (from its metadata), checked against
        the cohort's recorded ``behaviour_prob`` column."""
        from sepsis_sdk.sources.icu_sepsis import resolve_policy_table, soften

        if not cohort.has_state_ids or "behaviour_prob" not in cohort.data.columns:
            raise UserError(
                f"cohort {cohort.source!r} has no state_id/behaviour_prob: the behaviour is unknown"
            )
        name = cohort.meta.get("policy")
        if not isinstance(name, str) or name == "custom":
            raise UserError(
                f"cohort {cohort.source!r} was sampled with a custom policy; build KnownBehaviour(table) yourself"
            )
        table = resolve_policy_table(name)
        eps = float(cohort.meta.get("epsilon", 0.0) or 0.0)
        if eps:
            table = soften(table, eps)
        known = cls(table=table)
        recorded = cohort.data["behaviour_prob"].to_numpy(dtype=np.float64)
        if not np.allclose(known.taken_probabilities(cohort), recorded, atol=1e-9):
            raise UserError(
                f"cohort {cohort.source!r}: metadata policy {name!r} does not match behaviour_prob"
            )
        return known

    def probabilities(self, cohort: Cohort) -> np.ndarray:
        if not cohort.has_state_ids:
            raise UserError(f"cohort {cohort.source!r} has no state_id column")
        return self.table[cohort.data["state_id"].to_numpy(dtype=np.int64)]

    def taken_probabilities(self, cohort: Cohort) -> np.ndarray:
        p = self.probabilities(cohort)
        return p[np.arange(len(p)), cohort.actions]


def fit_behaviour_policy(
    cohort: Cohort,
    *,
    kind: BehaviourKind = "logistic",
    softening: float = 0.01,
    calibrate: bool = True,
    seed: int = 0,
    holdout: float = 0.2,
    refit: bool | None = None,
    **params: Any,
) -> BehaviourModel:
    """Fit a calibrated, softened behaviour-policy model on a cohort's (state features, action) pairs.

    Args:
        cohort: the data (every row is one decision).
        kind: ``"logistic"`` (multinomial logistic regression, default), ``"gbm"`` (histogram gradient
            boosting) or ``"tabular"`` (counts per distinct state; for discrete-state cohorts).
        softening: weight of the uniform distribution mixed in; must be in (0, 1].
        calibrate: fit a temperature on a held-out ``holdout`` fraction of patients.
        seed: seed of the patient split and of the estimator.
        holdout: fraction of patients held out for calibration.
        refit: after calibrating, refit on all patients and keep the temperature. Default: True for
            ``"tabular"`` (cheap, and a count table must see every patient: a state-action pair seen only
            in held-out patients would otherwise get a near-zero probability and a huge weight); False
            for ``"logistic"``/``"gbm"``, which keep the model fitted on the other ``1 - holdout`` of
            patients (halves the cost; the temperature then matches the model it calibrates exactly).
        **params: passed to the sklearn estimator (e.g. ``C=0.5`` or ``max_iter=200``).

    Returns:
        A :class:`BehaviourModel` whose probabilities are all >= ``softening / 25``.
    """
    if kind not in _KINDS:
        raise UserError(f"unknown behaviour model kind {kind!r}; choose from {list(_KINDS)}")
    if not 0.0 < softening <= 1.0:
        raise UserError(
            f"softening must be in (0, 1] so every action keeps some probability, got {softening}"
        )
    x, static = cohort_inputs(cohort)
    y = cohort.actions
    if len(y) == 0:
        raise UserError(f"cohort {cohort.source!r} is empty")
    featurizer = Featurizer.fit(x, static)
    z = featurizer.transform(x, static)
    diagnostics: dict[str, float] = {"n_rows": float(len(y)), "n_actions_seen": float(len(np.unique(y)))}

    temperature = 1.0
    if calibrate and cohort.n_patients >= 10:
        ep = cohort.episode_index()
        perm = np.random.default_rng(seed).permutation(ep.max() + 1)
        n_hold = max(1, int(round(holdout * len(perm))))
        held = np.zeros(len(perm), dtype=bool)
        held[perm[:n_hold]] = True
        rows_hold = held[ep]
        est, classes = _fit_estimator(kind, z[~rows_hold], y[~rows_hold], seed, params)
        raw = _predict25(kind, est, classes, z[rows_hold])
        yh = y[rows_hold]
        temperature = _fit_temperature(raw, yh)
        diagnostics["holdout_nll_raw"] = _nll(_soft(raw, softening), yh)
        diagnostics["holdout_nll_calibrated"] = _nll(
            _soft(_apply_temperature(raw, temperature), softening), yh
        )
        diagnostics["holdout_accuracy"] = float((raw.argmax(1) == yh).mean())
        if refit if refit is not None else kind == "tabular":
            est, classes = _fit_estimator(kind, z, y, seed, params)
    else:
        est, classes = _fit_estimator(kind, z, y, seed, params)
    diagnostics["temperature"] = temperature
    return BehaviourModel(
        kind=kind,
        softening=softening,
        temperature=temperature,
        featurizer=featurizer,
        estimator=est,
        classes=classes,
        feature_names=tuple(cohort.schema.names) + tuple(cohort.schema.static),
        diagnostics=diagnostics,
    )


def _fit_estimator(
    kind: str, z: np.ndarray, y: np.ndarray, seed: int, params: dict[str, Any]
) -> tuple[Any, np.ndarray]:
    classes = np.unique(y)
    if kind == "tabular":
        return _TabularClassifier(prior=float(params.get("prior", 1.0))).fit(z, y), np.arange(N_ACTIONS)
    if len(classes) == 1:
        return _Constant(len(z)), classes
    if kind == "logistic":
        lm = require("sklearn.linear_model", "xgboost", "the logistic behaviour model")
        kw = {"C": 1.0, "max_iter": 300, "tol": 1e-4}
        kw.update(params)
        est = lm.LogisticRegression(**kw)
    else:
        ens = require("sklearn.ensemble", "xgboost", "the gradient-boosting behaviour model")
        # lr 0.1 without L2 diverges on rare actions (tiny hessians give huge leaf values): keep it damped
        kw = {
            "max_iter": 100,
            "learning_rate": 0.05,
            "l2_regularization": 1.0,
            "min_samples_leaf": 50,
            "max_leaf_nodes": 31,
            "early_stopping": False,
            "random_state": seed,
        }
        kw.update(params)
        est = ens.HistGradientBoostingClassifier(**kw)
    import warnings

    with warnings.catch_warnings(), single_threaded():
        warnings.simplefilter("ignore")  # lbfgs convergence chatter; the held-out loss is what counts
        est.fit(z, y)
    return est, np.asarray(est.classes_, dtype=np.int64)


def single_threaded() -> Any:
    """Limit BLAS/OpenMP to one thread while fitting.

    On a shared machine, multi-threaded BLAS under load spins instead of working: a logistic fit on 1,000
    ICU-Sepsis episodes took 209 s with the default 2 OpenBLAS threads and 15 s with one (same run, same
    data, 2-core machine at load 13). Small solvers like these gain little from threads anyway.
    """
    from contextlib import nullcontext

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        return nullcontext()
    return threadpool_limits(limits=1)


class _Constant:
    """A classifier for a cohort where only one action was ever taken."""

    def __init__(self, _: int) -> None:
        pass

    def predict_proba(self, z: np.ndarray) -> np.ndarray:
        return np.ones((len(z), 1))


def _predict25(kind: str, est: Any, classes: np.ndarray, z: np.ndarray) -> np.ndarray:
    if kind == "tabular":
        return est.predict_proba25(z)
    p = np.zeros((len(z), N_ACTIONS))
    if len(z):
        p[:, classes] = est.predict_proba(z)
    return p


def _apply_temperature(p: np.ndarray, temperature: float) -> np.ndarray:
    if temperature == 1.0:
        return p
    logp = np.log(np.clip(p, 1e-300, None)) / temperature
    logp -= logp.max(1, keepdims=True)
    q = np.exp(logp) * (p > 0)
    return q / q.sum(1, keepdims=True)


def _soft(p: np.ndarray, eps: float) -> np.ndarray:
    return (1 - eps) * p + eps / N_ACTIONS


def _nll(p: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-300, None))))


def _fit_temperature(raw: np.ndarray, y: np.ndarray) -> float:
    """Temperature minimising held-out NLL (golden-section search on log T in [-2, 2])."""
    floor = 1e-6  # held-out actions the model gives zero probability must not dominate the search

    def loss(log_t: float) -> float:
        return _nll(_soft(_apply_temperature(raw, float(np.exp(log_t))), floor), y)

    lo, hi = -2.0, 2.0
    g = (np.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = loss(a), loss(b)
    for _ in range(40):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = loss(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = loss(b)
    t = float(np.exp((lo + hi) / 2))
    return t if loss(np.log(t)) <= loss(0.0) else 1.0


__all__ = [
    "BehaviourModel",
    "Featurizer",
    "KnownBehaviour",
    "cohort_inputs",
    "fit_behaviour_policy",
    "single_threaded",
]
