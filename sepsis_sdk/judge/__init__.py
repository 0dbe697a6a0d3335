"""Judges: one abstraction for the agent's refine step and for MicroWorldBench.

A :class:`Judge` reads a :class:`Rubric` and :class:`Evidence` and returns a :class:`Verdict` with one
:class:`CriterionVerdict` per criterion; invalid or missing decisions are **unscored** (``score=None``),
never silently 0.

Implementations: :class:`LLMJudge` (any chat model, vision included), :class:`RuleJudge` (deterministic
rules), :class:`FunctionJudge` (a function; for tests).
"""

from __future__ import annotations

from sepsis_sdk.judge._images import data_url, fit_image, image_part
from sepsis_sdk.judge._llm import (
    SYSTEM_PROMPT,
    LLMJudge,
    extract_json_object,
    parse_scores,
    verdict_response_format,
)
from sepsis_sdk.judge._rule import FunctionJudge, RuleJudge
from sepsis_sdk.judge._types import Criterion, CriterionVerdict, Evidence, Judge, Rubric, Verdict

__all__ = sorted(
    [
        "Criterion",
        "CriterionVerdict",
        "Evidence",
        "FunctionJudge",
        "Judge",
        "LLMJudge",
        "Rubric",
        "RuleJudge",
        "SYSTEM_PROMPT",
        "Verdict",
        "data_url",
        "extract_json_object",
        "fit_image",
        "image_part",
        "parse_scores",
        "verdict_response_format",
    ]
)
