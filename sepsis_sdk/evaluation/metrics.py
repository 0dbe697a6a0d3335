"""Decision metrics on a cohort: guideline adherence, rule violation rates, action agreement.

Rates are per decision and their intervals come from a bootstrap over **patients** (decisions of one
patient are resampled together). All rules come from :mod:`sepsis_sdk.safety` (``rules.yaml``), where
our definitions of adherence, underdosing and overdosing are written.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sepsis_sdk.actions import N_ACTIONS, N_LEVELS
from sepsis_sdk.errors import UserError

if TYPE_CHECKING:
    from sepsis_sdk.cohort import Cohort
    from sepsis_sdk.safety import CohortRuleResults, RuleSet


@dataclass(frozen=True)
class Rate:
    """A per-decision rate with a patient-bootstrap percentile interval.

    Attributes:
        value: the rate (None when no decision was eligible).
        ci_low / ci_high: percentile interval (None without bootstrap or eligible decisions).
        n: eligible decisions (the denominator).
        n_patients: patients with at least one eligible decision.
    """

    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int = 0
    n_patients: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def fmt(self, pct: bool = True, digits: int = 1) -> str:
        if self.value is None:
            return "n/a"
        k = 100.0 if pct else 1.0
        s = f"{self.value * k:.{digits}f}"
        if self.ci_low is not None and self.ci_high is not None:
            s += f" [{self.ci_low * k:.{digits}f}, {self.ci_high * k:.{digits}f}]"
        return s


def _resample_index(n_groups: int, n_bootstrap: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n_groups, size=(n_bootstrap, n_groups))


def bootstrap_ratio(
    numerator: np.ndarray,
    denominator: np.ndarray,
    episode: np.ndarray,
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    complement: bool = False,
) -> Rate:
    """``sum(numerator) / sum(denominator)`` over rows, with a patient-level bootstrap interval.

    Args:
        numerator: per-row numerator (e.g. violation probability, already 0 where not eligible).
        denominator: per-row weight (1 where eligible).
        episode: per-row 0-based patient index.
        n_bootstrap: resamples (0: no interval).
        seed: RNG seed (the same seed gives the same resamples for every metric of a run).
        level: interval level.
        complement: report ``1 - ratio`` (e.g. adherence from the violation rate).
    """
    num = np.bincount(episode, weights=np.asarray(numerator, dtype=np.float64))
    den = np.bincount(episode, weights=np.asarray(denominator, dtype=np.float64), minlength=len(num))
    num = np.pad(num, (0, len(den) - len(num)))
    total = den.sum()
    n_pat = int((den > 0).sum())
    if total <= 0:
        return Rate(None, n=0, n_patients=0)
    point = num.sum() / total
    lo = hi = None
    if n_bootstrap > 0 and len(den) > 1:
        vals = []
        for chunk in range(0, n_bootstrap, 200):  # bounded memory: 200 x n_patients indices at a time
            b = min(200, n_bootstrap - chunk)
            idx = _resample_index(len(den), b, seed + chunk)
            d = den[idx].sum(1)
            with np.errstate(invalid="ignore", divide="ignore"):
                vals.append(num[idx].sum(1) / d)
        v = np.concatenate(vals)
        v = v[np.isfinite(v)]
        if v.size:
            alpha = (1.0 - level) / 2.0
            lo, hi = (float(q) for q in np.quantile(v, [alpha, 1.0 - alpha]))
    if complement:
        point, lo, hi = 1.0 - point, (None if hi is None else 1.0 - hi), (None if lo is None else 1.0 - lo)
    return Rate(float(point), lo, hi, int(round(total)), n_pat)


@dataclass
class RuleRate:
    """One rule's violation rate among decisions where it applies, and among those that trigger it."""

    rule_id: str
    kind: str
    rate: Rate
    rate_triggered: Rate
    approximate: bool
    not_applicable: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return d


@dataclass
class SafetyMetrics:
    """Guideline adherence and rule violation rates of one policy on one cohort.

    Attributes:
        adherence: share of decisions breaking neither G1 nor G2 (definition ``guideline_adherence``).
        definitions: violation rate of each named definition (``underdosing``, ``overdosing``, ``unsafe``).
        rules: per-rule rates.
    """

    adherence: Rate
    definitions: dict[str, Rate]
    rules: dict[str, RuleRate]
    approximate: bool = False
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "adherence": self.adherence.to_dict(),
            "definitions": {k: v.to_dict() for k, v in self.definitions.items()},
            "rules": {k: v.to_dict() for k, v in self.rules.items()},
            "approximate": self.approximate,
            "notes": list(self.notes),
        }


def safety_metrics(
    cohort: Cohort,
    actions: np.ndarray | None = None,
    *,
    rules: RuleSet | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    results: CohortRuleResults | None = None,
) -> SafetyMetrics:
    """Adherence and per-rule violation rates of ``actions`` (indices or probabilities) on ``cohort``.

    Args:
        cohort: the decisions judged (their recorded histories).
        actions: ``(n_rows,)`` indices, ``(n_rows, 25)`` probabilities, or None for the recorded actions.
        rules: rule set (default: the packaged rules).
        n_bootstrap: patient resamples for the intervals.
        seed: bootstrap seed.
        level: interval level.
        results: precomputed :meth:`RuleSet.evaluate_cohort` output (skips the evaluation).
    """
    from sepsis_sdk.safety import load_rules

    rules = rules or load_rules()
    res = results if results is not None else rules.evaluate_cohort(cohort, actions)
    ep = res.episode
    kw = {"n_bootstrap": n_bootstrap, "seed": seed, "level": level}
    per_rule: dict[str, RuleRate] = {}
    for r, rid in enumerate(res.rule_ids):
        app = res.applicable[r].astype(np.float64)
        trig = res.triggered[r].astype(np.float64)
        per_rule[rid] = RuleRate(
            rule_id=rid,
            kind=res.kinds[rid],
            rate=bootstrap_ratio(res.violated[r], app, ep, **kw),
            rate_triggered=bootstrap_ratio(res.violated[r] * trig, trig, ep, **kw),
            approximate=res.approximate[rid] and rid not in res.not_applicable,
            not_applicable=res.not_applicable.get(rid),
        )
    defs: dict[str, Rate] = {}
    for name, (app, vio) in res.definitions.items():
        defs[name] = bootstrap_ratio(vio * app, app.astype(np.float64), ep, **kw)
    if "guideline_adherence" in res.definitions:
        app, vio = res.definitions["guideline_adherence"]
        adherence = bootstrap_ratio(vio * app, app.astype(np.float64), ep, complement=True, **kw)
    else:
        adherence = Rate(None)
    approx = any(v.approximate for v in per_rule.values())
    notes = [f"{k}: not applicable ({v.not_applicable})" for k, v in per_rule.items() if v.not_applicable]
    if approx:
        notes.append("MAP/lactate converted from z-scores with MIMIC-IV reference statistics: approximate")
    return SafetyMetrics(
        adherence=adherence, definitions=defs, rules=per_rule, approximate=approx, notes=notes
    )


def _as_probs(cohort_len: int, actions: np.ndarray) -> np.ndarray:
    a = np.asarray(actions)
    if a.ndim == 1:
        if a.shape[0] != cohort_len:
            raise UserError(f"got {a.shape[0]} actions for {cohort_len} rows")
        out = np.zeros((cohort_len, N_ACTIONS))
        out[np.arange(cohort_len), a.astype(np.int64)] = 1.0
        return out
    if a.shape != (cohort_len, N_ACTIONS):
        raise UserError(
            f"expected ({cohort_len},) actions or ({cohort_len}, 25) probabilities, got {a.shape}"
        )
    return a.astype(np.float64)


def action_agreement(
    cohort: Cohort, actions: np.ndarray, *, n_bootstrap: int = 1000, seed: int = 0, level: float = 0.95
) -> dict[str, Rate]:
    """How often the policy picks the clinicians' recorded action (exact, fluid level, vasopressor level).

    For a stochastic policy this is the expected agreement (probability mass on the recorded action).
    """
    p = _as_probs(len(cohort), actions)
    rec = cohort.actions
    n = len(rec)
    ep = cohort.episode_index()
    ones = np.ones(n)
    grid = p.reshape(n, N_LEVELS, N_LEVELS)
    fluid = grid.sum(2)[np.arange(n), rec // N_LEVELS]
    vaso = grid.sum(1)[np.arange(n), rec % N_LEVELS]
    kw = {"n_bootstrap": n_bootstrap, "seed": seed, "level": level}
    return {
        "exact": bootstrap_ratio(p[np.arange(n), rec], ones, ep, **kw),
        "fluid": bootstrap_ratio(fluid, ones, ep, **kw),
        "vaso": bootstrap_ratio(vaso, ones, ep, **kw),
    }


def action_distribution(actions: np.ndarray, n_rows: int | None = None) -> np.ndarray:
    """``(5, 5)`` share of decisions per (fluid level, vasopressor level); rows are fluid levels."""
    a = np.asarray(actions)
    p = _as_probs(len(a) if n_rows is None else n_rows, a)
    tot = p.sum(0)
    return (tot / max(tot.sum(), 1e-12)).reshape(N_LEVELS, N_LEVELS)


__all__ = [
    "Rate",
    "RuleRate",
    "SafetyMetrics",
    "action_agreement",
    "action_distribution",
    "bootstrap_ratio",
    "safety_metrics",
]
