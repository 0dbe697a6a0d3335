"""Scoring exactly as published, checked against hand-computed cases; coverage; judge agreement."""

from __future__ import annotations

import pytest

from sepsis_sdk.microbench import (
    VerdictRecord,
    agreement,
    cohen_kappa,
    score_dimension,
    score_task,
    summarize,
)


def test_positive_and_penalty_points():
    # S = 1*1.0 + 0*0.5 + 1*0.2 - 1*0.5 = 0.7 ; positive total = 1.7 ; norm = 0.7 / 1.7 * 100
    d = score_dimension([1, 0, 1, 1], [1.0, 0.5, 0.2, 0.5], [1, 1, 1, -1])
    assert d.raw == pytest.approx(0.7)
    assert d.positive_total == pytest.approx(1.7)
    assert d.norm == pytest.approx(41.17647, abs=1e-4)


def test_penalty_not_shown_costs_nothing_and_all_met_is_100():
    d = score_dimension([1, 1, 0], [0.5, 0.5, 1.0], ["+1", "+1", "-1"])
    assert (d.raw, d.positive_total, d.norm) == (1.0, 1.0, 100.0)


def test_zero_weights_count_nothing():
    # the zero-weight positive point neither adds to S nor to the positive total
    d = score_dimension([1, 0, 1], [0.5, 0.5, 0.0], [1, 1, 1])
    assert (d.raw, d.positive_total, d.norm) == (0.5, 1.0, 50.0)
    # a zero-weight penalty shown costs nothing
    d = score_dimension([1, 1], [1.0, 0.0], [1, -1])
    assert d.norm == 100.0


def test_string_weights_and_signs_as_upstream_writes_them():
    d = score_dimension([1, 1, 0], ["1.0", "2", "1."], ["+1", "-1", "+1"])
    # S = 1 - 2 = -1 ; positive total = 2 ; clamped to 0
    assert d.raw == -1.0 and d.positive_total == 2.0 and d.norm == 0.0


def test_negative_totals_clamp_to_zero():
    d = score_dimension([0, 0, 1], [0.5, 0.5, 2.0], [1, 1, -1])
    assert d.raw == -2.0 and d.norm == 0.0


def test_unscored_criterion_makes_the_dimension_missing_never_zero():
    assert score_dimension([1, None, 0], [1, 1, 1], [1, 1, 1]) is None
    with pytest.raises(ValueError, match="lengths differ"):
        score_dimension([1], [1, 1], [1, 1])
    with pytest.raises(ValueError, match="score must be"):
        score_dimension([2], [1], [1])
    with pytest.raises(ValueError, match="sign"):
        score_dimension([1], [1], [0])


def test_no_positive_weight_is_undefined_not_zero():
    d = score_dimension([0, 1], [0.0, 1.0], [1, -1])
    assert d.positive_total == 0.0 and d.norm is None and d.raw == -1.0


def test_task_pools_the_three_dimensions():
    sci = score_dimension([1, 0], [1.0, 1.0], [1, 1])  # 1 / 2
    vis = score_dimension([1, 1], [0.5, 0.5], [1, -1])  # 0 / 0.5 -> 0
    ins = score_dimension([1, 1], [1.0, 0.5], [1, 1])  # 1.5 / 1.5
    t = score_task(1, "Organ-level", {"scientific": sci, "visual": vis, "instruction": ins})
    # pooled: (1 + 0 + 1.5) / (2 + 0.5 + 1.5) = 2.5 / 4 = 62.5  (not the mean of 50, 0, 100)
    assert t.total == pytest.approx(62.5)
    assert [t.dimensions[d].norm for d in ("scientific", "visual", "instruction")] == [50.0, 0.0, 100.0]
    # pooling clamps only the total: a dimension's negative raw still pulls the pool down
    neg = score_dimension([0, 1], [1.0, 3.0], [1, -1])  # -3 / 1 -> 0
    t2 = score_task(2, None, {"scientific": sci, "visual": neg, "instruction": ins})
    assert t2.total == pytest.approx(max(0, (1 - 3 + 1.5) / (2 + 1 + 1.5)) * 100)


def _rec(
    task,
    dim,
    scores,
    *,
    model="m",
    judge="j",
    weights=None,
    signs=None,
    category="Organ-level",
    error=None,
    kind=None,
):
    n = len(scores)
    return VerdictRecord(
        model=model,
        judge=judge,
        task=task,
        dimension=dim,
        category=category,
        criterion_ids=tuple(f"{dim}.{i + 1}" for i in range(n)),
        signs=tuple(signs or [1] * n),
        weights=tuple(weights or [1.0] * n),
        scores=tuple(scores),
        error=error,
        error_kind=kind,
        usage={"prompt_tokens": 100, "completion_tokens": 10, "cost_usd": 0.01, "calls": 1},
    )


def test_summary_tables_and_coverage():
    recs = []
    # task 1 (Organ): all met -> 100 in every dimension
    for d in ("scientific", "visual", "instruction"):
        recs.append(_rec(1, d, [1, 1]))
    # task 2 (Cellular): sci 1/2, vis 0/2, ins 2/2 -> pooled 3/6 = 50
    recs += [
        _rec(2, "scientific", [1, 0], category="Cellular-level"),
        _rec(2, "visual", [0, 0], category="Cellular-level"),
        _rec(2, "instruction", [1, 1], category="Cellular-level"),
    ]
    # task 3: one criterion unscored -> excluded
    recs += [_rec(3, d, [1, 1]) for d in ("scientific", "visual")]
    recs.append(_rec(3, "instruction", [1, None], error="verdict does not fit", kind="verdict"))
    # task 4: a dimension missing -> excluded
    recs += [_rec(4, d, [1, 1]) for d in ("scientific", "visual")]
    # a second judge on task 1 only
    recs += [_rec(1, d, [1, 0], judge="k") for d in ("scientific", "visual", "instruction")]
    (sj, sk) = summarize(recs, n_tasks=10)
    assert (sj.judge, sk.judge) == ("j", "k")  # sorted best first: j 75, k 50
    assert sj.valid_tasks == 2 and sj.coverage == pytest.approx(0.2)
    assert sj.overall == pytest.approx(75.0)
    assert sj.per_dimension == pytest.approx({"scientific": 75.0, "visual": 50.0, "instruction": 100.0})
    assert sj.per_category["Organ-level"] == 100.0 and sj.per_category["Cellular-level"] == 50.0
    assert sj.per_category["Subcellular-level"] is None
    assert sj.category_counts == {"Organ-level": 1, "Cellular-level": 1, "Subcellular-level": 0}
    assert sj.unscored_criteria == 1 and sj.errors == {"verdict": 1}
    assert sj.usage["prompt_tokens"] == 100 * 11 and sj.usage["cost_usd"] == pytest.approx(0.11)
    assert sk.valid_tasks == 1 and sk.overall == pytest.approx(50.0)
    row = sj.as_row()
    assert row["coverage"] == 0.2 and row["Organ-level"] == 100.0 and row["cost_usd"] == pytest.approx(0.11)


def test_summary_keeps_models_apart():
    recs = [_rec(1, d, [1, 1], model="a") for d in ("scientific", "visual", "instruction")]
    recs += [_rec(1, d, [0, 1], model="b") for d in ("scientific", "visual", "instruction")]
    out = {s.model: s.overall for s in summarize(recs)}
    assert out == {"a": 100.0, "b": 50.0}


def test_undefined_dimension_is_left_out_of_its_mean_only():
    recs = [
        _rec(1, "scientific", [1, 0]),
        _rec(1, "visual", [0], weights=[1.0], signs=[-1]),  # no positive weight: undefined
        _rec(1, "instruction", [1, 1]),
    ]
    (s,) = summarize(recs)
    assert s.valid_tasks == 1 and s.overall == pytest.approx(3 / 4 * 100)
    assert s.per_dimension["visual"] is None and s.undefined == {"visual": 1}


def test_cohen_kappa_hand_computed():
    a = [1, 1, 0, 0, 1, 0, 1, 1, 0, 1]
    b = [1, 0, 0, 0, 1, 1, 1, 1, 0, 1]
    # po = 8/10 ; pa1 = .6, pb1 = .6 ; pe = .36 + .16 = .52 ; kappa = (.8 - .52) / .48
    assert cohen_kappa(a, b) == pytest.approx(0.28 / 0.48)
    assert cohen_kappa([1, 1], [1, 1]) is None  # chance agreement 1: undefined
    assert cohen_kappa([1, 0], [0, 1]) == pytest.approx(-1.0)
    assert cohen_kappa([], []) is None


def test_agreement_per_dimension_over_commonly_scored_criteria():
    recs = [
        _rec(1, "scientific", [1, 1, 0, 0], judge="a"),
        _rec(1, "scientific", [1, 0, 0, 1], judge="b"),
        _rec(1, "visual", [1, 0], judge="a"),
        _rec(1, "visual", [1, None], judge="b"),  # unscored: not compared
    ]
    rows = {r.dimension: r for r in agreement(recs)}
    assert (rows["scientific"].n, rows["scientific"].percent) == (4, 50.0)
    assert rows["scientific"].kappa == pytest.approx(0.0)
    assert (rows["visual"].n, rows["visual"].percent, rows["visual"].kappa) == (1, 100.0, None)
    assert rows["instruction"].n == 0 and rows["instruction"].percent is None
    assert rows["all"].n == 5 and rows["all"].percent == pytest.approx(60.0)


def test_import_upstream_results_validates_lengths(tmp_path):
    import json

    from sepsis_sdk.microbench import Benchmark, import_upstream_results
    from sepsis_sdk.microbench._data import BenchCriterion, BenchTask

    def crits(dim, n):
        return tuple(
            BenchCriterion(dimension=dim, key=str(k), position=k, text=f"t{k}", sign=1, weight=1.0)
            for k in range(1, n + 1)
        )

    bench = Benchmark(
        tasks=tuple(
            BenchTask(index=i, task="t", category="Organ-level", scientific=crits("scientific", 2),
                      visual=crits("visual", 2), instruction=crits("instruction", 2))
            for i in (1, 2)
        )
    )  # fmt: skip

    def ev(scores):
        return {"raw_response": "...", "parsed_result": {"scores": scores, "reasoning": "r"}}

    data = [
        {"index": 1, "video_path": "./M/1.mp4", "scientific_eval": ev([1, 0]), "visual_eval": ev([1, 1]),
         "instruction_eval": ev([0, 1])},
        {"index": 2, "scientific_eval": ev([1, 0, 1]), "visual_eval": ev([1, 5]), "instruction_eval": None},
        {"index": 9, "scientific_eval": ev([1])},
    ]  # fmt: skip
    p = tmp_path / "M_result.json"
    p.write_text(json.dumps(data))
    recs, unknown = import_upstream_results(p, bench, model="M")
    assert unknown == [9] and len(recs) == 6
    by = {(r.task, r.dimension): r for r in recs}
    assert by[(1, "scientific")].scores == (1, 0) and by[(1, "scientific")].video == "./M/1.mp4"
    assert (
        by[(2, "scientific")].scores == (None, None)
        and "3 scores for 2 criteria" in by[(2, "scientific")].error
    )
    assert by[(2, "visual")].scores == (1, None) and by[(2, "visual")].error_kind == "verdict"
    assert by[(2, "instruction")].error_kind == "judge"
    (s,) = summarize(recs, n_tasks=2)
    assert s.valid_tasks == 1 and s.overall == pytest.approx(100 * 4 / 6)
