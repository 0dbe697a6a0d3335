"""Lazy imports of optional heavy dependencies, with an install hint."""

from __future__ import annotations

import importlib
from types import ModuleType

from sepsis_sdk.errors import MissingDependencyError


def require(module: str, extra: str, feature: str = "") -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised only where the extra is absent
        raise MissingDependencyError(module.split(".")[0], extra, feature) from exc


def default_device() -> str:
    """``"cuda"`` when torch sees a GPU, else ``"cpu"``."""
    torch = require("torch", "torch", "the torch world model")
    return "cuda" if torch.cuda.is_available() else "cpu"
