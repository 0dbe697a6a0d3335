"""Typed results of a benchmark run: one :class:`PolicyResult` per policy and the :class:`EvaluationReport`.

Each scorer's output stays its own typed object (:class:`~sepsis_sdk.evaluation.ope.OPEResult`,
:class:`~sepsis_sdk.evaluation.metrics.SafetyMetrics`, ...) until the result is written; ``to_dict`` gives
the JSON form (one key per scorer) and ``from_dict`` rebuilds the typed objects when a run resumes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from sepsis_sdk.evaluation.config import EvaluationConfig

_HEAD = ("name", "kind", "markov", "n_patients", "n_decisions")

SMOKE_TEST_PATIENTS = 30
"""A row scored on fewer test patients than this is a **smoke test**: it shows the policy runs end to end,
not what it is worth (3 patients can give DR/WIS 1.000 [1.000, 1.000] and 100 % adherence). The report
lists smoke tests apart, never ranks them and leaves them out of the plots."""


def is_smoke_test(result: PolicyResult | Mapping[str, Any], min_patients: int = SMOKE_TEST_PATIENTS) -> bool:
    """Whether a result (or its ``to_dict()``) was scored on fewer than ``min_patients`` patients."""
    n = result["n_patients"] if isinstance(result, Mapping) else result.n_patients
    return int(n) < min_patients


_TAIL = ("action_distribution", "seconds", "notes")


class ResultLoader(Protocol):
    """What rebuilds one stored result: every :class:`~sepsis_sdk.evaluation.scorers.Scorer` is one."""

    name: str

    def load(self, data: Mapping[str, Any]) -> Any:
        """The typed result from its ``to_dict()`` form."""
        ...


@dataclass
class PolicyResult:
    """Everything computed for one policy.

    Attributes:
        name: the policy's row name.
        kind: how it was built (``"builtin"``, a baseline name, ``"object"`` for a passed policy, ...).
        markov: whether it was scored as a Markov policy.
        n_patients: test patients scored.
        n_decisions: decisions (rows) scored.
        scores: scorer name -> that scorer's typed result (None where it was skipped; see ``notes``).
        action_distribution: ``(5, 5)`` share of each (fluid, vasopressor) level.
        seconds: wall time of this policy.
        notes: why something was skipped or approximated.
        agent: for an agent (a policy with ``shares()``, e.g. :class:`~sepsis_sdk.truth.agent.AgentPolicy`):
            ``{"decisions": n, "shares": {"model": .., "guard": .., "fallback": ..}}``, the share of the
            scored decisions whose final action came from each source (``"other"`` too when some came
            from elsewhere). None for other policies, and for an agent whose decisions were not all seen
            by the process that scored it (then a note says why): never an estimate.
    """

    name: str
    kind: str
    markov: bool
    n_patients: int
    n_decisions: int
    scores: dict[str, Any]
    action_distribution: np.ndarray
    seconds: float
    notes: list[str] = field(default_factory=list)
    agent: dict[str, Any] | None = None

    # The built-in scorers' results by name (None when skipped or not run).
    @property
    def smoke_test(self) -> bool:
        """Scored on fewer than :data:`SMOKE_TEST_PATIENTS` patients: not a result (see there)."""
        return is_smoke_test(self)

    @property
    def ope(self) -> Any:
        """The :class:`~sepsis_sdk.evaluation.ope.OPEResult`."""
        return self.scores.get("ope")

    @property
    def safety(self) -> Any:
        """The :class:`~sepsis_sdk.evaluation.metrics.SafetyMetrics`."""
        return self.scores.get("safety")

    @property
    def agreement(self) -> Any:
        """The :class:`~sepsis_sdk.evaluation.scorers.Agreement` with the clinicians."""
        return self.scores.get("agreement")

    @property
    def true_value(self) -> Any:
        """The :class:`~sepsis_sdk.truth.TruthValue` (None without a known ground truth)."""
        return self.scores.get("true_value")

    @property
    def model_based(self) -> Any:
        """The :class:`~sepsis_sdk.evaluation.model_based.ModelBasedResult`."""
        return self.scores.get("model_based")

    @property
    def agent_shares(self) -> dict[str, float] | None:
        """For an agent row: source -> share of its scored decisions (``model``, ``guard``, ``fallback``)."""
        return None if self.agent is None else dict(self.agent["shares"])

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: the head fields, one key per scorer, then distribution, seconds and notes
        (and ``agent`` for an agent row: the key is absent for other rows)."""
        out: dict[str, Any] = {k: getattr(self, k) for k in _HEAD}
        out.update({k: None if v is None else v.to_dict() for k, v in self.scores.items()})
        out["action_distribution"] = np.asarray(self.action_distribution).tolist()
        out["seconds"] = self.seconds
        out["notes"] = list(self.notes)
        if self.agent is not None:
            out["agent"] = {"decisions": self.agent["decisions"], "shares": dict(self.agent["shares"])}
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], scorers: Sequence[ResultLoader]) -> PolicyResult:
        """Rebuild from :meth:`to_dict` output; each scorer turns its own key back into its type."""
        scores = {s.name: None if d.get(s.name) is None else s.load(d[s.name]) for s in scorers}
        return cls(
            **{k: d[k] for k in _HEAD},
            scores=scores,
            action_distribution=np.asarray(d["action_distribution"], dtype=np.float64),
            seconds=float(d["seconds"]),
            notes=list(d.get("notes", [])),
            agent=d.get("agent"),
        )


@dataclass
class EvaluationReport:
    """The finished run: per-policy results plus the clinicians' action distribution and file paths."""

    config: EvaluationConfig
    results: dict[str, PolicyResult]
    clinician_distribution: np.ndarray
    files: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> PolicyResult:
        return self.results[name]

    def to_dict(self) -> dict[str, Any]:
        """The ``results.json`` payload."""
        return {
            "config": self.config.model_dump(),
            "meta": self.meta,
            "clinician_action_distribution": np.asarray(self.clinician_distribution).tolist(),
            "results": {k: v.to_dict() for k, v in self.results.items()},
        }


__all__ = ["SMOKE_TEST_PATIENTS", "EvaluationReport", "PolicyResult", "ResultLoader", "is_smoke_test"]
