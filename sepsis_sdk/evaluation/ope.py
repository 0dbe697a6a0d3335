"""Off-policy evaluation: the value of a target policy estimated from a cohort of clinicians' episodes.

Notation (DESIGN.md 3.6): for episode ``i`` and step ``t``, the per-step ratio is
``w_it = pi_e(a_it | s_it) / pi_b(a_it | s_it)`` and the cumulative weight ``rho_it = prod_{k<=t} w_ik``.
``G_i = sum_t gamma^t r_it`` is the episode's return and ``rho_i = rho_{i,T_i}`` its final weight.

Estimators (``n`` episodes):

- ``"wis"`` weighted importance sampling: ``sum_i rho_i G_i / sum_i rho_i``.
- ``"wpdis"`` weighted per-decision IS: ``sum_t gamma^t sum_i rho_it r_it / sum_i rho_it``.
- ``"phwis"`` per-horizon WIS (Doroudi et al. 2017): WIS within each group of episodes of equal length,
  averaged with weights proportional to group sizes. Groups whose weights are all zero are left out and
  the remaining group weights renormalised.
- ``"dr"`` doubly robust (Jiang & Li 2016), per episode
  ``sum_t gamma^t [rho_it (r_it - Q(s_it, a_it)) + rho_{i,t-1} V(s_it)]`` with ``rho_{i,-1} = 1`` and
  ``V(s) = sum_a pi_e(a|s) Q(s, a)``, averaged over episodes.
- ``"wdr"`` weighted doubly robust (Thomas & Brunskill 2016): the same with ``rho_it`` replaced by the
  self-normalised ``rho_it / sum_j rho_jt`` (and ``rho_{i,-1} = 1/n``).
- ``"fqe"`` the direct method: ``mean_i V(s_i0)`` with ``Q`` from fitted-Q evaluation.

**Episodes that end early** (WPDIS, WDR). We treat an episode that ended at ``T_i`` as sitting in an
absorbing state afterwards, where there is no decision, the reward is 0 and ``Q = V = 0``: its ratio there
is 1, so its weight is **carried at its final value** ``rho_i`` in every later denominator. This is what the
estimator means when all episodes are padded to a common horizon, and it keeps WPDIS consistent: dropping
finished episodes instead would make the step-``t`` term estimate ``E[r_t | still in the ICU at t]`` rather
than ``E[r_t]``, which over-counts late rewards (for ICU-Sepsis, where the only reward is survival at the
last step, dropping makes WPDIS a ratio of conditional survival rates and biases it badly). A test checks the
convention on a hand-computed case. Even when every reward comes at an episode's last step (ICU-Sepsis)
WPDIS differs from WIS: a survivor leaving at step ``t`` is divided by ``sum_j rho_jt``, which includes the
partial weights of episodes still running at ``t``; with heavy-tailed weights this makes WPDIS much more
biased than WIS at realistic sizes (docs/evaluation_ope.md, validation table). With weights all 1
(on-policy, known behaviour) the two coincide.

Intervals come from a vectorised bootstrap over patients (:mod:`sepsis_sdk.evaluation.bootstrap`): all
estimators are weighted sums of per-episode summaries, so ``B`` resamples are one ``(B, n)`` count matrix
times one ``(n, k)`` matrix of summaries. The Q-model is held fixed across resamples, so DR/WDR/FQE
intervals do not include the model's fitting uncertainty (see docs/evaluation_ope.md for coverage).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sepsis_sdk.actions import N_ACTIONS
from sepsis_sdk.errors import UserError
from sepsis_sdk.evaluation.bootstrap import bootstrap_statistics, lower_bound, percentile_interval

if TYPE_CHECKING:
    import pandas as pd

    from sepsis_sdk.cohort import Cohort

ESTIMATORS: tuple[str, ...] = ("wis", "wpdis", "phwis", "dr", "wdr", "fqe")
_NEEDS_Q = frozenset({"dr", "wdr", "fqe"})


# ---------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class Estimate:
    """One estimator's value with its bootstrap interval and diagnostics.

    Attributes:
        value: the point estimate on the full cohort.
        ci_low: lower end of the percentile bootstrap interval (``level``, default 95 %).
        ci_high: upper end of that interval.
        lower_bound_5pct: 5th percentile of the bootstrap values: AI Clinician's "95 % lower bound".
        ess: effective sample size (Kish, of the final importance weights; ``n_episodes`` for FQE).
        n_episodes: number of episodes used.
        diagnostics: weight diagnostics and estimator-specific counts (see :func:`weight_diagnostics`).
    """

    value: float
    ci_low: float
    ci_high: float
    lower_bound_5pct: float
    ess: float
    n_episodes: int
    diagnostics: dict[str, float] = field(default_factory=dict)

    def covers(self, truth: float) -> bool:
        """Whether the interval contains ``truth``."""
        return bool(self.ci_low <= truth <= self.ci_high)


@dataclass(frozen=True)
class OPEResult:
    """The estimates of one target policy on one cohort.

    Attributes:
        estimates: estimator name -> :class:`Estimate`.
        gamma: discount.
        n_bootstrap: number of bootstrap resamples.
        level: interval level.
        seed: bootstrap seed.
        weights: diagnostics of the final importance weights (shared by the IS-based estimators).
        q_model: the Q-model used by DR/WDR/FQE (None if none was needed).
        bootstrap: estimator name -> the ``(n_bootstrap,)`` resampled values.
    """

    estimates: dict[str, Estimate]
    gamma: float
    n_bootstrap: int
    level: float
    seed: int
    weights: dict[str, float] = field(default_factory=dict)
    q_model: Any = field(default=None, repr=False, compare=False)
    bootstrap: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    def __getitem__(self, name: str) -> Estimate:
        try:
            return self.estimates[name]
        except KeyError:
            raise UserError(f"no estimate {name!r}; have {list(self.estimates)}") from None

    def __iter__(self):
        return iter(self.estimates)

    def to_frame(self) -> pd.DataFrame:
        """One row per estimator: value, interval, lower bound, ESS, episodes and the main diagnostics."""
        import pandas as pd

        rows = []
        for name, e in self.estimates.items():
            row = {"estimator": name, **{k: v for k, v in asdict(e).items() if k != "diagnostics"}}
            row.update({f"diag_{k}": v for k, v in e.diagnostics.items()})
            rows.append(row)
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (no arrays, no model)."""
        return {
            "gamma": self.gamma,
            "n_bootstrap": self.n_bootstrap,
            "level": self.level,
            "seed": self.seed,
            "weights": dict(self.weights),
            "estimates": {k: asdict(v) for k, v in self.estimates.items()},
        }


# ---------------------------------------------------------------------------------------------- inputs
def target_probs_from_table(cohort: Cohort, table: np.ndarray) -> np.ndarray:
    """Per-row target probabilities of a policy defined on ICU-Sepsis states: ``table[state_id]``."""
    if not cohort.has_state_ids:
        raise UserError(f"cohort {cohort.source!r} has no state_id column: a state table cannot be applied")
    table = np.asarray(table, dtype=np.float64)
    if table.ndim != 2 or table.shape[1] != N_ACTIONS:
        raise UserError(f"a policy table must have shape (n_states, 25), got {table.shape}")
    return table[cohort.data["state_id"].to_numpy(dtype=np.int64)]


def _check_probs(p: Any, n: int, who: str) -> np.ndarray:
    arr = np.asarray(p, dtype=np.float64)
    if arr.shape != (n, N_ACTIONS):
        raise UserError(f"{who} must have shape ({n}, {N_ACTIONS}) (one row per cohort row), got {arr.shape}")
    if not np.isfinite(arr).all() or (arr < 0).any():
        rows = np.flatnonzero(~np.isfinite(arr).all(1) | (arr < 0).any(1))[:10].tolist()
        raise UserError(f"{who} has non-finite or negative probabilities in rows {rows}")
    bad = np.flatnonzero(np.abs(arr.sum(1) - 1.0) > 1e-6)
    if bad.size:
        raise UserError(f"{who} rows must sum to 1; rows {bad[:10].tolist()} do not")
    return arr


def _behaviour_taken(behaviour: Any, cohort: Cohort) -> np.ndarray:
    n = len(cohort)
    if hasattr(behaviour, "taken_probabilities"):
        taken = np.asarray(behaviour.taken_probabilities(cohort), dtype=np.float64)
    elif hasattr(behaviour, "probabilities"):
        p = _check_probs(behaviour.probabilities(cohort), n, "behaviour probabilities")
        taken = p[np.arange(n), cohort.actions]
    else:
        arr = np.asarray(behaviour, dtype=np.float64)
        if arr.ndim == 1:
            if arr.shape != (n,):
                raise UserError(
                    f"behaviour as taken-action probabilities must have shape ({n},), got {arr.shape}"
                )
            taken = arr
        else:
            taken = _check_probs(arr, n, "behaviour probabilities")[np.arange(n), cohort.actions]
    bad = np.flatnonzero(~np.isfinite(taken) | (taken <= 0) | (taken > 1 + 1e-9))
    if bad.size:
        raise UserError(
            f"behaviour probability of the action taken must be in (0, 1]; cohort {cohort.source!r} rows "
            f"{bad[:10].tolist()} are not (soften the behaviour model)"
        )
    return taken


# ---------------------------------------------------------------------------------------------- core
@dataclass(frozen=True)
class EpisodeTable:
    """Per-episode padded arrays the estimators are built from (``(n_episodes, horizon)``).

    ``rho`` carries each episode's final weight past its end; ``rho_prev`` is ``rho`` shifted one step
    right with 1 in the first column; ``reward``, ``q_taken`` and ``v`` are 0 past the end.
    """

    rho: np.ndarray
    rho_prev: np.ndarray
    reward: np.ndarray
    lengths: np.ndarray
    discount: np.ndarray
    q_taken: np.ndarray | None = None
    v: np.ndarray | None = None

    @property
    def n_episodes(self) -> int:
        return self.rho.shape[0]

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
) -> EpisodeTable:
    """Pad step arrays (rows grouped by episode, in time order) into an :class:`EpisodeTable`.

    Args:
        episode: ``(n_rows,)`` 0-based episode number of each row, non-decreasing.
        ratio: ``(n_rows,)`` per-step importance ratios ``pi_e / pi_b`` of the actions taken.
        reward: ``(n_rows,)`` rewards.
        gamma: discount.
        q_taken: optional ``(n_rows,)`` ``Q(s_t, a_t)``.
        v: optional ``(n_rows,)`` ``V(s_t) = sum_a pi_e(a|s_t) Q(s_t, a)``.
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
    return EpisodeTable(
        rho=rho,
        rho_prev=rho_prev,
        reward=pad(np.asarray(reward, dtype=np.float64)),
        lengths=lengths,
        discount=gamma ** np.arange(horizon, dtype=np.float64),
        q_taken=None if q_taken is None else pad(q_taken),
        v=None if v is None else pad(v),
    )


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with 0 where ``den == 0`` (a term with no weight contributes nothing)."""
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den != 0)
    return out


def make_statistics(
    table: EpisodeTable, estimators: Sequence[str]
) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Estimator name -> function of a ``(B, n_episodes)`` weight (count) matrix returning ``(B,)``.

    All requested estimators share one matrix product ``W @ S`` with ``S`` the column-stacked
    per-episode summaries; the functions below only slice the product, so asking for six estimators
    costs about one product. A row of ones gives the point estimate.
    """
    d = table.discount
    h = table.rho.shape[1]
    blocks: dict[str, np.ndarray] = {}

    def need(name: str, make: Callable[[], np.ndarray]) -> None:
        if name not in blocks:
            arr = make()
            blocks[name] = arr if arr.ndim == 2 else arr[:, None]

    rho_t = table.final_weight
    need("one", lambda: np.ones(table.n_episodes))
    if "wis" in estimators or "phwis" in estimators:
        need("wis_num", lambda: rho_t * table.returns)
        need("wis_den", lambda: rho_t)
    if "wpdis" in estimators or "wdr" in estimators:
        need("pd_num", lambda: d * table.rho * table.reward)
        need("pd_den", lambda: table.rho)
    if "phwis" in estimators:
        groups, inv = np.unique(table.lengths, return_inverse=True)
        onehot = np.zeros((table.n_episodes, len(groups)))
        onehot[np.arange(table.n_episodes), inv] = 1.0
        need("ph_num", lambda: onehot * (rho_t * table.returns)[:, None])
        need("ph_den", lambda: onehot * rho_t[:, None])
        need("ph_n", lambda: onehot)
    if _NEEDS_Q.intersection(estimators):
        if table.q_taken is None or table.v is None:
            raise UserError("DR, WDR and FQE need Q-values (pass q_model or let evaluate_ope fit one)")
        q, v = table.q_taken, table.v
        if "dr" in estimators:
            need("dr", lambda: (d * (table.rho * (table.reward - q) + table.rho_prev * v)).sum(1))
        if "wdr" in estimators:
            need("wdr_q", lambda: d * table.rho * q)
            need("wdr_v", lambda: d * table.rho_prev * v)
        if "fqe" in estimators:
            need("v0", lambda: v[:, 0] if h else np.zeros(table.n_episodes))

    names = list(blocks)
    widths = [blocks[k].shape[1] for k in names]
    offsets = np.r_[0, np.cumsum(widths)]
    stacked = np.concatenate([blocks[k] for k in names], axis=1)
    sl = {k: slice(int(offsets[i]), int(offsets[i + 1])) for i, k in enumerate(names)}
    cache: list[tuple[np.ndarray, np.ndarray]] = []  # (weights, product); holds the reference

    def product(w: np.ndarray) -> np.ndarray:
        if not cache or cache[0][0] is not w:
            cache[:] = [(w, w @ stacked)]
        return cache[0][1]

    def col(w: np.ndarray, name: str) -> np.ndarray:
        out = product(w)[:, sl[name]]
        return out[:, 0] if out.shape[1] == 1 else out

    def wis(w: np.ndarray) -> np.ndarray:
        num, den = col(w, "wis_num"), col(w, "wis_den")
        return np.where(den > 0, _safe_div(num, den), np.nan)

    def wpdis(w: np.ndarray) -> np.ndarray:
        num, den = (col(w, k).reshape(len(w), -1) for k in ("pd_num", "pd_den"))
        val = _safe_div(num, den).sum(1)
        return np.where(den[:, -1] > 0, val, np.nan) if h else np.full(len(w), np.nan)

    def phwis(w: np.ndarray) -> np.ndarray:
        num, den, n_g = col(w, "ph_num"), col(w, "ph_den"), col(w, "ph_n")
        num, den, n_g = (a.reshape(len(w), -1) for a in (num, den, n_g))
        ok = den > 0
        size = np.where(ok, n_g, 0.0)
        total = size.sum(1)
        val = (size * _safe_div(num, den)).sum(1)
        return np.where(total > 0, _safe_div(val, total), np.nan)

    def dr(w: np.ndarray) -> np.ndarray:
        return _safe_div(col(w, "dr"), col(w, "one"))

    def wdr(w: np.ndarray) -> np.ndarray:
        num_r, den = col(w, "pd_num"), col(w, "pd_den")
        num_q, num_v = col(w, "wdr_q"), col(w, "wdr_v")
        num_r, den, num_q, num_v = (a.reshape(len(w), -1) for a in (num_r, den, num_q, num_v))
        den_prev = np.concatenate([col(w, "one")[:, None], den[:, :-1]], axis=1)
        return (_safe_div(num_r - num_q, den) + _safe_div(num_v, den_prev)).sum(1)

    def fqe(w: np.ndarray) -> np.ndarray:
        return _safe_div(col(w, "v0"), col(w, "one"))

    table_fns = {"wis": wis, "wpdis": wpdis, "phwis": phwis, "dr": dr, "wdr": wdr, "fqe": fqe}
    return {k: table_fns[k] for k in estimators}


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's effective sample size ``(sum w)^2 / sum w^2`` (0 when every weight is 0)."""
    w = np.asarray(weights, dtype=np.float64)
    top = float(np.abs(w).max()) if w.size else 0.0
    if top == 0.0 or not np.isfinite(top):
        return 0.0 if top == 0.0 else float("nan")
    w = w / top  # scale-free; avoids overflow of squared huge weights
    return float(w.sum() ** 2 / (w**2).sum())


def weight_diagnostics(weights: np.ndarray) -> dict[str, float]:
    """Diagnostics of final importance weights.

    Keys: ``ess`` (Kish), ``ess_fraction`` (ESS / n), ``max_weight_share`` (largest weight / sum),
    ``zero_fraction`` (share of episodes with weight 0: the target policy would never have produced
    them), ``mean_weight`` (about 1 when the behaviour model is right and the target's support lies in
    the behaviour's), and quantiles ``q50``, ``q90``, ``q99``, ``max``.
    """
    w = np.asarray(weights, dtype=np.float64)
    n = len(w)
    total = float(w.sum())
    ess = effective_sample_size(w)
    q50, q90, q99 = np.percentile(w, [50, 90, 99]) if n else (np.nan,) * 3
    return {
        "ess": ess,
        "ess_fraction": ess / n if n else 0.0,
        "max_weight_share": float(w.max() / total) if total > 0 else float("nan"),
        "zero_fraction": float((w == 0).mean()) if n else float("nan"),
        "mean_weight": float(w.mean()) if n else float("nan"),
        "q50": float(q50),
        "q90": float(q90),
        "q99": float(q99),
        "max": float(w.max()) if n else float("nan"),
    }


# ---------------------------------------------------------------------------------------------- API
def evaluate_ope(
    cohort: Cohort,
    target_probs: np.ndarray,
    *,
    behaviour: Any,
    estimators: Sequence[str] = ESTIMATORS,
    gamma: float = 1.0,
    n_bootstrap: int = 1000,
    seed: int = 0,
    q_model: Any = None,
    level: float = 0.95,
    fqe_model: str = "auto",
) -> OPEResult:
    """Estimate a target policy's value on ``cohort`` with several OPE estimators and bootstrap intervals.

    Args:
        cohort: the behaviour data (episodes of the clinicians).
        target_probs: ``(n_rows, 25)`` target-policy probabilities at every row of the cohort (for
            ICU-Sepsis state tables: :func:`target_probs_from_table`).
        behaviour: a :class:`~sepsis_sdk.evaluation.behaviour.BehaviourModel` (or anything with
            ``probabilities(cohort)``), a ``(n_rows, 25)`` array, or a ``(n_rows,)`` array of the
            behaviour probabilities of the actions taken.
        estimators: any of ``"wis", "wpdis", "phwis", "dr", "wdr", "fqe"``.
        gamma: discount (1.0 for ICU-Sepsis survival).
        n_bootstrap: bootstrap resamples over patients (0 for point estimates only).
        seed: bootstrap seed (and FQE seed when a Q-model is fitted here).
        q_model: Q-model for DR/WDR/FQE: an object with ``q(features, static) -> (n, 25)``, or a
            ``(n_rows, 25)`` array of Q-values; fitted with :func:`~sepsis_sdk.evaluation.fqe.fit_fqe`
            (``model=fqe_model``) when None and needed.
        level: interval level of ``ci_low``/``ci_high``.
        fqe_model: model kind for the Q-model fitted here.

    Returns:
        An :class:`OPEResult`.
    """
    estimators = tuple(estimators)
    unknown = [e for e in estimators if e not in ESTIMATORS]
    if unknown or not estimators:
        raise UserError(f"unknown estimators {unknown}; choose from {list(ESTIMATORS)}")
    if not 0.0 < gamma <= 1.0:
        raise UserError(f"gamma must be in (0, 1], got {gamma}")
    n = len(cohort)
    if n == 0:
        raise UserError(f"cohort {cohort.source!r} is empty")
    pe = _check_probs(target_probs, n, "target_probs")
    acts = cohort.actions
    pb_taken = _behaviour_taken(behaviour, cohort)
    ratio = pe[np.arange(n), acts] / pb_taken

    q_taken = v = None
    if _NEEDS_Q.intersection(estimators):
        if q_model is None:
            from sepsis_sdk.evaluation.fqe import fit_fqe

            q_model = fit_fqe(cohort, pe, gamma=gamma, model=fqe_model, seed=seed)
        q = _q_values(q_model, cohort)
        q_taken = q[np.arange(n), acts]
        v = (pe * q).sum(1)
    reward = cohort.data["reward"].to_numpy(dtype=np.float64)
    table = build_episode_table(cohort.episode_index(), ratio, reward, gamma=gamma, q_taken=q_taken, v=v)
    stats = make_statistics(table, estimators)
    ones = np.ones((1, table.n_episodes))
    point = {k: float(fn(ones)[0]) for k, fn in stats.items()}
    boots = bootstrap_statistics(stats, table.n_episodes, n_bootstrap, seed=seed) if n_bootstrap else {}
    wdiag = weight_diagnostics(table.final_weight)
    estimates = {}
    for name in estimators:
        samples = boots.get(name, np.zeros(0))
        lo, hi = percentile_interval(samples, level) if samples.size else (float("nan"), float("nan"))
        diag = dict(wdiag) if name != "fqe" else {}
        diag["undefined_resamples"] = float((~np.isfinite(samples)).sum())
        if name == "phwis":
            diag["n_length_groups"] = float(len(np.unique(table.lengths)))
        estimates[name] = Estimate(
            value=point[name],
            ci_low=lo,
            ci_high=hi,
            lower_bound_5pct=lower_bound(samples) if samples.size else float("nan"),
            ess=float(table.n_episodes) if name == "fqe" else wdiag["ess"],
            n_episodes=table.n_episodes,
            diagnostics=diag,
        )
    return OPEResult(
        estimates=estimates,
        gamma=gamma,
        n_bootstrap=n_bootstrap,
        level=level,
        seed=seed,
        weights=wdiag,
        q_model=q_model,
        bootstrap=boots,
    )


def _q_values(q_model: Any, cohort: Cohort) -> np.ndarray:
    n = len(cohort)
    if hasattr(q_model, "q"):
        from sepsis_sdk.evaluation.behaviour import cohort_inputs

        x, static = cohort_inputs(cohort)
        q = np.asarray(q_model.q(x, static), dtype=np.float64)
    else:
        q = np.asarray(q_model, dtype=np.float64)
    if q.shape != (n, N_ACTIONS) or not np.isfinite(q).all():
        raise UserError(f"Q-values must be a finite ({n}, {N_ACTIONS}) array, got shape {q.shape}")
    return q


__all__ = [
    "ESTIMATORS",
    "EpisodeTable",
    "Estimate",
    "OPEResult",
    "build_episode_table",
    "effective_sample_size",
    "evaluate_ope",
    "make_statistics",
    "target_probs_from_table",
    "weight_diagnostics",
]
