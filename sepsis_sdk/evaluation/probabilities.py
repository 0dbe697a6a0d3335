"""A policy's action probabilities at every decision of a cohort, chunk by chunk and resumable.

Cohort-vectorised policies (:class:`~sepsis_sdk.policies.CohortPolicy`: state tables on ICU-Sepsis, fitted
feature models) answer for the whole cohort in one call. Others get each decision's recorded history, one chunk of patients at a time; with a work
directory every finished chunk is saved and reused on a rerun (resume after a crash). Chunks fan out
through an :class:`~sepsis_sdk.evaluation.executor.Executor`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sepsis_sdk.actions import N_ACTIONS
from sepsis_sdk.evaluation.executor import Executor, SerialExecutor
from sepsis_sdk.evaluation.storage import atomic_save_npy
from sepsis_sdk.policies import CohortPolicy, check_probabilities

if TYPE_CHECKING:
    from sepsis_sdk.cohort import Cohort


def _who(policy: Any) -> str:
    return str(getattr(policy, "name", "policy"))


def _probs_for_chunk(policy: Any, chunk: Cohort) -> np.ndarray:
    hist = list(chunk.histories())
    return check_probabilities(policy.action_probabilities(hist), len(hist), _who(policy))


def policy_probabilities(
    policy: Any,
    cohort: Cohort,
    *,
    work_dir: Path | None = None,
    executor: Executor | None = None,
    chunk_patients: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """``(n_rows, 25)`` action probabilities of ``policy`` at every decision of ``cohort``.

    Args:
        policy: any :class:`~sepsis_sdk.policies.Policy`.
        cohort: the decisions to score.
        work_dir: keep each finished chunk here and reuse it on a rerun.
        executor: runs the chunks (default: serially in this process).
        chunk_patients: patients per chunk.
        progress: called with ``(finished chunks, all chunks)``.
    """
    if isinstance(policy, CohortPolicy):  # one vectorised call instead of one history per row
        return check_probabilities(policy.cohort_probabilities(cohort), len(cohort), _who(policy))
    ids = cohort.patient_ids.tolist()
    chunks = [ids[i : i + chunk_patients] for i in range(0, len(ids), chunk_patients)]
    files = [work_dir / f"chunk_{k:05d}.npy" if work_dir is not None else None for k in range(len(chunks))]
    out: list[np.ndarray | None] = [np.load(f) if f is not None and f.exists() else None for f in files]
    todo = [k for k, o in enumerate(out) if o is None]
    done = len(chunks) - len(todo)
    if progress:
        progress(done, len(chunks))
    job = partial(_probs_for_chunk, policy)
    ex = executor or SerialExecutor()
    for k, probs in zip(todo, ex.map(job, [cohort.select(chunks[k]) for k in todo]), strict=True):
        f = files[k]
        if f is not None:
            atomic_save_npy(f, probs)
        out[k] = probs
        done += 1
        if progress:
            progress(done, len(chunks))
    return np.concatenate([o for o in out if o is not None]) if out else np.zeros((0, N_ACTIONS))


__all__ = ["policy_probabilities"]
