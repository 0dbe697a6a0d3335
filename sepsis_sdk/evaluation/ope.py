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
- ``"dr_clip"``, ``"wdr_clip"``: DR and WDR clipped to the range of possible values (bounded; also their
  intervals). WIS and PHWIS are bounded by construction (:data:`BOUNDED_ESTIMATORS`).

**Never silently wrong.** Every estimate carries ``flags``: ``undefined`` (NaN: e.g. WIS with every weight 0),
``extrapolated`` (the direct method, FQE, when the target leaves the support: its Q there is the model's
guess, and its interval cannot see that bias), ``out_of_range`` (outside the range of possible
values, e.g. a DR of 2.773 for a survival probability: not a result), ``low_support`` (an importance-weighted
estimate when the target leaves the behaviour's support or the weights degenerate: most final weights zero,
or a tiny effective sample size; thresholds :data:`SUPPORT_MAX_ZERO_FRACTION`, :data:`SUPPORT_MIN_ESS`,
:data:`SUPPORT_MIN_ESS_FRACTION`) and ``at_bound`` (a clipped estimate on its bound). :func:`evaluate_ope`
also issues an :class:`OPEWarning` for each problem and keeps the messages in ``OPEResult.warnings``; the
report prints flagged values as flagged, never as plain results.

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

Each estimator is one registered class (:mod:`sepsis_sdk.evaluation.estimators`; add your own with
``register_estimator``). Intervals come from a vectorised bootstrap over patients
(:mod:`sepsis_sdk.evaluation.bootstrap`): all estimators are weighted sums of per-episode summaries, so
``B`` resamples of every requested estimator are one ``(B, n)`` count matrix times one ``(n, k)`` matrix of
the summaries they declare. By default the Q-model is held fixed across resamples, so DR/WDR/FQE
intervals do not include the model's fitting uncertainty; ``q_refits=`` refits it on each of that many
resamples instead (measured coverage: ``benchmarks/bench_fqe_coverage.py`` and docs/evaluation.md).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sepsis_sdk.actions import N_ACTIONS
from sepsis_sdk.errors import UserError
from sepsis_sdk.evaluation.bootstrap import bootstrap_statistics, lower_bound, percentile_interval
from sepsis_sdk.evaluation.estimators import (
    BOUNDED_ESTIMATORS,
    BUILTIN_ESTIMATORS,
    EpisodeTable,
    Estimator,
    build_episode_table,
    make_statistics,
    resolve_estimators,
)

if TYPE_CHECKING:
    import pandas as pd

    from sepsis_sdk.cohort import Cohort

ESTIMATORS: tuple[str, ...] = BUILTIN_ESTIMATORS
"""The built-in estimators (all registered names: :func:`~sepsis_sdk.evaluation.estimators.available_estimators`)."""

SUPPORT_MAX_ZERO_FRACTION = 0.5
"""Above this share of episodes with final weight 0 the target has left the behaviour's support."""
SUPPORT_MIN_ESS = 10.0
"""Below this effective sample size (Kish, final weights) importance-weighted estimates rest on a few
episodes."""
SUPPORT_MIN_ESS_FRACTION = 0.01
"""... or below this share of the episodes."""


class OPEWarning(UserWarning):
    """An off-policy estimate that should not be read as a result (out of range, or poor support)."""


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
        flags: what makes the estimate unreliable: ``"undefined"``, ``"out_of_range"``, ``"low_support"``,
            ``"extrapolated"``, ``"at_bound"``
            (module docstring); empty when none applies.
        interval: how ``ci_low``/``ci_high`` were made: ``"bootstrap"`` (percentile, resampled patients,
            any Q-model held fixed) or ``"bootstrap_refit_basic"`` / ``"bootstrap_refit_percentile"`` (the
            Q-model refitted on every resample; see ``evaluate_ope(q_refits=...)``).
    """

    value: float
    ci_low: float
    ci_high: float
    lower_bound_5pct: float
    ess: float
    n_episodes: int
    diagnostics: dict[str, float] = field(default_factory=dict)
    flags: tuple[str, ...] = ()
    interval: str = "bootstrap"

    def covers(self, truth: float) -> bool:
        """Whether the interval contains ``truth``."""
        return bool(self.ci_low <= truth <= self.ci_high)

    @property
    def valid(self) -> bool:
        """False when the value is impossible or missing (``out_of_range``, ``undefined``): it must not be
        reported as a result."""
        return not {"out_of_range", "undefined"} & set(self.flags)


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
        warnings: the problems found (also issued as :class:`OPEWarning`): impossible values, poor support.
        value_range: the range of possible values the estimates were checked against.
    """

    estimates: dict[str, Estimate]
    gamma: float
    n_bootstrap: int
    level: float
    seed: int
    weights: dict[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    value_range: tuple[float, float] | None = None
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
            row["flags"] = ",".join(e.flags)
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
            "estimates": {k: {**asdict(v), "flags": list(v.flags)} for k, v in self.estimates.items()},
            "warnings": list(self.warnings),
            "value_range": None if self.value_range is None else list(self.value_range),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OPEResult:
        """Rebuild from :meth:`to_dict` output (e.g. a resumed run; JSON nulls become NaN)."""
        nan = float("nan")

        def num(x: Any) -> float:
            return nan if x is None else float(x)

        estimates = {}
        for k, e in d.get("estimates", {}).items():
            floats = {f: num(e.get(f)) for f in ("value", "ci_low", "ci_high", "lower_bound_5pct", "ess")}
            diag = {dk: num(dv) for dk, dv in (e.get("diagnostics") or {}).items()}
            estimates[k] = Estimate(
                **floats,
                n_episodes=int(e.get("n_episodes", 0)),
                diagnostics=diag,
                flags=tuple(e.get("flags") or ()),
                interval=str(e.get("interval") or "bootstrap"),
            )
        vr = d.get("value_range")
        return cls(
            estimates=estimates,
            gamma=float(d.get("gamma", 1.0)),
            n_bootstrap=int(d.get("n_bootstrap", 0)),
            level=float(d.get("level", 0.95)),
            seed=int(d.get("seed", 0)),
            weights={k: num(v) for k, v in (d.get("weights") or {}).items()},
            warnings=tuple(d.get("warnings") or ()),
            value_range=None if vr is None else (float(vr[0]), float(vr[1])),
        )


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
    estimators: Sequence[str | Estimator] = ESTIMATORS,
    gamma: float = 1.0,
    n_bootstrap: int = 1000,
    seed: int = 0,
    q_model: Any = None,
    level: float = 0.95,
    fqe_model: str = "auto",
    value_range: tuple[float, float] | None = None,
    warn: bool = True,
    q_refits: int = 0,
    refit_interval: str = "basic",
) -> OPEResult:
    """Estimate a target policy's value on ``cohort`` with several OPE estimators and bootstrap intervals.

    Args:
        cohort: the behaviour data (episodes of the clinicians).
        target_probs: ``(n_rows, 25)`` target-policy probabilities at every row of the cohort (for
            ICU-Sepsis state tables: :func:`target_probs_from_table`).
        behaviour: a :class:`~sepsis_sdk.evaluation.behaviour.BehaviourModel` (or anything with
            ``probabilities(cohort)``), a ``(n_rows, 25)`` array, or a ``(n_rows,)`` array of the
            behaviour probabilities of the actions taken.
        estimators: registered estimator names (built in: ``"wis", "wpdis", "phwis", "dr", "wdr",
            "fqe"``; add your own with :func:`~sepsis_sdk.evaluation.estimators.register_estimator`) or
            :class:`~sepsis_sdk.evaluation.estimators.Estimator` instances.
        gamma: discount (1.0 for ICU-Sepsis survival).
        n_bootstrap: bootstrap resamples over patients (0 for point estimates only).
        seed: bootstrap seed (and FQE seed when a Q-model is fitted here).
        q_model: Q-model for DR/WDR/FQE: an object with ``q(features, static) -> (n, 25)``, or a
            ``(n_rows, 25)`` array of Q-values; fitted with :func:`~sepsis_sdk.evaluation.fqe.fit_fqe`
            (``model=fqe_model``) when None and needed.
        level: interval level of ``ci_low``/``ci_high``.
        fqe_model: model kind for the Q-model fitted here.
        value_range: ``(low, high)`` a policy's value can take (default: the range of the cohort's
            returns and 0, i.e. ``(0, 1)`` for survival); estimates outside are flagged ``out_of_range``.
        warn: issue an :class:`OPEWarning` for each problem (they are kept in ``OPEResult.warnings``
            either way).
        q_refits: for the estimators that read a Q-model (FQE, DR, WDR, ...): bootstrap resamples on
            which the Q-model is **refitted** (FQE on the resampled patients) for their intervals. With 0
            (default) their intervals hold the Q-model fixed and understate the uncertainty
            (``benchmarks/bench_fqe_coverage.py``: FQE's fixed-Q intervals rarely cover the truth). Needs
            the Q-model fitted here (``q_model=None``); costs one FQE fit per resample.
        refit_interval: ``"basic"`` (default: the bootstrap interval reflected about the estimate,
            ``[2 v - q_hi, 2 v - q_lo]``, which also corrects the estimator's bias as the refits see it:
            FQE shrinks rarely seen actions toward the state's value, more so on a resample) or
            ``"percentile"``. Both are clipped to ``value_range``.

    Returns:
        An :class:`OPEResult`. Check ``estimate.flags`` (or ``estimate.valid``) and ``result.warnings``
        before reading a number as a result.
    """
    ests = resolve_estimators(tuple(estimators))
    if not 0.0 < gamma <= 1.0:
        raise UserError(f"gamma must be in (0, 1], got {gamma}")
    if len(cohort) == 0:
        raise UserError(f"cohort {cohort.source!r} is empty")
    pe = _check_probs(target_probs, len(cohort), "target_probs")
    pb_taken = _behaviour_taken(behaviour, cohort)  # checked before a Q-model is fitted
    if refit_interval not in ("basic", "percentile"):
        raise UserError(f"refit_interval must be 'basic' or 'percentile', got {refit_interval!r}")
    if q_refits < 0:
        raise UserError(f"q_refits must be >= 0, got {q_refits}")
    fitted_here = q_model is None
    if q_refits and not fitted_here:
        raise UserError("q_refits needs the Q-model fitted here (pass q_model=None)")
    if q_model is None and any(e.needs_q for e in ests):
        from sepsis_sdk.evaluation.fqe import fit_fqe

        q_model = fit_fqe(cohort, pe, gamma=gamma, model=fqe_model, seed=seed)
    table = _episode_table(
        cohort, pe, pb_taken, gamma, q_model if any(e.needs_q for e in ests) else None, value_range
    )
    stats = make_statistics(table, ests)
    ones = np.ones((1, table.n_episodes))
    point = {k: float(fn(ones)[0]) for k, fn in stats.items()}
    boots = bootstrap_statistics(stats, table.n_episodes, n_bootstrap, seed=seed) if n_bootstrap else {}
    refit: dict[str, np.ndarray] = {}
    q_ests = [e for e in ests if e.needs_q]
    if q_refits and q_ests:
        refit = _refit_bootstrap(
            cohort, pe, pb_taken, gamma, q_ests, q_refits, seed=seed, kind=q_model.kind,
            value_range=table.value_range,
        )  # fmt: skip
        boots = {**boots, **refit}
    wdiag = weight_diagnostics(table.final_weight)
    support = support_problems(wdiag, table.n_episodes)
    estimates = {
        e.estimator_name: _estimate(
            e, table, point[e.estimator_name], boots, wdiag, level, bool(support),
            refit=refit_interval if e.estimator_name in refit else None,
        )
        for e in ests
    }  # fmt: skip
    messages = _messages(estimates, table.value_range, support)
    if warn:
        for m in messages:
            warnings.warn(m, OPEWarning, stacklevel=2)
    return OPEResult(
        estimates=estimates,
        gamma=gamma,
        n_bootstrap=n_bootstrap,
        level=level,
        seed=seed,
        weights=wdiag,
        q_model=q_model,
        bootstrap=boots,
        warnings=tuple(messages),
        value_range=table.value_range,
    )


def _refit_bootstrap(
    cohort: Cohort,
    pe: np.ndarray,
    pb_taken: np.ndarray,
    gamma: float,
    ests: Sequence[Estimator],
    n_refits: int,
    *,
    seed: int,
    kind: str,
    value_range: tuple[float, float],
) -> dict[str, np.ndarray]:
    """Estimates of the Q-reading estimators on ``n_refits`` resamples of patients, the Q-model refitted
    on each (rows weighted by their patient's draw count: no copy of the cohort)."""
    from sepsis_sdk.evaluation.bootstrap import bootstrap_counts
    from sepsis_sdk.evaluation.fqe import fit_fqe

    ep = cohort.episode_index()
    counts = bootstrap_counts(int(ep.max()) + 1, n_refits, np.random.default_rng([seed, 7]))
    out = {e.estimator_name: np.full(n_refits, np.nan) for e in ests}
    for b in range(n_refits):
        q_b = fit_fqe(cohort, pe, gamma=gamma, model=kind, seed=seed + b, sample_weight=counts[b][ep])
        table = _episode_table(cohort, pe, pb_taken, gamma, q_b, value_range)
        for name, fn in make_statistics(table, ests).items():
            out[name][b] = fn(counts[b : b + 1])[0]
    return out


def support_problems(weights: Mapping[str, float], n_episodes: int) -> list[str]:
    """Why importance weighting cannot be trusted here (empty when nothing is wrong).

    Args:
        weights: :func:`weight_diagnostics` of the final weights.
        n_episodes: the number of episodes.
    """
    out = []
    zero, ess = float(weights.get("zero_fraction", 0.0)), float(weights.get("ess", 0.0))
    if zero > SUPPORT_MAX_ZERO_FRACTION:
        out.append(
            f"the target leaves the behaviour's support: {100 * zero:.0f} % of the {n_episodes} episodes have "
            "importance weight 0 (the target would not have taken the recorded actions)"
        )
    if not ess >= max(SUPPORT_MIN_ESS, SUPPORT_MIN_ESS_FRACTION * n_episodes):
        out.append(
            f"tiny effective sample size: ESS {ess:.1f} of {n_episodes} episodes; importance-weighted "
            "estimates rest on a few patients"
        )
    return out


def _flags(est: Estimator, value: float, lo: float, hi: float, low_support: bool) -> tuple[str, ...]:
    flags = []
    tol = 1e-9 * max(1.0, abs(lo), abs(hi))
    if not np.isfinite(value):
        flags.append("undefined")  # e.g. WIS when every importance weight is 0: no estimate at all
    if np.isfinite(value) and not lo - tol <= value <= hi + tol:
        flags.append("out_of_range")
    if est.weighted and low_support:
        flags.append("low_support")
    if est.needs_q and not est.weighted and low_support:
        # the direct method reads Q where the target acts; off the behaviour's support that Q is the
        # model's extrapolation (FQE shrinks unseen actions toward the state's value): biased, not noisy
        flags.append("extrapolated")
    if est.bounded and est.needs_q and np.isfinite(value) and (value <= lo + tol or value >= hi - tol):
        flags.append("at_bound")  # a clipped DR/WDR on its bound: the unclipped estimate was at or beyond it
    return tuple(flags)


def _messages(
    estimates: Mapping[str, Estimate], value_range: tuple[float, float], support: list[str]
) -> list[str]:
    lo, hi = value_range
    out = []
    bad = {k: e.value for k, e in estimates.items() if "out_of_range" in e.flags}
    if bad:
        vals = ", ".join(f"{k} = {v:.3f}" for k, v in bad.items())
        out.append(
            f"{vals} outside the range of possible values [{lo:g}, {hi:g}]: not a valid estimate "
            f"(bounded estimators: {', '.join(BOUNDED_ESTIMATORS)})"
        )
    out += support
    return out


def _episode_table(
    cohort: Cohort,
    pe: np.ndarray,
    pb_taken: np.ndarray,
    gamma: float,
    q_model: Any,
    value_range: tuple[float, float] | None = None,
) -> EpisodeTable:
    """Ratios, rewards and (with a Q-model) ``Q(s, a_taken)`` and ``V(s)`` padded per episode."""
    n = len(cohort)
    acts = cohort.actions
    ratio = pe[np.arange(n), acts] / pb_taken
    q_taken = v = None
    if q_model is not None:
        q = _q_values(q_model, cohort)
        q_taken = q[np.arange(n), acts]
        v = (pe * q).sum(1)
    reward = cohort.data["reward"].to_numpy(dtype=np.float64)
    return build_episode_table(
        cohort.episode_index(), ratio, reward, gamma=gamma, q_taken=q_taken, v=v, value_range=value_range
    )


def _estimate(
    est: Estimator,
    table: EpisodeTable,
    value: float,
    boots: dict[str, np.ndarray],
    wdiag: dict[str, float],
    level: float,
    low_support: bool = False,
    refit: str | None = None,
) -> Estimate:
    samples = boots.get(est.estimator_name, np.zeros(0))
    lo, hi = percentile_interval(samples, level) if samples.size else (float("nan"), float("nan"))
    if refit == "basic" and np.isfinite(value):  # reflect about the estimate: corrects the refits' bias
        lo, hi = 2 * value - hi, 2 * value - lo
    if refit is not None:
        lo, hi = float(np.clip(lo, *table.value_range)), float(np.clip(hi, *table.value_range))
    diag = dict(wdiag) if est.weighted else {}
    diag["undefined_resamples"] = float((~np.isfinite(samples)).sum())
    diag.update(est.diagnostics(table))
    return Estimate(
        value=value,
        ci_low=lo,
        ci_high=hi,
        lower_bound_5pct=lower_bound(samples) if samples.size else float("nan"),
        ess=wdiag["ess"] if est.weighted else float(table.n_episodes),
        n_episodes=table.n_episodes,
        diagnostics=diag,
        flags=_flags(est, value, *table.value_range, low_support),
        interval="bootstrap" if refit is None else f"bootstrap_refit_{refit}",
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
    "BOUNDED_ESTIMATORS",
    "ESTIMATORS",
    "SUPPORT_MAX_ZERO_FRACTION",
    "SUPPORT_MIN_ESS",
    "SUPPORT_MIN_ESS_FRACTION",
    "EpisodeTable",
    "Estimate",
    "Estimator",
    "OPEResult",
    "OPEWarning",
    "build_episode_table",
    "effective_sample_size",
    "evaluate_ope",
    "make_statistics",
    "support_problems",
    "target_probs_from_table",
    "weight_diagnostics",
]
