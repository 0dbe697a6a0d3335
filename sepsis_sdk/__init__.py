"""sepsis-sdk: world-model-augmented LLM agents for sepsis treatment, and the MicroWorldBench judge.

The top-level namespace is curated and **lazy**: ``import sepsis_sdk`` imports neither torch, transformers,
peft, litellm nor d3rlpy (not even pandas); names are loaded on first use.

Example:
    >>> import sepsis_sdk as sdk
    >>> cohort = sdk.sample_icu_sepsis(1000, seed=0)      # an offline cohort from the ICU-Sepsis MDP
    >>> round(sdk.true_value("clinician_raw"), 4)          # exact ground truth
    0.7818
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sepsis_sdk._lazy import lazy_getattr
from sepsis_sdk._version import __version__

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # actions and features
    "Action": "sepsis_sdk.actions",
    "N_ACTIONS": "sepsis_sdk.actions",
    "FeatureSchema": "sepsis_sdk.features",
    "FeatureSpec": "sepsis_sdk.features",
    # records and cohorts
    "Observation": "sepsis_sdk.types",
    "Step": "sepsis_sdk.types",
    "Episode": "sepsis_sdk.types",
    "PatientHistory": "sepsis_sdk.types",
    "Cohort": "sepsis_sdk.cohort",
    "CohortSplit": "sepsis_sdk.cohort",
    # data sources
    "sample_icu_sepsis": "sepsis_sdk.sources",
    "load_mimictable": "sepsis_sdk.sources",
    "load_mimic_iv": "sepsis_sdk.sources",
    "synthesize_cohort": "sepsis_sdk.sources",
    # ground truth
    "true_value": "sepsis_sdk.truth",
    "optimal_policy": "sepsis_sdk.truth",
    "monte_carlo_value": "sepsis_sdk.truth",
    # LLMs, judges, world models, policies
    "ChatModel": "sepsis_sdk.llm",
    "LiteLLMChat": "sepsis_sdk.llm",
    "Judge": "sepsis_sdk.judge",
    "LLMJudge": "sepsis_sdk.judge",
    "RuleJudge": "sepsis_sdk.judge",
    "Rubric": "sepsis_sdk.judge",
    "Criterion": "sepsis_sdk.judge",
    "Evidence": "sepsis_sdk.judge",
    "Verdict": "sepsis_sdk.judge",
    "WorldModel": "sepsis_sdk.world_model",
    "load_world_model": "sepsis_sdk.world_model",
    "train_world_model": "sepsis_sdk.world_model",
    "Policy": "sepsis_sdk.policies",
    # rewards
    "SurvivalReward": "sepsis_sdk.rewards",
    "RaghuReward": "sepsis_sdk.rewards",
    # errors
    "SepsisSDKError": "sepsis_sdk.errors",
    "UserError": "sepsis_sdk.errors",
    "DataError": "sepsis_sdk.errors",
    "CohortValidationError": "sepsis_sdk.errors",
    "InvalidActionError": "sepsis_sdk.errors",
    "MissingDependencyError": "sepsis_sdk.errors",
}

__all__ = sorted([*_EXPORTS, "__version__"])


__getattr__ = lazy_getattr("sepsis_sdk", _EXPORTS, globals())


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover
    from sepsis_sdk.actions import N_ACTIONS, Action
    from sepsis_sdk.cohort import Cohort, CohortSplit
    from sepsis_sdk.errors import (
        CohortValidationError,
        DataError,
        InvalidActionError,
        MissingDependencyError,
        SepsisSDKError,
        UserError,
    )
    from sepsis_sdk.features import FeatureSchema, FeatureSpec
    from sepsis_sdk.judge import Criterion, Evidence, Judge, LLMJudge, Rubric, RuleJudge, Verdict
    from sepsis_sdk.llm import ChatModel, LiteLLMChat
    from sepsis_sdk.policies import Policy
    from sepsis_sdk.rewards import RaghuReward, SurvivalReward
    from sepsis_sdk.sources import load_mimic_iv, load_mimictable, sample_icu_sepsis, synthesize_cohort
    from sepsis_sdk.truth import monte_carlo_value, optimal_policy, true_value
    from sepsis_sdk.types import Episode, Observation, PatientHistory, Step
    from sepsis_sdk.world_model import WorldModel, load_world_model, train_world_model
