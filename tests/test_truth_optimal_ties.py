"""Issue 11: the optimal policy's tie-break lands on admissible actions (agreement figures use it)."""

from __future__ import annotations

import numpy as np
import pytest

from sepsis_sdk.sources.icu_sepsis import N_CLINICAL, load_mdp
from sepsis_sdk.truth import builtin_policy, optimal_policy, true_value


def test_optimal_tie_break_prefers_admissible_actions():
    mdp = load_mdp()
    sol = optimal_policy()
    chosen = sol.policy[:N_CLINICAL]
    on_admissible = mdp.admissible[np.arange(N_CLINICAL), chosen]
    # before: 16.7 % of states (those with one admissible action, whose 25 rows all tie) got action 0
    assert on_admissible.all(), f"{(~on_admissible).mean():.1%} of states on an inadmissible action"
    # a tie-break never changes the value: the chosen action is still greedy in Q*
    q = sol.q[:N_CLINICAL]
    np.testing.assert_allclose(q[np.arange(N_CLINICAL), chosen], q.max(1), atol=1e-9)
    assert sol.value == pytest.approx(0.8751, abs=5e-5)
    # the built-in "optimal" table is the same policy
    assert (builtin_policy("optimal")[:N_CLINICAL].argmax(1) == chosen).all()
    assert true_value("optimal") == pytest.approx(sol.value, abs=1e-9)
