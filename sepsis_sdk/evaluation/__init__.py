"""sepsis_sdk.evaluation: off-policy evaluation, estimator validation, and the benchmark report.

Submodules are imported on first use so that ``import sepsis_sdk.evaluation`` stays light.
"""

from __future__ import annotations

from typing import Any

from sepsis_sdk._lazy import lazy_getattr

_EXPORTS = {
    # off-policy evaluation (ope.py, behaviour.py, fqe.py, bootstrap.py, validation.py)
    "ESTIMATORS": ("sepsis_sdk.evaluation.ope", "ESTIMATORS"),
    "Estimate": ("sepsis_sdk.evaluation.ope", "Estimate"),
    "OPEResult": ("sepsis_sdk.evaluation.ope", "OPEResult"),
    "evaluate_ope": ("sepsis_sdk.evaluation.ope", "evaluate_ope"),
    "effective_sample_size": ("sepsis_sdk.evaluation.ope", "effective_sample_size"),
    "target_probs_from_table": ("sepsis_sdk.evaluation.ope", "target_probs_from_table"),
    "BehaviourModel": ("sepsis_sdk.evaluation.behaviour", "BehaviourModel"),
    "KnownBehaviour": ("sepsis_sdk.evaluation.behaviour", "KnownBehaviour"),
    "fit_behaviour_policy": ("sepsis_sdk.evaluation.behaviour", "fit_behaviour_policy"),
    "FQEModel": ("sepsis_sdk.evaluation.fqe", "FQEModel"),
    "QModel": ("sepsis_sdk.evaluation.fqe", "QModel"),
    "fit_fqe": ("sepsis_sdk.evaluation.fqe", "fit_fqe"),
    "validate_estimators": ("sepsis_sdk.evaluation.validation", "validate_estimators"),
    "validation_policies": ("sepsis_sdk.evaluation.validation", "validation_policies"),
    # the estimator registry (estimators.py)
    "Estimator": ("sepsis_sdk.evaluation.estimators", "Estimator"),
    "available_estimators": ("sepsis_sdk.evaluation.estimators", "available_estimators"),
    "create_estimator": ("sepsis_sdk.evaluation.estimators", "create_estimator"),
    "register_estimator": ("sepsis_sdk.evaluation.estimators", "register_estimator"),
    # safety metrics, baselines, the benchmark run (metrics.py, baselines.py, config.py, results.py,
    # scorers.py, runner.py, report.py, executor.py)
    "Rate": ("sepsis_sdk.evaluation.metrics", "Rate"),
    "SafetyMetrics": ("sepsis_sdk.evaluation.metrics", "SafetyMetrics"),
    "safety_metrics": ("sepsis_sdk.evaluation.metrics", "safety_metrics"),
    "action_agreement": ("sepsis_sdk.evaluation.metrics", "action_agreement"),
    "BASELINES": ("sepsis_sdk.policies", "BASELINES"),
    "build_baseline": ("sepsis_sdk.policies", "build_baseline"),
    "EvaluationConfig": ("sepsis_sdk.evaluation.config", "EvaluationConfig"),
    "EvaluationReport": ("sepsis_sdk.evaluation.results", "EvaluationReport"),
    "PolicyResult": ("sepsis_sdk.evaluation.results", "PolicyResult"),
    "PolicyConfig": ("sepsis_sdk.evaluation.config", "PolicyConfig"),
    "Scorer": ("sepsis_sdk.evaluation.scorers", "Scorer"),
    "ScoringContext": ("sepsis_sdk.evaluation.scorers", "ScoringContext"),
    "register_scorer": ("sepsis_sdk.evaluation.scorers", "register_scorer"),
    "run_evaluation": ("sepsis_sdk.evaluation.runner", "run_evaluation"),
    "monte_carlo_true_value": ("sepsis_sdk.evaluation.runner", "monte_carlo_true_value"),
    "write_report": ("sepsis_sdk.evaluation.report", "write_report"),
    "Executor": ("sepsis_sdk.evaluation.executor", "Executor"),
    "make_executor": ("sepsis_sdk.evaluation.executor", "make_executor"),
}
__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr("sepsis_sdk.evaluation", _EXPORTS, globals())
