"""XGBoost backend: per-feature gradient-boosted regressors of each feature's change, no torch needed.

For every feature one regressor predicts the change at the next step from the flattened window (the same
normalised inputs the torch backend sees, with the action as its fluid level, vasopressor level and
index). The default objective is absolute error (a conditional median, like the torch backend's Laplace
head); squared error is available. Noise per feature is estimated from residuals on held-out training
patients (a Laplace scale turned into an SD), and the aleatoric SD is then rescaled per feature so the
90 % interval covers 90 % of that held-out slice. ``n_members`` bootstrap replicas (resampled patients,
different seeds) give the ensemble disagreement. One multi-class classifier per member predicts
termination (the stay goes on / death / discharge alive). Models save in XGBoost's native UBJSON format.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from sepsis_sdk._lazy import require
from sepsis_sdk.features import FeatureSchema
from sepsis_sdk.world_model._base import (
    StepOutput,
    WorldModelBase,
    calibration_scale,
    read_saved_model,
    write_saved_model,
)
from sepsis_sdk.world_model._data import Windows, training_split
from sepsis_sdk.world_model._space import Normaliser
from sepsis_sdk.world_model._support import SupportIndex

xgb = require("xgboost", "xgboost", "the xgboost world model")

FORMAT_VERSION = 1


class XGBoostConfig(BaseModel):
    """Hyper-parameters of the xgboost world model (saved in ``config.json``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    n_members: int = Field(3, ge=1)
    window: int = Field(2, ge=1)
    objective: Literal["absolute", "squared"] = "absolute"
    n_estimators: int = Field(200, ge=1)
    max_depth: int = Field(4, ge=1)
    learning_rate: float = Field(0.1, gt=0)
    subsample: float = Field(0.8, gt=0, le=1)
    colsample_bytree: float = Field(0.8, gt=0, le=1)
    min_child_weight: float = Field(5.0, ge=0)
    early_stopping_rounds: int = Field(20, ge=1)
    val_fraction: float = Field(0.15, ge=0, lt=1)
    calibrate: bool = True
    n_jobs: int = Field(0, ge=0, description="xgboost threads; 0 = all cores")
    seed: int = 0


def design_matrix(inputs: Windows) -> np.ndarray:
    """Flatten windows into tree inputs: values, masks, fluid/vaso level of every action, validity, static."""
    act = inputs.act
    ok = act >= 0
    fluid = np.where(ok, act // 5, -1).astype(np.float32)
    vaso = np.where(ok, act % 5, -1).astype(np.float32)
    n = len(act)
    return np.concatenate(
        [
            inputs.z.reshape(n, -1),
            inputs.m.reshape(n, -1),
            fluid,
            vaso,
            act.astype(np.float32),
            inputs.valid,
            inputs.s,
        ],
        axis=1,
    ).astype(np.float32)


class _Progress:
    """Counts fitted regressors/classifiers for the ``progress(done, total, {})`` callback."""

    def __init__(self, total: int, callback: Callable[[int, int, dict[str, float]], None] | None) -> None:
        self.total, self.done, self.callback = total, 0, callback

    def step(self, *, report: bool = True) -> None:
        self.done += 1
        if report and self.callback is not None:
            self.callback(self.done, self.total, {})

    def steps(self, n: int) -> None:
        for _ in range(n):
            self.step()


def _booster_params(cfg: XGBoostConfig) -> dict[str, Any]:
    params = {
        "max_depth": cfg.max_depth,
        "eta": cfg.learning_rate,
        "subsample": cfg.subsample,
        "colsample_bytree": cfg.colsample_bytree,
        "min_child_weight": cfg.min_child_weight,
        "tree_method": "hist",
        "nthread": cfg.n_jobs or None,
        "verbosity": 0,
    }
    return {k: v for k, v in params.items() if v is not None}


def _member_weights(
    rng: np.random.Generator, eps: np.ndarray, episode: np.ndarray, n_members: int
) -> np.ndarray:
    """Row weights of one ensemble member: a bootstrap over patients (all ones for a single member)."""
    if n_members <= 1:
        return np.ones(len(episode))
    pick = rng.choice(eps, len(eps), replace=True)
    counts = np.bincount(np.searchsorted(eps, pick), minlength=len(eps)).astype(np.float64)
    return counts[np.searchsorted(eps, episode)]


def _fit_member(
    k: int, cfg: XGBoostConfig, params: dict[str, Any], train: Any, val: Any, xv: Any, row_w: np.ndarray,
    counter: _Progress,
) -> tuple[list[Any | None], Any | None]:  # fmt: skip
    """One member: a regressor per feature change (None where the target never varies) + the classifier."""
    xt = design_matrix(train.inputs)
    dtrain = xgb.DMatrix(xt)
    dval = xgb.DMatrix(xv) if xv is not None else None
    member: list[Any | None] = []
    objective = "reg:absoluteerror" if cfg.objective == "absolute" else "reg:squarederror"
    for j in range(train.target.shape[1]):
        w = row_w * train.target_mask[:, j]
        y = train.target[:, j]
        if w.sum() == 0 or np.abs(y[w > 0]).max(initial=0.0) < 1e-9:
            member.append(None)
            counter.step(report=False)
            continue
        dtrain.set_label(y)
        dtrain.set_weight(w)
        evals = []
        if dval is not None and val.target_mask[:, j].any():
            dval.set_label(val.target[:, j])
            dval.set_weight(val.target_mask[:, j].astype(np.float64))
            evals = [(dval, "val")]
        booster = xgb.train(
            {**params, "objective": objective, "seed": cfg.seed + 1000 * k + j},
            dtrain,
            num_boost_round=cfg.n_estimators,
            evals=evals,
            early_stopping_rounds=cfg.early_stopping_rounds if evals else None,
            verbose_eval=False,
        )
        member.append(booster[: booster.best_iteration + 1] if evals else booster)
        counter.step()
    clf = None
    known = train.term >= 0
    if known.any() and len(np.unique(train.term[known])) > 1:
        dt = xgb.DMatrix(xt[known], label=train.term[known], weight=row_w[known])
        clf = xgb.train(
            {**params, "objective": "multi:softprob", "num_class": 3, "seed": cfg.seed + 7 + k},
            dt,
            num_boost_round=cfg.n_estimators,
        )
    counter.step()
    return member, clf


def _fit_member_task(
    cfg: XGBoostConfig, params: dict[str, Any], train: Any, val: Any, xv: Any, kw: tuple[int, np.ndarray]
) -> tuple[list[Any | None], Any | None]:
    """:func:`_fit_member` as a task for an executor (no progress callback across processes)."""
    k, row_w = kw
    return _fit_member(k, cfg, params, train, val, xv, row_w, _Progress(0, None))


def _residual_noise(model: Any, ref: Any, cfg: XGBoostConfig) -> np.ndarray:
    """``(members, D)`` mean absolute residual of each member on ``ref`` (as a Laplace/Gaussian scale)."""
    out = model._step(ref.inputs)
    noise = np.ones((cfg.n_members, ref.target.shape[1]))
    for k in range(cfg.n_members):
        r = np.abs(ref.target - out.mean[k])
        for j in range(ref.target.shape[1]):
            ok = ref.target_mask[:, j]
            scale = float(r[ok, j].mean()) if ok.any() else 0.0
            noise[k, j] = max(scale * (math.sqrt(2.0) if cfg.objective == "absolute" else 1.0), 1e-3)
    return noise


class XGBoostWorldModel(WorldModelBase):
    """Per-feature XGBoost regressors + termination classifier implementing the WorldModel protocol."""

    backend = "xgboost"
    config_class = XGBoostConfig

    def __init__(
        self,
        schema: FeatureSchema,
        config: XGBoostConfig,
        normaliser: Normaliser,
        regressors: list[list[Any | None]],
        classifiers: list[Any | None],
        noise: np.ndarray,
        *,
        std_scale: np.ndarray | None = None,
        support_index: SupportIndex | None = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.schema = schema
        self.config = config
        self.window = config.window
        self.normaliser = normaliser
        self.regressors = regressors  # [member][feature] Booster or None (constant: no change)
        self.classifiers = classifiers  # [member] Booster or None (no termination seen)
        self.noise = np.asarray(noise, dtype=np.float64)  # (M, D) SD of the change per member
        self.std_scale = (
            np.ones(len(schema)) if std_scale is None else np.asarray(std_scale, dtype=np.float64)
        )
        self.support_index = support_index
        self.info = dict(info or {})
        self.name = "xgboost"

    @property
    def n_members(self) -> int:
        return self.config.n_members

    def _step(self, inputs: Windows) -> StepOutput:
        x = design_matrix(inputs)
        n, d, m = len(x), len(self.schema), self.n_members
        mean = np.zeros((m, n, d))
        probs = np.zeros((n, 3))
        for k in range(m):
            for j, booster in enumerate(self.regressors[k]):
                if booster is not None:
                    mean[k, :, j] = booster.inplace_predict(x)
            clf = self.classifiers[k]
            if clf is not None:
                probs += np.asarray(clf.inplace_predict(x)).reshape(n, 3)
            else:
                probs[:, 0] += 1.0
        probs /= m
        std = np.broadcast_to((self.noise * self.std_scale)[:, None, :], (m, n, d)).copy()
        return StepOutput(mean=mean, std=std, p_death=probs[:, 1], p_discharge=probs[:, 2])

    # ------------------------------------------------------------------ training
    @classmethod
    def fit(
        cls,
        cohort: Any,
        config: XGBoostConfig | None = None,
        *,
        progress: Callable[[int, int, dict[str, float]], None] | None = None,
        threads: int | None = None,
        executor: Any = None,
    ) -> XGBoostWorldModel:
        """Train on a :class:`~sepsis_sdk.Cohort` (split off your test patients first).

        Args:
            cohort: the training cohort.
            config: hyper-parameters (default :class:`XGBoostConfig`).
            progress: called after each fitted regressor with ``(done, total, {})``.
            threads: CPU threads, used as ``n_jobs`` unless the config sets ``n_jobs`` itself.
            executor: fit the ensemble members in parallel on it (any ``Executor``: a local process pool
                or :class:`sepsis_sdk.scale.RayExecutor`); the model is the same as without one.
        """
        cfg = config or XGBoostConfig()
        if threads and "n_jobs" not in cfg.model_fields_set:
            cfg = cfg.model_copy(update={"n_jobs": int(threads)})
        schema = cohort.schema
        nz, _data, train, val = training_split(
            cohort, cfg.window, cfg.val_fraction, cfg.seed, min_rows=10, who="xgboost world model"
        )
        t0 = time.perf_counter()
        d = len(schema)
        xv = design_matrix(val.inputs) if len(val) else None
        rng = np.random.default_rng(cfg.seed)
        eps = np.unique(train.episode)
        regs: list[list[Any | None]] = []
        clfs: list[Any | None] = []
        counter = _Progress(cfg.n_members * (d + 1), progress)
        params = _booster_params(cfg)
        # every member's bootstrap drawn first, in member order: the same draws as one member at a time
        weights = [_member_weights(rng, eps, train.episode, cfg.n_members) for _ in range(cfg.n_members)]
        if executor is None:
            fitted = [_fit_member(k, cfg, params, train, val, xv, w, counter) for k, w in enumerate(weights)]
        else:  # members are independent: one task each (the data travel once, bound into the function)
            fitted = []
            for res in executor.map(
                partial(_fit_member_task, cfg, params, train, val, xv), list(enumerate(weights))
            ):
                counter.steps(d + 1)
                fitted.append(res)
        for member, clf in fitted:
            regs.append(member)
            clfs.append(clf)
        model = cls(
            schema,
            cfg,
            nz,
            regs,
            clfs,
            np.ones((cfg.n_members, d)),
            support_index=SupportIndex.fit(train.inputs.last, train.inputs.act[:, -1], seed=cfg.seed),
        )
        # noise: residual spread of each member on held-out patients (or in-sample when there are none)
        model.noise = _residual_noise(model, val if len(val) else train, cfg)
        if cfg.calibrate and len(val):
            out = model._step(val.inputs)
            model.std_scale = calibration_scale(
                out.mean.mean(0), np.sqrt((out.std**2).mean(0)), out.mean.std(0), val.target, val.target_mask
            )
        model.info = {
            "train_rows": len(train),
            "val_rows": len(val),
            "train_patients": int(len(eps)),
            "source": cohort.source,
            "seconds": round(time.perf_counter() - t0, 2),
            "device": "cpu",
        }
        return model

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write ``config.json``, ``boosters.npz`` (native UBJSON bytes) and ``support.npz`` into ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        for k, member in enumerate(self.regressors):
            for j, b in enumerate(member):
                if b is not None:
                    arrays[f"reg_{k}_{j}"] = np.frombuffer(bytes(b.save_raw("ubj")), dtype=np.uint8)
        for k, c in enumerate(self.classifiers):
            if c is not None:
                arrays[f"clf_{k}"] = np.frombuffer(bytes(c.save_raw("ubj")), dtype=np.uint8)
        np.savez(path / "boosters.npz", **arrays)
        write_saved_model(self, path, self.backend, FORMAT_VERSION, noise=self.noise.tolist())
        return path

    @classmethod
    def load(cls, path: str | Path) -> XGBoostWorldModel:
        """Load a model written by :meth:`save`."""
        path = Path(path)
        raw, schema, nz, sup = read_saved_model(path, cls.backend)
        cfg = XGBoostConfig.model_validate(raw["config"])
        d = len(schema)

        def _booster(buf: np.ndarray) -> Any:
            b = xgb.Booster()
            b.load_model(bytearray(buf.tobytes()))
            if cfg.n_jobs:
                b.set_param({"nthread": cfg.n_jobs})
            return b

        with np.load(path / "boosters.npz", allow_pickle=False) as arrs:
            regs = [
                [_booster(arrs[f"reg_{k}_{j}"]) if f"reg_{k}_{j}" in arrs else None for j in range(d)]
                for k in range(cfg.n_members)
            ]
            clfs = [_booster(arrs[f"clf_{k}"]) if f"clf_{k}" in arrs else None for k in range(cfg.n_members)]
        return cls(
            schema,
            cfg,
            nz,
            regs,
            clfs,
            np.asarray(raw["noise"]),
            std_scale=np.asarray(raw["std_scale"]),
            support_index=sup,
            info=raw.get("info"),
        )
