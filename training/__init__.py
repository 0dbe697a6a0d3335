"""sepsis_sdk.training (shipped from the repository's `training/` folder)."""

if __name__ != "sepsis_sdk.training":  # pragma: no cover - guards against a second copy via `import training`
    raise ImportError(
        f"this folder is the package 'sepsis_sdk.training'; import it as that, not as {__name__!r}"
    )
