"""The ground-truth interface: what a policy is really worth in a cohort's true dynamics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from sepsis_sdk.errors import UserError
from sepsis_sdk.types import MonteCarloResult

if TYPE_CHECKING:
    from sepsis_sdk.cohort import Cohort


@dataclass(frozen=True)
class TruthValue:
    """A policy's true value: exact (Markov policies where the truth can solve) or simulated.

    Attributes:
        value: the value (for ICU-Sepsis, the probability of survival).
        method: ``"exact"`` or ``"monte_carlo"``.
        ci_low, ci_high: the Monte Carlo interval (``None`` when exact).
        n_episodes: episodes simulated (``None`` when exact).
        unfinished: simulated episodes cut at the step cap.
        truth: the :attr:`GroundTruth.name` that produced it.
    """

    value: float
    method: Literal["exact", "monte_carlo"]
    ci_low: float | None = None
    ci_high: float | None = None
    n_episodes: int | None = None
    unfinished: int = 0
    truth: str = ""

    @classmethod
    def from_monte_carlo(cls, mc: MonteCarloResult, truth: str = "") -> TruthValue:
        return cls(value=mc.mean, method="monte_carlo", ci_low=mc.ci_low, ci_high=mc.ci_high,
                   n_episodes=mc.n_episodes, unfinished=mc.unfinished, truth=truth)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """The report's ``true_value`` record: ``value``, ``ci_low``, ``ci_high``, ``method`` and, for
        Monte Carlo, ``n_episodes`` and ``unfinished`` (the keys the evaluation report has always written)."""
        out: dict[str, Any] = {"value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high,
                               "method": self.method}  # fmt: skip
        if self.method == "monte_carlo":
            out.update(n_episodes=self.n_episodes, unfinished=self.unfinished)
        return out


@runtime_checkable
class GroundTruth(Protocol):
    """The true dynamics behind a cohort, able to score any policy.

    Get the one that applies to a cohort with :func:`sepsis_sdk.truth.truth_for` (``None`` for real data).

    Attributes:
        name: short name (``"icu-sepsis"``, ``"synthetic-mimic-iv"``).
        has_exact: whether :meth:`exact_value` can solve Markov policies exactly.
    """

    name: str
    has_exact: bool

    def exact_value(self, policy: Any) -> float:
        """Exact value of a Markov policy; raises :class:`~sepsis_sdk.errors.UserError` if not possible."""
        ...

    def simulate(self, policy: Any, *, episodes: int, seed: int = 0, level: float = 0.95) -> MonteCarloResult:
        """Monte Carlo value of any policy (history-dependent ones included) in the true dynamics."""
        ...

    def value(self, policy: Any, *, markov: bool, mc_episodes: int, seed: int = 0) -> TruthValue:
        """Exact when ``markov`` and :attr:`has_exact`, else simulated with ``mc_episodes`` episodes."""
        ...


class TruthBase:
    """Shared :meth:`value` logic for :class:`GroundTruth` implementations (subclass and fill in
    :meth:`exact_value` and :meth:`simulate`)."""

    name: str = "truth"
    has_exact: bool = False

    def exact_value(self, policy: Any) -> float:
        raise UserError(f"{self.name}: no exact value; use simulate()")

    def simulate(self, policy: Any, *, episodes: int, seed: int = 0, level: float = 0.95) -> MonteCarloResult:
        raise NotImplementedError

    def value(self, policy: Any, *, markov: bool, mc_episodes: int, seed: int = 0) -> TruthValue:
        """The true value of ``policy``.

        Args:
            policy: the policy (whatever :meth:`exact_value` / :meth:`simulate` accept).
            markov: whether the policy depends only on the current state (then it is solved exactly where
                :attr:`has_exact`).
            mc_episodes: episodes to simulate otherwise (must be positive then).
            seed: simulation seed.
        """
        if markov and self.has_exact:
            return TruthValue(value=float(self.exact_value(policy)), method="exact", truth=self.name)
        if mc_episodes <= 0:
            raise UserError(f"{self.name}: a Monte Carlo true value needs mc_episodes > 0, got {mc_episodes}")
        return TruthValue.from_monte_carlo(self.simulate(policy, episodes=mc_episodes, seed=seed), self.name)


TruthFactory = Callable[["Cohort"], "GroundTruth | None"]
_TRUTHS: dict[str, TruthFactory] = {}


def register_truth(name: str) -> Callable[[TruthFactory], TruthFactory]:
    """Register a factory ``cohort -> GroundTruth | None`` for cohorts whose source (or
    ``meta["truth"]``) is ``name``.

    Example:
        >>> @register_truth("my-simulator")
        ... def _my_truth(cohort):
        ...     return None  # build your GroundTruth from cohort.meta here
    """

    def deco(factory: TruthFactory) -> TruthFactory:
        _TRUTHS[name] = factory
        return factory

    return deco


def truth_for(cohort: Cohort) -> GroundTruth | None:
    """The ground truth that applies to ``cohort``, or ``None`` (real data: no truth is known).

    A cohort says which truth applies by ``cohort.meta["truth"]`` if set, else by its ``source``
    (``"icu-sepsis"`` for :func:`~sepsis_sdk.sources.icu_sepsis.sample_cohort`, ``"synthetic-mimic-iv"``
    for the synthetic generator). Register more with :func:`register_truth`.
    """
    key = str(cohort.meta.get("truth") or cohort.source)
    factory = _TRUTHS.get(key)
    return factory(cohort) if factory is not None else None
