"""``sepsis-sdk evaluate-agent``: the true value of an LLM agent graph on ICU-Sepsis (exact or Monte Carlo)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from sepsis_sdk.cli.agent import DECIDE_HELP

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
) -> None:
    """Score an agent graph by its true value on ICU-Sepsis, with the share of actions from model/guard/fallback.

    Markov mode (default) asks the graph once per clinical state and solves the policy exactly; the decisions
    are cached under --cache, so a rerun after a crash asks only for the states still missing; the decide mode
    is part of the cache key (generate and loglik decisions never share a line). Exit codes: 0 ok; 2 bad input
    or configuration (also --decide loglik with --graph tool-calling or a hosted model); 1 internal error.
    """
    from sepsis_sdk.cli._common import console, ensure_writable, err_console, esc, progress
    from sepsis_sdk.cli.agent import _load_world_model, _model, build_graph, resolved_max_rounds
    from sepsis_sdk.errors import UserError
    from sepsis_sdk.truth.agent import markov_agent_value, monte_carlo_agent_value, state_histories

    ensure_writable(out, directory=True)  # before any model call
    cache_dir = cache if cache is not None else out / "cache"
    ensure_writable(cache_dir, directory=True)
    chosen = parse_states(states)
    if not markov and (chosen is not None or complete_with is not None):
        raise UserError("--states and --complete-with apply to --markov only")
    wm_spec = world_model or ("none" if graph == "direct" else "fake")
    wm = None if wm_spec == "none" else _load_world_model(wm_spec, state_histories([0])[0])
    if wm is None and graph != "direct":
        raise UserError(f"--graph {graph} needs a world model (--world-model fake or a saved folder)")
    chat = _model(model, api_base, api_key, temperature)
    g = build_graph(graph, chat, wm, n_candidates=n_candidates, max_rounds=max_rounds, horizon=horizon,
                    seed=seed, deadline_s=deadline, decide=decide)  # fmt: skip
    options: dict[str, Any] = {"world_model": wm_spec, "deadline_s": deadline, "temperature": temperature}
    if decide != "generate":
        # Only a non-default mode is written: generate keys stay as they were, so existing caches still resume.
        options["decide"] = decide
    if graph != "direct":
        options.update(horizon=horizon, seed=seed)
    if graph == "psr":
        options.update(n_candidates=n_candidates, max_rounds=resolved_max_rounds(max_rounds, decide))
    common = dict(model=model, graph_kind=graph, options=options, cache_dir=cache_dir,
                  max_concurrency=max_concurrency, config={"recursion_limit": 100})  # fmt: skip
    if markov:
        with progress() as bar:
            task = bar.add_task(esc(f"{graph} / {model}"), total=None)
            result = markov_agent_value(
                g, states=chosen, complete_with=complete_with,
                progress=lambda done, total: bar.update(task, completed=done, total=total), **common,
            )  # fmt: skip
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
