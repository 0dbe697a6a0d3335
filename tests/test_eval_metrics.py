"""Rates with patient-bootstrap intervals, adherence and agreement on hand-computable cases."""

from __future__ import annotations

import numpy as np
import pytest

from sepsis_sdk.evaluation.metrics import (
    action_agreement,
    action_distribution,
    bootstrap_ratio,
    safety_metrics,
)
from sepsis_sdk.sources.icu_sepsis import sample_cohort


def test_bootstrap_ratio_point_and_interval():
    ep = np.array([0, 0, 1, 1, 2, 2, 3])
    num = np.array([1, 0, 0, 0, 1, 1, 0], dtype=float)
    den = np.ones(7)
    r = bootstrap_ratio(num, den, ep, n_bootstrap=400, seed=0)
    assert r.value == pytest.approx(3 / 7) and r.n == 7 and r.n_patients == 4
    assert r.ci_low <= r.value <= r.ci_high and r.ci_low >= 0 and r.ci_high <= 1
    c = bootstrap_ratio(num, den, ep, n_bootstrap=400, seed=0, complement=True)
    assert c.value == pytest.approx(4 / 7)
    assert c.ci_low == pytest.approx(1 - r.ci_high) and c.ci_high == pytest.approx(1 - r.ci_low)
    # patients are resampled whole: a rate that is constant within patients of equal size
    same = bootstrap_ratio(np.ones(7), den, ep, n_bootstrap=100, seed=1)
    assert same.ci_low == same.ci_high == 1.0
    assert bootstrap_ratio(num, np.zeros(7), ep).value is None


def test_bootstrap_is_deterministic_for_a_seed():
    ep = np.repeat(np.arange(50), 3)
    num = (np.arange(150) % 7 == 0).astype(float)
    a = bootstrap_ratio(num, np.ones(150), ep, n_bootstrap=300, seed=4)
    b = bootstrap_ratio(num, np.ones(150), ep, n_bootstrap=300, seed=4)
    assert a == b


@pytest.fixture(scope="module")
def cohort():
    return sample_cohort(400, seed=5)


def test_clinician_adherence_and_uniform_policy(cohort):
    clin = safety_metrics(cohort, n_bootstrap=100)
    # the clinicians break G1/G2 on a few percent of decisions (approximate units on ICU-Sepsis)
    assert 0.85 < clin.adherence.value < 0.99 and clin.approximate
    assert clin.rules["H3"].not_applicable and clin.rules["H3"].rate.value is None
    uni = safety_metrics(cohort, np.full((len(cohort), 25), 1 / 25), n_bootstrap=100)
    assert uni.adherence.value < clin.adherence.value - 0.3
    # unsafe = any of H1-H3; underdosing = H1: the union is at least each part
    u = uni.definitions
    assert u["unsafe"].value >= max(u["underdosing"].value, u["overdosing"].value) - 1e-12
    # the rule rate equals the mean of the per-row violations over applicable rows
    res = __import__("sepsis_sdk.safety", fromlist=["load_rules"]).load_rules().evaluate_cohort(cohort)
    r = res.row("G2")
    assert clin.rules["G2"].rate.value == pytest.approx(res.violated[r][res.applicable[r]].mean())


def test_agreement_and_distribution(cohort):
    rec = cohort.actions
    ag = action_agreement(cohort, rec, n_bootstrap=50)
    assert ag["exact"].value == 1.0 and ag["fluid"].value == 1.0 and ag["vaso"].value == 1.0
    shifted = np.where(rec % 5 < 4, rec + 1, rec - 1)  # same fluid, different vaso level
    ag = action_agreement(cohort, shifted, n_bootstrap=0)
    assert ag["exact"].value == 0.0 and ag["fluid"].value == 1.0 and ag["vaso"].value == 0.0
    uni = action_agreement(cohort, np.full((len(cohort), 25), 1 / 25), n_bootstrap=0)
    assert uni["exact"].value == pytest.approx(0.04) and uni["fluid"].value == pytest.approx(0.2)
    d = action_distribution(np.array([0, 0, 24, 7]))
    assert d[0, 0] == 0.5 and d[4, 4] == 0.25 and d[1, 2] == 0.25
