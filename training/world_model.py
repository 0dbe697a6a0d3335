"""World-model training entry points (the ``sepsis_sdk.training`` home of the Clinical World Model).

The models themselves live in :mod:`sepsis_sdk.world_model`; this module is the scripted path used by
``sepsis-sdk world-model train``: load a cohort, split it by patient, fit, save.

Example:
    >>> from sepsis_sdk.training.world_model import train_on_cohort
    >>> model, test = train_on_cohort("icu-sepsis", episodes=2000, backend="xgboost", out="models/wm")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sepsis_sdk.world_model import load_world_model, train_world_model


def train_on_cohort(
    cohort: str | Any = "icu-sepsis",
    *,
    backend: str = "torch",
    out: str | Path | None = None,
    episodes: int = 5000,
    seed: int = 0,
    split_seed: int = 0,
    device: str | None = None,
    threads: int | None = None,
    **config: Any,
) -> tuple[Any, Any]:
    """Train a world model on the training patients of ``cohort`` and optionally save it.

    Args:
        cohort: ``"icu-sepsis"``, ``"synthetic"``, a Parquet path, or a :class:`~sepsis_sdk.Cohort`.
        backend: ``"torch"`` or ``"xgboost"``.
        out: directory to save into (not saved when None).
        episodes, seed: cohort size and sampling seed (generated cohorts only).
        split_seed: seed of the patient-level split (85 % train, 15 % test).
        device, threads: see :func:`sepsis_sdk.world_model.train_world_model`.
        **config: backend config fields (``TorchConfig`` / ``XGBoostConfig``).

    Returns:
        ``(model, test_cohort)``: the fitted model and the held-out patients to evaluate on.
    """
    from sepsis_sdk.cli.world_model import load_cohort, split_cohort

    data = load_cohort(str(cohort), episodes, seed) if isinstance(cohort, (str, Path)) else cohort
    train, test = split_cohort(data, split_seed)
    model = train_world_model(train, backend, device=device, threads=threads, **config)
    if isinstance(cohort, (str, Path)):
        model.info["cohort"] = {
            "spec": str(cohort),
            "episodes": episodes,
            "seed": seed,
            "split_seed": split_seed,
        }
    if out is not None:
        model.save(out)
    return model, test


__all__ = ["load_world_model", "train_on_cohort", "train_world_model"]
