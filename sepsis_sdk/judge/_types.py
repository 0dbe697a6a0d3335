"""The judge abstraction shared by the agent's refine step and MicroWorldBench.

A :class:`Judge` reads a :class:`Rubric` (criteria with a sign and a weight) and :class:`Evidence` (text,
images, structured data) and returns a :class:`Verdict` with one :class:`CriterionVerdict` per criterion.
A criterion the judge could not score validly is **unscored** (``score=None``) and counted as such, never
silently 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Criterion(BaseModel):
    """One rubric point.

    Attributes:
        id: unique within its rubric (e.g. ``"scientific.d3"`` or ``"G1"``).
        text: what the judge must decide.
        sign: ``+1`` a positive point (1 = the evidence shows it); ``-1`` a penalty point (1 = the
            evidence shows the problem).
        weight: non-negative weight (0 allowed: scored but worth nothing).
        dimension: grouping, e.g. ``"scientific"`` / ``"visual"`` / ``"instruction"`` or ``"safety"``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str = Field(min_length=1)
    text: str = Field(min_length=1)
    sign: Literal[1, -1] = 1
    weight: float = Field(default=1.0, ge=0.0)
    dimension: str = ""


class Rubric(BaseModel):
    """An ordered set of criteria judged together."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    criteria: tuple[Criterion, ...] = Field(min_length=1)
    instructions: str = ""

    @model_validator(mode="after")
    def _unique_ids(self) -> Rubric:
        ids = [c.id for c in self.criteria]
        if len(set(ids)) != len(ids):
            raise ValueError(f"rubric {self.name!r} has duplicate criterion ids")
        return self


@dataclass
class Evidence:
    """What the judge looks at.

    Attributes:
        text: a description (a simulated trajectory, a task prompt, ...).
        images: encoded images (JPEG or PNG bytes), e.g. sampled video frames.
        image_mime: MIME type of ``images``.
        data: structured values for rule-based judges (e.g. MAP, lactate, the proposed action).
    """

    text: str = ""
    images: list[bytes] = field(default_factory=list)
    image_mime: str = "image/jpeg"
    data: dict[str, Any] = field(default_factory=dict)


class CriterionVerdict(BaseModel):
    """The judge's decision on one criterion; ``score=None`` means unscored (invalid or missing)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    criterion_id: str
    score: Literal[0, 1] | None
    reason: str = ""


class Verdict(BaseModel):
    """All criteria of one rubric, judged once.

    Attributes:
        rubric: the rubric's name.
        judge: the judge's name.
        verdicts: one decision per criterion, in rubric order.
        reasoning: the judge's explanation.
        error: why some criteria are unscored (``None`` when every decision is valid).
        error_kind: what went wrong when ``error`` is set: ``"call"`` (the judge could not be reached or
            failed: a dead server, a wrong key, exhausted retries) or ``"reply"`` (it answered, but the
            answer does not fit the rubric: wrong list length, a score outside 0/1, no JSON). ``None``
            when unknown (judges that do not say).
        usage: tokens, cost and latency of the calls.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    rubric: str
    judge: str
    verdicts: tuple[CriterionVerdict, ...]
    reasoning: str = ""
    error: str | None = None
    error_kind: Literal["call", "reply"] | None = None
    usage: dict[str, Any] = Field(default_factory=dict)

    @property
    def scores(self) -> dict[str, int | None]:
        return {v.criterion_id: v.score for v in self.verdicts}

    @property
    def complete(self) -> bool:
        return self.error is None and all(v.score is not None for v in self.verdicts)

    @property
    def n_unscored(self) -> int:
        return sum(v.score is None for v in self.verdicts)


@runtime_checkable
class Judge(Protocol):
    """Decides each criterion of a rubric from evidence."""

    name: str

    def judge(self, rubric: Rubric, evidence: Evidence) -> Verdict: ...

    async def ajudge(self, rubric: Rubric, evidence: Evidence) -> Verdict: ...
