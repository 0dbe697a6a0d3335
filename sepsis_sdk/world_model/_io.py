"""World-model backends by name: one registry, ``config -> create -> name`` as in d3rlpy.

A backend is one class (a :class:`~sepsis_sdk.world_model.WorldModelBase` subclass, say) with

- ``backend``: its registered name, written into every saved ``config.json`` (``write_saved_model``);
- ``config_class``: its settings (a pydantic model), built from keyword arguments by :func:`make_config`;
- ``fit(cohort, config, *, progress=None, ...)`` and ``load(path, ...)`` classmethods and ``save(path)``.
  Runtime options (``device``, ``threads``) are passed only where the method's signature takes them.

Register it once with :func:`register_backend` (also from outside the SDK); then
:func:`train_world_model`, :func:`load_world_model` (which reads the name back from ``config.json``) and the
``sepsis-sdk world-model`` commands know it. The built-in backends are registered by import path, so
listing them imports neither torch nor xgboost.

Example:
    >>> from sepsis_sdk.world_model import backend_names
    >>> {"torch", "xgboost"} <= set(backend_names())
    True
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sepsis_sdk.errors import ModelError, UserError


@dataclass(frozen=True)
class _Backend:
    target: type | str  # the class, or "module:Class" imported on first use
    description: str

    def resolve(self) -> type:
        if isinstance(self.target, str):
            mod, _, attr = self.target.partition(":")
            return getattr(importlib.import_module(mod), attr)
        return self.target


_BACKENDS: dict[str, _Backend] = {}


def register_backend(name: str, model_class: type | str | None = None, *, description: str = "") -> Any:
    """Register a world-model backend class under ``name`` (as a class decorator, or directly).

    Args:
        name: the backend's name; must equal the class's ``backend`` attribute (what its saves record).
        model_class: the class, or ``"module:Class"`` imported only when first used.
        description: one line for listings.

    Example:
        >>> from sepsis_sdk.world_model import register_backend
        >>> @register_backend("my-model")                    # doctest: +SKIP
        ... class MyWorldModel(WorldModelBase):
        ...     backend = "my-model"
        ...     config_class = MyConfig
    """
    if model_class is not None:
        _BACKENDS[name] = _Backend(model_class, description)
        return None

    def deco(cls: type) -> type:
        if getattr(cls, "backend", name) != name:
            raise UserError(f"{cls.__name__}.backend is {cls.backend!r}, registered as {name!r}")
        cls.backend = name  # type: ignore[attr-defined]
        _BACKENDS[name] = _Backend(cls, description or (cls.__doc__ or "").strip().split("\n")[0])
        return cls

    return deco


def backend_names() -> list[str]:
    """The registered backend names, sorted."""
    return sorted(_BACKENDS)


def get_backend(name: str) -> type:
    """The class of backend ``name`` (imports it on first use)."""
    entry = _BACKENDS.get(name)
    if entry is None:
        raise UserError(f"unknown world-model backend {name!r}; choose from {backend_names()}")
    return entry.resolve()


def make_config(backend: str, **fields: Any) -> Any:
    """The settings object of ``backend`` from keyword fields (``TorchConfig(**fields)`` for ``torch``);
    None for a backend without a ``config_class`` (its ``fit`` then gets the fields as keywords)."""
    config_class = getattr(get_backend(backend), "config_class", None)
    return config_class(**fields) if config_class is not None else None


def config_fields(backend: str) -> set[str]:
    """The setting names backend ``backend`` accepts (fields of its ``config_class``)."""
    config_class = getattr(get_backend(backend), "config_class", None)
    return set(getattr(config_class, "model_fields", {})) if config_class is not None else set()


def _call(fn: Callable[..., Any], *args: Any, runtime: dict[str, Any], **kw: Any) -> Any:
    """Call ``fn`` with ``kw`` and those runtime options (``device``, ``threads``, ``progress``) that are set
    and that its signature names (a backend without a GPU has no ``device`` parameter)."""
    params = inspect.signature(fn).parameters
    kw.update({k: v for k, v in runtime.items() if v is not None and k in params})
    return fn(*args, **kw)


DEFAULT_THREADS = 1
"""CPU threads while training a world model, in the API and the CLI alike. One thread is the fast choice
on a 2-core machine that does anything else: on this project's 2-core machine under load, an xgboost
world model on 200 patients (30 trees, 1 member) took 22.8 s with 1 thread and more than 277 s with 2;
torch 0.5 s vs 1.1 s (same run). Pass ``threads=None`` (CLI ``--threads 0``) for the library default
(all cores), e.g. on a quiet many-core machine."""


class PrintProgress:
    """The default training progress: one line on stderr at most every ``every_s`` seconds, and the last.

    Plain lines (no live bar) so that it reads the same in a terminal, a notebook and a log file.
    """

    def __init__(self, label: str, *, every_s: float = 2.0, stream: Any = None) -> None:
        import time

        self.label = label
        self.every_s = every_s
        self.stream = stream
        self._clock = time.monotonic
        self._t0 = self._last = self._clock()
        self._started = False

    def __call__(self, done: int, total: int, metrics: dict[str, float]) -> None:
        import sys

        now = self._clock()
        if not self._started or now - self._last >= self.every_s or done >= total:
            self._started, self._last = True, now
            extra = "".join(f" {k}={v:.4f}" for k, v in (metrics or {}).items())
            stream = self.stream if self.stream is not None else sys.stderr
            print(f"{self.label}: {done}/{total}{extra} ({now - self._t0:.0f} s)", file=stream, flush=True)


def train_world_model(
    cohort: Any,
    backend: str | Any = "torch",
    *,
    progress: bool | Callable[[int, int, dict[str, float]], None] | None = True,
    device: str | None = None,
    threads: int | None = DEFAULT_THREADS,
    **config: Any,
) -> Any:
    """Train a world model of ``backend`` on ``cohort``.

    Args:
        cohort: the training cohort (split off the test patients first).
        backend: a registered name (:func:`backend_names`), or a settings object of a registered backend
            (``TorchConfig(epochs=10)``: the backend is the one whose ``config_class`` it is).
        progress: ``True`` (default) prints progress lines to stderr (:class:`PrintProgress`: epochs for
            torch, fitted regressors for xgboost); ``False``/None is silent; a callable is called with
            ``(done, total, metrics)`` instead.
        device: torch device (backends that take one).
        threads: CPU threads while training (backends that take it); default :data:`DEFAULT_THREADS`
            (1, the fast choice on 2 shared cores; the CLI's default too); None for the library default.
        **config: fields of the backend's settings (:class:`~.torch_backend.TorchConfig`,
            :class:`~.xgboost_backend.XGBoostConfig`, ...), when ``backend`` is a name.

    Example:
        >>> wm = train_world_model(cohort, "xgboost", progress=False)   # doctest: +SKIP
    """
    if progress is True:
        name = backend if isinstance(backend, str) else type(backend).__name__
        progress = PrintProgress(f"training {name} world model")
    elif progress is False:
        progress = None
    runtime = {"progress": progress, "device": device, "threads": threads}
    if isinstance(backend, str):
        cls = get_backend(backend)
        if getattr(cls, "config_class", None) is None:  # settings go to fit as keywords
            return _call(cls.fit, cohort, None, runtime=runtime, **config)
        cfg = make_config(backend, **config)
    else:
        cfg = backend.model_copy(update=config) if config else backend
        cls = _backend_of_config(cfg)
    return _call(cls.fit, cohort, cfg, runtime=runtime)


def _backend_of_config(cfg: Any) -> type:
    for name in backend_names():
        cls = get_backend(name)
        if getattr(cls, "config_class", None) is type(cfg):
            return cls
    raise UserError(f"{type(cfg).__name__} is not the config_class of any registered world-model backend")


def load_world_model(path: str | Path, *, device: str | None = None) -> Any:
    """Load a saved world model of any registered backend (its name is read from ``config.json``)."""
    path = Path(path)
    cfg = path / "config.json"
    if not cfg.exists():
        raise ModelError(f"{path}: no config.json (not a saved world model)")
    try:
        backend = json.loads(cfg.read_text()).get("backend")
    except json.JSONDecodeError as exc:
        raise ModelError(f"{cfg}: not valid JSON ({exc})") from exc
    if backend not in _BACKENDS:
        raise ModelError(f"{cfg}: unknown backend {backend!r} (registered: {backend_names()})")
    return _call(get_backend(backend).load, path, runtime={"device": device})


register_backend("torch", "sepsis_sdk.world_model.torch_backend:TorchWorldModel",
                 description="ensemble of probabilistic networks (MLP or GRU) over a history window")  # fmt: skip
register_backend("xgboost", "sepsis_sdk.world_model.xgboost_backend:XGBoostWorldModel",
                 description="per-feature gradient-boosted regressors, no torch needed")  # fmt: skip
register_backend("neighbour", "sepsis_sdk.world_model.neighbour_backend:NeighbourWorldModel",
                 description="replays observed transitions of look-alike patients (non-parametric)")  # fmt: skip
