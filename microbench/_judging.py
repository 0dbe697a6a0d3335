"""Grade one task's video with any shared :class:`~sepsis_sdk.judge.Judge`, one call per dimension.

The judge receives each dimension as a :class:`~sepsis_sdk.judge.Rubric` (positive and penalty points with
weights, in upstream order) and the sampled frames as :class:`~sepsis_sdk.judge.Evidence`. Whatever it
answers is checked against the rubric here as well (any ``Judge`` may be plugged in, not only
:class:`~sepsis_sdk.judge.LLMJudge`): exactly one 0/1 per criterion id, no unknown or repeated id. A
verdict that does not fit is recorded with its criteria **unscored**, never as 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sepsis_sdk.errors import RealRequestBlockedError, UserError
from sepsis_sdk.judge import Evidence, Judge, Rubric, Verdict
from sepsis_sdk.microbench._data import DIMENSION_TITLES, BenchTask
from sepsis_sdk.microbench._frames import FrameSample
from sepsis_sdk.microbench._results import VerdictRecord


def build_evidence(task: BenchTask, frames: FrameSample, *, dimension: str | None = None) -> Evidence:
    """The evidence for a judge: the task text and the sampled frames (JPEG)."""
    data: dict[str, Any] = {
        "task_index": task.index,
        "n_frames": len(frames.images),
        "frame_indices": list(frames.indices),
        "video_frames_total": frames.n_frames_total,
        "repeated_frames": frames.repeated,
    }
    if dimension is not None:
        data["dimension"] = dimension
        data["dimension_title"] = DIMENSION_TITLES[dimension]
    return Evidence(text=task.evidence_text(), images=list(frames.images), image_mime="image/jpeg", data=data)


def check_verdict(verdict: Any, rubric: Rubric) -> tuple[tuple[int | None, ...], str | None]:
    """Scores in rubric order and an error message (``None`` when the verdict fits the rubric).

    Criteria the verdict leaves out, or scores outside {0, 1}, are unscored. Unknown or repeated criterion
    ids make the whole verdict unusable (all unscored).
    """
    ids = [c.id for c in rubric.criteria]
    if not isinstance(verdict, Verdict):
        return (None,) * len(ids), f"judge returned {type(verdict).__name__}, not a Verdict"
    seen: dict[str, int | None] = {}
    problems = []
    for v in verdict.verdicts:
        if v.criterion_id in seen:
            return (None,) * len(ids), f"verdict repeats criterion {v.criterion_id!r}"
        seen[v.criterion_id] = v.score
    unknown = [k for k in seen if k not in ids]
    if unknown:
        return (None,) * len(ids), f"verdict names criteria not in rubric {rubric.name!r}: {unknown[:3]}"
    scores: list[int | None] = []
    for cid in ids:
        s = seen.get(cid)
        if cid not in seen:
            problems.append(f"{cid} missing")
        elif s is not None and (isinstance(s, bool) or s not in (0, 1)):
            problems.append(f"{cid} scored {s!r}")
            s = None
        scores.append(s)
    if verdict.error:
        return tuple(scores), verdict.error
    if problems:
        return tuple(scores), "verdict does not fit the rubric: " + ", ".join(problems[:5])
    return tuple(scores), None


def record_for(
    task: BenchTask,
    dimension: str,
    *,
    model: str,
    judge: str,
    video: str,
    scores: Sequence[int | None] | None = None,
    reasoning: str = "",
    error: str | None = None,
    error_kind: str | None = None,
    usage: dict[str, Any] | None = None,
    n_frames: int = 0,
    frames: FrameSample | None = None,
    blind: bool = False,
    reference_scores: Sequence[Any] | None = None,
) -> VerdictRecord:
    """A results-file record for one task and dimension (``frames``: what the judge was shown)."""
    crits = task.criteria(dimension)
    return VerdictRecord(
        model=model,
        judge=judge,
        task=task.index,
        dimension=dimension,  # type: ignore[arg-type]
        category=task.category,
        video=video,
        criterion_ids=tuple(c.id for c in crits),
        signs=tuple(c.sign for c in crits),
        weights=tuple(c.weight for c in crits),
        scores=tuple(scores) if scores is not None else (None,) * len(crits),
        reasoning=reasoning,
        error=error,
        error_kind=error_kind,  # type: ignore[arg-type]
        usage=usage or {},
        n_frames=len(frames.images) if frames is not None else n_frames,
        frame_indices=tuple(frames.indices) if frames is not None else (),
        repeated_frames=bool(frames.repeated) if frames is not None else False,
        criterion_keys=tuple(c.key for c in crits),
        blind=blind,
        reference_scores=tuple(reference_scores) if reference_scores is not None else None,
    )


def _error_kind(verdict: Any) -> str:
    """``"judge"`` when the call failed, ``"verdict"`` when the judge answered something unusable.

    A judge that reports an error without saying which (``Verdict.error_kind`` is ``None``) is taken at
    its word that the call failed; a verdict that only fails our own check is a bad answer.
    """
    if isinstance(verdict, Verdict) and verdict.error:
        return "verdict" if verdict.error_kind == "reply" else "judge"
    return "verdict"


def judge_name(judge: Judge) -> str:
    """The name a judge is recorded under."""
    return str(getattr(judge, "name", "") or type(judge).__name__)


async def ajudge_dimension(
    judge: Judge, task: BenchTask, dimension: str, frames: FrameSample, *, model: str
) -> VerdictRecord:
    """Ask ``judge`` about one dimension of ``task`` and return the checked record.

    A failed call is recorded (criteria unscored), not raised; only misuse (:class:`UserError`) and a
    blocked real request in tests propagate.
    """
    rubric = task.rubric(dimension)
    evidence = build_evidence(task, frames, dimension=dimension)
    name = judge_name(judge)
    try:
        verdict = await judge.ajudge(rubric, evidence)
    except (UserError, RealRequestBlockedError):
        raise  # misuse or configuration (a wrong argument, requests blocked in tests): stop, do not record
    except Exception as exc:  # a judge failure is a result to record, not a crash of the run
        return record_for(
            task,
            dimension,
            model=model,
            judge=name,
            video=frames.path,
            error=f"{type(exc).__name__}: {exc}",
            error_kind="judge",
            usage=dict(getattr(exc, "usage", None) or {}),
            frames=frames,
        )
    scores, err = check_verdict(verdict, rubric)
    kind = None
    if err is not None:
        kind = _error_kind(verdict)
    usage = dict(verdict.usage) if isinstance(verdict, Verdict) else {}
    reasoning = verdict.reasoning if isinstance(verdict, Verdict) else ""
    if isinstance(verdict, Verdict) and not reasoning:
        reasoning = " | ".join(f"{v.criterion_id}: {v.reason}" for v in verdict.verdicts if v.reason)
    return record_for(
        task,
        dimension,
        model=model,
        judge=name,
        video=frames.path,
        scores=scores,
        reasoning=reasoning,
        error=err,
        error_kind=kind,
        usage=usage,
        frames=frames,
    )
