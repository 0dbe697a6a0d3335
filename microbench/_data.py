"""MicroWorldBench tasks and criteria: typed models and the loader for both upstream rubric formats.

Upstream ships two rubric files with the same 459 tasks, criterion texts and signs:

* ``MWBenchRubrics.json`` — English task keys ``task`` / ``requirement``; weights as strings.
* ``MWBenchRubrics_norm.json`` — task keys ``任务`` / ``具体要求``; weights as floats or strings, some 0.0.
  The published scores (``calculate_scores.py``) use **these** weights, so they are the default.

``finaltasks.json`` gives each task's category in ``final_label``.

Each dimension is a flat map of ``d<k>`` (text), ``s<k>`` (``"+1"``/``"-1"``) and ``w<k>`` (weight). Most
rubrics number the criteria 1..5; 55 use 11, 22, ..., 55 (and one has only 4 criteria). We order criteria by
their number and give each a 1-based ``position``: the judge's ``scores`` list is read in that order.
(Upstream's scorer looks criteria up by ``i + 1`` and so silently drops the 11/22/.. rubrics; ours does not.)
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sepsis_sdk.errors import DataError, UserError
from sepsis_sdk.judge import Criterion, Rubric

DIMENSIONS: tuple[str, ...] = ("scientific", "visual", "instruction")
"""The three rubric dimensions, in upstream order."""

DIMENSION_TITLES: dict[str, str] = {
    "scientific": "Scientific Accuracy",
    "visual": "Visual Quality",
    "instruction": "Instruction Following",
}

CATEGORIES: tuple[str, ...] = ("Organ-level", "Cellular-level", "Subcellular-level")
"""Task categories (``final_label`` in ``finaltasks.json``)."""

Dimension = Literal["scientific", "visual", "instruction"]
Category = Literal["Organ-level", "Cellular-level", "Subcellular-level"]
WeightSet = Literal["norm", "raw"]

RUBRIC_FILES: dict[str, str] = {"norm": "MWBenchRubrics_norm.json", "raw": "MWBenchRubrics.json"}
TASKS_FILE = "finaltasks.json"

_TASK_KEYS = (("task", "requirement"), ("任务", "具体要求"))
_CRIT_KEY = re.compile(r"^([dsw])(\d+)$")


class BenchCriterion(BaseModel):
    """One MicroWorldBench rubric point.

    Attributes:
        dimension: ``"scientific"``, ``"visual"`` or ``"instruction"``.
        key: the upstream number (``"3"`` for ``d3``/``s3``/``w3``; ``"33"`` for ``d33``).
        position: 1-based order within the dimension (the judge's ``scores`` list is read in this order).
        text: what the judge decides.
        sign: ``+1`` positive point, ``-1`` penalty point (1 = the video shows the problem).
        weight: non-negative weight; 0 is allowed (scored, worth nothing).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    dimension: Dimension
    key: str = Field(pattern=r"^\d+$")
    position: int = Field(ge=1)
    text: str = Field(min_length=1)
    sign: Literal[1, -1]
    weight: float = Field(ge=0.0, allow_inf_nan=False)

    @property
    def id(self) -> str:
        """Criterion id used in rubrics and result files, e.g. ``"scientific.3"``."""
        return f"{self.dimension}.{self.position}"

    def to_criterion(self) -> Criterion:
        """The shared-judge :class:`~sepsis_sdk.judge.Criterion` for this point."""
        return Criterion(
            id=self.id, text=self.text, sign=self.sign, weight=self.weight, dimension=self.dimension
        )


class BenchTask(BaseModel):
    """One MicroWorldBench task: the prompt, its category and its criteria in three dimensions."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    index: int = Field(ge=1)
    task: str = Field(min_length=1)
    requirement: str = ""
    category: Category | None = None
    scientific: tuple[BenchCriterion, ...] = Field(min_length=1)
    visual: tuple[BenchCriterion, ...] = Field(min_length=1)
    instruction: tuple[BenchCriterion, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _dimensions_match(self) -> BenchTask:
        for dim in DIMENSIONS:
            for pos, c in enumerate(getattr(self, dim), start=1):
                if c.dimension != dim or c.position != pos:
                    raise ValueError(f"task {self.index}: criterion {c.id} is misplaced in {dim!r} at {pos}")
        return self

    def criteria(self, dimension: str) -> tuple[BenchCriterion, ...]:
        """The criteria of one dimension, in order."""
        if dimension not in DIMENSIONS:
            raise UserError(f"unknown dimension {dimension!r}; expected one of {DIMENSIONS}")
        return getattr(self, dimension)

    @property
    def n_criteria(self) -> int:
        return sum(len(self.criteria(d)) for d in DIMENSIONS)

    @property
    def prompt(self) -> str:
        """The text-to-video prompt: the task, then its detailed requirements."""
        return f"{self.task}\n\n{self.requirement}".strip()

    def rubric(self, dimension: str) -> Rubric:
        """The shared-judge :class:`~sepsis_sdk.judge.Rubric` for one dimension (one judge call upstream)."""
        crits = self.criteria(dimension)
        return Rubric(
            name=f"mwbench.task{self.index}.{dimension}",
            criteria=tuple(c.to_criterion() for c in crits),
            instructions=dimension_instructions(dimension),
        )

    def rubrics(self) -> dict[str, Rubric]:
        """One rubric per dimension, keyed by dimension."""
        return {d: self.rubric(d) for d in DIMENSIONS}

    def evidence_text(self) -> str:
        """The task text shown to the judge next to the frames."""
        return f"Task Description:\n{self.task}\n\nDetailed Requirements:\n{self.requirement}".strip()


def dimension_instructions(dimension: str) -> str:
    """Judge instructions for one dimension, restating the published protocol in our own words."""
    title = DIMENSION_TITLES[dimension]
    return (
        f"You are grading an AI-generated scientific animation of the microscopic world on {title}. "
        "The images are frames sampled evenly from the video, in chronological order. "
        "Decide every listed point with 1 or 0: a positive point scores 1 when the video meets it; "
        "a penalty point scores 1 when the video shows the problem it describes. "
        'Answer with strict JSON {"scores": [...], "reasoning": "..."} holding exactly one 0 or 1 per point, '
        "in the order listed."
    )


@dataclass(frozen=True)
class Benchmark:
    """The loaded benchmark: tasks in index order plus where they came from.

    Attributes:
        tasks: every task, sorted by index.
        source: the folder the files were read from.
        weights: which weight set was loaded (``"norm"``, the published one, or ``"raw"``).
    """

    tasks: tuple[BenchTask, ...]
    source: str = ""
    weights: str = "norm"
    _by_index: dict[int, BenchTask] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_index.update({t.index: t for t in self.tasks})

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self) -> Iterator[BenchTask]:
        return iter(self.tasks)

    def __getitem__(self, index: int) -> BenchTask:
        """The task with this upstream index (1-based, as video files are named)."""
        try:
            return self._by_index[index]
        except KeyError:
            raise UserError(f"no MicroWorldBench task with index {index}") from None

    def __contains__(self, index: object) -> bool:
        return index in self._by_index

    @property
    def n_criteria(self) -> int:
        return sum(t.n_criteria for t in self.tasks)

    def counts(self) -> dict[str, Any]:
        """Counts for ``info``: tasks, criteria (total, per dimension, positive/penalty, zero weight), categories."""
        per_dim = {d: sum(len(t.criteria(d)) for t in self.tasks) for d in DIMENSIONS}
        all_c = [c for t in self.tasks for d in DIMENSIONS for c in t.criteria(d)]
        return {
            "tasks": len(self.tasks),
            "criteria": len(all_c),
            "criteria_per_dimension": per_dim,
            "positive": sum(c.sign == 1 for c in all_c),
            "penalty": sum(c.sign == -1 for c in all_c),
            "zero_weight": sum(c.weight == 0 for c in all_c),
            "categories": dict(Counter(t.category or "unknown" for t in self.tasks)),
        }


# --------------------------------------------------------------------------------------------- parsing


def _fail(file: str, problem: str, *, item: int | str | None = None, key: str | None = None) -> DataError:
    where = file
    if item is not None:
        where += f", item {item}"
    if key is not None:
        where += f", key {key!r}"
    return DataError(f"{where}: {problem}")


def _parse_weight(value: Any, *, file: str, item: int | str, key: str) -> float:
    if isinstance(value, bool):
        raise _fail(file, f"weight must be a number, got {value!r}", item=item, key=key)
    if isinstance(value, (int, float)):
        w = float(value)
    elif isinstance(value, str):
        try:
            w = float(value.strip())  # upstream writes "1.0", "1." and "2"
        except ValueError:
            raise _fail(file, f"weight {value!r} is not a number", item=item, key=key) from None
    else:
        raise _fail(
            file, f"weight must be a number or numeric string, got {type(value).__name__}", item=item, key=key
        )
    if not math.isfinite(w) or w < 0:
        raise _fail(file, f"weight must be finite and >= 0, got {value!r}", item=item, key=key)
    return w


def _parse_sign(value: Any, *, file: str, item: int | str, key: str) -> Literal[1, -1]:
    text = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    if text in ("+1", "1"):
        return 1
    if text == "-1":
        return -1
    raise _fail(file, f'sign must be "+1" or "-1", got {value!r}', item=item, key=key)


def _parse_dimension(
    rub: Any, dim: str, *, file: str, item: int | str, need_weights: bool
) -> list[tuple[str, str, int, float | None]]:
    dim_key = f"rubrics_{dim}"
    if not isinstance(rub, Mapping):
        raise _fail(
            file, f"must be an object of d/s/w keys, got {type(rub).__name__}", item=item, key=dim_key
        )
    parts: dict[str, dict[str, Any]] = {}
    for k, v in rub.items():
        m = _CRIT_KEY.match(str(k))
        if not m:
            raise _fail(
                file, "unexpected key in rubric (expected d<k>, s<k>, w<k>)", item=item, key=f"{dim_key}.{k}"
            )
        parts.setdefault(m.group(2), {})[m.group(1)] = v
    if not parts:
        raise _fail(file, "rubric has no criteria", item=item, key=dim_key)
    out = []
    for num in sorted(parts, key=int):
        p = parts[num]
        for letter in ("d", "s") + (("w",) if need_weights else ()):
            if letter not in p:
                raise _fail(
                    file, f"criterion {num} has no {letter}{num}", item=item, key=f"{dim_key}.{letter}{num}"
                )
        text = p["d"]
        if not isinstance(text, str) or not text.strip():
            raise _fail(file, "criterion text must be a non-empty string", item=item, key=f"{dim_key}.d{num}")
        sign = _parse_sign(p["s"], file=file, item=item, key=f"{dim_key}.s{num}")
        weight = _parse_weight(p["w"], file=file, item=item, key=f"{dim_key}.w{num}") if "w" in p else None
        out.append((num, text.strip(), sign, weight))
    return out


@dataclass(frozen=True)
class _RawTask:
    index: int
    task: str
    requirement: str
    dims: dict[str, list[tuple[str, str, int, float | None]]]


def parse_rubric_file(data: Any, *, file: str = "<rubrics>", need_weights: bool = True) -> list[_RawTask]:
    """Parse the JSON content of either upstream rubric file (English or Chinese task keys).

    Raises:
        DataError: naming the file, the item (0-based position in the list) and the key at fault.
    """
    if not isinstance(data, list):
        raise _fail(file, f"expected a JSON list of tasks, got {type(data).__name__}")
    out: list[_RawTask] = []
    seen: dict[int, int] = {}
    for i, t in enumerate(data):
        if not isinstance(t, Mapping):
            raise _fail(file, f"task must be an object, got {type(t).__name__}", item=i)
        idx = t.get("index")
        if isinstance(idx, bool) or not isinstance(idx, int) or idx < 1:
            raise _fail(file, f"'index' must be a positive integer, got {idx!r}", item=i, key="index")
        if idx in seen:
            raise _fail(file, f"duplicate task index {idx} (also item {seen[idx]})", item=i, key="index")
        seen[idx] = i
        at = f"{i} (task index {idx})"
        keys = next(((tk, rk) for tk, rk in _TASK_KEYS if tk in t), None)
        if keys is None:
            raise _fail(file, "task text missing (expected 'task' or '任务')", item=at, key="task")
        task_key, req_key = keys
        text, req = t[task_key], t.get(req_key, "")
        if not isinstance(text, str) or not text.strip():
            raise _fail(file, "task text must be a non-empty string", item=at, key=task_key)
        if not isinstance(req, str):
            raise _fail(file, "requirement must be a string", item=at, key=req_key)
        dims = {}
        for dim in DIMENSIONS:
            if f"rubrics_{dim}" not in t:
                raise _fail(file, "dimension missing", item=at, key=f"rubrics_{dim}")
            dims[dim] = _parse_dimension(
                t[f"rubrics_{dim}"], dim, file=file, item=at, need_weights=need_weights
            )
        out.append(_RawTask(idx, text.strip(), req.strip(), dims))
    return out


def parse_categories(data: Any, *, file: str = TASKS_FILE) -> dict[int, str]:
    """Task index -> category from ``finaltasks.json`` content.

    Raises:
        DataError: for a malformed item or an unknown ``final_label``.
    """
    if not isinstance(data, list):
        raise _fail(file, f"expected a JSON list, got {type(data).__name__}")
    out: dict[int, str] = {}
    for i, t in enumerate(data):
        if not isinstance(t, Mapping):
            raise _fail(file, "item must be an object", item=i)
        idx = t.get("index")
        if isinstance(idx, bool) or not isinstance(idx, int):
            raise _fail(file, f"'index' must be an integer, got {idx!r}", item=i, key="index")
        label = t.get("final_label")
        if label not in CATEGORIES:
            raise _fail(
                file, f"final_label {label!r} is not one of {list(CATEGORIES)}", item=i, key="final_label"
            )
        out[idx] = label
    return out


def _read_json(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason})") from None


def build_tasks(
    primary: Sequence[_RawTask],
    categories: Mapping[int, str] | None,
    *,
    other: Sequence[_RawTask] | None = None,
    file: str = "<rubrics>",
    other_file: str = "<rubrics>",
) -> tuple[BenchTask, ...]:
    """Typed tasks from parsed rubrics; when ``other`` (the second rubric file) is given, check it agrees.

    Texts and signs must agree between the two files (upstream grades with one and scores with the other).
    """
    other_by = {t.index: t for t in other} if other is not None else None
    tasks = []
    for pos, raw in enumerate(primary):
        if other_by is not None:
            o = other_by.get(raw.index)
            if o is None:
                raise _fail(other_file, f"task index {raw.index} (in {file}) is missing")
            for dim in DIMENSIONS:
                a = [(n, txt, s) for n, txt, s, _ in raw.dims[dim]]
                b = [(n, txt, s) for n, txt, s, _ in o.dims[dim]]
                if a != b:
                    raise _fail(
                        other_file,
                        f"task {raw.index}: criteria texts/signs differ from {file}",
                        key=f"rubrics_{dim}",
                    )
        category = None
        if categories is not None:
            if raw.index not in categories:
                raise _fail(TASKS_FILE, f"task index {raw.index} has no category")
            category = categories[raw.index]
        kw: dict[str, Any] = {}
        for dim in DIMENSIONS:
            kw[dim] = tuple(
                BenchCriterion(
                    dimension=dim, key=n, position=p, text=txt, sign=s, weight=1.0 if w is None else w
                )
                for p, (n, txt, s, w) in enumerate(raw.dims[dim], start=1)
            )
        try:
            tasks.append(
                BenchTask(
                    index=raw.index, task=raw.task, requirement=raw.requirement, category=category, **kw
                )
            )
        except ValueError as exc:  # pragma: no cover - parse_rubric_file already checks every field
            raise _fail(file, str(exc), item=pos) from None
    if other_by is not None and len(other_by) != len(primary):
        extra = sorted(set(other_by) - {t.index for t in primary})[:5]
        raise _fail(other_file, f"has task indices not in {file}: {extra}")
    return tuple(sorted(tasks, key=lambda t: t.index))


def load_benchmark(
    source: str | Path | None = None,
    *,
    weights: WeightSet = "norm",
    cross_check: bool = True,
    cache_dir: str | Path | None = None,
    transport: Any = None,
) -> Benchmark:
    """Load MicroWorldBench from a local folder or from the pinned upstream files.

    Args:
        source: a folder holding ``MWBenchRubrics_norm.json`` (or ``MWBenchRubrics.json`` for
            ``weights="raw"``) and ``finaltasks.json``. ``None`` fetches the upstream files once (pinned
            commit, sha256-checked) into the cache and loads them from there.
        weights: ``"norm"`` (default) uses the weights of ``MWBenchRubrics_norm.json`` as the published
            scorer does; ``"raw"`` uses those of ``MWBenchRubrics.json``.
        cross_check: when the other rubric file is in the folder too, require identical texts and signs.
        cache_dir: where fetched files go (see :func:`fetch_upstream`).
        transport: an ``httpx`` transport for the fetch (tests pass a mock).

    Returns:
        The :class:`Benchmark` (459 tasks, 6,884 criteria for the upstream files).

    Raises:
        DataError: a missing or malformed file, naming the file, the item and the key.
        UserError: an unknown weight set.

    Example:
        >>> bench = load_benchmark("path/to/eval")          # doctest: +SKIP
        >>> len(bench), bench.n_criteria
        (459, 6884)
    """
    if weights not in RUBRIC_FILES:
        raise UserError(f"weights must be 'norm' or 'raw', got {weights!r}")
    if source is None:
        from sepsis_sdk.microbench._fetch import fetch_upstream

        folder = fetch_upstream(cache_dir, transport=transport)
    else:
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise DataError(
                f"{folder}: MicroWorldBench source must be a folder holding {RUBRIC_FILES[weights]} and {TASKS_FILE}"
            )
    primary_path = folder / RUBRIC_FILES[weights]
    primary = parse_rubric_file(_read_json(primary_path), file=str(primary_path))
    other = None
    other_path = folder / RUBRIC_FILES["raw" if weights == "norm" else "norm"]
    if cross_check and other_path.is_file():
        other = parse_rubric_file(_read_json(other_path), file=str(other_path), need_weights=False)
    tasks_path = folder / TASKS_FILE
    categories = parse_categories(_read_json(tasks_path), file=str(tasks_path))
    tasks = build_tasks(primary, categories, other=other, file=str(primary_path), other_file=str(other_path))
    return Benchmark(tasks=tasks, source=str(folder), weights=weights)
