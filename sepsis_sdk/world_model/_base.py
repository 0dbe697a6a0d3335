"""Shared machinery of every backend: input validation, predictive summaries and batched rollouts.

A backend only implements :meth:`WorldModelBase._step`: given a batch of windows in normalised model
space (the last action column holding the action to evaluate) it returns, per ensemble member, the mean
and SD of the change of every feature, plus the probabilities of death and of discharge during the step.
Everything else (turning :class:`~sepsis_sdk.PatientHistory` objects into windows, bounds, intervals,
sampling, termination, support) is here, so every backend behaves the same way at its edges.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sepsis_sdk.actions import N_ACTIONS
from sepsis_sdk.errors import InvalidActionError, ModelError
from sepsis_sdk.features import FeatureSchema
from sepsis_sdk.types import PatientHistory
from sepsis_sdk.world_model._data import Windows, fill_window
from sepsis_sdk.world_model._protocol import HistoryBatch, NextStatePrediction, Rollout
from sepsis_sdk.world_model._space import Normaliser, to_clinical
from sepsis_sdk.world_model._support import SupportIndex

Z90 = 1.6448536269514722  # standard-normal quantile of a central 90 % interval


@dataclass(frozen=True)
class StepOutput:
    """What a backend returns for ``R`` windows and ``M`` ensemble members (normalised model space).

    Attributes:
        mean: ``(M, R, D)`` predicted change of each feature from its current value.
        std: ``(M, R, D)`` predictive SD of the change (aleatoric, per member).
        p_death: ``(R,)`` probability of death during the step (ensemble mean).
        p_discharge: ``(R,)`` probability of discharge alive / survival during the step (ensemble mean).
    """

    mean: np.ndarray
    std: np.ndarray
    p_death: np.ndarray
    p_discharge: np.ndarray


class WorldModelBase:
    """Base class implementing the :class:`~sepsis_sdk.world_model.WorldModel` protocol.

    Subclasses set :attr:`schema`, :attr:`window`, :attr:`normaliser` and optionally
    :attr:`support_index`, and implement :meth:`_step`.
    """

    schema: FeatureSchema
    window: int
    normaliser: Normaliser
    support_index: SupportIndex | None = None
    name: str = "world-model"

    # ------------------------------------------------------------------ to implement
    def _step(self, inputs: Windows) -> StepOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ input validation
    def batch(self, histories: Sequence[PatientHistory] | PatientHistory | HistoryBatch) -> HistoryBatch:
        """Validate ``histories`` and stack their last :attr:`window` steps into a :class:`HistoryBatch`.

        Raises:
            ModelError: an empty batch, a history with the wrong features, or NaN marked as observed.
            InvalidActionError: a past action outside 0-24.
        """
        if isinstance(histories, HistoryBatch):
            return self._check_batch(histories)
        if isinstance(histories, PatientHistory):
            histories = [histories]
        hs = list(histories)
        if not hs:
            raise ModelError(f"{self.name}: empty batch of histories")
        w, d, names = self.window, len(self.schema), tuple(self.schema.names)
        b = len(hs)
        x = np.full((b, w, d), np.nan)
        mask = np.zeros((b, w, d), dtype=bool)
        actions = np.full((b, w), -1, dtype=np.int64)
        valid = np.zeros((b, w), dtype=bool)
        static = np.full((b, len(self.schema.static)), np.nan)
        for i, h in enumerate(hs):
            if not isinstance(h, PatientHistory):
                raise ModelError(f"{self.name}: item {i} is a {type(h).__name__}, not a PatientHistory")
            pid = h.patient_id
            if h.feature_names and tuple(h.feature_names) != names:
                diff = next(
                    (j for j, (a, c) in enumerate(zip(h.feature_names, names, strict=False)) if a != c),
                    min(len(names), len(h.feature_names)),
                )
                raise ModelError(
                    f"{self.name}: patient {pid!r} has features {len(h.feature_names)} named differently from "
                    f"schema {self.schema.name!r} ({d} features); first difference at position {diff}"
                )
            obs = h.observations[-w:]
            n = len(obs)
            vals = np.array([o.values for o in obs], dtype=np.float64)
            if vals.ndim != 2 or vals.shape[1] != d:
                got = vals.shape[1] if vals.ndim == 2 else 0
                raise ModelError(
                    f"{self.name}: patient {pid!r} has {got} features per observation; schema {self.schema.name!r} has {d}"
                )
            obs_mask = np.array([o.observed for o in obs], dtype=bool)
            bad = obs_mask & ~np.isfinite(vals)
            if bad.any():
                r, c = np.argwhere(bad)[0]
                raise ModelError(
                    f"{self.name}: patient {pid!r}, t={obs[r].t}, feature {names[c]!r} is {vals[r, c]} but marked observed"
                )
            past = list(h.actions[-(n - 1) :]) if n > 1 else []
            for a in past:
                if isinstance(a, bool) or not isinstance(a, (int, np.integer)) or not 0 <= int(a) < N_ACTIONS:
                    raise InvalidActionError(
                        f"{self.name}: patient {pid!r} has past action {a!r}; actions are 0-24"
                    )
            x[i, w - n :] = np.where(obs_mask, vals, np.nan)
            mask[i, w - n :] = obs_mask
            actions[i, w - n : w - 1] = past
            valid[i, w - n :] = True
            for j, sname in enumerate(self.schema.static):
                static[i, j] = float(h.static.get(sname, np.nan))
        return HistoryBatch(x=x, mask=mask, actions=actions, valid=valid, static=static)

    def _check_batch(self, hb: HistoryBatch) -> HistoryBatch:
        d = len(self.schema)
        if hb.x.ndim != 3 or hb.x.shape[2] != d:
            raise ModelError(
                f"{self.name}: batch x has shape {hb.x.shape}; expected (B, W, {d}) for schema {self.schema.name!r}"
            )
        b, w, _ = hb.x.shape
        if b == 0:
            raise ModelError(f"{self.name}: empty batch")
        if hb.mask.shape != hb.x.shape or hb.actions.shape != (b, w) or hb.valid.shape != (b, w):
            raise ModelError(
                f"{self.name}: batch arrays disagree in shape: x {hb.x.shape}, mask {hb.mask.shape}, actions {hb.actions.shape}, valid {hb.valid.shape}"
            )
        n_static = len(self.schema.static)
        if np.shape(hb.static) != (b, n_static):
            raise ModelError(
                f"{self.name}: batch static has shape {np.shape(hb.static)}; expected ({b}, {n_static}) for {list(self.schema.static)}"
            )
        bad = hb.mask.astype(bool) & ~np.isfinite(hb.x)
        if bad.any():
            i, t, c = np.argwhere(bad)[0]
            raise ModelError(
                f"{self.name}: batch row {i}, step {t}, feature {self.schema.names[c]!r} is NaN but marked observed"
            )
        act = np.asarray(hb.actions)
        past = act[:, :-1][hb.valid[:, :-1].astype(bool)]
        if past.size and ((past < 0) | (past >= N_ACTIONS)).any():
            raise InvalidActionError(
                f"{self.name}: batch holds past actions outside 0-24: {sorted(set(past[(past < 0) | (past >= N_ACTIONS)].tolist()))[:5]}"
            )
        if w == self.window:
            return hb
        if w > self.window:
            k = self.window
            return HistoryBatch(
                hb.x[:, -k:], hb.mask[:, -k:], hb.actions[:, -k:], hb.valid[:, -k:], hb.static
            )
        pad = self.window - w
        return HistoryBatch(
            np.concatenate([np.full((b, pad, d), np.nan), hb.x], 1),
            np.concatenate([np.zeros((b, pad, d), bool), hb.mask.astype(bool)], 1),
            np.concatenate([np.full((b, pad), -1, np.int64), act], 1),
            np.concatenate([np.zeros((b, pad), bool), hb.valid.astype(bool)], 1),
            hb.static,
        )

    def _as_batch(self, histories: Any) -> HistoryBatch:
        return (
            histories
            if isinstance(histories, HistoryBatch)
            and histories.x.shape[1:] == (self.window, len(self.schema))
            else self.batch(histories)
        )

    @staticmethod
    def _check_actions(actions: Any, n: int, what: str = "actions") -> np.ndarray:
        arr = np.asarray(actions)
        if arr.ndim == 0:
            arr = np.full(n, arr)
        if arr.dtype == bool or not (
            np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
        ):
            raise InvalidActionError(f"{what} must be integer action indices 0-24, got dtype {arr.dtype}")
        if arr.size and (
            not np.isfinite(arr).all()
            or (arr != np.round(arr)).any()
            or arr.min() < 0
            or arr.max() >= N_ACTIONS
        ):
            bad = arr[~np.isfinite(arr) | (arr != np.round(arr)) | (arr < 0) | (arr >= N_ACTIONS)]
            raise InvalidActionError(
                f"{what} must be integer action indices 0-24; got {bad.ravel()[:5].tolist()}"
            )
        return arr.astype(np.int64)

    def _inputs(self, hb: HistoryBatch) -> Windows:
        nz = self.normaliser
        mask = hb.mask.astype(bool) & hb.valid.astype(bool)[..., None]
        # Observed values are clipped to the schema's plausible bounds, as the training data were
        # (Normaliser.fit): a value such as 1e100 would overflow float32 and come back as NaN states and
        # NaN probabilities. Non-finite values marked observed were rejected by batch() already.
        x = np.clip(np.where(mask, hb.x, 0.0), nz.lower, nz.upper)
        zraw = np.where(mask, nz.to_model(x), np.nan)
        z, last = fill_window(zraw, mask)
        # static features have no bounds: keep them within +-1e4 SD so float32 stays finite
        s = np.clip(nz.static_to_model(np.asarray(hb.static, dtype=np.float64)), -1e4, 1e4).astype(np.float32)
        return Windows(
            z,
            mask.astype(np.float32),
            np.asarray(hb.actions, dtype=np.int64).copy(),
            hb.valid.astype(np.float32),
            s,
            last,
        )

    # ------------------------------------------------------------------ the protocol
    @property
    def n_members(self) -> int:
        return 1

    def predict(
        self, histories: HistoryBatch | Sequence[PatientHistory], actions: Any
    ) -> NextStatePrediction:
        """Next-state distribution of each patient ``b`` under ``actions[b]`` (0-24; a scalar is shared).

        ``mean`` is the ensemble-mixture mean in model space mapped back to stored space (for log-modelled
        features this is a median-like value, never an impossible one); ``std``/``epistemic_std`` are the
        model-space spreads mapped through the local slope; ``lower``/``upper`` the exact 5 %/95 % points of
        a Gaussian with the mixture's moments, clipped to the bounds.
        """
        hb = self._as_batch(histories)
        a = self._check_actions(actions, hb.size)
        if a.shape != (hb.size,):
            raise ModelError(f"{self.name}: need one action per patient ({hb.size}), got shape {a.shape}")
        inp = self._inputs(hb)
        inp.act[:, -1] = a
        return self._predict_windows(inp)

    def _predict_windows(self, inp: Windows) -> NextStatePrediction:
        """:meth:`predict` on prepared windows (the last action column holds the evaluated action)."""
        out = self._step(inp)
        nz = self.normaliser
        mu = inp.last[None].astype(np.float64) + out.mean  # (M, B, D)
        m = mu.mean(0)
        epi = mu.std(0)
        var = (out.std.astype(np.float64) ** 2).mean(0) + epi**2
        sd = np.sqrt(var)
        zl, zu = nz.z_lower, nz.z_upper
        zm = np.clip(m, zl, zu)
        slope = nz.stored_slope(zm)
        return NextStatePrediction(
            mean=nz.to_stored(zm),
            std=sd * slope,
            epistemic_std=epi * slope,
            lower=nz.to_stored(np.clip(m - Z90 * sd, zl, zu)),
            upper=nz.to_stored(np.clip(m + Z90 * sd, zl, zu)),
            p_death=np.asarray(out.p_death, dtype=np.float64),
            p_discharge=np.asarray(out.p_discharge, dtype=np.float64),
            support=self._support_z(inp.last, inp.act[:, -1]),
        )

    def support(self, histories: HistoryBatch | Sequence[PatientHistory], actions: Any) -> np.ndarray:
        """``(B,)`` how well the training cohort covers (current state, action): see :mod:`._support`."""
        hb = self._as_batch(histories)
        a = self._check_actions(actions, hb.size)
        return self._support_z(self._inputs(hb).last, a)

    def support_all(self, histories: HistoryBatch | Sequence[PatientHistory]) -> np.ndarray:
        """``(B, 25)`` support of every action for each patient (one neighbour search)."""
        hb = self._as_batch(histories)
        return self._support_all_z(self._inputs(hb).last)

    def _support_z(self, last: np.ndarray, actions: np.ndarray) -> np.ndarray:
        if self.support_index is None:
            return np.ones(len(last))
        return self.support_index.support(last, actions)

    def _support_all_z(self, last: np.ndarray) -> np.ndarray:
        if self.support_index is None:
            return np.ones((len(last), N_ACTIONS))
        return self.support_index.support_all(last)

    def rollout(
        self,
        histories: HistoryBatch | Sequence[PatientHistory],
        plans: Any,
        *,
        n_samples: int = 8,
        seed: int = 0,
        noise: bool = True,
    ) -> Rollout:
        """Simulate action plans for every patient, all at once.

        Args:
            histories: ``B`` patients (histories or a :class:`HistoryBatch`).
            plans: ``(B, K, H)`` action indices per patient, or ``(K, H)`` shared by all, or ``(H,)`` one plan.
            n_samples: ``N`` sampled futures per (patient, plan).
            seed: RNG seed. Each patient's noise is drawn from its own stream, keyed by ``seed`` and the
                patient's history, so a patient's futures do not depend on who else is in the batch.
            noise: ``False`` gives the central path instead of samples: each step takes the ensemble's
                mean prediction and nobody is sampled to terminate (``p_death``/``p_discharge`` still
                integrate the hazards along that path). Used for point forecasts.

        Each step samples one ensemble member per sample (so futures carry model disagreement), a Gaussian
        change in model space clipped to the bounds, and termination (death, discharge) from the mean
        hazards. ``p_death``/``p_discharge`` integrate the hazards along each sampled path (lower variance
        than counting sampled deaths) and average over samples.
        """
        hb = self._as_batch(histories)
        b = hb.size
        p = self._plans(plans, b)
        if int(n_samples) < 1:
            raise ModelError(f"{self.name}: n_samples must be >= 1, got {n_samples}")
        k, h_len, n = p.shape[1], p.shape[2], int(n_samples)
        d = len(self.schema)
        r = b * k * n
        base = self._inputs(hb)
        first_support = self._support_all_z(base.last)[np.arange(b)[:, None], p[:, :, 0]]
        inp = base.repeat(k * n)
        plan_rows = np.repeat(p.reshape(b * k, h_len), n, axis=0)  # rows ordered (b, k, n)
        eps, u, member = self._noise(hb, seed, k, n, h_len, d)
        nz = self.normaliser
        zl, zu = nz.z_lower, nz.z_upper
        states = np.full((r, h_len, d), np.nan)
        epi_path = np.full((r, h_len, d), np.nan)
        alive_hist = np.zeros((r, h_len), dtype=bool)
        alive = np.ones(r, dtype=bool)
        ended = np.zeros(r, dtype=np.int8)
        surv = np.ones(r)
        pd_acc = np.zeros(r)
        pc_acc = np.zeros(r)
        rows = np.arange(r)
        z, m, act, valid, last = inp.z, inp.m, inp.act, inp.valid, inp.last
        for t in range(h_len):
            act[:, -1] = plan_rows[:, t]
            out = self._step(Windows(z, m, act, valid, inp.s, last))
            mu = last[None].astype(np.float64) + out.mean
            n_m = mu.shape[0]
            if noise:
                pick = member[:, t] % n_m
                znew = np.clip(mu[pick, rows] + out.std[pick, rows] * eps[:, t], zl, zu)
            else:
                znew = np.clip(mu.mean(0), zl, zu)
            stored = nz.to_stored(znew)
            epi_path[:, t] = nz.to_stored(np.clip(mu, zl, zu)).std(0) if n_m > 1 else 0.0
            pdth = np.clip(out.p_death, 0.0, 1.0)
            pdis = np.clip(out.p_discharge, 0.0, 1.0 - pdth)
            pd_acc += surv * pdth
            pc_acc += surv * pdis
            surv = surv * (1.0 - pdth - pdis)
            died = (u[:, t] < pdth) & noise
            left = ~died & (u[:, t] < pdth + pdis) & noise
            ended[alive & died] = 1
            ended[alive & left] = 2
            alive = alive & ~died & ~left
            alive_hist[:, t] = alive
            states[:, t] = np.where(alive[:, None], stored, np.nan)
            # slide the window: the evaluated action becomes the last past action
            z = np.concatenate([z[:, 1:], znew[:, None].astype(np.float32)], 1)
            m = np.concatenate([m[:, 1:], np.ones((r, 1, d), np.float32)], 1)
            act = np.concatenate([act[:, 1:], np.full((r, 1), -1, np.int64)], 1)
            valid = np.concatenate([valid[:, 1:], np.ones((r, 1), np.float32)], 1)
            last = znew.astype(np.float32)
        shape = (b, k, n)
        return Rollout.from_paths(
            states, alive_hist, epi_path, pd_acc, pc_acc, ended, shape, first_support, p
        )

    def _plans(self, plans: Any, b: int) -> np.ndarray:
        """``(B, K, H)`` validated action plans from ``(B, K, H)``, ``(K, H)`` or ``(H,)``."""
        p = self._check_actions(plans, 0, "plans")
        if p.ndim == 1:
            p = p[None, None, :]
        if p.ndim == 2:
            p = np.broadcast_to(p[None], (b, *p.shape))
        if p.ndim != 3 or p.shape[0] != b or p.shape[1] < 1 or p.shape[2] < 1:
            raise ModelError(
                f"{self.name}: plans must be (B={b}, K, H), (K, H) or (H,), got shape {np.shape(plans)}"
            )
        return p

    def _noise(
        self, hb: HistoryBatch, seed: int, k: int, n: int, h: int, d: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-patient random streams keyed by (seed, a checksum of the patient's window)."""
        b = hb.size
        eps = np.empty((b, k * n, h, d))
        u = np.empty((b, k * n, h))
        member = np.empty((b, k * n, h), dtype=np.int64)
        for i in range(b):
            key = zlib.crc32(np.ascontiguousarray(np.nan_to_num(hb.x[i], nan=-999.0)).tobytes())
            key = zlib.crc32(np.ascontiguousarray(hb.actions[i]).tobytes(), key)
            key = zlib.crc32(np.ascontiguousarray(np.nan_to_num(hb.static[i], nan=-999.0)).tobytes(), key)
            rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, key])
            eps[i] = rng.standard_normal((k * n, h, d))
            u[i] = rng.random((k * n, h))
            member[i] = rng.integers(0, 1 << 30, (k * n, h))
        return eps.reshape(b * k * n, h, d), u.reshape(b * k * n, h), member.reshape(b * k * n, h)

    # ------------------------------------------------------------------ helpers for users
    def to_clinical(self, x: np.ndarray) -> np.ndarray:
        """Stored values ``(..., D)`` in clinical units where known (see :func:`~._space.to_clinical`)."""
        return to_clinical(self.schema, x)

    def to_model_space(self, x: np.ndarray) -> np.ndarray:
        """Stored values ``(..., D)`` in this model's normalised space."""
        return self.normaliser.to_model(x)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}: schema {self.schema.name!r}, {len(self.schema)} features, window {self.window}, {self.n_members} member(s)>"


def write_saved_model(model: Any, path: Any, backend: str, format_version: int, **extra: Any) -> None:
    """Write what every backend saves: ``support.npz`` and ``config.json`` (schema, normaliser, config, ...).

    Backend-specific fields (e.g. xgboost's noise estimates) come in ``extra``; the weights are the caller's.
    """
    import json

    sup = model.support_index
    if sup is not None:
        np.savez(path / "support.npz", **sup.to_arrays())
    cfg = {
        "backend": backend,
        "format_version": format_version,
        "config": model.config.model_dump(),
        "schema": model.schema.model_dump(),
        "normaliser": model.normaliser.to_dict(),
        **extra,
        "std_scale": model.std_scale.tolist(),
        "support": sup.config() if sup is not None else None,
        "info": model.info,
    }
    (path / "config.json").write_text(json.dumps(cfg, indent=1))


def read_saved_model(
    path: Any, backend: str
) -> tuple[dict[str, Any], FeatureSchema, Normaliser, SupportIndex | None]:
    """Read and check ``config.json`` of a model saved by ``backend``; return it with schema, normaliser, support."""
    import json

    cfg_file = path / "config.json"
    if not cfg_file.exists():
        raise ModelError(f"{path}: no config.json (not a saved world model)")
    raw = json.loads(cfg_file.read_text())
    if raw.get("backend") != backend:
        raise ModelError(f"{cfg_file}: backend is {raw.get('backend')!r}, not {backend!r}")
    sup = None
    if raw.get("support") is not None:
        with np.load(path / "support.npz", allow_pickle=False) as arrs:
            sup = SupportIndex.from_arrays(dict(arrs), raw["support"])
    return raw, FeatureSchema.model_validate(raw["schema"]), Normaliser.from_dict(raw["normaliser"]), sup


def calibration_scale(
    mean: np.ndarray, alea: np.ndarray, epi: np.ndarray, target: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """Per-feature factor on the aleatoric SD that makes the 90 % interval cover 90 % of held-out changes.

    Args:
        mean, alea, epi, target: ``(n, D)`` ensemble mean change, aleatoric SD, ensemble SD, observed change.
        mask: ``(n, D)`` where the target was observed.
    """
    grid = np.exp(np.linspace(np.log(0.1), np.log(10.0), 121))
    d = mean.shape[1]
    out = np.ones(d)
    err = np.abs(target - mean)
    for j in range(d):
        ok = mask[:, j]
        if ok.sum() < 20:
            continue
        e, a, p = err[ok, j], alea[ok, j], epi[ok, j]
        cov = np.array([(e <= Z90 * np.sqrt((c * a) ** 2 + p**2)).mean() for c in grid])
        out[j] = grid[int(np.argmin(np.abs(cov - 0.9)))]
    return out
