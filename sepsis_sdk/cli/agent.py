"""``sepsis-sdk recommend``: one treatment recommendation from an agent graph, with its simulated candidates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(add_completion=False)


def _load_history(patient: Path, patient_id: str | None, t: int | None) -> Any:
    from sepsis_sdk.errors import UserError
    from sepsis_sdk.types import PatientHistory

    if not patient.exists():
        raise UserError(f"{patient}: no such file")
    if patient.suffix.lower() in (".parquet", ".pq"):
        from sepsis_sdk.cli.data import export_history
        from sepsis_sdk.cohort import Cohort

        cohort = Cohort.read_parquet(patient)
        try:  # what a clinician sees: the hidden ICU-Sepsis state stays behind, exactly as export-history
            return export_history(cohort, patient_id, t)
        except UserError as exc:
            raise UserError(f"{patient}: {exc}") from None
    try:
        data = json.loads(patient.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(
            f"{patient}: not JSON ({exc}); give a PatientHistory JSON or a cohort .parquet"
        ) from exc
    try:
        return PatientHistory.model_validate(data.get("history", data) if isinstance(data, dict) else data)
    except ValueError as exc:
        raise UserError(f"{patient}: not a PatientHistory: {exc}") from exc


def _load_world_model(spec: str, history: Any) -> Any:
    if spec == "fake":
        from sepsis_sdk.render import infer_schema, key_features
        from sepsis_sdk.world_model.fake import FakeWorldModel

        schema = infer_schema(history)
        if schema.name == "icu-sepsis":
            return FakeWorldModel()
        # Any other feature set: a toy response in clinical units (MAP +1 mmHg per fluid level and +2 per
        # vasopressor level per step, lactate -0.05 mmol/L per fluid level). A demo, not a model.
        roles = dict(key_features(schema))
        effects = {}
        if "MAP" in roles:
            effects[roles["MAP"]] = (1.0, 2.0)
        if "lactate" in roles:
            effects[roles["lactate"]] = (-0.05, 0.0)
        return FakeWorldModel(schema, effects=effects)
    from sepsis_sdk.world_model import load_world_model

    return load_world_model(spec)


def _model(model: str, api_base: str | None, api_key: str | None, temperature: float | None) -> Any:
    from sepsis_sdk.llm import LiteLLMChat

    kw: dict[str, Any] = {}
    if api_base:
        kw["api_base"] = api_base
    if api_key:
        kw["api_key"] = api_key
    if temperature is not None:
        kw["temperature"] = temperature
    return LiteLLMChat(model, **kw)


DECIDE_MODES = ("generate", "loglik")
"""``--decide``: the model writes its replies, or its log-likelihood chooses among fixed answer openings."""

DECIDE_HELP = (
    "generate: the model writes JSON replies; loglik: the model's own log-likelihood picks among the answer "
    "openings (direct and psr graphs, local/ models only; psr then runs one round)"
)
REPORT_HELP = (
    "psr graph: what the refine prompt shows of the simulation; full (outcomes, values, key-feature paths) "
    "or values (no paths: a prompt ~450 tokens shorter, faster for small local models); brief (one line per "
    "candidate: value and support); cautious (ranked by a planner's pessimistic score) needs a planned "
    "continuation, from Python only"
)
CRITIQUE_HELP = (
    "psr graph: whether the refine prompt includes the judge's critique (--no-critique: a shorter prompt; "
    "the critique is still traced; run a model with the prompt it was trained on)"
)

EXIT_FALLBACK = 3
"""``recommend --strict`` exits with this code when the fallback acted instead of the model (the
recommendation is still printed and the trace still written). Other codes follow the convention of every
command: 0 ok, 2 bad input or configuration (a patient that does not fit the world model, rejected
credentials, no server, a missing extra), 1 internal error."""


def build_graph(
    graph: str,
    model: Any,
    wm: Any,
    *,
    n_candidates: int,
    max_rounds: int | None,
    horizon: int,
    seed: int,
    deadline_s: float | None = None,
    decide: str = "generate",
    simulation_report: str = "full",
    refine_critique: bool = True,
) -> Any:
    """The graph the CLI runs (``psr``, ``direct`` or ``tool-calling``).

    ``decide`` is ``"generate"`` or ``"loglik"`` (direct and PSR graphs, in-process ``local/`` models only:
    the model's log-likelihood chooses among fixed answer openings); ``max_rounds`` ``None`` is the graph's
    default (3 rounds, 1 with ``loglik``). ``simulation_report`` and ``refine_critique`` are the PSR graph's
    (``"full"``, ``"values"`` or ``"brief"``; see :class:`~sepsis_sdk.graphs.PSROptions`).

    Raises:
        UserError: an unknown graph or decide mode, ``loglik`` with the tool-calling graph or a hosted model.
    """
    from sepsis_sdk.errors import UserError
    from sepsis_sdk.graphs import build_direct_graph, build_psr_graph, build_tool_calling_graph

    if decide not in DECIDE_MODES:
        raise UserError(f"--decide must be one of {', '.join(DECIDE_MODES)}, got {decide!r}")
    tool_calling = graph in ("tool-calling", "tool_calling", "sepsisagent")
    if decide == "loglik" and tool_calling:
        raise UserError(
            "--decide loglik needs --graph direct or psr: the tool-calling protocol's replies are tool calls "
            "over a chat API, not a fixed set of answers to score"
        )
    name = getattr(model, "model", None)
    if decide == "loglik" and isinstance(name, str) and not name.startswith("local/"):
        raise UserError(
            f"--decide loglik needs an in-process model (--model local/...), got {name!r}: a hosted chat API "
            "does not return the log-likelihood of arbitrary answers"
        )
    if simulation_report != "full" and graph != "psr":
        raise UserError(f"--simulation-report applies to --graph psr only, got --graph {graph}")
    if not refine_critique and graph != "psr":
        raise UserError(f"--no-critique applies to --graph psr only, got --graph {graph}")
    if simulation_report == "cautious":  # refused before any decision, not at the first simulate call
        raise UserError(
            "--simulation-report cautious needs a planner's planned continuation, which the CLI does not "
            "build; use sepsis_sdk.training.embedded.embedded_psr_graph() (the measured PSR agent) or "
            "benchmarks/experiments/agent_ablation.py --continuation planned --simulation-report cautious"
        )
    if graph == "psr":
        return build_psr_graph(
            model,
            world_model=wm,
            n_candidates=n_candidates,
            max_rounds=max_rounds,
            horizon=horizon,
            seed=seed,
            deadline_s=deadline_s,
            decide=decide,
            simulation_report=simulation_report,
            refine_critique=refine_critique,
        )
    if graph == "direct":
        return build_direct_graph(model, world_model=wm, deadline_s=deadline_s, decide=decide)
    if tool_calling:
        return build_tool_calling_graph(
            model, world_model=wm, horizon=horizon, seed=seed, deadline_s=deadline_s
        )
    raise UserError(f"unknown graph {graph!r}; choose psr, direct or tool-calling")


def resolved_max_rounds(max_rounds: int | None, decide: str) -> int:
    """The rounds a PSR graph runs: the given number, else 3 (1 with ``--decide loglik``: one round)."""
    if max_rounds is not None:
        return max_rounds
    return 1 if decide == "loglik" else 3


def _end_of(path: dict[str, Any]) -> str:
    return next((d for d in reversed(path["display"]) if d != "ended"), "ended")


def _candidate_table(trace: dict[str, Any], prescribed: dict[str, Any] | None) -> Any:
    """The simulated candidates; the prescribed action gets its own row when the guard replaced the
    model's choice (or the fallback chose) with an action that was not among them."""
    from rich.table import Table

    from sepsis_sdk.cli._common import esc

    final = trace["final"]
    report = (trace.get("simulations") or [{}])[-1].get("report") or {}
    rows = list(report.get("candidates") or [])
    table = Table(
        title=esc(
            f"Simulated candidates (horizon {report.get('horizon')} x 4 h, {report.get('n_samples')} samples)"
        )
    )
    for col in ("fluid", "vaso", "P(death)", "P(discharge)", "support", "uncertainty"):
        table.add_column(col, justify="right")
    roles = [p["role"] for p in (rows or [prescribed or {}])[0].get("paths", [])][:4]
    for r in roles:
        table.add_column(esc(f"{r} (end)"), justify="right")
    if prescribed is not None and all(c["action"] != prescribed["action"] for c in rows):
        rows.append({**prescribed, "_label": f" * ({final.get('source')})"})
    for c in rows:
        mark = c.get("_label") or (" *" if c["action"] == final["action"] else "")
        ends = [_end_of(p) for p in c.get("paths", [])[: len(roles)]]
        table.add_row(esc(f"{c['fluid']}{mark}"), esc(c["vaso"]), f"{c['p_death']:.3f}",
                      f"{c['p_discharge']:.3f}", f"{c['support']:.2f}", f"{c['uncertainty']:.2f}",
                      *map(esc, ends))  # fmt: skip
    return table


def _prescribed_outcome(trace: dict[str, Any], wm: Any, history: Any, horizon: int, seed: int) -> Any:
    """The prescribed action's simulated outcome when it is not among the simulated candidates."""
    sims = trace.get("simulations") or []
    report = (sims[-1].get("report") or {}) if sims else {}
    action = trace["final"]["action"]
    if not sims or any(c["action"] == action for c in report.get("candidates") or []):
        return None
    from sepsis_sdk.tools import simulate_actions

    out = simulate_actions(wm, history, [action], horizon=int(report.get("horizon") or horizon),
                           n_samples=int(report.get("n_samples") or 8), seed=seed)  # fmt: skip
    return out.candidates[0].to_dict()


def render(trace: dict[str, Any], console: Any, prescribed: dict[str, Any] | None = None) -> None:
    """Print a trace: the recommendation, the candidates' simulated outcomes, the rationale, the guard.

    Every dynamic string is escaped (a reason such as ``[fluid 0, vaso 0] replaced by ...`` is text, not
    rich markup). When the fallback acted, a banner says so before anything else.
    """
    from rich.panel import Panel

    from sepsis_sdk.actions import Action
    from sepsis_sdk.cli._common import esc

    final = trace["final"]
    a = Action.from_index(final["action"])
    if final.get("source") == "fallback":
        reason = trace.get("fallback_reason") or {}
        console.print(Panel(
            esc(f"The model did not decide: the fallback policy {final.get('fallback')} chose this action "
                f"({reason.get('kind') or 'failure'}: {reason.get('detail') or '; '.join(final.get('reasons', []))})."),
            title="FALLBACK ACTED", border_style="bold yellow", expand=False,
        ))  # fmt: skip
    console.print(f"[bold]Recommendation[/bold] for {esc(trace.get('patient_id'))} at t={esc(trace.get('t'))}: "
                  f"fluid {a.fluid}, vasopressor {a.vaso}  ({esc(a.describe())})"
                  + ("  [bold yellow](fallback, not the model)[/bold yellow]" if final.get("source") == "fallback" else ""))  # fmt: skip
    if trace.get("simulations"):
        console.print(_candidate_table(trace, prescribed))
    else:
        console.print("No simulation was run.")
    console.print(f"[bold]Rationale[/bold]: {esc(final.get('rationale') or '(none given)')}")
    if final.get("source") == "fallback":
        console.print(
            f"[yellow]Fallback[/yellow] ({esc(final.get('fallback'))}): "
            + esc("; ".join(final.get("reasons", [])))
        )
    elif final.get("overridden"):
        console.print("[red]Guard override[/red]: " + esc("; ".join(final.get("reasons", []))))
    else:
        console.print("Guard: no override.")
    usage = trace.get("usage") or {}
    console.print(f"LLM calls {int(usage.get('llm_calls', 0))}, tokens "
                  f"{int(usage.get('prompt_tokens', 0) + usage.get('completion_tokens', 0))}, "
                  f"latency {trace.get('latency_s') or 0:.2f} s")  # fmt: skip


@app.command()
def recommend(
    patient: Path = typer.Option(
        ..., "--patient", help="a PatientHistory JSON, or a cohort .parquet (with --patient-id)"
    ),
    model: str = typer.Option(
        "local/smollm2",
        "--model",
        help="any LiteLLM model string, e.g. openai/gpt-4o-mini, hosted_vllm/<name>",
    ),
    world_model: str = typer.Option("fake", "--world-model", help="a saved world-model directory, or 'fake'"),
    graph: str = typer.Option(
        "psr", "--graph", help="psr, direct or tool-calling (the SepsisAgent protocol)"
    ),
    patient_id: str | None = typer.Option(
        None, "--patient-id", help="patient in a cohort parquet (default: the first)"
    ),
    t: int | None = typer.Option(
        None, "--t", help="decision step in the patient's episode (default: the last)"
    ),
    trace: Path | None = typer.Option(None, "--trace", help="write the run's JSON trace here"),
    api_base: str | None = typer.Option(
        None, "--api-base", help="server URL, e.g. http://localhost:8000/v1 for vLLM"
    ),
    api_key: str | None = typer.Option(
        None, "--api-key", help="API key (default: the provider's environment variable)"
    ),
    temperature: float | None = typer.Option(None, "--temperature"),
    n_candidates: int = typer.Option(3, "--n-candidates", min=1, max=5),
    max_rounds: int | None = typer.Option(
        None, "--max-rounds", min=1, help="PSR rounds (default 3; 1 with --decide loglik)"
    ),
    horizon: int = typer.Option(6, "--horizon", min=1),
    seed: int = typer.Option(0, "--seed"),
    deadline: float = typer.Option(
        300.0, "--deadline", min=0.001, help="seconds the whole decision may take; then the fallback acts"
    ),
    decide: str = typer.Option("generate", "--decide", help=DECIDE_HELP),
    simulation_report: str = typer.Option("full", "--simulation-report", help=REPORT_HELP),
    refine_critique: bool = typer.Option(True, "--critique/--no-critique", help=CRITIQUE_HELP),
    strict: bool = typer.Option(
        False,
        "--strict",
        help=f"exit with code {EXIT_FALLBACK} when the fallback acted instead of the model "
        "(transport failure, timeout, deadline, invalid replies)",
    ),
) -> None:
    """Recommend a treatment for one patient with an agent graph, show the simulated candidates and the guard.

    Exit codes: 0 ok; 2 bad input or configuration (the patient does not fit the world model, rejected
    credentials, no server, a missing extra); 3 with --strict when the fallback acted; 1 internal error.
    """
    from rich.console import Console

    from sepsis_sdk.cli._common import ensure_writable, esc
    from sepsis_sdk.graphs import build_trace, dump_trace

    console = Console()
    if trace is not None:
        ensure_writable(trace)  # before paying for the agent call, not after it
    history = _load_history(patient, patient_id, t)
    wm = _load_world_model(world_model, history)
    chat = _model(model, api_base, api_key, temperature)
    g = build_graph(graph, chat, wm, n_candidates=n_candidates, max_rounds=max_rounds, horizon=horizon,
                    seed=seed, deadline_s=deadline, decide=decide, simulation_report=simulation_report,
                    refine_critique=refine_critique)  # fmt: skip
    with console.status(esc(f"{graph} agent with {model} is deciding...")):
        state = g.invoke({"history": history}, {"recursion_limit": 100})
    tr = build_trace(state)
    render(tr, console, _prescribed_outcome(tr, wm, history, horizon, seed))
    if trace is not None:
        dump_trace(tr, str(trace))
        console.print(f"Trace written to {esc(trace)}")
    if strict and tr["final"].get("source") == "fallback":
        raise typer.Exit(code=EXIT_FALLBACK)
