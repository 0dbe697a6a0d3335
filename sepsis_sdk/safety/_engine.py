"""The rule engine: variables resolved against a cohort schema, and one vectorised evaluator (``RuleSet._judge``)
behind single-decision checks, the 25-action table of one state and whole-cohort batches."""

from __future__ import annotations

import math
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sepsis_sdk.actions import FLUID_BINS, N_ACTIONS, N_LEVELS, VASO_BINS, Action, validate_index
from sepsis_sdk.errors import UserError
from sepsis_sdk.features import FeatureSchema
from sepsis_sdk.safety._expr import Value
from sepsis_sdk.safety._model import (
    CompiledRule,
    Definition,
    RuleFile,
    RuleSpec,
    VariableSpec,
    read_rule_file,
)
from sepsis_sdk.safety._verdict import RuleVerdict

if TYPE_CHECKING:
    import pandas as pd

    from sepsis_sdk.cohort import Cohort
    from sepsis_sdk.types import PatientHistory

_FLUID_LOW = np.array([b.low for b in FLUID_BINS])
_FLUID_HIGH = np.array([math.inf if b.high is None else b.high for b in FLUID_BINS])
_VASO_LOW = np.array([b.low for b in VASO_BINS])
_VASO_HIGH = np.array([math.inf if b.high is None else b.high for b in VASO_BINS])


# ---------------------------------------------------------------------------------------------- variables
@dataclass(frozen=True)
class VariableSource:
    """Where a clinical variable comes from in a given cohort schema.

    Attributes:
        variable: the rule-file variable (``map``).
        column: the cohort column read, or None when the cohort cannot provide the variable.
        transform: how the stored value becomes clinical units (``raw``, ``log1p``, ``z-approx``).
        approximate: True when the conversion uses reference statistics from another cohort.
        note: why the variable is unavailable, or how it was converted.
    """

    variable: str
    column: str | None
    transform: str = "raw"
    approximate: bool = False
    note: str = ""
    mean: float = 0.0
    sd: float = 1.0

    @property
    def available(self) -> bool:
        return self.column is not None

    def convert(self, stored: np.ndarray) -> np.ndarray:
        stored = np.asarray(stored, dtype=np.float64)
        if self.transform == "log1p":
            return np.expm1(stored)
        if self.transform == "z-approx":
            return self.mean + self.sd * stored
        return stored


def resolve_variables(
    variables: Mapping[str, VariableSpec], schema: FeatureSchema, *, approximate: bool = True
) -> dict[str, VariableSource]:
    """Find each clinical variable in ``schema`` and decide how to convert it to clinical units.

    Columns stored raw are used as they are, ``log1p`` columns are exponentiated, z-scored columns are
    mapped with the variable's ``z_reference`` when ``approximate`` is True (labelled approximate), and
    anything else (z without reference, log-z, binary) leaves the variable unavailable.
    """
    out: dict[str, VariableSource] = {}
    have = set(schema.names)
    for name, spec in variables.items():
        col = next((c for c in spec.columns if c in have), None)
        if col is None:
            out[name] = VariableSource(
                name, None, note=f"the cohort has none of the columns {list(spec.columns)}"
            )
            continue
        fs = schema[col]
        if fs.transform == "raw":
            out[name] = VariableSource(name, col, "raw", note=f"{col} in {spec.unit}")
        elif fs.transform == "log1p":
            out[name] = VariableSource(name, col, "log1p", note=f"{col} stored as log1p, exponentiated")
        elif fs.transform == "z" and spec.z_reference is not None and approximate:
            ref = spec.z_reference
            out[name] = VariableSource(
                name,
                col,
                "z-approx",
                approximate=True,
                note=f"{col} is a z-score; mapped to {spec.unit} as {ref.mean:g} + {ref.sd:g} * z ({ref.source})",
                mean=ref.mean,
                sd=ref.sd,
            )
        else:
            why = {
                "z": "a z-score against unpublished cohort statistics",
                "zlog": "a z-score of a log against unpublished cohort statistics",
                "binary": "a binary flag",
            }.get(fs.transform, fs.transform)
            extra = " (approximate mapping disabled)" if fs.transform == "z" and spec.z_reference else ""
            out[name] = VariableSource(name, None, note=f"{col} is stored as {why}{extra}")
    return out


# ---------------------------------------------------------------------------------------------- results
# The former name of the verdict type (kept as an alias: one type for the engine and the checkers).
RuleResult = RuleVerdict


@dataclass(frozen=True)
class RuleContext:
    """One decision to check: the proposed action, the treatment so far and clinical values.

    Build it from a :class:`~sepsis_sdk.PatientHistory` with :meth:`from_history`, or directly::

        RuleContext(fluid=0, vaso=0, t=0, values={"map": 60.0, "lactate": 3.1})

    Attributes:
        fluid: proposed fluid level 0-4.
        vaso: proposed vasopressor level 0-4.
        t: decision index (0 = first 4-h bloc).
        prev_fluid: fluid level of the previous decision (None at t = 0).
        prev_vaso: vasopressor level of the previous decision (None at t = 0).
        max_prior_fluid: highest fluid level at any earlier decision (None: 0 at t = 0, unknown later).
        values: clinical values in the rule file's units (``map`` in mmHg, ``lactate`` in mmol/L,
            ``cum_balance`` in mL, ``weight`` in kg, ``cvp`` in mmHg); None or NaN = missing at this decision.
        unavailable: variables the cohort cannot provide at all, with the reason.
        approximate: variables converted with reference statistics of another cohort.
    """

    fluid: int
    vaso: int
    t: int = 0
    prev_fluid: int | None = None
    prev_vaso: int | None = None
    max_prior_fluid: int | None = None
    values: Mapping[str, float | None] = field(default_factory=dict)
    unavailable: Mapping[str, str] = field(default_factory=dict)
    approximate: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for name in ("fluid", "vaso", "prev_fluid", "prev_vaso", "max_prior_fluid"):
            v = getattr(self, name)
            if v is not None and not 0 <= int(v) < N_LEVELS:
                raise UserError(f"RuleContext.{name} must be a level 0-4, got {v!r}")
        if self.t < 0:
            raise UserError(f"RuleContext.t must be >= 0, got {self.t}")

    @property
    def action(self) -> Action:
        return Action(fluid=int(self.fluid), vaso=int(self.vaso))

    @classmethod
    def from_history(
        cls,
        history: PatientHistory,
        action: Action | int | Sequence[int],
        schema: FeatureSchema | None = None,
        *,
        rules: RuleSet | None = None,
        approximate: bool = True,
    ) -> RuleContext:
        """The context of proposing ``action`` for the current decision of ``history``.

        Args:
            history: the patient's history (the last observation is the one being treated).
            action: an :class:`Action`, a canonical index 0-24, or a ``(fluid, vaso)`` pair.
            schema: the cohort's feature schema (says how values are stored). When None, the ICU-Sepsis
                schema is used if the history's feature names are ICU-Sepsis's, else values are taken as
                clinical units.
            rules: the rule set whose variable table is used (default: the packaged rules).
            approximate: allow approximate unit mappings of z-scored columns.
        """
        act = _as_action(action)
        rules = rules or load_rules()
        schema = schema or _guess_schema(history)
        names = list(history.feature_names) or schema.names
        if len(names) != len(history.current.values):
            raise UserError(
                f"history of {history.patient_id} has {len(history.current.values)} values but "
                f"{len(names)} feature names"
            )
        sources = rules.sources(schema, approximate=approximate)
        values: dict[str, float | None] = {}
        unavailable: dict[str, str] = {}
        approx: set[str] = set()
        observed = history.current.observed
        for var, src in sources.items():
            if not src.available or src.column not in names:
                unavailable[var] = src.note or f"no column for {var}"
                continue
            j = names.index(src.column)  # type: ignore[arg-type]
            raw = history.current.values[j]
            if not observed[j] or raw != raw:
                values[var] = None
            else:
                values[var] = float(src.convert(np.array([raw]))[0])
            if src.approximate:
                approx.add(var)
        prev = history.previous_action
        prior = [Action.from_index(a) for a in history.actions]
        return cls(
            fluid=act.fluid,
            vaso=act.vaso,
            t=int(history.t),
            prev_fluid=Action.from_index(prev).fluid if prev is not None else None,
            prev_vaso=Action.from_index(prev).vaso if prev is not None else None,
            max_prior_fluid=max(a.fluid for a in prior) if prior else None,
            values=values,
            unavailable=unavailable,
            approximate=frozenset(approx),
        )


def _as_action(action: Action | int | Sequence[int]) -> Action:
    if isinstance(action, Action):
        return action
    if isinstance(action, (int, np.integer)) and not isinstance(action, bool):
        return Action.from_index(validate_index(action))
    pair = list(action)  # type: ignore[arg-type]
    if len(pair) != 2:
        raise UserError(f"an action is an Action, an index 0-24 or a (fluid, vaso) pair, got {action!r}")
    return Action(fluid=int(pair[0]), vaso=int(pair[1]))


def _guess_schema(history: PatientHistory) -> FeatureSchema:
    from sepsis_sdk.render import infer_schema

    if not history.feature_names:
        raise UserError("the history has no feature_names and no schema was given; pass schema=")
    return infer_schema(history)


# ---------------------------------------------------------------------------------------------- cohort batch
@dataclass
class CohortRuleResults:
    """Per-decision rule results over a cohort for one policy's actions.

    Arrays are indexed ``[rule, row]`` in :attr:`rule_ids` order and cohort row order. For a stochastic
    policy, ``violated`` holds the probability that the policy's action breaks the rule.

    Attributes:
        rule_ids: rules in file order.
        kinds: rule id -> ``guideline`` / ``hazard``.
        applicable: ``(R, n)`` bool: the rule could be judged at this decision.
        triggered: ``(R, n)`` bool: its state condition holds (and it is applicable).
        violated: ``(R, n)`` float in [0, 1]: (probability of) a violation; 0 where not applicable.
        definitions: name -> (applicable ``(n,)``, violated ``(n,)``) for groups such as guideline adherence:
            applicable where any member rule is, violated with the probability that any member is broken.
        approximate: rule id -> True when it reads an approximately converted variable.
        not_applicable: rule id -> reason, for rules the cohort cannot support at all.
        episode: ``(n,)`` 0-based episode number of each row (for patient-level bootstrap).
    """

    rule_ids: list[str]
    kinds: dict[str, str]
    applicable: np.ndarray
    triggered: np.ndarray
    violated: np.ndarray
    definitions: dict[str, tuple[np.ndarray, np.ndarray]]
    approximate: dict[str, bool]
    not_applicable: dict[str, str]
    episode: np.ndarray

    def __len__(self) -> int:
        return self.applicable.shape[1]

    def row(self, rule_id: str) -> int:
        try:
            return self.rule_ids.index(rule_id)
        except ValueError:
            raise UserError(f"no rule {rule_id!r}; rules are {self.rule_ids}") from None

    def violation_rate(self, rule_id: str, *, among: str = "applicable") -> float | None:
        """Share of decisions breaking ``rule_id`` among ``applicable`` or ``triggered`` decisions."""
        r = self.row(rule_id)
        den = self.applicable[r] if among == "applicable" else self.triggered[r]
        n = den.sum()
        return float(self.violated[r][den].sum() / n) if n else None

    def to_frame(self) -> pd.DataFrame:
        """One row per decision; columns ``<rule>_applicable``, ``<rule>_triggered``, ``<rule>_violated``."""
        import pandas as pd

        cols: dict[str, Any] = {"episode": self.episode}
        for r, rid in enumerate(self.rule_ids):
            cols[f"{rid}_applicable"] = self.applicable[r]
            cols[f"{rid}_triggered"] = self.triggered[r]
            cols[f"{rid}_violated"] = self.violated[r]
        for name, (app, vio) in self.definitions.items():
            cols[f"{name}_applicable"] = app
            cols[f"{name}_violated"] = vio
        return pd.DataFrame(cols)


# ---------------------------------------------------------------------------------------------- rule set
class RuleSet:
    """Compiled rules plus the variable table and named definitions of one rule file.

    Use :func:`load_rules` to get one. ``check`` judges a single decision, ``action_violations`` all 25
    actions of one state, ``evaluate_cohort`` every decision of a cohort (under one action per row or all
    25 with probabilities). All three build an environment of ``n`` decisions x ``K`` candidate actions
    and call the same evaluator, so the applicability logic is written once.
    """

    def __init__(self, spec: RuleFile, *, source: str = "<memory>") -> None:
        self.spec = spec
        self.source = source
        self.variables: dict[str, VariableSpec] = dict(spec.variables)
        self.definitions: dict[str, Definition] = dict(spec.definitions)
        self.rules: list[CompiledRule] = [CompiledRule(r, self.variables, source) for r in spec.rules]
        self._resolved: dict[tuple[int, bool], tuple[FeatureSchema, dict[str, VariableSource]]] = {}

    def sources(self, schema: FeatureSchema, *, approximate: bool = True) -> dict[str, VariableSource]:
        """:func:`resolve_variables` of this rule set's variables in ``schema`` (cached per schema)."""
        # Resolving is per schema, not per decision: the guard and the planner check many decisions of
        # one schema, so the cache keeps RuleContext.from_history cheap. Keyed by identity, checked by it.
        key = (id(schema), approximate)
        hit = self._resolved.get(key)
        if hit is None or hit[0] is not schema:
            if len(self._resolved) > 64:
                self._resolved.clear()
            hit = self._resolved[key] = (
                schema,
                resolve_variables(self.variables, schema, approximate=approximate),
            )
        return dict(hit[1])

    def __len__(self) -> int:
        return len(self.rules)

    def __iter__(self):
        return iter(r.spec for r in self.rules)

    def __repr__(self) -> str:
        return f"<RuleSet {self.source}: {', '.join(self.ids)}>"

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.rules]

    def __getitem__(self, rule_id: str) -> RuleSpec:
        for r in self.rules:
            if r.id == rule_id:
                return r.spec
        raise UserError(f"{self.source}: no rule {rule_id!r}; rules are {self.ids}")

    def subset(self, ids: Sequence[str]) -> RuleSet:
        """A rule set with only the rules ``ids`` (definitions naming other rules are dropped)."""
        for i in ids:
            self[i]
        keep = set(ids)
        defs = {k: d for k, d in self.definitions.items() if set(d.rules) <= keep}
        spec = self.spec.model_copy(
            update={"rules": tuple(r for r in self.spec.rules if r.id in keep), "definitions": defs}
        )
        return RuleSet(spec, source=self.source)

    # ------------------------------------------------------------------ the one evaluator
    def _judge(
        self, env: Mapping[str, Value], shape: tuple[int, int], unavailable: Container[str]
    ) -> _Judgement:
        """Every rule on ``n`` decisions x ``k`` candidate actions (``shape``): the applicability logic.

        A rule is *not applicable* at a decision when a feature it needs is ``unavailable`` (the cohort or
        context cannot provide it at all) or when its state condition, or its violation condition once
        triggered, stays unknown for some candidate action (a missing value). An applicable rule is
        *triggered* when its state condition holds, and *violated* by a candidate when, triggered, the
        candidate satisfies the violation condition.
        """
        n, k = shape
        r_n = len(self.rules)
        applicable = np.zeros((r_n, n), dtype=bool)
        triggered = np.zeros((r_n, n), dtype=bool)
        violated = np.zeros((r_n, n, k), dtype=bool)
        missing: dict[str, list[str]] = {}
        full = np.ones(shape, dtype=bool)
        for r, rule in enumerate(self.rules):
            gaps = [f for f in rule.spec.features if f in unavailable]
            if gaps:
                missing[rule.id] = gaps
                continue
            with np.errstate(all="ignore"):  # missing values are NaN; `known` carries them
                w, v = rule.when.fn(env), rule.violation.fn(env)
            # Judged for a candidate: the state condition is known, and the violation is known once it
            # holds. `full &` broadcasts the (n, 1) state parts to (n, k) in the same operation.
            fires = w.known & w.values
            applicable[r] = (full & w.known & (~w.values | v.known)).all(1)
            triggered[r] = applicable[r] & (full & fires).all(1)
            violated[r] = fires & v.known & v.values & applicable[r][:, None]
        return _Judgement(applicable, triggered, violated, missing)

    def _context_env(self, context: RuleContext, cand: np.ndarray) -> dict[str, Value]:
        """The environment of one decision (arrays of one row) with candidate actions ``cand`` ``(1, K)``."""
        values: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for var in self.variables:
            v = context.values.get(var)
            ok = v is not None and v == v
            values[var] = (np.array([float(v) if ok else np.nan]), np.array([ok]))  # type: ignore[arg-type]
        return _build_env(
            values,
            t=np.array([context.t]),
            prev_fluid=np.array([-1 if context.prev_fluid is None else context.prev_fluid]),
            prev_vaso=np.array([-1 if context.prev_vaso is None else context.prev_vaso]),
            max_prior=np.array([_max_prior(context)]),
            cand=cand,
        )

    def _context_unavailable(self, context: RuleContext) -> set[str]:
        return set(context.unavailable) | {v for v in self.variables if v not in context.values}

    # ------------------------------------------------------------------ single decision
    def action_violations(self, context: RuleContext) -> dict[str, np.ndarray | None]:
        """For every rule, which of the 25 actions would break it in this state (one vectorised pass).

        The proposed action in ``context`` is ignored. A rule maps to None when it cannot be judged for
        every action (missing features or values), else to a ``(25,)`` bool array indexed by action.
        """
        cand = np.arange(N_ACTIONS)[None, :]
        j = self._judge(self._context_env(context, cand), (1, N_ACTIONS), self._context_unavailable(context))
        return {
            rule.id: None if rule.id in j.missing or not j.applicable[r, 0] else j.violated[r, 0].copy()
            for r, rule in enumerate(self.rules)
        }

    def check(self, context: RuleContext, *, hard: Container[str] = ()) -> list[RuleVerdict]:
        """Judge one decision against every rule (in file order).

        Args:
            context: the decision and its proposed action.
            hard: ids of the rules to mark ``hard`` (enforced) in the verdicts; the rule set itself
                enforces nothing, a :class:`~sepsis_sdk.safety.SafetyChecker` decides.
        """
        env = self._context_env(context, np.array([[context.action.index]]))
        j = self._judge(env, (1, 1), self._context_unavailable(context))
        return [self._verdict(context, rule, j, r, rule.id in hard) for r, rule in enumerate(self.rules)]

    def _verdict(
        self, context: RuleContext, rule: CompiledRule, j: _Judgement, r: int, hard: bool
    ) -> RuleVerdict:
        spec = rule.spec
        approx = any(f in context.approximate for f in (*spec.features, *spec.optional_features))
        tag = " [approximate units]" if approx else ""
        common = {"approximate": approx, "kind": spec.kind, "hard": hard}
        if spec.id in j.missing:
            gaps = j.missing[spec.id]
            notes = "; ".join(f"{f}: {context.unavailable.get(f, 'not provided')}" for f in gaps)
            return RuleVerdict(spec.id, False, None, f"not applicable: needs {gaps} ({notes})", **common)
        if not j.applicable[r, 0]:
            gaps = [f for f in spec.features if context.values.get(f) is None]
            why = f"not applicable: missing value(s) {gaps or '(history)'} at this decision{tag}"
            return RuleVerdict(spec.id, False, None, why, **common)
        shown = _show_values(context, rule)
        if not j.triggered[r, 0]:
            why = f"not triggered: {spec.when} is false ({shown}){tag}"
            return RuleVerdict(spec.id, True, False, why, triggered=False, **common)
        if j.violated[r, 0, 0]:
            why = f"violated: {spec.when} ({shown}) and the action {_act(context)} matches {spec.violation}{tag}"
            return RuleVerdict(spec.id, True, True, why, triggered=True, **common)
        why = f"satisfied: {spec.when} ({shown}) and the action {_act(context)} avoids {spec.violation}{tag}"
        return RuleVerdict(spec.id, True, False, why, triggered=True, **common)

    def violations(self, context: RuleContext) -> list[RuleVerdict]:
        """Only the violated verdicts of :meth:`check`."""
        return [r for r in self.check(context) if r.violated]

    # ------------------------------------------------------------------ cohort batch
    def evaluate_cohort(
        self, cohort: Cohort, actions: np.ndarray | Sequence[int] | None = None, *, approximate: bool = True
    ) -> CohortRuleResults:
        """Judge every decision of ``cohort`` under a policy's actions.

        Args:
            cohort: the decisions (histories are the cohort's own: the previous action is the one recorded).
            actions: ``(n_rows,)`` action indices, ``(n_rows, 25)`` action probabilities (violations are then
                probabilities), or None for the cohort's recorded (clinician) actions.
            approximate: allow approximate unit mappings of z-scored columns.
        """
        n = len(cohort)
        cand, probs = _candidates(cohort.actions if actions is None else actions, n)
        sources = self.sources(cohort.schema, approximate=approximate)
        j = self._judge(_cohort_env(cohort, sources, cand), (n, cand.shape[1]), _unavailable(sources))
        violated = (j.violated * probs[None]).sum(2)
        definitions: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name, d in self.definitions.items():
            idx = [self.ids.index(i) for i in d.rules if i in self.ids]
            definitions[name] = (j.applicable[idx].any(0), (j.violated[idx].any(0) * probs).sum(1))
        approx = {
            rule.id: any(
                sources[f].approximate
                for f in (*rule.spec.features, *rule.spec.optional_features)
                if sources[f].available
            )
            for rule in self.rules
        }
        not_app = {rid: "; ".join(f"{f}: {sources[f].note}" for f in gaps) for rid, gaps in j.missing.items()}
        return CohortRuleResults(
            rule_ids=self.ids,
            kinds={r.id: r.spec.kind for r in self.rules},
            applicable=j.applicable,
            triggered=j.triggered,
            violated=np.clip(violated, 0.0, 1.0),
            definitions=definitions,
            approximate=approx,
            not_applicable=not_app,
            episode=cohort.episode_index(),
        )


@dataclass(frozen=True)
class _Judgement:
    """What :meth:`RuleSet._judge` found, indexed ``[rule, decision(, candidate)]`` in rule-file order."""

    applicable: np.ndarray  # (R, n) bool: judged for every candidate action
    triggered: np.ndarray  # (R, n) bool: applicable and the state condition holds
    violated: np.ndarray  # (R, n, K) bool: triggered and the candidate breaks the rule
    missing: dict[str, list[str]]  # rule id -> needed features that cannot be provided at all


def _candidates(actions: np.ndarray | Sequence[int], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Candidate actions ``(n, K)`` and their probabilities ``(n, K)`` from indices or probability rows."""
    acts = np.asarray(actions)
    if acts.ndim == 1:
        if acts.shape[0] != n:
            raise UserError(f"got {acts.shape[0]} actions for a cohort of {n} rows")
        bad = np.flatnonzero((acts < 0) | (acts >= N_ACTIONS) | (acts != np.round(acts)))
        if bad.size:
            raise UserError(f"actions must be indices 0-24; rows {bad[:10].tolist()} are not")
        return acts.astype(np.int64)[:, None], np.ones((n, 1))
    if acts.ndim == 2 and acts.shape == (n, N_ACTIONS):
        probs = acts.astype(np.float64)
        if (
            not np.isfinite(probs).all()
            or (probs < -1e-9).any()
            or not np.allclose(probs.sum(1), 1.0, atol=1e-6)
        ):
            raise UserError("action probabilities must be finite, non-negative rows summing to 1")
        return np.broadcast_to(np.arange(N_ACTIONS)[None, :], (n, N_ACTIONS)), probs
    raise UserError(f"actions must be ({n},) indices or ({n}, 25) probabilities, got shape {acts.shape}")


def _unavailable(sources: Mapping[str, VariableSource]) -> set[str]:
    return {v for v, src in sources.items() if not src.available}


def _cohort_env(cohort: Cohort, sources: Mapping[str, VariableSource], cand: np.ndarray) -> dict[str, Value]:
    """The environment of every decision of ``cohort`` (one row each) with candidates ``cand`` ``(n, K)``."""
    n = len(cohort)
    x = cohort.features()
    m = cohort.masks()
    names = cohort.schema.names
    values: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for var, src in sources.items():
        if src.available:
            j = names.index(src.column)  # type: ignore[arg-type]
            vals = src.convert(x[:, j])
            values[var] = (vals, m[:, j] & np.isfinite(vals))
        else:
            values[var] = (np.full(n, np.nan), np.zeros(n, dtype=bool))
    rec = cohort.actions
    ep = cohort.episode_index()
    first = np.r_[True, ep[1:] != ep[:-1]]
    prev = np.r_[-1, rec[:-1]]
    prev[first] = -1
    prev_f = np.where(prev >= 0, prev // N_LEVELS, -1)
    prev_v = np.where(prev >= 0, prev % N_LEVELS, -1)
    # No fluid recorded before an episode's first decision: the highest earlier level is 0 there.
    max_prior = _episode_cummax(np.maximum(prev_f, 0), ep)
    t = cohort.data["t"].to_numpy(dtype=np.int64)
    return _build_env(values, t=t, prev_fluid=prev_f, prev_vaso=prev_v, max_prior=max_prior, cand=cand)


def _build_env(
    values: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    t: np.ndarray,
    prev_fluid: np.ndarray,
    prev_vaso: np.ndarray,
    max_prior: np.ndarray,
    cand: np.ndarray,
) -> dict[str, Value]:
    """Rule variables as ``(n, 1)`` columns (state, history; -1 = unknown) plus action variables ``(n, K)``.

    The same environment serves one decision (n = 1) and a cohort, one candidate or all 25.
    """
    env = {var: Value(v[:, None], k[:, None]) for var, (v, k) in values.items()}
    for name, arr, known in (
        ("t", t, np.ones(t.shape, dtype=bool)),
        ("prev_fluid", prev_fluid, prev_fluid >= 0),
        ("prev_vaso", prev_vaso, prev_vaso >= 0),
        ("max_prior_fluid", max_prior, max_prior >= 0),
    ):
        env[name] = Value(arr.astype(np.float64)[:, None], known[:, None])
    env.update(_action_env(cand))
    return env


def _max_prior(ctx: RuleContext) -> int:
    if ctx.max_prior_fluid is not None:
        return ctx.max_prior_fluid
    return 0 if ctx.t == 0 else -1  # nothing given before the first decision; unknown later


def _episode_cummax(values: np.ndarray, episode: np.ndarray) -> np.ndarray:
    """Running maximum of ``values`` restarted at each episode (rows grouped by episode)."""
    offset = episode.astype(np.float64) * 1e3  # larger than any level, so episodes never mix
    run = np.maximum.accumulate(values + offset)
    return (run - offset).astype(np.int64)


def _action_env(cand: np.ndarray) -> dict[str, Value]:
    f = cand // N_LEVELS
    v = cand % N_LEVELS
    ones = np.ones(cand.shape, dtype=bool)
    return {
        "fluid": Value(f.astype(np.float64), ones),
        "vaso": Value(v.astype(np.float64), ones),
        "fluid_ml_low": Value(_FLUID_LOW[f], ones),
        "fluid_ml_high": Value(_FLUID_HIGH[f], ones),
        "vaso_dose_low": Value(_VASO_LOW[v], ones),
        "vaso_dose_high": Value(_VASO_HIGH[v], ones),
    }


def _show_values(ctx: RuleContext, rule: CompiledRule) -> str:
    parts = []
    for f in (*rule.spec.features, *rule.spec.optional_features):
        v = ctx.values.get(f)
        parts.append(f"{f} {'missing' if v is None else f'{v:.3g}'}")
    if "prev_vaso" in rule.violation.names or "prev_vaso" in rule.when.names:
        parts.append(f"previous vaso level {ctx.prev_vaso}")
    if "max_prior_fluid" in rule.when.names:
        parts.append(f"highest earlier fluid level {ctx.max_prior_fluid}")
    parts.append(f"t={ctx.t}")
    return ", ".join(parts)


def _act(ctx: RuleContext) -> str:
    return f"(fluid {ctx.fluid}, vaso {ctx.vaso})"


_CACHE: dict[str, RuleSet] = {}


def load_rules(path: str | Path | None = None) -> RuleSet:
    """Load a rule file (default: the packaged ``sepsis_sdk/safety/rules.yaml``) into a :class:`RuleSet`.

    Raises:
        DataError: the file is missing, not YAML, or has an invalid rule (names the file and rule).
    """
    key = "<default>" if path is None else str(Path(path).resolve())
    if path is None and key in _CACHE:
        return _CACHE[key]
    spec, where = read_rule_file(path)
    rs = RuleSet(spec, source=where)
    if path is None:
        _CACHE[key] = rs
    return rs
