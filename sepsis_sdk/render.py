"""Patients as text: the compact renderings prompts, tools and training data use (small models read them too).

This is a core module (no agent, graph or LLM dependency): the tools, the graphs, the policies, the training
data builders and the CLI all render a patient through it, so a prompt shows the same thing everywhere.

Example:
    >>> from sepsis_sdk.render import action_label, short_action
    >>> short_action(16)
    '[fluid 3, vaso 1]'
    >>> action_label(0)
    'fluid 0 (none), vaso 0 (none)'
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

from sepsis_sdk.actions import FLUID_BINS, VASO_BINS, Action
from sepsis_sdk.features import FeatureSchema, FeatureSpec
from sepsis_sdk.types import PatientHistory

# Key vitals and labs, by clinical role; the first alias present in a schema is used (exact, then
# case-insensitive). ICU-Sepsis has both "SOFA" (z-score) and "sofa" (points): points win.
KEY_FEATURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("MAP", ("MeanBP", "meanbp", "map", "mbp")),
    ("lactate", ("Arterial_lactate", "lactate")),
    ("heart rate", ("HR", "heart_rate")),
    ("systolic BP", ("SysBP", "sysbp")),
    ("SpO2", ("SpO2", "spo2")),
    ("SOFA", ("sofa", "SOFA")),
    ("urine output", ("output_4hourly", "urine_output")),
    ("creatinine", ("Creatinine", "creatinine")),
    ("fluid balance", ("cumulated_balance",)),
)


def key_features(schema: FeatureSchema | Sequence[str]) -> list[tuple[str, str]]:
    """``(role, feature name)`` of the key features present in ``schema``."""
    names = list(schema.names if isinstance(schema, FeatureSchema) else schema)
    lower = {n.lower(): n for n in reversed(names)}
    found: list[tuple[str, str]] = []
    used: set[str] = set()
    for role, aliases in KEY_FEATURES:
        hit = next((a for a in aliases if a in names and a not in used), None)
        if hit is None:
            hit = next(
                (lower[a.lower()] for a in aliases if a.lower() in lower and lower[a.lower()] not in used),
                None,
            )
        if hit is not None:
            found.append((role, hit))
            used.add(hit)
    return found


@functools.lru_cache(maxsize=32)
def _generic_schema(names: tuple[str, ...]) -> FeatureSchema:
    feats = tuple(FeatureSpec(name=n, lower=-1e12, upper=1e12) for n in names)
    return FeatureSchema(name="inferred", features=feats)


def infer_schema(history: PatientHistory) -> FeatureSchema:
    """The schema of a history: ICU-Sepsis when its feature names match, else raw values, unnamed units."""
    names = history.feature_names or tuple(f"x{i}" for i in range(len(history.current.values)))
    try:
        from sepsis_sdk.sources.icu_sepsis import FEATURE_NAMES, SOFA_COLUMN

        if tuple(names) == (*FEATURE_NAMES, SOFA_COLUMN):
            from sepsis_sdk.sources.icu_sepsis import icu_sepsis_schema

            return icu_sepsis_schema()
    except ImportError:  # pragma: no cover
        pass
    return _generic_schema(tuple(names))


def schema_for(
    history: PatientHistory, schema: FeatureSchema | None = None, world_model: Any = None
) -> FeatureSchema:
    """The schema describing ``history``: ``schema`` if given, else the world model's when its feature
    names are the history's, else :func:`infer_schema`."""
    if schema is not None:
        return schema
    wm_schema = getattr(world_model, "schema", None) if world_model is not None else None
    if wm_schema is not None and (
        not history.feature_names or tuple(wm_schema.names) == tuple(history.feature_names)
    ):
        return wm_schema
    return infer_schema(history)


def action_label(a: int | Action) -> str:
    """The action with its levels and their dose ranges: ``fluid 3 (180-530 mL/4h), vaso 1 (0-0.08 ug/kg/min)``."""
    act = a if isinstance(a, Action) else Action.from_index(int(a))
    return f"fluid {act.fluid} ({FLUID_BINS[act.fluid].label()}), vaso {act.vaso} ({VASO_BINS[act.vaso].label()})"


def short_action(a: int | Action) -> str:
    """The action as ``[fluid F, vaso V]`` (fluid-major, as everywhere in the SDK)."""
    act = a if isinstance(a, Action) else Action.from_index(int(a))
    return f"[fluid {act.fluid}, vaso {act.vaso}]"


def _trend(spec: FeatureSpec, values: list[float]) -> str:
    vals = [v for v in values if v == v]
    if len(vals) < 2:
        return ""
    # z-scores: a quarter SD; clinical units: 5 % of the first value (a lactate of 2.5 -> 3.4 is rising).
    thr = 0.25 if spec.transform in ("z", "zlog") else 0.05 * abs(vals[0]) + 1e-9
    d = vals[-1] - vals[0]
    if abs(d) <= thr:
        return "stable"
    return "rising" if d > 0 else "falling"


def history_trends(history: PatientHistory, schema: FeatureSchema, n_steps: int = 6) -> list[dict[str, Any]]:
    """Per key feature: the last ``n_steps`` stored values, their display strings and the trend."""
    obs = history.observations[-max(1, n_steps) :]
    names = list(history.feature_names) or schema.names
    masks = [o.observed for o in obs]  # a property that builds a tuple: read once per observation
    out = []
    for role, name in key_features(schema):
        if name not in names:
            continue
        j = names.index(name)
        spec = schema[name]
        vals = [o.values[j] if m[j] else math.nan for o, m in zip(obs, masks, strict=True)]
        out.append(
            {
                "role": role,
                "feature": name,
                "t": [o.t for o in obs],
                "values": [None if v != v else float(v) for v in vals],
                "display": [spec.to_display(v) for v in vals],
                "trend": _trend(spec, vals),
            }
        )
    return out


def render_history(history: PatientHistory, schema: FeatureSchema, n_steps: int = 6) -> str:
    """A compact prompt text: key values over the last steps, treatments given, current decision time."""
    lines = [f"Patient {history.patient_id}, decision at 4-hour step t={history.t}."]
    if schema.name == "icu-sepsis":
        lines.append("Values are z-scores against the cohort (SD), SOFA in points.")
    trends = history_trends(history, schema, n_steps)
    if trends:
        lines.append("Recent values, oldest to newest:")
        for tr in trends:
            trend = f" ({tr['trend']})" if tr["trend"] else ""
            lines.append(f"- {tr['role']} [{tr['feature']}]: {', '.join(tr['display'])}{trend}")
    else:
        cur = history.current
        names = list(history.feature_names) or schema.names
        shown = [
            f"{n}={schema[n].to_display(v) if n in schema.names else v}"
            for n, v in zip(names[:12], cur.values, strict=False)
        ]
        lines.append("Current values: " + ", ".join(shown))
    acts = history.actions[-max(1, n_steps) :]
    if acts:
        lines.append("Treatments given (oldest to newest): " + "; ".join(short_action(a) for a in acts) + ".")
    else:
        lines.append("No treatment given yet.")
    return "\n".join(lines)


__all__ = [
    "KEY_FEATURES",
    "action_label",
    "history_trends",
    "infer_schema",
    "key_features",
    "render_history",
    "schema_for",
    "short_action",
]
