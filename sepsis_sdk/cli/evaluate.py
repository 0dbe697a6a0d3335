"""``sepsis-sdk evaluate`` (the benchmark report) and ``sepsis-sdk safety-rules`` (the rule table)."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="Evaluation: the benchmark report and the safety rules.")


def _default(value: object) -> str:
    # The flags default to None so that a --config file's value is kept; say what applies without one.
    return f"{value}, or the --config file's"


@app.command("evaluate")
def evaluate(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML file with an EvaluationConfig."),
    cohort: Optional[str] = typer.Option(
        None,
        help="A cohort source: 'icu-sepsis' (sampled), 'synthetic', a registered name or a cohort file.",
        show_default=_default("icu-sepsis"),
    ),
    episodes: Optional[int] = typer.Option(
        None, help="Patients to generate (icu-sepsis, synthetic).", show_default=_default(5000)
    ),
    policies: Optional[str] = typer.Option(
        None,
        help="Comma-separated policies; baselines: clinician, random, tabular, bc, dqn, double_dqn, bcq, "
        "cql; built in: optimal, no_treatment.",
        show_default=_default("clinician,random"),
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Output directory (resumable).", show_default=_default("evaluation-report")
    ),
    seed: Optional[int] = typer.Option(
        None, help="Seed of cohort sampling, split, training and bootstrap.", show_default=_default(0)
    ),
    n_bootstrap: Optional[int] = typer.Option(
        None, help="Bootstrap resamples (OPE and rates).", show_default=_default(500)
    ),
    offline_rl_steps: Optional[int] = typer.Option(
        None, help="Gradient steps per offline-RL baseline.", show_default=_default(5000)
    ),
    executor: Optional[str] = typer.Option(
        None, help="'process' (a local pool), 'serial' or 'ray'.", show_default=_default("process")
    ),
    workers: Optional[int] = typer.Option(
        None, help="Processes of the local pool.", show_default=_default("the CPU count")
    ),
    ray_address: Optional[str] = typer.Option(
        None,
        "--ray-address",
        help="The Ray cluster for --executor ray: 'auto', 'host:6379' or "
        "'ray://host:10001' (default: $RAY_ADDRESS, else a local Ray).",
    ),
    fan_out: Optional[str] = typer.Option(
        None,
        "--fan-out",
        help="How work spreads over the executor: 'policies' (one task per policy), 'chunks' (patient "
        "chunks of one policy at a time) or 'auto' (policies on Ray when they fill the cluster).",
        show_default=_default("auto"),
    ),
    fresh: bool = typer.Option(False, help="Discard a previous run in the output directory."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Score policies on one cohort: OPE (DR/WIS/WPDIS), true value, adherence, hazards, agreement.

    Flags override the config file. Rerunning into the same --out resumes: finished policies are kept
    (unless the config or the cohort file's content changed).
    """
    from sepsis_sdk.cli._common import console, ensure_writable, esc
    from sepsis_sdk.errors import UserError
    from sepsis_sdk.evaluation.config import EvaluationConfig, PolicyConfig
    from sepsis_sdk.evaluation.runner import run_evaluation

    cfg = EvaluationConfig.from_yaml(config) if config else EvaluationConfig()
    upd: dict = {}
    coh = cfg.cohort.model_dump()
    if cohort is not None:  # a registered source name or a file: sources.load tells them apart
        coh.update(source=cohort, path=None)
    if episodes is not None:
        coh["n_episodes"] = episodes
    if seed is not None:
        coh["seed"] = seed
        upd["seed"] = seed
    upd["cohort"] = coh
    if policies:
        pcs = []
        for name in [p.strip() for p in policies.split(",") if p.strip()]:
            pcs.append(
                PolicyConfig(name=name, kind="builtin")
                if name in ("optimal", "no_treatment")
                else PolicyConfig(name=name)
            )
        upd["policies"] = pcs
    if out is not None:
        upd["out_dir"] = str(out)
    if n_bootstrap is not None:
        upd["ope"] = {**cfg.ope.model_dump(), "n_bootstrap": n_bootstrap}
        upd["safety"] = {**cfg.safety.model_dump(), "n_bootstrap": n_bootstrap}
    if offline_rl_steps is not None:
        upd["offline_rl_steps"] = offline_rl_steps
    if executor is not None:
        upd["executor"] = executor
    if workers is not None:
        upd["workers"] = workers
    if fan_out is not None:
        upd["fan_out"] = fan_out
    cfg = EvaluationConfig.model_validate({**cfg.model_dump(), **upd})
    # Before any policy is trained: a read-only, full or misnamed output fails now, not after an hour.
    ensure_writable(cfg.out_dir, directory=True)
    try:
        report = run_evaluation(
            cfg,
            executor=_ray_executor(cfg, ray_address),
            progress=progress,
            fresh=fresh,
            world_model_loader=_world_model_loader(cfg.model_based.world_model),
        )
    except OSError as exc:
        # e.g. the disk filled up while a plot was written (Pillow then chains an AttributeError on its
        # '_idat' writer): finished policies are saved under policies/ and a rerun resumes from them.
        # Other OS errors (a refused connection to a cluster, ...) keep their own message.
        if isinstance(exc, ConnectionError) or exc.errno not in _WRITE_ERRNOS:
            raise
        raise UserError(
            f"{cfg.out_dir}: cannot write the evaluation outputs: {exc.strerror or exc}; finished policies "
            "are kept and a rerun into the same --out resumes"
        ) from exc
    console.print(esc(Path(report.files["markdown"]).read_text().split("## Definitions")[0]))
    for k, v in report.files.items():
        console.print(f"{esc(k)}: {esc(v)}")


_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG}


def _ray_executor(cfg, address: str | None):
    """The Ray executor, connected before any work so a wrong address fails now (None: not on Ray)."""
    if address is None and cfg.executor != "ray":
        return None
    from sepsis_sdk.evaluation.executor import make_executor

    ex = make_executor(cfg.executor, workers=cfg.workers, address=address)
    ex.connect()  # ClusterError naming the address (exit code 2) instead of a failure after training
    return ex


def _world_model_loader(path: str | None):
    """Loads the config's saved world model when the model-based protocol first needs it."""
    if not path:
        return None

    def load():
        from sepsis_sdk.world_model import load_world_model

        return load_world_model(path)

    return load


@app.command("safety-rules")
def safety_rules(
    rules: Optional[Path] = typer.Option(None, help="A rule YAML file (default: the packaged rules)."),
) -> None:
    """List the guideline and hazard rules with their conditions and sources."""
    from rich.table import Table

    from sepsis_sdk.cli._common import console, esc
    from sepsis_sdk.safety import load_rules

    rs = load_rules(rules)  # a bad file raises DataError: one line and exit 2 (the CLI's convention)
    t = Table(title=f"rules: {esc(rs.source)}")
    for col in ("id", "kind", "when", "violation", "features", "source"):
        t.add_column(col)
    for r in rs:
        t.add_row(*(esc(v) for v in (r.id, r.kind, r.when, r.violation, ", ".join(r.features), r.source)))
    console.print(t)
    for name, d in rs.definitions.items():
        console.print(f"[bold]{esc(name)}[/bold]: {esc(d.meaning)} ({esc(', '.join(d.rules))})")
