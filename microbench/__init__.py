"""sepsis_sdk.microbench (shipped from the repository's `microbench/` folder)."""

if __name__ != "sepsis_sdk.microbench":  # pragma: no cover - guards against a second copy via `import microbench`
    raise ImportError(f"this folder is the package 'sepsis_sdk.microbench'; import it as that, not as {__name__!r}")
