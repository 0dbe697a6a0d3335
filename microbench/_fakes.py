"""Test doubles for grading without a model: a function-driven judge and a synthetic video generator."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sepsis_sdk.judge import CriterionVerdict, Evidence, Rubric, Verdict

ScoreFn = Callable[[Rubric, Evidence], Any]


class RecordingJudge:
    """A :class:`~sepsis_sdk.judge.Judge` whose decisions come from a function, recording every call.

    Unlike :class:`sepsis_sdk.judge.FunctionJudge` it passes a score list of the wrong length through as
    it is (so tests can check that :mod:`~sepsis_sdk.microbench` validates verdicts itself), records the
    calls, and can simulate latency and token use. The function receives ``(rubric, evidence)`` and returns
    a list of 0/1/None in rubric order, a full :class:`~sepsis_sdk.judge.Verdict`, or raises. It may be a
    coroutine function.

    Args:
        fn: the decision function (default: every criterion 1).
        name: the judge's name (recorded in results).
        delay_s: simulated latency per call (async: ``asyncio.sleep``).
        usage: usage dict attached to every verdict (e.g. ``{"prompt_tokens": 10, "cost_usd": 0.001}``).

    Attributes:
        calls: ``(rubric, evidence)`` of every call, in order.

    Example:
        >>> judge = RecordingJudge(lambda rubric, ev: [1] * len(rubric.criteria), name="all-yes")
    """

    def __init__(
        self,
        fn: ScoreFn | None = None,
        *,
        name: str = "recording-judge",
        delay_s: float = 0.0,
        usage: dict[str, Any] | None = None,
    ) -> None:
        self.fn = fn or (lambda rubric, evidence: [1] * len(rubric.criteria))
        self.name = name
        self.delay_s = delay_s
        self.usage = dict(usage or {})
        self.calls: list[tuple[Rubric, Evidence]] = []

    def _verdict(self, rubric: Rubric, out: Any) -> Verdict:
        if isinstance(out, Verdict):
            return out
        scores = list(out)
        verdicts = tuple(
            CriterionVerdict(criterion_id=c.id, score=s, reason="")
            for c, s in zip(rubric.criteria, scores, strict=False)
        )
        return Verdict(rubric=rubric.name, judge=self.name, verdicts=verdicts, usage=dict(self.usage))

    def judge(self, rubric: Rubric, evidence: Evidence) -> Verdict:
        self.calls.append((rubric, evidence))
        out = self.fn(rubric, evidence)
        if inspect.isawaitable(out):
            out = asyncio.run(out)  # type: ignore[arg-type]
        return self._verdict(rubric, out)

    async def ajudge(self, rubric: Rubric, evidence: Evidence) -> Verdict:
        self.calls.append((rubric, evidence))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        out = self.fn(rubric, evidence)
        if inspect.isawaitable(out):
            out = await out
        return self._verdict(rubric, out)


@dataclass
class SyntheticVideoGenerator:
    """A :class:`~sepsis_sdk.microbench.VideoGenerator` that ignores the prompt and writes a tiny test video.

    Attributes:
        name: generator name.
        suffix: container suffix.
        n_frames: frames per video.
        width: frame width.
        height: frame height.
        prompts: prompts received, in order.
    """

    name: str = "synthetic"
    suffix: str = ".mp4"
    n_frames: int = 24
    width: int = 64
    height: int = 48
    prompts: list[str] = field(default_factory=list)

    def generate(self, prompt: str, out_path: Path) -> Path:
        from sepsis_sdk.microbench._synth import synthesize_video

        self.prompts.append(prompt)
        return synthesize_video(out_path, n_frames=self.n_frames, width=self.width, height=self.height)
