"""RuleJudge and FunctionJudge: deterministic verdicts, not-applicable and failures left unscored."""

from __future__ import annotations

import pytest

from sepsis_sdk.errors import JudgeError, UserError
from sepsis_sdk.judge import Criterion, Evidence, FunctionJudge, Judge, Rubric, RuleJudge, Verdict

GUIDELINES = Rubric(
    name="guidelines",
    criteria=(
        Criterion(id="G1", text="No treatment while lactate > 2 or MAP < 65", sign=-1, dimension="safety"),
        Criterion(id="G2", text="Vasopressor raised while MAP >= 65", sign=-1, dimension="safety"),
        Criterion(id="fluids", text="Fluids given for hypoperfusion", sign=1),
    ),
)


def g1(ev: Evidence):
    d = ev.data
    return (d["lactate"] > 2 or d["map"] < 65) and d["fluid"] == 0 and d["vaso"] == 0


def g2(ev: Evidence):
    d = ev.data
    if d.get("prev_vaso") is None:
        return None, "first step: no previous dose"
    return d["map"] >= 65 and d["vaso"] > d["prev_vaso"]


def test_rule_judge_scores_penalties_and_not_applicable():
    judge = RuleJudge({"G1": g1, "G2": g2, "fluids": lambda ev: (ev.data["fluid"] > 0, "fluid level > 0")})
    assert isinstance(judge, Judge)
    v = judge.judge(GUIDELINES, Evidence(data={"lactate": 3.1, "map": 60, "fluid": 0, "vaso": 0}))
    assert v.scores == {"G1": 1, "G2": None, "fluids": 0}
    assert v.verdicts[1].reason == "first step: no previous dose"
    assert v.verdicts[2].reason == "fluid level > 0"
    assert v.error is None and v.n_unscored == 1 and not v.complete
    v2 = judge.judge(
        GUIDELINES, Evidence(data={"lactate": 1.0, "map": 70, "fluid": 2, "vaso": 2, "prev_vaso": 1})
    )
    assert v2.scores == {"G1": 0, "G2": 1, "fluids": 1} and v2.complete


async def test_rule_judge_missing_rule_raising_rule_and_bad_value_are_errors():
    judge = RuleJudge({"G1": lambda ev: ev.data["missing"], "G2": lambda ev: 0.5})
    v = await judge.ajudge(GUIDELINES, Evidence())
    assert v.scores == {"G1": None, "G2": None, "fluids": None}
    assert "G1: rule raised KeyError" in v.error and "G2: rule returned 0.5" in v.error
    assert "fluids: no rule" in v.error
    with pytest.raises(UserError):
        RuleJudge({"G1": "not callable"})  # type: ignore[dict-item]


def test_function_judge_accepts_mapping_sequence_and_verdict():
    mapping = FunctionJudge(lambda r, e: {"G1": 1, "G2": (0, "fine")})
    v = mapping.judge(GUIDELINES, Evidence())
    assert v.scores == {"G1": 1, "G2": 0, "fluids": None} and v.verdicts[1].reason == "fine"
    assert FunctionJudge(lambda r, e: [0, 1, True]).judge(GUIDELINES, Evidence()).scores == {
        "G1": 0,
        "G2": 1,
        "fluids": 1,
    }
    fixed = Verdict(rubric="guidelines", judge="x", verdicts=())
    assert FunctionJudge(lambda r, e: fixed).judge(GUIDELINES, Evidence()) is fixed


async def test_function_judge_async_fn_and_validation():
    async def fn(rubric, evidence):
        return [1, 1, 0]

    assert (await FunctionJudge(fn).ajudge(GUIDELINES, Evidence())).scores == {"G1": 1, "G2": 1, "fluids": 0}
    with pytest.raises(JudgeError, match="2 scores for 3 criteria"):
        FunctionJudge(lambda r, e: [1, 0]).judge(GUIDELINES, Evidence())
    with pytest.raises(JudgeError, match="unknown criteria"):
        FunctionJudge(lambda r, e: {"G9": 1}).judge(GUIDELINES, Evidence())
    with pytest.raises(JudgeError, match="scored 2"):
        FunctionJudge(lambda r, e: [2, 0, 0]).judge(GUIDELINES, Evidence())
