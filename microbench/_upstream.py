"""Read the reference evaluator's output (``eval_result/<model>_result.json``) into verdict records.

So results graded with the upstream scripts can be scored, compared and reported here, in either mode.
In the project mode a score list whose length differs from the rubric is not trusted (the dimension is
recorded unscored with the reason), and neither is a score outside 0/1. Every record also keeps the judge's
list exactly as answered (``reference_scores``), so ``scoring="reference"`` reproduces the reference
scorer's numbers. The reference evaluator lists only criteria ``d1..d9`` in its prompt: for the 55
rubrics numbered ``d11..d55`` its judge answered an empty checklist. Those records are flagged ``blind``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sepsis_sdk.errors import DataError
from sepsis_sdk.microbench._data import DIMENSIONS, Benchmark, BenchTask
from sepsis_sdk.microbench._judging import record_for
from sepsis_sdk.microbench._results import VerdictRecord
from sepsis_sdk.microbench._scoring import reference_checklist


def import_upstream_results(
    path: str | Path, benchmark: Benchmark, *, model: str, judge: str = "upstream:gpt-4o"
) -> tuple[list[VerdictRecord], list[int]]:
    """Verdict records from an upstream ``<model>_result.json``.

    Args:
        path: the upstream result file (a JSON list of ``{index, video_path, scientific_eval, ...}``).
        benchmark: the tasks (for criteria, weights and categories).
        model: name of the video set.
        judge: name to record as the judge.

    Returns:
        ``(records, unknown)``: three records per known task, and task indices not in the benchmark.
        Records of ``d11..d55`` rubrics have ``blind=True`` (the judge saw an empty checklist); in the
        project mode they are scored as given when their length fits, and reports count them.

    Raises:
        DataError: the file is not JSON or not a list of objects with an integer ``index``.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{p}: cannot read upstream results ({exc})") from None
    if not isinstance(data, list):
        raise DataError(f"{p}: expected a JSON list of results")
    records: list[VerdictRecord] = []
    unknown: list[int] = []
    for i, item in enumerate(data):
        idx = item.get("index") if isinstance(item, dict) else None
        if isinstance(idx, bool) or not isinstance(idx, int):
            raise DataError(f"{p}, item {i}: 'index' must be an integer, got {idx!r}")
        if idx not in benchmark:
            unknown.append(idx)
            continue
        task = benchmark[idx]
        for dim in DIMENSIONS:
            records.append(_import_dimension(item, task, dim, model=model, judge=judge))
    return records, unknown


def _reference_list(scores: Any) -> tuple[Any, ...] | None:
    """The judge's list as the reference scorer iterates it (``None``: it drops the task)."""
    if not scores:
        return None  # missing, [] or "": no scores, the task is dropped
    if isinstance(scores, list):
        return tuple(scores)
    if isinstance(scores, (str, dict)):
        return (None,) * len(scores)  # iterated by character / key: nothing equals 1
    return None  # a bare number: the reference scorer fails on it; treated as no scores


def _import_dimension(item: dict, task: BenchTask, dim: str, *, model: str, judge: str) -> VerdictRecord:
    n = len(task.criteria(dim))
    block: Any = item.get(f"{dim}_eval") or {}
    parsed = block.get("parsed_result") if isinstance(block, dict) else None
    raw = block.get("raw_response", "") if isinstance(block, dict) else ""
    common: dict[str, Any] = {
        "model": model,
        "judge": judge,
        "video": str(item.get("video_path", "")),
        "blind": not reference_checklist([c.key for c in task.criteria(dim)]),
    }
    scores = parsed.get("scores") if isinstance(parsed, dict) else None
    common["reference_scores"] = _reference_list(scores) if parsed else None
    reasoning = parsed.get("reasoning", "") if isinstance(parsed, dict) else ""
    common["reasoning"] = reasoning if isinstance(reasoning, str) else json.dumps(reasoning)
    if not isinstance(scores, list) or not scores:
        err = "no parsed scores in the upstream result" + (f"; raw reply: {raw[:200]!r}" if raw else "")
        kind = "verdict" if raw else "judge"  # an answer that held no scores is a bad reply
        return record_for(task, dim, error=err, error_kind=kind, **common)
    if len(scores) != n:
        err = f"upstream judge gave {len(scores)} scores for {n} criteria"
        return record_for(task, dim, error=err, error_kind="verdict", **common)
    clean = [s if (s in (0, 1) and not isinstance(s, bool)) else None for s in scores]
    bad = [f"{dim}.{k + 1}={s!r}" for k, s in enumerate(scores) if clean[k] is None]
    err = f"scores outside 0/1: {', '.join(bad[:5])}" if bad else None
    return record_for(task, dim, scores=clean, error=err, error_kind="verdict" if bad else None, **common)
