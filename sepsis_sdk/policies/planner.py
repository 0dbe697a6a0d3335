"""The world-model planner: a non-LLM policy that searches the 25 actions with batched rollouts.

For each patient it holds every candidate action for ``horizon`` steps in the world model (one rollout
call for the whole batch of patients and candidates), scores each candidate by the objective minus an
uncertainty penalty and a low-support penalty, removes actions that break a hard safety rule or are not
admissible (ICU-Sepsis, where known), and picks the best. It is a baseline for evaluation and the
default fallback of the agent graphs' guard.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sepsis_sdk.actions import N_ACTIONS, Action, validate_index
from sepsis_sdk.errors import UserError
from sepsis_sdk.policies._base import PolicyBase
from sepsis_sdk.types import PatientHistory

Objective = Callable[[Any], np.ndarray]


def survival_objective(rollout: Any) -> np.ndarray:
    """``P(discharge) - P(death)`` within the horizon, ``(B, K)``."""
    return np.asarray(rollout.p_discharge, dtype=float) - np.asarray(rollout.p_death, dtype=float)


def mortality_objective(rollout: Any) -> np.ndarray:
    """``-P(death)`` within the horizon, ``(B, K)`` (ignores discharge; steadier on short horizons)."""
    return -np.asarray(rollout.p_death, dtype=float)


_OBJECTIVES: dict[str, Objective] = {"survival": survival_objective, "mortality": mortality_objective}


@dataclass
class PlannerDecision:
    """The planner's choice for one patient, with what it weighed.

    Attributes:
        action: chosen canonical index.
        candidates: the candidate indices scored.
        scores: final score per candidate (``-inf`` where excluded).
        objective: raw objective per candidate.
        p_death / p_discharge / support / uncertainty: per candidate.
        excluded: candidate index -> reasons it was excluded (unsafe, inadmissible).
        relaxed: what had to be relaxed because every candidate was excluded (empty normally).
    """

    action: int
    candidates: list[int]
    scores: list[float]
    objective: list[float]
    p_death: list[float]
    p_discharge: list[float]
    support: list[float]
    uncertainty: list[float]
    excluded: dict[int, list[str]] = field(default_factory=dict)
    relaxed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        def r(xs: list[float]) -> list[float | None]:
            return [None if not np.isfinite(x) else round(float(x), 4) for x in xs]

        return {
            "action": self.action,
            "candidates": self.candidates,
            "scores": r(self.scores),
            "objective": r(self.objective),
            "p_death": r(self.p_death),
            "p_discharge": r(self.p_discharge),
            "support": r(self.support),
            "uncertainty": r(self.uncertainty),
            "excluded": {str(k): v for k, v in self.excluded.items()},
            "relaxed": self.relaxed,
        }


class WorldModelPlannerPolicy(PolicyBase):
    """Pick the action whose simulated future scores best, among safe and admissible actions.

    Args:
        world_model: any :class:`~sepsis_sdk.world_model.WorldModel`.
        horizon: steps (4 h each) each candidate is held for in the rollout.
        n_samples: sampled futures per candidate.
        candidates: actions to consider (default all 25).
        objective: ``"survival"`` (P(discharge) - P(death)), ``"mortality"`` (-P(death)), or a function
            ``rollout -> (B, K)`` scores (higher is better).
        uncertainty_penalty: subtracted per SD of mean ensemble disagreement (in feature SDs).
        support_penalty: subtracted times ``(1 - support)``.
        safety: safety rules (``None`` = the SDK's defaults, ``False`` = none, a RuleSet or a checker).
        use_admissibility: exclude ICU-Sepsis inadmissible actions when ``history.state_id`` is known.
        temperature: 0 = deterministic argmax; > 0 = softmax over scores (for stochastic evaluation).
        seed: rollout seed (same seed, same decisions).
        name: the policy's name in reports.

    Example:
        >>> from sepsis_sdk.world_model.fake import FakeWorldModel       # doctest: +SKIP
        >>> planner = WorldModelPlannerPolicy(FakeWorldModel(), horizon=6)  # doctest: +SKIP
        >>> planner.decide(history).action                                # doctest: +SKIP
    """

    def __init__(
        self,
        world_model: Any,
        *,
        horizon: int = 6,
        n_samples: int = 8,
        candidates: Sequence[int | Action] | None = None,
        objective: str | Objective = "survival",
        uncertainty_penalty: float = 0.1,
        support_penalty: float = 0.1,
        safety: Any = None,
        use_admissibility: bool = True,
        temperature: float = 0.0,
        seed: int = 0,
        name: str = "world-model-planner",
    ) -> None:
        if world_model is None:
            raise UserError("WorldModelPlannerPolicy needs a world model")
        if horizon < 1 or n_samples < 1:
            raise UserError(f"horizon and n_samples must be >= 1, got {horizon}, {n_samples}")
        if temperature < 0:
            raise UserError(f"temperature must be >= 0, got {temperature}")
        self.world_model = world_model
        self.horizon = horizon
        self.n_samples = n_samples
        cands = range(N_ACTIONS) if candidates is None else candidates
        self.candidates = sorted({c.index if isinstance(c, Action) else validate_index(c) for c in cands})
        if not self.candidates:
            raise UserError("the planner needs at least one candidate action")
        if isinstance(objective, str):
            if objective not in _OBJECTIVES:
                raise UserError(
                    f"unknown objective {objective!r}; choose from {sorted(_OBJECTIVES)} or pass a function"
                )
            self.objective: Objective = _OBJECTIVES[objective]
        else:
            self.objective = objective
        self.uncertainty_penalty = uncertainty_penalty
        self.support_penalty = support_penalty
        from sepsis_sdk.safety import as_safety_checker

        self.safety = as_safety_checker(safety)
        self.use_admissibility = use_admissibility
        self.temperature = temperature
        self.seed = seed
        self.name = name

    # ------------------------------------------------------------------ scoring
    def _uncertainty(self, ro: Any) -> np.ndarray:
        schema = self.world_model.schema
        scale = np.array(
            [
                1.0
                if f.transform in ("z", "zlog")
                else max((f.upper - f.lower) / 6.0, 1e-9)
                if f.upper - f.lower < 1e9
                else 1.0
                for f in schema
            ],
            dtype=float,
        )
        epi = np.asarray(ro.epistemic_std, dtype=float) / scale  # (B, K, H, D)
        import warnings

        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN steps (every sample ended)
            out = (
                np.nanmean(epi.reshape(epi.shape[0], epi.shape[1], -1), axis=-1)
                if epi.size
                else np.zeros(epi.shape[:2])
            )
        return np.nan_to_num(out, nan=0.0)

    def plan(self, histories: Sequence[PatientHistory]) -> list[PlannerDecision]:
        """Score every candidate for every patient (one rollout call) and choose."""
        if not histories:
            return []
        from sepsis_sdk.render import infer_schema
        from sepsis_sdk.safety import hard_rule_mask as safety_matrix
        from sepsis_sdk.truth import hidden_admissible_mask as admissible_mask

        wm = self.world_model
        b = len(histories)
        cands = np.asarray(self.candidates, dtype=np.int64)
        k = len(cands)
        plans = np.broadcast_to(cands[None, :, None], (b, k, self.horizon)).copy()
        ro = wm.rollout(wm.batch(list(histories)), plans, n_samples=self.n_samples, seed=self.seed)
        obj = np.asarray(self.objective(ro), dtype=float).reshape(b, k)
        support = np.asarray(ro.support, dtype=float).reshape(b, k)
        unc = self._uncertainty(ro)
        base = obj - self.uncertainty_penalty * unc - self.support_penalty * (1.0 - support)
        schema = getattr(wm, "schema", None)
        out = []
        for i, h in enumerate(histories):
            sch = schema if schema is not None else infer_schema(h)
            excluded: dict[int, list[str]] = {}
            inadm = np.zeros(k, dtype=bool)
            unsafe = safety_matrix(self.safety, h, sch)[cands]
            for a in cands[unsafe]:  # which rules: see check_guidelines / the guard (kept cheap here)
                excluded.setdefault(int(a), []).append("breaks a hard safety rule")
            adm = admissible_mask(h) if self.use_admissibility else None
            if adm is not None:
                inadm = ~adm[cands]
                for a in cands[inadm]:
                    excluded.setdefault(int(a), []).append("inadmissible in this ICU-Sepsis state")
            relaxed: list[str] = []
            keep = ~(unsafe | inadm)
            if not keep.any():
                keep = ~inadm if (~inadm).any() else ~unsafe
                relaxed.append(
                    "every candidate was excluded; "
                    + ("safety" if (~inadm).any() else "admissibility")
                    + " relaxed"
                )
                if not keep.any():
                    keep = np.ones(k, dtype=bool)
                    relaxed.append("all exclusions relaxed")
            scores = np.where(keep, base[i], -np.inf)
            best = int(cands[int(np.argmax(scores))])
            out.append(
                PlannerDecision(
                    action=best,
                    candidates=cands.tolist(),
                    scores=scores.tolist(),
                    objective=obj[i].tolist(),
                    p_death=np.asarray(ro.p_death, dtype=float).reshape(b, k)[i].tolist(),
                    p_discharge=np.asarray(ro.p_discharge, dtype=float).reshape(b, k)[i].tolist(),
                    support=support[i].tolist(),
                    uncertainty=unc[i].tolist(),
                    excluded=excluded,
                    relaxed=relaxed,
                )
            )
        return out

    def decide(self, history: PatientHistory) -> PlannerDecision:
        """The decision for one patient."""
        return self.plan([history])[0]

    def action_probabilities(self, histories: Sequence[PatientHistory]) -> np.ndarray:
        """``(n, 25)``: one-hot on the best action, or a softmax over scores when ``temperature > 0``."""
        decisions = self.plan(histories)
        probs = np.zeros((len(histories), N_ACTIONS))
        for i, d in enumerate(decisions):
            if self.temperature > 0:
                s = np.asarray(d.scores, dtype=float)
                z = np.where(np.isfinite(s), (s - s[np.isfinite(s)].max()) / self.temperature, -np.inf)
                w = np.exp(z)
                probs[i, d.candidates] = w / w.sum()
            else:
                probs[i, d.action] = 1.0
        return probs


__all__ = ["PlannerDecision", "WorldModelPlannerPolicy", "mortality_objective", "survival_objective"]
