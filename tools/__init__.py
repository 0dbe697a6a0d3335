"""sepsis_sdk.tools (shipped from the repository's `tools/` folder)."""

if __name__ != "sepsis_sdk.tools":  # pragma: no cover - guards against a second copy via `import tools`
    raise ImportError(f"this folder is the package 'sepsis_sdk.tools'; import it as that, not as {__name__!r}")
