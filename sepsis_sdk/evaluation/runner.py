"""The benchmark runner behind ``sepsis-sdk evaluate``: policies x one cohort -> a resumable report.

For every policy it computes, on the same test split:

- off-policy estimates (DR, WIS, WPDIS, ... with bootstrap intervals) against a behaviour model fitted on
  the training split (:mod:`sepsis_sdk.evaluation.ope`);
- the **true value** on ICU-Sepsis: exact for Markov policies (``policy.markov`` is True; solved on the
  policy's state table), Monte Carlo in the true MDP for history-dependent ones;
- guideline adherence, hazard rates (:mod:`sepsis_sdk.safety`) and action agreement with clinicians;
- optionally the paper's model-based estimate (:mod:`sepsis_sdk.evaluation.model_based`).

**Resumable.** ``out_dir/manifest.json`` records the config and every finished policy; each policy's
result is one JSON file written atomically; history-dependent policies save their action probabilities
per chunk of patients, so after a crash finished policies and finished patient chunks are not redone.
Work over chunks fans out through an :class:`~sepsis_sdk.evaluation.executor.Executor` (local process
pool by default, serial when the policy cannot be pickled).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from sepsis_sdk.actions import N_ACTIONS
from sepsis_sdk.errors import DataError, UserError
from sepsis_sdk.policies._base import check_probabilities

if TYPE_CHECKING:
    from sepsis_sdk.cohort import Cohort, CohortSplit


# ---------------------------------------------------------------------------------------------- config
class _Cfg(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CohortConfig(_Cfg):
    """Which cohort: sampled from ICU-Sepsis (default) or read from a Parquet file."""

    source: Literal["icu-sepsis", "parquet"] = "icu-sepsis"
    n_episodes: int = Field(default=5000, gt=0)
    seed: int = 0
    behaviour: str = "clinician"
    path: str | None = None


class SplitConfig(_Cfg):
    """Patient-level split (train for fitting policies and the behaviour model, test for scoring)."""

    train: float = 0.7
    validation: float = 0.1
    test: float = 0.2
    seed: int = 0


class PolicyConfig(_Cfg):
    """One policy of the benchmark.

    Attributes:
        name: row name in the report.
        kind: a baseline name (``clinician``, ``random``, ``tabular``, ``bc``, ``dqn``, ``double_dqn``,
            ``bcq``, ``cql``), ``builtin`` (an ICU-Sepsis state-table policy such as ``optimal``, named by
            ``options.table``), or ``factory`` (``options.factory = "module:function"`` called with the
            training cohort and the remaining options; returns a Policy; how LLM graphs are plugged in).
            Defaults to ``name``.
        options: passed to the builder.
        max_patients: score on a random sample of this many test patients (expensive policies).
        markov: override the policy's own ``markov`` attribute.
        truth_episodes: Monte Carlo episodes for this policy's true value when it is not Markov (default
            ``truth.monte_carlo_episodes``; 0 skips the true value, e.g. for a slow local LLM).
        model_based: include this policy in the model-based protocol when it is enabled.
        patient_selection: how ``max_patients`` are chosen: at random (default) or the shortest stays
            (for very slow policies such as a CPU-bound local LLM; biased towards short stays).
    """

    name: str
    kind: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    max_patients: int | None = Field(default=None, gt=0)
    markov: bool | None = None
    truth_episodes: int | None = Field(default=None, ge=0)
    model_based: bool = True
    patient_selection: Literal["random", "shortest"] = "random"


class OPEConfig(_Cfg):
    """Off-policy evaluation settings.

    ``behaviour_kind`` ``"auto"`` uses the count-based (tabular) behaviour model on ICU-Sepsis, whose
    observations are discrete states, and multinomial logistic regression elsewhere.
    """

    estimators: tuple[str, ...] = ("dr", "wis", "wpdis")
    n_bootstrap: int = Field(default=500, ge=0)
    behaviour_kind: str = "auto"
    softening: float = 0.01
    fqe_model: str = "auto"


class SafetyConfig(_Cfg):
    rules: str | None = None
    n_bootstrap: int = Field(default=500, ge=0)


class TruthConfig(_Cfg):
    enabled: bool = True
    monte_carlo_episodes: int = Field(default=500, gt=0)


class ModelBasedConfig(_Cfg):
    """The paper's protocol (replay until first deviation, then roll out a world model)."""

    enabled: bool = False
    world_model: str | None = None  # a saved world model path; or pass world_model= to run_evaluation
    horizon: int = Field(default=10, gt=0)
    n_samples: int = Field(default=16, gt=0)


class EvaluationConfig(_Cfg):
    """Everything ``sepsis-sdk evaluate`` needs; load from YAML with :meth:`from_yaml`."""

    out_dir: str = "evaluation-report"
    seed: int = 0
    cohort: CohortConfig = CohortConfig()
    split: SplitConfig = SplitConfig()
    policies: tuple[PolicyConfig, ...] = (PolicyConfig(name="clinician"), PolicyConfig(name="random"))
    ope: OPEConfig = OPEConfig()
    safety: SafetyConfig = SafetyConfig()
    truth: TruthConfig = TruthConfig()
    model_based: ModelBasedConfig = ModelBasedConfig()
    executor: str = "process"
    workers: int | None = None
    chunk_patients: int = Field(default=64, gt=0)
    offline_rl_steps: int = Field(default=5000, gt=0)

    @classmethod
    def from_yaml(cls, path: str | Path) -> EvaluationConfig:
        import yaml

        p = Path(path)
        if not p.exists():
            raise DataError(f"{p}: config file does not exist")
        try:
            raw = yaml.safe_load(p.read_text()) or {}
            return cls.model_validate(raw)
        except Exception as exc:
            raise DataError(f"{p}: invalid evaluation config: {exc}") from None

    def fingerprint(self) -> str:
        """Hash of everything that changes results (not ``out_dir``, executor or workers)."""
        d = self.model_dump(exclude={"out_dir", "executor", "workers"})
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- results
@dataclass
class PolicyResult:
    """Everything computed for one policy (JSON-ready through :meth:`to_dict`)."""

    name: str
    kind: str
    markov: bool
    n_patients: int
    n_decisions: int
    ope: dict[str, Any]
    safety: dict[str, Any]
    agreement: dict[str, Any]
    true_value: dict[str, Any] | None
    model_based: dict[str, Any] | None
    action_distribution: list[list[float]]
    seconds: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PolicyResult:
        return cls(**dict(d))


@dataclass
class EvaluationReport:
    """The finished run: per-policy results plus the clinicians' action distribution and file paths."""

    config: EvaluationConfig
    results: dict[str, PolicyResult]
    clinician_distribution: list[list[float]]
    files: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> PolicyResult:
        return self.results[name]


# ---------------------------------------------------------------------------------------------- helpers
def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a crash never leaves a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def atomic_save_npy(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npy")
    np.save(tmp, arr)
    os.replace(tmp, path)


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return str(o)


def _clean(o: Any) -> Any:
    """Replace NaN/inf by None recursively (strict JSON)."""
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, (float, np.floating)):
        return float(o) if math.isfinite(o) else None
    if isinstance(o, np.integer):
        return int(o)
    return o


def dumps(obj: Any) -> str:
    return json.dumps(_clean(obj), indent=2, default=_json_default, allow_nan=False)


class Manifest:
    """``manifest.json``: the config fingerprint and the status of each policy."""

    def __init__(self, out_dir: Path, fingerprint: str) -> None:
        self.path = out_dir / "manifest.json"
        self.fingerprint = fingerprint
        self.data: dict[str, Any] = {"fingerprint": fingerprint, "policies": {}, "created": time.time()}
        if self.path.exists():
            old = json.loads(self.path.read_text())
            if old.get("fingerprint") != fingerprint:
                raise UserError(
                    f"{self.path}: this directory holds a run with a different config; use another out_dir "
                    "or fresh=True (--fresh) to start over"
                )
            self.data = old

    def done(self, name: str) -> bool:
        return self.data["policies"].get(name, {}).get("status") == "done"

    def mark(self, name: str, status: str, **extra: Any) -> None:
        self.data["policies"][name] = {"status": status, "time": time.time(), **extra}
        atomic_write_text(self.path, dumps(self.data))


# ---------------------------------------------------------------------------------------------- cohort
def load_cohort(cfg: CohortConfig) -> Cohort:
    """The cohort named by the config."""
    if cfg.source == "icu-sepsis":
        from sepsis_sdk.sources.icu_sepsis import sample_cohort

        return sample_cohort(cfg.n_episodes, policy=cfg.behaviour, seed=cfg.seed)
    from sepsis_sdk.cohort import Cohort

    if not cfg.path:
        raise UserError("cohort.source 'parquet' needs cohort.path")
    return Cohort.read_parquet(cfg.path)


def is_icu_sepsis(cohort: Cohort) -> bool:
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
        from sepsis_sdk.evaluation.baselines import BehaviourPolicy

        return BehaviourPolicy(behaviour, train.schema.names, name=pc.name, static_names=train.schema.static)
    if kind == "builtin":
        from sepsis_sdk.policies._base import StateTablePolicy
        from sepsis_sdk.truth import builtin_policy

        table = opts.get("table", pc.name)
        pol = StateTablePolicy(builtin_policy(table), name=pc.name)
        pol.markov = True  # type: ignore[attr-defined]
        return pol
    if kind == "factory":
        import importlib

        target = opts.pop("factory", None)
        if not target or ":" not in str(target):
            raise UserError(f"policy {pc.name!r}: kind 'factory' needs options.factory = 'module:function'")
        mod, fn = str(target).split(":", 1)
        return getattr(importlib.import_module(mod), fn)(train, **opts)
    from sepsis_sdk.evaluation.baselines import build_baseline

    steps = opts.pop("n_steps", offline_rl_steps)
    return build_baseline(kind, train, seed=seed, n_steps=steps, **opts)


def _probs_for_chunk(policy: Any, chunk: Cohort) -> np.ndarray:
    hist = list(chunk.histories())
    return check_probabilities(
        policy.action_probabilities(hist), len(hist), getattr(policy, "name", "policy")
    )


def policy_probabilities(
    policy: Any,
    cohort: Cohort,
    *,
    work_dir: Path | None = None,
    executor: Any = None,
    chunk_patients: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """``(n_rows, 25)`` action probabilities of ``policy`` at every decision of ``cohort``.

    Vectorised policies (with ``cohort_probabilities``) are called once. Others get the recorded history
    of each decision, chunk by chunk of patients; with ``work_dir`` each finished chunk is saved and reused
    on a rerun (resume after a crash).
    """
    from sepsis_sdk.policies._base import StateTablePolicy

    if isinstance(policy, StateTablePolicy) and cohort.has_state_ids:
        return check_probabilities(
            policy.table[cohort.data["state_id"].to_numpy(dtype=np.int64)], len(cohort), policy.name
        )
    if hasattr(policy, "cohort_probabilities"):
        return check_probabilities(
            policy.cohort_probabilities(cohort), len(cohort), getattr(policy, "name", "policy")
        )
    from sepsis_sdk.evaluation.executor import SerialExecutor

    ids = cohort.patient_ids.tolist()
    chunks = [ids[i : i + chunk_patients] for i in range(0, len(ids), chunk_patients)]
    out: list[np.ndarray | None] = [None] * len(chunks)
    todo = []
    for k, _ in enumerate(chunks):
        f = work_dir / f"chunk_{k:05d}.npy" if work_dir is not None else None
        if f is not None and f.exists():
            out[k] = np.load(f)
        else:
            todo.append(k)
    done = len(chunks) - len(todo)
    if progress:
        progress(done, len(chunks))
    ex = executor or SerialExecutor()
    job = partial(_probs_for_chunk, policy)
    for k, probs in zip(todo, ex.map(job, [cohort.select(chunks[k]) for k in todo]), strict=True):
        if work_dir is not None:
            atomic_save_npy(work_dir / f"chunk_{k:05d}.npy", probs)
        out[k] = probs
        done += 1
        if progress:
            progress(done, len(chunks))
    return np.concatenate([o for o in out if o is not None]) if out else np.zeros((0, N_ACTIONS))


def monte_carlo_true_value(
    policy: Any, n_episodes: int = 500, *, seed: int = 0, max_steps: int = 100, level: float = 0.95
) -> dict[str, Any]:
    """Value of a (possibly history-dependent) policy by simulation in the true ICU-Sepsis MDP.

    All episodes advance together; at every step the policy sees each live patient's full history
    (observations so far, actions so far) as a :class:`~sepsis_sdk.PatientHistory`.
    """
    from statistics import NormalDist

    from sepsis_sdk.sources.icu_sepsis import N_CLINICAL, SURVIVAL, icu_sepsis_schema, load_mdp
    from sepsis_sdk.types import Observation, PatientHistory

    mdp = load_mdp()
    names = tuple(icu_sepsis_schema().names)
    rng = np.random.default_rng(seed)
    cum_tx = np.cumsum(mdp.tx_mat, axis=-1)
    state = rng.choice(len(mdp.d0), size=n_episodes, p=mdp.d0 / mdp.d0.sum())
    obs_hist: list[list[Observation]] = [[] for _ in range(n_episodes)]
    act_hist: list[list[int]] = [[] for _ in range(n_episodes)]
    ret = np.zeros(n_episodes)
    alive = np.ones(n_episodes, dtype=bool)
    for t in range(max_steps):
        idx = np.flatnonzero(alive)
        if idx.size == 0:
            break
        hs = []
        for i in idx:
            obs_hist[i].append(Observation(t=t, values=tuple(mdp.observation(int(state[i])).tolist())))
            hs.append(
                PatientHistory(
                    patient_id=f"mc-{i}",
                    observations=tuple(obs_hist[i]),
                    actions=tuple(act_hist[i]),
                    feature_names=names,
                    state_id=int(state[i]),
                )
            )
        p = check_probabilities(policy.action_probabilities(hs), len(hs), getattr(policy, "name", "policy"))
        cp = np.cumsum(p, axis=1)
        a = np.minimum((cp < rng.random(len(idx))[:, None] * cp[:, -1:]).sum(1), N_ACTIONS - 1)
        cum = cum_tx[state[idx], a]
        s2 = np.minimum((cum < rng.random(len(idx))[:, None] * cum[:, -1:]).sum(1), cum.shape[1] - 1)
        for j, i in enumerate(idx):
            act_hist[i].append(int(a[j]))
        ret[idx] += (s2 == SURVIVAL).astype(float)
        state[idx] = s2
        alive[idx[s2 >= N_CLINICAL]] = False
    mean = float(ret.mean())
    se = float(ret.std(ddof=1) / math.sqrt(n_episodes)) if n_episodes > 1 else float("nan")
    z = NormalDist().inv_cdf(0.5 + level / 2)
    return {
        "value": mean,
        "ci_low": mean - z * se,
        "ci_high": mean + z * se,
        "method": "monte_carlo",
        "n_episodes": n_episodes,
        "unfinished": int(alive.sum()),
    }


def true_value_of(policy: Any, *, markov: bool, mc_episodes: int, seed: int) -> dict[str, Any]:
    """Exact value for Markov policies, Monte Carlo in the true MDP otherwise (ICU-Sepsis only)."""
    if markov:
        from sepsis_sdk.truth import true_value

        return {"value": true_value(policy), "ci_low": None, "ci_high": None, "method": "exact"}
    return monte_carlo_true_value(policy, mc_episodes, seed=seed)


# ---------------------------------------------------------------------------------------------- run
def _progress_factory(enabled: bool) -> Any:
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())


def run_evaluation(
    config: EvaluationConfig | None = None,
    *,
    policies: Mapping[str, Any] | None = None,
    policy_configs: Mapping[str, PolicyConfig] | None = None,
    cohort: Cohort | None = None,
    world_model: Any = None,
    executor: Any = None,
    progress: bool = True,
    fresh: bool = False,
    on_policy_done: Callable[[PolicyResult], None] | None = None,
) -> EvaluationReport:
    """Run the benchmark described by ``config`` and write the report into ``config.out_dir``.

    Args:
        config: what to run (default :class:`EvaluationConfig()`).
        policies: ready-made policies to add, by name (e.g. a world-model planner or an LLM graph policy);
            they are scored like the configured ones. Set ``markov = True`` on a policy to get its exact
            true value; otherwise it is simulated in the true MDP (``truth.monte_carlo_episodes``).
        policy_configs: settings of those ready-made policies by name (``max_patients``,
            ``truth_episodes``, ``markov``, ``model_based``; ``kind``/``options`` are ignored).
        cohort: use this cohort instead of loading ``config.cohort`` (it is split the same way).
        world_model: a world model for the model-based protocol (``config.model_based.enabled``).
        executor: an :class:`~sepsis_sdk.evaluation.executor.Executor` (default from ``config.executor``).
        progress: show rich progress bars.
        fresh: delete a previous run's manifest and results in ``out_dir`` first.
        on_policy_done: called after each policy's result is saved.

    Returns:
        The :class:`EvaluationReport` (also written as ``results.json``/``.csv``/``.md`` and plots).
    """
    from sepsis_sdk.evaluation.executor import make_executor
    from sepsis_sdk.evaluation.report import write_report

    config = config or EvaluationConfig()
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    extra = dict(policies or {})
    clash = [n for n in extra if n in {p.name for p in config.policies}]
    if clash:
        raise UserError(f"policies {clash} are both configured and passed as objects")
    fp = config.fingerprint() + ("+" + ",".join(sorted(extra)) if extra else "")
    if fresh:
        import shutil

        for sub in ("manifest.json", "policies", "work"):
            p = out / sub
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    manifest = Manifest(out, fp)

    cohort = cohort if cohort is not None else load_cohort(config.cohort)
    s = config.split
    split: CohortSplit = cohort.split(s.train, s.validation, s.test, seed=s.seed)
    train, test = split.train, split.test
    if len(test) == 0 or len(train) == 0:
        raise UserError("the split left an empty train or test part; use more patients")
    icu = is_icu_sepsis(cohort)

    from sepsis_sdk.evaluation.behaviour import fit_behaviour_policy
    from sepsis_sdk.evaluation.metrics import action_agreement, action_distribution, safety_metrics
    from sepsis_sdk.evaluation.ope import evaluate_ope
    from sepsis_sdk.safety import load_rules

    rules = load_rules(config.safety.rules)
    bkind = config.ope.behaviour_kind
    if bkind == "auto":
        bkind = "tabular" if icu else "logistic"
    behaviour = fit_behaviour_policy(train, kind=bkind, softening=config.ope.softening, seed=config.seed)
    ex = executor or make_executor(config.executor, workers=config.workers)
    names = [p.name for p in config.policies] + list(extra)
    results: dict[str, PolicyResult] = {}
    bar = _progress_factory(progress)
    try:
        if bar is not None:
            bar.start()
            overall = bar.add_task("policies", total=len(names))
        for name in names:
            res_file = out / "policies" / f"{_safe(name)}.json"
            if manifest.done(name) and res_file.exists():
                results[name] = PolicyResult.from_dict(json.loads(res_file.read_text()))
                if bar is not None:
                    bar.advance(overall)
                continue
            manifest.mark(name, "running")
            t0 = time.time()
            pc = next((p for p in config.policies if p.name == name), None)
            if pc is not None:
                policy = build_policy(
                    pc, train, seed=config.seed, offline_rl_steps=config.offline_rl_steps, behaviour=behaviour
                )
                kind = pc.kind or pc.name
                max_pat = pc.max_patients
                markov_override = pc.markov
            else:
                pc = (policy_configs or {}).get(name) or PolicyConfig(name=name)
                policy, kind, max_pat, markov_override = extra[name], "object", pc.max_patients, pc.markov
            markov = bool(
                markov_override if markov_override is not None else getattr(policy, "markov", False)
            )
            sub = test
            notes: list[str] = []
            if max_pat is not None and max_pat < test.n_patients:
                if pc.patient_selection == "shortest":
                    order = np.argsort(test.lengths(), kind="stable")[:max_pat]
                    ids = sorted(test.patient_ids[order].tolist(), key=str)
                    notes.append(f"scored on the {max_pat} shortest test stays (not a random sample)")
                else:
                    rng = np.random.default_rng(config.seed)
                    ids = sorted(rng.choice(test.patient_ids, size=max_pat, replace=False).tolist(), key=str)
                sub = test.select(ids)
            task = bar.add_task(f"  {name}", total=None) if bar is not None else None

            def _prog(done: int, total: int, task: Any = task) -> None:
                if bar is not None:
                    bar.update(task, completed=done, total=total)

            probs = policy_probabilities(
                policy,
                sub,
                work_dir=out / "work" / _safe(name),
                executor=ex,
                chunk_patients=config.chunk_patients,
                progress=_prog,
            )
            ope = evaluate_ope(
                sub,
                probs,
                behaviour=behaviour,
                estimators=config.ope.estimators,
                n_bootstrap=config.ope.n_bootstrap,
                seed=config.seed,
                fqe_model=config.ope.fqe_model,
            )
            safety = safety_metrics(
                sub, probs, rules=rules, n_bootstrap=config.safety.n_bootstrap, seed=config.seed
            )
            agree = action_agreement(sub, probs, n_bootstrap=config.safety.n_bootstrap, seed=config.seed)
            tv = None
            mc_eps = pc.truth_episodes if pc.truth_episodes is not None else config.truth.monte_carlo_episodes
            if icu and config.truth.enabled and (markov or mc_eps > 0):
                tv = true_value_of(policy, markov=markov, mc_episodes=mc_eps, seed=config.seed)
            elif icu and config.truth.enabled:
                notes.append("true value skipped (truth_episodes = 0)")
            elif config.truth.enabled:
                notes.append("no true value: the cohort is not ICU-Sepsis")
            mb = None
            if config.model_based.enabled and pc.model_based:
                wm = world_model
                if wm is None and config.model_based.world_model:
                    from sepsis_sdk.world_model import load_world_model  # type: ignore[attr-defined]

                    wm = load_world_model(config.model_based.world_model)
                if wm is None:
                    notes.append("model-based protocol skipped: no world model given")
                else:
                    mb = _model_based_or_note(
                        sub,
                        policy,
                        wm,
                        horizon=config.model_based.horizon,
                        n_samples=config.model_based.n_samples,
                        seed=config.seed,
                        n_bootstrap=config.ope.n_bootstrap,
                        probabilities=probs,
                        notes=notes,
                    )
                    mb = mb.to_dict() if mb is not None else None
                    if mb is not None:
                        mb.pop("per_patient", None)
            result = PolicyResult(
                name=name,
                kind=kind,
                markov=markov,
                n_patients=int(sub.n_patients),
                n_decisions=len(sub),
                ope=ope.to_dict(),
                safety=safety.to_dict(),
                agreement={k: v.to_dict() for k, v in agree.items()},
                true_value=tv,
                model_based=mb,
                action_distribution=action_distribution(probs).tolist(),
                seconds=round(time.time() - t0, 2),
                notes=notes + safety.notes,
            )
            atomic_write_text(res_file, dumps(result.to_dict()))
            manifest.mark(name, "done", file=str(res_file.relative_to(out)))
            results[name] = result
            if on_policy_done is not None:
                on_policy_done(result)
            if bar is not None:
                bar.remove_task(task)
                bar.advance(overall)
    finally:
        if bar is not None:
            bar.stop()
        if executor is None:
            ex.close()
    report = EvaluationReport(
        config=config,
        results=results,
        clinician_distribution=action_distribution(test.actions).tolist(),
        meta={
            "cohort": cohort.summary(),
            "n_train_patients": int(train.n_patients),
            "n_test_patients": int(test.n_patients),
            "behaviour_model": {"kind": bkind, **{k: float(v) for k, v in behaviour.diagnostics.items()}},
            "icu_sepsis": icu,
            "reference_values": _reference_values() if icu else {},
        },
    )
    write_report(report, out)
    return report


def _model_based_or_note(*args: Any, notes: list[str], **kw: Any) -> Any:
    """Run the model-based protocol; a policy that cannot act on simulated histories gets a note."""
    from sepsis_sdk.evaluation.model_based import model_based_value

    try:
        return model_based_value(*args, **kw)
    except UserError as exc:
        notes.append(f"model-based protocol not possible: {exc}")
        return None


def _reference_values() -> dict[str, float]:
    from sepsis_sdk.truth import true_value

    return {
        "clinician (stored policy)": true_value("clinician_raw"),
        "optimal": true_value("optimal"),
        "random": true_value("random"),
    }


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "policy"


__all__ = [
    "CohortConfig",
    "EvaluationConfig",
    "EvaluationReport",
    "ModelBasedConfig",
    "OPEConfig",
    "PolicyConfig",
    "PolicyResult",
    "SafetyConfig",
    "SplitConfig",
    "TruthConfig",
    "build_policy",
    "load_cohort",
    "monte_carlo_true_value",
    "policy_probabilities",
    "run_evaluation",
    "true_value_of",
]
