"""Vectorised bootstrap over patients (episodes).

Every off-policy estimator in :mod:`sepsis_sdk.evaluation.ope` is a ratio of **weighted sums of
per-episode summaries**. A bootstrap resample of episodes is therefore just a vector of counts (how many
times each episode was drawn), and a batch of ``B`` resamples is a ``(B, n_episodes)`` count matrix:
every estimator on every resample becomes a few matrix products instead of a Python loop over
trajectories. The point estimate is the same computation with a single row of ones.

Counts are drawn by sampling ``n`` indices per resample and counting them with one ``bincount``
(exactly a multinomial draw, and much faster than ``Generator.multinomial`` for many episodes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from sepsis_sdk.errors import UserError

DEFAULT_CHUNK = 250


def bootstrap_counts(n_episodes: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """A ``(n_boot, n_episodes)`` float matrix of resampling counts; each row sums to ``n_episodes``.

    Args:
        n_episodes: number of episodes (patients) to resample.
        n_boot: number of resamples.
        rng: the random generator (the caller owns the seed).
    """
    if n_episodes <= 0:
        raise UserError(f"cannot bootstrap {n_episodes} episodes")
    idx = rng.integers(0, n_episodes, size=(n_boot, n_episodes))
    idx += (np.arange(n_boot) * n_episodes)[:, None]
    return (
        np.bincount(idx.ravel(), minlength=n_boot * n_episodes).reshape(n_boot, n_episodes).astype(np.float64)
    )


def iter_count_chunks(
    n_episodes: int, n_boot: int, *, seed: int = 0, chunk: int = DEFAULT_CHUNK
) -> Iterator[np.ndarray]:
    """Yield count matrices of at most ``chunk`` resamples each, ``n_boot`` resamples in all.

    The stream depends only on ``(n_episodes, n_boot, seed, chunk)``, so results are reproducible; the
    chunking bounds memory (``chunk * n_episodes`` floats at a time).
    """
    if n_boot < 0:
        raise UserError(f"n_bootstrap must be >= 0, got {n_boot}")
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        yield bootstrap_counts(n_episodes, b, rng)
        done += b


def bootstrap_statistics(
    statistics: dict[str, Callable[[np.ndarray], np.ndarray]],
    n_episodes: int,
    n_boot: int,
    *,
    seed: int = 0,
    chunk: int = DEFAULT_CHUNK,
) -> dict[str, np.ndarray]:
    """Evaluate several weighted statistics on the same bootstrap resamples.

    Args:
        statistics: name -> function mapping a ``(B, n_episodes)`` weight matrix to ``(B,)`` values.
        n_episodes: number of episodes.
        n_boot: number of resamples.
        seed: RNG seed (all statistics see the same resamples).
        chunk: resamples per batch.

    Returns:
        name -> ``(n_boot,)`` array of resampled values (NaN where a resample leaves the statistic
        undefined, e.g. every importance weight zero).
    """
    out: dict[str, list[np.ndarray]] = {k: [] for k in statistics}
    for counts in iter_count_chunks(n_episodes, n_boot, seed=seed, chunk=chunk):
        for name, fn in statistics.items():
            out[name].append(np.asarray(fn(counts), dtype=np.float64))
    return {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in out.items()}


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval ``[q_(1-level)/2, q_(1+level)/2]``, ignoring NaN resamples."""
    if not 0.0 < level < 1.0:
        raise UserError(f"level must be in (0, 1), got {level}")
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(finite, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def lower_bound(samples: np.ndarray, quantile: float = 0.05) -> float:
    """The ``quantile`` of the resamples: AI Clinician's "95 % lower bound" is the 5th percentile."""
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return float("nan")
    return float(np.percentile(finite, 100 * quantile))


__all__ = [
    "bootstrap_counts",
    "bootstrap_statistics",
    "iter_count_chunks",
    "lower_bound",
    "percentile_interval",
]
