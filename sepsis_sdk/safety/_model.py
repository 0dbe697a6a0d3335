"""The rule file's schema (pydantic, frozen) and its loader."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sepsis_sdk.errors import DataError
from sepsis_sdk.safety._expr import Expression, ExpressionError, parse

# Variables describing the proposed action and the treatment history (see rules.yaml's header).
ACTION_VARIABLES = frozenset(
    {"fluid", "vaso", "fluid_ml_low", "fluid_ml_high", "vaso_dose_low", "vaso_dose_high", "t"}
)
HISTORY_VARIABLES = frozenset({"prev_fluid", "prev_vaso", "max_prior_fluid"})


class ZReference(BaseModel):
    """Mean and SD used to map a z-scored column back to clinical units (approximately)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    mean: float
    sd: float = Field(gt=0)
    source: str = ""


class VariableSpec(BaseModel):
    """A clinical variable: its unit and the cohort columns it may be read from (first match wins)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    unit: str
    columns: tuple[str, ...] = Field(min_length=1)
    z_reference: ZReference | None = None


class Definition(BaseModel):
    """A named group of rules (e.g. guideline adherence = neither G1 nor G2 broken)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    rules: tuple[str, ...] = Field(min_length=1)
    meaning: str = ""


class RuleSpec(BaseModel):
    """One rule as written in the YAML file.

    Attributes:
        id: short unique id (``G1``, ``H2``).
        name: a few words.
        kind: ``guideline`` (what should be done) or ``hazard`` (an unsafe action).
        source: the citation the rule comes from.
        description: the rule in words.
        features: clinical variables the rule needs; a cohort without one of them makes the rule not
            applicable.
        optional_features: variables used only when present (through ``missing(x)``).
        when: the state condition that triggers the rule.
        violation: the action condition that breaks it once triggered.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str = Field(min_length=1, pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    name: str
    kind: Literal["guideline", "hazard"]
    source: str = Field(min_length=1)
    description: str = ""
    features: tuple[str, ...] = ()
    optional_features: tuple[str, ...] = ()
    when: str
    violation: str


class RuleFile(BaseModel):
    """The whole YAML document."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    version: int = 1
    variables: dict[str, VariableSpec]
    definitions: dict[str, Definition] = Field(default_factory=dict)
    rules: tuple[RuleSpec, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> RuleFile:
        ids = [r.id for r in self.rules]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"duplicate rule ids {dup}")
        clash = sorted(set(self.variables) & (ACTION_VARIABLES | HISTORY_VARIABLES))
        if clash:
            raise ValueError(f"variables {clash} clash with built-in action/history variables")
        for name, d in self.definitions.items():
            unknown = sorted(set(d.rules) - set(ids))
            if unknown:
                raise ValueError(f"definition {name!r} names unknown rules {unknown}")
        for r in self.rules:
            unknown = sorted((set(r.features) | set(r.optional_features)) - set(self.variables))
            if unknown:
                raise ValueError(f"rule {r.id}: features {unknown} are not declared under `variables`")
        return self


class CompiledRule:
    """A :class:`RuleSpec` with its expressions parsed and checked."""

    def __init__(self, spec: RuleSpec, variables: dict[str, VariableSpec], source: str) -> None:
        self.spec = spec
        allowed = frozenset(variables) | ACTION_VARIABLES | HISTORY_VARIABLES
        try:
            self.when: Expression = parse(spec.when, allowed)
            self.violation: Expression = parse(spec.violation, allowed)
        except ExpressionError as exc:
            raise DataError(f"{source}: rule {spec.id}: {exc}") from None
        used = (self.when.names | self.violation.names) & frozenset(variables)
        undeclared = sorted(used - set(spec.features) - set(spec.optional_features))
        if undeclared:
            raise DataError(f"{source}: rule {spec.id} uses {undeclared} without listing them under features")
        guarded = self.when.missing_names | self.violation.missing_names
        unguarded = sorted(set(spec.optional_features) - guarded)
        if unguarded:
            raise DataError(
                f"{source}: rule {spec.id}: optional features {unguarded} must be tested with missing(...)"
            )

    @property
    def id(self) -> str:
        return self.spec.id


DEFAULT_RULES = "rules.yaml"


def read_rule_file(path: str | Path | None = None) -> tuple[RuleFile, str]:
    """Read and validate a rule file (the packaged one when ``path`` is None)."""
    if path is None:
        text = resources.files("sepsis_sdk.safety").joinpath(DEFAULT_RULES).read_text(encoding="utf-8")
        where = f"sepsis_sdk/safety/{DEFAULT_RULES}"
    else:
        p = Path(path)
        if not p.exists():
            raise DataError(f"{p}: rule file does not exist")
        if p.is_dir():
            raise DataError(f"{p}: is a directory, not a rule file")
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{p}: not a UTF-8 text (YAML) file ({exc.reason} at byte {exc.start})") from None
        where = str(p)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DataError(f"{where}: not valid YAML ({exc})") from None
    try:
        return RuleFile.model_validate(raw), where
    except ValidationError as exc:
        raise DataError(f"{where}: invalid rule file:\n{exc}") from None
