"""A policy whose decisions fan out over Ray: agent sweeps on many workers, one model per actor.

Anything that asks a policy for many decisions at once goes through ``action_probabilities(histories)``:
the evaluation's patient chunks, the exact value on the 713 ICU-Sepsis states, each step of the Monte-Carlo
episodes of a history-dependent policy. :class:`DistributedPolicy` splits that one call into chunks and
runs them on the cluster, so every one of those sweeps scales without knowing about Ray. Decisions come
back in the order asked, so results equal the plain policy's wherever the policy is deterministic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from sepsis_sdk.errors import UserError
from sepsis_sdk.scale._cluster import ray_module


def _probs_from_ref(ref: Any, histories: Sequence[Any]) -> np.ndarray:
    policy = ray_module().get(ref[0])  # the policy was put once; each chunk fetches it from its node's store
    return np.asarray(policy.action_probabilities(list(histories)), dtype=float)


def _probs_on_actor(policy: Any, histories: Sequence[Any]) -> np.ndarray:
    return np.asarray(policy.action_probabilities(list(histories)), dtype=float)


class DistributedPolicy:
    """Wraps a policy (or a factory building one per actor) so its decisions run across the cluster.

    Give either ``policy`` (shipped once to the object store; each Ray task uses a copy) or ``factory``
    (each actor builds its own policy once: a graph around a local LLM, a loaded world model). For a
    hosted LLM, wrap the chat model with :func:`sepsis_sdk.scale.limited` so all workers together stay
    under one request cap.

    Args:
        policy: a picklable policy (``name``, ``markov``, ``action_probabilities``).
        factory: or a function returning the policy, called once in each actor.
        executor: a :class:`~sepsis_sdk.scale.RayExecutor` (with ``policy``) or
            :class:`~sepsis_sdk.scale.RayActorExecutor` (made from ``factory`` when not given).
        chunk_size: decisions per task (a few dozen: large enough to hide the per-task overhead).
        name, markov: override the wrapped policy's (required with ``factory``: the policy is built remotely).
        n_actors: actors to start when the executor is made here.

    Example:
        >>> limit = ConcurrencyLimit(16)                                   # doctest: +SKIP
        >>> agent = GraphPolicy(build_psr_graph(limited(LiteLLMChat("gpt-4o-mini"), limit), ...))
        >>> run_evaluation(cfg, policies={"psr": DistributedPolicy(agent, executor=RayExecutor())})
    """

    def __init__(
        self,
        policy: Any = None,
        *,
        factory: Callable[[], Any] | None = None,
        executor: Any = None,
        chunk_size: int = 32,
        name: str | None = None,
        markov: bool | None = None,
        n_actors: int | None = None,
    ) -> None:
        if (policy is None) == (factory is None):
            raise UserError("give exactly one of policy= or factory=")
        if chunk_size < 1:
            raise UserError("chunk_size must be >= 1")
        if factory is not None and (name is None or markov is None):
            raise UserError("with factory=, also give name= and markov= (the policy is built on the actors)")
        self.policy, self.factory, self.chunk_size = policy, factory, int(chunk_size)
        self.name = name if name is not None else str(getattr(policy, "name", "policy"))
        self.markov = bool(markov if markov is not None else getattr(policy, "markov", False))
        self._n_actors = n_actors
        self._executor = executor
        self._own = executor is None
        self._ref: Any = None

    def _ex(self) -> Any:
        if self._executor is None:
            from sepsis_sdk.scale._executor import RayActorExecutor, RayExecutor

            self._executor = (
                RayActorExecutor(self.factory, n_actors=self._n_actors) if self.factory else RayExecutor()
            )
        return self._executor

    def action_probabilities(self, histories: Sequence[Any]) -> np.ndarray:
        """``(n, 25)`` probabilities, computed chunk by chunk on the cluster, in the order of ``histories``."""
        histories = list(histories)
        if not histories:
            return np.zeros((0, 25))
        chunks = [histories[i : i + self.chunk_size] for i in range(0, len(histories), self.chunk_size)]
        ex = self._ex()
        if self.factory is not None:
            parts = list(ex.map(_probs_on_actor, chunks))
        else:
            if self._ref is None:  # a list around the ref: Ray would otherwise resolve it for us
                self._ref = [ex.put(self.policy)]
            from functools import partial

            parts = list(ex.map(partial(_probs_from_ref, self._ref), chunks))
        return np.concatenate(parts)

    def close(self) -> None:
        """Stop an executor made here (actors included)."""
        if self._own and self._executor is not None:
            self._executor.close()
            self._executor = None
        self._ref = None

    def __getstate__(self) -> dict[str, Any]:  # the executor and the object ref stay with the driver
        return {**self.__dict__, "_executor": None, "_ref": None}


__all__ = ["DistributedPolicy"]
