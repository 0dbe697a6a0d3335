"""The Clinical World Model: one protocol, a fake for tests, registered backends, a Gym environment.

Backends (torch, xgboost, neighbour, and your own: :func:`register_backend`) are looked up by name: saved
models record theirs in ``config.json`` and :func:`load_world_model` reads it back. Heavy backends load on
first use: ``import sepsis_sdk.world_model`` imports neither torch nor xgboost.

Example:
    >>> from sepsis_sdk.world_model import FakeWorldModel
    >>> wm = FakeWorldModel()
    >>> out = wm.rollout(histories, plans=[[7, 7, 7], [0, 0, 0]], n_samples=16)   # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sepsis_sdk._lazy import lazy_getattr
from sepsis_sdk.world_model._protocol import HistoryBatch, NextStatePrediction, Rollout, WorldModel

_LAZY: dict[str, str] = {
    "WorldModelBase": "sepsis_sdk.world_model._base",
    "StepOutput": "sepsis_sdk.world_model._base",
    "FakeWorldModel": "sepsis_sdk.world_model.fake",
    "Normaliser": "sepsis_sdk.world_model._space",
    "to_clinical": "sepsis_sdk.world_model._space",
    "SupportIndex": "sepsis_sdk.world_model._support",
    "TorchWorldModel": "sepsis_sdk.world_model.torch_backend",
    "TorchConfig": "sepsis_sdk.world_model.torch_backend",
    "XGBoostWorldModel": "sepsis_sdk.world_model.xgboost_backend",
    "XGBoostConfig": "sepsis_sdk.world_model.xgboost_backend",
    **dict.fromkeys(("NeighbourWorldModel", "NeighbourConfig"), "sepsis_sdk.world_model.neighbour_backend"),
    "WorldModelEnv": "sepsis_sdk.world_model.env",
    "load_world_model": "sepsis_sdk.world_model._io",
    "train_world_model": "sepsis_sdk.world_model._io",
    "DEFAULT_THREADS": "sepsis_sdk.world_model._io",
    "register_backend": "sepsis_sdk.world_model._io",
    "backend_names": "sepsis_sdk.world_model._io",
    "get_backend": "sepsis_sdk.world_model._io",
    "make_config": "sepsis_sdk.world_model._io",
    "evaluate_world_model": "sepsis_sdk.world_model.evaluation",
}

__all__ = sorted(["HistoryBatch", "NextStatePrediction", "Rollout", "WorldModel", *_LAZY])


__getattr__ = lazy_getattr("sepsis_sdk.world_model", _LAZY, globals())


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover
    from sepsis_sdk.world_model._base import StepOutput, WorldModelBase
    from sepsis_sdk.world_model._io import (
        backend_names,
        get_backend,
        load_world_model,
        make_config,
        register_backend,
        train_world_model,
    )
    from sepsis_sdk.world_model._space import Normaliser, to_clinical
    from sepsis_sdk.world_model._support import SupportIndex
    from sepsis_sdk.world_model.env import WorldModelEnv
    from sepsis_sdk.world_model.evaluation import evaluate_world_model
    from sepsis_sdk.world_model.fake import FakeWorldModel
    from sepsis_sdk.world_model.neighbour_backend import NeighbourConfig, NeighbourWorldModel
    from sepsis_sdk.world_model.torch_backend import TorchConfig, TorchWorldModel
    from sepsis_sdk.world_model.xgboost_backend import XGBoostConfig, XGBoostWorldModel
