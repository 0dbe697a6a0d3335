"""Ground truth of synthetic cohorts: the generator's counterfactual simulator replays any policy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from sepsis_sdk.sources.synthetic import SOURCE, SyntheticParams, SyntheticSepsisModel
from sepsis_sdk.truth._base import TruthBase, register_truth
from sepsis_sdk.types import MonteCarloResult

if TYPE_CHECKING:
    from sepsis_sdk.cohort import Cohort


class SyntheticTruth(TruthBase):
    """Ground truth of cohorts made by :class:`~sepsis_sdk.sources.synthetic.SyntheticSepsisModel`.

    There is no exact solution (continuous latent physiology), so every value is simulated: fresh patients
    drawn from the generator, treated by the policy (names of
    :data:`~sepsis_sdk.sources.synthetic.SYNTHETIC_POLICIES`, a :class:`~sepsis_sdk.policies.Policy` on
    histories, or a callable ``history -> action``). The 90-day risk after the window is used in
    expectation, which lowers the variance without bias.

    Args:
        model: the generator (default parameters if omitted).
        reward: ``"survival"`` (probability of 90-day survival) or ``"raghu"`` (the Raghu-style return the
            synthetic cohorts are labelled with).
        gamma: discount of the return.

    Use a simulation seed other than the cohort's: the same seed replays the cohort's own patients.
    """

    name = SOURCE
    has_exact = False

    def __init__(
        self,
        model: SyntheticSepsisModel | None = None,
        *,
        reward: Literal["survival", "raghu"] = "survival",
        gamma: float = 1.0,
    ) -> None:
        self.model = model or SyntheticSepsisModel()
        self.model._check_reward(reward)
        self.reward = reward
        self.gamma = float(gamma)

    @classmethod
    def from_cohort(cls, cohort: Cohort) -> SyntheticTruth | None:
        """The truth of a synthetic cohort: the generator with the cohort's parameters, and the reward and
        discount the cohort is labelled with (``None`` if another generator made it)."""
        meta = cohort.meta
        if meta.get("generator") != "SyntheticSepsisModel":
            return None
        params = meta.get("params")
        model = SyntheticSepsisModel(SyntheticParams(**params)) if params else SyntheticSepsisModel()
        reward = "raghu" if meta.get("reward") == "raghu" else "survival"
        return cls(model, reward=reward, gamma=float(meta.get("gamma", 1.0)))

    def simulate(self, policy: Any, *, episodes: int, seed: int = 1, level: float = 0.95) -> MonteCarloResult:
        """Monte Carlo value of ``policy`` on ``episodes`` simulated patients (seed ``seed``)."""
        returns = self.model.policy_returns(policy, n_patients=episodes, seed=seed, reward=self.reward,
                                            gamma=self.gamma)  # fmt: skip
        return MonteCarloResult.from_returns(returns, level)


@register_truth(SOURCE)
def _synthetic_truth(cohort: Cohort) -> SyntheticTruth | None:
    return SyntheticTruth.from_cohort(cohort)


__all__ = ["SyntheticTruth"]
