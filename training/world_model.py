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

from sepsis_sdk.world_model import DEFAULT_THREADS, load_world_model, train_world_model


def split_cohort(cohort: Any, split_seed: int = 0) -> tuple[Any, Any]:
    """Patient-level split for world models: (train + validation patients, test patients), 85 % / 15 %.

    The backends hold out their own validation patients from the first part (early stopping, calibration).
    """
    import pandas as pd

    from sepsis_sdk.cohort import Cohort

    sp = cohort.split(0.7, 0.15, 0.15, seed=split_seed)
    data = pd.concat([sp.train.data, sp.validation.data], ignore_index=True)
    train = Cohort(data, cohort.schema, source=cohort.source, meta=cohort.meta, validate=False)
    return train, sp.test


def train_on_cohort(
    cohort: str | Any = "icu-sepsis",
    *,
    backend: str = "torch",
    out: str | Path | None = None,
    episodes: int = 5000,
    seed: int = 0,
    split_seed: int = 0,
    device: str | None = None,
    threads: int | None = DEFAULT_THREADS,
    progress: Any = True,
    executor: Any = None,
    **config: Any,
) -> tuple[Any, Any]:
    """Train a world model on the training patients of ``cohort`` and optionally save it.

    Args:
        cohort: anything :func:`sepsis_sdk.sources.load` accepts (``"icu-sepsis"``, ``"synthetic"``, a file
            path, a registered source name) or a :class:`~sepsis_sdk.Cohort`.
        backend: a registered world-model backend (:func:`sepsis_sdk.world_model.backend_names`).
        out: directory to save into (not saved when None).
        episodes, seed: cohort size and sampling seed (generated cohorts only).
        split_seed: seed of the patient-level split (85 % train, 15 % test).
        device, threads, progress: see :func:`sepsis_sdk.world_model.train_world_model` (defaults: one
            CPU thread, progress lines on stderr; ``progress=False`` is silent).
        executor: fit the ensemble members in parallel on it (a local process pool or
            :class:`sepsis_sdk.scale.RayExecutor`); the same model as without one. For backends whose ``fit``
            takes an ``executor`` (xgboost); the torch ensemble trains its members together (one optimiser,
            one early stop), so it refuses one rather than train a different model.
        **config: backend config fields (``TorchConfig`` / ``XGBoostConfig``).

    Returns:
        ``(model, test_cohort)``: the fitted model and the held-out patients to evaluate on.
    """
    from sepsis_sdk.sources import load

    data = load(cohort, episodes=episodes, seed=seed)
    train, test = split_cohort(data, split_seed)
    if executor is None:
        model = train_world_model(train, backend, device=device, threads=threads, progress=progress, **config)
    else:
        model = _fit_members_on(executor, train, backend, threads=threads, **config)
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


def _fit_members_on(executor: Any, train: Any, backend: str, *, threads: int | None, **config: Any) -> Any:
    import inspect

    from sepsis_sdk.errors import UserError
    from sepsis_sdk.world_model import get_backend, make_config

    cls = get_backend(backend)
    if "executor" not in inspect.signature(cls.fit).parameters:
        raise UserError(
            f"world-model backend {backend!r} does not fit its ensemble members separately; "
            "executor= works with backends whose fit takes one (xgboost)"
        )
    return cls.fit(train, make_config(backend, **config), threads=threads, executor=executor)


__all__ = ["load_world_model", "split_cohort", "train_on_cohort", "train_world_model"]
