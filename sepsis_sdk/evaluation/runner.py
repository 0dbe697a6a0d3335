"""The benchmark runner behind ``sepsis-sdk evaluate``: policies x one cohort -> a resumable report.

A run is a pipeline, per policy: **build the policy -> its action probabilities on the test patients ->
the scorers -> save**. The pieces live in their own modules:

- :mod:`~sepsis_sdk.evaluation.config`: the settings (:class:`EvaluationConfig`, YAML-loadable);
- :mod:`~sepsis_sdk.evaluation.probabilities`: policy -> per-row action probabilities, chunked;
- :mod:`~sepsis_sdk.evaluation.scorers`: one :class:`~sepsis_sdk.evaluation.scorers.Scorer` per metric
  (OPE, safety, agreement, true value, model-based; register your own);
- :mod:`~sepsis_sdk.evaluation.results`: the typed :class:`PolicyResult` / :class:`EvaluationReport`;
- :mod:`~sepsis_sdk.evaluation.storage`: the manifest, atomic writes and resume;
- :mod:`~sepsis_sdk.evaluation.report`: the Markdown/CSV/JSON files and plots.

**Resumable.** ``out_dir/manifest.json`` records the config and every finished policy; each policy's
result is one JSON file written atomically; history-dependent policies save their action probabilities
per chunk of patients, so after a crash finished policies and finished patient chunks are not redone.
Work fans out through an :class:`~sepsis_sdk.evaluation.executor.Executor` (local process pool by
default, serial when the policy cannot be pickled), in one of two ways (``fan_out``): the patient chunks
of one policy at a time (the driver builds and scores the policies in turn), or one task per policy
(built, its probabilities and every scorer on a worker; the driver only writes the files). The second is
what a Ray run with several policies uses: the scorers' work (OPE, safety, the Monte-Carlo truth) runs in
parallel too.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sepsis_sdk.errors import ClusterError, UserError
from sepsis_sdk.evaluation.config import (
    CohortConfig,
    EvaluationConfig,
    ModelBasedConfig,
    OPEConfig,
    PolicyConfig,
    SafetyConfig,
    SplitConfig,
    TruthConfig,
)
from sepsis_sdk.evaluation.executor import Executor, cannot_ship, make_executor
from sepsis_sdk.evaluation.probabilities import policy_probabilities
from sepsis_sdk.evaluation.results import EvaluationReport, PolicyResult
from sepsis_sdk.evaluation.scorers import Scorer, ScoringContext, create_scorers
from sepsis_sdk.evaluation.storage import RunStore, atomic_save_npy

if TYPE_CHECKING:
    from sepsis_sdk.cohort import Cohort
    from sepsis_sdk.safety import RuleSet


# ---------------------------------------------------------------------------------------------- cohort
def load_cohort(cfg: CohortConfig) -> Cohort:
    """The cohort named by the config (through :func:`sepsis_sdk.sources.load`)."""
    from sepsis_sdk.sources import load

    if cfg.path:
        return load(cfg.path)
    if cfg.source == "parquet":
        raise UserError("cohort.source 'parquet' needs cohort.path")
    opts: dict[str, Any] = {"episodes": cfg.n_episodes, "seed": cfg.seed}
    if cfg.behaviour != "clinician":
        opts["policy"] = cfg.behaviour
    return load(cfg.source, **opts)


def is_icu_sepsis(cohort: Cohort) -> bool:
    """Whether ``cohort`` was sampled from ICU-Sepsis (discrete states: the count-based behaviour model)."""
    return cohort.source == "icu-sepsis" and cohort.has_state_ids


# ---------------------------------------------------------------------------------------------- policies
def build_policy(
    pc: PolicyConfig, train: Cohort, *, seed: int, offline_rl_steps: int, behaviour: Any = None
) -> Any:
    """Build or train the policy described by ``pc`` on the training split.

    ``behaviour``: the run's fitted behaviour model, reused as the ``clinician`` policy when that policy
    has no options of its own (same model for the OPE denominator and the clinician row).
    """
    kind = pc.kind or pc.name
    opts = dict(pc.options)
    if kind == "clinician" and not opts and behaviour is not None:
        from sepsis_sdk.policies import BehaviourPolicy

        return BehaviourPolicy(behaviour, train.schema.names, name=pc.name, static_names=train.schema.static)
    if kind == "builtin":
        from sepsis_sdk.policies import StateTablePolicy
        from sepsis_sdk.truth import builtin_policy

        return StateTablePolicy(builtin_policy(opts.get("table", pc.name)), name=pc.name)
    if kind == "factory":
        import importlib

        target = opts.pop("factory", None)
        if not target or ":" not in str(target):
            raise UserError(f"policy {pc.name!r}: kind 'factory' needs options.factory = 'module:function'")
        mod, fn = str(target).split(":", 1)
        return getattr(importlib.import_module(mod), fn)(train, **opts)
    from sepsis_sdk.policies import build_baseline

    steps = opts.pop("n_steps", offline_rl_steps)
    return build_baseline(kind, train, seed=seed, n_steps=steps, **opts)


@dataclass
class _Entry:
    """One row of the run: its settings, how it was built, and the object when it was passed in."""

    config: PolicyConfig
    kind: str
    policy: Any = None


def _entries(
    config: EvaluationConfig, policies: Mapping[str, Any], policy_configs: Mapping[str, PolicyConfig]
) -> list[_Entry]:
    clash = [n for n in policies if n in {p.name for p in config.policies}]
    if clash:
        raise UserError(f"policies {clash} are both configured and passed as objects")
    rows = [_Entry(pc, pc.kind or pc.name) for pc in config.policies]
    for name, obj in policies.items():
        rows.append(_Entry(policy_configs.get(name) or PolicyConfig(name=name), "object", obj))
    return rows


def select_patients(test: Cohort, pc: PolicyConfig, seed: int) -> tuple[Cohort, list[str]]:
    """The test patients ``pc`` is scored on (``max_patients``), with a note when they are not random."""
    n = pc.max_patients
    if n is None or n >= test.n_patients:
        return test, []
    if pc.patient_selection == "shortest":
        order = np.argsort(test.lengths(), kind="stable")[:n]
        ids = sorted(test.patient_ids[order].tolist(), key=str)
        return test.select(ids), [f"scored on the {n} shortest test stays (not a random sample)"]
    rng = np.random.default_rng(seed)
    return test.select(sorted(rng.choice(test.patient_ids, size=n, replace=False).tolist(), key=str)), []


# ---------------------------------------------------------------------------------------------- run
@dataclass
class RunSetup:
    """What every policy of a run shares: the split, the behaviour model, the rules and the truth."""

    cohort: Cohort
    train: Cohort
    test: Cohort
    behaviour: Any
    behaviour_kind: str
    rules: RuleSet
    truth: Any
    world_model: Callable[[], Any] | None


def prepare(config: EvaluationConfig, cohort: Cohort, world_model: Callable[[], Any] | None) -> RunSetup:
    """Split ``cohort`` by patient and fit the behaviour model on the training part."""
    from sepsis_sdk.evaluation.behaviour import fit_behaviour_policy
    from sepsis_sdk.safety import load_rules
    from sepsis_sdk.truth import truth_for

    s = config.split
    split = cohort.split(s.train, s.validation, s.test, seed=s.seed)
    if len(split.test) == 0 or len(split.train) == 0:
        raise UserError("the split left an empty train or test part; use more patients")
    bkind = config.ope.behaviour_kind
    if bkind == "auto":
        bkind = "tabular" if is_icu_sepsis(cohort) else "logistic"
    o = config.ope
    behaviour = fit_behaviour_policy(split.train, kind=bkind, softening=o.softening, seed=config.seed)
    rules = load_rules(config.safety.rules)
    return RunSetup(cohort, split.train, split.test, behaviour, bkind, rules, truth_for(cohort), world_model)


def score_policy(
    entry: _Entry,
    setup: RunSetup,
    config: EvaluationConfig,
    scorers: Sequence[Scorer],
    *,
    store: RunStore,
    executor: Executor,
    progress: Callable[[int, int], None] | None = None,
) -> PolicyResult:
    """Build one policy, compute its probabilities on its test patients and run every scorer."""
    return _score(entry, setup, config, scorers, work_dir=store.work_dir(entry.config.name),
                  executor=executor, progress=progress)  # fmt: skip


def _score(
    entry: _Entry,
    setup: RunSetup,
    config: EvaluationConfig,
    scorers: Sequence[Scorer],
    *,
    work_dir: Path,
    executor: Executor,
    progress: Callable[[int, int], None] | None = None,
) -> PolicyResult:
    """:func:`score_policy` with the chunk directory given (a worker passes a scratch one)."""
    from sepsis_sdk.evaluation.metrics import action_distribution

    t0 = time.time()
    pc = entry.config
    policy = entry.policy
    if policy is None:
        steps = config.offline_rl_steps
        policy = build_policy(
            pc, setup.train, seed=config.seed, offline_rl_steps=steps, behaviour=setup.behaviour
        )
    # The Policy protocol declares ``markov``; objects written before it are taken as history-dependent.
    markov = bool(pc.markov if pc.markov is not None else getattr(policy, "markov", False))
    sub, notes = select_patients(setup.test, pc, config.seed)
    seen_before = _n_sources(policy)
    probs = policy_probabilities(
        policy, sub, work_dir=work_dir, executor=executor,
        chunk_patients=config.chunk_patients, progress=progress,
    )  # fmt: skip
    agent = _agent_shares(policy, seen_before, len(sub), notes)  # before the scorers ask it more
    ctx = ScoringContext(
        name=pc.name, policy=policy, policy_config=pc, config=config, cohort=sub, probabilities=probs,
        markov=markov, behaviour=setup.behaviour, rules=setup.rules, truth=setup.truth,
        world_model=setup.world_model, notes=notes,
    )  # fmt: skip
    scores = {s.name: s.score(ctx) for s in scorers}
    return PolicyResult(
        name=pc.name, kind=entry.kind, markov=markov, n_patients=int(sub.n_patients), n_decisions=len(sub),
        scores=scores, action_distribution=action_distribution(probs),
        seconds=round(time.time() - t0, 2), notes=ctx.notes, agent=agent,
    )  # fmt: skip


def _n_sources(policy: Any) -> int | None:
    """How many decision sources an agent has recorded so far (None: not an agent that records them)."""
    sources = getattr(policy, "sources", None)
    return len(sources) if callable(getattr(policy, "shares", None)) and isinstance(sources, list) else None


def _agent_shares(policy: Any, before: int | None, n_rows: int, notes: list[str]) -> dict[str, Any] | None:
    """An agent's share of final actions from model / guard / fallback over the decisions just scored.

    Counted from the sources it recorded during its probabilities (one per decision, like
    ``AgentPolicy.shares()``, but only this run's decisions: not the truth sweep's that follow, nor
    earlier ones). When some decisions were made where this process cannot see them (chunks in worker
    processes, chunks saved by an interrupted run), the row gets no shares and a note instead.
    """
    if not callable(getattr(policy, "shares", None)):
        return None
    if before is None:  # shares() without per-decision sources: nothing to restrict to this run
        notes.append("agent shares not reported: the policy does not record a source per decision")
        return None
    seen = policy.sources[before:]
    if len(seen) != n_rows or n_rows == 0:
        notes.append(
            f"agent shares not reported: {len(seen)} decision sources recorded here for the {n_rows} "
            "decisions scored (decisions made in worker processes or saved by an earlier, interrupted "
            "run are not seen; fan_out='policies' or a serial run sees them all)"
        )
        return None
    from sepsis_sdk.truth.agent import SOURCES

    counts: dict[str, int] = dict.fromkeys(SOURCES, 0)
    for src in seen:
        key = src if src in SOURCES else "other"
        counts[key] = counts.get(key, 0) + 1
    return {"decisions": n_rows, "shares": {k: v / n_rows for k, v in counts.items()}}


# ---------------------------------------------------------------------------------------------- fan-out
FAN_OUTS = ("auto", "policies", "chunks")
"""How ``run_evaluation`` spreads work over its executor (see :func:`run_evaluation`'s ``fan_out``)."""

# The chunk files of one policy (``policy_probabilities`` names them so; the driver is their only writer).
_CHUNK_GLOB = "chunk_*.npy"


@dataclass
class _Shared:
    """What every policy task of a run shares; shipped once per run (Ray puts it in the object store)."""

    setup: RunSetup
    config: EvaluationConfig
    scorers: Sequence[Scorer]


@dataclass
class _PolicyTask:
    """One policy's task: the row to build and score, and the chunks a previous attempt already saved."""

    entry: _Entry
    chunks: dict[str, np.ndarray]


class _Loaded:
    """A world-model source that returns an object loaded in the driver (picklable, unlike a closure)."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __call__(self) -> Any:
        return self.obj


def _score_task(shared: _Shared, task: _PolicyTask) -> tuple[PolicyResult, dict[str, np.ndarray]]:
    """On a worker: build and score one policy; its new chunk arrays come back for the driver to save.

    The chunks run one after another here (this task is the unit of parallel work). Chunks a previous
    attempt saved are put in a scratch directory first, so :func:`policy_probabilities` reuses them
    exactly as it reuses the run directory's files in the driver.
    """
    import tempfile

    from sepsis_sdk.evaluation.executor import SerialExecutor

    setup = shared.setup
    if setup.rules is None:  # the rule set did not pickle (compiled predicates): the same rules again
        from dataclasses import replace

        from sepsis_sdk.safety import load_rules

        setup = replace(setup, rules=load_rules(shared.config.safety.rules))
    with tempfile.TemporaryDirectory(prefix="sepsis-policy-") as d:
        work = Path(d)
        for name, arr in task.chunks.items():
            np.save(work / name, arr)
        res = _score(task.entry, setup, shared.config, shared.scorers, work_dir=work,
                     executor=SerialExecutor())  # fmt: skip
        new = {f.name: np.load(f) for f in sorted(work.glob(_CHUNK_GLOB)) if f.name not in task.chunks}
    return res, new


def _fan_out_mode(fan_out: str, executor: Executor, n_todo: int) -> str:
    """``"policies"`` or ``"chunks"`` for this run (``"auto"`` decided from the executor and the work)."""
    if fan_out not in FAN_OUTS:
        raise UserError(f"unknown fan_out {fan_out!r}; choose one of {FAN_OUTS}")
    if fan_out != "auto":
        return fan_out
    # On Ray, one task per policy once there are enough policies to keep every CPU busy: the scorers
    # (OPE, safety, the Monte-Carlo truth) then run in parallel too, not one policy after another in the
    # driver. Fewer policies than CPUs keep more CPUs busy with patient chunks.
    width = getattr(executor, "parallelism", None)
    if executor.name != "ray" or width is None or n_todo < 2:
        return "chunks"
    return "policies" if n_todo >= width() else "chunks"


def _shippable_setup(
    setup: RunSetup, config: EvaluationConfig, executor: Executor, todo: Sequence[_Entry]
) -> RunSetup:
    """The part of ``setup`` the workers need, in a form that travels."""
    from dataclasses import replace

    wm = setup.world_model
    if wm is not None:  # loaded once here, shipped with the rest (a loader may read driver-local files)
        wanted = config.model_based.enabled and any(e.config.model_based for e in todo)
        wm = _Loaded(wm()) if wanted else None
    rules = setup.rules if cannot_ship(executor, setup.rules) is None else None  # rebuilt on the worker
    # Workers never read the whole cohort, and the training part only to build configured policies.
    train = setup.train if any(e.policy is None for e in todo) else setup.test
    return replace(setup, cohort=setup.test, train=train, rules=rules, world_model=wm)


def _named(exc: BaseException, name: str, where: str) -> BaseException:
    """``exc`` (same type, so callers' ``except`` clauses still match) with the failing policy named."""
    text = f"policy {name!r} failed {where}"
    if type(exc).__str__ is BaseException.__str__ and len(exc.args) == 1 and isinstance(exc.args[0], str):
        exc.args = (f"{text}: {exc.args[0]}",)
    elif hasattr(exc, "add_note"):  # Python 3.11+: shown under the traceback
        exc.add_note(text)
    return exc


def _by_policy(
    todo: Sequence[_Entry],
    setup: RunSetup,
    config: EvaluationConfig,
    scorers: Sequence[Scorer],
    *,
    store: RunStore,
    executor: Executor,
) -> Iterator[tuple[int, PolicyResult]]:
    """Score ``todo`` with one executor task per policy; yields ``(index, result)`` as each is read.

    Policies that cannot be shipped are scored here (with a warning), while the workers score the rest.
    Results of the tasks are read in submission order; each one's new chunk files are written here.
    """
    import queue
    import threading

    from sepsis_sdk.evaluation.executor import SerialExecutor

    where = f"on a {executor.name} worker"
    local, remote = [], []
    for k, entry in enumerate(todo):
        store.start(entry.config.name)
        why = None if entry.policy is None else cannot_ship(executor, entry.policy)
        if why is not None:
            warnings.warn(
                f"policy {entry.config.name!r} cannot be shipped to the {executor.name} workers ({why}); "
                "scoring it in this process",
                RuntimeWarning,
                stacklevel=3,
            )
        (local if why is not None else remote).append(k)
    shared = _Shared(_shippable_setup(setup, config, executor, [todo[k] for k in remote]), config, scorers)
    why = cannot_ship(executor, shared) if remote else None
    if why is not None:  # e.g. a world model that does not pickle: fall back to one policy at a time
        warnings.warn(
            f"the run's shared inputs cannot be shipped to the {executor.name} workers ({why}); "
            "scoring the policies one after another in this process (patient chunks still fan out)",
            RuntimeWarning,
            stacklevel=3,
        )
        for k in remote:
            yield k, score_policy(todo[k], setup, config, scorers, store=store, executor=executor)
        remote = []
    inbox: queue.Queue[tuple[str, int, Any]] = queue.Queue()
    stop = threading.Event()

    def pump() -> None:  # reads the tasks' results (mostly waiting on the cluster) while this thread works
        tasks = [_PolicyTask(todo[k], _saved_chunks(store.work_dir(todo[k].config.name))) for k in remote]
        results = executor.map(partial(_score_task, shared), tasks)
        try:
            for k in remote:
                if stop.is_set():
                    return
                try:
                    out = next(results)
                except StopIteration:  # an executor that returned fewer results than tasks
                    inbox.put(("error", k, ClusterError(f"the executor returned no result for task {k}")))
                    return
                except BaseException as exc:  # handed to the driver thread and raised there
                    inbox.put(("error", k, exc))
                    return
                inbox.put(("ok", k, out))
        finally:
            # cancels what was not read (a failed or stopped run); after the cluster is already shut
            # down (the driver's executor closed first) there is nothing left to cancel
            with suppress(Exception):
                results.close()
            inbox.put(("end", -1, None))

    thread = threading.Thread(target=pump, name="sepsis-policy-results", daemon=True)
    if remote:
        thread.start()
    try:
        for k in local:
            yield k, score_policy(todo[k], setup, config, scorers, store=store, executor=SerialExecutor())
        while remote:
            kind, k, out = inbox.get()
            if kind == "end":
                break
            name = todo[k].config.name
            if kind == "error":
                if isinstance(out, Exception):
                    raise _named(out, name, where) from None
                raise out
            res, chunks = out
            for fname, arr in chunks.items():  # the driver is the only writer of the run directory
                atomic_save_npy(store.work_dir(name) / fname, arr)
            yield k, res
    finally:
        stop.set()


def _saved_chunks(work_dir: Path) -> dict[str, np.ndarray]:
    return {f.name: np.load(f) for f in sorted(work_dir.glob(_CHUNK_GLOB))} if work_dir.is_dir() else {}


def _one_by_one(
    todo: Sequence[_Entry],
    setup: RunSetup,
    config: EvaluationConfig,
    scorers: Sequence[Scorer],
    *,
    store: RunStore,
    executor: Executor,
    bar: _Progress,
) -> Iterator[tuple[int, PolicyResult]]:
    """Score ``todo`` in the driver, one policy after another; their patient chunks fan out."""
    for k, entry in enumerate(todo):
        name = entry.config.name
        store.start(name)
        yield k, score_policy(entry, setup, config, scorers, store=store, executor=executor,
                              progress=bar.task(name))  # fmt: skip


def run_evaluation(
    config: EvaluationConfig | None = None,
    *,
    policies: Mapping[str, Any] | None = None,
    policy_configs: Mapping[str, PolicyConfig] | None = None,
    cohort: Cohort | None = None,
    world_model: Any = None,
    world_model_loader: Callable[[], Any] | None = None,
    executor: Executor | None = None,
    progress: bool = True,
    fresh: bool = False,
    on_policy_done: Callable[[PolicyResult], None] | None = None,
    fan_out: str | None = None,
) -> EvaluationReport:
    """Run the benchmark described by ``config`` and write the report into ``config.out_dir``.

    Args:
        config: what to run (default :class:`EvaluationConfig()`).
        policies: ready-made policies to add, by name (e.g. a world-model planner or an LLM graph policy);
            they are scored like the configured ones. Set ``markov = True`` on a policy to get its exact
            true value; otherwise it is simulated in the true dynamics (``truth.monte_carlo_episodes``).
        policy_configs: settings of those ready-made policies by name (``max_patients``,
            ``truth_episodes``, ``markov``, ``model_based``; ``kind``/``options`` are ignored).
        cohort: use this cohort instead of loading ``config.cohort`` (it is split the same way).
        world_model: a loaded world model for the model-based protocol (``config.model_based.enabled``).
        world_model_loader: or a function returning one, called once when first needed (a resumed run
            whose policies are all done never calls it). The runner never reads model files itself.
        executor: an :class:`~sepsis_sdk.evaluation.executor.Executor` (default from ``config.executor``).
        progress: show rich progress bars.
        fresh: delete a previous run's manifest and results in ``out_dir`` first.
        on_policy_done: called after each policy's result is saved, in the order of the policies.
        fan_out: how the work spreads over the executor. ``"chunks"``: the policies are built and scored
            one after another here, each one's patient chunks fan out. ``"policies"``: each policy is
            one task (built, its probabilities, OPE, safety, truth), at most the executor's in-flight
            limit at once; a policy that cannot be shipped is scored here, with a warning. ``"auto"``
            (default): ``"policies"`` on a Ray executor when at least two policies are left and they
            are at least as many as the cluster's CPUs, else ``"chunks"``. Results are the same either
            way (bit-identical where the policy is deterministic); resume works across modes. ``None``
            (default): ``config.fan_out``.

    Returns:
        The :class:`EvaluationReport` (also written as ``results.json``/``.csv``/``.md`` and plots).
    """
    from sepsis_sdk.evaluation.report import write_report

    config = config or EvaluationConfig()
    extra = dict(policies or {})
    entries = _entries(config, extra, dict(policy_configs or {}))
    scorers = create_scorers(config.scorers)
    store = RunStore(config.out_dir, config.fingerprint() + ("+" + ",".join(sorted(extra)) if extra else ""),
                     fresh=fresh)  # fmt: skip
    wm = _world_model_source(config.model_based, world_model, world_model_loader)
    setup = prepare(config, cohort if cohort is not None else load_cohort(config.cohort), wm)
    results: dict[str, PolicyResult] = {}
    with _executor(config, executor) as ex, _Progress(progress, len(entries)) as bar:
        todo = []
        for entry in entries:
            res = store.load(entry.config.name, scorers)
            if res is None:
                todo.append(entry)
            else:
                results[entry.config.name] = res
                bar.finished(entry.config.name)
        mode = _fan_out_mode(config.fan_out if fan_out is None else fan_out, ex, len(todo))
        if mode == "policies":
            done = _by_policy(todo, setup, config, scorers, store=store, executor=ex)
        else:
            done = _one_by_one(todo, setup, config, scorers, store=store, executor=ex, bar=bar)
        ready: dict[int, PolicyResult] = {}
        told = 0
        with closing(done):  # an error here stops the policy tasks still running
            for k, res in done:
                store.save(res)
                results[res.name] = ready[k] = res
                bar.finished(res.name)
                while told in ready:  # callbacks in the order of the policies, whatever order they end in
                    if on_policy_done is not None:
                        on_policy_done(ready[told])
                    told += 1
    results = {e.config.name: results[e.config.name] for e in entries}
    report = EvaluationReport(config, results, action_distribution_of(setup.test), meta=_meta(setup))
    write_report(report, store.out)
    return report


def action_distribution_of(cohort: Cohort) -> np.ndarray:
    """The clinicians' recorded ``(5, 5)`` action distribution on ``cohort``."""
    from sepsis_sdk.evaluation.metrics import action_distribution

    return action_distribution(cohort.actions)


def _meta(setup: RunSetup) -> dict[str, Any]:
    icu = is_icu_sepsis(setup.cohort)
    diag = {k: float(v) for k, v in setup.behaviour.diagnostics.items()}
    return {
        "cohort": setup.cohort.summary(),
        "n_train_patients": int(setup.train.n_patients),
        "n_test_patients": int(setup.test.n_patients),
        "behaviour_model": {"kind": setup.behaviour_kind, **diag},
        "icu_sepsis": icu,
        "reference_values": _reference_values() if icu else {},
    }


def _reference_values() -> dict[str, float]:
    from sepsis_sdk.truth import true_value

    return {
        "clinician (stored policy)": true_value("clinician_raw"),
        "optimal": true_value("optimal"),
        "random": true_value("random"),
    }


def _world_model_source(
    cfg: ModelBasedConfig, world_model: Any, loader: Callable[[], Any] | None
) -> Callable[[], Any] | None:
    """A function returning the world model (loading it at most once), or None when none is given."""
    if world_model is not None:
        return lambda: world_model
    if loader is None:
        if cfg.enabled and cfg.world_model:
            raise UserError(
                f"model_based.world_model = {cfg.world_model!r}: run_evaluation does not read model files; "
                "pass world_model=load_world_model(path) or world_model_loader=... (sepsis-sdk evaluate does)"
            )
        return None
    cache: list[Any] = []

    def get() -> Any:
        if not cache:
            cache.append(loader())
        return cache[0]

    return get


@contextmanager
def _executor(config: EvaluationConfig, given: Executor | None) -> Iterator[Executor]:
    """The executor to use; one made here is closed here, a given one is left open."""
    ex = given or make_executor(config.executor, workers=config.workers)
    try:
        yield ex
    finally:
        if given is None:
            ex.close()


class _Progress:
    """Rich progress bars (one overall, one per running policy), or nothing when disabled."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.bar: Any = None
        self.total = total
        self.tasks: dict[str, Any] = {}
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            self.bar = Progress(*cols)

    def __enter__(self) -> _Progress:
        if self.bar is not None:
            self.bar.start()
            self.overall = self.bar.add_task("policies", total=self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def task(self, name: str) -> Callable[[int, int], None] | None:
        """A ``(done, total)`` callback for one policy's chunks."""
        if self.bar is None:
            return None
        task = self.tasks[name] = self.bar.add_task(f"  {name}", total=None)
        return lambda done, total: self.bar.update(task, completed=done, total=total)

    def finished(self, name: str) -> None:
        if self.bar is not None:
            if name in self.tasks:
                self.bar.remove_task(self.tasks.pop(name))
            self.bar.advance(self.overall)


# ---------------------------------------------------------------------------------------------- deprecated
def _monte_carlo_true_value(
    policy: Any, n_episodes: int = 500, *, seed: int = 0, max_steps: int = 100, level: float = 0.95
) -> dict[str, Any]:
    from sepsis_sdk.truth import ICUSepsisTruth, TruthValue

    truth = ICUSepsisTruth()
    mc = truth.simulate(policy, episodes=n_episodes, seed=seed, level=level, max_steps=max_steps)
    return TruthValue.from_monte_carlo(mc, truth.name).to_dict()


def _true_value_of(policy: Any, *, markov: bool, mc_episodes: int, seed: int) -> dict[str, Any]:
    from sepsis_sdk.truth import ICUSepsisTruth

    return ICUSepsisTruth().value(policy, markov=markov, mc_episodes=mc_episodes, seed=seed).to_dict()


_DEPRECATED = {
    "monte_carlo_true_value": (_monte_carlo_true_value, "sepsis_sdk.truth.truth_for(cohort).simulate"),
    "true_value_of": (_true_value_of, "sepsis_sdk.truth.truth_for(cohort).value"),
}


def __getattr__(name: str) -> Any:
    if name in _DEPRECATED:
        fn, new = _DEPRECATED[name]
        warnings.warn(f"runner.{name} is deprecated; use {new}", DeprecationWarning, stacklevel=2)
        return fn
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FAN_OUTS",
    "CohortConfig",
    "EvaluationConfig",
    "EvaluationReport",
    "ModelBasedConfig",
    "OPEConfig",
    "PolicyConfig",
    "PolicyResult",
    "RunSetup",
    "SafetyConfig",
    "SplitConfig",
    "TruthConfig",
    "build_policy",
    "load_cohort",
    "policy_probabilities",
    "prepare",
    "run_evaluation",
    "score_policy",
    "select_patients",
]
