"""Exact ground truth on ICU-Sepsis: the true value of any policy defined on its states.

With reward 1 on entering survival and gamma 1, a policy's value is its probability of survival. We
solve ``(I - P_pi) V = r_pi`` over the 713 clinical states (the 3 terminal states have value 0), so the
value is exact up to floating point. Reproduces the published figures: clinicians (stored policy)
0.7818, uniform random 0.7801, optimal 0.8751.

Only this module and the cohort sampler read the transition matrix: learning code sees sampled
cohorts only.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sepsis_sdk.errors import UserError
from sepsis_sdk.sources.icu_sepsis import (
    N_ACTIONS,
    N_CLINICAL,
    N_STATES,
    load_mdp,
    resolve_policy_table,
)


def state_values(policy: Any) -> np.ndarray:
    """Exact value of every state under ``policy`` (``(716,)``, terminal states 0)."""
    mdp = load_mdp()
    pi = resolve_policy_table(policy, mdp)
    c = slice(0, N_CLINICAL)
    p_pi = np.einsum("sa,sat->st", pi[c], mdp.tx_mat[c])[:, c]
    r_pi = (pi[c] * mdp.reward[c]).sum(1)
    v = np.zeros(N_STATES)
    v[c] = np.linalg.solve(np.eye(N_CLINICAL) - p_pi, r_pi)
    return v


def true_value(policy: Any) -> float:
    """Exact expected return (= probability of survival) of ``policy`` from the initial distribution.

    Args:
        policy: anything :func:`~sepsis_sdk.sources.icu_sepsis.resolve_policy_table` accepts: a built-in
            name, a ``(716, 25)`` / ``(713, 25)`` probability table, a ``(713,)`` action table, an object
            with ``action_probabilities``, or a callable on a state's observation.

    Example:
        >>> round(true_value("clinician_raw"), 4)
        0.7818
    """
    return float(load_mdp().d0 @ state_values(policy))


def q_values(policy: Any) -> np.ndarray:
    """Exact ``Q^pi(s, a)`` for all states and actions (``(716, 25)``)."""
    mdp = load_mdp()
    v = state_values(policy)
    return mdp.reward + mdp.tx_mat @ v


@dataclass(frozen=True)
class OptimalSolution:
    """Result of value iteration: the optimal deterministic policy and its values."""

    policy: np.ndarray  # (716,) action per state
    values: np.ndarray  # (716,)
    q: np.ndarray  # (716, 25)
    iterations: int

    @property
    def value(self) -> float:
        return float(load_mdp().d0 @ self.values)

    def table(self) -> np.ndarray:
        t = np.zeros((N_STATES, N_ACTIONS))
        t[np.arange(N_STATES), self.policy] = 1.0
        return t


@functools.lru_cache(maxsize=4)
def optimal_policy(
    *, admissible_only: bool = False, tol: float = 1e-12, max_iter: int = 100_000
) -> OptimalSolution:
    """The optimal policy by value iteration (ties broken towards the lowest action index).

    Args:
        admissible_only: restrict the maximisation to admissible actions (the published optimum 0.8751
            is over all 25 actions, whose inadmissible rows are the mean of the admissible ones).
    """
    mdp = load_mdp()
    v = np.zeros(N_STATES)
    mask = np.where(mdp.admissible, 0.0, -np.inf) if admissible_only else 0.0
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 (the count is returned)
        q = mdp.reward + mdp.tx_mat @ v + mask
        q[N_CLINICAL:] = 0.0
        v_new = q.max(1)
        if np.abs(v_new - v).max() < tol:
            v = v_new
            break
        v = v_new
    q = mdp.reward + mdp.tx_mat @ v + mask
    q[N_CLINICAL:] = 0.0
    return OptimalSolution(policy=q.argmax(1), values=v, q=q, iterations=it)


@functools.lru_cache(maxsize=8)
def _builtin(name: str) -> np.ndarray:
    mdp = load_mdp()
    if name == "clinician":
        return resolve_policy_table(mdp.clinician_policy(admissible_only=True)[:N_CLINICAL], mdp)
    if name == "clinician_raw":
        return resolve_policy_table(mdp.expert_policy[:N_CLINICAL], mdp)
    if name == "random":
        return np.full((N_STATES, N_ACTIONS), 1.0 / N_ACTIONS)
    if name == "random_admissible":
        a = mdp.admissible.astype(float)
        return a / a.sum(1, keepdims=True)
    if name == "optimal":
        return optimal_policy().table()
    if name == "no_treatment":
        t = np.zeros((N_STATES, N_ACTIONS))
        t[:, 0] = 1.0
        return t
    raise UserError(f"unknown built-in policy {name!r}; choose from {sorted(BUILTIN_POLICIES)}")


BUILTIN_POLICIES = {
    "clinician": "clinicians' stored policy, renormalised over admissible actions (the default behaviour policy)",
    "clinician_raw": "clinicians' stored policy as published (some mass on inadmissible actions)",
    "random": "uniform over all 25 actions",
    "random_admissible": "uniform over the admissible actions of each state",
    "optimal": "optimal policy by value iteration over all 25 actions",
    "no_treatment": "never give fluids or vasopressors (action 0)",
}


def builtin_policy(name: str) -> np.ndarray:
    """A ``(716, 25)`` table of one of :data:`BUILTIN_POLICIES` (a copy)."""
    return _builtin(name).copy()


@dataclass(frozen=True)
class MonteCarloResult:
    """A Monte Carlo value estimate with a normal-approximation confidence interval."""

    mean: float
    ci_low: float
    ci_high: float
    n_episodes: int
    level: float

    def covers(self, value: float) -> bool:
        return self.ci_low <= value <= self.ci_high


def monte_carlo_value(
    policy: Any, n_episodes: int = 20_000, *, seed: int = 0, level: float = 0.95
) -> MonteCarloResult:
    """Estimate a policy's value by simulating the true MDP (a check on :func:`true_value`)."""
    from sepsis_sdk.sources.icu_sepsis import sample_cohort

    cohort = sample_cohort(n_episodes, policy=resolve_policy_table(policy), seed=seed)
    returns = cohort.data.groupby("patient_id", sort=False)["reward"].sum().to_numpy()
    mean = float(returns.mean())
    se = float(returns.std(ddof=1) / math.sqrt(len(returns))) if len(returns) > 1 else float("inf")
    z = _normal_quantile(0.5 + level / 2)
    return MonteCarloResult(
        mean=mean, ci_low=mean - z * se, ci_high=mean + z * se, n_episodes=n_episodes, level=level
    )


def _normal_quantile(p: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(p)


def death_within(policy: Any, horizon: int) -> np.ndarray:
    """Exact probability, per state, of dying within ``horizon`` steps under ``policy`` (``(716,)``).

    Death is made absorbing for this computation (in the MDP it moves on to the absorbing state 715).
    """
    from sepsis_sdk.sources.icu_sepsis import DEATH

    if horizon < 0:
        raise UserError(f"horizon must be >= 0, got {horizon}")
    mdp = load_mdp()
    pi = resolve_policy_table(policy, mdp)
    p_pi = np.einsum("sa,sat->st", pi, mdp.tx_mat)
    p_pi[DEATH] = 0.0
    p_pi[DEATH, DEATH] = 1.0
    hit = np.zeros(N_STATES)
    hit[DEATH] = 1.0
    for _ in range(horizon):  # hit_h = P_pi @ hit_{h-1}: probability of being dead after h steps
        hit = p_pi @ hit
    return hit


__all__ = [
    "BUILTIN_POLICIES",
    "MonteCarloResult",
    "OptimalSolution",
    "builtin_policy",
    "death_within",
    "monte_carlo_value",
    "optimal_policy",
    "q_values",
    "state_values",
    "true_value",
]
