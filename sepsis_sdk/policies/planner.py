"""The world-model planner: policy improvement over the clinicians, by closed-loop simulation.

Default (``mode="improve"``, one-step improvement): for each patient and each of the 25 actions, the
closed-loop value "this action now, then continue as the clinicians would" is estimated in the world
model (:func:`~sepsis_sdk.world_model.value.action_values`: exact on finite-support models, Monte Carlo
otherwise); the planner picks the action with the best **pessimistic** value — the estimate minus
``pessimism`` times its spread across ensemble members (or its Monte-Carlo error), minus
``support_penalty`` times missing data support — among actions that pass the hard safety rules and have
at least ``min_support``. ``lookahead=k`` does k rounds of this improvement (the continuation of round k
is the planner of round k - 1; policy iteration in the model). On exact ICU-Sepsis dynamics one round
reaches 0.862 and two rounds 0.8747, against 0.782 for the clinicians (DESIGN.md §6).

``lookahead="converge"`` plans to convergence instead, on finite-support models: policy iteration in the
model's *pessimistic* MDP, a penalty ``backup_pessimism / sqrt(n(s, a))`` inside every backup and actions
with fewer than ``min_count`` supporting transitions left out
(:func:`~sepsis_sdk.world_model.optimize.optimize_on_support`). A patient whose observation is one of the
model's support states gets that policy's action; any other gets one improvement step over it, with the
same penalty on the first step. On a learned model this is the form that uses data well (a rarely tried
action must look better through every later step; DESIGN.md §6); with the oracle it reaches the optimum.

``mode="hold"`` keeps the old rule (hold each action for ``horizon`` steps and score P(discharge) -
P(death) within it): on exact dynamics it reaches only 0.79-0.80, so it is an option, not the default.
``mode="auto"`` improves when a continuation policy is known (``continuation=``, or
:meth:`WorldModelPlannerPolicy.fit` on a cohort) and otherwise holds, saying so in every decision.

Nothing here reads hidden truth: the ICU-Sepsis admissibility filter is an explicit, labelled option
(``use_hidden_admissibility=True``) for validation only.
"""

from __future__ import annotations

import copy
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
        excluded: candidate index -> reasons it was excluded (unsafe, unsupported, inadmissible).
        relaxed: what had to be relaxed because every candidate was excluded (empty normally).
        mode: ``"improve"`` or ``"hold"``.
        value / lower / upper / advantage: closed-loop value per candidate, its interval and its
            advantage over the continuation's most likely action (``mode="improve"``; empty for hold).
        reference: the continuation's most likely action now (``-1`` for hold).
        notes: how the scores were obtained (method, continuation, what was missing).
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
    mode: str = "hold"
    value: list[float] = field(default_factory=list)
    lower: list[float] = field(default_factory=list)
    upper: list[float] = field(default_factory=list)
    advantage: list[float] = field(default_factory=list)
    reference: int = -1
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Deprecated spelling of :meth:`to_dict`."""
        import warnings

        warnings.warn("PlannerDecision.as_dict is deprecated; use to_dict", DeprecationWarning, stacklevel=2)
        return self.to_dict()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (rounded to 4 decimals; excluded candidates' scores are ``None``)."""

        def r(xs: list[float]) -> list[float | None]:
            return [None if not np.isfinite(x) else round(float(x), 4) for x in xs]

        return {
            "mode": self.mode,
            "value": r(self.value),
            "lower": r(self.lower),
            "upper": r(self.upper),
            "advantage": r(self.advantage),
            "reference": self.reference,
            "notes": self.notes,
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
    """Choose the action with the best pessimistic closed-loop value (see the module docstring).

    Args:
        world_model: any :class:`~sepsis_sdk.world_model.WorldModel`.
        continuation: how treatment continues after the candidate in ``mode="improve"`` — a fitted
            behaviour model (:func:`~sepsis_sdk.world_model.value.fit_continuation`), any Policy or a
            :class:`~sepsis_sdk.world_model.value.Continuation`. :meth:`fit` fits the default on a cohort.
        mode: ``"auto"`` (improve when a continuation is known, else hold), ``"improve"`` or ``"hold"``.
        lookahead: rounds of policy improvement (``mode="improve"``); ``k >= 2`` needs a finite-support
            model (exact) or costs ``k`` nested Monte-Carlo searches. ``"converge"``: pessimistic policy
            iteration to convergence on a finite-support model (see the module doc); on the model's support
            states it is exact and infinite-horizon, so ``method``, ``value_horizon`` and
            ``terminal_value`` apply only to the one step taken for patients off the support.
        backup_pessimism: ``lookahead="converge"``: ``c`` of the penalty ``c / sqrt(n)`` inside the backup.
        min_count: ``lookahead="converge"``: actions with fewer supporting transitions are left out.
        gamma: ``lookahead="converge"``: discount of the pessimistic MDP (0.999: see
            :mod:`sepsis_sdk.world_model.optimize`).
        method: ``"auto"``, ``"exact"`` or ``"monte-carlo"`` (see ``action_values``).
        value_horizon: steps of the closed-loop value (``None``: until death/discharge).
        n_value_samples: Monte-Carlo futures per candidate in ``mode="improve"``.
        pessimism: weight of the value's spread (members / MC error) subtracted from it.
        min_support: candidates whose data support is below this are excluded (``mode="improve"``).
        reward: a :class:`~sepsis_sdk.rewards.Reward` for the value (default survival).
        terminal_value: optional value model at the value horizon (features -> values).
        horizon: ``mode="hold"``: steps (4 h each) each candidate is held for.
        n_samples: ``mode="hold"``: sampled futures per candidate.
        candidates: actions to consider (default all 25).
        objective: ``mode="hold"``: ``"survival"`` (P(discharge) - P(death)), ``"mortality"`` or a function
            ``rollout -> (B, K)``.
        uncertainty_penalty: ``mode="hold"``: subtracted per SD of ensemble disagreement.
        support_penalty: subtracted times ``(1 - support)`` (both modes).
        safety: safety rules (``None`` = the SDK's defaults, ``False`` = none, a RuleSet or a checker).
        use_hidden_admissibility: exclude ICU-Sepsis inadmissible actions by reading the history's hidden
            ``state_id`` — validation only: a real cohort has no such thing, and it is off by default.
        use_admissibility: deprecated name of ``use_hidden_admissibility``.
        temperature: 0 = deterministic argmax; > 0 = softmax over scores (for stochastic evaluation).
        seed: simulation seed (same seed, same decisions).
        name: the policy's name in reports.

    Example:
        >>> from sepsis_sdk.truth.oracle import OracleWorldModel
        >>> from sepsis_sdk.sources.icu_sepsis import sample_cohort
        >>> planner = WorldModelPlannerPolicy.fit(OracleWorldModel(), sample_cohort(500, seed=0))
        >>> planner.mode
        'improve'
    """

    markov = False  # per instance: True when the world model sees only the current observation (window 1)

    def __init__(
        self,
        world_model: Any,
        *,
        continuation: Any = None,
        mode: str = "auto",
        lookahead: int | str = 1,
        backup_pessimism: float = 0.05,
        min_count: float = 5.0,
        gamma: float = 0.999,
        method: str = "auto",
        value_horizon: int | None = None,
        n_value_samples: int = 256,
        pessimism: float = 1.0,
        min_support: float = 0.0,
        reward: Any = None,
        terminal_value: Any = None,
        horizon: int = 6,
        n_samples: int = 8,
        candidates: Sequence[int | Action] | None = None,
        objective: str | Objective = "survival",
        uncertainty_penalty: float = 0.1,
        support_penalty: float = 0.1,
        safety: Any = None,
        use_hidden_admissibility: bool = False,
        use_admissibility: bool | None = None,
        temperature: float = 0.0,
        seed: int = 0,
        name: str = "world-model-planner",
    ) -> None:
        if world_model is None:
            raise UserError("WorldModelPlannerPolicy needs a world model")
        if horizon < 1 or n_samples < 1 or n_value_samples < 1:
            raise UserError(
                f"horizon, n_samples and n_value_samples must be >= 1, got {horizon}, {n_samples}, {n_value_samples}"
            )
        if value_horizon is not None and value_horizon < 1:
            raise UserError(f"value_horizon must be >= 1 or None, got {value_horizon}")
        if temperature < 0:
            raise UserError(f"temperature must be >= 0, got {temperature}")
        if mode not in ("auto", "improve", "hold"):
            raise UserError(f"unknown planner mode {mode!r}; choose 'auto', 'improve' or 'hold'")
        converge = lookahead == "converge"
        if not converge and (isinstance(lookahead, str) or int(lookahead) < 1):
            raise UserError(f"lookahead must be an integer >= 1 or 'converge', got {lookahead!r}")
        if converge and (backup_pessimism < 0 or min_count < 0 or not 0.0 < gamma <= 1.0):
            raise UserError(
                f"lookahead='converge' needs backup_pessimism >= 0, min_count >= 0 and gamma in (0, 1], got "
                f"{backup_pessimism}, {min_count}, {gamma}"
            )
        if pessimism < 0 or not 0.0 <= min_support <= 1.0:
            raise UserError(
                f"pessimism must be >= 0 and min_support in [0, 1], got {pessimism}, {min_support}"
            )
        if use_admissibility is not None:
            import warnings

            warnings.warn(
                "use_admissibility is deprecated: use use_hidden_admissibility (it reads hidden ICU-Sepsis truth)",
                DeprecationWarning,
                stacklevel=2,
            )
            use_hidden_admissibility = bool(use_admissibility)
        self.world_model = world_model
        self.markov = getattr(world_model, "window", None) == 1
        self.continuation = None
        if continuation is not None:
            from sepsis_sdk.world_model.value import as_continuation

            self.continuation = as_continuation(continuation, world_model=world_model)
        if converge and self.continuation is None:
            raise UserError(
                "lookahead='converge' needs a continuation policy (for patients off the model's support): "
                "pass continuation= or build the planner with WorldModelPlannerPolicy.fit(world_model, cohort)"
            )
        if converge and mode == "hold":
            raise UserError(
                "lookahead='converge' plans by policy iteration; it does not apply to mode='hold'"
            )
        if mode == "improve" and self.continuation is None:
            raise UserError(
                "mode='improve' needs a continuation policy: pass continuation= or build the planner with "
                "WorldModelPlannerPolicy.fit(world_model, cohort)"
            )
        self.mode = mode if mode != "auto" else ("improve" if self.continuation is not None else "hold")
        self.lookahead: int | str = "converge" if converge else int(lookahead)
        self.backup_pessimism = float(backup_pessimism)
        self.min_count = float(min_count)
        self.gamma = float(gamma)
        self.optimized: Any = None  # lookahead="converge": the OptimizedPolicy, once planned
        self.method = method
        self.value_horizon = value_horizon
        self.n_value_samples = int(n_value_samples)
        self.pessimism = float(pessimism)
        self.min_support = float(min_support)
        self.reward = reward
        self.terminal_value = terminal_value
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
        self.use_hidden_admissibility = use_hidden_admissibility
        self.temperature = temperature
        self.seed = seed
        self.name = name
        self._inner: Any = None

    @classmethod
    def fit(
        cls, world_model: Any, cohort: Any, *, continuation_kind: str = "auto", **kwargs: Any
    ) -> WorldModelPlannerPolicy:
        """A planner whose continuation is the clinicians' behaviour policy fitted on ``cohort``."""
        from sepsis_sdk.world_model.value import fit_continuation

        cont = fit_continuation(cohort, kind=continuation_kind, seed=int(kwargs.get("seed", 0)))
        kwargs.setdefault("mode", "improve")
        return cls(world_model, continuation=cont, **kwargs)

    @property
    def use_admissibility(self) -> bool:
        """Deprecated alias of :attr:`use_hidden_admissibility`."""
        return self.use_hidden_admissibility

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

    def _hold_scores(self, batch: Any, b: int, cands: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        wm = self.world_model
        k = len(cands)
        plans = np.broadcast_to(cands[None, :, None], (b, k, self.horizon)).copy()
        ro = wm.rollout(batch, plans, n_samples=self.n_samples, seed=self.seed)
        obj = np.asarray(self.objective(ro), dtype=float).reshape(b, k)
        support = np.asarray(ro.support, dtype=float).reshape(b, k)
        unc = self._uncertainty(ro)
        base = obj - self.uncertainty_penalty * unc - self.support_penalty * (1.0 - support)
        parts = {
            "objective": obj,
            "p_death": np.asarray(ro.p_death, dtype=float).reshape(b, k),
            "p_discharge": np.asarray(ro.p_discharge, dtype=float).reshape(b, k),
            "support": support,
            "uncertainty": unc,
        }
        return base, parts

    def planned_continuation(self) -> Any:
        """Care that continues as this planner would plan it: a continuation for closed-loop values.

        With ``lookahead="converge"`` it is the converged pessimistic policy on the model's support states
        (a table lookup, so a simulate call stays fast; the behaviour continuation off the support); with an
        integer lookahead it is the planner itself (:class:`PlannerContinuation`). Pass it as
        ``continuation=`` to a graph or to ``action_values`` and a candidate's value reads "this action now,
        then the planned care": the value the planner ranks actions by, which "then usual care" is not
        (docs/decisions.md §1). Needs a continuation policy (``mode="improve"``).

        Raises:
            UserError: a planner in ``mode="hold"`` (no continuation to plan over).
        """
        if self.mode != "improve" or self.continuation is None:
            raise UserError(
                "planned_continuation() needs a planner in mode='improve' (built with continuation=)"
            )
        if self.lookahead == "converge":
            return PlannedContinuation(self, self._inner_continuation())
        return PlannerContinuation(self)

    def cautious_values(self, batch: Any) -> np.ndarray:
        """``(B, 25)`` the planner's pessimistic score of every action (``NaN`` for non-candidates).

        The score it ranks actions by, without the safety rules: with ``lookahead="converge"`` the
        pessimistic Q (a penalty ``backup_pessimism / sqrt(n)`` inside every backup; ``-inf`` below
        ``min_count``), otherwise the closed-loop value minus the spread and missing-support penalties.
        The ``simulate`` tool reports it as each candidate's *cautious* value
        (``PSROptions.simulation_report="cautious"``). Built from the world model only.
        """
        out = np.full((batch.size, N_ACTIONS), np.nan)
        out[:, np.asarray(self.candidates, dtype=np.int64)] = np.asarray(self.scores(batch), dtype=float)
        return out

    def _inner_continuation(self) -> Any:
        """The continuation of the last improvement round (``lookahead - 1`` rounds already done)."""
        if self.lookahead == 1:
            return self.continuation
        if self._inner is not None:
            return self._inner
        if self.lookahead == "converge":
            from sepsis_sdk.world_model.optimize import optimize_on_support

            self.optimized = optimize_on_support(
                self.world_model,
                reward=self.reward,
                backup_pessimism=self.backup_pessimism,
                min_count=self.min_count,
                gamma=self.gamma,
                candidates=self.candidates,
            )
            self._inner = self.optimized.continuation(self.continuation, name="pessimistic-pi")
            return self._inner
        from sepsis_sdk.world_model.value import (
            FiniteSupportModel,
            TableContinuation,
            action_values,
            support_states,
        )

        wm = self.world_model
        cont = self.continuation
        cands = np.asarray(self.candidates, dtype=np.int64)
        finite = isinstance(wm, FiniteSupportModel) and bool(getattr(wm, "has_finite_support", True))
        if finite and self.method != "monte-carlo":
            sb = support_states(wm)  # the cached batch: its transitions are computed once
            for r in range(1, self.lookahead):  # policy iteration over the model's support states
                av = action_values(
                    wm,
                    sb,
                    cands,
                    continuation=cont,
                    method="exact",
                    horizon=self.value_horizon,
                    reward=self.reward,
                    terminal_value=self.terminal_value,
                )
                score = self._improve_score(av)
                table = np.zeros((sb.size, N_ACTIONS))
                table[np.arange(sb.size), cands[score.argmax(1)]] = 1.0
                cont = TableContinuation(
                    keys=np.where(sb.mask[:, -1], sb.x[:, -1], np.nan),
                    table=table,
                    base=self.continuation,
                    name=f"planner-round-{r}",
                )
        else:  # nested Monte Carlo: the continuation is the planner with one round fewer
            inner = copy.copy(self)
            inner.lookahead = self.lookahead - 1
            inner._inner = None
            cont = PlannerContinuation(inner)
        self._inner = cont
        return cont

    def _pessimistic(self, av: Any) -> np.ndarray:
        """Value minus ``pessimism`` x its spread minus the missing-support penalty."""
        return av.value - self.pessimism * av.std - self.support_penalty * (1.0 - av.support)

    def _improve_score(self, av: Any) -> np.ndarray:
        """:meth:`_pessimistic`, with candidates below ``min_support`` excluded (``-inf``)."""
        score = self._pessimistic(av)
        return np.where(av.support >= self.min_support, score, -np.inf) if self.min_support > 0 else score

    def _improve_scores(
        self, batch: Any, b: int, cands: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray], Any]:
        from sepsis_sdk.world_model.value import action_values

        av = action_values(
            self.world_model,
            batch,
            cands,
            continuation=self._inner_continuation(),
            method=self.method,
            horizon=self.value_horizon,
            n_samples=self.n_value_samples,
            reward=self.reward,
            terminal_value=self.terminal_value,
            seed=self.seed,
        )
        score = self._pessimistic(av)  # plan() excludes low support itself, with the reason
        if self.lookahead == "converge":
            score = self._converged_scores(batch, cands, av)
        nan = np.full(av.value.shape, np.nan)
        parts = {
            "objective": av.value,
            "p_death": nan,
            "p_discharge": nan,
            "support": av.support,
            "uncertainty": av.std,
        }
        return score, parts, av

    def _converged_scores(self, batch: Any, cands: np.ndarray, av: Any) -> np.ndarray:
        """``lookahead="converge"``: the pessimistic Q on support states, one penalised step elsewhere."""
        from sepsis_sdk.world_model.optimize import data_counts

        op = self.optimized
        n = (
            data_counts(self.world_model, batch)[:, cands]
            if (self.backup_pessimism or self.min_count)
            else None
        )
        if n is None:
            score = av.value.copy()
        else:
            with np.errstate(divide="ignore"):
                pen = np.where(np.isfinite(n), self.backup_pessimism / np.sqrt(np.maximum(n, 1.0)), 0.0)
            ok = n >= self.min_count
            none = ~ok.any(1)
            ok[none, n[none].argmax(1)] = True  # as the optimiser does: the best-supported action stays
            score = np.where(ok, av.value - pen, -np.inf)
        row = self._inner.lookup(batch)
        known = row >= 0
        score[known] = op.q[row[known]][:, cands]
        return score

    def scores(self, batch: Any) -> np.ndarray:
        """``(B, K)`` pessimistic scores of the candidates for a :class:`HistoryBatch` (no safety rules).

        Used by :class:`PlannerContinuation` and the inner rounds of ``lookahead``; :meth:`plan` adds the
        safety rules and the explanations.
        """
        cands = np.asarray(self.candidates, dtype=np.int64)
        if self.mode == "hold":
            return self._hold_scores(batch, batch.size, cands)[0]
        score, _, av = self._improve_scores(batch, batch.size, cands)
        return score if self.lookahead == "converge" else self._improve_score(av)

    def plan(self, histories: Sequence[PatientHistory]) -> list[PlannerDecision]:
        """Score every candidate for every patient (batched) and choose among the allowed ones."""
        if not histories:
            return []
        wm = self.world_model
        b = len(histories)
        cands = np.asarray(self.candidates, dtype=np.int64)
        batch = wm.batch(list(histories))
        notes: list[str] = []
        av = None
        if self.mode == "hold":
            base, parts = self._hold_scores(batch, b, cands)
            notes.append(f"hold each action for {self.horizon} steps; objective within the horizon")
            if self.continuation is None:
                notes.append("no continuation policy known: closed-loop improvement unavailable (use .fit)")
        else:
            base, parts, av = self._improve_scores(batch, b, cands)
            notes.append(
                f"closed-loop value ({av.method}, continuation {av.continuation}, lookahead {self.lookahead}), "
                f"minus {self.pessimism:g} x spread"
                if self.lookahead != "converge"
                else f"pessimistic policy iteration (penalty {self.backup_pessimism:g}/sqrt(n) inside the "
                f"backup, min_count {self.min_count:g}, gamma {self.gamma:g})"
            )
        return [self._choose(h, i, cands, base[i], parts, av, notes) for i, h in enumerate(histories)]

    def _choose(
        self,
        h: PatientHistory,
        i: int,
        cands: np.ndarray,
        base: np.ndarray,
        parts: dict[str, np.ndarray],
        av: Any,
        notes: list[str],
    ) -> PlannerDecision:
        from sepsis_sdk.render import infer_schema
        from sepsis_sdk.safety import hard_rule_mask

        k = len(cands)
        schema = getattr(self.world_model, "schema", None)
        sch = schema if schema is not None else infer_schema(h)
        excluded: dict[int, list[str]] = {}
        unsafe = hard_rule_mask(self.safety, h, sch)[cands]
        for a in cands[unsafe]:  # which rules: see check_guidelines / the guard (kept cheap here)
            excluded.setdefault(int(a), []).append("breaks a hard safety rule")
        unsupported = np.zeros(k, dtype=bool)
        if av is not None and self.min_support > 0:
            unsupported = av.support[i] < self.min_support
            for a in cands[unsupported]:
                excluded.setdefault(int(a), []).append(f"data support below {self.min_support:g}")
        inadm = np.zeros(k, dtype=bool)
        if self.use_hidden_admissibility:  # labelled validation option: reads hidden ICU-Sepsis truth
            from sepsis_sdk.truth import hidden_admissible_mask

            adm = hidden_admissible_mask(h)
            if adm is not None:
                inadm = ~adm[cands]
                for a in cands[inadm]:
                    excluded.setdefault(int(a), []).append(
                        "inadmissible in this ICU-Sepsis state (hidden truth)"
                    )
        relaxed: list[str] = []
        keep = ~(unsafe | inadm | unsupported)
        if not keep.any():
            keep = ~(unsafe | inadm)
            relaxed.append("every candidate was excluded; data support relaxed")
            if not keep.any():
                keep = ~inadm if (~inadm).any() else ~unsafe
                relaxed.append("safety relaxed" if (~inadm).any() else "admissibility relaxed")
                if not keep.any():
                    keep = np.ones(k, dtype=bool)
                    relaxed.append("all exclusions relaxed")
        scores = np.where(keep, base, -np.inf)
        if not np.isfinite(scores).any():  # every kept candidate was left out by min_count
            scores = np.where(keep, parts["objective"][i], -np.inf)
            relaxed.append("no allowed action had enough data support; min_count relaxed")
        best = int(cands[int(np.argmax(scores))])
        improve = av is not None
        return PlannerDecision(
            action=best,
            candidates=cands.tolist(),
            scores=scores.tolist(),
            objective=parts["objective"][i].tolist(),
            p_death=parts["p_death"][i].tolist(),
            p_discharge=parts["p_discharge"][i].tolist(),
            support=parts["support"][i].tolist(),
            uncertainty=parts["uncertainty"][i].tolist(),
            excluded=excluded,
            relaxed=relaxed,
            mode=self.mode,
            value=av.value[i].tolist() if improve else [],
            lower=av.lower[i].tolist() if improve else [],
            upper=av.upper[i].tolist() if improve else [],
            advantage=av.advantage[i].tolist() if improve else [],
            reference=int(av.reference[i]) if improve else -1,
            notes=list(notes),
        )

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


class PlannerContinuation:
    """A planner used as a continuation policy (one-hot on its best unsafe-agnostic choice): ``lookahead``."""

    markov = True

    def __init__(self, planner: WorldModelPlannerPolicy) -> None:
        self.planner = planner
        self.name = f"{planner.name}-lookahead-{planner.lookahead}"

    def probabilities(self, batch: Any) -> np.ndarray:
        s = self.planner.scores(batch)
        out = np.zeros((batch.size, N_ACTIONS))
        out[np.arange(batch.size), np.asarray(self.planner.candidates)[s.argmax(1)]] = 1.0
        return out

    def cautious_values(self, batch: Any) -> np.ndarray:
        """The planner's pessimistic scores (:meth:`WorldModelPlannerPolicy.cautious_values`)."""
        return self.planner.cautious_values(batch)


class PlannedContinuation:
    """Care as a converged planner plans it: its table on the support states, with its cautious values.

    What :meth:`WorldModelPlannerPolicy.planned_continuation` returns for ``lookahead="converge"``: the
    probabilities (and the name) are the inner table continuation's, unchanged; ``cautious_values`` adds the
    planner's pessimistic Q, which the ``simulate`` tool reports beside each candidate's value.
    """

    def __init__(self, planner: WorldModelPlannerPolicy, inner: Any) -> None:
        self.planner = planner
        self.inner = inner
        self.name = str(getattr(inner, "name", "planned"))
        self.markov = bool(getattr(inner, "markov", True))

    def probabilities(self, batch: Any) -> np.ndarray:
        return self.inner.probabilities(batch)

    def cautious_values(self, batch: Any) -> np.ndarray:
        """The planner's pessimistic scores (:meth:`WorldModelPlannerPolicy.cautious_values`)."""
        return self.planner.cautious_values(batch)


__all__ = [
    "PlannedContinuation",
    "PlannerContinuation",
    "PlannerDecision",
    "WorldModelPlannerPolicy",
    "mortality_objective",
    "survival_objective",
]
