"""Scores as published, in two modes, summary tables, and agreement between judges.

Per task and dimension (upstream ``calculate_scores.py``; DESIGN.md 3.8)::

    S      = sum_i score_i * w_i * sign_i
    S_norm = max(0, S / sum_{i positive} w_i) * 100

The task score pools the three dimensions: ``max(0, sum S / sum positive w) * 100``. A task is **valid**
only when all three dimensions have a complete verdict (every criterion scored 0 or 1); other tasks are
left out of every mean and counted against coverage (valid tasks / tasks in the benchmark).

Decision where the spec is silent — a dimension whose positive weights sum to 0 (none in the published
weights; possible in user data): upstream returns 0, which would mark a rubric with nothing to earn as a
failure. We call its normalised score **undefined** (``None``): the dimension is left out of that
dimension's mean (counted in ``undefined``), while the task still gets a pooled score from its raw sums
as long as the pooled positive total is above 0. A task whose pooled positive total is 0 is not valid.

Two scoring modes (``scoring=``):

* ``"project"`` (default): the above. Every criterion is graded and scored, by its position.
* ``"reference"``: what the MicroVerse scripts compute, rule for rule, so numbers can be set beside the
  paper's. (1) The judge's list is read by criterion *number*: entry ``i`` scores the criterion
  numbered ``i + 1``, entries with no such criterion are ignored, and a short list leaves the rest out of
  both sums; so the 55 rubrics numbered ``d11..d55`` (which the reference shows the judge as an empty
  checklist) score 0/0. (2) A dimension whose positive weights sum to 0 scores 0 and counts in the
  per-dimension mean; a task whose pooled positive total is 0 scores 0 and is valid. (3) A task is
  dropped when any dimension has no reply, no parsed JSON, or an empty ``scores`` list (the reference's
  answer ``[]`` to an empty checklist drops the whole task). A score counts when it equals 1 (Python
  ``==``: ``true`` and ``1.0`` count; ``2``, ``-1``, ``"1"`` do not). Records imported from the reference
  carry the judge's list as it was (``reference_scores``); for records graded here the list is their
  scores, and a record with an error counts as no reply.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sepsis_sdk.errors import UserError
from sepsis_sdk.microbench._data import CATEGORIES, DIMENSIONS
from sepsis_sdk.microbench._results import VerdictRecord

Scoring = Literal["project", "reference"]
SCORING_MODES: tuple[str, ...] = ("project", "reference")
"""The scoring modes of :func:`summarize`: ``"project"`` (default) and ``"reference"``."""


@dataclass(frozen=True)
class DimensionScore:
    """Score of one task in one dimension.

    Attributes:
        raw: ``S = Σ score·w·sign``.
        positive_total: ``Σ w`` over positive criteria.
        norm: ``max(0, S / positive_total)·100``; ``None`` when ``positive_total`` is 0.
    """

    raw: float
    positive_total: float
    norm: float | None


def normalise(raw: float, positive_total: float) -> float | None:
    """``max(0, raw / positive_total)·100``, or ``None`` when ``positive_total`` <= 0."""
    if positive_total <= 0:
        return None
    return max(0.0, raw / positive_total) * 100.0


def score_dimension(
    scores: Sequence[int | None], weights: Sequence[float | str], signs: Sequence[int | str]
) -> DimensionScore | None:
    """Score one dimension; ``None`` when any criterion is unscored (the dimension is then missing).

    Weights may be numbers or numeric strings and signs ``1``/``-1`` or ``"+1"``/``"-1"``, as upstream
    writes them.

    Raises:
        ValueError: lengths differ, a score is not 0/1/None, or a sign is not ±1.
    """
    if not (len(scores) == len(weights) == len(signs)):
        raise ValueError(f"lengths differ: {len(scores)} scores, {len(weights)} weights, {len(signs)} signs")
    raw = 0.0
    pos = 0.0
    missing = False
    for s, w, g in zip(scores, weights, signs, strict=False):
        sign = int(str(g).strip())
        if sign not in (1, -1):
            raise ValueError(f"sign must be +1 or -1, got {g!r}")
        weight = float(w)
        if s is None:
            missing = True
        elif s not in (0, 1) or isinstance(s, bool):
            raise ValueError(f"score must be 0, 1 or None, got {s!r}")
        else:
            raw += s * weight * sign
        if sign > 0:
            pos += weight
    if missing:
        return None
    return DimensionScore(raw=raw, positive_total=pos, norm=normalise(raw, pos))


def reference_checklist(keys: Sequence[str]) -> list[str]:
    """The criterion numbers the reference evaluator shows its judge: only ``d1..d9`` are listed.

    An empty result (the rubrics numbered ``d11..d55``) means the judge saw an empty checklist.
    """
    return [k for k in keys if 1 <= int(k) <= 9]


def score_dimension_reference(
    scores: Sequence[Any] | None,
    keys: Sequence[str],
    weights: Sequence[float | str],
    signs: Sequence[int | str],
) -> DimensionScore | None:
    """Score one dimension as the reference scorer does; ``None`` when it drops the task.

    Args:
        scores: the judge's list as answered (any length, any values); ``None`` for no reply.
        keys: each criterion's upstream number (``"1"`` .. ``"5"``, or ``"11"`` .. ``"55"``).
        weights: each criterion's weight.
        signs: each criterion's sign.

    Returns:
        ``DimensionScore`` whose ``norm`` is 0 when the positive total is 0 (never ``None``), or ``None``
        when ``scores`` is ``None`` or empty.
    """
    if not scores:
        return None
    by_number = {
        int(k): (float(w), int(str(g).strip())) for k, w, g in zip(keys, weights, signs, strict=True)
    }
    raw = pos = 0.0
    for i, value in enumerate(scores):
        crit = by_number.get(i + 1)
        if crit is None:  # the list entry has no criterion of that number: ignored, as upstream
            continue
        weight, sign = crit
        if value == 1:  # upstream's test; 2, -1 and "1" score nothing
            raw += sign * weight
        if sign > 0:
            pos += weight
    return DimensionScore(raw=raw, positive_total=pos, norm=_normalise_reference(raw, pos))


def _normalise_reference(raw: float, positive_total: float) -> float:
    return 0.0 if positive_total <= 0 else max(0.0, raw / positive_total * 100.0)


@dataclass(frozen=True)
class TaskScore:
    """Score of one task for one (video set, judge).

    Attributes:
        task: task index.
        category: the task's category.
        dimensions: per-dimension scores.
        total: pooled normalised score over the three dimensions (``None`` when undefined).
        blind: some dimension rests on a verdict made against an empty checklist (imported from the
            reference evaluator for a ``d11..d55`` rubric).
    """

    task: int
    category: str | None
    dimensions: dict[str, DimensionScore]
    total: float | None
    blind: bool = False


def score_task(task: int, category: str | None, dims: Mapping[str, DimensionScore]) -> TaskScore:
    """Pool three dimension scores into the task score."""
    raw = sum(d.raw for d in dims.values())
    pos = sum(d.positive_total for d in dims.values())
    return TaskScore(task=task, category=category, dimensions=dict(dims), total=normalise(raw, pos))


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


@dataclass
class Summary:
    """Results of one (video set, judge).

    Attributes:
        model: video set name.
        judge: judge name.
        n_tasks: tasks in the benchmark (denominator of coverage).
        valid_tasks: tasks with all three dimensions complete.
        overall: mean task score over valid tasks.
        per_category: mean task score per category (valid tasks).
        per_dimension: mean dimension score per dimension (valid tasks; undefined ones left out).
        category_counts: valid tasks per category.
        undefined: per dimension, valid tasks whose positive weights sum to 0 (project: normalised score
            undefined and left out of the mean; reference: counted as 0).
        unscored_criteria: criteria left unscored (over all records).
        scoring: the mode that produced these numbers (``"project"`` or ``"reference"``).
        blind_tasks: valid tasks resting on a verdict made against an empty checklist (see
            :attr:`VerdictRecord.blind`).
        repeated_frames: records of videos shorter than the frames shown (some frames shown twice).
        errors: records with an error, per error kind.
        usage: summed token use and cost reported by the judge.
        task_scores: every valid task's score.
    """

    model: str
    judge: str
    n_tasks: int
    valid_tasks: int = 0
    overall: float | None = None
    per_category: dict[str, float | None] = field(default_factory=dict)
    per_dimension: dict[str, float | None] = field(default_factory=dict)
    category_counts: dict[str, int] = field(default_factory=dict)
    undefined: dict[str, int] = field(default_factory=dict)
    unscored_criteria: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    usage: dict[str, float] = field(default_factory=dict)
    task_scores: list[TaskScore] = field(default_factory=list)
    scoring: str = "project"
    blind_tasks: int = 0
    repeated_frames: int = 0

    @property
    def coverage(self) -> float:
        """Valid tasks / tasks in the benchmark."""
        return self.valid_tasks / self.n_tasks if self.n_tasks else 0.0

    def as_row(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "model": self.model,
            "judge": self.judge,
            "scoring": self.scoring,
            "valid_tasks": self.valid_tasks,
            "n_tasks": self.n_tasks,
            "coverage": round(self.coverage, 4),
            "overall": self.overall,
        }
        row.update({c: self.per_category.get(c) for c in CATEGORIES})
        row.update({d: self.per_dimension.get(d) for d in DIMENSIONS})
        row["unscored_criteria"] = self.unscored_criteria
        row["errors"] = sum(self.errors.values())
        row["blind_tasks"] = self.blind_tasks
        row["prompt_tokens"] = int(self.usage.get("prompt_tokens", 0))
        row["completion_tokens"] = int(self.usage.get("completion_tokens", 0))
        row["cost_usd"] = round(float(self.usage.get("cost_usd", 0.0)), 6)
        return row


_USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens", "cost_usd", "calls", "latency_s")


def summarize(
    records: Iterable[VerdictRecord],
    *,
    n_tasks: int = 459,
    scoring: Scoring = "project",
    benchmark: Any = None,
    empty_checklist: Literal["zero", "drop"] = "zero",
) -> list[Summary]:
    """One :class:`Summary` per (video set, judge), sorted by overall score (best first).

    Args:
        records: verdict records (deduplicated per key; use :func:`read_records`).
        n_tasks: tasks in the benchmark, the denominator of coverage (459 for MicroWorldBench).
        scoring: ``"project"`` (default; every criterion graded and scored) or ``"reference"`` (the
            MicroVerse scripts' numbers; see the module docstring for every rule).
        benchmark: the loaded :class:`~sepsis_sdk.microbench.Benchmark`; only needed in reference mode
            for result files written before records carried each criterion's upstream number.
        empty_checklist: reference mode, records graded here on a ``d11..d55`` rubric (the reference
            would have asked its judge with an empty checklist, which was never done here): ``"zero"``
            (default) scores them 0/0 and keeps the task, as the reference does when that judge answers
            a non-empty list; ``"drop"`` drops the task, as it does when the judge answers ``[]``. Records
            imported from the reference carry the real answer and ignore this.

    Raises:
        UserError: an unknown ``scoring`` or ``empty_checklist``.
    """
    if scoring not in SCORING_MODES:
        raise UserError(f"scoring must be one of {SCORING_MODES}, got {scoring!r}")
    if empty_checklist not in ("zero", "drop"):
        raise UserError(f"empty_checklist must be 'zero' or 'drop', got {empty_checklist!r}")
    groups: dict[tuple[str, str], dict[int, dict[str, VerdictRecord]]] = defaultdict(
        lambda: defaultdict(dict)
    )
    for r in records:
        groups[(r.model, r.judge)][r.task][r.dimension] = r
    out = [
        _summarize_group(
            model,
            judge,
            tasks,
            n_tasks=n_tasks,
            scoring=scoring,
            benchmark=benchmark,
            drop_blind=empty_checklist == "drop",
        )
        for (model, judge), tasks in groups.items()
    ]
    out.sort(key=lambda x: (-(x.overall if x.overall is not None else -1.0), x.model, x.judge))
    return out


def _keys_of(r: VerdictRecord, benchmark: Any) -> tuple[str, ...]:
    if r.criterion_keys:
        return r.criterion_keys
    if benchmark is not None and r.task in benchmark:
        return tuple(c.key for c in benchmark[r.task].criteria(r.dimension))
    return tuple(str(k) for k in range(1, len(r.scores) + 1))  # files from before keys were recorded


def _score_record(r: VerdictRecord, scoring: str, benchmark: Any, drop_blind: bool) -> DimensionScore | None:
    if scoring == "project":
        return score_dimension(r.scores, r.weights, r.signs)
    keys = _keys_of(r, benchmark)
    scores: Sequence[Any] | None = r.reference_scores
    if scores is None and not r.blind:  # graded here
        scores = r.scores if r.error is None else None  # a failed or rejected verdict: no reply upstream
        if drop_blind and not reference_checklist(keys):
            scores = None  # assume the judge answered the empty checklist with []
    return score_dimension_reference(scores, keys, r.weights, r.signs)


def _count_record(s: Summary, r: VerdictRecord, errors: dict[str, int], usage: dict[str, float]) -> None:
    s.unscored_criteria += sum(x is None for x in r.scores)
    if r.error_kind:
        errors[r.error_kind] += 1
    if r.repeated_frames:
        s.repeated_frames += 1
    for k in _USAGE_KEYS:
        v = r.usage.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            usage[k] += v


def _summarize_group(
    model: str,
    judge: str,
    tasks: Mapping[int, Mapping[str, VerdictRecord]],
    *,
    n_tasks: int,
    scoring: str,
    benchmark: Any,
    drop_blind: bool,
) -> Summary:
    s = Summary(model=model, judge=judge, n_tasks=n_tasks, scoring=scoring)
    usage: dict[str, float] = defaultdict(float)
    dim_scores: dict[str, list[float]] = {d: [] for d in DIMENSIONS}
    cat_scores: dict[str, list[float]] = {c: [] for c in CATEGORIES}
    errors: dict[str, int] = defaultdict(int)
    undefined: dict[str, int] = defaultdict(int)
    for task, dims in sorted(tasks.items()):
        for r in dims.values():
            _count_record(s, r, errors, usage)
        if set(dims) != set(DIMENSIONS):
            continue
        scored = {d: _score_record(dims[d], scoring, benchmark, drop_blind) for d in DIMENSIONS}
        if any(v is None for v in scored.values()):
            continue
        ts = score_task(task, dims["scientific"].category, scored)  # type: ignore[arg-type]
        ts = TaskScore(
            task=ts.task,
            category=ts.category,
            dimensions=ts.dimensions,
            total=ts.total if scoring == "project" else _reference_total(ts),
            blind=any(dims[d].blind for d in DIMENSIONS),
        )
        if ts.total is None:
            continue
        s.task_scores.append(ts)
        s.blind_tasks += ts.blind
        for d in DIMENSIONS:
            dim = ts.dimensions[d]
            if dim.positive_total <= 0:
                undefined[d] += 1  # project: left out of the mean; reference: counted as 0
            if dim.norm is not None:
                dim_scores[d].append(dim.norm)
        if ts.category in cat_scores:
            cat_scores[ts.category].append(ts.total)
    s.valid_tasks = len(s.task_scores)
    s.overall = _mean([t.total for t in s.task_scores if t.total is not None])
    s.per_dimension = {d: _mean(v) for d, v in dim_scores.items()}
    s.per_category = {c: _mean(v) for c, v in cat_scores.items()}
    s.category_counts = {c: len(v) for c, v in cat_scores.items()}
    s.errors = dict(errors)
    s.undefined = dict(undefined)
    s.usage = dict(usage)
    return s


def _reference_total(ts: TaskScore) -> float:
    raw = sum(d.raw for d in ts.dimensions.values())
    pos = sum(d.positive_total for d in ts.dimensions.values())
    return _normalise_reference(raw, pos)


# ------------------------------------------------------------------------------------------- agreement


def cohen_kappa(a: Sequence[int], b: Sequence[int]) -> float | None:
    """Cohen's kappa of two raters' 0/1 labels; ``None`` when chance agreement is 1 (undefined).

    Raises:
        ValueError: lengths differ.
    """
    if len(a) != len(b):
        raise ValueError("raters must label the same items")
    n = len(a)
    if n == 0:
        return None
    po = sum(x == y for x, y in zip(a, b, strict=False)) / n
    pa1, pb1 = sum(a) / n, sum(b) / n
    pe = pa1 * pb1 + (1 - pa1) * (1 - pb1)
    if pe >= 1.0:
        return None
    return (po - pe) / (1 - pe)


@dataclass(frozen=True)
class Agreement:
    """Agreement of two judges on one dimension, over criteria both scored.

    Attributes:
        judge_a: first judge.
        judge_b: second judge.
        dimension: a dimension, or ``"all"``.
        n: criteria compared.
        percent: share of identical scores (0-100).
        kappa: Cohen's kappa (``None`` when undefined).
    """

    judge_a: str
    judge_b: str
    dimension: str
    n: int
    percent: float | None
    kappa: float | None


def agreement(records: Iterable[VerdictRecord]) -> list[Agreement]:
    """Pairwise agreement of every two judges that graded the same videos, per dimension and overall.

    Criteria are matched on (video set, task, dimension, criterion id); a criterion either judge left
    unscored is not compared.
    """
    by_judge: dict[str, dict[tuple[str, int, str, str], int]] = defaultdict(dict)
    for r in records:
        for cid, sc in zip(r.criterion_ids, r.scores, strict=False):
            if sc is not None:
                by_judge[r.judge][(r.model, r.task, r.dimension, cid)] = sc
    judges = sorted(by_judge)
    out = []
    for i, ja in enumerate(judges):
        for jb in judges[i + 1 :]:
            common = sorted(set(by_judge[ja]) & set(by_judge[jb]))
            for dim in (*DIMENSIONS, "all"):
                keys = [k for k in common if dim == "all" or k[2] == dim]
                a = [by_judge[ja][k] for k in keys]
                b = [by_judge[jb][k] for k in keys]
                pct = 100.0 * sum(x == y for x, y in zip(a, b, strict=False)) / len(a) if a else None
                out.append(Agreement(ja, jb, dim, len(a), pct, cohen_kappa(a, b)))
    return out
