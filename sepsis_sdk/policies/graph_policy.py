"""Any agent graph as a :class:`~sepsis_sdk.policies.Policy`, run over many patients concurrently."""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sepsis_sdk.actions import N_ACTIONS, Action
from sepsis_sdk.errors import UserError
from sepsis_sdk.policies._base import PolicyBase
from sepsis_sdk.types import PatientHistory


@dataclass
class AgentDecision:
    """One decision of a graph for one patient.

    Attributes:
        patient_id: the patient.
        t: decision step.
        action: final canonical index (always 0-24: the graphs' guard sees to it).
        final: the graph's prescription record (source, rationale, guard reasons, ...).
        trace: the JSON-serialisable trace (see :func:`sepsis_sdk.graphs.build_trace`).
        error: set when the graph itself raised (the action then comes from ``on_error``).
    """

    patient_id: str
    t: int
    action: int
    final: dict[str, Any] = field(default_factory=dict)
    trace: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def action_obj(self) -> Action:
        return Action.from_index(self.action)

    def to_dict(self) -> dict[str, Any]:
        """The decision as a plain, JSON-serialisable dict."""
        return {"patient_id": self.patient_id, "t": self.t, "action": self.action, "final": self.final,
                "trace": self.trace, "error": self.error}  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        """Deprecated alias of :meth:`to_dict`."""
        import warnings

        warnings.warn(
            "AgentDecision.as_dict() is deprecated; use to_dict()", DeprecationWarning, stacklevel=2
        )
        return self.to_dict()


class GraphPolicy(PolicyBase):
    """Wrap a compiled agent graph (or a zero-argument factory of one) as a deterministic Policy.

    The graph is invoked with ``{"history": history}`` and must write ``final["action"]`` (all graphs of
    :mod:`sepsis_sdk.graphs` do). Graphs compiled with a checkpointer get a fresh ``thread_id`` per
    decision (``"<patient>/t<t>/<uuid>"``) unless ``config`` provides one.

    Args:
        graph: a compiled graph, or a callable returning one (built once, on first use).
        name: the policy's name in reports (default: the graph's name).
        config: extra LangGraph run config (e.g. ``{"recursion_limit": 50}``).
        concurrency: default bound on decisions in flight in :meth:`arun_many` / :meth:`run_many`.
        on_error: what to do when the graph raises: ``"raise"`` (default) or a Policy whose action is used
            (recorded in ``AgentDecision.error``).

    Example:
        >>> policy = GraphPolicy(lambda: build_psr_graph(model, world_model=wm))   # doctest: +SKIP
        >>> decisions = asyncio.run(policy.arun_many(histories, concurrency=8))   # doctest: +SKIP
        >>> probs = policy.action_probabilities(histories)                          # doctest: +SKIP
    """

    def __init__(
        self,
        graph: Any,
        *,
        name: str | None = None,
        config: dict[str, Any] | None = None,
        concurrency: int = 8,
        on_error: Any = "raise",
    ) -> None:
        if concurrency < 1:
            raise UserError(f"concurrency must be >= 1, got {concurrency}")
        if hasattr(graph, "invoke"):
            self._graph, self._factory = graph, None
        elif callable(graph):
            self._graph, self._factory = None, graph
        else:
            raise UserError(f"GraphPolicy needs a compiled graph or a factory, got {type(graph).__name__}")
        self._name = name
        self.config = dict(config or {})
        self.concurrency = concurrency
        self.on_error = on_error
        self.decisions: list[AgentDecision] = []
        self._threads = False

    @property
    def graph(self) -> Any:
        if self._graph is None:
            graph = self._factory() if self._factory is not None else None
            if not hasattr(graph, "invoke"):
                raise UserError(f"the graph factory returned {type(graph).__name__}, not a compiled graph")
            self._graph = graph
        return self._graph

    @property
    def name(self) -> str:
        return self._name or getattr(self.graph, "name", None) or "graph"

    def _config(self, h: PatientHistory) -> dict[str, Any]:
        cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.config.items()}
        if getattr(self.graph, "checkpointer", None) is not None:
            conf = cfg.setdefault("configurable", {})
            conf.setdefault("thread_id", f"{h.patient_id}/t{h.t}/{uuid.uuid4().hex[:8]}")
        return cfg

    def _decision(self, h: PatientHistory, state: dict[str, Any]) -> AgentDecision:
        from sepsis_sdk.graphs import build_trace

        final = state.get("final") or {}
        if "action" not in final:
            raise UserError(f"graph {self.name!r} finished without final['action'] for {h.patient_id}")
        return AgentDecision(h.patient_id, h.t, int(final["action"]), final, build_trace(state))

    def _on_error(self, h: PatientHistory, exc: BaseException) -> AgentDecision:
        if self.on_error == "raise":
            raise exc
        probs = np.asarray(self.on_error.action_probabilities([h]), dtype=float)[0]
        a = int(np.argmax(probs))
        msg = f"{type(exc).__name__}: {exc}"
        return AgentDecision(
            h.patient_id, h.t, a, {"action": a, "source": "on_error", "reasons": [msg]}, {}, msg
        )

    def decide(self, history: PatientHistory) -> AgentDecision:
        """Run the graph once for ``history``."""
        try:
            state = self.graph.invoke({"history": history}, self._config(history))
        except Exception as exc:
            return self._on_error(history, exc)
        return self._decision(history, state)

    async def adecide(self, history: PatientHistory) -> AgentDecision:
        """Async :meth:`decide` (sync nodes run in LangGraph's thread pool).

        A graph compiled with a sync-only checkpointer (``SqliteSaver``) runs ``invoke`` in a worker
        thread instead: the concurrency bound holds either way.
        """
        cfg = self._config(history)
        try:
            if self._threads:
                state = await asyncio.to_thread(self.graph.invoke, {"history": history}, cfg)
            else:
                try:
                    state = await self.graph.ainvoke({"history": history}, cfg)
                except NotImplementedError:
                    self._threads = True
                    state = await asyncio.to_thread(self.graph.invoke, {"history": history}, cfg)
        except Exception as exc:
            return self._on_error(history, exc)
        return self._decision(history, state)

    async def arun_many(self, histories: Sequence[PatientHistory], *, concurrency: int | None = None,
                        progress: Callable[[int], None] | None = None) -> list[AgentDecision]:  # fmt: skip
        """Decide for every history with at most ``concurrency`` decisions in flight; input order kept."""
        limit = concurrency or self.concurrency
        if limit < 1:
            raise UserError(f"concurrency must be >= 1, got {limit}")
        sem = asyncio.Semaphore(limit)
        done = 0
        _ = self.graph  # build once, before the tasks race to it

        async def one(h: PatientHistory) -> AgentDecision:
            nonlocal done
            async with sem:
                d = await self.adecide(h)
            done += 1
            if progress is not None:
                progress(done)
            return d

        return list(await asyncio.gather(*(one(h) for h in histories)))

    def run_many(
        self, histories: Sequence[PatientHistory], *, concurrency: int | None = None
    ) -> list[AgentDecision]:
        """Sync :meth:`arun_many` (works inside a running event loop too, through a worker thread)."""
        coro = self.arun_many(histories, concurrency=concurrency)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coro)
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            return ex.submit(asyncio.run, coro).result()

    def action_probabilities(self, histories: Sequence[PatientHistory]) -> np.ndarray:
        """``(n, 25)`` one-hot rows of the graph's decisions (kept in :attr:`decisions`)."""
        decisions = self.run_many(histories)
        self.decisions.extend(decisions)
        out = np.zeros((len(histories), N_ACTIONS))
        for i, d in enumerate(decisions):
            out[i, d.action] = 1.0
        return out


__all__ = ["AgentDecision", "GraphPolicy"]
