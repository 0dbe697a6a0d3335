"""The settings of a benchmark run (``sepsis-sdk evaluate``): pydantic models, loadable from YAML.

Everything that changes results is in :class:`EvaluationConfig`; its :meth:`~EvaluationConfig.fingerprint`
guards a resumable output directory against mixing runs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sepsis_sdk.errors import DataError

DEFAULT_SCORERS: tuple[str, ...] = ("ope", "safety", "agreement", "true_value", "model_based")
"""The built-in scorers, in the order they run (and appear in each policy's result)."""


class _Cfg(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CohortConfig(_Cfg):
    """Which cohort, resolved by :func:`sepsis_sdk.sources.load`.

    Attributes:
        source: a registered source name (``"icu-sepsis"``, the default; ``"synthetic"``; your own from
            :func:`~sepsis_sdk.sources.register_source`), a cohort file path, or ``"parquet"`` to read
            ``path``.
        n_episodes: patients to generate (generated sources).
        seed: generation seed.
        behaviour: the generated cohort's behaviour policy; ``"clinician"`` (default) leaves the source's
            own default (the clinicians' policy on ICU-Sepsis).
        path: a cohort file (any format :func:`~sepsis_sdk.sources.load` reads); read when set.
    """

    source: str = "icu-sepsis"
    n_episodes: int = Field(default=5000, gt=0)
    seed: int = 0
    behaviour: str = "clinician"
    path: str | None = None


class SplitConfig(_Cfg):
    """Patient-level split (train for fitting policies and the behaviour model, test for scoring)."""

    train: float = 0.7
    validation: float = 0.1
    test: float = 0.2
    seed: int = 0


class PolicyConfig(_Cfg):
    """One policy of the benchmark.

    Attributes:
        name: row name in the report.
        kind: a baseline name (``clinician``, ``random``, ``tabular``, ``bc``, ``dqn``, ``double_dqn``,
            ``bcq``, ``cql``), ``builtin`` (an ICU-Sepsis state-table policy such as ``optimal``, named by
            ``options.table``), or ``factory`` (``options.factory = "module:function"`` called with the
            training cohort and the remaining options; returns a Policy; how LLM graphs are plugged in).
            Defaults to ``name``.
        options: passed to the builder.
        max_patients: score on a random sample of this many test patients (expensive policies).
        markov: override the policy's own ``markov`` attribute.
        truth_episodes: Monte Carlo episodes for this policy's true value when it is not Markov (default
            ``truth.monte_carlo_episodes``; 0 skips the true value, e.g. for a slow local LLM).
        model_based: include this policy in the model-based protocol when it is enabled.
        patient_selection: how ``max_patients`` are chosen: at random (default) or the shortest stays
            (for very slow policies such as a CPU-bound local LLM; biased towards short stays).
    """

    name: str
    kind: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    max_patients: int | None = Field(default=None, gt=0)
    markov: bool | None = None
    truth_episodes: int | None = Field(default=None, ge=0)
    model_based: bool = True
    patient_selection: Literal["random", "shortest"] = "random"


class OPEConfig(_Cfg):
    """Off-policy evaluation settings.

    ``estimators`` are names in the estimator registry (:mod:`sepsis_sdk.evaluation.estimators`).
    ``behaviour_kind`` ``"auto"`` uses the count-based (tabular) behaviour model on ICU-Sepsis, whose
    observations are discrete states, and multinomial logistic regression elsewhere.
    """

    estimators: tuple[str, ...] = ("dr", "wis", "wpdis")
    n_bootstrap: int = Field(default=500, ge=0)
    behaviour_kind: str = "auto"
    softening: float = 0.01
    fqe_model: str = "auto"
    q_refits: int = Field(
        default=0,
        ge=0,
        description="refit the FQE/DR Q-model on this many bootstrap resamples for intervals that cover "
        "(0: the Q-model is fixed; ~1 s per refit; coverage in benchmarks/results/fqe_coverage.json)",
    )


class SafetyConfig(_Cfg):
    """Guideline and hazard rates: the rule file (default: the packaged rules) and bootstrap size."""

    rules: str | None = None
    n_bootstrap: int = Field(default=500, ge=0)


class TruthConfig(_Cfg):
    """True values where the cohort's ground truth is known (:func:`sepsis_sdk.truth.truth_for`)."""

    enabled: bool = True
    monte_carlo_episodes: int = Field(default=500, gt=0)


class ModelBasedConfig(_Cfg):
    """The paper's protocol (replay until first deviation, then roll out a world model).

    ``world_model`` is a saved world model's path for the CLI, which loads it; in Python pass
    ``world_model=`` (or ``world_model_loader=``) to :func:`~sepsis_sdk.evaluation.runner.run_evaluation`.
    """

    enabled: bool = False
    world_model: str | None = None
    horizon: int = Field(default=10, gt=0)
    n_samples: int = Field(default=16, gt=0)


class EvaluationConfig(_Cfg):
    """Everything ``sepsis-sdk evaluate`` needs; load from YAML with :meth:`from_yaml`.

    ``scorers`` are names in the scorer registry (:mod:`sepsis_sdk.evaluation.scorers`): the built-in
    ones by default; add yours with ``register_scorer`` and list it here.
    """

    out_dir: str = "evaluation-report"
    seed: int = 0
    cohort: CohortConfig = CohortConfig()
    split: SplitConfig = SplitConfig()
    policies: tuple[PolicyConfig, ...] = (PolicyConfig(name="clinician"), PolicyConfig(name="random"))
    ope: OPEConfig = OPEConfig()
    safety: SafetyConfig = SafetyConfig()
    truth: TruthConfig = TruthConfig()
    model_based: ModelBasedConfig = ModelBasedConfig()
    scorers: tuple[str, ...] = DEFAULT_SCORERS
    executor: str = "process"
    workers: int | None = None
    fan_out: Literal["auto", "policies", "chunks"] = "auto"
    chunk_patients: int = Field(default=64, gt=0)
    offline_rl_steps: int = Field(default=5000, gt=0)

    @classmethod
    def from_yaml(cls, path: str | Path) -> EvaluationConfig:
        """Read and validate a YAML file; errors name the file."""
        import yaml

        p = Path(path)
        if not p.exists():
            raise DataError(f"{p}: config file does not exist")
        try:
            raw = yaml.safe_load(p.read_text()) or {}
            return cls.model_validate(raw)
        except Exception as exc:
            raise DataError(f"{p}: invalid evaluation config: {exc}") from None

    def input_files(self) -> dict[str, Path]:
        """The files (or saved-model folders) the results depend on, by role.

        The cohort when it is read from a file (``cohort.path``, or a ``cohort.source`` that is an existing
        path rather than a registered name), the rule file, and the saved world model of the model-based
        protocol when it is enabled.
        """
        out: dict[str, Path] = {}
        if self.cohort.path:
            out["cohort"] = Path(self.cohort.path)
        else:
            from sepsis_sdk.sources import source_names

            if self.cohort.source not in source_names() and Path(self.cohort.source).exists():
                out["cohort"] = Path(self.cohort.source)
        if self.safety.rules:
            out["safety.rules"] = Path(self.safety.rules)
        if self.model_based.enabled and self.model_based.world_model:
            out["model_based.world_model"] = Path(self.model_based.world_model)
        return out

    def input_digests(self) -> dict[str, str]:
        """SHA-256 of the content of each of :meth:`input_files` (a folder: of its files' names and bytes).

        A missing file gets ``"missing"`` (loading it reports the error). Hashing runs at about 1 GB/s, so
        a cohort file of a few MB costs milliseconds.
        """
        return {role: content_digest(p) for role, p in self.input_files().items()}

    def fingerprint(self) -> str:
        """Hash of everything that changes results (not ``out_dir``, executor, workers or fan-out).

        It covers the settings and the **content** of the input files (:meth:`input_digests`): a cohort
        file rewritten at the same path is a different run, so ``evaluate`` will not resume onto it.
        The default ``scorers`` are left out of the hash, so runs written before scorers existed resume.
        """
        skip = {"out_dir", "executor", "workers", "fan_out"} | (
            {"scorers"} if self.scorers == DEFAULT_SCORERS else set()
        )
        d = self.model_dump(exclude=skip)
        digests = self.input_digests()
        if digests:  # only runs that read files change fingerprint: generated cohorts resume as before
            d["_input_digests"] = digests
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def content_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes, or of a folder's files (relative names and bytes, sorted); "missing"."""
    p = Path(path)
    h = hashlib.sha256()
    if p.is_file():
        files = [("", p)]
    elif p.is_dir():
        files = sorted((str(f.relative_to(p)), f) for f in p.rglob("*") if f.is_file())
    else:
        return "missing"
    for name, f in files:
        h.update(name.encode() + b"\0")
        with f.open("rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()


__all__ = [
    "DEFAULT_SCORERS",
    "CohortConfig",
    "EvaluationConfig",
    "ModelBasedConfig",
    "OPEConfig",
    "PolicyConfig",
    "SafetyConfig",
    "SplitConfig",
    "TruthConfig",
    "content_digest",
]
