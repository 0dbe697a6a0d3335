"""``sepsis-sdk evaluate-agent``: the true value of an LLM agent graph on ICU-Sepsis (exact or Monte Carlo)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import typer

from sepsis_sdk.cli.agent import CRITIQUE_HELP, DECIDE_HELP, REPORT_HELP

app = typer.Typer(add_completion=False)


def parse_states(spec: str | None) -> list[int] | None:
    """``"0-9,20,30-31"`` -> ``[0, ..., 9, 20, 30, 31]``; ``None`` or ``"all"`` -> all states."""
    from sepsis_sdk.errors import UserError

    if spec is None or spec.strip().lower() == "all":
        return None
    out: list[int] = []
    try:
        for part in spec.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                out.extend(range(lo, hi + 1))
            elif part:
                out.append(int(part))
    except ValueError as exc:
        raise UserError(f"--states: expected e.g. 0-9,20 (clinical states 0-712), got {spec!r}") from exc
    return out


@app.command("evaluate-agent")
def evaluate_agent(
    out: Path = typer.Option(..., "--out", help="output folder: agent_value.json (and cache/ by default)"),
    model: str = typer.Option(
        "local/smollm2",
        "--model",
        help="any LiteLLM model string, e.g. openai/gpt-4o-mini, hosted_vllm/<name>",
    ),
    graph: str = typer.Option("direct", "--graph", help="direct, psr or tool-calling"),
    markov: bool = typer.Option(
        True,
        "--markov/--monte-carlo",
        help="exact value from one decision per state (Markov), or Monte Carlo on whole histories",
    ),
    episodes: int = typer.Option(1000, "--episodes", min=1, help="Monte Carlo budget (simulated patients)"),
    states: str | None = typer.Option(
        None, "--states", help="Markov mode: only these states, e.g. 0-49 (default all 713)"
    ),
    complete_with: str | None = typer.Option(
        None, "--complete-with", help="policy for the states not swept (clinician, random, optimal, ...)"
    ),
    world_model: str | None = typer.Option(
        None,
        "--world-model",
        help="a saved world-model folder, 'fake' or 'none' (default: none for direct, else fake)",
    ),
    cache: Path | None = typer.Option(None, "--cache", help="decision cache folder (default OUT/cache)"),
    max_concurrency: int = typer.Option(4, "--max-concurrency", min=1, help="decisions in flight at once"),
    api_base: str | None = typer.Option(None, "--api-base", help="server URL, e.g. http://localhost:8000/v1"),
    api_key: str | None = typer.Option(None, "--api-key", help="API key (default: the provider's variable)"),
    temperature: float | None = typer.Option(None, "--temperature"),
    n_candidates: int = typer.Option(3, "--n-candidates", min=1, max=5),
    max_rounds: int | None = typer.Option(
        None, "--max-rounds", min=1, help="PSR rounds (default 3; 1 with --decide loglik)"
    ),
    horizon: int = typer.Option(6, "--horizon", min=1),
    seed: int = typer.Option(0, "--seed", help="graph seed and Monte Carlo seed"),
    deadline: float = typer.Option(300.0, "--deadline", min=0.001, help="seconds one decision may take"),
    decide: str = typer.Option("generate", "--decide", help=DECIDE_HELP),
    simulation_report: str = typer.Option("full", "--simulation-report", help=REPORT_HELP),
    refine_critique: bool = typer.Option(True, "--critique/--no-critique", help=CRITIQUE_HELP),
    executor: str = typer.Option(
        "local",
        "--executor",
        help="local (threads in this process) or ray (Markov mode: decisions on Ray actors)",
    ),
    ray_address: str | None = typer.Option(
        None,
        "--ray-address",
        help="with --executor ray: auto, host:6379 or ray://host:10001 (default: a local Ray)",
    ),
    actors: int | None = typer.Option(
        None,
        "--actors",
        min=1,
        help="with --executor ray: actors, one graph and model each (default: one per CPU)",
    ),
) -> None:
    """Score an agent graph by its true value on ICU-Sepsis, with the share of actions from model/guard/fallback.

    Markov mode (default) asks the graph once per clinical state and solves the policy exactly; the decisions
    are cached under --cache, so a rerun after a crash asks only for the states still missing; the decide mode
    is part of the cache key (generate and loglik decisions never share a line).

    --executor ray (Markov mode) makes the decisions on Ray actors, each building the same graph and
    model once, and then solves exactly as a local run would: same agent_value.json, same cache. With a
    hosted model, --max-concurrency is one bound for the whole cluster. History mode runs locally (exit 2
    with --executor ray). Exit codes: 0 ok; 2 bad input or configuration (also --decide loglik with --graph
    tool-calling or a hosted model, an unreachable --ray-address); 1 internal error.
    """
    from sepsis_sdk.cli._common import console, ensure_writable, err_console, esc, progress
    from sepsis_sdk.cli.agent import _load_world_model, _model, build_graph, resolved_max_rounds
    from sepsis_sdk.errors import UserError
    from sepsis_sdk.truth.agent import cache_key, markov_agent_value, monte_carlo_agent_value, state_histories

    ensure_writable(out, directory=True)  # before any model call
    cache_dir = cache if cache is not None else out / "cache"
    ensure_writable(cache_dir, directory=True)
    chosen = parse_states(states)
    if not markov and (chosen is not None or complete_with is not None):
        raise UserError("--states and --complete-with apply to --markov only")
    _check_executor(executor, ray_address, actors, markov)
    wm_spec = world_model or ("none" if graph == "direct" else "fake")
    wm = None if wm_spec == "none" else _load_world_model(wm_spec, state_histories([0])[0])
    if wm is None and graph != "direct":
        raise UserError(f"--graph {graph} needs a world model (--world-model fake or a saved folder)")
    chat = _model(model, api_base, api_key, temperature)
    g = build_graph(graph, chat, wm, n_candidates=n_candidates, max_rounds=max_rounds, horizon=horizon,
                    seed=seed, deadline_s=deadline, decide=decide, simulation_report=simulation_report,
                    refine_critique=refine_critique)  # fmt: skip
    options: dict[str, Any] = {"world_model": wm_spec, "deadline_s": deadline, "temperature": temperature}
    if decide != "generate":
        # Only a non-default mode is written: generate keys stay as they were, so existing caches still resume.
        options["decide"] = decide
    if graph != "direct":
        options.update(horizon=horizon, seed=seed)
    if graph == "psr":
        options.update(n_candidates=n_candidates, max_rounds=resolved_max_rounds(max_rounds, decide))
        if simulation_report != "full":  # written only when not the default: existing keys stay valid
            options["simulation_report"] = simulation_report
        if not refine_critique:  # likewise: a new key only for the non-default prompt
            options["refine_critique"] = False
    common = dict(model=model, graph_kind=graph, options=options, cache_dir=cache_dir,
                  max_concurrency=max_concurrency, config={"recursion_limit": 100})  # fmt: skip
    if markov:
        on_cluster: ClusterSweep | None = None
        with progress() as bar:
            task = bar.add_task(esc(f"{graph} / {model}"), total=None)
            step = lambda done, total: bar.update(task, completed=done, total=total)  # noqa: E731
            if executor == "ray":
                # The decisions are made on the actors and written to the cache here; the solve below then
                # reads every one of them from the cache, exactly as a rerun of a local sweep would.
                build = ActorGraph(make_chat=_model, chat_args=(model, api_base, api_key, temperature),
                                   wm_spec=wm_spec, graph=graph, graph_kwargs=dict(
                                       n_candidates=n_candidates, max_rounds=max_rounds, horizon=horizon,
                                       seed=seed, deadline_s=deadline, decide=decide,
                                       simulation_report=simulation_report,
                                       refine_critique=refine_critique))  # fmt: skip
                on_cluster = sweep_on_ray(
                    build, chosen, cache_dir=cache_dir, key=cache_key(
                        model=model, graph_kind=graph, options=options, mode="markov"),
                    address=ray_address, actors=actors, max_concurrency=max_concurrency,
                    hosted=not model.startswith("local/"), config=common["config"], progress=step,
                )  # fmt: skip
            result = markov_agent_value(
                g, states=chosen, complete_with=complete_with, progress=step, **common
            )
        if on_cluster is not None:
            result = replace(result, new_decisions=result.new_decisions + on_cluster.new)
            console.print(esc(on_cluster.describe()))
    else:
        with err_console.status(esc(f"{graph} / {model}: {episodes} simulated patients...")):
            result = monte_carlo_agent_value(g, episodes=episodes, seed=seed, **common)
    data = {"graph": graph, "model": model, **result.to_dict()}
    path = out / "agent_value.json"
    path.write_text(json.dumps(data, indent=2))
    if result.value is None:
        console.print(f"{esc(result.n_states)} states decided; no value (give --complete-with for the rest)")
    elif result.method == "exact":
        console.print(f"exact true value {result.value:.4f} ({esc(result.n_states)} states decided)")
    else:
        console.print(f"Monte Carlo true value {result.value:.4f} [{result.ci_low:.4f}, {result.ci_high:.4f}] "
                      f"({esc(result.n_episodes)} patients)")  # fmt: skip
    shares = ", ".join(f"{k} {v:.1%}" for k, v in result.shares.items())
    console.print(f"final actions from: {esc(shares)}; new decisions {result.new_decisions}")
    console.print(f"Written to {esc(path)}")


# ---------------------------------------------------------------------------------------------- on Ray
def _check_executor(executor: str, address: str | None, actors: int | None, markov: bool) -> None:
    """Bad executor options fail before any model call or cluster connection."""
    from sepsis_sdk.errors import UserError

    if executor not in ("local", "ray"):
        raise UserError(f"--executor must be 'local' or 'ray', got {executor!r}")
    if executor == "local":
        if address is not None or actors is not None:
            raise UserError("--ray-address and --actors need --executor ray")
        return
    if not markov:
        raise UserError(
            "--executor ray applies to --markov only: history mode (--monte-carlo) runs locally (the "
            "simulator drives the graph step by step in this process); use --executor local"
        )


@dataclass(frozen=True)
class ActorGraph:
    """Builds the sweep's graph inside a Ray actor: the same graph, model and world model as the driver's.

    Only the recipe travels (model string, options, how to make the chat model), not a built model: each
    actor loads its own (one ``local/`` model per actor) and, for a hosted model, wraps it in the run's
    cluster-wide :class:`~sepsis_sdk.scale.ConcurrencyLimit`.

    Attributes:
        make_chat: ``make_chat(*chat_args)`` returns the chat model (the CLI's ``LiteLLMChat`` maker).
        chat_args: its arguments (model string, API base, API key, temperature).
        wm_spec: ``"none"``, ``"fake"`` or a saved world-model folder (it must exist on every node).
        graph: the graph kind (``direct``, ``psr``, ``tool-calling``).
        graph_kwargs: the keyword arguments of :func:`sepsis_sdk.cli.agent.build_graph`.
        limit: the cluster-wide limit for a hosted model (None: no limit).
    """

    make_chat: Callable[..., Any]
    chat_args: tuple[Any, ...]
    wm_spec: str
    graph: str
    graph_kwargs: dict[str, Any] = field(default_factory=dict)
    limit: Any = None

    def __call__(self) -> Any:
        from sepsis_sdk.cli.agent import _load_world_model, build_graph
        from sepsis_sdk.truth.agent import state_histories

        wm = None if self.wm_spec == "none" else _load_world_model(self.wm_spec, state_histories([0])[0])
        chat = self.make_chat(*self.chat_args)
        if self.limit is not None:
            from sepsis_sdk.scale import limited

            chat = limited(chat, self.limit)
        return build_graph(self.graph, chat, wm, **self.graph_kwargs)


def _decide_chunk(
    max_concurrency: int, config: dict[str, Any] | None, graph: Any, chunk: list[Any]
) -> list[dict[str, Any]]:
    """On an actor: the records of one chunk of ``(item, history, extra)``, in order (no cache there)."""
    from sepsis_sdk.truth.agent import decide_all

    records, _ = decide_all(graph, chunk, None, max_concurrency=max_concurrency, config=config)
    return [records[item] for item, _, _ in chunk]


@dataclass(frozen=True)
class ClusterSweep:
    """What :func:`sweep_on_ray` did: new decisions, actors, and the peak of the hosted-model limit."""

    new: int
    actors: int
    limit: int | None = None
    peak: int | None = None

    def describe(self) -> str:
        """One line for the console."""
        if not self.actors:
            return "every decision was already in the cache: no Ray actor started"
        line = f"{self.new} decisions made on {self.actors} Ray actors"
        if self.limit is not None:
            line += f"; model calls in flight cluster-wide: at most {self.peak} (limit {self.limit})"
        return line


def sweep_on_ray(
    build: ActorGraph,
    states: list[int] | None,
    *,
    cache_dir: Path,
    key: dict[str, Any],
    address: str | None,
    actors: int | None,
    max_concurrency: int,
    hosted: bool,
    config: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ClusterSweep:
    """Make the Markov sweep's missing decisions on Ray actors and add them to the decision cache.

    Each actor builds the graph once (``build``) and decides chunks of states with ``max_concurrency``
    threads; for a hosted model (``hosted``) every call holds a permit of one cluster-wide
    :class:`~sepsis_sdk.scale.ConcurrencyLimit` of ``max_concurrency``. Records come back to this process,
    the cache's only writer, which appends each chunk as it arrives (the actors need no shared storage, and
    no two processes append to or reopen the file at once). A run killed midway resumes from what was
    written, locally or on Ray.

    Returns:
        A :class:`ClusterSweep` (``new``: decisions made on the actors).

    Raises:
        ClusterError: the cluster at ``address`` cannot be reached (the message names it).
    """
    from sepsis_sdk.scale import ConcurrencyLimit, RayActorExecutor, connect
    from sepsis_sdk.sources.icu_sepsis import N_CLINICAL
    from sepsis_sdk.truth.agent import DecisionCache, observation_item, state_histories

    idx = list(range(N_CLINICAL)) if states is None else list(states)
    histories = state_histories(idx)  # validates the states
    cache = DecisionCache(cache_dir, key)
    todo, seen = [], set()
    for s, h in zip(idx, histories, strict=True):
        item = observation_item(h)
        if item not in cache and item not in seen:
            seen.add(item)
            todo.append((item, h, {"state": s}))  # the same record a local sweep writes
    done, total = len(idx) - len(todo), len(idx)
    if progress is not None:
        progress(done, total)
    owned = connect(address)  # before any work: an unreachable address fails now, naming it
    limit = ConcurrencyLimit(max_concurrency) if hosted and todo else None
    ex = RayActorExecutor(replace(build, limit=limit), n_actors=actors, address=address)
    new, peak = 0, None
    try:
        n_actors = len(ex.actors()) if todo else 0
        size = 2 * max_concurrency  # each actor keeps its threads busy with one chunk
        chunks = [todo[i : i + size] for i in range(0, len(todo), size)]
        for records in ex.map(partial(_decide_chunk, max_concurrency, config), chunks):
            for rec in records:
                cache.add(rec)
            new += len(records)
            done += len(records)
            if progress is not None:
                progress(done, total)
        if limit is not None:
            peak = int(limit.stats()["peak"])
    finally:
        ex.close()
        if limit is not None:
            limit.kill()
        if owned:
            import ray

            ray.shutdown()
    return ClusterSweep(new=new, actors=n_actors, limit=max_concurrency if limit else None, peak=peak)
