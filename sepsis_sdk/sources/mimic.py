"""Loaders for users' own MIMIC extracts: the AI-Clinician MIMICtable and SepsisAgent-style MIMIC-IV files.

MIMIC is credentialed data: the SDK ships none of it. Users bring an extract in one of two layouts
(CSV, optionally gzipped, or Parquet), documented column by column in ``docs/data_mimic.md``:

- :func:`load_mimictable`: the 59-column AI-Clinician ``MIMICtable`` (one row per stay per 4-h bloc).
- :func:`load_mimic_iv`: one row per ``stay_id`` per 4-h ``step`` with the 39 named features, optional
  ``mask__<feature>`` columns, static ``age``, ``gender``, ``charlson_comorbidity_index``, the outcome
  ``mortality_90d``, and the treatment as doses (``fluid_dose``, ``vaso_dose``) or levels
  (``fluid_level``, ``vaso_level``). Files written by :func:`write_mimic_iv` (e.g. a synthetic cohort)
  load back unchanged.

Both validate the file first (:func:`validate_file` collects every problem; the loaders raise the first)
with :class:`~sepsis_sdk.errors.CohortValidationError` naming the file, the column and the rows (0-based
data rows, header excluded, in file order).

Doses become the 5 x 5 action levels either by the published AI-Clinician edges
(``dose_binning="published"``, :data:`~sepsis_sdk.actions.FLUID_EDGES`/``VASO_EDGES``) or by the quartiles
of the non-zero doses of the **training patients** (``dose_binning="quartiles"``); the training patients
are those that ``Cohort.split(seed=split_seed)`` puts in its train part (70 %), so binning never looks at
validation or test patients.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from sepsis_sdk.actions import FLUID_EDGES, VASO_EDGES
from sepsis_sdk.errors import CohortValidationError, UserError
from sepsis_sdk.features import FeatureSchema, mask_column
from sepsis_sdk.sources._mimic_schema import (
    DOSE_COLUMNS,
    ID_COLUMN,
    LEVEL_COLUMNS,
    MIMIC_IV_FEATURES,
    MIMIC_IV_STATIC,
    MIMICTABLE_ACTION_COLUMNS,
    MIMICTABLE_COLUMNS,
    MIMICTABLE_OUTCOMES,
    MIMICTABLE_STATIC,
    MORTALITY_COLUMN,
    SOFA_COLUMN,
    STEP_COLUMN,
    approx_sofa,
    mimic_iv_schema,
    mimictable_schema,
    reference_stats,
)

if TYPE_CHECKING:
    import pandas as pd

    from sepsis_sdk.cohort import Cohort

DoseBinning = Literal["published", "quartiles"]
Format = Literal["mimictable", "mimic-iv", "unknown"]
_PARQUET_SUFFIXES = (".parquet", ".pq")
_MAX_PROBLEMS = 50
# Largest plausible doses: 20 L of fluid in 4 h, 10 ug/kg/min noradrenaline-equivalent (both far beyond use).
_MAX_FLUID = 20_000.0
_MAX_VASO = 10.0

# ------------------------------------------------------------------------------------------ report


@dataclass
class ValidationReport:
    """What :func:`validate_file` found.

    Attributes:
        path: the file.
        format: ``"mimictable"``, ``"mimic-iv"`` or ``"unknown"``.
        n_patients: distinct stays (0 when the file could not be read).
        n_steps: data rows.
        problems: every problem found, each naming the column and rows (at most 50 kept).
    """

    path: str
    format: Format = "unknown"
    n_patients: int = 0
    n_steps: int = 0
    problems: list[CohortValidationError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_if_invalid(self) -> None:
        """Raise the first problem (its message says how many more there are)."""
        if self.problems:
            first = self.problems[0]
            more = len(self.problems) - 1
            problem = first.problem + (f" [and {more} more problem(s); run validate_file()]" if more else "")
            raise CohortValidationError(problem, source=first.source, column=first.column, rows=first.rows)

    def __rich__(self) -> Any:
        from rich.text import Text

        return Text(str(self), style="green" if self.ok else "red")

    def __str__(self) -> str:
        head = f"{self.path}: format {self.format}, {self.n_patients} patients, {self.n_steps} steps"
        if self.ok:
            return head + " - valid"
        lines = [head + f" - {len(self.problems)} problem(s):"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


class _Problems:
    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[CohortValidationError] = []

    def add(
        self, problem: str, column: str | None = None, rows: Sequence[int] | np.ndarray | None = None
    ) -> None:
        if len(self.items) < _MAX_PROBLEMS:
            r = None if rows is None else [int(x) for x in np.asarray(rows).ravel()]
            self.items.append(CohortValidationError(problem, source=self.source, column=column, rows=r))


# ------------------------------------------------------------------------------------------ reading


# Leading bytes of compressed files pandas reads as CSV (it infers the codec from the suffix).
_COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"PK\x03\x04", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")


def _sniff(p: Path) -> Literal["parquet", "csv", "compressed", "json", "binary"]:
    """What a file holds, from its first bytes (not its suffix): the check before a table is read.

    A JSON file (a PatientHistory, a trace) read as CSV would report "a header but no data rows"; a binary
    file would report a decoding error deep in the CSV parser. Both are named for what they are instead.
    """
    with p.open("rb") as fh:
        head = fh.read(4096)
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(_COMPRESSED_MAGIC):
        return "compressed"
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if text[:1] in (b"{", b"["):
        return "json"
    if b"\x00" in head:
        return "binary"
    return "csv"


def _not_a_table(kind: str, src: str) -> CohortValidationError:
    if kind == "json":
        return CohortValidationError(
            "a JSON file, not a CSV or Parquet table (a PatientHistory JSON is read by "
            "`sepsis-sdk recommend --patient`, not by `data validate`)",
            source=src,
        )
    return CohortValidationError("not a text CSV file (binary content) nor a Parquet file", source=src)


def _read_table(path: str | Path) -> pd.DataFrame:
    """Read CSV (optionally compressed) or Parquet into a DataFrame; raise CohortValidationError if unreadable."""
    import pandas as pd

    p = Path(path)
    src = str(p)
    if not p.exists():
        raise CohortValidationError("file does not exist", source=src)
    if p.is_dir():
        raise CohortValidationError("is a directory, not a file", source=src)
    if p.stat().st_size == 0:
        raise CohortValidationError("file is empty (0 bytes)", source=src)
    kind = _sniff(p)
    if kind in ("json", "binary") and p.suffix.lower() not in _PARQUET_SUFFIXES:
        raise _not_a_table(kind, src)
    if kind == "parquet" or p.suffix.lower() in _PARQUET_SUFFIXES:
        try:
            df = pd.read_parquet(p)
        except Exception as exc:
            raise CohortValidationError(
                f"not a readable Parquet file ({type(exc).__name__}: {exc})", source=src
            ) from exc
    else:
        try:
            df = pd.read_csv(p, low_memory=False)
        except pd.errors.EmptyDataError as exc:
            raise CohortValidationError("file has no header and no rows", source=src) from exc
        except UnicodeDecodeError as exc:
            raise CohortValidationError("not a text CSV file (binary content?)", source=src) from exc
        except Exception as exc:
            raise CohortValidationError(
                f"not a readable CSV file ({type(exc).__name__}: {exc})", source=src
            ) from exc
    if len(df) == 0:
        raise CohortValidationError(
            f"file has a header ({len(df.columns)} columns) but no data rows", source=src
        )
    dup = df.columns[df.columns.duplicated()].tolist()
    if dup:
        raise CohortValidationError(f"duplicate column names {dup}", source=src)
    return df


def detect_format(path: str | Path) -> Format:
    """``"mimictable"``, ``"mimic-iv"`` or ``"unknown"``: the layout of a MIMIC file, from its columns only.

    Raises:
        CohortValidationError: the file does not exist or is not readable CSV / Parquet.
    """
    import pandas as pd

    p = Path(path)
    if p.is_dir():
        raise CohortValidationError("is a directory, not a cohort file", source=str(p))
    if not p.is_file():
        raise CohortValidationError("file does not exist", source=str(p))
    kind = _sniff(p)
    if kind in ("json", "binary") and p.suffix.lower() not in _PARQUET_SUFFIXES:
        raise _not_a_table(kind, str(p))
    try:
        if kind == "parquet" or p.suffix.lower() in _PARQUET_SUFFIXES:
            import pyarrow.parquet as pq

            columns = pq.read_schema(p).names
        else:
            columns = list(pd.read_csv(p, nrows=0).columns)
    except Exception as exc:
        raise CohortValidationError(f"not a readable CSV or Parquet file ({exc})", source=str(p)) from exc
    return _detect(columns)


def _detect(columns: Sequence[str]) -> Format:
    cols = set(columns)
    if {"icustayid", "bloc"} <= cols:
        return "mimictable"
    if {ID_COLUMN, STEP_COLUMN} <= cols:
        return "mimic-iv"
    return "unknown"


# ------------------------------------------------------------------------------------------ checks


def _numeric(df: pd.DataFrame, col: str, probs: _Problems) -> np.ndarray:
    """The column as float64; non-numeric entries become NaN and are reported."""
    import pandas as pd
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    s = df[col]
    if is_bool_dtype(s.dtype):
        return s.to_numpy(dtype=np.float64)
    if is_numeric_dtype(s.dtype):
        return s.to_numpy(dtype=np.float64)
    conv = pd.to_numeric(s, errors="coerce")
    bad = np.flatnonzero(conv.isna().to_numpy() & s.notna().to_numpy())
    if bad.size:
        examples = ", ".join(repr(v) for v in s.iloc[bad[:3]].tolist())
        probs.add(f"non-numeric values (e.g. {examples}); expected numbers", col, bad)
    return conv.to_numpy(dtype=np.float64)


def _check_structure(
    ids: np.ndarray, steps: np.ndarray, id_col: str, step_col: str, probs: _Problems
) -> bool:
    """Ids present, steps integer, sorted, unique and without gaps within each patient, patients contiguous."""
    ok = True
    missing_id = np.flatnonzero(_isnull(ids))
    if missing_id.size:
        probs.add("missing patient id", id_col, missing_id)
        ok = False
    bad_step = np.flatnonzero(~np.isfinite(steps) | (steps != np.round(steps)) | (steps < 0))
    if bad_step.size:
        probs.add("step must be a non-negative integer", step_col, bad_step)
        return False
    if not ok:
        return False
    key = np.asarray([str(x) for x in ids], dtype=object)
    same = key[1:] == key[:-1]
    starts = key[np.r_[True, ~same]]
    seen: set[str] = set()
    repeated = [s for s in starts if s in seen or seen.add(s)]  # type: ignore[func-returns-value]
    if repeated:
        first_rows = [int(np.flatnonzero(key == r)[0]) for r in repeated[:10]]
        probs.add(f"a patient's rows are not contiguous (e.g. {repeated[:3]} reappear after other patients)",
                  id_col, first_rows)  # fmt: skip
        ok = False
    dup = np.flatnonzero(same & (steps[1:] == steps[:-1])) + 1
    if dup.size:
        probs.add("duplicate step for the same patient", step_col, dup)
        ok = False
    back = np.flatnonzero(same & (steps[1:] < steps[:-1])) + 1
    if back.size:
        probs.add("time not sorted: step decreases within a patient", step_col, back)
        ok = False
    gap = np.flatnonzero(same & (steps[1:] > steps[:-1] + 1)) + 1
    if gap.size:
        probs.add("gap in steps within a patient (missing 4-h step); fill or split the stay", step_col, gap)
        ok = False
    return ok


def _ids(col: pd.Series) -> np.ndarray:
    """Patient ids; integer-valued numbers (e.g. 30001234.0 after a NaN made the column float) as ints."""
    from pandas.api.types import is_numeric_dtype

    ids = col.to_numpy()
    if is_numeric_dtype(col.dtype) and not col.isna().any():
        num = col.to_numpy(dtype=np.float64)
        if np.isfinite(num).all() and (num == np.round(num)).all():
            return num.astype(np.int64)
    return ids


def _isnull(a: np.ndarray) -> np.ndarray:
    import pandas as pd

    return pd.isna(pd.Series(a)).to_numpy()


def _check_range(x: np.ndarray, col: str, lo: float, hi: float, unit: str, probs: _Problems) -> None:
    bad = np.flatnonzero(np.isfinite(x) & ((x < lo) | (x > hi)))
    inf = np.flatnonzero(np.isinf(x))
    if inf.size:
        probs.add("infinite values", col, inf)
    if bad.size:
        ex = ", ".join(f"{v:g}" for v in x[bad[:3]])
        probs.add(f"values outside the plausible range [{lo:g}, {hi:g}] {unit} (e.g. {ex}); wrong unit?".replace(" ]", "]"),
                  col, bad)  # fmt: skip


def _check_constant(key: np.ndarray, x: np.ndarray, col: str, probs: _Problems) -> None:
    """A per-patient column must not change within a patient."""
    same = key[1:] == key[:-1]
    a, b = x[1:], x[:-1]
    differ = ~((a == b) | (np.isnan(a) & np.isnan(b)))
    bad = np.flatnonzero(same & differ) + 1
    if bad.size:
        probs.add("per-patient value changes within a patient", col, bad)


def _check_binary(x: np.ndarray, col: str, probs: _Problems, *, allow_nan: bool = False) -> None:
    bad = np.flatnonzero(~np.isin(x, (0.0, 1.0)) & ~(allow_nan & np.isnan(x)))
    if bad.size:
        probs.add("must be 0 or 1", col, bad)


def _check_doses(x: np.ndarray, col: str, unit: str, upper: float, probs: _Problems) -> None:
    nan = np.flatnonzero(np.isnan(x))
    if nan.size:
        probs.add(f"missing dose (write 0 when none was given) [{unit}]", col, nan)
    neg = np.flatnonzero(x < 0)
    if neg.size:
        probs.add(f"negative dose [{unit}]", col, neg)
    high = np.flatnonzero(np.isfinite(x) & (x > upper)) if np.isfinite(upper) else np.array([], dtype=int)
    inf = np.flatnonzero(np.isinf(x) & (x > 0))
    if high.size or inf.size:
        rows = np.union1d(high, inf)
        probs.add(
            f"dose above the plausible maximum {upper:g} {unit} (e.g. {x[rows[0]]:g}); wrong unit?", col, rows
        )


def _check_levels(x: np.ndarray, col: str, probs: _Problems) -> None:
    bad = np.flatnonzero(~np.isin(x, (0.0, 1.0, 2.0, 3.0, 4.0)))
    if bad.size:
        ex = ", ".join(f"{v:g}" for v in x[bad[:3]])
        probs.add(f"action level must be an integer 0-4 (got e.g. {ex})", col, bad)


def _gender(df: pd.DataFrame, probs: _Problems) -> np.ndarray:
    from pandas.api.types import is_numeric_dtype

    s = df["gender"]
    if not is_numeric_dtype(s.dtype):
        mapped = s.map(
            lambda v: {"m": 1.0, "male": 1.0, "f": 0.0, "female": 0.0}.get(str(v).strip().lower(), v)
        )
        df = df.assign(gender=mapped)
    g = _numeric(df, "gender", probs)
    _check_binary(g, "gender", probs)
    return g


# ------------------------------------------------------------------------------------------ MIMIC-IV


def _validate_mimic_iv(df: pd.DataFrame, src: str, probs: _Problems) -> dict[str, Any] | None:
    cols = set(df.columns)
    required = [ID_COLUMN, STEP_COLUMN, *MIMIC_IV_FEATURES, *MIMIC_IV_STATIC, MORTALITY_COLUMN]
    missing = [c for c in required if c not in cols]
    has_doses = all(c in cols for c in DOSE_COLUMNS)
    has_levels = all(c in cols for c in LEVEL_COLUMNS)
    if not (has_doses or has_levels):
        partial = [c for c in (*DOSE_COLUMNS, *LEVEL_COLUMNS) if c in cols]
        missing.append(f"{DOSE_COLUMNS[0]}+{DOSE_COLUMNS[1]} or {LEVEL_COLUMNS[0]}+{LEVEL_COLUMNS[1]}"
                       + (f" (found only {partial})" if partial else ""))  # fmt: skip
    if missing:
        probs.add(f"missing required columns {missing}")
        return None
    steps = _numeric(df, STEP_COLUMN, probs)
    ids = _ids(df[ID_COLUMN])
    structure_ok = _check_structure(ids, steps, ID_COLUMN, STEP_COLUMN, probs)
    key = np.asarray([str(x) for x in ids], dtype=object)
    schema = mimic_iv_schema()
    values: dict[str, np.ndarray] = {}
    masks: dict[str, np.ndarray] = {}
    for spec in schema:
        x = _numeric(df, spec.name, probs)
        mc = mask_column(spec.name)
        if mc in cols:
            m = _numeric(df, mc, probs)
            _check_binary(m, mc, probs)
            m = m == 1.0
            unobs = np.flatnonzero(m & np.isnan(x))
            if unobs.size:
                probs.add(f"marked observed ({mc} = 1) but the value is missing", spec.name, unobs)
        else:
            m = ~np.isnan(x)
        _check_range(x, spec.name, spec.lower, spec.upper, spec.unit, probs)
        values[spec.name] = x
        masks[spec.name] = m
    static = {"gender": _gender(df, probs)}
    for c in ("age", "charlson_comorbidity_index"):
        static[c] = _numeric(df, c, probs)
    _check_range(static["age"], "age", 14.0, 120.0, "years", probs)
    _check_range(
        static["charlson_comorbidity_index"], "charlson_comorbidity_index", 0.0, 40.0, "points", probs
    )
    for c in MIMIC_IV_STATIC:
        nan = np.flatnonzero(np.isnan(static[c]))
        if nan.size:
            probs.add("missing static value", c, nan)
        _check_constant(key, static[c], c, probs)
    mort = _numeric(df, MORTALITY_COLUMN, probs)
    _check_binary(mort, MORTALITY_COLUMN, probs)
    _check_constant(key, mort, MORTALITY_COLUMN, probs)
    out: dict[str, Any] = {"steps": steps, "key": key, "values": values, "masks": masks, "static": static,
                           "mortality": mort, "structure_ok": structure_ok}  # fmt: skip
    if has_doses:
        fl, vs = (_numeric(df, c, probs) for c in DOSE_COLUMNS)
        _check_doses(fl, DOSE_COLUMNS[0], "mL/4h", _MAX_FLUID, probs)
        _check_doses(vs, DOSE_COLUMNS[1], "ug/kg/min", _MAX_VASO, probs)
        out["doses"] = (fl, vs)
    if has_levels:
        fl, vs = (_numeric(df, c, probs) for c in LEVEL_COLUMNS)
        for x, c in ((fl, LEVEL_COLUMNS[0]), (vs, LEVEL_COLUMNS[1])):
            _check_levels(x, c, probs)
        out["levels"] = (fl, vs)
    if SOFA_COLUMN in cols:
        sofa = _numeric(df, SOFA_COLUMN, probs)
        _check_range(sofa, SOFA_COLUMN, 0.0, 24.0, "points", probs)
        out["sofa"] = sofa
    if "synthetic" in cols:
        syn = _numeric(df, "synthetic", probs)
        _check_binary(syn, "synthetic", probs)
        out["synthetic"] = bool(np.nanmax(syn) == 1.0) if len(syn) else False
    return out


def load_mimic_iv(
    path: str | Path,
    *,
    dose_binning: DoseBinning = "published",
    split_seed: int = 0,
) -> Cohort:
    """Load a SepsisAgent-style MIMIC-IV episode file (CSV or Parquet) into a validated cohort.

    Args:
        path: the file; its layout is documented in ``docs/data_mimic.md`` and in the module docstring.
        dose_binning: ``"published"`` AI-Clinician edges, or ``"quartiles"`` of the non-zero doses of the
            training patients (ignored when the file gives levels instead of doses).
        split_seed: seed of the patient-level split whose train part the quartiles are learned on; use
            the same seed with :meth:`Cohort.split` afterwards.

    Returns:
        A :class:`~sepsis_sdk.Cohort` with the 39 features, masks, static columns, ``action``, ``sofa``
        (from the file, else :func:`approx_sofa`), the Raghu-style ``reward`` and ``outcome``
        (1 - ``mortality_90d``). ``t`` counts the patient's rows from 0; the file's step is kept as ``step``.

    Raises:
        CohortValidationError: naming the file, column and rows of the first problem found.
    """
    import pandas as pd

    _check_binning(dose_binning)
    src = str(path)
    df = _read_table(path)
    probs = _Problems(src)
    if _detect(df.columns) == "mimictable":
        raise CohortValidationError("this is an AI-Clinician MIMICtable (icustayid, bloc); use load_mimictable",
                                    source=src)  # fmt: skip
    parsed = _validate_mimic_iv(df, src, probs)
    _raise(probs)
    assert parsed is not None
    key = parsed["key"]
    t = _rank_within(key)
    cols: dict[str, Any] = {"patient_id": key, "t": t, STEP_COLUMN: parsed["steps"].astype(np.int64)}
    for name in MIMIC_IV_FEATURES:
        cols[name] = parsed["values"][name]
    for name in MIMIC_IV_FEATURES:
        cols[mask_column(name)] = parsed["masks"][name]
    cols.update(parsed["static"])
    meta: dict[str, Any] = {"file": src, "format": "mimic-iv", "split_seed": split_seed}
    if "doses" in parsed:
        fl_dose, vs_dose = parsed["doses"]
        edges = _edges(key, fl_dose, vs_dose, dose_binning, split_seed, src)
        fl_lvl, vs_lvl = _bin(fl_dose, edges[0]), _bin(vs_dose, edges[1])
        cols.update(fluid_dose=fl_dose, vaso_dose=vs_dose)
        meta.update(dose_binning=dose_binning, dose_edges={"fluid": list(edges[0]), "vaso": list(edges[1])})
    else:
        fl_lvl, vs_lvl = (x.astype(np.int64) for x in parsed["levels"])
        meta.update(dose_binning="levels given in file")
    if "sofa" in parsed:
        sofa = parsed["sofa"]
        meta["sofa"] = "from file"
    else:
        sofa = approx_sofa(
            parsed["values"],
            vaso_dose=cols.get("vaso_dose"),
            vaso_level=None if "vaso_dose" in cols else vs_lvl,
        )
        meta["sofa"] = "approximate (sepsis_sdk.sources._mimic_schema.approx_sofa)"
    cols[SOFA_COLUMN] = sofa
    cols["action"] = (5 * fl_lvl + vs_lvl).astype(np.int64)
    cols["reward"] = np.zeros(len(key))
    cols["done"] = np.r_[key[1:] != key[:-1], True]
    cols[MORTALITY_COLUMN] = parsed["mortality"].astype(np.int64)
    cols["outcome"] = (1 - parsed["mortality"]).astype(np.int64)
    synthetic = bool(parsed.get("synthetic", False))
    meta["synthetic"] = synthetic
    return _finish(pd.DataFrame(cols), mimic_iv_schema(synthetic=synthetic),
                   "synthetic-mimic-iv" if synthetic else src, meta, "lactate")  # fmt: skip


# ------------------------------------------------------------------------------------------ MIMICtable


def _validate_mimictable(df: pd.DataFrame, src: str, probs: _Problems) -> dict[str, Any] | None:
    missing = [c for c in MIMICTABLE_COLUMNS if c not in df.columns]
    if missing:
        probs.add(f"missing required columns {missing} (an AI-Clinician MIMICtable has 59)")
        return None
    steps = _numeric(df, "bloc", probs)
    ids = _ids(df["icustayid"])
    structure_ok = _check_structure(ids, steps, "icustayid", "bloc", probs)
    key = np.asarray([str(x) for x in ids], dtype=object)
    _numeric(df, "charttime", probs)
    schema = mimictable_schema()
    values = {}
    for spec in schema:
        x = _numeric(df, spec.name, probs)
        _check_range(x, spec.name, spec.lower, spec.upper, spec.unit, probs)
        values[spec.name] = x
    _check_binary(values["mechvent"], "mechvent", probs, allow_nan=True)
    static = {"gender": _numeric(df, "gender", probs), "age": _numeric(df, "age", probs),
              "elixhauser": _numeric(df, "elixhauser", probs), "re_admission": _numeric(df, "re_admission", probs)}  # fmt: skip
    _check_binary(static["gender"], "gender", probs)
    _check_binary(static["re_admission"], "re_admission", probs)
    age = static["age"]
    in_days = bool(np.nanmedian(age) > 150) if np.isfinite(age).any() else False
    age_years = age / 365.25 if in_days else age
    _check_range(age_years, "age", 14.0, 120.0, "years" if not in_days else "years (file gives days)", probs)
    _check_range(static["elixhauser"], "elixhauser", 0.0, 60.0, "points", probs)
    for c in MIMICTABLE_STATIC:
        _check_constant(key, static[c], c, probs)
    outcomes = {c: _numeric(df, c, probs) for c in MIMICTABLE_OUTCOMES}
    for c in ("died_in_hosp", "died_within_48h_of_out_time", "mortality_90d"):
        _check_binary(outcomes[c], c, probs)
        _check_constant(key, outcomes[c], c, probs)
    doses = {c: _numeric(df, c, probs) for c in MIMICTABLE_ACTION_COLUMNS}
    _check_doses(doses["input_4hourly"], "input_4hourly", "mL/4h", _MAX_FLUID, probs)
    _check_doses(doses["max_dose_vaso"], "max_dose_vaso", "ug/kg/min", _MAX_VASO, probs)
    _check_doses(doses["median_dose_vaso"], "median_dose_vaso", "ug/kg/min", _MAX_VASO, probs)
    return {"steps": steps, "key": key, "values": values, "static": static, "age_years": age_years,
            "age_in_days": in_days, "outcomes": outcomes, "doses": doses, "structure_ok": structure_ok,
            "charttime": df["charttime"].to_numpy()}  # fmt: skip


def load_mimictable(
    path: str | Path,
    *,
    dose_binning: DoseBinning = "published",
    split_seed: int = 0,
) -> Cohort:
    """Load an AI-Clinician MIMICtable (59 columns; CSV or Parquet) into a validated cohort.

    The 45 clinical columns are the dynamic features (raw clinical units; NaN = missing, masks from
    that); ``gender``, ``age`` (converted from days to years when the file gives days, as AI-Clinician
    extracts do), ``elixhauser`` and ``re_admission`` are static. The action is
    ``input_4hourly`` (mL/4h) and ``max_dose_vaso`` (ug/kg/min), binned as ``dose_binning`` says;
    ``median_dose_vaso`` and the outcome columns are kept as extra columns. The reward is the Raghu-style
    reward on ``SOFA`` and ``Arterial_lactate``; ``outcome`` is 1 - ``mortality_90d``.

    Args:
        path: the file.
        dose_binning: ``"published"`` AI-Clinician edges or ``"quartiles"`` learned on the train split.
        split_seed: seed of the patient-level split used for ``"quartiles"``.

    Raises:
        CohortValidationError: naming the file, column and rows of the first problem found.
    """
    import pandas as pd

    _check_binning(dose_binning)
    src = str(path)
    df = _read_table(path)
    probs = _Problems(src)
    if _detect(df.columns) == "mimic-iv":
        raise CohortValidationError(
            "this is a MIMIC-IV episode file (stay_id, step); use load_mimic_iv", source=src
        )
    parsed = _validate_mimictable(df, src, probs)
    _raise(probs)
    assert parsed is not None
    key = parsed["key"]
    schema = mimictable_schema()
    cols: dict[str, Any] = {"patient_id": key, "t": _rank_within(key), "bloc": parsed["steps"].astype(np.int64),
                            "charttime": parsed["charttime"]}  # fmt: skip
    for name in schema.names:
        cols[name] = parsed["values"][name]
    for name in schema.names:
        cols[mask_column(name)] = ~np.isnan(parsed["values"][name])
    st = dict(parsed["static"])
    st["age"] = parsed["age_years"]
    cols.update(st)
    fl_dose, vs_dose = parsed["doses"]["input_4hourly"], parsed["doses"]["max_dose_vaso"]
    edges = _edges(key, fl_dose, vs_dose, dose_binning, split_seed, src)
    cols.update(fluid_dose=fl_dose, vaso_dose=vs_dose, median_dose_vaso=parsed["doses"]["median_dose_vaso"])
    cols["action"] = (5 * _bin(fl_dose, edges[0]) + _bin(vs_dose, edges[1])).astype(np.int64)
    cols["reward"] = np.zeros(len(key))
    cols["done"] = np.r_[key[1:] != key[:-1], True]
    for c, v in parsed["outcomes"].items():
        cols[c] = v
    cols["outcome"] = (1 - parsed["outcomes"]["mortality_90d"]).astype(np.int64)
    meta = {"file": src, "format": "mimictable", "synthetic": False, "dose_binning": dose_binning,
            "dose_edges": {"fluid": list(edges[0]), "vaso": list(edges[1])}, "split_seed": split_seed,
            "age_converted_from_days": parsed["age_in_days"]}  # fmt: skip
    return _finish(pd.DataFrame(cols), schema, src, meta, "Arterial_lactate", sofa="SOFA")


# ------------------------------------------------------------------------------------------ shared


def _check_binning(dose_binning: str) -> None:
    if dose_binning not in ("published", "quartiles"):
        raise UserError(f"dose_binning must be 'published' or 'quartiles', got {dose_binning!r}")


def _raise(probs: _Problems) -> None:
    ValidationReport(path=probs.source, problems=probs.items).raise_if_invalid()


def _rank_within(key: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each run of equal keys."""
    start = np.r_[True, key[1:] != key[:-1]]
    idx = np.arange(len(key))
    first = np.maximum.accumulate(np.where(start, idx, 0))
    return (idx - first).astype(np.int64)


def train_patient_ids(patient_ids: Sequence[Any], split_seed: int = 0) -> list[Any]:
    """The patients :meth:`Cohort.split` (default fractions 0.7/0.15/0.15, ``seed=split_seed``) trains on.

    The rule is the cohort's own: ids sorted as strings, permuted by ``numpy.random.default_rng(seed)``,
    the first 70 % (rounded) are the training patients.
    """
    import pandas as pd

    from sepsis_sdk.cohort import Cohort

    ids = list(dict.fromkeys(patient_ids))
    frame = pd.DataFrame({"patient_id": ids, "t": 0, "action": 0, "reward": 0.0, "done": True})
    probe = Cohort(frame, FeatureSchema(name="ids", features=()), validate=False)
    return probe.split(seed=split_seed).train.patient_ids.tolist()


def _edges(key, fluid, vaso, binning, split_seed, src) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if binning == "published":
        return tuple(FLUID_EDGES), tuple(VASO_EDGES)
    train = np.isin(key, np.asarray(train_patient_ids(key, split_seed), dtype=object))
    out = []
    for name, x in (("fluid", fluid), ("vaso", vaso)):
        nz = x[train & (x > 0)]
        if nz.size < 4:
            raise CohortValidationError(
                f"dose_binning='quartiles' needs at least 4 non-zero {name} doses among the training patients, "
                f"found {nz.size}; use dose_binning='published'",
                source=src,
                column=DOSE_COLUMNS[0] if name == "fluid" else DOSE_COLUMNS[1],
            )
        out.append(tuple(float(q) for q in np.quantile(nz, (0.25, 0.5, 0.75))))
    return out[0], out[1]


def _bin(dose: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Vectorised :func:`sepsis_sdk.actions.bin_dose`: 0 for none, else 1 + number of edges below."""
    d = np.nan_to_num(np.asarray(dose, dtype=np.float64))
    return np.where(d > 0, 1 + np.searchsorted(np.asarray(edges), d, side="left"), 0).astype(np.int64)


def _finish(
    df: pd.DataFrame, schema: FeatureSchema, source: str, meta: dict, lactate: str, sofa: str = SOFA_COLUMN
) -> Cohort:
    from sepsis_sdk.cohort import Cohort
    from sepsis_sdk.rewards import RaghuReward

    cohort = Cohort(df, schema, source=source, meta=meta)
    if sofa in df.columns:
        missing = np.flatnonzero(df[sofa].isna().to_numpy())
        if missing.size:  # the Raghu reward differences SOFA: one gap makes two rewards NaN
            raise CohortValidationError(
                "SOFA is missing; the Raghu-style reward needs it on every row",
                source=source,
                column=sofa,
                rows=missing.tolist(),
            )
    out = RaghuReward(sofa=sofa, lactate=lactate).relabel(cohort)
    out.meta.update(meta)
    out.meta["reward"] = "raghu"
    # The reward is computed here, not read: check it like a read one (a missing SOFA would make it NaN).
    out.validate()
    return out


def validate_file(path: str | Path) -> ValidationReport:
    """Check a MIMIC file without loading it into a cohort: format, size and **every** problem found.

    Never raises for a bad file: problems (unreadable, empty, missing columns, wrong types, values out of
    plausible range, unsorted or duplicate steps, bad action levels, ...) are collected in the report, each
    a :class:`CohortValidationError` naming the file, column and rows.

    Example:
        >>> report = validate_file("mimic_iv_episodes.csv")   # doctest: +SKIP
        >>> report.ok, report.format, report.n_patients
    """
    src = str(path)
    report = ValidationReport(path=src)
    try:
        df = _read_table(path)
    except CohortValidationError as exc:
        report.problems.append(exc)
        return report
    fmt = _detect(df.columns)
    report.format = fmt
    report.n_steps = len(df)
    probs = _Problems(src)
    if fmt == "unknown":
        probs.add(f"unrecognised layout: need columns icustayid + bloc (AI-Clinician MIMICtable) or {ID_COLUMN} + "
                  f"{STEP_COLUMN} (MIMIC-IV episodes); found {list(df.columns)[:8]}...")  # fmt: skip
    else:
        id_col = "icustayid" if fmt == "mimictable" else ID_COLUMN
        report.n_patients = int(df[id_col].astype(str).nunique())
        if fmt == "mimictable":
            _validate_mimictable(df, src, probs)
        else:
            _validate_mimic_iv(df, src, probs)
    report.problems.extend(probs.items)
    return report


def write_mimic_iv(cohort: Cohort, path: str | Path, *, levels: bool = False) -> Path:
    """Write a cohort with the 39 MIMIC-IV features in the documented file layout (CSV or Parquet by suffix).

    Doses are written when the cohort has ``fluid_dose``/``vaso_dose`` and ``levels`` is False, otherwise
    the levels of ``action``. Synthetic cohorts get a ``synthetic`` column of 1s, so they stay labelled
    after a round trip through :func:`load_mimic_iv`.
    """
    import pandas as pd

    df = cohort.data
    missing = [c for c in MIMIC_IV_FEATURES if c not in df.columns]
    if missing:
        raise UserError(f"cohort {cohort.source!r} lacks MIMIC-IV features {missing[:5]}")
    out = pd.DataFrame({ID_COLUMN: df["patient_id"].to_numpy(), STEP_COLUMN: df["t"].to_numpy()})
    for f in MIMIC_IV_FEATURES:
        out[f] = df[f].to_numpy()
    for f in MIMIC_IV_FEATURES:
        out[mask_column(f)] = cohort.masks()[:, cohort.schema.index(f)].astype(np.int8)
    for c in MIMIC_IV_STATIC:
        out[c] = df[c].to_numpy() if c in df.columns else np.nan
    if MORTALITY_COLUMN in df.columns:
        out[MORTALITY_COLUMN] = df[MORTALITY_COLUMN].to_numpy()
    else:
        out[MORTALITY_COLUMN] = 1 - df["outcome"].to_numpy()
    if not levels and all(c in df.columns for c in DOSE_COLUMNS):
        for c in DOSE_COLUMNS:
            out[c] = df[c].to_numpy()
    else:
        a = df["action"].to_numpy()
        out[LEVEL_COLUMNS[0]], out[LEVEL_COLUMNS[1]] = a // 5, a % 5
    if cohort.synthetic:
        out["synthetic"] = 1
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.suffix.lower() in _PARQUET_SUFFIXES:
        out.to_parquet(p, index=False)
    else:
        out.to_csv(p, index=False)
    return p


# Public re-exports of the schema helpers (their home is the private _mimic_schema module).
__all__ = [
    "MIMICTABLE_COLUMNS",
    "MIMIC_IV_FEATURES",
    "ValidationReport",
    "approx_sofa",
    "detect_format",
    "load_mimic_iv",
    "load_mimictable",
    "mimic_iv_schema",
    "mimictable_schema",
    "reference_stats",
    "train_patient_ids",
    "validate_file",
    "write_mimic_iv",
]
