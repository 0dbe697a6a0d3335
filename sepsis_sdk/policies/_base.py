"""The Policy protocols: history -> distribution over the 25 actions, optionally a whole cohort at once.

Every decision maker (clinicians' behaviour model, offline-RL baselines, the world-model planner, LLM
graphs) is a :class:`Policy`, so evaluation treats them alike. Two capabilities are declared, not probed:

- ``markov``: the policy depends on the current observation only, so its true value on ICU-Sepsis is
  solved exactly (a history-dependent one is simulated in the true MDP instead);
- :class:`CohortPolicy`: ``cohort_probabilities(cohort)`` answers for every row of a cohort in one call
  (building one :class:`~sepsis_sdk.PatientHistory` per row is slow). Test with
  ``isinstance(policy, CohortPolicy)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from sepsis_sdk.actions import N_ACTIONS, validate_index
from sepsis_sdk.errors import UserError
from sepsis_sdk.types import PatientHistory

if TYPE_CHECKING:
    from sepsis_sdk.cohort import Cohort


@runtime_checkable
class Policy(Protocol):
    """Maps patient histories to action probabilities ``(n, 25)`` (rows sum to 1).

    Attributes:
        name: shown in reports.
        markov: True if the probabilities depend on the current observation only (the evaluation then
            computes an exact true value on ICU-Sepsis); False for history-dependent policies (the agent
            graphs, anything reading previous actions). Subclass :class:`PolicyBase` for the default False.
    """

    name: str
    markov: bool

    def action_probabilities(self, histories: Sequence[PatientHistory]) -> np.ndarray: ...


@runtime_checkable
class CohortPolicy(Policy, Protocol):
    """A :class:`Policy` that also scores every row of a cohort in one vectorised call.

    The evaluation uses :meth:`cohort_probabilities` whenever ``isinstance(policy, CohortPolicy)``; its
    rows must equal :meth:`action_probabilities` on each row's history.
    """

    def cohort_probabilities(self, cohort: Cohort) -> np.ndarray:
        """``(n_rows, 25)`` probabilities at every row of ``cohort``, in row order."""
        ...


class PolicyBase:
    """Optional base class of policies: a ``name`` and ``markov = False`` (history-dependent) by default.

    Subclasses implement ``action_probabilities`` (and ``cohort_probabilities`` to be a
    :class:`CohortPolicy`); set ``markov = True`` when the policy reads the current observation only.
    """

    name: str = "policy"
    markov: bool = False


def one_hot(actions: Sequence[int] | np.ndarray) -> np.ndarray:
    """``(n, 25)`` one-hot rows of validated action indices."""
    idx = np.array([validate_index(a) for a in actions], dtype=np.int64)
    out = np.zeros((len(idx), N_ACTIONS))
    out[np.arange(len(idx)), idx] = 1.0
    return out


def check_probabilities(probs: np.ndarray, n: int, who: str = "policy") -> np.ndarray:
    """Validate a ``(n, 25)`` probability matrix (finite, non-negative, rows sum to 1)."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape != (n, N_ACTIONS):
        raise UserError(f"{who} returned shape {probs.shape}, expected ({n}, {N_ACTIONS})")
    if not np.isfinite(probs).all() or (probs < 0).any() or not np.allclose(probs.sum(1), 1.0, atol=1e-6):
        raise UserError(f"{who} returned rows that are not probability distributions over 25 actions")
    return probs


class FunctionPolicy(PolicyBase):
    """A policy from a function ``history -> action index`` (deterministic) or ``-> 25 probabilities``.

    Args:
        fn: the function.
        name: shown in reports.
        markov: set True if ``fn`` reads only the current observation (exact true value on ICU-Sepsis).
    """

    def __init__(
        self,
        fn: Callable[[PatientHistory], int | Sequence[float] | np.ndarray],
        name: str = "function",
        *,
        markov: bool = False,
    ) -> None:
        self.fn = fn
        self.name = name
        self.markov = markov

    def action_probabilities(self, histories: Sequence[PatientHistory]) -> np.ndarray:
        rows = []
        for h in histories:
            out = self.fn(h)
            arr = np.asarray(out, dtype=np.float64)
            rows.append(one_hot([int(out)])[0] if arr.ndim == 0 else arr)  # type: ignore[arg-type]
        return check_probabilities(
            np.stack(rows) if rows else np.zeros((0, N_ACTIONS)), len(histories), self.name
        )


class StateTablePolicy(PolicyBase):
    """A policy on ICU-Sepsis states: reads ``history.state_id`` (available on ICU-Sepsis cohorts only).

    A reference policy *defined on the hidden states* (the built-in tables of
    :func:`sepsis_sdk.truth.builtin_policy`, a solved optimum): it is scored, never learned from data.
    Markov, and a :class:`CohortPolicy` (one table lookup per row).
    """

    markov = True

    def __init__(self, table: np.ndarray, name: str = "table") -> None:
        table = np.asarray(table, dtype=np.float64)
        if table.ndim != 2 or table.shape[1] != N_ACTIONS:
            raise UserError(f"state table must be (n_states, 25), got {table.shape}")
        self.table = table
        self.name = name

    def action_probabilities(self, histories: Sequence[PatientHistory]) -> np.ndarray:
        ids = []
        for h in histories:
            if h.state_id is None:
                raise UserError(
                    f"{self.name}: history of {h.patient_id} has no state_id (not an ICU-Sepsis cohort)"
                )
            ids.append(h.state_id)
        return self.table[np.array(ids, dtype=np.int64)]

    def cohort_probabilities(self, cohort: Cohort) -> np.ndarray:
        """The table row of each row's hidden state (the cohort's ``state_id`` column)."""
        if not cohort.has_state_ids:
            raise UserError(f"{self.name}: cohort {cohort.source!r} has no state_id column (not ICU-Sepsis)")
        return self.table[cohort.data["state_id"].to_numpy(dtype=np.int64)]


class UniformPolicy(PolicyBase):
    """Uniform over all 25 actions (Markov; the ``random`` baseline)."""

    name = "random"
    markov = True

    def action_probabilities(self, histories: Sequence[PatientHistory]) -> np.ndarray:
        return np.full((len(histories), N_ACTIONS), 1.0 / N_ACTIONS)

    def cohort_probabilities(self, cohort: Cohort) -> np.ndarray:
        return np.full((len(cohort), N_ACTIONS), 1.0 / N_ACTIONS)


__all__ = [
    "CohortPolicy",
    "FunctionPolicy",
    "Policy",
    "PolicyBase",
    "StateTablePolicy",
    "UniformPolicy",
    "check_probabilities",
    "one_hot",
]
