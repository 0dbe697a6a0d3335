"""Exact ground truth on ICU-Sepsis: the true value of any policy defined on its states.

With reward 1 on entering survival and gamma 1, a policy's value is its probability of survival. We
solve ``(I - P_pi) V = r_pi`` over the 713 clinical states (the 3 terminal states have value 0), so the
value is exact up to floating point. Reproduces the published figures: clinicians (stored policy)
0.7818, uniform random 0.7801, optimal 0.8751.

Only the truth layer and the cohort sampler (:mod:`sepsis_sdk.sources.icu_sepsis`, whose batched
:func:`~sepsis_sdk.sources.icu_sepsis.rollout` is also the Monte Carlo simulator here) read the transition
matrix: learning code sees sampled cohorts only.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from sepsis_sdk.errors import UserError
from sepsis_sdk.sources.icu_sepsis import (
    BUILTIN_POLICIES,
    DEATH,
    N_CLINICAL,
    N_STATES,
    SOURCE,
    OptimalSolution,
    builtin_policy,
    load_mdp,
    optimal_policy,
    resolve_policy_table,
    rollout,
)
from sepsis_sdk.truth._base import TruthBase, register_truth
from sepsis_sdk.types import MonteCarloResult

if TYPE_CHECKING:
    from sepsis_sdk.cohort import Cohort


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
            with ``action_probabilities`` (evaluated as a Markov policy), or a callable on a state's
            observation.

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


def death_within(policy: Any, horizon: int) -> np.ndarray:
    """Exact probability, per state, of dying within ``horizon`` steps under ``policy`` (``(716,)``).

    Death is made absorbing for this computation (in the MDP it moves on to the absorbing state 715).
    """
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


def death_within_constant(states: np.ndarray, horizon: int) -> np.ndarray:
    """``(n, 25)`` exact probability of death within ``horizon`` steps from each state when the same
    action is given at every step: ``sum_{k<H} [M_a^k d_a]_s`` with ``M_a = T[clinical, a, clinical]`` and
    ``d_a = T[clinical, a, death]``."""
    mdp = load_mdp()
    c = slice(0, N_CLINICAL)
    s = np.asarray(states, dtype=np.int64)
    out = np.zeros((len(s), 25))
    for a in range(25):
        m_a = mdp.tx_mat[c, a, c]
        v = mdp.tx_mat[c, a, DEATH].copy()
        acc = np.zeros(N_CLINICAL)
        for _ in range(horizon):
            acc += v
            v = m_a @ v
        out[:, a] = acc[s]
    return out


class ICUSepsisTruth(TruthBase):
    """Ground truth of ICU-Sepsis cohorts: exact for Markov policies, the true-MDP simulator otherwise.

    :meth:`simulate` runs :func:`~sepsis_sdk.sources.icu_sepsis.rollout`, the same batched simulator that
    samples cohorts; a history-dependent :class:`~sepsis_sdk.policies.Policy` (``markov`` false) is asked
    for all live patients at once at every step.

    The row-level methods (:meth:`states`, :meth:`admissible_mask`, :meth:`death_within_constant`,
    :meth:`next_state_distribution`) serve world-model evaluation against the true MDP; they read the
    cohort's hidden ``state_id`` column, which learning code never does.

    Example:
        >>> truth = ICUSepsisTruth()
        >>> round(truth.value("clinician_raw", markov=True, mc_episodes=0).value, 4)
        0.7818
    """

    name = SOURCE
    has_exact = True

    def exact_value(self, policy: Any) -> float:
        """Exact value of a policy on the 713 states (see :func:`true_value`)."""
        return true_value(policy)

    def simulate(
        self, policy: Any, *, episodes: int, seed: int = 0, level: float = 0.95, max_steps: int = 100
    ) -> MonteCarloResult:
        """Monte Carlo value of ``policy`` in the true MDP (``episodes`` patients, one batch).

        A Markov policy is tabulated; any other :class:`~sepsis_sdk.policies.Policy` sees each patient's
        history. Episodes still running after ``max_steps`` count as 0 (reported as ``unfinished``).
        """
        ro = rollout(policy, episodes, seed=seed, max_steps=max_steps)
        return MonteCarloResult.from_returns(ro.returns, level, unfinished=ro.unfinished)

    # -- row-level truth of a cohort (world-model evaluation) -------------------------------------
    @staticmethod
    def states(cohort: Cohort, rows: np.ndarray | None = None) -> np.ndarray:
        """The hidden state of each of ``rows`` (all rows by default) of an ICU-Sepsis cohort."""
        if not cohort.has_state_ids:
            raise UserError(f"cohort {cohort.source!r} has no state_id column: the hidden states are unknown")
        sid = cohort.data["state_id"].to_numpy(dtype=np.int64)
        return sid if rows is None else sid[np.asarray(rows, dtype=np.int64)]

    def admissible_mask(self, cohort: Cohort, rows: np.ndarray | None = None) -> np.ndarray:
        """``(n, 25)`` bool: the actions ICU-Sepsis admits in each row's state (seen > 20 times)."""
        return load_mdp().admissible[self.states(cohort, rows)]

    def death_within_constant(self, cohort: Cohort, rows: np.ndarray | None, horizon: int) -> np.ndarray:
        """``(n, 25)`` exact P(death within ``horizon`` | row's state, action held); see the module function."""
        return death_within_constant(self.states(cohort, rows), horizon)

    def next_state_distribution(
        self, cohort: Cohort, rows: np.ndarray, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The true next clinical state after each row under ``actions``, given it is not terminal.

        Returns:
            ``(probs, observations)``: ``(n, 713)`` probabilities (renormalised over clinical states) and
            the ``(713, 48)`` stored observation of each clinical state.
        """
        mdp = load_mdp()
        s = self.states(cohort, rows)
        p = mdp.tx_mat[s, np.asarray(actions, dtype=np.int64), :N_CLINICAL]
        p = p / np.maximum(p.sum(1, keepdims=True), 1e-12)
        return p, mdp.observation(np.arange(N_CLINICAL))


@register_truth(SOURCE)
def _icu_truth(cohort: Cohort) -> ICUSepsisTruth:
    return ICUSepsisTruth()


def monte_carlo_value(
    policy: Any, n_episodes: int = 20_000, *, seed: int = 0, level: float = 0.95
) -> MonteCarloResult:
    """Deprecated: use ``ICUSepsisTruth().simulate(policy, episodes=n_episodes, seed=seed)``.

    Kept for one release; it now runs the same simulator (a Markov policy is tabulated as before, a
    history-dependent ``Policy`` is simulated on its histories).
    """
    warnings.warn(
        "monte_carlo_value is deprecated; use sepsis_sdk.truth.ICUSepsisTruth().simulate(policy, episodes=...)",
        DeprecationWarning,
        stacklevel=2,
    )
    return ICUSepsisTruth().simulate(policy, episodes=n_episodes, seed=seed, level=level)


__all__ = [
    "BUILTIN_POLICIES",
    "ICUSepsisTruth",
    "OptimalSolution",
    "builtin_policy",
    "death_within",
    "death_within_constant",
    "monte_carlo_value",
    "optimal_policy",
    "q_values",
    "state_values",
    "true_value",
]
