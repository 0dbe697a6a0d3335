"""The rule engine: variables resolved against a cohort schema, single-decision checks, cohort batches."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
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
@dataclass(frozen=True)
class RuleResult:
    """The outcome of one rule on one decision.

    Attributes:
        rule_id: the rule (``G1``).
        applicable: False when the needed values are missing, so the rule cannot be judged.
        violated: True / False when applicable, None otherwise. A rule whose condition does not hold is
            applicable and not violated (``triggered`` is False).
        reason: one line saying why.
        triggered: whether the rule's state condition holds (None when not applicable).
        approximate: True when a value came through an approximate unit mapping.
        kind: ``guideline`` or ``hazard``.
    """

    rule_id: str
    applicable: bool
    violated: bool | None
    reason: str
    triggered: bool | None = None
    approximate: bool = False
    kind: str = "guideline"


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
        sources = resolve_variables(rules.variables, schema, approximate=approximate)
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
    from sepsis_sdk.features import FeatureSpec

    names = tuple(history.feature_names)
    try:
        from sepsis_sdk.sources.icu_sepsis import icu_sepsis_schema

        icu = icu_sepsis_schema()
        if names == tuple(icu.names):
            return icu
    except Exception:  # pragma: no cover - icu-sepsis is a core dependency
        pass
    if not names:
        raise UserError("the history has no feature_names and no schema was given; pass schema=")
    return FeatureSchema(
        name="raw", features=tuple(FeatureSpec(name=n, lower=-1e12, upper=1e12) for n in names)
    )


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

    Use :func:`load_rules` to get one. ``check`` judges a single decision; ``evaluate_cohort`` judges every
    decision of a cohort at once (vectorised over rows and, for stochastic policies, all 25 actions).
    """

    def __init__(self, spec: RuleFile, *, source: str = "<memory>") -> None:
        self.spec = spec
        self.source = source
        self.variables: dict[str, VariableSpec] = dict(spec.variables)
        self.definitions: dict[str, Definition] = dict(spec.definitions)
        self.rules: list[CompiledRule] = [CompiledRule(r, self.variables, source) for r in spec.rules]

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

    # ------------------------------------------------------------------ single decision
    def _context_env(self, context: RuleContext, cand: np.ndarray) -> dict[str, Value]:
        """Variables of one decision (arrays of shape (1, 1)) plus candidate actions ``cand`` (1, K)."""
        env: dict[str, Value] = {}
        for var in self.variables:
            v = context.values.get(var)
            ok = v is not None and v == v
            env[var] = Value(np.array([[float(v) if ok else np.nan]]), np.array([[ok]]))  # type: ignore[arg-type]
        hist = _history_env(
            np.array([context.t]),
            np.array([-1 if context.prev_fluid is None else context.prev_fluid]),
            np.array([-1 if context.prev_vaso is None else context.prev_vaso]),
            np.array([_max_prior(context)]),
        )
        env.update({k: Value(v.values[:, None], v.known[:, None]) for k, v in hist.items()})
        env.update(_action_env(cand))
        return env

    def action_violations(self, context: RuleContext) -> dict[str, np.ndarray | None]:
        """For every rule, which of the 25 actions would break it in this state (one vectorised pass).

        The proposed action in ``context`` is ignored. A rule maps to None when it cannot be judged for
        every action (missing features or values), else to a ``(25,)`` bool array indexed by action.
        """
        env = self._context_env(context, np.arange(N_ACTIONS)[None, :])
        shape = (1, N_ACTIONS)
        out: dict[str, np.ndarray | None] = {}
        for rule in self.rules:
            spec = rule.spec
            if any(f in context.unavailable or f not in context.values for f in spec.features):
                out[spec.id] = None
                continue
            w, v = rule.when.evaluate(env), rule.violation.evaluate(env)
            wk, wv = np.broadcast_to(w.known, shape), np.broadcast_to(w.values, shape)
            vk, vv = np.broadcast_to(v.known, shape), np.broadcast_to(v.values, shape)
            if not (wk & (~wv | vk)).all():
                out[spec.id] = None
                continue
            out[spec.id] = (wk & wv & vk & vv)[0].copy()
        return out

    def check(self, context: RuleContext) -> list[RuleResult]:
        """Judge one decision against every rule (in file order)."""
        env = self._context_env(context, np.array([[context.action.index]]))
        out = []
        for rule in self.rules:
            spec = rule.spec
            missing_cohort = [f for f in spec.features if f in context.unavailable or f not in context.values]
            approx = any(f in context.approximate for f in (*spec.features, *spec.optional_features))
            tag = " [approximate units]" if approx else ""
            if missing_cohort:
                notes = "; ".join(
                    f"{f}: {context.unavailable.get(f, 'not provided')}" for f in missing_cohort
                )
                out.append(
                    RuleResult(
                        spec.id,
                        False,
                        None,
                        f"not applicable: needs {missing_cohort} ({notes})",
                        None,
                        approx,
                        spec.kind,
                    )
                )
                continue
            when = rule.when.evaluate(env)
            viol = rule.violation.evaluate(env)
            wk, wv = (
                bool(np.broadcast_to(when.known, (1, 1))[0, 0]),
                bool(np.broadcast_to(when.values, (1, 1))[0, 0]),
            )
            vk, vv = (
                bool(np.broadcast_to(viol.known, (1, 1))[0, 0]),
                bool(np.broadcast_to(viol.values, (1, 1))[0, 0]),
            )
            shown = _show_values(context, rule)
            if not wk or (wv and not vk):
                gaps = [f for f in (*spec.features,) if context.values.get(f) is None]
                out.append(
                    RuleResult(
                        spec.id,
                        False,
                        None,
                        f"not applicable: missing value(s) {gaps or '(history)'} at this decision{tag}",
                        None,
                        approx,
                        spec.kind,
                    )
                )
            elif not wv:
                out.append(
                    RuleResult(
                        spec.id,
                        True,
                        False,
                        f"not triggered: {spec.when} is false ({shown}){tag}",
                        False,
                        approx,
                        spec.kind,
                    )
                )
            elif vv:
                out.append(
                    RuleResult(
                        spec.id,
                        True,
                        True,
                        f"violated: {spec.when} ({shown}) and the action {_act(context)} matches {spec.violation}{tag}",
                        True,
                        approx,
                        spec.kind,
                    )
                )
            else:
                out.append(
                    RuleResult(
                        spec.id,
                        True,
                        False,
                        f"satisfied: {spec.when} ({shown}) and the action {_act(context)} avoids {spec.violation}{tag}",
                        True,
                        approx,
                        spec.kind,
                    )
                )
        return out

    def violations(self, context: RuleContext) -> list[RuleResult]:
        """Only the violated results of :meth:`check`."""
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
        if actions is None:
            actions = cohort.actions
        acts = np.asarray(actions)
        if acts.ndim == 1:
            if acts.shape[0] != n:
                raise UserError(f"got {acts.shape[0]} actions for a cohort of {n} rows")
            bad = np.flatnonzero((acts < 0) | (acts >= N_ACTIONS) | (acts != np.round(acts)))
            if bad.size:
                raise UserError(f"actions must be indices 0-24; rows {bad[:10].tolist()} are not")
            cand = acts.astype(np.int64)[:, None]
            probs = np.ones((n, 1))
        elif acts.ndim == 2 and acts.shape == (n, N_ACTIONS):
            probs = acts.astype(np.float64)
            if (
                not np.isfinite(probs).all()
                or (probs < -1e-9).any()
                or not np.allclose(probs.sum(1), 1.0, atol=1e-6)
            ):
                raise UserError("action probabilities must be finite, non-negative rows summing to 1")
            cand = np.broadcast_to(np.arange(N_ACTIONS)[None, :], (n, N_ACTIONS))
        else:
            raise UserError(
                f"actions must be ({n},) indices or ({n}, 25) probabilities, got shape {acts.shape}"
            )

        sources = resolve_variables(self.variables, cohort.schema, approximate=approximate)
        x = cohort.features()
        m = cohort.masks()
        names = cohort.schema.names
        env: dict[str, Value] = {}
        for var, src in sources.items():
            if src.available:
                j = names.index(src.column)  # type: ignore[arg-type]
                vals = src.convert(x[:, j])
                known = m[:, j] & np.isfinite(vals)
                env[var] = Value(vals[:, None], known[:, None])
            else:
                env[var] = Value(np.full((n, 1), np.nan), np.zeros((n, 1), dtype=bool))
        rec = cohort.actions
        t = cohort.data["t"].to_numpy(dtype=np.int64)
        ep = cohort.episode_index()
        first = np.r_[True, ep[1:] != ep[:-1]]
        prev = np.r_[-1, rec[:-1]]
        prev[first] = -1
        prev_f = np.where(prev >= 0, prev // N_LEVELS, -1)
        prev_v = np.where(prev >= 0, prev % N_LEVELS, -1)
        # No fluid recorded before an episode's first decision: the highest earlier level is 0 there.
        max_prior = _episode_cummax(np.maximum(prev_f, 0), ep)
        for k, v in _history_env(t, prev_f, prev_v, max_prior).items():
            env[k] = Value(v.values[:, None], v.known[:, None])
        env.update(_action_env(cand))

        R = len(self.rules)
        applicable = np.zeros((R, n), dtype=bool)
        triggered = np.zeros((R, n), dtype=bool)
        viol_by_action = np.zeros((R, n, cand.shape[1]), dtype=bool)
        approx: dict[str, bool] = {}
        not_app: dict[str, str] = {}
        for r, rule in enumerate(self.rules):
            spec = rule.spec
            approx[spec.id] = any(
                sources[f].approximate
                for f in (*spec.features, *spec.optional_features)
                if sources[f].available
            )
            missing = [f for f in spec.features if not sources[f].available]
            if missing:
                not_app[spec.id] = "; ".join(f"{f}: {sources[f].note}" for f in missing)
                continue
            w = rule.when.evaluate(env)
            v = rule.violation.evaluate(env)
            shape = (n, cand.shape[1])
            wk, wv = np.broadcast_to(w.known, shape), np.broadcast_to(w.values, shape)
            vk, vv = np.broadcast_to(v.known, shape), np.broadcast_to(v.values, shape)
            app = wk & (~wv | vk)
            # A decision is applicable when the rule can be judged for every candidate action.
            applicable[r] = app.all(1)
            triggered[r] = applicable[r] & (wk & wv).all(1)
            viol_by_action[r] = app & wk & wv & vk & vv
            viol_by_action[r] &= applicable[r][:, None]
        violated = (viol_by_action * probs[None]).sum(2)
        definitions: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name, d in self.definitions.items():
            idx = [self.ids.index(i) for i in d.rules if i in self.ids]
            app = applicable[idx].any(0)
            anyv = viol_by_action[idx].any(0)
            definitions[name] = (app, (anyv * probs).sum(1))
        return CohortRuleResults(
            rule_ids=self.ids,
            kinds={r.id: r.spec.kind for r in self.rules},
            applicable=applicable,
            triggered=triggered,
            violated=np.clip(violated, 0.0, 1.0),
            definitions=definitions,
            approximate=approx,
            not_applicable=not_app,
            episode=ep,
        )


def _max_prior(ctx: RuleContext) -> int:
    if ctx.max_prior_fluid is not None:
        return ctx.max_prior_fluid
    return 0 if ctx.t == 0 else -1  # nothing given before the first decision; unknown later


def _episode_cummax(values: np.ndarray, episode: np.ndarray) -> np.ndarray:
    """Running maximum of ``values`` restarted at each episode (rows grouped by episode)."""
    offset = episode.astype(np.float64) * 1e3  # larger than any level, so episodes never mix
    run = np.maximum.accumulate(values + offset)
    return (run - offset).astype(np.int64)


def _history_env(
    t: np.ndarray, prev_f: np.ndarray, prev_v: np.ndarray, max_prior: np.ndarray
) -> dict[str, Value]:
    return {
        "t": Value(t.astype(np.float64), np.ones(t.shape, dtype=bool)),
        "prev_fluid": Value(prev_f.astype(np.float64), prev_f >= 0),
        "prev_vaso": Value(prev_v.astype(np.float64), prev_v >= 0),
        "max_prior_fluid": Value(max_prior.astype(np.float64), max_prior >= 0),
    }


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
