"""Simulation of candidate actions with a world model, summarised for prompts, traces and tables."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sepsis_sdk.actions import N_ACTIONS, Action, validate_index
from sepsis_sdk.errors import UserError
from sepsis_sdk.features import FeatureSchema, FeatureSpec
from sepsis_sdk.render import action_label, key_features, short_action
from sepsis_sdk.types import PatientHistory

Z90 = 1.645  # half-width of a central 90 % normal interval, in SDs
BEST_SUPPORT = 0.5
"""Support a candidate needs to be named "best supported" in a report (0.5: five exact look-alikes given it
under the neighbour model's default ``support_count``); below it a high value rests on too few patients."""
BEST_OPENINGS = ("Best supported: ", f"No candidate has support >= {BEST_SUPPORT}; the highest value is ")
"""How a report's closing line begins (:meth:`SimulationReport.best_line`); a candidate letter follows."""
RANKS = ("value", "cautious")
"""What a report's closing line ranks candidates by (:meth:`SimulationReport.best`)."""


class _AsDictAlias:
    """``as_dict()``: the deprecated spelling of ``to_dict()``."""

    def as_dict(self) -> dict[str, Any]:
        warnings.warn(
            f"{type(self).__name__}.as_dict() is deprecated; use to_dict()", DeprecationWarning, stacklevel=2
        )
        return self.to_dict()  # type: ignore[attr-defined]


@dataclass
class FeaturePath(_AsDictAlias):
    """The simulated path of one feature under one candidate.

    ``mean``/``lower``/``upper`` are stored values per step (``lower``/``upper`` a 90 % band, clipped to
    the feature's bounds; NaN after every sample has ended); ``display`` renders the current value then
    each step's mean in clinical units (``H + 1`` strings).
    """

    feature: str
    role: str
    start: float
    mean: list[float]
    lower: list[float]
    upper: list[float]
    display: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "role": self.role,
            "start": _num(self.start),
            "mean": [_num(v) for v in self.mean],
            "lower": [_num(v) for v in self.lower],
            "upper": [_num(v) for v in self.upper],
            "display": self.display,
        }


@dataclass
class CandidateOutcome(_AsDictAlias):
    """What the world model predicts if ``action`` is given for ``horizon`` steps.

    Attributes:
        action: canonical index (0-24).
        p_death: probability of death within the horizon.
        p_discharge: probability of survival/discharge within the horizon.
        support: how well the training data covers (current state, action), in [0, 1].
        uncertainty: mean ensemble disagreement over key features and steps, in feature SDs.
        paths: key features' predicted paths.
        value / value_lower / value_upper: closed-loop value (this action now, then care continues as
            the run's continuation policy — by default the clinicians — would: P(leaving the ICU alive)
            under the survival reward) and its 90 % interval; ``None`` without a continuation.
        advantage: ``value`` minus the value of the continuation's usual choice now.
        cautious: the continuation planner's pessimistic score of the action, when the continuation
            offers one (``cautious_values``, e.g. :meth:`WorldModelPlannerPolicy.planned_continuation`):
            the value with a penalty for every thinly supported step, ``-inf`` where the data are too
            few to rank it; what the planner itself ranks by. ``None`` otherwise.
    """

    action: int
    p_death: float
    p_discharge: float
    support: float
    uncertainty: float
    paths: list[FeaturePath] = field(default_factory=list)
    value: float | None = None
    value_lower: float | None = None
    value_upper: float | None = None
    advantage: float | None = None
    cautious: float | None = None

    @property
    def action_obj(self) -> Action:
        return Action.from_index(self.action)

    def path(self, feature: str) -> FeaturePath | None:
        return next((p for p in self.paths if p.feature == feature or p.role == feature), None)

    def to_dict(self) -> dict[str, Any]:
        a = self.action_obj
        return {
            "action": self.action,
            "fluid": a.fluid,
            "vaso": a.vaso,
            "p_death": round(self.p_death, 4),
            "p_discharge": round(self.p_discharge, 4),
            "support": round(self.support, 4),
            "uncertainty": round(self.uncertainty, 4),
            "value": _num(self.value) if self.value is not None else None,
            "value_lower": _num(self.value_lower) if self.value_lower is not None else None,
            "value_upper": _num(self.value_upper) if self.value_upper is not None else None,
            "advantage": _num(self.advantage) if self.advantage is not None else None,
            "cautious": _cautious_num(self.cautious),
            "paths": [p.to_dict() for p in self.paths],
        }


@dataclass
class SimulationReport(_AsDictAlias):
    """The outcomes of up to K candidate actions for one patient (one batched rollout)."""

    patient_id: str
    horizon: int
    n_samples: int
    candidates: list[CandidateOutcome]
    seed: int = 0
    latency_s: float = 0.0
    value_method: str | None = None
    continuation: str | None = None
    reference: int | None = None

    def get(self, action: int) -> CandidateOutcome | None:
        return next((c for c in self.candidates if c.action == action), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "patient_id": self.patient_id,
            "horizon": self.horizon,
            "n_samples": self.n_samples,
            "seed": self.seed,
            "latency_s": round(self.latency_s, 6),
            "value_method": self.value_method,
            "continuation": self.continuation,
            "reference": self.reference,
            "best": None if (b := self.best()) is None else self.candidates[b].action,
            "candidates": [c.to_dict() for c in self.candidates],
        }

    def to_text(self, *, paths: bool = True, rank: str = "value", brief: bool = False) -> str:
        """Compact rendering for a prompt: one block per candidate.

        Args:
            paths: also each candidate's key-feature paths (start -> end of the horizon). ``False`` keeps
                the header and each candidate's outcome and value line only: for three candidates about
                half the tokens (measured on ICU-Sepsis with SmolLM2's tokenizer: 398 of 855)
                (``PSROptions.simulation_report="values"``).
            rank: what the closing line ranks by (:meth:`best`); ``"cautious"`` also shows each
                candidate's cautious value and says what it is (``simulation_report="cautious"``).
            brief: one short header and one line per candidate with only what the closing line ranks by:
                value, support and (``rank="cautious"``) the cautious value, actions as ``[fluid F, vaso
                V]`` (the dose ranges are in the system prompt); no outcomes, intervals, advantages or
                paths (``simulation_report="brief"``; ``paths`` is ignored).

        Raises:
            UserError: ``rank="cautious"`` on a report without cautious values.
        """
        self._check_rank(rank)
        if brief:
            return self._brief_text(rank)
        hours = 4 * self.horizon
        lines = [
            f"World-model simulation: each candidate held for {self.horizon} steps ({hours} h), "
            f"{self.n_samples} samples. Bands are 90% intervals; low support means few similar cases "
            "in the training data, so trust those predictions less."
        ]
        if self.value_method is not None and self.reference is not None:
            how = "usual" if self.usual_care else "planned"
            lines.append(
                "value = estimated chance of leaving the ICU alive if the candidate is given now and care then "
                f"continues as {how} ({self.continuation}; {self.value_method}), with a 90% interval; "
                f"advantage = value minus that of the {how} choice now ({action_label(self.reference)}). "
                "Values of different actions often differ by less than 0.01: prefer a positive advantage "
                "whose interval is narrow and whose support is high."
            )
        if rank == "cautious":
            lines.append(
                "cautious = the planner's value with a penalty for every step that rests on few similar "
                "patients (what it ranks by; unsupported: too few to rank)."
            )
        for i, c in enumerate(self.candidates):
            value = ""
            if c.value is not None:
                value = (
                    f", value={c.value:.3f} [{c.value_lower:.3f}, {c.value_upper:.3f}], "
                    f"advantage={c.advantage:+.3f}"
                )
                if rank == "cautious":
                    value += f", cautious={_cautious_text(c.cautious)}"
            lines.append(
                f"{chr(65 + i)}. {action_label(c.action)}: P(death within {hours} h)={c.p_death:.2f}, "
                f"P(discharge)={c.p_discharge:.2f}, support={c.support:.2f}, uncertainty={c.uncertainty:.2f}"
                + value
            )
            parts = []
            for p in c.paths if paths else ():
                end = next((k for k in range(len(p.mean) - 1, -1, -1) if p.mean[k] == p.mean[k]), None)
                if end is None:
                    parts.append(f"{p.role}: all samples ended")
                    continue
                parts.append(f"{p.role} {p.display[0]} -> {p.display[end + 1]}")
            if parts:
                lines.append("   " + "; ".join(parts))
        best = self.best_line(rank)
        if best:
            lines.append(best)
        return "\n".join(lines)

    def _brief_text(self, rank: str) -> str:
        how = "usual" if self.usual_care else "planned"
        head = (
            f"World-model simulation ({self.horizon} steps, {self.n_samples} samples). value = estimated chance "
            f"of leaving the ICU alive if given now, care then continuing as {how}; support = how well similar "
            "training patients cover it (0-1; low: trust less)"
        )
        if rank == "cautious":
            head += "; cautious = value with a penalty for steps resting on few similar patients"
        lines = [head + "."]
        for i, c in enumerate(self.candidates):
            line = f"{chr(65 + i)}. {short_action(c.action)}: "
            line += "value n/a" if c.value is None else f"value {c.value:.3f}"
            if rank == "cautious":
                line += f", cautious {_cautious_text(c.cautious)}"
            lines.append(line + f", support {c.support:.2f}")
        best = self.best_line(rank, brief=True)
        if best:
            lines.append(best)
        return "\n".join(lines)

    @property
    def usual_care(self) -> bool:
        """Whether the values continue as the clinicians would (a behaviour model), not as a planner plans."""
        return str(self.continuation or "").startswith("behaviour")

    def best(self, rank: str = "value") -> int | None:
        """Position of the best-supported candidate: the highest ``rank`` (its value, or its cautious
        value) among those with support >= :data:`BEST_SUPPORT` (the highest overall when none has; the
        first on a tie); ``None`` without values.

        Raises:
            UserError: ``rank="cautious"`` on a report without cautious values.
        """
        self._check_rank(rank)
        valued = [i for i, c in enumerate(self.candidates) if c.value is not None and c.value == c.value]
        if not valued:
            return None
        pool = [i for i in valued if self.candidates[i].support >= BEST_SUPPORT] or valued
        if rank == "cautious":  # -inf (too few data to rank) loses to any ranked candidate
            ranked = [i for i in pool if self.candidates[i].cautious != -math.inf] or pool
            return max(ranked, key=lambda i: (self.candidates[i].cautious, -i))
        return max(pool, key=lambda i: (self.candidates[i].value, -i))

    def best_line(self, rank: str = "value", *, brief: bool = False) -> str:
        """The report's closing line: which candidate its numbers favour, and why ("" without values).

        ``brief`` names the action as ``[fluid F, vaso V]`` instead of with its dose ranges.
        """
        i = self.best(rank)
        if i is None:
            return ""
        c = self.candidates[i]
        label = short_action(c.action) if brief else action_label(c.action)
        if rank == "cautious":
            what = (
                f"{chr(65 + i)}. {label} (cautious value {_cautious_text(c.cautious)}, "
                f"support {c.support:.2f})"
            )
            if c.support >= BEST_SUPPORT:
                return (
                    f"{BEST_OPENINGS[0]}{what}: the highest cautious value among candidates with support >= "
                    f"{BEST_SUPPORT}."
                )
            return f"{BEST_OPENINGS[1]}{what}, but few similar patients were given it."
        what = f"{chr(65 + i)}. {label} (value {c.value:.3f}, support {c.support:.2f})"
        if c.support >= BEST_SUPPORT:
            return f"{BEST_OPENINGS[0]}{what}: the highest value among candidates with support >= {BEST_SUPPORT}."
        return f"{BEST_OPENINGS[1]}{what}, but few similar patients were given it."

    @property
    def has_cautious(self) -> bool:
        """Whether every candidate carries a cautious value (the continuation offered them)."""
        return bool(self.candidates) and all(c.cautious is not None for c in self.candidates)

    def _check_rank(self, rank: str) -> None:
        if rank not in RANKS:
            raise UserError(f"rank must be one of {RANKS}, got {rank!r}")
        if rank == "cautious" and not self.has_cautious:
            raise UserError(
                "this simulation report has no cautious values: its continuation offers none (use a "
                "planner's planned_continuation(), or a continuation with cautious_values(batch))"
            )

    def to_tool_result(self) -> Any:
        from sepsis_sdk.tools._base import ToolResult

        return ToolResult(content=self.to_text(), data=self.to_dict(), value=self)


def _num(v: float) -> float | None:
    return None if v != v else round(float(v), 4)


def _cautious_num(v: float | None) -> float | str | None:
    """A cautious value for JSON: ``"unsupported"`` for ``-inf`` (too few data to rank the action)."""
    if v is None or v != v:
        return None
    return "unsupported" if v == -math.inf else round(float(v), 4)


def _cautious_text(v: float | None) -> str:
    return "unsupported" if v is None or v == -math.inf or v != v else f"{v:.3f}"


def _scale(spec: FeatureSpec) -> float:
    if spec.transform in ("z", "zlog"):
        return 1.0
    span = spec.upper - spec.lower
    return span / 6.0 if 0 < span < 1e9 else 1.0


def _band(spec: FeatureSpec, mean: float, std: float) -> tuple[float, float]:
    if mean != mean:
        return math.nan, math.nan
    s = std if std == std else 0.0
    return spec.clip(mean - Z90 * s), spec.clip(mean + Z90 * s)


def _feature_path(ro: Any, k: int, j: int, spec: FeatureSpec, role: str, start: float) -> FeaturePath:
    """Feature ``j``'s predicted path under candidate ``k`` of a one-patient rollout."""
    mean = ro.mean[0, k, :, j].astype(float)
    std = ro.std[0, k, :, j].astype(float)
    bands = [_band(spec, m, s) for m, s in zip(mean, std, strict=False)]
    display = [spec.to_display(start)] + [spec.to_display(m) if m == m else "ended" for m in mean]
    return FeaturePath(
        feature=spec.name,
        role=role,
        start=float(start),
        mean=[float(v) for v in mean],
        lower=[b[0] for b in bands],
        upper=[b[1] for b in bands],
        display=display,
    )


def simulate_actions(
    world_model: Any,
    history: PatientHistory,
    actions: Sequence[int | Action],
    *,
    horizon: int = 6,
    n_samples: int = 8,
    seed: int = 0,
    schema: FeatureSchema | None = None,
    continuation: Any = None,
    value_samples: int = 256,
) -> SimulationReport:
    """Simulate each candidate action (held for ``horizon`` steps) in one batched rollout.

    With a ``continuation`` each candidate also gets its closed-loop value ("this action now, then care
    as usual"; :func:`~sepsis_sdk.world_model.value.action_values`: exact on finite-support models,
    ``value_samples`` Monte-Carlo futures otherwise), its interval and its advantage over the usual choice.

    Args:
        world_model: any :class:`~sepsis_sdk.world_model.WorldModel`.
        history: the patient.
        actions: up to K candidate actions (indices or :class:`Action`); duplicates are simulated once.
        horizon: steps of 4 hours.
        n_samples: sampled futures per candidate.
        seed: RNG seed of the rollout.
        schema: for display; defaults to the world model's.
        continuation: how care continues after the candidate (``None``: no closed-loop value).
        value_samples: Monte-Carlo futures per candidate for the value (non-finite-support models).

    Returns:
        A :class:`SimulationReport` with one :class:`CandidateOutcome` per distinct action, in input order.
    """
    if world_model is None:
        raise UserError("simulate needs a world model (pass world_model=... to the graph or ToolContext)")
    idx: list[int] = []
    for a in actions:
        i = a.index if isinstance(a, Action) else validate_index(a)
        if i not in idx:
            idx.append(i)
    if not idx:
        raise UserError("simulate needs at least one candidate action")
    if horizon < 1:
        raise UserError(f"horizon must be >= 1, got {horizon}")
    schema = schema or world_model.schema
    t0 = time.perf_counter()
    batch = world_model.batch([history])
    plans = np.repeat(np.asarray(idx, dtype=np.int64)[:, None], horizon, axis=1)[None]  # (1, K, H)
    ro = world_model.rollout(batch, plans, n_samples=n_samples, seed=seed)
    names = schema.names
    cur = history.current
    observed = cur.observed  # a property that builds a tuple: read once
    keys = [(role, name) for role, name in key_features(schema) if name in names]
    out: list[CandidateOutcome] = []
    for k, a in enumerate(idx):
        paths: list[FeaturePath] = []
        unc: list[float] = []
        for role, name in keys:
            j = names.index(name)
            spec = schema[name]
            start = cur.values[j] if observed[j] else math.nan
            paths.append(_feature_path(ro, k, j, spec, role, start))
            epi = ro.epistemic_std[0, k, :, j].astype(float)
            finite = epi[np.isfinite(epi)]
            if finite.size:
                unc.append(float(finite.mean()) / _scale(spec))
        out.append(
            CandidateOutcome(
                action=a,
                p_death=float(ro.p_death[0, k]),
                p_discharge=float(ro.p_discharge[0, k]),
                support=float(ro.support[0, k]),
                uncertainty=float(np.mean(unc)) if unc else 0.0,
                paths=paths,
            )
        )
    report = SimulationReport(
        patient_id=history.patient_id,
        horizon=horizon,
        n_samples=n_samples,
        candidates=out,
        seed=seed,
    )
    if continuation is not None:
        _add_values(report, world_model, batch, idx, continuation, value_samples, seed)
    report.latency_s = time.perf_counter() - t0
    return report


def _add_values(
    report: SimulationReport,
    world_model: Any,
    batch: Any,
    idx: list[int],
    continuation: Any,
    n: int,
    seed: int,
) -> None:
    """Fill in each candidate's closed-loop value, interval and advantage (one batched call)."""
    from sepsis_sdk.world_model.value import action_values

    av = action_values(world_model, batch, idx, continuation=continuation, n_samples=n, seed=seed)
    for k, c in enumerate(report.candidates):
        c.value, c.value_lower, c.value_upper = (
            float(av.value[0, k]),
            float(av.lower[0, k]),
            float(av.upper[0, k]),
        )
        c.advantage = float(av.advantage[0, k])
    scorer = getattr(continuation, "cautious_values", None)
    if callable(scorer):
        cv = np.asarray(scorer(batch), dtype=float).reshape(-1, N_ACTIONS)[0]
        for c in report.candidates:  # NaN: not among the planner's candidates, so it cannot rank it
            c.cautious = float(cv[c.action]) if cv[c.action] == cv[c.action] else -math.inf
    report.value_method, report.continuation, report.reference = (
        av.method,
        av.continuation,
        int(av.reference[0]),
    )
