"""Deterministic judges: rules as functions, and a function judge for tests."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sepsis_sdk.errors import JudgeError, UserError
from sepsis_sdk.judge._types import CriterionVerdict, Evidence, Rubric, Verdict


def _split(result: Any) -> tuple[Any, str]:
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], str):
        return result[0], result[1]
    return result, ""


class RuleJudge:
    """Decides criteria with deterministic functions of the evidence (e.g. guideline rules).

    Each rule returns whether the criterion's statement holds in the evidence: ``True`` scores 1 (for a
    penalty criterion that means the problem is present), ``False`` scores 0, ``None`` means "not
    applicable" and leaves the criterion unscored with that reason. A rule may also return
    ``(value, reason)``. A criterion without a rule, or whose rule raises, is unscored and named in
    ``Verdict.error``.

    Args:
        rules: criterion id -> ``rule(evidence)``.
        name: the judge's name in verdicts.

    Example:
        >>> from sepsis_sdk.judge import Criterion, Evidence, RuleJudge, Rubric
        >>> judge = RuleJudge({"G1": lambda ev: ev.data["map"] < 65 and ev.data["action"] == 0})
        >>> rubric = Rubric(name="guidelines", criteria=(Criterion(id="G1", text="no treatment while hypotensive", sign=-1),))
        >>> judge.judge(rubric, Evidence(data={"map": 60, "action": 0})).scores
        {'G1': 1}
    """

    def __init__(self, rules: Mapping[str, Callable[[Evidence], Any]], *, name: str = "rules") -> None:
        bad = [k for k, f in rules.items() if not callable(f)]
        if bad:
            raise UserError(f"RuleJudge rules must be callables; not callable: {bad}")
        self.rules = dict(rules)
        self.name = name

    def __repr__(self) -> str:
        return f"RuleJudge({sorted(self.rules)})"

    def judge(self, rubric: Rubric, evidence: Evidence) -> Verdict:
        """Apply each criterion's rule to ``evidence``."""
        verdicts: list[CriterionVerdict] = []
        errors: list[str] = []
        for c in rubric.criteria:
            rule = self.rules.get(c.id)
            if rule is None:
                verdicts.append(CriterionVerdict(criterion_id=c.id, score=None, reason="unscored: no rule"))
                errors.append(f"{c.id}: no rule for this criterion")
                continue
            try:
                value, reason = _split(rule(evidence))
            except Exception as exc:
                verdicts.append(
                    CriterionVerdict(criterion_id=c.id, score=None, reason=f"unscored: rule raised {exc!r}")
                )
                errors.append(f"{c.id}: rule raised {type(exc).__name__}: {exc}")
                continue
            if value is None:
                verdicts.append(
                    CriterionVerdict(criterion_id=c.id, score=None, reason=reason or "not applicable")
                )
                continue
            if not isinstance(value, (bool, int)) or value not in (0, 1):
                verdicts.append(
                    CriterionVerdict(
                        criterion_id=c.id, score=None, reason=f"unscored: rule returned {value!r}"
                    )
                )
                errors.append(f"{c.id}: rule returned {value!r}, expected bool or None")
                continue
            verdicts.append(CriterionVerdict(criterion_id=c.id, score=int(bool(value)), reason=reason))
        return Verdict(
            rubric=rubric.name,
            judge=self.name,
            verdicts=tuple(verdicts),
            error="; ".join(errors) if errors else None,
        )

    async def ajudge(self, rubric: Rubric, evidence: Evidence) -> Verdict:
        """Same as :meth:`judge` (rules are cheap and synchronous)."""
        return self.judge(rubric, evidence)


class FunctionJudge:
    """A judge whose decisions come from ``fn(rubric, evidence)`` (sync or async); handy in tests.

    ``fn`` may return a :class:`Verdict`, a mapping ``criterion id -> 0 | 1 | None | (score, reason)``
    (missing ids are unscored), or a sequence of scores in rubric order (its length must match).

    Example:
        >>> from sepsis_sdk.judge import Criterion, Evidence, FunctionJudge, Rubric
        >>> judge = FunctionJudge(lambda rubric, evidence: [1])
        >>> judge.judge(Rubric(name="r", criteria=(Criterion(id="a", text="A"),)), Evidence()).scores
        {'a': 1}
    """

    def __init__(self, fn: Callable[[Rubric, Evidence], Any], *, name: str = "function") -> None:
        if not callable(fn):
            raise UserError(f"FunctionJudge needs a callable, got {fn!r}")
        self.fn = fn
        self.name = name

    def _coerce(self, rubric: Rubric, out: Any) -> Verdict:
        if isinstance(out, Verdict):
            return out
        ids = [c.id for c in rubric.criteria]
        if isinstance(out, Mapping):
            unknown = set(out) - set(ids)
            if unknown:
                raise JudgeError(
                    f"judge {self.name!r} scored unknown criteria {sorted(unknown)} of rubric {rubric.name!r}"
                )
            pairs = [_split(out.get(i)) for i in ids]
        elif isinstance(out, Sequence) and not isinstance(out, (str, bytes)):
            if len(out) != len(ids):
                raise JudgeError(
                    f"judge {self.name!r} returned {len(out)} scores for {len(ids)} criteria of rubric {rubric.name!r}"
                )
            pairs = [_split(v) for v in out]
        else:
            raise JudgeError(
                f"judge {self.name!r} returned {type(out).__name__}; expected Verdict, mapping or sequence"
            )
        verdicts = []
        for cid, (value, reason) in zip(ids, pairs, strict=True):
            if value is not None and (not isinstance(value, (bool, int)) or value not in (0, 1)):
                raise JudgeError(
                    f"judge {self.name!r}: criterion {cid!r} scored {value!r}, expected 0, 1 or None"
                )
            verdicts.append(
                CriterionVerdict(
                    criterion_id=cid,
                    score=None if value is None else int(value),
                    reason=reason or ("" if value is not None else "unscored"),
                )
            )
        return Verdict(rubric=rubric.name, judge=self.name, verdicts=tuple(verdicts))

    def judge(self, rubric: Rubric, evidence: Evidence) -> Verdict:
        """Call ``fn`` and validate its answer."""
        out = self.fn(rubric, evidence)
        if inspect.isawaitable(out):
            import asyncio

            out = asyncio.run(_await(out))
        return self._coerce(rubric, out)

    async def ajudge(self, rubric: Rubric, evidence: Evidence) -> Verdict:
        """Async :meth:`judge`."""
        out = self.fn(rubric, evidence)
        if inspect.isawaitable(out):
            out = await out
        return self._coerce(rubric, out)


async def _await(awaitable: Any) -> Any:
    return await awaitable


__all__ = ["FunctionJudge", "RuleJudge"]
