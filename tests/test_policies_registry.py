"""Policies in one home: declared capabilities (markov, CohortPolicy), the baseline registry, old names."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

from sepsis_sdk.errors import UserError
from sepsis_sdk.policies import (
    BASELINES,
    OFFLINE_RL,
    BehaviourPolicy,
    CohortPolicy,
    FeaturePolicy,
    FunctionPolicy,
    GraphPolicy,
    Policy,
    StateTablePolicy,
    UniformPolicy,
    WorldModelPlannerPolicy,
    baseline_names,
    build_baseline,
    register_baseline,
)
from sepsis_sdk.sources.icu_sepsis import sample_cohort
from sepsis_sdk.truth import builtin_policy


@pytest.fixture(scope="module")
def small():
    return sample_cohort(60, seed=1)


def test_capabilities_are_declared(small):
    table = StateTablePolicy(builtin_policy("optimal"), name="optimal")
    assert table.markov and isinstance(table, CohortPolicy)
    rows = table.cohort_probabilities(small)
    np.testing.assert_array_equal(rows, table.action_probabilities(list(small.histories())))
    assert UniformPolicy().markov and isinstance(UniformPolicy(), CohortPolicy)
    fn = FunctionPolicy(lambda h: 0)
    assert isinstance(fn, Policy) and not fn.markov and not isinstance(fn, CohortPolicy)
    assert FunctionPolicy(lambda h: 0, markov=True).markov
    assert GraphPolicy.markov is False  # an LLM graph reads the history: simulated, never tabulated
    assert isinstance(WorldModelPlannerPolicy.markov, bool)  # declared (per instance: window 1 -> Markov)
    assert FeaturePolicy.__dataclass_fields__["markov"].default is True and BehaviourPolicy.markov


def test_registry_lists_and_builds(small):
    names = baseline_names()
    assert {"clinician", "random", "tabular", "planner", *OFFLINE_RL} <= set(names)
    assert set(BASELINES) == set(names) and all(BASELINES[n] for n in names)
    assert isinstance(build_baseline("random", small), UniformPolicy)
    with pytest.raises(UserError, match="unknown baseline 'nope'"):
        build_baseline("nope", small)
    with pytest.raises(UserError, match="world model"):
        build_baseline("planner", small)


def test_register_a_baseline_from_outside(small):
    @register_baseline("always-fluids", description="top fluid level")
    def _always(train, *, seed=0, n_steps=None, level=20, **options):
        return FunctionPolicy(lambda h: level, name="always-fluids", markov=True)

    pol = build_baseline("always-fluids", small, level=15)
    assert pol.action_probabilities(list(small.head(1).histories()))[0].argmax() == 15
    assert BASELINES["always-fluids"] == "top fluid level"
    # a "module:function" target is imported only when built (how the d3rlpy wrappers are registered)
    register_baseline("lazy-random", "sepsis_sdk.policies.baselines:_random", description="by import path")
    assert isinstance(build_baseline("lazy-random", small, seed=0), UniformPolicy)
    from sepsis_sdk.policies.baselines import _REGISTRY

    assert _REGISTRY["cql"].factory == "sepsis_sdk.training.offline_rl:cql_baseline"
    assert callable(_REGISTRY["cql"].resolve())


def test_listing_baselines_does_not_import_training():
    code = (
        "import sys; from sepsis_sdk.policies import baseline_names; baseline_names();"
        "assert 'sepsis_sdk.training.offline_rl' not in sys.modules and 'd3rlpy' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_old_names_still_work_with_a_warning():
    import sepsis_sdk.evaluation.baselines as old
    import sepsis_sdk.policies as policies

    with pytest.warns(DeprecationWarning):
        assert policies.RandomPolicy is UniformPolicy
    with pytest.warns(DeprecationWarning):
        assert old.RandomPolicy is UniformPolicy
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert old.FeaturePolicy is FeaturePolicy and old.build_baseline is build_baseline
        assert old.BehaviourPolicy is BehaviourPolicy
