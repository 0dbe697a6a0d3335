"""Allowed-action masks over the 25 actions, the nearest allowed action, and the last-resort policy."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from sepsis_sdk.actions import N_ACTIONS, N_LEVELS
from sepsis_sdk.errors import UserError
from sepsis_sdk.safety._checker import as_safety_checker, hard_rule_mask

if TYPE_CHECKING:
    from sepsis_sdk.features import FeatureSchema
    from sepsis_sdk.types import PatientHistory

#: ``history -> (25,) bool`` (True = admissible) or None where unknown; e.g.
#: :func:`sepsis_sdk.truth.hidden_admissible_mask` (hidden ICU-Sepsis truth: validation only).
AdmissibleFn = Callable[["PatientHistory"], "np.ndarray | None"]

_LEVELS = np.array([divmod(a, N_LEVELS) for a in range(N_ACTIONS)])


def reject_use_admissibility(use_admissibility: bool | None, where: str) -> None:
    """The removed ``use_admissibility`` switch: False warns (it is the default now), True fails loudly.

    It used to read the hidden ICU-Sepsis admissible sets through ``history.state_id`` by default; the
    safety layer no longer reads hidden truth, so the lookup is passed explicitly as ``admissible=``.
    """
    if use_admissibility is None:
        return
    if use_admissibility:
        raise UserError(
            f"{where}(use_admissibility=True) is gone: it read the hidden ICU-Sepsis admissible sets. Pass "
            "admissible=sepsis_sdk.truth.hidden_admissible_mask explicitly (labelled validation use only)"
        )
    warnings.warn(
        f"{where}(use_admissibility=False) is deprecated and has no effect: admissibility is only used "
        "when admissible= is given",
        DeprecationWarning,
        stacklevel=3,
    )


def allowed_mask(
    history: PatientHistory,
    schema: FeatureSchema | None,
    checker: Any,
    *,
    admissible: np.ndarray | Sequence[bool] | None = None,
    notes: list[str] | None = None,
    use_admissibility: bool | None = None,
) -> np.ndarray:
    """``(25,)`` True where the action breaks no hard rule of ``checker`` and is admissible (if known).

    When no action is both, admissibility is relaxed first (the hard rules are clinical; admissibility
    only says the data were thin), then safety; what was relaxed is appended to ``notes``.

    Args:
        history: the patient now.
        schema: how the history's values are stored (see :func:`sepsis_sdk.render.infer_schema`).
        checker: a :class:`SafetyChecker` (or anything :func:`as_safety_checker` accepts).
        admissible: ``(25,)`` bool admissibility of this state, or None (unknown: every action).
        notes: a list that receives what was relaxed, if anything.
        use_admissibility: removed (see :func:`reject_use_admissibility`).

    Example:
        >>> from sepsis_sdk.safety import allowed_mask
        >>> from sepsis_sdk.types import Observation, PatientHistory
        >>> h = PatientHistory(observations=(Observation(t=0, values=(1.0,)),), feature_names=("x",))
        >>> allowed_mask(h, None, False, admissible=[a < 3 for a in range(25)]).nonzero()[0].tolist()
        [0, 1, 2]
    """
    reject_use_admissibility(use_admissibility, "allowed_mask")
    safe = ~hard_rule_mask(as_safety_checker(checker), history, schema)
    adm = np.ones(N_ACTIONS, dtype=bool) if admissible is None else np.asarray(admissible, dtype=bool)
    if adm.shape != (N_ACTIONS,):
        raise UserError(f"admissible must be 25 booleans, got shape {adm.shape}")
    ok = safe & adm
    if ok.any():
        return ok
    if safe.any():
        if notes is not None:
            notes.append("no admissible action meets the hard rules in this state: admissibility relaxed")
        return safe
    if notes is not None:
        notes.append("every action breaks a hard rule here: safety relaxed")
    return adm


def nearest_allowed(action: int, ok: np.ndarray) -> int:
    """The allowed action nearest ``action`` (L1 over levels; ties: lower total intensity, lower index).

    When nothing is allowed, ``action`` itself (the caller reports why).

    Example:
        >>> import numpy as np
        >>> ok = np.zeros(25, dtype=bool); ok[[7, 11, 24]] = True
        >>> nearest_allowed(12, ok)
        7
    """
    if ok[action] or not ok.any():
        return int(action)
    dist = np.abs(_LEVELS - _LEVELS[action]).sum(1)
    key = [(dist[a], _LEVELS[a].sum(), a) for a in range(N_ACTIONS) if ok[a]]
    return int(min(key)[2])


class HoldSafePolicy:
    """Last-resort policy: keep the previous action (no treatment at t=0) if it is allowed, else the
    nearest allowed action. Needs no model; the guard uses it when no world model (or fallback) can act.

    Args:
        safety: safety rules (``None`` = the SDK's defaults, ``False`` = none, a RuleSet or a checker).
        admissible: an optional admissibility lookup (:data:`AdmissibleFn`); None = no admissibility.
    """

    name = "hold-safe"
    markov = False  # it reads the previous action, not only the current observation

    def __init__(self, safety: Any = None, *, admissible: AdmissibleFn | None = None) -> None:
        self.safety = as_safety_checker(safety)
        self.admissible = admissible

    def choose(self, history: PatientHistory, schema: FeatureSchema | None) -> int:
        """The action for ``history`` (an index 0-24)."""
        start = history.previous_action if history.previous_action is not None else 0
        adm = self.admissible(history) if self.admissible is not None else None
        return nearest_allowed(start, allowed_mask(history, schema, self.safety, admissible=adm))

    def action_probabilities(self, histories: Sequence[PatientHistory]) -> np.ndarray:
        """``(n, 25)`` one-hot rows of :meth:`choose` (schemas inferred from the histories)."""
        from sepsis_sdk.render import infer_schema

        out = np.zeros((len(histories), N_ACTIONS))
        for i, h in enumerate(histories):
            out[i, self.choose(h, infer_schema(h))] = 1.0
        return out
