"""MicroWorldBench loader: the real upstream files, malformed variants, and the checksum-verified fetch."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import httpx
import pytest

from sepsis_sdk.errors import DataError, UserError
from sepsis_sdk.microbench import load_benchmark
from sepsis_sdk.microbench._data import RUBRIC_FILES, TASKS_FILE, parse_rubric_file
from sepsis_sdk.microbench._fetch import SHA256, UPSTREAM_COMMIT, fetch_upstream

SHARED = Path(__file__).resolve().parents[2] / "shared" / "microworldbench"


@pytest.fixture(scope="module")
def shared_dir() -> Path:
    if not (SHARED / "MWBenchRubrics_norm.json").exists():
        pytest.skip("../shared/microworldbench not present")
    return SHARED


@pytest.fixture(scope="module")
def bench(shared_dir):
    return load_benchmark(shared_dir)


# ------------------------------------------------------------------------------------ the real files


def test_real_files_give_459_tasks_and_6884_criteria(bench):
    assert len(bench) == 459
    assert bench.n_criteria == 6884
    c = bench.counts()
    assert c["criteria_per_dimension"] == {"scientific": 2295, "visual": 2295, "instruction": 2294}
    assert c["categories"] == {"Organ-level": 189, "Cellular-level": 238, "Subcellular-level": 32}
    assert (c["positive"], c["penalty"]) == (6289, 595)
    assert c["zero_weight"] == 884  # only the norm weights have zeros
    assert [t.index for t in bench] == list(range(1, 460))


def test_task_with_four_instruction_criteria_and_renumbered_keys(bench):
    t = bench[277]
    assert len(t.instruction) == 4 and [c.position for c in t.instruction] == [1, 2, 3, 4]
    # task 2 numbers its instruction criteria 11, 22, ..., 55: positions follow the numbers
    t2 = bench[2]
    assert [c.key for c in t2.instruction] == ["11", "22", "33", "44", "55"]
    assert [c.id for c in t2.instruction] == [f"instruction.{i}" for i in range(1, 6)]


def test_weights_floats_and_strings_and_signs(bench, shared_dir):
    raw = json.loads((shared_dir / "MWBenchRubrics_norm.json").read_text(encoding="utf-8"))
    r = raw[0]["rubrics_scientific"]
    assert isinstance(r["w1"], float) and isinstance(r["w2"], str)  # the file mixes both
    t = bench[1]
    assert [c.weight for c in t.scientific] == [float(r[f"w{i}"]) for i in range(1, 6)]
    assert [c.sign for c in t.scientific] == [1 if r[f"s{i}"] == "+1" else -1 for i in range(1, 6)]
    assert t.task.startswith("Within the human brain vasculature") and t.category == "Cellular-level"
    assert "stroke" in t.requirement


def test_raw_weight_set_uses_english_file(shared_dir):
    b = load_benchmark(shared_dir, weights="raw")
    assert (len(b), b.n_criteria, b.weights) == (459, 6884, "raw")
    assert b[1].scientific[0].weight == 2.0  # "2.0" in MWBenchRubrics.json, 1.0 in the norm file
    assert b.counts()["zero_weight"] == 0
    with pytest.raises(UserError, match="weights"):
        load_benchmark(shared_dir, weights="other")  # type: ignore[arg-type]


def test_task_becomes_three_rubrics_for_the_judge(bench):
    t = bench[10]
    rubrics = t.rubrics()
    assert list(rubrics) == ["scientific", "visual", "instruction"]
    sci = rubrics["scientific"]
    assert sci.name == "mwbench.task10.scientific"
    assert [c.id for c in sci.criteria] == [c.id for c in t.scientific]
    assert [(c.sign, c.weight, c.dimension) for c in sci.criteria] == [
        (c.sign, c.weight, "scientific") for c in t.scientific
    ]
    assert "Scientific Accuracy" in sci.instructions and "penalty" in sci.instructions
    assert t.task in t.evidence_text() and t.requirement in t.evidence_text()
    with pytest.raises(UserError):
        t.criteria("colour")
    with pytest.raises(UserError, match="no MicroWorldBench task"):
        bench[999]


def test_cli_info_prints_counts(shared_dir):
    from typer.testing import CliRunner

    from sepsis_sdk.cli import app

    res = CliRunner().invoke(app, ["microbench", "info", "--source", str(shared_dir)])
    assert res.exit_code == 0, res.output
    assert "459 tasks, 6884 criteria" in res.output


# --------------------------------------------------------------------------------- malformed files


def _task(index=1, *, english=True, **dims):
    base = {"index": index}
    if english:
        base |= {"task": f"task {index}", "requirement": "req"}
    else:
        base |= {"任务": f"task {index}", "具体要求": "req"}
    for d in ("scientific", "visual", "instruction"):
        base[f"rubrics_{d}"] = dims.get(
            d, {"d1": "a", "s1": "+1", "w1": "1.0", "d2": "b", "s2": "-1", "w2": 0.5}
        )
    return base


def _write_source(tmp_path: Path, tasks: list, *, categories=None, name="MWBenchRubrics_norm.json") -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_text(json.dumps(tasks, ensure_ascii=False), encoding="utf-8")
    cats = (
        categories
        if categories is not None
        else [{"index": t["index"], "final_label": "Organ-level"} for t in tasks]
    )
    (tmp_path / TASKS_FILE).write_text(json.dumps(cats), encoding="utf-8")
    return tmp_path


def test_small_valid_source_both_key_styles(tmp_path):
    src = _write_source(tmp_path, [_task(1, english=False), _task(2, english=True)])
    b = load_benchmark(src)
    assert len(b) == 2 and b.n_criteria == 12
    assert b[1].task == "task 1" and b[2].requirement == "req"
    assert [c.weight for c in b[1].scientific] == [1.0, 0.5]
    assert [c.sign for c in b[1].scientific] == [1, -1]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda ts: ts[1].pop("index"), r"item 1, key 'index'"),
        (lambda ts: ts[1].__setitem__("index", 1), r"item 1, key 'index': duplicate task index 1"),
        (
            lambda ts: ts[0]["rubrics_visual"].__setitem__("s2", "+2"),
            r"item 0 \(task index 1\), key 'rubrics_visual.s2': sign",
        ),
        (
            lambda ts: ts[0]["rubrics_visual"].__setitem__("w1", "heavy"),
            r"item 0 \(task index 1\), key 'rubrics_visual.w1'.*not a number",
        ),
        (lambda ts: ts[0]["rubrics_visual"].__setitem__("w1", -1.0), r"rubrics_visual.w1'.*>= 0"),
        (lambda ts: ts[0]["rubrics_visual"].__setitem__("w1", float("nan")), r"rubrics_visual.w1'.*finite"),
        (lambda ts: ts[0]["rubrics_visual"].__setitem__("w1", True), r"rubrics_visual.w1'.*number"),
        (
            lambda ts: ts[1]["rubrics_instruction"].pop("s2"),
            r"item 1 \(task index 2\), key 'rubrics_instruction.s2'.*no s2",
        ),
        (
            lambda ts: ts[1]["rubrics_instruction"].pop("w2"),
            r"item 1 \(task index 2\), key 'rubrics_instruction.w2'.*no w2",
        ),
        (
            lambda ts: ts[0]["rubrics_scientific"].__setitem__("x1", "?"),
            r"key 'rubrics_scientific.x1'.*unexpected key",
        ),
        (
            lambda ts: ts[0]["rubrics_scientific"].__setitem__("d1", "  "),
            r"rubrics_scientific.d1'.*non-empty",
        ),
        (
            lambda ts: ts[0].pop("rubrics_visual"),
            r"item 0 \(task index 1\), key 'rubrics_visual': dimension missing",
        ),
        (lambda ts: ts[0].__setitem__("rubrics_visual", {}), r"key 'rubrics_visual': rubric has no criteria"),
        (lambda ts: ts[0].__setitem__("rubrics_visual", ["d1"]), r"key 'rubrics_visual': must be an object"),
        (lambda ts: ts[0].pop("task"), r"item 0 \(task index 1\), key 'task': task text missing"),
        (lambda ts: ts.append("oops"), r"item 2: task must be an object"),
    ],
)
def test_malformed_rubrics_name_file_item_and_key(tmp_path, mutate, message):
    tasks = [_task(1), _task(2)]
    mutate(tasks)
    src = _write_source(
        tmp_path,
        tasks,
        categories=[
            {"index": 1, "final_label": "Organ-level"},
            {"index": 2, "final_label": "Organ-level"},
        ],
    )
    with pytest.raises(DataError, match=message) as exc:
        load_benchmark(src)
    assert "MWBenchRubrics_norm.json" in str(exc.value)


def test_malformed_files_and_categories(tmp_path):
    with pytest.raises(DataError, match="must be a folder"):
        load_benchmark(tmp_path / "nope")
    src = _write_source(tmp_path / "a", [_task(1)])
    (src / "MWBenchRubrics_norm.json").write_text("[{", encoding="utf-8")
    with pytest.raises(DataError, match=r"MWBenchRubrics_norm.json: not valid JSON .* line 1"):
        load_benchmark(src)
    (src / "MWBenchRubrics_norm.json").write_text(json.dumps({"index": 1}), encoding="utf-8")
    with pytest.raises(DataError, match="expected a JSON list of tasks"):
        load_benchmark(src)
    src = _write_source(tmp_path / "b", [_task(1)], categories=[{"index": 1, "final_label": "Tissue-level"}])
    with pytest.raises(DataError, match=r"finaltasks.json, item 0, key 'final_label'"):
        load_benchmark(src)
    src = _write_source(
        tmp_path / "c", [_task(1), _task(2)], categories=[{"index": 1, "final_label": "Organ-level"}]
    )
    with pytest.raises(DataError, match="task index 2 has no category"):
        load_benchmark(src)
    src = _write_source(tmp_path / "d", [_task(1)])
    (src / TASKS_FILE).unlink()
    with pytest.raises(DataError, match=r"finaltasks\.json: file not found"):
        load_benchmark(src)


def test_cross_check_between_the_two_rubric_files(tmp_path):
    norm = [_task(1, english=False), _task(2, english=False)]
    eng = copy.deepcopy(norm)
    for t in eng:
        t["task"] = t.pop("任务")
        t["requirement"] = t.pop("具体要求")
    src = _write_source(tmp_path, norm)
    (src / RUBRIC_FILES["raw"]).write_text(json.dumps(eng), encoding="utf-8")
    assert len(load_benchmark(src)) == 2
    eng[1]["rubrics_visual"]["s2"] = "+1"
    (src / RUBRIC_FILES["raw"]).write_text(json.dumps(eng), encoding="utf-8")
    with pytest.raises(DataError, match=r"MWBenchRubrics.json.*task 2: criteria texts/signs differ"):
        load_benchmark(src)
    assert len(load_benchmark(src, cross_check=False)) == 2


def test_parse_accepts_upstream_weight_spellings():
    t = _task(
        1,
        scientific={
            "d1": "a",
            "s1": "+1",
            "w1": "1.",
            "d2": "b",
            "s2": "-1",
            "w2": "2",
            "d3": "c",
            "s3": 1,
            "w3": 0,
        },
    )
    raw = parse_rubric_file([t], file="x.json")
    assert [(s, w) for _, _, s, w in raw[0].dims["scientific"]] == [(1, 1.0), (-1, 2.0), (1, 0.0)]


# ------------------------------------------------------------------------------------------ fetching


def _mock_upstream(files: dict[str, bytes], hits: list[str], *, fail_first: int = 0):
    state = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        hits.append(str(request.url))
        state["n"] += 1
        if state["n"] <= fail_first:
            return httpx.Response(503)
        name = request.url.path.rsplit("/", 1)[-1]
        assert f"/FreedomIntelligence/MicroVerse/{UPSTREAM_COMMIT}/eval/" in request.url.path
        if name not in files:
            return httpx.Response(404)
        return httpx.Response(200, content=files[name])

    return httpx.MockTransport(handler)


def test_fetch_verifies_checksums_and_caches(tmp_path):
    files = {"a.json": b"[1]", "b.json": b"[2, 3]"}
    sums = {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}
    hits: list[str] = []
    cache = tmp_path / "cache"
    folder = fetch_upstream(cache, transport=_mock_upstream(files, hits, fail_first=1), files=sums)
    assert folder == cache and (cache / "a.json").read_bytes() == b"[1]"
    assert len(hits) == 3  # one 503 retried, then two files
    assert all(
        u.startswith("https://raw.githubusercontent.com/FreedomIntelligence/MicroVerse/") for u in hits
    )
    fetch_upstream(cache, transport=_mock_upstream(files, hits), files=sums)
    assert len(hits) == 3  # cached and verified: no new request
    (cache / "b.json").write_bytes(b"tampered")
    fetch_upstream(cache, transport=_mock_upstream(files, hits), files=sums)
    assert len(hits) == 4 and (cache / "b.json").read_bytes() == b"[2, 3]"  # re-fetched only the bad one


def test_fetch_refuses_a_file_with_the_wrong_checksum(tmp_path):
    files = {"a.json": b"[1]"}
    with pytest.raises(DataError, match=r"sha256 .* does not match"):
        fetch_upstream(tmp_path, transport=_mock_upstream(files, []), files={"a.json": "0" * 64})
    assert not list(tmp_path.iterdir())  # nothing half-written left behind
    with pytest.raises(DataError, match="HTTP 404"):
        fetch_upstream(tmp_path, transport=_mock_upstream({}, []), files={"a.json": "0" * 64})


def test_load_benchmark_without_source_fetches_pinned_files(tmp_path, shared_dir):
    files = {name: (shared_dir / name).read_bytes() for name in SHA256}
    hits: list[str] = []
    b = load_benchmark(None, cache_dir=tmp_path, transport=_mock_upstream(files, hits))
    assert (len(b), b.n_criteria) == (459, 6884) and len(hits) == 3
    assert {hashlib.sha256((tmp_path / n).read_bytes()).hexdigest() for n in SHA256} == set(SHA256.values())


def test_public_surface_resolves_and_import_is_light():
    import subprocess
    import sys

    import sepsis_sdk.microbench as mb

    assert mb.__all__ == sorted(mb.__all__)
    for name in mb.__all__:
        assert getattr(mb, name) is not None
    code = (
        "import sys, sepsis_sdk.microbench as mb; mb.load_benchmark; mb.score_dimension; "
        "print([m for m in ('av', 'litellm', 'matplotlib', 'cv2', 'PIL') if m in sys.modules])"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[]"


def test_cli_import_upstream_results_on_real_rubrics(shared_dir, tmp_path):
    from typer.testing import CliRunner

    from sepsis_sdk.cli import app
    from sepsis_sdk.microbench import read_records

    def ev(n):
        return {"raw_response": "{}", "parsed_result": {"scores": [1] * n, "reasoning": "r"}}

    data = [
        {"index": 1, "scientific_eval": ev(5), "visual_eval": ev(5), "instruction_eval": ev(5)},
        {
            "index": 277,
            "scientific_eval": ev(5),
            "visual_eval": ev(5),
            "instruction_eval": ev(5),
        },  # 4 instruction
    ]
    src = tmp_path / "Runway_result.json"
    src.write_text(json.dumps(data))
    out = tmp_path / "r.jsonl"
    args = ["microbench", "import-upstream", "--results", str(src), "--model", "Runway", "--out", str(out)]
    res = CliRunner().invoke(app, [*args, "--source", str(shared_dir)])
    assert res.exit_code == 0, res.output
    assert "6 verdicts imported (1 unscored or invalid)" in res.output
    bad = [r for r in read_records(out) if r.error]
    assert [(r.task, r.dimension) for r in bad] == [
        (277, "instruction")
    ] and "5 scores for 4 criteria" in bad[0].error
