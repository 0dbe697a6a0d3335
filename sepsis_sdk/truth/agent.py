"""The true value of an LLM agent graph on ICU-Sepsis: exact (Markov mode) or Monte Carlo (history mode).

**Markov mode** (:func:`markov_agent_value`): the graph decides once for each of the 713 clinical states,
from a one-step :class:`~sepsis_sdk.PatientHistory` built from that state's stored observation, and the
resulting ``(713,)`` action table is solved exactly (:func:`~sepsis_sdk.truth.state_values`). What the
graph sees is exactly what a patient at the first decision of a stay shows:

- ``patient_id`` is the same neutral ``"icu-sepsis"`` for every state and ``state_id`` is ``None``: the
  hidden state index reaches neither the prompt, the tools, the guard nor the fallback;
- one observation at ``t=0`` (the state's 47 features, as stored by the MDP) and no previous action, so the
  prompt reads "Patient icu-sepsis, decision at 4-hour step t=0", the key values as z-scores (SOFA in
  points) and "No treatment given yet". Rules that look at the previous step (G2: no vasopressor
  escalation once MAP >= 65) therefore never fire in this mode.

A graph that reads more of the history than its last observation is scored as if each decision were the
first of a stay: that is the Markov approximation of the agent, and its value is exact for that table.

**History mode** (:func:`monte_carlo_agent_value`): the graph acts in the true MDP
(:meth:`~sepsis_sdk.truth.ICUSepsisTruth.simulate`) on each simulated patient's whole history (observations
and actions so far; ``state_id`` stripped), with an episode budget and a confidence interval.

**Cache and resume.** Decisions are appended, one JSON line each, to ``<cache_dir>/<key>/decisions.jsonl``;
the key hashes the model string, the adapter (path and content), the graph kind, a fingerprint of the SDK's
prompt templates and patient rendering, the graph options the caller names, and the mode. A line is written
and flushed as soon as its decision is made, so a sweep that crashes resumes without asking the model again
for the states already decided (a torn last line is dropped). The model is called with at most
``max_concurrency`` decisions in flight (a thread pool).

Example:
    >>> from sepsis_sdk.graphs import build_direct_graph                       # doctest: +SKIP
    >>> from sepsis_sdk.truth.agent import markov_agent_value                  # doctest: +SKIP
    >>> g = build_direct_graph("openai/gpt-4o-mini")                           # doctest: +SKIP
    >>> r = markov_agent_value(g, model="openai/gpt-4o-mini", graph_kind="direct",
    ...                        cache_dir="runs/agent-cache", max_concurrency=8)  # doctest: +SKIP
    >>> r.value, r.shares                                                      # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sepsis_sdk.actions import N_ACTIONS
from sepsis_sdk.errors import UserError
from sepsis_sdk.sources.icu_sepsis import N_CLINICAL, icu_sepsis_schema, load_mdp
from sepsis_sdk.types import Observation, PatientHistory

MARKOV_PATIENT_ID = "icu-sepsis"
"""The ``patient_id`` every Markov-mode history carries (the same for all states: it reveals nothing)."""

SOURCES = ("model", "guard", "fallback")
"""Where a final action comes from (the guard's ``final["source"]``)."""

ADHERENCE_RULES = ("G1", "G2")
UNSAFE_RULES = ("H1", "H2", "H3")


# ---------------------------------------------------------------------------------------------- histories
def state_histories(states: Iterable[int] | None = None) -> list[PatientHistory]:
    """One one-step history per clinical state (all 713 by default), as the Markov mode shows them.

    Each holds the state's stored observation at ``t=0``, no action, ``patient_id``
    :data:`MARKOV_PATIENT_ID` and no ``state_id``: nothing in it names the hidden state.
    """
    idx = _states(states)
    obs = load_mdp().observation(np.arange(N_CLINICAL))
    names = tuple(icu_sepsis_schema().names)
    return [
        PatientHistory(
            patient_id=MARKOV_PATIENT_ID,
            observations=(Observation(t=0, values=tuple(float(v) for v in obs[s])),),
            feature_names=names,
        )
        for s in idx
    ]


def _states(states: Iterable[int] | None) -> list[int]:
    if states is None:
        return list(range(N_CLINICAL))
    idx = [int(s) for s in states]
    bad = [s for s in idx if not 0 <= s < N_CLINICAL]
    if bad:
        raise UserError(f"states must be clinical states 0-{N_CLINICAL - 1}, got {bad[:5]}")
    if len(set(idx)) != len(idx):
        raise UserError("states must not repeat")
    return idx


def markov_history(history: PatientHistory) -> PatientHistory:
    """The one-step, anonymous history the Markov mode shows for ``history``'s current observation.

    Only the current observation is kept (at ``t=0``, no previous action, no static values), with
    ``patient_id`` :data:`MARKOV_PATIENT_ID` and no ``state_id``: two histories whose current observations
    are equal get the same decision (and the same cache line).
    """
    return PatientHistory(
        patient_id=MARKOV_PATIENT_ID,
        observations=(Observation(t=0, values=tuple(float(v) for v in history.current.values)),),
        feature_names=history.feature_names,
    )


def observation_item(history: PatientHistory) -> str:
    """The cache item of a Markov decision: a hash of the current observation (rounded to 1e-6)."""
    values = np.round(np.asarray(history.current.values, dtype=np.float64), 6) + 0.0  # -0.0 -> 0.0
    payload = json.dumps([list(history.feature_names), values.tolist()])
    return "obs-" + hashlib.sha256(payload.encode()).hexdigest()[:24]


# ---------------------------------------------------------------------------------------------- cache key
def prompt_fingerprint() -> str:
    """A short hash of the SDK's prompt templates and of how a patient is rendered for them.

    A change to the system prompt, the direct/PSR prompts, the SepsisAgent tool schemas or the patient
    rendering changes it, so cached decisions made with other prompts are not reused.
    """
    import sepsis_sdk.graphs as G
    from sepsis_sdk.render import render_history

    probe = state_histories([0])[0]
    parts: list[str] = [render_history(probe, icu_sepsis_schema())]
    for name in ("SYSTEM", "PRESCRIPTION_TOOL", "SIMULATION_TOOL", "NUDGE"):
        parts.append(json.dumps(getattr(G, name, None), sort_keys=True, default=str))
    probes = {
        "direct_prompt": ("<patient>",),
        "propose_prompt": ("<patient>", 3),
        "refine_prompt": ("<patient>", "<simulation>", "<critique>", 1),
    }
    for name, args in probes.items():
        fn = getattr(G, name, None)
        try:
            parts.append(fn(*args) if fn is not None else f"<no {name}>")
        except TypeError:  # a changed signature is a changed prompt
            parts.append(f"<{name}: signature changed>")
    return hashlib.sha256("\x1e".join(parts).encode()).hexdigest()[:16]


def _adapter_digest(adapter: str | None) -> str | None:
    """A hash of the adapter's weights and configuration (retrained weights at the same path are new).

    Only the files' names and contents count, not where they are, so the same adapter installed on
    another machine has the same key (a sweep record made elsewhere can be checked and reused:
    :func:`seed_from_record`). Files that do not change decisions (model cards, run records, the
    tokenizer copies PEFT writes beside the adapter) are left out.
    """
    if not adapter:
        return None
    p = Path(adapter)
    if not p.exists():
        return adapter
    h = hashlib.sha256()
    files = sorted(f for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file() and _weighs(f))
    for f in files:
        h.update(str(f.relative_to(p) if p.is_dir() else f.name).encode())
        h.update(f.read_bytes())
    return f"sha256:{h.hexdigest()[:16]}"


def _weighs(f: Path) -> bool:
    """Whether an adapter file can change decisions (weights and adapter configuration)."""
    if f.name == "training_args.bin":  # the trainer's settings, written beside the adapter
        return False
    return f.name.startswith("adapter_") or f.suffix in (".safetensors", ".bin", ".pt")


def model_name(model: Any) -> str:
    """The cache's name for a model: the string itself, or a chat model's ``model`` / ``name``."""
    if isinstance(model, str):
        return model
    return str(getattr(model, "model", None) or getattr(model, "name", None) or type(model).__name__)


def cache_key(
    *,
    model: Any,
    graph_kind: str,
    adapter: str | None = None,
    options: dict[str, Any] | None = None,
    mode: str = "markov",
) -> dict[str, Any]:
    """The fields that identify a sweep's decisions (see the module docstring); hashed by :func:`key_hash`.

    A ``local/`` model string that implies an adapter (``?adapter=``, an adapter folder, the embedded
    ``local/sepsisagent-135m``) is keyed by that adapter's files when ``adapter`` is not given.
    """
    name = model_name(model)
    if adapter is None and name.startswith("local/"):
        from sepsis_sdk.errors import ModelError
        from sepsis_sdk.llm import implied_adapter

        try:
            adapter = implied_adapter(name[len("local/") :])
        except ModelError:  # the model's own load reports a missing adapter, with context
            adapter = None
    return {
        "model": name,
        "adapter": _adapter_digest(adapter),
        "graph": str(graph_kind),
        "prompt": prompt_fingerprint(),
        "options": json.loads(json.dumps(options or {}, sort_keys=True, default=str)),
        "mode": mode,
    }


def key_hash(key: dict[str, Any]) -> str:
    """A 16-hex-digit hash of a :func:`cache_key` (the cache folder's name)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


class DecisionCache:
    """Decisions on disk: one JSON line per item, appended and flushed as each decision is made.

    Args:
        root: the cache folder; the decisions of one key live in ``root/<key_hash>/decisions.jsonl``
            (with ``key.json`` saying what the key is).
        key: a :func:`cache_key`.

    A crash can leave at most a torn last line; it is dropped (and cut off the file) when the cache is
    opened, so the next append starts on a fresh line.
    """

    def __init__(self, root: str | os.PathLike[str], key: dict[str, Any]) -> None:
        self.key = key
        self.dir = Path(root) / key_hash(key)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "decisions.jsonl"
        key_file = self.dir / "key.json"
        if not key_file.exists():
            tmp = key_file.with_suffix(f".{uuid.uuid4().hex[:8]}.tmp")
            tmp.write_text(json.dumps(key, indent=2, sort_keys=True))
            os.replace(tmp, key_file)
        self._lock = threading.Lock()
        self.records: dict[str, dict[str, Any]] = self._load()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """An exclusive lock on the cache folder across processes (``flock``; a no-op where it is missing).

        Two sweeps of the same key on one machine may share a cache: one process opening it must not cut
        off, as torn, the line another is writing. ``flock`` holds on one machine only; across machines
        the driver should be the only writer (``evaluate-agent --executor ray`` does that).
        """
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            yield
            return
        with open(self.dir / "decisions.lock", "a") as lk:
            fcntl.flock(lk, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lk, fcntl.LOCK_UN)

    def _load(self) -> dict[str, dict[str, Any]]:
        if not self.path.exists():
            return {}
        with self._locked():
            raw = self.path.read_bytes()
            end = raw.rfind(b"\n") + 1
            if end < len(raw):  # a torn last line from a crash mid-write: cut it off
                with open(self.path, "r+b") as f:
                    f.truncate(end)
                raw = raw[:end]
        out: dict[str, dict[str, Any]] = {}
        for line in raw.decode("utf-8", errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and "item" in rec and _valid_action(rec.get("action")):
                out[str(rec["item"])] = rec  # a record with an impossible action is decided again
        return out

    def __contains__(self, item: str) -> bool:
        return item in self.records

    def get(self, item: str) -> dict[str, Any] | None:
        return self.records.get(item)

    def add(self, record: dict[str, Any]) -> None:
        """Append one record (a dict with ``item`` and ``action``) as one line, flushed to disk."""
        line = (json.dumps(record, default=str) + "\n").encode()
        with self._lock, self._locked():
            # One write of a whole line in append mode: a crash leaves either the line or a torn tail,
            # and a torn tail left by another process gets its newline first, so it cannot swallow this line.
            with open(self.path, "ab") as f:
                if f.tell() > 0:
                    with open(self.path, "rb") as r:
                        r.seek(-1, os.SEEK_END)
                        if r.read(1) != b"\n":
                            line = b"\n" + line
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
            self.records[str(record["item"])] = record


def _valid_action(action: Any) -> bool:
    from sepsis_sdk.actions import validate_index

    try:
        validate_index(action)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------------------------- deciding
def _record(item: str, state: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    final = state.get("final") or {}
    if "action" not in final:
        raise UserError(f"the graph finished without final['action'] for {item}")
    if not _valid_action(final["action"]):  # never cached, never silently wrapped by numpy indexing
        raise UserError(
            f"the graph's final action for {item} is {final['action']!r}, not one of the 25 (0-24)"
        )
    usage = state.get("usage") or {}
    return {
        "item": item,
        **extra,
        "action": int(final["action"]),
        "source": final.get("source"),
        "proposed": final.get("proposed"),
        "fallback": final.get("fallback"),
        "failure_kind": final.get("failure_kind"),
        "reasons": list(final.get("reasons") or []),
        "rationale": str(final.get("rationale") or "")[:500],
        "usage": {k: v for k, v in usage.items() if isinstance(v, (int, float))},
    }


def _config(graph: Any, base: dict[str, Any] | None) -> dict[str, Any]:
    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in (base or {}).items()}
    if getattr(graph, "checkpointer", None) is not None:  # a fresh thread per decision
        cfg.setdefault("configurable", {}).setdefault("thread_id", f"agent-value/{uuid.uuid4().hex}")
    return cfg


def decide_all(
    graph: Any,
    items: Sequence[tuple[str, PatientHistory, dict[str, Any]]],
    cache: DecisionCache | None,
    *,
    max_concurrency: int = 4,
    config: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, dict[str, Any]], int]:
    """Run ``graph`` on every ``(item, history, extra)`` not yet in ``cache``, ``max_concurrency`` at once.

    Returns ``(records by item, number of new decisions)``. If the graph raises, the decisions already
    finished stay in the cache, no new one is started, and the exception propagates.
    """
    if max_concurrency < 1:
        raise UserError(f"max_concurrency must be >= 1, got {max_concurrency}")
    out: dict[str, dict[str, Any]] = {}
    todo = []
    for item, h, extra in items:
        hit = cache.get(item) if cache is not None else None
        if hit is not None:
            out[item] = hit
        else:
            todo.append((item, h, extra))
    done = len(out)
    total = len(items)
    if progress is not None:
        progress(done, total)
    if not todo:
        return out, 0
    lock = threading.Lock()
    stop = threading.Event()

    def one(item: str, h: PatientHistory, extra: dict[str, Any]) -> None:
        nonlocal done
        if stop.is_set():
            return
        state = graph.invoke({"history": h}, _config(graph, config))
        rec = _record(item, state, extra)
        if cache is not None:
            cache.add(rec)
        with lock:
            out[item] = rec
            done += 1
            n = done
        if progress is not None:
            progress(n, total)

    pool = ThreadPoolExecutor(max_workers=min(max_concurrency, len(todo)), thread_name_prefix="agent-value")
    try:
        futures = [pool.submit(one, *t) for t in todo]
        wait(futures, return_when=FIRST_EXCEPTION)
    finally:
        # On the first failure (or Ctrl-C here) no new decision starts; those in flight finish and are cached.
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
    for f in futures:
        if not f.cancelled() and f.exception() is not None:
            raise f.exception()  # type: ignore[misc]
    new = sum(1 for t in todo if t[0] in out)
    return out, new


# ---------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class AgentValue:
    """The true value of an agent graph on ICU-Sepsis, with where its final actions came from.

    Attributes:
        value: probability of survival (exact in Markov mode; ``None`` when only some states were swept
            and no ``complete_with`` table filled in the rest).
        method: ``"exact"`` (Markov mode) or ``"monte_carlo"`` (history mode).
        ci_low, ci_high: the Monte Carlo interval (``None`` when exact).
        level: its confidence level.
        n_states: states decided by the graph (Markov mode; 713 for a full sweep).
        n_episodes: simulated episodes (history mode).
        n_decisions: graph decisions the result rests on.
        new_decisions: decisions made in this call (the rest came from the cache).
        shares: share of final actions from ``model``, ``guard`` and ``fallback`` (per decision; in
            Markov mode per state).
        visit_shares: Markov mode: the same shares weighted by how often patients visit each state under
            the agent's policy (exact expected visits), i.e. per decision a patient actually receives.
        adherence, unsafe_rate: guideline adherence (no G1/G2 violation) and unsafe rate (any of H1-H3)
            of the final actions (Markov mode: visit-weighted; history mode: per simulated decision).
        unfinished: Monte Carlo episodes cut at the step cap.
        actions: Markov mode: the ``(713,)`` action table (-1 for states not swept).
        key: the cache key; cache_dir: where the decisions are (``None`` without a cache).
    """

    value: float | None
    method: Literal["exact", "monte_carlo"]
    ci_low: float | None = None
    ci_high: float | None = None
    level: float | None = None
    n_states: int | None = None
    n_episodes: int | None = None
    n_decisions: int = 0
    new_decisions: int = 0
    shares: dict[str, float] = field(default_factory=dict)
    visit_shares: dict[str, float] | None = None
    adherence: float | None = None
    unsafe_rate: float | None = None
    unfinished: int = 0
    actions: np.ndarray | None = None
    key: dict[str, Any] = field(default_factory=dict)
    cache_dir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable record (the action table as a list)."""
        return {
            "value": self.value,
            "method": self.method,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "level": self.level,
            "n_states": self.n_states,
            "n_episodes": self.n_episodes,
            "n_decisions": self.n_decisions,
            "new_decisions": self.new_decisions,
            "shares": dict(self.shares),
            "visit_shares": None if self.visit_shares is None else dict(self.visit_shares),
            "adherence": self.adherence,
            "unsafe_rate": self.unsafe_rate,
            "unfinished": self.unfinished,
            "actions": None if self.actions is None else [int(a) for a in self.actions],
            "key": dict(self.key),
            "cache_dir": self.cache_dir,
        }


def _shares(sources: Sequence[Any], weights: np.ndarray | None = None) -> dict[str, float]:
    w = np.ones(len(sources)) if weights is None else np.asarray(weights, dtype=float)
    total = float(w.sum())
    out = {s: 0.0 for s in SOURCES}
    for src, wi in zip(sources, w, strict=True):
        key = src if src in SOURCES else "other"
        out[key] = out.get(key, 0.0) + float(wi)
    return {k: (v / total if total > 0 else 0.0) for k, v in out.items()}


def _rule_flags(histories: Sequence[PatientHistory], actions: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per decision: adherent (no G1/G2 violation) and unsafe (any H1-H3 violation), default rules."""
    from sepsis_sdk.safety import RuleSetChecker

    checker = RuleSetChecker()
    schema = icu_sepsis_schema()
    adherent = np.ones(len(actions), dtype=bool)
    unsafe = np.zeros(len(actions), dtype=bool)
    for i, (h, a) in enumerate(zip(histories, actions, strict=True)):
        broken = {v.rule_id for v in checker.check(h, int(a), schema) if v.violated}
        adherent[i] = not broken.intersection(ADHERENCE_RULES)
        unsafe[i] = bool(broken.intersection(UNSAFE_RULES))
    return adherent, unsafe


def _visits(actions: np.ndarray) -> np.ndarray:
    """Expected visits to each clinical state under the deterministic table (exact, from the initial law)."""
    mdp = load_mdp()
    c = slice(0, N_CLINICAL)
    p = mdp.tx_mat[np.arange(N_CLINICAL), actions][:, c]
    return np.linalg.solve((np.eye(N_CLINICAL) - p).T, mdp.d0[c])


def _complete(actions: np.ndarray, complete_with: Any) -> np.ndarray | None:
    """A ``(713, 25)`` table: the swept states' actions, the others from ``complete_with`` (or None)."""
    missing = actions < 0
    table = np.zeros((N_CLINICAL, N_ACTIONS))
    table[np.flatnonzero(~missing), actions[~missing]] = 1.0
    if not missing.any():
        return table
    if complete_with is None:
        return None
    from sepsis_sdk.sources.icu_sepsis import resolve_policy_table

    table[missing] = resolve_policy_table(complete_with)[:N_CLINICAL][missing]
    return table


# ---------------------------------------------------------------------------------------------- Markov mode
def markov_agent_value(
    graph: Any,
    *,
    model: Any,
    graph_kind: str | None = None,
    adapter: str | None = None,
    options: dict[str, Any] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    states: Iterable[int] | None = None,
    complete_with: Any = None,
    max_concurrency: int = 4,
    config: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> AgentValue:
    """Exact true value of ``graph`` as a Markov policy: one decision per clinical state, then a linear solve.

    Args:
        graph: a compiled agent graph (``build_direct_graph``, ``build_psr_graph``,
            ``build_tool_calling_graph`` or your own) that writes ``final["action"]``.
        model: the model string (or chat model) the graph runs: part of the cache key.
        graph_kind: the graph's kind in the cache key (default: the graph's ``name``).
        adapter: a PEFT adapter path, if any (its files are hashed into the key).
        options: graph options that change decisions (candidates, horizon, seed, system prompt, ...):
            part of the cache key. Name every option you set; the key cannot see inside a compiled graph.
        cache_dir: where decisions are cached (``None``: no cache, no resume).
        states: sweep only these states (tests, pilots); the value then needs ``complete_with``.
        complete_with: a policy for the states not swept (anything
            :func:`~sepsis_sdk.truth.true_value` accepts); ``None`` leaves ``value`` ``None`` then.
        max_concurrency: decisions in flight at once.
        config: LangGraph run config (e.g. ``{"recursion_limit": 100}``).
        progress: called with ``(done, total)`` after each decision (and once at the start).

    Returns:
        An :class:`AgentValue` with ``method="exact"``.

    Raises:
        Whatever the graph raises (a configuration error, a crash): the decisions made so far are cached,
        and a rerun with the same arguments resumes from them.
    """
    from sepsis_sdk.truth._icu_sepsis import state_values

    idx = _states(states)
    kind = graph_kind or getattr(graph, "name", None) or "graph"
    key = cache_key(model=model, graph_kind=kind, adapter=adapter, options=options, mode="markov")
    cache = DecisionCache(cache_dir, key) if cache_dir is not None else None
    histories = state_histories(idx)
    items = [(observation_item(h), h, {"state": s}) for s, h in zip(idx, histories, strict=True)]
    records, new = decide_all(graph, items, cache, max_concurrency=max_concurrency, config=config,
                              progress=progress)  # fmt: skip
    actions = np.full(N_CLINICAL, -1, dtype=np.int64)
    sources = []
    for (item, _, _), s in zip(items, idx, strict=True):
        rec = records[item]
        actions[s] = int(rec["action"])
        sources.append(rec.get("source"))
    adherent, unsafe = _rule_flags(histories, [int(actions[s]) for s in idx])
    table = _complete(actions, complete_with)
    value = visit_shares = adherence = unsafe_rate = None
    if table is not None:
        d0 = load_mdp().d0
        value = float(d0 @ state_values(table))
    if len(idx) == N_CLINICAL:
        w = _visits(actions)[idx]
        visit_shares = _shares(sources, w)
        adherence = float((w * adherent).sum() / w.sum())
        unsafe_rate = float((w * unsafe).sum() / w.sum())
    return AgentValue(
        value=value,
        method="exact",
        n_states=len(idx),
        n_decisions=len(idx),
        new_decisions=new,
        shares=_shares(sources),
        visit_shares=visit_shares,
        adherence=adherence,
        unsafe_rate=unsafe_rate,
        actions=actions,
        key=key,
        cache_dir=None if cache is None else str(cache.dir),
    )


class AgentPolicy:
    """An agent graph as a Markov :class:`~sepsis_sdk.policies.Policy` that shares the Markov sweep's cache.

    Each history is decided from :func:`markov_history` (its current observation only), so on ICU-Sepsis
    every row of a cohort is a decision the Markov sweep already made: pass it to
    :func:`~sepsis_sdk.evaluation.run_evaluation` (``policies={"gpt-direct": AgentPolicy(...)}``) after
    :func:`markov_agent_value` with the same arguments, and the report's exact true value, OPE, safety
    and agreement columns all rest on the same cached decisions, with no new model call.

    Args:
        graph, model, graph_kind, adapter, options, cache_dir, max_concurrency, config: as in
            :func:`markov_agent_value` (the same values give the same cache).
        name: the row name in reports (default ``"<graph>:<model>"``).

    Attributes:
        sources: the ``final["source"]`` of every decision returned so far, in order.
    """

    markov = True

    def __init__(
        self,
        graph: Any,
        *,
        model: Any,
        name: str | None = None,
        graph_kind: str | None = None,
        adapter: str | None = None,
        options: dict[str, Any] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        max_concurrency: int = 4,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.graph = graph
        kind = graph_kind or getattr(graph, "name", None) or "graph"
        self.name = name or f"{kind}:{model_name(model)}"
        self.key = cache_key(model=model, graph_kind=kind, adapter=adapter, options=options, mode="markov")
        self.cache = DecisionCache(cache_dir, self.key) if cache_dir is not None else None
        self._memo: dict[str, dict[str, Any]] = {}  # without a cache dir: decide each observation once
        self.max_concurrency, self.config = max_concurrency, config
        self.sources: list[Any] = []

    def action_probabilities(self, histories: Sequence[PatientHistory]) -> np.ndarray:
        """``(n, 25)`` one-hot rows of the graph's decisions on each history's current observation."""
        shown = [markov_history(h) for h in histories]
        keys = [observation_item(h) for h in shown]
        todo: dict[str, tuple[str, PatientHistory, dict[str, Any]]] = {}
        for k, h in zip(keys, shown, strict=True):
            if k not in self._memo and k not in todo:
                todo[k] = (k, h, {})
        records, _ = decide_all(self.graph, list(todo.values()), self.cache,
                                max_concurrency=self.max_concurrency, config=self.config)  # fmt: skip
        self._memo.update(records)
        out = np.zeros((len(shown), N_ACTIONS))
        for i, k in enumerate(keys):
            rec = self._memo[k]
            out[i, int(rec["action"])] = 1.0
            self.sources.append(rec.get("source"))
        return out

    def shares(self) -> dict[str, float]:
        """Share of the decisions returned so far whose final action came from model, guard, fallback."""
        return _shares(self.sources)


@dataclass(frozen=True)
class RecordCheck:
    """How a shipped sweep record held up when some of its decisions were made again (:func:`seed_from_record`).

    Attributes:
        used: the record's decisions were put in the cache (its key matched and every re-decided state
            agreed); ``False``: nothing was taken from it.
        reason: why it was not used (``None`` when it was).
        recorded: decisions in the record.
        checked: states decided again now; ``agreed``: how many gave the recorded action.
    """

    used: bool
    reason: str | None
    recorded: int
    checked: int = 0
    agreed: int = 0

    def describe(self) -> str:
        """One line for a report."""
        if not self.used:
            return f"sweep record not used ({self.reason}); every state decided now"
        return (
            f"{self.recorded} decisions from the shipped sweep record; {self.checked} of them made again now, "
            f"{self.agreed}/{self.checked} identical"
        )


def seed_from_record(
    graph: Any,
    record: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str],
    key: dict[str, Any],
    check: int = 32,
    seed: int = 0,
    config: dict[str, Any] | None = None,
) -> RecordCheck:
    """Fill a Markov sweep's cache from a recorded sweep (e.g. the one shipped with a model), after checking it.

    The record is a ``decisions.jsonl`` written by :func:`markov_agent_value` next to its ``key.json``.
    It is used only when its key equals ``key`` (same model and adapter weights, graph, options and
    prompt fingerprint) and ``check`` randomly chosen states, decided again now by ``graph``, all give
    the recorded action; otherwise nothing is copied and a later sweep decides every state itself. A
    record never replaces a decision already in the cache.

    Args:
        graph: the compiled graph the record claims to come from.
        record: the record's ``decisions.jsonl``.
        cache_dir: the cache root of the sweep that will use it.
        key: that sweep's :func:`cache_key`.
        check: states decided again (0: trust the key alone).
        seed: which states are checked.
        config: LangGraph run config for the checks.
    """
    path = Path(record)
    key_file = path.with_name("key.json")
    if not path.is_file() or not key_file.is_file():
        return RecordCheck(False, f"no record at {path}", 0)
    recorded = json.loads(key_file.read_text())
    if recorded != key:
        diff = sorted(k for k in set(key) | set(recorded) if key.get(k) != recorded.get(k))
        return RecordCheck(False, f"recorded for a different {', '.join(diff)}", 0)
    rows: dict[str, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "item" in rec and _valid_action(rec.get("action")) and "state" in rec:
            rows[str(rec["item"])] = rec
    if not rows:
        return RecordCheck(False, "the record holds no valid decision", 0)
    rng = np.random.default_rng(seed)
    items = sorted(rows)
    picked = [items[i] for i in rng.choice(len(items), size=min(check, len(items)), replace=False)]
    agreed = 0
    for item in picked:
        h = state_histories([int(rows[item]["state"])])[0]
        if observation_item(h) != item:
            return RecordCheck(False, f"record item {item} does not match its state", len(rows), len(picked))
        state = graph.invoke({"history": h}, _config(graph, config))
        agreed += int(int((state.get("final") or {}).get("action", -1)) == int(rows[item]["action"]))
    if agreed < len(picked):
        return RecordCheck(False, f"{len(picked) - agreed} of {len(picked)} re-decided states differ",
                           len(rows), len(picked), agreed)  # fmt: skip
    cache = DecisionCache(cache_dir, key)
    for item, rec in rows.items():
        if item not in cache:
            cache.add(rec)
    return RecordCheck(True, None, len(rows), len(picked), agreed)


# ---------------------------------------------------------------------------------------------- history mode
def _history_item(h: PatientHistory) -> str:
    """A decision's cache item: a hash of everything the graph can see (observations, actions, static)."""
    seen = [h.patient_id, [list(o.values) for o in h.observations], list(h.actions)]
    seen += [sorted(h.static.items()), list(h.feature_names)]
    return "h-" + hashlib.sha256(json.dumps(seen, default=str).encode()).hexdigest()[:24]


class _GraphHistoryPolicy:
    """The graph as a history-dependent policy for the true-MDP simulator (``state_id`` stripped)."""

    markov = False

    def __init__(self, graph: Any, cache: DecisionCache | None, max_concurrency: int, config: Any) -> None:
        self.name = str(getattr(graph, "name", None) or "graph")
        self.graph, self.cache, self.max_concurrency, self.config = graph, cache, max_concurrency, config
        self.sources: list[Any] = []
        self.histories: list[PatientHistory] = []
        self.actions: list[int] = []
        self.new = 0

    def action_probabilities(self, histories: Sequence[PatientHistory]) -> np.ndarray:
        clean = [h.model_copy(update={"state_id": None}) for h in histories]  # the hidden state stays hidden
        items = [(_history_item(h), h, {"t": h.t}) for h in clean]
        records, new = decide_all(self.graph, items, self.cache, max_concurrency=self.max_concurrency,
                                  config=self.config)  # fmt: skip
        self.new += new
        out = np.zeros((len(clean), N_ACTIONS))
        for i, (item, h, _) in enumerate(items):
            rec = records[item]
            out[i, int(rec["action"])] = 1.0
            self.sources.append(rec.get("source"))
            self.histories.append(h)
            self.actions.append(int(rec["action"]))
        return out


def monte_carlo_agent_value(
    graph: Any,
    *,
    model: Any,
    episodes: int,
    graph_kind: str | None = None,
    adapter: str | None = None,
    options: dict[str, Any] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    level: float = 0.95,
    max_steps: int = 100,
    max_concurrency: int = 4,
    config: dict[str, Any] | None = None,
) -> AgentValue:
    """Monte Carlo true value of ``graph`` as a history-dependent policy in the true ICU-Sepsis MDP.

    ``episodes`` simulated patients (the budget: roughly 10 graph decisions each) advance together; at
    each step the graph decides for every live patient from that patient's history so far (``state_id``
    removed), ``max_concurrency`` decisions at once. Decisions are cached by a hash of the history, so a
    rerun with the same ``seed`` replays the same episodes from the cache.

    Args:
        graph, model, graph_kind, adapter, options, cache_dir, max_concurrency, config: as in
            :func:`markov_agent_value`.
        episodes: simulated patients (positive).
        seed: simulation seed.
        level: confidence level of the interval.
        max_steps: step cap; episodes still running count as 0 (reported as ``unfinished``).

    Returns:
        An :class:`AgentValue` with ``method="monte_carlo"`` and its interval.
    """
    from sepsis_sdk.truth._icu_sepsis import ICUSepsisTruth

    if episodes <= 0:
        raise UserError(f"episodes must be positive, got {episodes}")
    kind = graph_kind or getattr(graph, "name", None) or "graph"
    key = cache_key(model=model, graph_kind=kind, adapter=adapter, options=options, mode="history")
    cache = DecisionCache(cache_dir, key) if cache_dir is not None else None
    policy = _GraphHistoryPolicy(graph, cache, max_concurrency, config)
    mc = ICUSepsisTruth().simulate(policy, episodes=episodes, seed=seed, level=level, max_steps=max_steps)
    adherent, unsafe = _rule_flags(policy.histories, policy.actions)
    n = len(policy.actions)
    return AgentValue(
        value=mc.mean,
        method="monte_carlo",
        ci_low=mc.ci_low,
        ci_high=mc.ci_high,
        level=level,
        n_episodes=mc.n_episodes,
        n_decisions=n,
        new_decisions=policy.new,
        shares=_shares(policy.sources),
        adherence=float(adherent.mean()) if n else None,
        unsafe_rate=float(unsafe.mean()) if n else None,
        unfinished=mc.unfinished,
        key=key,
        cache_dir=None if cache is None else str(cache.dir),
    )


__all__ = [
    "MARKOV_PATIENT_ID",
    "SOURCES",
    "AgentPolicy",
    "AgentValue",
    "DecisionCache",
    "RecordCheck",
    "cache_key",
    "decide_all",
    "key_hash",
    "markov_agent_value",
    "markov_history",
    "model_name",
    "monte_carlo_agent_value",
    "observation_item",
    "prompt_fingerprint",
    "seed_from_record",
    "state_histories",
]
