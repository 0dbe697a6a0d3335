"""The guard's vectorised hard-rule mask agrees with per-action rule checks."""

import numpy as np

from sepsis_sdk.safety import RuleSetChecker
from sepsis_sdk.sources.icu_sepsis import sample_cohort


def test_hard_mask_equals_per_action_checks_on_real_histories():
    cohort = sample_cohort(60, seed=5)
    checker = RuleSetChecker()
    n_violating = 0
    for i, h in enumerate(cohort.histories()):
        if i >= 150:
            break
        mask = checker.hard_mask(h, cohort.schema)
        slow = np.array(
            [any(f.hard and f.violated for f in checker.check(h, a, cohort.schema)) for a in range(25)]
        )
        np.testing.assert_array_equal(mask, slow)
        n_violating += int(mask.any())
    assert n_violating > 0  # the comparison covered states where some action breaks a hard rule
