"""Issue 13: ``scoring="reference"`` equals the MicroVerse scripts' rules.

Checked two ways: on hand-built cases covering each difference from the project mode (an empty
checklist, zero positive weight, an empty ``[]`` reply, values other than 0/1, lists of the wrong
length), and on random verdicts over all 459 tasks against an independent implementation of the
reference rules that reads the raw upstream JSON files directly.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from sepsis_sdk.microbench import (
    Benchmark,
    ResultsWriter,
    import_upstream_results,
    load_benchmark,
    read_records,
    score_dimension_reference,
    summarize,
    write_report,
)
from sepsis_sdk.microbench._data import BenchCriterion, BenchTask
from sepsis_sdk.microbench._judging import record_for

SHARED = Path(__file__).resolve().parents[2] / "shared" / "microworldbench"
DIMS = ("scientific", "visual", "instruction")
CATS = ("Organ-level", "Cellular-level", "Subcellular-level")


# ------------------------------------------------------------------------- an independent reference


def reference_numbers(items: list[dict], rubrics: list[dict], tasks: list[dict]) -> dict:
    """The reference scorer's numbers, from its rules, on upstream-format results and raw rubric JSON."""
    by_index = {t["index"]: t for t in rubrics}
    label = {t["index"]: t.get("final_label", "Unknown") for t in tasks}

    def norm(a: float, b: float) -> float:
        return 0.0 if b <= 0 else max(0.0, a / b * 100)

    totals: list[float] = []
    per_dim: dict[str, list[float]] = {d: [] for d in DIMS}
    per_cat: dict[str, list[float]] = {c: [] for c in CATS}
    for item in items:
        rub = by_index.get(item["index"])
        if rub is None:
            continue
        sums = []
        for dim in DIMS:
            block = item.get(f"{dim}_eval") or {}
            parsed = block.get("parsed_result")
            if not parsed or not parsed.get("scores"):
                break
            r = rub[f"rubrics_{dim}"]
            numbers = {int(k[1:]) for k in r if k.startswith("s") and k[1:].isdigit()}
            raw = top = 0.0
            for number, value in enumerate(parsed["scores"], start=1):
                if number not in numbers:
                    continue
                sign = 1 if str(r[f"s{number}"]) in ("+1", "1") else -1
                weight = float(r.get(f"w{number}", 0))
                raw += sign * weight if value == 1 else 0.0
                top += weight if sign > 0 else 0.0
            sums.append((raw, top))
        else:
            total = norm(sum(a for a, _ in sums), sum(b for _, b in sums))
            totals.append(total)
            for dim, (a, b) in zip(DIMS, sums, strict=True):
                per_dim[dim].append(norm(a, b))
            if label.get(item["index"]) in per_cat:
                per_cat[label[item["index"]]].append(total)

    def avg(xs):
        return sum(xs) / len(xs) if xs else None

    return {
        "valid": len(totals),
        "overall": avg(totals),
        **{d: avg(v) for d, v in per_dim.items()},
        **{c: avg(v) for c, v in per_cat.items()},
    }


def ours(summary) -> dict:
    return {
        "valid": summary.valid_tasks,
        "overall": summary.overall,
        **summary.per_dimension,
        **summary.per_category,
    }


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if a[k] is None or b[k] is None:
            assert a[k] == b[k], k
        else:
            assert a[k] == pytest.approx(b[k], abs=1e-9), k


# ------------------------------------------------------------------------- hand-built cases


def _task(i: int, *, instruction_keys=("1", "2"), weights=None, category="Organ-level") -> BenchTask:
    weights = weights or {}

    def crits(dim, spec, keys=None):
        keys = keys or [str(k) for k in range(1, len(spec) + 1)]
        return tuple(
            BenchCriterion(dimension=dim, key=key, position=p, text=f"{dim} {key}", sign=s, weight=w)
            for p, (key, (s, w)) in enumerate(zip(keys, spec, strict=True), start=1)
        )

    return BenchTask(
        index=i,
        task="t",
        category=category,
        scientific=crits("scientific", weights.get("scientific", [(1, 1.0), (1, 1.0), (-1, 1.0)])),
        visual=crits("visual", weights.get("visual", [(1, 1.0), (1, 1.0)])),
        instruction=crits(
            "instruction",
            weights.get("instruction", [(1, 1.0)] * len(instruction_keys)),
            list(instruction_keys),
        ),
    )


def test_reference_dimension_rule_reads_by_number_and_counts_only_ones():
    keys, w, g = ["1", "2", "3"], [1.0, 2.0, 1.0], [1, 1, -1]
    d = score_dimension_reference([1, 1, 0], keys, w, g)
    assert (d.raw, d.positive_total, d.norm) == (3.0, 3.0, 100.0)
    # 2, -1, "1" and None score nothing; true and 1.0 count (Python's == 1)
    assert score_dimension_reference([2, -1, 1], keys, w, g).raw == -1.0
    assert score_dimension_reference([True, 1.0, "1"], keys, w, g).raw == 3.0
    # a short list leaves the rest out of both sums; a long one's extra entries are ignored
    d = score_dimension_reference([1], keys, w, g)
    assert (d.raw, d.positive_total, d.norm) == (1.0, 1.0, 100.0)
    assert score_dimension_reference([1, 0, 0, 1, 1], keys, w, g).raw == 1.0
    # the d11..d55 rubrics: no list entry has their numbers, so 0/0 -> 0 (not undefined)
    d = score_dimension_reference([1, 1, 1, 1, 1], ["11", "22", "33", "44", "55"], [1.0] * 5, [1] * 5)
    assert (d.raw, d.positive_total, d.norm) == (0.0, 0.0, 0.0)
    # no reply, or an empty list: the task is dropped
    assert score_dimension_reference([], keys, w, g) is None
    assert score_dimension_reference(None, keys, w, g) is None


def _records(task: BenchTask, scores: dict[str, list], **kw) -> list:
    return [record_for(task, d, model="m", judge="j", video="v", scores=scores[d], **kw) for d in DIMS]


def test_empty_checklist_rubric_scores_zero_over_zero_in_reference_mode():
    task = _task(1, instruction_keys=("11", "22", "33", "44", "55"))
    recs = _records(task, {"scientific": [1, 0, 0], "visual": [1, 1], "instruction": [1, 1, 0, 0, 0]})
    (p,) = summarize(recs, n_tasks=1)
    (r,) = summarize(recs, n_tasks=1, scoring="reference")
    # project: (1 + 2 + 2) / (2 + 2 + 5) ; instruction 2/5
    assert p.overall == pytest.approx(100 * 5 / 9) and p.per_dimension["instruction"] == pytest.approx(40.0)
    # reference: instruction 0/0 -> 0, pooled (1 + 2) / (2 + 2)
    assert r.overall == pytest.approx(75.0) and r.per_dimension["instruction"] == 0.0
    assert r.scoring == "reference" and p.scoring == "project"


def test_zero_positive_weight_counts_as_zero_in_reference_means():
    flat = _task(1, weights={"visual": [(1, 0.0), (-1, 1.0)]})
    normal = _task(2)
    recs = _records(flat, {"scientific": [1, 1, 0], "visual": [1, 0], "instruction": [1, 1]})
    recs += _records(normal, {"scientific": [1, 1, 0], "visual": [1, 0], "instruction": [1, 1]})
    (p,) = summarize(recs, n_tasks=2)
    (r,) = summarize(recs, n_tasks=2, scoring="reference")
    assert p.per_dimension["visual"] == pytest.approx(50.0) and p.undefined == {"visual": 1}  # left out
    assert r.per_dimension["visual"] == pytest.approx(25.0)  # (0 + 50) / 2
    # a task whose pooled positive total is 0 is valid (score 0) upstream, not valid here
    nothing = _task(3, weights={d: [(1, 0.0)] * n for d, n in zip(DIMS, (3, 2, 2), strict=True)})
    recs = _records(nothing, {"scientific": [1, 1, 1], "visual": [1, 1], "instruction": [1, 1]})
    assert summarize(recs, n_tasks=1)[0].valid_tasks == 0
    (r,) = summarize(recs, n_tasks=1, scoring="reference")
    assert r.valid_tasks == 1 and r.overall == 0.0


def _upstream_item(index: int, lists: dict[str, list | None]) -> dict:
    item: dict = {"index": index, "video_path": f"./M/{index}.mp4"}
    for d, scores in lists.items():
        if scores is None:
            item[f"{d}_eval"] = {"raw_response": "not json", "parsed_result": None}
        else:
            item[f"{d}_eval"] = {
                "raw_response": json.dumps({"scores": scores}),
                "parsed_result": {"scores": scores},
            }
    return item


def test_empty_reply_drops_the_task_and_blind_verdicts_are_flagged(tmp_path):
    blind = _task(1, instruction_keys=("11", "22", "33", "44", "55"), category="Cellular-level")
    seen = _task(2, instruction_keys=("11", "22", "33", "44", "55"), category="Cellular-level")
    plain = _task(3)
    bench = Benchmark(tasks=(blind, seen, plain))
    data = [
        _upstream_item(
            1, {"scientific": [1, 1, 0], "visual": [1, 1], "instruction": []}
        ),  # [] to an empty list
        _upstream_item(2, {"scientific": [1, 1, 0], "visual": [1, 0], "instruction": [1, 1, 1, 0, 0]}),
        _upstream_item(3, {"scientific": [1, 2, -1], "visual": [1, 1, 1], "instruction": [1]}),
    ]
    path = tmp_path / "M_result.json"
    path.write_text(json.dumps(data))
    recs, _ = import_upstream_results(path, bench, model="M")
    out = tmp_path / "r.jsonl"
    with ResultsWriter(out) as w:
        w.extend(recs)
    recs = read_records(out)  # the raw lists survive the results file
    by = {(r.task, r.dimension): r for r in recs}
    assert by[(1, "instruction")].blind and by[(2, "instruction")].blind and not by[(2, "visual")].blind
    assert (
        by[(2, "instruction")].reference_scores == (1, 1, 1, 0, 0)
        and by[(1, "instruction")].reference_scores is None
    )
    (r,) = summarize(recs, n_tasks=3, scoring="reference")
    # task 1 dropped ([]); task 2: (2 + 1 + 0) / (2 + 2 + 0); task 3: sci 1 (2, -1 score nothing), vis 2 (3rd ignored),
    # instruction 1 of a list shorter than the rubric -> (1 + 2 + 1) / (2 + 2 + 1)
    assert r.valid_tasks == 2 and [t.task for t in r.task_scores] == [2, 3]
    assert r.task_scores[0].total == pytest.approx(75.0) and r.task_scores[1].total == pytest.approx(80.0)
    assert r.blind_tasks == 1 and r.task_scores[0].blind
    (p,) = summarize(recs, n_tasks=3)
    # project: task 2 scored as given (flagged): (2 + 1 + 3) / (2 + 2 + 5); task 3 has bad values -> unscored
    assert p.valid_tasks == 1 and p.overall == pytest.approx(100 * 6 / 9) and p.blind_tasks == 1
    files = write_report(recs, tmp_path / "rep", n_tasks=3, plots=False, scoring="reference")
    md = files.markdown.read_text()
    assert "Scoring: **reference**" in md and "empty checklist" in md
    assert "blind" in (tmp_path / "rep" / "tasks.csv").read_text().splitlines()[0]


def test_import_upstream_one_blind_task_in_both_modes(tmp_path):
    """One task whose instruction rubric is numbered d11..d55: the blind verdict drags the project score
    down; the reference ignores it (the issue quotes 70.69 vs 75.51 for one such task)."""
    task = _task(7, instruction_keys=("11", "22", "33", "44", "55"), category="Organ-level",
                 weights={"scientific": [(1, 1.0), (1, 0.5), (-1, 1.0)], "visual": [(1, 1.0), (1, 1.0)],
                          "instruction": [(1, 1.0)] * 5})  # fmt: skip
    path = tmp_path / "M_result.json"
    item = _upstream_item(7, {"scientific": [1, 1, 0], "visual": [1, 1], "instruction": [1, 0, 0, 0, 0]})
    path.write_text(json.dumps([item]))
    recs, _ = import_upstream_results(path, Benchmark(tasks=(task,)), model="M")
    (p,) = summarize(recs, n_tasks=1)
    (r,) = summarize(recs, n_tasks=1, scoring="reference")
    assert p.overall == pytest.approx(100 * 4.5 / 8.5) and r.overall == pytest.approx(100.0)
    assert p.blind_tasks == r.blind_tasks == 1


def test_unknown_scoring_mode_is_refused():
    from sepsis_sdk.errors import UserError

    with pytest.raises(UserError, match="scoring"):
        summarize([], scoring="paper")


# ------------------------------------------------------------------------- random verdicts, 459 tasks


@pytest.fixture(scope="module")
def upstream():
    if not SHARED.is_dir():
        pytest.skip("../shared/microworldbench not present")
    rubrics = json.loads((SHARED / "MWBenchRubrics_norm.json").read_text(encoding="utf-8"))
    english = json.loads((SHARED / "MWBenchRubrics.json").read_text(encoding="utf-8"))
    tasks = json.loads((SHARED / "finaltasks.json").read_text(encoding="utf-8"))
    return rubrics, english, tasks, load_benchmark(SHARED)


def _checklist(rubric: dict) -> list[int]:
    """What the reference prompt lists: d1..d9 only."""
    return [i for i in range(1, 10) if f"d{i}" in rubric and f"s{i}" in rubric]


def random_reference_run(english: list[dict], seed: int) -> list[dict]:
    """Upstream-format results as the reference evaluator writes them, with a random judge: one 0/1 per
    listed point, `[]` for most empty checklists, and now and then a failed video, a wrong length, a 2 or
    -1, a `true`, or a reply without JSON."""
    rng = random.Random(seed)
    items = []
    for t in english:
        if rng.random() < 0.12:  # the video failed: the reference writes no item
            continue
        lists: dict[str, list | None] = {}
        for d in DIMS:
            n = len(_checklist(t[f"rubrics_{d}"]))
            if n == 0:
                lists[d] = [] if rng.random() < 0.8 else [rng.randint(0, 1) for _ in range(5)]
                continue
            scores = [rng.randint(0, 1) for _ in range(n)]
            u = rng.random()
            if u < 0.03:
                scores = scores[:-1]
            elif u < 0.05:
                scores.append(1)
            elif u < 0.07:
                scores[rng.randrange(n)] = rng.choice([2, -1])
            elif u < 0.08:
                scores[rng.randrange(n)] = True
            elif u < 0.09:
                scores = None
            lists[d] = scores
        items.append(_upstream_item(t["index"], lists))
    return items


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reference_mode_equals_the_reference_rules_on_random_upstream_results(upstream, tmp_path, seed):
    rubrics, english, tasks, bench = upstream
    items = random_reference_run(english, seed)
    want = reference_numbers(items, rubrics, tasks)
    path = tmp_path / "R_result.json"
    path.write_text(json.dumps(items))
    recs, unknown = import_upstream_results(path, bench, model="R")
    assert not unknown
    out = tmp_path / "r.jsonl"
    with ResultsWriter(out) as w:
        w.extend(recs)
    (r,) = summarize(read_records(out), n_tasks=459, scoring="reference")
    assert_same(ours(r), want)
    (p,) = summarize(read_records(out), n_tasks=459)
    assert p.valid_tasks < r.valid_tasks  # the project does not trust wrong lengths or 2 / -1
    assert r.blind_tasks > 0


@pytest.mark.parametrize("seed", [0, 1])
def test_reference_mode_on_a_project_graded_random_run(upstream, seed):
    """Records graded here (every criterion shown), random verdicts and random failures: the reference
    rules applied to the same lists give the reference-mode numbers; the project's instruction mean is
    higher because the 50 instruction rubrics numbered d11..d55 are graded for real."""
    rubrics, _english, tasks, bench = upstream
    rng = random.Random(100 + seed)
    recs, items = [], []
    for t in bench:
        lists = {}
        for d in DIMS:
            n = len(t.criteria(d))
            if rng.random() < 0.05:  # a failed judge call: unscored here, no item upstream
                recs.append(
                    record_for(t, d, model="P", judge="j", video="v", error="down", error_kind="judge")
                )
                lists[d] = None
            else:
                scores = [rng.randint(0, 1) for _ in range(n)]
                recs.append(record_for(t, d, model="P", judge="j", video="v", scores=scores))
                lists[d] = scores
        if all(v is not None for v in lists.values()):
            items.append(_upstream_item(t.index, lists))
    want = reference_numbers(items, rubrics, tasks)
    (r,) = summarize(recs, n_tasks=459, scoring="reference")
    (p,) = summarize(recs, n_tasks=459)
    assert_same(ours(r), want)
    assert p.valid_tasks == r.valid_tasks == len(items)
    assert p.per_dimension["instruction"] > r.per_dimension["instruction"] + 2
    assert p.overall != pytest.approx(r.overall)


def test_cli_report_and_import_upstream_in_both_modes(upstream, tmp_path):
    from typer.testing import CliRunner

    from sepsis_sdk.cli import app

    rubrics, english, tasks, _bench = upstream
    items = random_reference_run(english, 5)
    src = tmp_path / "R_result.json"
    src.write_text(json.dumps(items))
    out = tmp_path / "r.jsonl"
    args = ["microbench", "import-upstream", "--results", str(src), "--model", "R", "--out", str(out)]
    res = CliRunner().invoke(app, [*args, "--source", str(SHARED)])
    assert res.exit_code == 0, res.output
    want = reference_numbers(items, rubrics, tasks)
    assert f"reference scoring: overall {want['overall']:.2f} over {want['valid']} valid tasks" in res.output
    assert "blind verdicts" in res.output
    rep = tmp_path / "rep"
    cmd = [
        "microbench",
        "report",
        "--results",
        str(out),
        "--out",
        str(rep),
        "--no-plots",
        "--scoring",
        "reference",
    ]
    res = CliRunner().invoke(app, cmd)
    assert res.exit_code == 0, res.output
    assert "Scoring: **reference**" in res.output and f"| {want['overall']:.1f} |" in res.output
    res = CliRunner().invoke(app, [*cmd[:-1], "paper"])
    assert res.exit_code == 2 and "scoring" in res.output


def test_empty_checklist_drop_assumption_for_rubrics_graded_here():
    blind = _task(1, instruction_keys=("11", "22", "33", "44", "55"))
    recs = _records(blind, {"scientific": [1, 0, 0], "visual": [1, 1], "instruction": [1, 1, 0, 0, 0]})
    recs += _records(_task(2), {"scientific": [1, 0, 0], "visual": [1, 1], "instruction": [1, 1]})
    assert summarize(recs, n_tasks=2, scoring="reference")[0].valid_tasks == 2
    (r,) = summarize(recs, n_tasks=2, scoring="reference", empty_checklist="drop")
    assert r.valid_tasks == 1 and r.task_scores[0].task == 2
    assert summarize(recs, n_tasks=2, empty_checklist="drop")[0].valid_tasks == 2  # project mode ignores it
