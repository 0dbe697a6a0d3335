"""The embedded benchmark behind ``make demo`` / ``sepsis-sdk demo``: one call of the evaluation runner.

ICU-Sepsis episodes, a world model trained on the training split, the baselines, the world-model planner
and the embedded agent, scored by :func:`~sepsis_sdk.evaluation.runner.run_evaluation`. All local: no keys,
no network.

The report's rows are data: :func:`demo_policies` lists the configured ones (one
:class:`~sepsis_sdk.evaluation.config.PolicyConfig` per row) and :data:`DEMO_OBJECT_ROWS` the ones built
from the trained world model (one :class:`ObjectRow` each). Adding a row is one line in either.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sepsis_sdk.evaluation.config import (
    CohortConfig,
    EvaluationConfig,
    ModelBasedConfig,
    OPEConfig,
    PolicyConfig,
    SafetyConfig,
    TruthConfig,
)

if TYPE_CHECKING:
    from rich.console import Console

    from sepsis_sdk.evaluation.results import EvaluationReport


def demo_policies(quick: bool) -> tuple[PolicyConfig, ...]:
    """The configured rows: baselines trained on the training split, and the optimal reference."""
    return (
        PolicyConfig(name="clinician"),
        PolicyConfig(name="random"),
        # the AI-Clinician recipe as published (k-means states, no pessimism) ...
        PolicyConfig(name="tabular", options={"n_clusters": 100 if quick else 300, "backup_pessimism": 0.0}),
        # ... and the counting reference done right: one state per distinct observation, LCB in the backup
        PolicyConfig(name="best-offline", kind="tabular"),
        PolicyConfig(name="bc"),
        PolicyConfig(name="dqn"),
        PolicyConfig(name="double_dqn"),
        PolicyConfig(name="bcq"),
        PolicyConfig(name="cql"),
        PolicyConfig(name="optimal", kind="builtin", model_based=False),
    )


def demo_config(out_dir: str | Path, *, quick: bool = False) -> EvaluationConfig:
    """The demo's :class:`EvaluationConfig` (``quick``: a smaller, faster run)."""
    return EvaluationConfig(
        out_dir=str(Path(out_dir) / "report"),
        seed=0,
        cohort=CohortConfig(n_episodes=1000 if quick else 3000, seed=0),
        policies=demo_policies(quick),
        # FQE is the accurate estimator here; DR_CLIP is DR kept inside the range of possible values
        ope=OPEConfig(estimators=("dr", "dr_clip", "wis", "wpdis", "fqe"), n_bootstrap=200 if quick else 500),
        safety=SafetyConfig(n_bootstrap=200 if quick else 500),
        truth=TruthConfig(monte_carlo_episodes=100 if quick else 300),
        model_based=ModelBasedConfig(enabled=True, horizon=4 if quick else 6, n_samples=4 if quick else 8),
        executor="serial",
        offline_rl_steps=300 if quick else 1500,
    )


@dataclass(frozen=True)
class ObjectRow:
    """A demo row built from the trained world model.

    Attributes:
        name: the row name.
        build: ``(world_model, train_cohort, quick) -> policy``.
        settings: ``quick -> PolicyConfig`` (patients, truth episodes, ...).
    """

    name: str
    build: Callable[[Any, Any, bool], Any]
    settings: Callable[[bool], PolicyConfig]


def _planner(world_model: Any, train: Any, quick: bool) -> Any:
    """Pessimistic policy iteration to convergence in a world model fitted on the training split.

    On the sharp neighbour world model (``k=1``, no prior): ICU-Sepsis observations are discrete, so its
    next-state law has a finite support and the planner solves the model's pessimistic MDP exactly
    (``lookahead="converge"``; docs/decisions.md: the best form measured for a learned model, level with
    the counting reference). The torch model's Monte-Carlo values were measured too slow and too noisy for
    this row (quick demo: 674 s, true value 0.780 vs 0.790 for the hold rule).
    """
    from sepsis_sdk.policies.planner import WorldModelPlannerPolicy
    from sepsis_sdk.world_model import NeighbourWorldModel
    from sepsis_sdk.world_model.value import fit_continuation

    wm = NeighbourWorldModel.fit(train, k=1, prior_count=0)
    return WorldModelPlannerPolicy(wm, continuation=fit_continuation(train), lookahead="converge")


def _planner_hold(world_model: Any, train: Any, quick: bool) -> Any:
    """The former default: hold each action for H steps (capped near clinician level; for comparison)."""
    from sepsis_sdk.policies.planner import WorldModelPlannerPolicy

    return WorldModelPlannerPolicy(
        world_model, mode="hold", horizon=3 if quick else 4, n_samples=4, name="planner-hold"
    )


EMBEDDED_AGENT = "local/sepsisagent-135m"
"""The embedded agent model (SmolLM2-135M + the shipped LoRA adapter, docs/training.md)."""


def _embedded_agent(world_model: Any, train: Any, quick: bool) -> Any:
    """The embedded agent in the direct graph, choosing by its own log-likelihood, as a Markov policy.

    Its exact true value needs one decision per ICU-Sepsis state (713; about 9 min on 2 idle cores), more
    than the demo's budget. So the sweep record shipped with the adapter (made by the same graph, model
    and prompts: the cache key checks it) fills the decision cache after ``check`` of its states, drawn
    at random, are decided again now and all agree; otherwise the row is left out with a note (the
    full live sweep is one ``sepsis-sdk evaluate-agent`` command). The report says which
    (``report.meta["embedded_agent"]``).
    """
    from sepsis_sdk.graphs import build_direct_graph
    from sepsis_sdk.llm import cache_root, embedded_agent_path
    from sepsis_sdk.truth.agent import AgentPolicy, cache_key, seed_from_record

    graph = build_direct_graph(EMBEDDED_AGENT, decide="loglik")
    options = {"decide": "loglik"}
    cache = cache_root() / "agent-decisions"
    key = cache_key(model=EMBEDDED_AGENT, graph_kind=graph.name, options=options, mode="markov")
    record = embedded_agent_path() / "markov_decisions.jsonl"
    check = seed_from_record(graph, record, cache_dir=cache, key=key, check=16 if quick else 32)
    if not check.used:  # a live sweep would take the demo past its budget: leave the row out, say why
        raise RuntimeError(
            f"{check.describe()}; the demo leaves it out (the full live sweep: sepsis-sdk evaluate-agent "
            f"--model {EMBEDDED_AGENT} --decide loglik --markov --out runs/value, about 9 min)"
        )
    policy = AgentPolicy(graph, model=EMBEDDED_AGENT, options=options, cache_dir=cache,
                         name="sepsisagent-135m", max_concurrency=1)  # fmt: skip
    policy.record_check = check  # type: ignore[attr-defined]
    return policy


def embedded_psr_value(*, check: int = 4) -> dict[str, Any]:
    """The embedded PSR agent's exact true value, from its shipped sweep record after ``check`` live decisions.

    ``local/sepsisagent-135m-psr`` decides in the propose-simulate-refine graph around the neighbour world
    model of 20,000 ICU-Sepsis episodes and its teacher's planned care
    (:func:`~sepsis_sdk.training.embedded.embedded_psr_graph`, about a minute to build). One decision takes
    about 4 s on a CPU thread, so the 713-state sweep (~27 min on 2 cores) is not redone: the record
    shipped with the adapter fills the decision cache once ``check`` of its states, drawn at random, are
    decided again now and all agree, and the truth layer solves the resulting table exactly. It is not a
    row of the report's table: the table's OPE and safety columns would need live decisions on every test
    step.

    Returns:
        ``{"model", "value", "gap_closed", "adherence", "unsafe_rate", "visit_shares", "check"}``; ``value``
        is ``None`` (and ``check`` says why) when the record was not used: no state is then decided.
    """
    from sepsis_sdk.llm import cache_root, embedded_agent_path
    from sepsis_sdk.training.embedded import PSR_AGENT, embedded_psr_graph
    from sepsis_sdk.truth import true_value
    from sepsis_sdk.truth.agent import cache_key, markov_agent_value, seed_from_record

    graph, options = embedded_psr_graph()
    cache = cache_root() / "agent-decisions"
    key = cache_key(model=PSR_AGENT, graph_kind=graph.name, options=options, mode="markov")
    record = embedded_agent_path(PSR_AGENT) / "markov_decisions.jsonl"
    checked = seed_from_record(graph, record, cache_dir=cache, key=key, check=check)
    out: dict[str, Any] = {"model": PSR_AGENT, "value": None, "check": checked.describe()}
    if not checked.used:
        return out
    res = markov_agent_value(graph, model=PSR_AGENT, graph_kind=graph.name, options=options, cache_dir=cache,
                             max_concurrency=1)  # fmt: skip
    if res.value is None or res.new_decisions:  # the record covers every state: nothing may be decided anew
        raise RuntimeError(
            f"the PSR agent's record did not cover the sweep ({res.new_decisions} new decisions)"
        )
    clin, opt = true_value("clinician_raw"), true_value("optimal")
    out.update(
        value=round(float(res.value), 4),
        gap_closed=round((float(res.value) - clin) / (opt - clin), 4),
        adherence=None if res.adherence is None else round(float(res.adherence), 4),
        unsafe_rate=None if res.unsafe_rate is None else round(float(res.unsafe_rate), 4),
        visit_shares={k: round(float(v), 4) for k, v in (res.visit_shares or {}).items()},
    )
    return out


DEMO_OBJECT_ROWS: tuple[ObjectRow, ...] = (
    # Exact truth: the planner is scored as a Markov policy on the current state (one-step history);
    # OPE and safety use the recorded histories (the world model's full window).
    ObjectRow("planner", _planner, lambda q: PolicyConfig(name="planner", max_patients=40 if q else 100, markov=True)),
    ObjectRow("planner-hold", _planner_hold, lambda q: PolicyConfig(
        name="planner-hold", max_patients=40 if q else 100, markov=True)),
    # exact truth from one decision per state; OPE and safety on the test histories (the same cache)
    ObjectRow("sepsisagent-135m", _embedded_agent, lambda q: PolicyConfig(
        name="sepsisagent-135m", max_patients=40 if q else 100, markov=True, model_based=False)),
)  # fmt: skip


def _train_world_model(train: Any, quick: bool, console: Console) -> Any:
    """The torch world model on the training split, or None (with a message) when it cannot be trained."""
    t0 = time.time()
    try:
        from sepsis_sdk.world_model import train_world_model

        console.print(f"training the world model on {train.n_patients} patients ...")
        # the default thread count (one: fastest on 2 shared cores) and progress lines, as in the CLI
        wm = train_world_model(train, "torch", n_members=3, epochs=4 if quick else 8, hidden=128, window=2)
        console.print(f"  done in {time.time() - t0:.0f} s")
        return wm
    except Exception as exc:  # the report still runs without a world model
        console.print(f"[yellow]world model unavailable ({type(exc).__name__}: {exc}); skipping it[/yellow]")
        return None


def _object_rows(
    world_model: Any, train: Any, quick: bool, console: Console
) -> tuple[dict[str, Any], dict[str, PolicyConfig]]:
    policies: dict[str, Any] = {}
    settings: dict[str, PolicyConfig] = {}
    if world_model is None:
        return policies, settings
    for row in DEMO_OBJECT_ROWS:
        try:
            policies[row.name] = row.build(world_model, train, quick)
            settings[row.name] = row.settings(quick)
        except Exception as exc:  # an optional part missing (e.g. no LLM extra): the others still run
            console.print(f"[yellow]{row.name} unavailable ({type(exc).__name__}: {exc})[/yellow]")
    return policies, settings


def run_demo_benchmark(
    out_dir: str | Path, *, quick: bool = False, progress: bool = True
) -> EvaluationReport:
    """The embedded benchmark behind ``make demo``: ICU-Sepsis, world model, baselines, planner, PSR agent.

    Steps (all local, no keys, no network):

    1. sample ICU-Sepsis episodes under the clinicians' policy (3,000; 1,000 with ``quick``) and split
       them by patient;
    2. train the torch world model on the training split (small ensemble, few epochs);
    3. score clinician, random, AI-Clinician tabular, the counting reference (``best-offline``), d3rlpy
       BC/DQN/DoubleDQN/BCQ/CQL, the optimal policy (reference), the world-model planner (two rounds of
       policy improvement over the fitted clinicians, exact on the neighbour model) and its former hold
       rule on the torch model (on a sample of test patients), and the embedded agent
       (``local/sepsisagent-135m``, its exact value from one decision per state) — each part is skipped
       with a note when its dependencies are missing;
    4. write the report (``results.md``/``.csv``/``.json`` and plots) into ``out_dir/report``.

    Reruns resume: finished policies are not recomputed.

    Returns:
        The :class:`~sepsis_sdk.evaluation.results.EvaluationReport`.
    """
    from rich.console import Console
    from rich.markup import escape

    from sepsis_sdk.evaluation.report import write_report
    from sepsis_sdk.evaluation.runner import load_cohort, run_evaluation

    console = Console()
    t0 = time.time()
    cfg = demo_config(out_dir, quick=quick)
    cohort = load_cohort(cfg.cohort)
    split = cohort.split(cfg.split.train, cfg.split.validation, cfg.split.test, seed=cfg.split.seed)
    world_model = _train_world_model(split.train, quick, console)
    policies, settings = _object_rows(world_model, split.train, quick, console)
    check = getattr(policies.get("sepsisagent-135m"), "record_check", None)
    if check is not None:
        console.print(f"sepsisagent-135m: {check.describe()}")
    report = run_evaluation(
        cfg,
        policies=policies,
        policy_configs=settings,
        cohort=cohort,
        world_model=world_model,
        progress=progress,
    )
    if check is not None:
        report.meta["embedded_agent"] = check.describe()
    try:
        console.print("the embedded PSR agent (local/sepsisagent-135m-psr): checking its sweep record ...")
        psr = embedded_psr_value(check=2 if quick else 4)
        report.meta["embedded_psr_agent"] = psr
        if psr["value"] is None:  # a live 713-state sweep would take the demo past its budget
            console.print(escape(f"  not scored: {psr['check']}"))
        else:
            console.print(escape(f"  {psr['check']}; exact true value {psr['value']:.4f}"))
    except Exception as exc:  # an optional part missing (no LLM extra, no record): the report stands
        console.print(
            f"[yellow]embedded PSR agent unavailable ({type(exc).__name__}: {escape(str(exc))})[/yellow]"
        )
    report.meta["demo_seconds"] = round(time.time() - t0, 1)
    write_report(report, cfg.out_dir)  # again, with the meta added after the run
    console.print(f"report written to {cfg.out_dir} in {time.time() - t0:.0f} s")
    return report


__all__ = [
    "DEMO_OBJECT_ROWS",
    "ObjectRow",
    "demo_config",
    "demo_policies",
    "embedded_psr_value",
    "run_demo_benchmark",
]
