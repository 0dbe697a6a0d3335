"""sepsis_sdk.microbench (shipped from the repository's ``microbench/`` folder): MicroWorldBench grading.

Load the 459 rubric tasks, sample frames from generated videos, grade them with any shared
:class:`~sepsis_sdk.judge.Judge` (one call per dimension, as published), score exactly as published and
write reports (``scoring="reference"`` reproduces the MicroVerse scripts' numbers). Heavy libraries (PyAV, matplotlib, litellm) are imported only when used.

Example:
    >>> from sepsis_sdk import microbench as mb
    >>> bench = mb.load_benchmark("path/to/eval")               # doctest: +SKIP
    >>> report = mb.run_benchmark(bench, "videos/", judge, model="my-t2v", out="results.jsonl")  # doctest: +SKIP
    >>> mb.write_report(mb.read_records("results.jsonl"), "report/")  # doctest: +SKIP
"""

if (
    __name__ != "sepsis_sdk.microbench"
):  # pragma: no cover - guards against a second copy via `import microbench`
    raise ImportError(
        f"this folder is the package 'sepsis_sdk.microbench'; import it as that, not as {__name__!r}"
    )

from sepsis_sdk._lazy import lazy_getattr

_EXPORTS: dict[str, str] = {
    # data
    "BenchCriterion": "_data",
    "BenchTask": "_data",
    "Benchmark": "_data",
    "CATEGORIES": "_data",
    "DIMENSIONS": "_data",
    "DIMENSION_TITLES": "_data",
    "load_benchmark": "_data",
    "parse_rubric_file": "_data",
    "fetch_upstream": "_fetch",
    "UPSTREAM_COMMIT": "_fetch",
    "SHA256": "_fetch",
    # frames
    "FRAME_PRESETS": "_frames",
    "FrameSample": "_frames",
    "sample_frames": "_frames",
    "sample_positions": "_frames",
    "find_videos": "_frames",
    "synthesize_video": "_synth",
    # judging and results
    "build_evidence": "_judging",
    "check_verdict": "_judging",
    "ajudge_dimension": "_judging",
    "VerdictRecord": "_results",
    "ResultsWriter": "_results",
    "read_records": "_results",
    "read_many": "_results",
    # runner
    "RunReport": "_runner",
    "arun_benchmark": "_runner",
    "run_benchmark": "_runner",
    "run_benchmark_ray": "_distributed",
    # scoring and reports
    "DimensionScore": "_scoring",
    "TaskScore": "_scoring",
    "Summary": "_scoring",
    "Agreement": "_scoring",
    "score_dimension": "_scoring",
    "score_dimension_reference": "_scoring",
    "reference_checklist": "_scoring",
    "SCORING_MODES": "_scoring",
    "score_task": "_scoring",
    "summarize": "_scoring",
    "agreement": "_scoring",
    "cohen_kappa": "_scoring",
    "write_report": "_report",
    "render_markdown": "_report",
    # upstream compatibility
    "import_upstream_results": "_upstream",
    # test doubles
    "RecordingJudge": "_fakes",
    "SyntheticVideoGenerator": "_fakes",
    # generation hook
    "VideoGenerator": "_generate",
    "GenerationReport": "_generate",
    "generate_videos": "_generate",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(
    "sepsis_sdk.microbench", {k: f"sepsis_sdk.microbench.{m}" for k, m in _EXPORTS.items()}, globals()
)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
