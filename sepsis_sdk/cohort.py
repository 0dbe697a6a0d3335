"""A cohort: many patients' episodes in one columnar table, with its feature schema.

Layout of :attr:`Cohort.data` (one row per patient per 4-hour decision):

=================  ======================================================================
column             meaning
=================  ======================================================================
``patient_id``     string id; all of one patient's rows are contiguous and sorted by ``t``
``t``              decision index within the episode, strictly increasing
<features>         one float column per schema feature (stored space, NaN = missing)
``mask__<f>``      optional bool, True where feature ``f`` was observed
<static>           optional per-patient constants (schema.static)
``action``         canonical action index ``5*fluid + vaso`` (0-24)
``reward``         reward received after this step's action
``done``           True on the episode's last row
``outcome``        1 survived / 0 died (per patient; -1 unknown)
``state_id``       ICU-Sepsis hidden state, kept for ground truth only (never a model input)
``behaviour_prob`` optional, the behaviour policy's probability of ``action`` when known
=================  ======================================================================

Cohorts save to and load from Parquet (schema and metadata travel in the file) and split
deterministically **by patient** (:meth:`Cohort.split`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sepsis_sdk.errors import CohortValidationError, UserError
from sepsis_sdk.features import FeatureSchema, mask_column
from sepsis_sdk.types import Episode, Observation, PatientHistory, Step

if TYPE_CHECKING:
    import pandas as pd

REQUIRED = ("patient_id", "t", "action", "reward", "done")
_META_KEY = b"sepsis_sdk"

MAX_ABS_REWARD = 1e6
"""Largest reward magnitude :meth:`Cohort.validate` accepts.

The built-in rewards stay within +-16 (survival 0/1; Raghu-style +-15 terminal plus small per-step terms);
a user's reward scaled by 1000 still fits. Anything beyond 1e6 is a sentinel or unit mistake (-1e300,
9999999) that would dominate every off-policy estimate, so it is rejected, as are NaN and infinities."""

MAX_ABS_FEATURE = 1e12
"""Largest feature magnitude :meth:`Cohort.validate` accepts (NaN, meaning missing, is allowed).

Far beyond any measurement in any clinical unit (a cumulative balance of 1e12 mL is a billion litres) and
far inside float32 (3.4e38), whose overflow turned inputs of 1e100 into NaN predictions."""


@dataclass(frozen=True)
class Transitions:
    """Flat arrays of one-step transitions ``(s, a, r, s', done)``, for learning and OPE.

    ``next_obs`` of a terminal row is a copy of ``obs`` and must be ignored (``done`` is True).
    """

    obs: np.ndarray
    mask: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_obs: np.ndarray
    next_mask: np.ndarray
    done: np.ndarray
    episode: np.ndarray
    t: np.ndarray

    def __len__(self) -> int:
        return len(self.action)


class Cohort:
    """Patients' episodes as one table (see module docstring for the columns).

    Args:
        data: the table.
        schema: the dynamic features, in model order.
        source: a short name of where the data came from (``"icu-sepsis"``, a file path, ...).
        meta: free metadata saved with the cohort (e.g. the sampling seed).
        validate: check the table's structure (default True).
    """

    def __init__(
        self,
        data: pd.DataFrame,
        schema: FeatureSchema,
        *,
        source: str = "<memory>",
        meta: dict[str, Any] | None = None,
        validate: bool = True,
    ) -> None:
        self.data = data
        self.schema = schema
        self.source = source
        self.meta = dict(meta or {})
        if validate:
            self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Check columns, types, values, action range and time order; raise :class:`CohortValidationError`.

        Values: rewards must be finite with ``|r| <= MAX_ABS_REWARD`` (1e6); features and static columns
        may be NaN (missing) but not infinite nor beyond ``MAX_ABS_FEATURE`` (1e12); ``t`` must be
        integers; ``outcome`` (when present) 1, 0 or -1; ``behaviour_prob`` (when present) in (0, 1] or NaN.
        The error names the source, the column and the first offending rows.
        """
        from pandas.api.types import is_bool_dtype, is_integer_dtype, is_numeric_dtype

        df = self.data
        src = self.source
        missing = [c for c in (*REQUIRED, *self.schema.names) if c not in df.columns]
        if missing:
            raise CohortValidationError(f"missing required columns {missing}", source=src)
        if len(df) == 0:
            raise CohortValidationError("the table has no rows (an empty cohort)", source=src)
        for c in self.schema.names:
            if not is_numeric_dtype(df[c].dtype) or is_bool_dtype(df[c].dtype):
                raise CohortValidationError(
                    f"feature column has non-numeric type {df[c].dtype}", source=src, column=c
                )
        for c in ("action", "t"):
            if not is_integer_dtype(df[c].dtype):
                raise CohortValidationError(f"{c} must be integers, got {df[c].dtype}", source=src, column=c)
        act = df["action"].to_numpy()
        bad = np.flatnonzero((act < 0) | (act > 24))
        if bad.size:
            raise CohortValidationError("action outside 0-24", source=src, column="action", rows=bad.tolist())
        self._validate_values()
        if df["patient_id"].isna().any():
            rows = np.flatnonzero(df["patient_id"].isna().to_numpy()).tolist()
            raise CohortValidationError("missing patient id", source=src, column="patient_id", rows=rows)
        pid = df["patient_id"].to_numpy()
        t = df["t"].to_numpy()
        same = pid[1:] == pid[:-1]
        unsorted = np.flatnonzero(same & (t[1:] <= t[:-1])) + 1
        if unsorted.size:
            dup = np.flatnonzero(same & (t[1:] == t[:-1])) + 1
            if dup.size:
                raise CohortValidationError(
                    "duplicate time steps for a patient", source=src, column="t", rows=dup.tolist()
                )
            raise CohortValidationError(
                "time steps not increasing within a patient", source=src, column="t", rows=unsorted.tolist()
            )
        # A patient's rows must be contiguous: a patient id may not reappear after another patient.
        starts = pid[np.r_[True, ~same]]
        if len(set(starts.tolist())) != len(starts):
            raise CohortValidationError(
                "a patient's rows are not contiguous", source=src, column="patient_id"
            )
        ends = np.r_[~same, True]
        done = df["done"].to_numpy().astype(bool)
        if not np.array_equal(done, ends):
            rows = np.flatnonzero(done != ends).tolist()
            raise CohortValidationError(
                "done must be True exactly on each episode's last row", source=src, column="done", rows=rows
            )

    def _validate_values(self) -> None:
        """Rewards, features, static columns, outcome and behaviour probabilities hold sane numbers."""
        from pandas.api.types import is_bool_dtype, is_numeric_dtype

        df, src = self.data, self.source
        if not is_numeric_dtype(df["reward"].dtype) or is_bool_dtype(df["reward"].dtype):
            raise CohortValidationError(
                f"reward must be numbers, got {df['reward'].dtype}", source=src, column="reward"
            )
        r = df["reward"].to_numpy(dtype=np.float64)
        finite = np.isfinite(r)
        for label, bad in (
            ("reward is NaN", np.isnan(r)),
            ("reward is infinite", np.isinf(r)),
            (f"reward beyond +-{MAX_ABS_REWARD:g} (a sentinel or unit mistake?)",
             finite & (np.abs(np.where(finite, r, 0.0)) > MAX_ABS_REWARD)),
        ):  # fmt: skip
            rows = np.flatnonzero(bad)
            if rows.size:
                raise CohortValidationError(label, source=src, column="reward", rows=rows.tolist())
        numeric = [*self.schema.names, *(c for c in self.schema.static if c in df.columns)]
        for c in numeric:
            if not is_numeric_dtype(df[c].dtype) or is_bool_dtype(df[c].dtype):
                raise CohortValidationError(f"non-numeric type {df[c].dtype}", source=src, column=c)
            x = df[c].to_numpy(dtype=np.float64)
            with np.errstate(invalid="ignore"):
                rows = np.flatnonzero(np.isinf(x))
                if rows.size:
                    raise CohortValidationError(
                        "infinite value (use NaN for a missing value)",
                        source=src,
                        column=c,
                        rows=rows.tolist(),
                    )
                rows = np.flatnonzero(np.abs(x) > MAX_ABS_FEATURE)
            if rows.size:
                raise CohortValidationError(
                    f"value beyond +-{MAX_ABS_FEATURE:g} (a sentinel or unit mistake?)",
                    source=src,
                    column=c,
                    rows=rows.tolist(),
                )
        if "outcome" in df.columns:
            o = df["outcome"].to_numpy()
            rows = np.flatnonzero(~np.isin(o, (-1, 0, 1)))
            if rows.size:
                raise CohortValidationError(
                    "outcome must be 1 (survived), 0 (died) or -1 (unknown)",
                    source=src,
                    column="outcome",
                    rows=rows.tolist(),
                )
        if "behaviour_prob" in df.columns:
            b = df["behaviour_prob"].to_numpy(dtype=np.float64)
            with np.errstate(invalid="ignore"):
                rows = np.flatnonzero(~np.isnan(b) & ~((b > 0) & (b <= 1)))
            if rows.size:
                raise CohortValidationError(
                    "behaviour_prob must be in (0, 1] (or NaN when unknown)",
                    source=src,
                    column="behaviour_prob",
                    rows=rows.tolist(),
                )

    # ------------------------------------------------------------------ basic views
    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        tag = " synthetic" if self.synthetic else ""
        return f"<Cohort{tag} {self.source!r}: {self.n_patients} patients, {len(self)} steps, {len(self.schema)} features>"

    @property
    def synthetic(self) -> bool:
        return bool(self.schema.synthetic or self.meta.get("synthetic", False))

    @property
    def patient_ids(self) -> np.ndarray:
        """Patient ids in table order (each once)."""
        pid = self.data["patient_id"].to_numpy()
        first = np.r_[True, pid[1:] != pid[:-1]][: len(pid)]  # an empty part of a split has no ids
        return pid[first]

    @property
    def n_patients(self) -> int:
        return len(self.patient_ids)

    def episode_index(self) -> np.ndarray:
        """Row -> 0-based episode number."""
        pid = self.data["patient_id"].to_numpy()
        return np.cumsum(np.r_[True, pid[1:] != pid[:-1]][: len(pid)]) - 1

    def lengths(self) -> np.ndarray:
        return np.bincount(self.episode_index())

    def features(self) -> np.ndarray:
        """``(n_rows, n_features)`` float64 matrix in schema order (NaN where missing)."""
        return self.data[self.schema.names].to_numpy(dtype=np.float64)

    def masks(self) -> np.ndarray:
        """``(n_rows, n_features)`` bool, True where observed (all True when the cohort has no masks)."""
        cols = [mask_column(n) for n in self.schema.names]
        out = np.ones((len(self.data), len(cols)), dtype=bool)
        for j, c in enumerate(cols):
            if c in self.data.columns:
                out[:, j] = self.data[c].to_numpy(dtype=bool)
        return out

    def static_matrix(self) -> np.ndarray:
        if not self.schema.static:
            return np.zeros((len(self.data), 0))
        return self.data[list(self.schema.static)].to_numpy(dtype=np.float64)

    @property
    def actions(self) -> np.ndarray:
        return self.data["action"].to_numpy(dtype=np.int64)

    @property
    def has_state_ids(self) -> bool:
        return "state_id" in self.data.columns

    # ------------------------------------------------------------------ transitions / episodes
    def transitions(self) -> Transitions:
        """All one-step transitions as arrays (see :class:`Transitions`)."""
        x = self.features()
        m = self.masks()
        done = self.data["done"].to_numpy(dtype=bool)
        nxt = np.arange(len(x)) + 1
        nxt[done] = np.flatnonzero(done)  # terminal rows point at themselves
        return Transitions(
            obs=x,
            mask=m,
            action=self.actions,
            reward=self.data["reward"].to_numpy(dtype=np.float64),
            next_obs=x[nxt],
            next_mask=m[nxt],
            done=done,
            episode=self.episode_index(),
            t=self.data["t"].to_numpy(dtype=np.int64),
        )

    def episodes(self) -> Iterator[Episode]:
        """Yield one :class:`Episode` per patient (slow for huge cohorts; prefer :meth:`transitions`)."""
        names = tuple(self.schema.names)
        x = self.features()
        m = self.masks()
        df = self.data
        has_mask = any(mask_column(n) in df.columns for n in names)
        state = df["state_id"].to_numpy() if self.has_state_ids else None
        outcome = df["outcome"].to_numpy() if "outcome" in df.columns else None
        static = self.static_matrix()
        act = self.actions
        rew = df["reward"].to_numpy(dtype=np.float64)
        t = df["t"].to_numpy()
        ep = self.episode_index()
        bounds = np.r_[0, np.flatnonzero(np.diff(ep)) + 1, len(ep)]
        pids = self.patient_ids
        for k in range(len(bounds) - 1):
            lo, hi = bounds[k], bounds[k + 1]
            steps = []
            for i in range(lo, hi):
                obs = Observation(
                    t=int(t[i]),
                    values=tuple(float(v) for v in x[i]),
                    mask=tuple(bool(b) for b in m[i]) if has_mask else None,
                )
                steps.append(
                    Step(
                        observation=obs,
                        action=int(act[i]),
                        reward=float(rew[i]),
                        done=i == hi - 1,
                        state_id=int(state[i]) if state is not None else None,
                    )
                )
            oc = int(outcome[lo]) if outcome is not None else None
            yield Episode(
                patient_id=str(pids[k]),
                steps=tuple(steps),
                static={s: float(static[lo, j]) for j, s in enumerate(self.schema.static)},
                outcome=None if oc is None or oc < 0 else oc,
                feature_names=names,
            )

    def episode(self, patient_id: str) -> Episode:
        sub = self.select([patient_id])
        if len(sub) == 0:
            raise UserError(f"no patient {patient_id!r} in {self.source}")
        return next(sub.episodes())

    def histories(self) -> Iterator[PatientHistory]:
        """Every decision point of every episode, as the history a policy would see."""
        for ep in self.episodes():
            for t in range(len(ep)):
                yield ep.history(t)

    # ------------------------------------------------------------------ subsets and splits
    def select(self, patient_ids: Sequence[Any]) -> Cohort:
        """The cohort restricted to ``patient_ids`` (table order kept)."""
        keep = self.data["patient_id"].isin(list(patient_ids))
        return Cohort(
            self.data.loc[keep].reset_index(drop=True),
            self.schema,
            source=self.source,
            meta=self.meta,
            validate=False,
        )

    def head(self, n_patients: int) -> Cohort:
        return self.select(self.patient_ids[:n_patients].tolist())

    def split(
        self, train: float = 0.7, validation: float = 0.15, test: float = 0.15, *, seed: int = 0
    ) -> CohortSplit:
        """Split by patient: no patient is in two parts. Deterministic for a given set of ids and seed.

        Patients are sorted by id, permuted with ``seed``, and cut by the fractions, so the split does
        not depend on the table's row order.
        """
        fr = np.array([train, validation, test], dtype=float)
        if (fr < 0).any() or not np.isclose(fr.sum(), 1.0):
            raise UserError(f"split fractions must be >= 0 and sum to 1, got {fr.tolist()}")
        ids = np.array(sorted(self.patient_ids.tolist(), key=str), dtype=object)
        perm = np.random.default_rng(seed).permutation(len(ids))
        ids = ids[perm]
        n = len(ids)
        n_train = int(round(fr[0] * n))
        n_val = int(round(fr[1] * n))
        n_val = min(n_val, n - n_train)
        parts = (ids[:n_train], ids[n_train : n_train + n_val], ids[n_train + n_val :])
        return CohortSplit(*(self.select(p.tolist()) for p in parts))

    # ------------------------------------------------------------------ persistence
    def to_parquet(self, path: str | Path) -> Path:
        """Write the table, schema and metadata to one Parquet file."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pandas(self.data, preserve_index=False)
        info = {"schema": self.schema.model_dump(), "source": self.source, "meta": self.meta, "version": 1}
        md = dict(table.schema.metadata or {})
        md[_META_KEY] = json.dumps(info).encode()
        tmp = path.with_suffix(path.suffix + ".tmp")
        pq.write_table(table.replace_schema_metadata(md), tmp)
        tmp.replace(path)
        return path

    @staticmethod
    def is_cohort_file(path: str | Path) -> bool:
        """Whether ``path`` is a Parquet file written by :meth:`to_parquet` (it carries our metadata)."""
        path = Path(path)
        if not path.is_file():
            return False
        with path.open("rb") as fh:
            if fh.read(4) != b"PAR1":
                return False
        import pyarrow.parquet as pq

        try:
            return _META_KEY in (pq.read_schema(path).metadata or {})
        except Exception:  # a damaged Parquet file is not ours to claim; read_parquet reports why
            return False

    @classmethod
    def read_parquet(cls, path: str | Path) -> Cohort:
        """Load a cohort written by :meth:`to_parquet` (validated)."""
        import pyarrow.parquet as pq

        path = Path(path)
        if not path.exists():
            raise CohortValidationError("file does not exist", source=str(path))
        try:
            table = pq.read_table(path)
        except Exception as exc:
            raise CohortValidationError(f"not a readable Parquet file ({exc})", source=str(path)) from exc
        md = table.schema.metadata or {}
        if _META_KEY not in md:
            raise CohortValidationError(
                "Parquet file has no sepsis_sdk metadata (not written by Cohort.to_parquet)", source=str(path)
            )
        info = _read_meta(md[_META_KEY], str(path))
        try:
            schema = FeatureSchema.model_validate(info["schema"])
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            first = str(exc).strip().splitlines()
            raise CohortValidationError(
                "the feature schema in the sepsis_sdk metadata is invalid: " + "; ".join(first[:3]),
                source=str(path),
            ) from None
        meta = info.get("meta", {})
        if not isinstance(meta, dict):
            raise CohortValidationError(
                f"the sepsis_sdk metadata 'meta' must be a mapping, got {type(meta).__name__}",
                source=str(path),
            )
        # Errors name the file that was read (the stored source can be an old path or a source name).
        cohort = cls(table.to_pandas(), schema, source=str(path), meta=meta, validate=False)
        cohort.validate()
        cohort.source = str(info.get("source", path))
        return cohort

    def summary(self) -> dict[str, Any]:
        lengths = self.lengths()
        out: dict[str, Any] = {
            "source": self.source,
            "synthetic": self.synthetic,
            "patients": int(self.n_patients),
            "steps": len(self),
            "features": len(self.schema),
            "mean_length": float(lengths.mean()) if len(lengths) else 0.0,
        }
        if "outcome" in self.data.columns:
            first = self.data.groupby("patient_id", sort=False)["outcome"].first()
            known = first[first >= 0]
            out["mortality"] = float(1 - known.mean()) if len(known) else None
        return out


def _read_meta(raw: bytes, source: str) -> dict[str, Any]:
    """The ``sepsis_sdk`` metadata of a cohort Parquet, checked; one error type for every way it is bad."""
    try:
        info = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise CohortValidationError(
            f"the sepsis_sdk metadata is not valid JSON ({exc})", source=source
        ) from None
    if not isinstance(info, dict):
        raise CohortValidationError(
            f"the sepsis_sdk metadata must be a JSON object, got {type(info).__name__}", source=source
        )
    if "schema" not in info:
        raise CohortValidationError(
            "the sepsis_sdk metadata has no 'schema' (the feature list); rewrite the file with "
            "Cohort.to_parquet",
            source=source,
        )
    return info


@dataclass(frozen=True)
class CohortSplit:
    """Patient-level train / validation / test parts of one cohort."""

    train: Cohort
    validation: Cohort
    test: Cohort

    def __iter__(self) -> Iterator[Cohort]:
        return iter((self.train, self.validation, self.test))


__all__ = ["MAX_ABS_FEATURE", "MAX_ABS_REWARD", "Cohort", "CohortSplit", "Transitions"]
