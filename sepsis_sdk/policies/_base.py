"""The Policy protocol: history -> distribution over the 25 actions.

Every decision maker (clinicians' behaviour model, offline-RL baselines, the world-model planner, LLM
graphs) is a :class:`Policy`, so evaluation treats them alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from sepsis_sdk.actions import N_ACTIONS, validate_index
from sepsis_sdk.errors import UserError
from sepsis_sdk.types import PatientHistory


@runtime_checkable
class Policy(Protocol):
    """Maps patient histories to action probabilities ``(n, 25)`` (rows sum to 1)."""

    name: str

    def action_probabilities(self, histories: Sequence[PatientHistory]) -> np.ndarray: ...


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


class FunctionPolicy:
    """A policy from a function ``history -> action index`` (deterministic) or ``-> 25 probabilities``."""

    def __init__(
        self, fn: Callable[[PatientHistory], int | Sequence[float] | np.ndarray], name: str = "function"
    ) -> None:
        self.fn = fn
        self.name = name

    def action_probabilities(self, histories: Sequence[PatientHistory]) -> np.ndarray:
        rows = []
        for h in histories:
            out = self.fn(h)
            arr = np.asarray(out, dtype=np.float64)
            rows.append(one_hot([int(out)])[0] if arr.ndim == 0 else arr)  # type: ignore[arg-type]
        return check_probabilities(
            np.stack(rows) if rows else np.zeros((0, N_ACTIONS)), len(histories), self.name
        )


class StateTablePolicy:
    """A policy on ICU-Sepsis states: reads ``history.state_id`` (available on ICU-Sepsis cohorts only)."""

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


class UniformPolicy:
    """Uniform over all 25 actions."""

    name = "random"

    def action_probabilities(self, histories: Sequence[PatientHistory]) -> np.ndarray:
        return np.full((len(histories), N_ACTIONS), 1.0 / N_ACTIONS)


__all__ = ["FunctionPolicy", "Policy", "StateTablePolicy", "UniformPolicy", "check_probabilities", "one_hot"]
