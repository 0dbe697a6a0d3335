"""Turning cohorts and histories into the fixed-size windows every backend learns from."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from sepsis_sdk.world_model._space import Normaliser

# Termination classes: 0 the stay goes on, 1 death, 2 discharge alive / survival, -1 unknown (not trained on).
CONTINUE, DEATH, DISCHARGE, UNKNOWN = 0, 1, 2, -1


def fill_window(z: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Carry each feature's last observed value forward inside the window; never observed -> 0 (mean).

    Args:
        z: ``(B, W, D)`` normalised values (anything where not observed).
        mask: ``(B, W, D)`` True where observed.

    Returns:
        ``(B, W, D)`` float32 filled values and ``(B, D)`` the filled current (last) values.
    """
    _b, w, _d = z.shape
    pos = np.where(mask, np.arange(w)[None, :, None], -1)
    pos = np.maximum.accumulate(pos, axis=1)
    filled = np.take_along_axis(np.nan_to_num(z), np.maximum(pos, 0), axis=1)
    filled = np.where(pos >= 0, filled, 0.0).astype(np.float32)
    return filled, filled[:, -1].copy()


@dataclass(frozen=True)
class Windows:
    """Model inputs for ``n`` decision points (normalised model space).

    Attributes:
        z: ``(n, W, D)`` float32 values, carried forward, 0 where never observed.
        m: ``(n, W, D)`` float32 1 where observed.
        act: ``(n, W)`` int64 action after each step; the last column is the action being evaluated;
            -1 on padding.
        valid: ``(n, W)`` float32 1 on real steps.
        s: ``(n, S)`` float32 normalised static features.
        last: ``(n, D)`` float32 current values (``z[:, -1]``).
    """

    z: np.ndarray
    m: np.ndarray
    act: np.ndarray
    valid: np.ndarray
    s: np.ndarray
    last: np.ndarray

    def __len__(self) -> int:
        return len(self.z)

    def take(self, idx: np.ndarray) -> Windows:
        return Windows(*(getattr(self, f.name)[idx] for f in fields(self)))

    def repeat(self, n: int) -> Windows:
        return Windows(*(np.repeat(getattr(self, f.name), n, axis=0) for f in fields(self)))

    def copy(self) -> Windows:
        return Windows(*(getattr(self, f.name).copy() for f in fields(self)))


@dataclass(frozen=True)
class TrainingData:
    """Windows plus one-step targets, built from a cohort.

    Attributes:
        inputs: the windows (the last action column holds the logged action).
        target: ``(n, D)`` float32 change of each normalised feature at the next step.
        target_mask: ``(n, D)`` bool, True where the next value was observed (and the stay went on).
        term: ``(n,)`` int termination class (see module constants).
        episode: ``(n,)`` episode number of each row.
        next_stored: ``(n, D)`` next stored values (NaN where missing or terminal), for evaluation.
        current_stored: ``(n, D)`` current stored values.
        row: ``(n,)`` row number in the cohort table.
    """

    inputs: Windows
    target: np.ndarray
    target_mask: np.ndarray
    term: np.ndarray
    episode: np.ndarray
    next_stored: np.ndarray
    current_stored: np.ndarray
    row: np.ndarray

    def __len__(self) -> int:
        return len(self.term)

    def take(self, idx: np.ndarray) -> TrainingData:
        return TrainingData(
            self.inputs.take(idx),
            *(getattr(self, f.name)[idx] for f in fields(self) if f.name != "inputs"),
        )

    def split_patients(self, fraction: float, seed: int) -> tuple[TrainingData, TrainingData]:
        """Split rows by episode into ``(1 - fraction, fraction)`` parts."""
        eps = np.unique(self.episode)
        rng = np.random.default_rng(seed)
        n_val = int(round(fraction * len(eps)))
        if len(eps) >= 2:
            n_val = min(max(n_val, 1), len(eps) - 1)
        val_eps = rng.choice(eps, n_val, replace=False) if n_val else eps[:0]
        is_val = np.isin(self.episode, val_eps)
        return self.take(np.flatnonzero(~is_val)), self.take(np.flatnonzero(is_val))


def cohort_windows(cohort, normaliser: Normaliser, window: int) -> TrainingData:
    """Every decision point of ``cohort`` as a window of the last ``window`` steps with its targets."""
    x = cohort.features()
    mask = cohort.masks() & np.isfinite(x)
    zraw = np.where(mask, normaliser.to_model(x), np.nan)
    actions = cohort.actions
    done = cohort.data["done"].to_numpy(dtype=bool)
    ep = cohort.episode_index()
    n = len(x)
    starts = np.r_[0, np.flatnonzero(np.diff(ep)) + 1]
    ep_start = starts[ep]
    rows = np.arange(n)
    w = window
    src = rows[:, None] - (w - 1 - np.arange(w))[None, :]
    ok = src >= ep_start[:, None]
    srcc = np.maximum(src, 0)
    zw = np.where(ok[..., None], zraw[srcc], np.nan)
    mw = ok[..., None] & mask[srcc]
    act = np.where(ok, actions[srcc], -1).astype(np.int64)
    z, last = fill_window(zw, mw)
    static = cohort.static_matrix()
    s = normaliser.static_to_model(static).astype(np.float32)
    inputs = Windows(z, mw.astype(np.float32), act, ok.astype(np.float32), s, last)

    nxt = np.minimum(rows + 1, n - 1)
    next_mask = mask[nxt] & ~done[:, None]
    target = np.where(next_mask, zraw[nxt] - last, 0.0).astype(np.float32)
    term = np.full(n, CONTINUE, dtype=np.int64)
    if "outcome" in cohort.data.columns:
        outcome = cohort.data["outcome"].to_numpy()
        term[done & (outcome == 0)] = DEATH
        term[done & (outcome == 1)] = DISCHARGE
        term[done & (outcome != 0) & (outcome != 1)] = UNKNOWN
    else:
        term[done] = UNKNOWN
    next_stored = np.where(next_mask, x[nxt], np.nan)
    current = np.where(mask, x, np.nan)
    return TrainingData(inputs, target, next_mask, term, ep, next_stored, current, rows)


def cohort_batch(cohort, window: int, rows: np.ndarray | None = None):
    """The :class:`HistoryBatch` a model sees at decision ``rows`` of ``cohort`` (stored values; fast path).

    The last action column is -1 (the decision to evaluate), as :meth:`WorldModel.batch` makes it.
    """
    from sepsis_sdk.world_model._protocol import HistoryBatch

    x = cohort.features()
    mask = cohort.masks() & np.isfinite(x)
    actions = cohort.actions
    ep = cohort.episode_index()
    n = len(x)
    rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    starts = np.r_[0, np.flatnonzero(np.diff(ep)) + 1]
    ep_start = starts[ep][rows]
    w = window
    src = rows[:, None] - (w - 1 - np.arange(w))[None, :]
    ok = src >= ep_start[:, None]
    srcc = np.maximum(src, 0)
    xw = np.where(ok[..., None] & mask[srcc], x[srcc], np.nan)
    mw = ok[..., None] & mask[srcc]
    act = np.where(ok, actions[srcc], -1).astype(np.int64)
    act[:, -1] = -1
    static = cohort.static_matrix()[rows]
    return HistoryBatch(x=xw, mask=mw, actions=act, valid=ok, static=static)


def training_split(
    cohort, window: int, val_fraction: float, seed: int, *, min_rows: int, who: str
) -> tuple[Normaliser, TrainingData, TrainingData, TrainingData]:
    """What every backend does before fitting: normalise, window, and split patients into train/validation.

    Returns ``(normaliser, all windows, train, validation)``; the validation part is empty when
    ``val_fraction`` is 0. Raises :class:`~sepsis_sdk.errors.ModelError` below ``min_rows`` windows.
    """
    from sepsis_sdk.errors import ModelError

    x, mask = cohort.features(), cohort.masks()
    nz = Normaliser.fit(cohort.schema, x, mask & np.isfinite(x), cohort.static_matrix())
    data = cohort_windows(cohort, nz, window)
    if len(data) < min_rows:
        raise ModelError(f"{who}: cohort {cohort.source!r} has {len(data)} rows; need more to train")
    if val_fraction > 0:
        train, val = data.split_patients(val_fraction, seed)
    else:
        train, val = data, data.take(np.arange(0))
    return nz, data, train, val
