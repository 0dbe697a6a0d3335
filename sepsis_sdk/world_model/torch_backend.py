"""Torch backend: an ensemble of probabilistic networks over a history window.

Each member reads the last ``window`` steps (normalised values, observation masks, the actions taken, the
action to evaluate, static features) and outputs, for every feature, the mean and SD of its **change** in
normalised model space (Gaussian head), plus three termination logits (the stay goes on / death /
discharge alive). Two member architectures: ``"mlp"`` over the flattened window and ``"gru"`` over the
sequence. Members are trained on bootstrap resamples of the training rows from different seeds, so their
disagreement measures what the data does not pin down (epistemic uncertainty); each member's SD measures
the noise it sees (aleatoric).

After training, the aleatoric SDs are rescaled per feature on a held-out slice of the training patients
so that the 90 % predictive interval covers 90 % of that slice (the scale is saved with the model and
reported); the test split is never used.

Determinism: on CPU the same data, config and seed give bit-identical weights (all randomness comes from
seeded generators; no non-deterministic kernels are used).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from sepsis_sdk._lazy import require
from sepsis_sdk.errors import ModelError, UserError
from sepsis_sdk.features import FeatureSchema
from sepsis_sdk.world_model._base import (
    StepOutput,
    WorldModelBase,
    calibration_scale,
    read_saved_model,
    write_saved_model,
)
from sepsis_sdk.world_model._data import TrainingData, Windows, training_split
from sepsis_sdk.world_model._space import Normaliser
from sepsis_sdk.world_model._support import SupportIndex

torch = require("torch", "torch", "the torch world model")
nn = torch.nn
F = torch.nn.functional

FORMAT_VERSION = 1


class TorchConfig(BaseModel):
    """Hyper-parameters of the torch world model (saved in ``config.json``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    arch: Literal["mlp", "gru"] = "mlp"
    likelihood: Literal["gaussian", "laplace"] = "laplace"
    n_members: int = Field(5, ge=1)
    window: int = Field(4, ge=1)
    hidden: int = Field(256, ge=8)
    gru_hidden: int = Field(128, ge=8)
    epochs: int = Field(40, ge=1)
    batch_size: int = Field(256, ge=8)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    term_weight: float = Field(1.0, ge=0)
    val_fraction: float = Field(0.15, ge=0, lt=1)
    patience: int = Field(6, ge=1)
    bootstrap: bool = True
    calibrate: bool = True
    min_log_std: float = -6.0
    max_log_std: float = 1.5
    seed: int = 0


def _encode_actions(act: torch.Tensor) -> torch.Tensor:
    """``(R, W)`` indices (-1 padding) -> ``(R, W, 35)``: one-hot of the 25 actions, the fluid and vaso levels."""
    ok = (act >= 0).unsqueeze(-1).float()
    a = act.clamp(min=0)
    return torch.cat([F.one_hot(a, 25), F.one_hot(a // 5, 5), F.one_hot(a % 5, 5)], -1).float() * ok


class _Member(nn.Module):
    def __init__(self, cfg: TorchConfig, d: int, s: int) -> None:
        super().__init__()
        self.cfg, self.d = cfg, d
        w, h = cfg.window, cfg.hidden
        if cfg.arch == "mlp":
            n_in = w * (2 * d + 35 + 1) + s
            self.body = nn.Sequential(nn.Linear(n_in, h), nn.SiLU(), nn.Linear(h, h), nn.SiLU())
        else:
            self.gru = nn.GRU(2 * d + 35 + 1, cfg.gru_hidden, batch_first=True)
            self.body = nn.Sequential(
                nn.Linear(cfg.gru_hidden + d + 35 + s, h), nn.SiLU(), nn.Linear(h, h), nn.SiLU()
            )
        self.head = nn.Linear(h, 2 * d + 3)

    def forward(self, z, m, act_enc, valid, s):
        steps = torch.cat([z, m, act_enc, valid.unsqueeze(-1)], -1)  # (R, W, 2D + 36)
        if self.cfg.arch == "mlp":
            feat = torch.cat([steps.flatten(1), s], -1)
        else:
            out, _ = self.gru(steps)
            feat = torch.cat([out[:, -1], z[:, -1], act_enc[:, -1], s], -1)
        o = self.head(self.body(feat))
        d = self.d
        mean = o[:, :d]
        hi, lo = self.cfg.max_log_std, self.cfg.min_log_std
        log_std = hi - F.softplus(hi - o[:, d : 2 * d])
        log_std = lo + F.softplus(log_std - lo)
        return mean, log_std, o[:, 2 * d :]


class _Ensemble(nn.Module):
    def __init__(self, cfg: TorchConfig, d: int, s: int) -> None:
        super().__init__()
        self.members = nn.ModuleList([_Member(cfg, d, s) for _ in range(cfg.n_members)])

    def forward(self, z, m, act, valid, s):
        enc = _encode_actions(act)
        outs = [mem(z, m, enc, valid, s) for mem in self.members]
        return (
            torch.stack([o[0] for o in outs]),
            torch.stack([o[1] for o in outs]),
            torch.stack([o[2] for o in outs]),
        )


def _resolve_device(device: str | None) -> str:
    if device is None or device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {device!r} requested but torch sees no CUDA GPU")
    return device


class TorchWorldModel(WorldModelBase):
    """Ensemble of probabilistic networks (MLP or GRU) implementing the WorldModel protocol.

    Build one with :meth:`fit` or :meth:`load`.

    Example:
        >>> from sepsis_sdk.sources.icu_sepsis import sample_cohort
        >>> cohort = sample_cohort(2000, seed=0)
        >>> wm = TorchWorldModel.fit(cohort, TorchConfig(epochs=10))     # doctest: +SKIP
        >>> wm.save("models/wm-torch")                                     # doctest: +SKIP
    """

    backend = "torch"
    config_class = TorchConfig

    def __init__(
        self,
        schema: FeatureSchema,
        config: TorchConfig,
        normaliser: Normaliser,
        net: _Ensemble,
        *,
        std_scale: np.ndarray | None = None,
        support_index: SupportIndex | None = None,
        device: str | None = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.schema = schema
        self.config = config
        self.window = config.window
        self.normaliser = normaliser
        self.device = _resolve_device(device)
        self.net = net.to(self.device).eval()
        d = len(schema)
        self.std_scale = np.ones(d) if std_scale is None else np.asarray(std_scale, dtype=np.float64)
        self.support_index = support_index
        self.info = dict(info or {})
        self.name = f"torch-{config.arch}"
        self._scale_t = torch.as_tensor(self.std_scale, dtype=torch.float32, device=self.device)
        # a Laplace head's scale b has SD b * sqrt(2)
        self._sd_factor = math.sqrt(2.0) if config.likelihood == "laplace" else 1.0

    @property
    def n_members(self) -> int:
        return self.config.n_members

    # ------------------------------------------------------------------ inference
    def _raw(self, inputs: Windows, chunk: int = 32768) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        means, stds, probs = [], [], []
        dev = self.device
        with torch.inference_mode():
            for lo in range(0, len(inputs), chunk):
                sl = slice(lo, lo + chunk)
                args = [
                    torch.as_tensor(np.ascontiguousarray(inputs.z[sl]), dtype=torch.float32, device=dev),
                    torch.as_tensor(np.ascontiguousarray(inputs.m[sl]), dtype=torch.float32, device=dev),
                    torch.as_tensor(np.ascontiguousarray(inputs.act[sl]), dtype=torch.long, device=dev),
                    torch.as_tensor(np.ascontiguousarray(inputs.valid[sl]), dtype=torch.float32, device=dev),
                    torch.as_tensor(np.ascontiguousarray(inputs.s[sl]), dtype=torch.float32, device=dev),
                ]
                mean, log_std, logits = self.net(*args)
                means.append(mean.cpu().numpy())
                stds.append((log_std.exp() * (self._scale_t * self._sd_factor)).cpu().numpy())
                probs.append(torch.softmax(logits, -1).mean(0).cpu().numpy())
        return np.concatenate(means, 1), np.concatenate(stds, 1), np.concatenate(probs, 0)

    def _step(self, inputs: Windows) -> StepOutput:
        mean, std, probs = self._raw(inputs)
        return StepOutput(
            mean=mean.astype(np.float64),
            std=std.astype(np.float64),
            p_death=probs[:, 1].astype(np.float64),
            p_discharge=probs[:, 2].astype(np.float64),
        )

    # ------------------------------------------------------------------ training
    @classmethod
    def fit(
        cls,
        cohort: Any,
        config: TorchConfig | None = None,
        *,
        device: str | None = None,
        progress: Callable[[int, int, dict[str, float]], None] | None = None,
        threads: int | None = None,
    ) -> TorchWorldModel:
        """Train on a :class:`~sepsis_sdk.Cohort` (all of it: split off your test patients first).

        Args:
            cohort: the training cohort.
            config: hyper-parameters (default :class:`TorchConfig`).
            device: ``"cuda"``, ``"cpu"`` or None (cuda when available).
            progress: called after each epoch with ``(epoch, epochs, metrics)``.
            threads: if set, ``torch.set_num_threads(threads)`` first (process-wide; 1 is fastest on a
                busy shared CPU).
        """
        cfg = config or TorchConfig()
        dev = _resolve_device(device)
        if threads:
            torch.set_num_threads(int(threads))
        schema = cohort.schema
        nz, data, train, val = training_split(
            cohort, cfg.window, cfg.val_fraction, cfg.seed, min_rows=2, who="torch world model"
        )
        torch.manual_seed(cfg.seed)
        net = _Ensemble(cfg, len(schema), data.inputs.s.shape[1]).to(dev)
        t0 = time.perf_counter()
        history = _train(net, cfg, train, val, dev, progress)
        model = cls(
            schema,
            cfg,
            nz,
            net,
            device=dev,
            support_index=SupportIndex.fit(train.inputs.last, train.inputs.act[:, -1], seed=cfg.seed),
        )
        if cfg.calibrate and len(val):
            model.std_scale = _calibrate(model, val)
            model._scale_t = torch.as_tensor(model.std_scale, dtype=torch.float32, device=model.device)
        model.info = {
            "train_rows": len(train),
            "val_rows": len(val),
            "train_patients": int(len(np.unique(train.episode))),
            "source": cohort.source,
            "seconds": round(time.perf_counter() - t0, 2),
            "device": dev,
            **history,
        }
        return model

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write ``config.json``, ``weights.safetensors`` and ``support.npz`` into directory ``path``."""
        st = require("safetensors.torch", "torch", "saving the torch world model")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in self.net.state_dict().items()}
        st.save_file(tensors, str(path / "weights.safetensors"))
        write_saved_model(self, path, self.backend, FORMAT_VERSION)
        return path

    @classmethod
    def load(cls, path: str | Path, *, device: str | None = None) -> TorchWorldModel:
        """Load a model written by :meth:`save` (predictions are identical to the saved model's)."""
        st = require("safetensors.torch", "torch", "loading the torch world model")
        path = Path(path)
        raw, schema, nz, sup = read_saved_model(path, cls.backend)
        cfg = TorchConfig.model_validate(raw["config"])
        net = _Ensemble(cfg, len(schema), len(nz.static_mean))
        state = st.load_file(str(path / "weights.safetensors"))
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelError(
                f"{path / 'weights.safetensors'}: weights do not match config.json ({exc})"
            ) from exc
        return cls(
            schema,
            cfg,
            nz,
            net,
            std_scale=np.asarray(raw["std_scale"]),
            support_index=sup,
            device=device,
            info=raw.get("info"),
        )


def _tensors(data: TrainingData, dev: str) -> dict[str, torch.Tensor]:
    i = data.inputs
    return {
        "z": torch.as_tensor(i.z, device=dev),
        "m": torch.as_tensor(i.m, device=dev),
        "act": torch.as_tensor(i.act, device=dev),
        "valid": torch.as_tensor(i.valid, device=dev),
        "s": torch.as_tensor(i.s, device=dev),
        "target": torch.as_tensor(data.target, device=dev),
        "tmask": torch.as_tensor(data.target_mask.astype(np.float32), device=dev),
        "term": torch.as_tensor(data.term, device=dev),
    }


def _member_loss(mean, log_std, logits, b, term_weight: float, likelihood: str = "gaussian") -> torch.Tensor:
    r = (b["target"] - mean) * torch.exp(-log_std)
    if likelihood == "laplace":  # log_std is log of the Laplace scale b here
        nll = (r.abs() + log_std + math.log(2.0)) * b["tmask"]
    else:
        nll = (0.5 * r * r + log_std + 0.5 * math.log(2 * math.pi)) * b["tmask"]
    gauss = nll.sum() / b["tmask"].sum().clamp(min=1.0)
    known = b["term"] >= 0
    ce = (
        F.cross_entropy(logits[known], b["term"][known], reduction="sum") / known.sum().clamp(min=1)
        if known.any()
        else logits.sum() * 0
    )
    return gauss + term_weight * ce


def _train(
    net: _Ensemble, cfg: TorchConfig, train: TrainingData, val: TrainingData, dev: str, progress
) -> dict[str, Any]:
    tr = _tensors(train, dev)
    va = _tensors(val, dev) if len(val) else None
    n = len(train)
    rng = np.random.default_rng(cfg.seed)
    boots = [
        rng.integers(0, n, n) if cfg.bootstrap and cfg.n_members > 1 else np.arange(n)
        for _ in range(cfg.n_members)
    ]
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    best, best_state, bad, curve = math.inf, None, 0, []
    steps = max(1, math.ceil(n / cfg.batch_size))
    for epoch in range(cfg.epochs):
        net.train()
        perms = [b[rng.permutation(n)] for b in boots]
        total = 0.0
        for j in range(steps):
            loss = 0.0
            for k, mem in enumerate(net.members):
                idx = torch.as_tensor(perms[k][j * cfg.batch_size : (j + 1) * cfg.batch_size], device=dev)
                b = {key: v[idx] for key, v in tr.items()}
                mean, log_std, logits = mem(b["z"], b["m"], _encode_actions(b["act"]), b["valid"], b["s"])
                loss = loss + _member_loss(mean, log_std, logits, b, cfg.term_weight, cfg.likelihood)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) / cfg.n_members
        metrics = {"train_loss": total / steps}
        if va is not None:
            net.eval()
            with torch.no_grad():
                vl = 0.0
                for lo in range(0, len(val), 8192):
                    b = {key: v[lo : lo + 8192] for key, v in va.items()}
                    mean, log_std, logits = net(b["z"], b["m"], b["act"], b["valid"], b["s"])
                    w = len(b["term"])
                    vl += (
                        w
                        * float(
                            sum(
                                _member_loss(
                                    mean[k], log_std[k], logits[k], b, cfg.term_weight, cfg.likelihood
                                )
                                for k in range(cfg.n_members)
                            )
                        )
                        / cfg.n_members
                    )
                metrics["val_loss"] = vl / len(val)
            if metrics["val_loss"] < best - 1e-4:
                best, bad = metrics["val_loss"], 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                bad += 1
        curve.append(metrics)
        if progress is not None:
            progress(epoch + 1, cfg.epochs, metrics)
        if va is not None and bad >= cfg.patience:
            break
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    return {"epochs_run": len(curve), "best_val_loss": None if best == math.inf else best, "curve": curve}


def _calibrate(model: TorchWorldModel, val: TrainingData) -> np.ndarray:
    model.std_scale = np.ones(len(model.schema))
    model._scale_t = torch.ones(len(model.schema), device=model.device)
    out = model._step(val.inputs)
    mean = out.mean.mean(0)
    return calibration_scale(
        mean, np.sqrt((out.std**2).mean(0)), out.mean.std(0), val.target, val.target_mask
    )
