"""The metrics of a benchmark run: each one a small :class:`Scorer`, registered by name.

For every policy the runner computes its action probabilities on the test patients once and hands each
scorer a :class:`ScoringContext`; the scorer returns a typed result (anything with ``to_dict()``) or
``None`` when it does not apply (it says why with :meth:`ScoringContext.note`). Results are stored under
the scorer's ``name`` in :class:`~sepsis_sdk.evaluation.results.PolicyResult` and in ``results.json``;
on resume :meth:`Scorer.load` turns the stored dict back into the typed result.

Built in (``EvaluationConfig.scorers``, in this order): ``ope`` (off-policy estimates), ``safety``
(guideline adherence and hazard rates), ``agreement`` (with the clinicians), ``true_value`` (the cohort's
ground truth, :func:`sepsis_sdk.truth.truth_for`) and ``model_based`` (the paper's world-model protocol).

Add a metric with one class::

    from sepsis_sdk.evaluation.scorers import register_scorer

    @dataclass
    class MeanFluid:
        value: float

        def to_dict(self):
            return {"value": self.value}

    @register_scorer
    class MeanFluidScorer:
        name = "mean_fluid"

        def score(self, ctx):
            return MeanFluid(float((ctx.probabilities.reshape(-1, 5, 5).sum(2) @ np.arange(5)).mean()))

        def load(self, data):
            return MeanFluid(**data)

    EvaluationConfig(scorers=(*DEFAULT_SCORERS, "mean_fluid"))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from sepsis_sdk.errors import UserError
from sepsis_sdk.evaluation.config import EvaluationConfig, PolicyConfig
from sepsis_sdk.evaluation.results import ResultLoader

if TYPE_CHECKING:
    from sepsis_sdk.cohort import Cohort
    from sepsis_sdk.safety import RuleSet


# ---------------------------------------------------------------------------------------------- protocol
@dataclass
class ScoringContext:
    """What a scorer sees for one policy.

    Attributes:
        name: the policy's row name.
        policy: the policy object.
        policy_config: its settings (``max_patients``, ``truth_episodes``, ``model_based``, ...).
        config: the run's config.
        cohort: the test patients it is scored on.
        probabilities: ``(len(cohort), 25)`` policy probabilities at every decision of ``cohort``.
        markov: whether the policy depends on the current state only (exact true value where possible).
        behaviour: the behaviour model fitted on the training split (the OPE denominator).
        rules: the safety rule set.
        truth: the cohort's ground truth (:func:`sepsis_sdk.truth.truth_for`), None for real data.
        world_model: a function returning the world model for the model-based protocol (None: none
            given); it loads at most once, on first use.
        notes: the policy's notes (add with :meth:`note`).
    """

    name: str
    policy: Any
    policy_config: PolicyConfig
    config: EvaluationConfig
    cohort: Cohort
    probabilities: np.ndarray
    markov: bool
    behaviour: Any
    rules: RuleSet
    truth: Any = None
    world_model: Callable[[], Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def seed(self) -> int:
        return self.config.seed

    def note(self, text: str) -> None:
        """Record why something was skipped or approximated (shown in the report's notes)."""
        self.notes.append(text)


@runtime_checkable
class Scorer(ResultLoader, Protocol):
    """One metric of the benchmark.

    Attributes:
        name: registry name and the key of its result (in ``PolicyResult.scores`` and ``results.json``).
    """

    name: str

    def score(self, ctx: ScoringContext) -> Any:
        """The typed result for ``ctx.policy`` (with ``to_dict()``), or None when it does not apply."""
        ...

    def load(self, data: Mapping[str, Any]) -> Any:
        """The typed result again from its ``to_dict()`` form (used when a run resumes)."""
        ...


ScorerFactory = Callable[[], Scorer]
_REGISTRY: dict[str, ScorerFactory] = {}


def register_scorer(factory: ScorerFactory | None = None, *, name: str | None = None, replace: bool = False):
    """Register a scorer class (or zero-argument factory) under its ``name``; usable as a decorator.

    Args:
        factory: a class with a ``name`` attribute, or a factory (then pass ``name``).
        name: registry name (default ``factory.name``).
        replace: allow replacing a scorer of the same name.
    """

    def add(f: ScorerFactory) -> ScorerFactory:
        key = name or getattr(f, "name", None)
        if not key:
            raise UserError(f"{f!r} has no name; pass register_scorer(..., name=...)")
        if key in _REGISTRY and _REGISTRY[key] is not f and not replace:
            raise UserError(f"a scorer named {key!r} is already registered (pass replace=True)")
        _REGISTRY[key] = f
        return f

    return add(factory) if factory is not None else add


def unregister_scorer(name: str) -> None:
    """Remove a registered scorer (mostly for tests)."""
    _REGISTRY.pop(name, None)


def available_scorers() -> tuple[str, ...]:
    """Registered scorer names, built-ins first."""
    return tuple(_REGISTRY)


def create_scorers(names: Sequence[str]) -> list[Scorer]:
    """Scorer instances for ``names``, in order; errors name every unknown one."""
    unknown = [n for n in names if n not in _REGISTRY]
    if unknown:
        raise UserError(f"unknown scorers {unknown}; registered: {list(_REGISTRY)}")
    return [_REGISTRY[n]() for n in names]


def _build(cls: type, d: Mapping[str, Any]) -> Any:
    """A dataclass from a dict, ignoring keys it does not have (tolerant of older files)."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})


# ---------------------------------------------------------------------------------------------- built-ins
@register_scorer
class OPEScorer:
    """Off-policy estimates (``config.ope.estimators``) against the run's fitted behaviour model."""

    name = "ope"

    def score(self, ctx: ScoringContext) -> Any:
        from sepsis_sdk.evaluation.ope import evaluate_ope

        o = ctx.config.ope
        res = evaluate_ope(
            ctx.cohort,
            ctx.probabilities,
            behaviour=ctx.behaviour,
            estimators=o.estimators,
            n_bootstrap=o.n_bootstrap,
            seed=ctx.seed,
            fqe_model=o.fqe_model,
            # refitted-Q intervals for FQE/DR when the config asks for them (an OPEConfig field)
            q_refits=int(getattr(o, "q_refits", 0) or 0),
            warn=False,  # the problems go into the policy's notes and the report's flags instead
        )
        for message in res.warnings:
            ctx.note(f"OPE: {message}")
        return res

    def load(self, data: Mapping[str, Any]) -> Any:
        from sepsis_sdk.evaluation.ope import OPEResult

        return OPEResult.from_dict(data)


@register_scorer
class SafetyScorer:
    """Guideline adherence and hazard rates (:func:`~sepsis_sdk.evaluation.metrics.safety_metrics`)."""

    name = "safety"

    def score(self, ctx: ScoringContext) -> Any:
        from sepsis_sdk.evaluation.metrics import safety_metrics

        n_boot = ctx.config.safety.n_bootstrap
        res = safety_metrics(
            ctx.cohort, ctx.probabilities, rules=ctx.rules, n_bootstrap=n_boot, seed=ctx.seed
        )
        ctx.notes.extend(res.notes)
        return res

    def load(self, data: Mapping[str, Any]) -> Any:
        from sepsis_sdk.evaluation.metrics import Rate, RuleRate, SafetyMetrics

        def rule(d: Mapping[str, Any]) -> Any:
            rates = {k: _build(Rate, d[k]) for k in ("rate", "rate_triggered") if k in d}
            return _build(RuleRate, {**d, **rates})

        return _build(
            SafetyMetrics,
            {
                **data,
                "adherence": _build(Rate, data["adherence"]),
                "definitions": {k: _build(Rate, v) for k, v in data.get("definitions", {}).items()},
                "rules": {k: rule(v) for k, v in data.get("rules", {}).items()},
                "notes": list(data.get("notes", [])),
            },
        )


@dataclass(frozen=True)
class Agreement:
    """Agreement with the clinicians' recorded actions: ``exact``, ``fluid`` level, ``vaso`` level.

    Attributes:
        rates: name -> :class:`~sepsis_sdk.evaluation.metrics.Rate` (``agreement["exact"]`` works too).
    """

    rates: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.rates[key]

    def to_dict(self) -> dict[str, Any]:
        return {k: v.to_dict() for k, v in self.rates.items()}


@register_scorer
class AgreementScorer:
    """Expected agreement with the clinicians (:func:`~sepsis_sdk.evaluation.metrics.action_agreement`)."""

    name = "agreement"

    def score(self, ctx: ScoringContext) -> Agreement:
        from sepsis_sdk.evaluation.metrics import action_agreement

        n_boot = ctx.config.safety.n_bootstrap
        return Agreement(action_agreement(ctx.cohort, ctx.probabilities, n_bootstrap=n_boot, seed=ctx.seed))

    def load(self, data: Mapping[str, Any]) -> Agreement:
        from sepsis_sdk.evaluation.metrics import Rate

        return Agreement({k: _build(Rate, v) for k, v in data.items()})


@register_scorer
class TruthScorer:
    """The true value from the cohort's ground truth: exact for Markov policies where the truth can
    solve them, else Monte Carlo in the true dynamics (``truth_episodes``, 0 skips)."""

    name = "true_value"

    def score(self, ctx: ScoringContext) -> Any:
        if not ctx.config.truth.enabled:
            return None
        if ctx.truth is None:
            ctx.note(f"no true value: no ground truth is known for cohort {ctx.cohort.source!r}")
            return None
        pc = ctx.policy_config
        eps = pc.truth_episodes if pc.truth_episodes is not None else ctx.config.truth.monte_carlo_episodes
        if not (ctx.markov and ctx.truth.has_exact) and eps <= 0:
            ctx.note("true value skipped (truth_episodes = 0)")
            return None
        return ctx.truth.value(ctx.policy, markov=ctx.markov, mc_episodes=eps, seed=ctx.seed)

    def load(self, data: Mapping[str, Any]) -> Any:
        from sepsis_sdk.truth import TruthValue

        return _build(TruthValue, data)


@register_scorer
class ModelBasedScorer:
    """The paper's protocol (:func:`~sepsis_sdk.evaluation.model_based.model_based_value`) when enabled."""

    name = "model_based"

    def score(self, ctx: ScoringContext) -> Any:
        from sepsis_sdk.evaluation.model_based import model_based_value

        mb = ctx.config.model_based
        if not (mb.enabled and ctx.policy_config.model_based):
            return None
        if ctx.world_model is None:
            ctx.note("model-based protocol skipped: no world model given")
            return None
        try:
            res = model_based_value(
                ctx.cohort,
                ctx.policy,
                ctx.world_model(),
                horizon=mb.horizon,
                n_samples=mb.n_samples,
                seed=ctx.seed,
                n_bootstrap=ctx.config.ope.n_bootstrap,
                probabilities=ctx.probabilities,
            )
        except UserError as exc:  # e.g. a state table cannot act on simulated histories
            ctx.note(f"model-based protocol not possible: {exc}")
            return None
        return replace(res, per_patient=())  # the report keeps the summary, not one value per patient

    def load(self, data: Mapping[str, Any]) -> Any:
        from sepsis_sdk.evaluation.model_based import ModelBasedResult

        return ModelBasedResult.from_dict(data)


__all__ = [
    "Agreement",
    "AgreementScorer",
    "ModelBasedScorer",
    "OPEScorer",
    "SafetyScorer",
    "Scorer",
    "ScoringContext",
    "TruthScorer",
    "available_scorers",
    "create_scorers",
    "register_scorer",
    "unregister_scorer",
]
