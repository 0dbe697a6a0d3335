"""Training and loading world models by backend name."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sepsis_sdk.errors import ModelError, UserError

BACKENDS = ("torch", "xgboost")


def train_world_model(
    cohort: Any,
    backend: str = "torch",
    *,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
    device: str | None = None,
    threads: int | None = None,
    **config: Any,
) -> Any:
    """Train a world model of ``backend`` (``"torch"`` or ``"xgboost"``) on ``cohort``.

    Keyword arguments beyond the listed ones are fields of :class:`~.torch_backend.TorchConfig` or
    :class:`~.xgboost_backend.XGBoostConfig`.
    """
    if backend == "torch":
        from sepsis_sdk.world_model.torch_backend import TorchConfig, TorchWorldModel

        return TorchWorldModel.fit(
            cohort, TorchConfig(**config), device=device, progress=progress, threads=threads
        )
    if backend == "xgboost":
        from sepsis_sdk.world_model.xgboost_backend import XGBoostConfig, XGBoostWorldModel

        if threads and "n_jobs" not in config:
            config["n_jobs"] = threads
        return XGBoostWorldModel.fit(cohort, XGBoostConfig(**config), progress=progress)
    raise UserError(f"unknown world-model backend {backend!r}; choose from {list(BACKENDS)}")


def load_world_model(path: str | Path, *, device: str | None = None) -> Any:
    """Load a world model saved by either backend (the backend is read from ``config.json``)."""
    path = Path(path)
    cfg = path / "config.json"
    if not cfg.exists():
        raise ModelError(f"{path}: no config.json (not a saved world model)")
    try:
        backend = json.loads(cfg.read_text()).get("backend")
    except json.JSONDecodeError as exc:
        raise ModelError(f"{cfg}: not valid JSON ({exc})") from exc
    if backend == "torch":
        from sepsis_sdk.world_model.torch_backend import TorchWorldModel

        return TorchWorldModel.load(path, device=device)
    if backend == "xgboost":
        from sepsis_sdk.world_model.xgboost_backend import XGBoostWorldModel

        return XGBoostWorldModel.load(path)
    raise ModelError(f"{cfg}: unknown backend {backend!r}")
