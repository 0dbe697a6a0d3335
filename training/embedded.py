"""The embedded agents' measured configurations, one function each: the graph and the sweep options.

``local/sepsisagent-135m-psr`` decides in the propose-simulate-refine graph around a world model and a
continuation that are not in the adapter: the neighbour model fitted on the ICU-Sepsis training cohort
(20,000 episodes, seed 0) and the stage-II teacher's planned care. :func:`psr_sweep_graph` builds exactly
what ``benchmarks/experiments/agent_ablation.py --graph psr`` sweeps, with the options that key its
decision cache, so a user gets the measured agent and the shipped decision record
(``sepsis_sdk/models/sepsisagent_135m_psr/markov_decisions.jsonl``) stays checkable against it.
:func:`embedded_psr_graph` is that graph with the shipped settings. Nothing here reads hidden truth: the
world model learns from the sampled cohort and the continuation plans inside it.
"""

from __future__ import annotations

from typing import Any

from sepsis_sdk.errors import UserError

PSR_AGENT = "local/sepsisagent-135m-psr"
"""The embedded PSR agent model (SmolLM2-135M + the adapter of the ``sepsisagent-135m-psr-brief`` recipe)."""
EMBEDDED_PSR_SETTINGS: dict[str, Any] = {
    "n_candidates": 5,
    "continuation": "planned",
    "simulation_report": "brief",
    "refine_critique": False,
}
"""The settings the shipped PSR agent was measured with (docs/training.md)."""
CONTINUATIONS = ("usual", "planned")


def teacher_world(*, episodes: int = 20000, seed: int = 0, cohort: Any = None) -> tuple[Any, Any]:
    """The stage-II teacher's world: the neighbour world model (k=1, no prior) and the clinicians' fitted
    behaviour (the continuation), both from one ICU-Sepsis training cohort.

    :func:`psr_sweep_graph` simulates in it, and ``benchmarks/experiments/teacher_table.py`` plans in it
    (``Teacher(world_model, seed=seed, continuation=continuation)``), so the agent and the teacher it is
    compared with see the same model.

    Args:
        episodes / seed: the cohort to sample (cached after the first load).
        cohort: a cohort already loaded with these ``episodes`` and ``seed`` (saves the load).

    Returns:
        ``(world_model, continuation)``.
    """
    from sepsis_sdk.sources import load
    from sepsis_sdk.world_model import NeighbourWorldModel
    from sepsis_sdk.world_model.value import fit_continuation

    cohort = cohort if cohort is not None else load("icu-sepsis", episodes=episodes, seed=seed)
    return NeighbourWorldModel.fit(cohort, k=1, prior_count=0), fit_continuation(cohort, seed=seed)


def psr_sweep_graph(
    model: Any,
    *,
    episodes: int = 20000,
    seed: int = 0,
    n_candidates: int = 3,
    continuation: str = "usual",
    simulation_report: str = "full",
    refine_critique: bool = True,
    cohort: Any = None,
) -> tuple[Any, dict[str, Any]]:
    """The PSR graph (``decide="loglik"``, horizon 3, 4 samples) in the teacher's world, and its sweep options.

    Args:
        model: a model string or chat model (``local/...`` for log-likelihood decisions).
        episodes / seed: the ICU-Sepsis training cohort the neighbour world model (k=1) is fitted on.
        n_candidates: K, candidates per propose turn.
        continuation: how care continues in the simulated values: ``"usual"`` (the clinicians' fitted
            behaviour) or ``"planned"`` (the teacher planner's converged plan, which also offers cautious
            values).
        simulation_report: ``PSROptions.simulation_report`` (``"cautious"`` needs ``"planned"``;
            ``"brief"`` shows cautious values with ``"planned"``).
        refine_critique: ``PSROptions.refine_critique`` (whether the refine prompt includes the critique).
        cohort: a cohort already loaded with these ``episodes`` and ``seed`` (saves the load).

    Returns:
        ``(graph, options)``: ``options`` is the dict the decision cache is keyed by (pass it to
        :func:`~sepsis_sdk.truth.agent.markov_agent_value` with ``graph_kind="psr_loglik"``).

    Raises:
        UserError: an unknown continuation, or a cautious report on usual care (which has no cautious values).
    """
    if continuation not in CONTINUATIONS:
        raise UserError(f"continuation must be one of {CONTINUATIONS}, got {continuation!r}")
    if simulation_report == "cautious" and continuation != "planned":
        raise UserError(
            "simulation_report='cautious' needs continuation='planned': usual care has no cautious values"
        )
    from sepsis_sdk.graphs import build_psr_graph
    from sepsis_sdk.training.llm_data import Teacher

    wm, cont = teacher_world(episodes=episodes, seed=seed, cohort=cohort)
    if continuation == "planned":  # the stage-II teacher's planner (the settings it was trained with)
        cont = Teacher(wm, seed=seed, continuation=cont, simulate_with="planned").simulation_continuation()
    graph = build_psr_graph(model, world_model=wm, continuation=cont, decide="loglik", n_candidates=n_candidates,
                            horizon=3, n_samples=4, seed=seed, simulation_report=simulation_report,
                            refine_critique=refine_critique)  # fmt: skip
    options: dict[str, Any] = {"decide": "loglik", "n_candidates": n_candidates, "horizon": 3, "n_samples": 4,
                               "seed": seed, "world_model": f"neighbour-k1-icu{episodes}-s{seed}"}  # fmt: skip
    if simulation_report != "full":  # the default is left out: earlier sweeps' keys stay valid
        options["simulation_report"] = simulation_report
    if not refine_critique:  # the default is left out, as above
        options["refine_critique"] = False
    if continuation != "usual":  # the report (its "planned" wording and best line) changed: a new key
        options.update(continuation=continuation, report="best-line")
    return graph, options


def embedded_psr_graph(model: Any = PSR_AGENT, **overrides: Any) -> tuple[Any, dict[str, Any]]:
    """:func:`psr_sweep_graph` with the shipped PSR agent's settings (:data:`EMBEDDED_PSR_SETTINGS`).

    About a minute to fit the world model and plan in it (the cohort of 20,000 episodes is sampled once
    and cached); then about 4 s per decision on one CPU thread (the brief report without the critique:
    BENCHMARKS.md).
    """
    return psr_sweep_graph(model, **{**EMBEDDED_PSR_SETTINGS, **overrides})


__all__ = ["EMBEDDED_PSR_SETTINGS", "PSR_AGENT", "embedded_psr_graph", "psr_sweep_graph", "teacher_world"]
