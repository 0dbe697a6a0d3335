"""``sepsis-sdk microbench ...``: MicroWorldBench info, grading runs and reports."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import typer

from sepsis_sdk.cli._common import console, esc, friendly_errors, progress

app = typer.Typer(
    help="Grade generated videos against MicroWorldBench's 459 rubric tasks.", no_args_is_help=True
)

_SOURCE_HELP = "Folder with MWBenchRubrics_norm.json and finaltasks.json; default: fetch the pinned upstream files once (cached, sha256-checked)."


def make_judge(
    model: str,
    *,
    mode: str = "grouped",
    api_base: str | None = None,
    api_key: str | None = None,
    temperature: float | None = 0.0,
    max_reasks: int = 2,
    retries: int = 3,
    timeout: float | None = 180.0,
    image_quality: int = 85,
) -> Any:
    """An LLM judge over any LiteLLM vision model (``openai/gpt-4o``, ``hosted_vllm/...`` with ``api_base``).

    Without ``api_key`` LiteLLM reads the provider's own variable (``OPENAI_API_KEY`` for ``openai/``,
    ``HOSTED_VLLM_API_KEY`` for ``hosted_vllm/``, ``ANTHROPIC_API_KEY``, ...).
    """
    from sepsis_sdk.judge import LLMJudge
    from sepsis_sdk.llm import LiteLLMChat

    kwargs: dict[str, Any] = {}
    if api_base:
        kwargs["api_base"] = api_base
    if api_key:
        kwargs["api_key"] = api_key
    if temperature is not None:
        kwargs["temperature"] = temperature
    chat = LiteLLMChat(model, retries=retries, timeout=timeout, **kwargs)
    # The sampler already sized the frames (--max-side); max_image_side=None makes the judge's
    # payload-too-large shrinking start from their real size instead of from its own 1024 cap.
    return LLMJudge(chat, mode=mode, max_reasks=max_reasks, max_image_side=None, image_quality=image_quality)


@app.command("info")
def info(
    source: Path | None = typer.Option(None, "--source", help=_SOURCE_HELP),
    weights: str = typer.Option("norm", help="Weight set: norm (published scorer) or raw."),
) -> None:
    """Load the benchmark and print its counts (459 tasks, 6,884 criteria upstream)."""
    from rich.table import Table

    from sepsis_sdk.microbench import load_benchmark

    with friendly_errors():
        bench = load_benchmark(source, weights=weights)  # type: ignore[arg-type]
    c = bench.counts()
    # The source goes on its own unwrapped line: a table title wraps at the (narrow) table's width and
    # would break a long path in the middle, where it can be neither read nor copied.
    console.print(f"source: {esc(str(bench.source))}", soft_wrap=True)
    table = Table(title=f"MicroWorldBench (weights={esc(str(bench.weights))})", show_header=False)
    table.add_row("tasks", str(c["tasks"]))
    table.add_row("criteria", str(c["criteria"]))
    for d, n in c["criteria_per_dimension"].items():
        table.add_row(f"  {d}", str(n))
    table.add_row("positive / penalty", f"{c['positive']} / {c['penalty']}")
    table.add_row("zero-weight criteria", str(c["zero_weight"]))
    for cat, n in sorted(c["categories"].items()):
        table.add_row(f"  {esc(cat)}", str(n))
    console.print(table)
    console.print(f"{c['tasks']} tasks, {c['criteria']} criteria")


@app.command("fetch")
def fetch(cache_dir: Path | None = typer.Option(None, help="Where to cache the files.")) -> None:
    """Download the pinned upstream benchmark files once and verify their sha256."""
    from sepsis_sdk.microbench import fetch_upstream

    with friendly_errors():
        folder = fetch_upstream(cache_dir)
    console.print(f"benchmark files in {folder}", markup=False, soft_wrap=True)


@app.command("run")
def run(
    videos: Path = typer.Option(..., "--videos", help="Folder of videos named by task index (12.mp4)."),
    model: str = typer.Option(..., "--model", help="Name of the video set (the text-to-video model)."),
    judge: list[str] = typer.Option(..., "--judge", help="LiteLLM vision model; repeat for several judges."),
    source: Path | None = typer.Option(None, "--source", help=_SOURCE_HELP),
    out: Path = typer.Option(
        Path("microbench_results.jsonl"), "--out", help="JSONL results (resumed if it exists)."
    ),
    concurrency: int = typer.Option(4, "--concurrency", help="Judge calls in flight at most."),
    mode: str = typer.Option(
        "grouped", "--mode", help="grouped (one call per dimension, published) or per_criterion."
    ),
    api_base: str | None = typer.Option(None, "--api-base", help="OpenAI-compatible base URL (vLLM, ...)."),
    n_frames: int = typer.Option(8, "--frames", help="Frames per video."),
    frame_preset: str = typer.Option(
        "project",
        "--frame-preset",
        help="project (longest side 768 px, JPEG q85) or reference (full resolution, q100, as the MicroVerse "
        "evaluator; about 8x the bytes). --max-side and --quality override it.",
    ),
    max_side: int | None = typer.Option(
        None, "--max-side", help="Longest side of frames sent to the judge, pixels; 0 = full resolution."
    ),
    quality: int | None = typer.Option(None, "--quality", help="JPEG quality of the frames, 1-100."),
    short_videos: str = typer.Option(
        "repeat",
        "--short-videos",
        help="Videos with fewer frames than --frames: repeat (show some frames twice, as the reference; "
        "recorded in each verdict) or reject (recorded as a video error).",
    ),
    temperature: float = typer.Option(0.0, "--temperature", help="Judge sampling temperature."),
    timeout: float = typer.Option(180.0, "--timeout", help="Seconds per judge request."),
    retries: int = typer.Option(
        3, "--retries", help="Retries of a failed judge request (429, 5xx, timeouts) with backoff."
    ),
    max_reasks: int = typer.Option(
        2, "--max-reasks", help="Re-asks after a reply that does not fit the rubric, before it is unscored."
    ),
    api_key_env: str | None = typer.Option(
        None,
        "--api-key-env",
        help="Read the API key from this environment variable (e.g. EVAL_API_KEY, the reference's). "
        "Default: the provider's own variable, which LiteLLM reads: OPENAI_API_KEY for openai/..., "
        "HOSTED_VLLM_API_KEY for hosted_vllm/..., ANTHROPIC_API_KEY, ... Keys are never taken on the "
        "command line.",
    ),
    tasks: str | None = typer.Option(None, "--tasks", help="Only these task indices, e.g. 1-20,45."),
    retry_errors: bool = typer.Option(
        False, "--retry-errors", help="Ask again where a verdict was recorded with an error."
    ),
    executor: str = typer.Option(
        "local", "--executor", help="'local' (async, this process) or 'ray' (videos over a Ray cluster)."
    ),
    ray_address: str | None = typer.Option(
        None,
        "--ray-address",
        help="The Ray cluster for --executor ray: 'auto', 'host:6379' or 'ray://host:10001' "
        "(default: $RAY_ADDRESS, else a local Ray). --concurrency is then the cluster-wide cap.",
    ),
) -> None:
    """Grade a folder of videos; one JSONL line per task-dimension verdict; safe to interrupt and rerun.

    The judge's API key comes from the environment: the provider's variable (OPENAI_API_KEY for openai/...,
    HOSTED_VLLM_API_KEY for hosted_vllm/...) or the one named by --api-key-env.
    """
    import os

    from sepsis_sdk.errors import UserError
    from sepsis_sdk.microbench import FRAME_PRESETS, load_benchmark, run_benchmark

    with friendly_errors():
        ray_ex = _ray_executor(executor, ray_address)  # before any work: a wrong address fails now
        if frame_preset not in FRAME_PRESETS:
            raise UserError(f"--frame-preset must be one of {sorted(FRAME_PRESETS)}, got {frame_preset!r}")
        preset = FRAME_PRESETS[frame_preset]
        side = preset["max_side"] if max_side is None else (max_side or None)
        jpeg_q = preset["quality"] if quality is None else quality
        api_key = None
        if api_key_env:
            api_key = os.environ.get(api_key_env)
            if not api_key:
                raise UserError(f"--api-key-env: environment variable {api_key_env} is not set")
        bench = load_benchmark(source)
        judges = [
            make_judge(
                j,
                mode=mode,
                api_base=api_base,
                api_key=api_key,
                temperature=temperature,
                max_reasks=max_reasks,
                retries=retries,
                timeout=timeout,
                image_quality=jpeg_q,
            )
            for j in judge
        ]
        wanted = _parse_tasks(tasks) if tasks else None
        with progress() as bar, contextlib.ExitStack() as stack:
            if ray_ex is not None:  # a local cluster it started goes down with the command
                stack.callback(ray_ex.close)
            bar_id = bar.add_task("judging", total=None)
            rep = run_benchmark(
                bench,
                videos,
                judges,
                model=model,
                out=out,
                concurrency=concurrency,
                n_frames=n_frames,
                max_side=side,
                quality=jpeg_q,
                short_videos=short_videos,
                tasks=wanted,
                retry_errors=retry_errors,
                executor=ray_ex,
                on_plan=lambda n: bar.update(bar_id, total=n),
                on_record=lambda r: bar.advance(bar_id),
            )
    console.print(
        f"{rep.written} verdicts written, {rep.skipped} already done, {len(rep.missing_videos)} tasks without video, "
        f"{rep.video_errors} unreadable videos, {rep.judge_errors} failed verdicts "
        f"({rep.judge_errors - rep.verdict_errors} failed calls, {rep.verdict_errors} bad replies) -> {rep.results}",
        markup=False,
        soft_wrap=True,  # file names and model names may hold brackets
    )


def _ray_executor(kind: str, address: str | None):
    """A connected Ray executor for ``--executor ray`` (None: the local async runner)."""
    from sepsis_sdk.errors import UserError

    if kind not in ("local", "ray"):
        raise UserError(f"--executor must be 'local' or 'ray', got {kind!r}")
    if kind == "local":
        if address is not None:
            raise UserError("--ray-address needs --executor ray")
        return None
    from sepsis_sdk.scale import RayExecutor

    ex = RayExecutor(address)
    ex.connect()  # an unreachable address fails now, naming it, before any judge call
    return ex


@app.command("report")
def report(
    results: list[Path] = typer.Option(
        ..., "--results", help="Results JSONL files (several: models, judges)."
    ),
    out: Path = typer.Option(Path("microbench_report"), "--out", help="Output folder."),
    n_tasks: int = typer.Option(459, "--n-tasks", help="Tasks in the benchmark (coverage denominator)."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Draw bar charts."),
    scoring: str = typer.Option(
        "project",
        "--scoring",
        help="project (default: every criterion graded and scored) or reference (the MicroVerse scripts' "
        "rules: d11..d55 rubrics 0/0, zero-positive-weight dimensions counted as 0, a task with an empty "
        "score list dropped; comparable with the paper).",
    ),
    source: Path | None = typer.Option(
        None,
        "--source",
        help="Benchmark folder; only needed with --scoring reference for result files written before "
        "records carried criterion numbers.",
    ),
    empty_checklist: str = typer.Option(
        "zero",
        "--empty-checklist",
        help="--scoring reference, d11..d55 rubrics graded by this SDK (the reference would have shown an "
        "empty checklist): zero (score 0/0, keep the task) or drop (drop the task, as the reference does "
        "when its judge answers []). Imported reference results carry the real answer.",
    ),
) -> None:
    """Write report.md, summary.csv, tasks.csv, agreement.csv and plots per dimension and category."""
    from sepsis_sdk.microbench import load_benchmark, read_many, write_report

    with friendly_errors():
        bench = load_benchmark(source) if source is not None else None
        files = write_report(
            read_many(results),
            out,
            n_tasks=n_tasks,
            plots=plots,
            scoring=scoring,
            benchmark=bench,
            empty_checklist=empty_checklist,
        )
    console.print(files.markdown.read_text(encoding="utf-8"), markup=False)
    console.print(
        f"wrote {files.markdown}, {len(files.csv)} CSV files, {len(files.plots)} plots", markup=False
    )


@app.command("import-upstream")
def import_upstream(
    results: Path = typer.Option(..., "--results", help="An upstream eval_result/<model>_result.json."),
    model: str = typer.Option(..., "--model", help="Name of the video set."),
    judge: str = typer.Option("upstream:gpt-4o", "--judge", help="Name to record as the judge."),
    out: Path = typer.Option(..., "--out", help="JSONL results file to append to."),
    source: Path | None = typer.Option(None, "--source", help=_SOURCE_HELP),
) -> None:
    """Convert the reference evaluator's output into verdict records.

    Score lists of the wrong length are recorded unscored in the project mode, not trusted; every record
    keeps the judge's list as answered, so `report --scoring reference` gives the reference's numbers.
    Verdicts on the d11..d55 rubrics, which the reference's judge saw as an empty checklist, are flagged
    `blind`.
    """
    from sepsis_sdk.microbench import ResultsWriter, import_upstream_results, load_benchmark, summarize

    with friendly_errors():
        bench = load_benchmark(source)
        records, unknown = import_upstream_results(results, bench, model=model, judge=judge)
        with ResultsWriter(out) as w:
            w.extend(records)
    bad = sum(r.error is not None for r in records)
    blind = sum(r.blind for r in records)
    console.print(
        f"{len(records)} verdicts imported ({bad} unscored or invalid), {len(unknown)} unknown task indices "
        f"-> {out}; {blind} blind verdicts (d11..d55 rubrics the reference's judge saw as an empty checklist)",
        markup=False,
        soft_wrap=True,
    )
    for mode in ("project", "reference"):
        for s in summarize(records, n_tasks=len(bench), scoring=mode):  # type: ignore[arg-type]
            overall = "n/a" if s.overall is None else f"{s.overall:.2f}"
            console.print(
                f"{mode} scoring: overall {overall} over {s.valid_tasks} valid tasks "
                f"({s.blind_tasks} resting on blind verdicts)",
                markup=False,
                soft_wrap=True,
            )


def _parse_tasks(spec: str) -> list[int]:
    from sepsis_sdk.errors import UserError

    out: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                a, b = part.split("-", 1)
                out.extend(range(int(a), int(b) + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise UserError(f"--tasks: {part!r} is not an index or a range like 1-20") from None
    return out
