"""The hidden ICU-Sepsis admissible sets, as an explicit, labelled lookup (validation use only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sepsis_sdk.types import PatientHistory


def hidden_admissible_mask(history: PatientHistory) -> np.ndarray | None:
    """``(25,)`` bool: the ICU-Sepsis admissible actions of the history's hidden state, else None.

    **Hidden truth.** This reads ``history.state_id`` and the admissible sets of the ICU-Sepsis MDP (an
    (s, a) seen 20 times or fewer in MIMIC-III is inadmissible): information a real cohort does not have.
    It is for validation and labelled experiments only; learning and planning code must not call it.
    Pass it explicitly where an admissibility filter is wanted, e.g.
    ``Guard(admissible=hidden_admissible_mask)``.

    Returns:
        The mask of the current state, or None when the history carries no clinical ICU-Sepsis state.

    Example:
        >>> from sepsis_sdk.sources.icu_sepsis import sample_cohort
        >>> h = next(iter(sample_cohort(1, seed=0).histories()))
        >>> hidden_admissible_mask(h).shape
        (25,)
    """
    sid = history.state_id
    if sid is None:
        return None
    from sepsis_sdk.sources.icu_sepsis import N_CLINICAL, load_mdp

    if not 0 <= sid < N_CLINICAL:
        return None
    return np.asarray(load_mdp().admissible[sid], dtype=bool)
