"""Lazy imports of optional heavy dependencies, with an install hint."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

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


def lazy_getattr(
    package: str, exports: Mapping[str, str | tuple[str, str]], namespace: dict[str, Any]
) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports each public name on first use and caches it in ``namespace``.

    ``exports`` maps a public name to the module defining it (same attribute name) or to
    ``(module, attribute)``. This keeps ``import sepsis_sdk...`` light: heavy modules load only when used.
    """

    def __getattr__(name: str) -> Any:
        target = exports.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, attr = target if isinstance(target, tuple) else (target, name)
        value = getattr(importlib.import_module(module), attr)
        namespace[name] = value
        return value

    return __getattr__
