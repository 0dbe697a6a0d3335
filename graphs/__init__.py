"""sepsis_sdk.graphs (shipped from the repository's `graphs/` folder)."""

if __name__ != "sepsis_sdk.graphs":  # pragma: no cover - guards against a second copy via `import graphs`
    raise ImportError(f"this folder is the package 'sepsis_sdk.graphs'; import it as that, not as {__name__!r}")
