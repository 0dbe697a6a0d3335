"""``sepsis-sdk world-model ...``: train and evaluate world models on any cohort."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from sepsis_sdk.cli._common import ensure_writable, esc, friendly_errors

app = typer.Typer(
    help="Train and evaluate clinical world models (any registered backend).", no_args_is_help=True
)


def _load(spec: str, episodes: int, seed: int) -> Any:
    from sepsis_sdk.sources import load

    return load(spec, episodes=episodes, seed=seed)


def _split(cohort: Any, split_seed: int) -> tuple[Any, Any]:
    from sepsis_sdk.training.world_model import split_cohort

    return split_cohort(cohort, split_seed)


def _settings(backend: str, flags: dict[str, Any], options: list[str]) -> dict[str, Any]:
    """The backend's settings from the tuning flags that are fields of its config, then ``--set k=v``."""
    from sepsis_sdk.errors import UserError
    from sepsis_sdk.world_model import get_backend

    config_class = getattr(get_backend(backend), "config_class", None)
    fields = set(getattr(config_class, "model_fields", {}))
    cfg = {k: v for k, v in flags.items() if k in fields}
    for item in options:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set needs KEY=VALUE, got {item!r}")
        try:
            cfg[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            cfg[key.strip()] = raw  # a bare word is a string
    return cfg


@app.command()
def train(
    cohort: str = typer.Option(
        "icu-sepsis", help="icu-sepsis | synthetic | a cohort or MIMIC file | a source name"
    ),
    backend: str = typer.Option("torch", help="a registered backend: torch | xgboost | neighbour | ..."),
    out: Path = typer.Option(..., help="directory to save the model into"),
    episodes: int = typer.Option(5000, help="patients to sample (icu-sepsis / synthetic)"),
    seed: int = typer.Option(0, help="cohort sampling seed"),
    split_seed: int = typer.Option(0, help="seed of the patient-level train/test split"),
    arch: str = typer.Option("mlp", help="torch: mlp | gru"),
    likelihood: str = typer.Option("laplace", help="torch: laplace | gaussian"),
    members: int = typer.Option(0, help="ensemble size (0 = backend default: torch 5, xgboost 3)"),
    window: int = typer.Option(0, help="history window (0 = backend default)"),
    epochs: int = typer.Option(
        40, help="torch: maximum epochs (early stopping on held-out training patients)"
    ),
    hidden: int = typer.Option(256, help="torch: hidden width"),
    n_estimators: int = typer.Option(200, help="xgboost: trees per regressor"),
    device: str = typer.Option("auto", help="torch: auto | cpu | cuda"),
    threads: int = typer.Option(
        1, help="CPU threads while training (1, as in the API: fastest on 2 shared cores; 0 = all cores)"
    ),
    model_seed: int = typer.Option(0, help="training seed"),
    settings: list[str] = typer.Option(
        [], "--set", help="any backend setting as KEY=VALUE (JSON value), e.g. --set dropout=0.1"
    ),
) -> None:
    """Train a world model on the training patients of a cohort and save it."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from sepsis_sdk.world_model import train_world_model

    console = Console()
    with friendly_errors():
        ensure_writable(out, directory=True)  # before the training, not after it
        data = _load(cohort, episodes, seed)
        flags: dict[str, Any] = {"seed": model_seed, "arch": arch, "likelihood": likelihood, "epochs": epochs,
                                 "hidden": hidden, "n_estimators": n_estimators}  # fmt: skip
        if members:
            flags["n_members"] = members
        if window:
            flags["window"] = window
        cfg = _settings(backend, flags, settings)
    tr, te = _split(data, split_seed)
    console.print(
        f"{esc(repr(data))}: training on {tr.n_patients} patients, {te.n_patients} held out for eval"
    )
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task(esc(f"training {backend}"), total=None)

        def progress(done: int, total: int, metrics: dict[str, float]) -> None:
            desc = esc(f"training {backend}" + "".join(f" {k}={v:.4f}" for k, v in metrics.items()))
            bar.update(task, completed=done, total=total, description=desc)

        model = train_world_model(
            tr,
            backend,
            progress=progress,
            device=None if device == "auto" else device,
            threads=threads or None,
            **cfg,
        )
    model.info["cohort"] = {"spec": cohort, "episodes": episodes, "seed": seed, "split_seed": split_seed}
    model.save(out)
    console.print(
        esc(f"saved {model!r} to {out} ({model.info.get('seconds')} s on {model.info.get('device')})")
    )


@app.command("eval")
def evaluate(
    model: Path = typer.Option(..., help="directory of a saved world model"),
    cohort: str = typer.Option(
        "icu-sepsis", help="icu-sepsis | synthetic | a cohort or MIMIC file | a source name"
    ),
    out: Path = typer.Option(..., help="directory for report.md, report.json and plots"),
    episodes: int = typer.Option(5000, help="patients to sample (must match training to reuse its split)"),
    seed: int = typer.Option(0, help="cohort sampling seed"),
    split_seed: int = typer.Option(0, help="seed of the patient-level split"),
    n_samples: int = typer.Option(16, help="samples per rollout"),
    rollout_starts: int = typer.Option(400, help="decision points for open-loop rollouts"),
    truth_states: int = typer.Option(200, help="ICU-Sepsis: decision points compared with exact truth"),
    device: str = typer.Option("auto", help="torch: auto | cpu | cuda"),
    threads: int = typer.Option(0, help="CPU threads (0 = library default)"),
) -> None:
    """Evaluate a saved model on the held-out patients of a cohort; write markdown + JSON + PNG."""
    from rich.console import Console

    from sepsis_sdk.errors import ModelError
    from sepsis_sdk.world_model import load_world_model
    from sepsis_sdk.world_model.evaluation import evaluate_world_model, write_report

    console = Console()
    here = {"spec": cohort, "episodes": episodes, "seed": seed, "split_seed": split_seed}
    with friendly_errors():
        ensure_writable(out, directory=True)
        wm = load_world_model(model, device=None if device == "auto" else device)
        data = _load(cohort, episodes, seed)
        if list(data.schema.names) != list(wm.schema.names):
            raise ModelError(
                f"{model}: the model was trained on schema {wm.schema.name!r} ({len(wm.schema)} features) but "
                f"cohort {cohort!r} has schema {data.schema.name!r} ({len(data.schema)} features)"
            )
    if (
        threads and wm.backend == "torch"
    ):  # torch's thread pool is process-wide (other backends: their config)
        import torch

        torch.set_num_threads(threads)
    trained_on = wm.info.get("cohort")
    if trained_on and trained_on != here:
        console.print(
            f"[yellow]note: model was trained on {esc(trained_on)}; evaluating on {esc(here)}[/yellow]"
        )
    tr, te = _split(data, split_seed)
    with console.status(esc(f"evaluating {wm!r} on {te.n_patients} held-out patients")):
        rep = evaluate_world_model(
            wm, tr, te, n_samples=n_samples, rollout_starts=rollout_starts, truth_states=truth_states
        )
    rep["command"] = {"model": str(model), **here}
    paths = write_report(rep, out)
    o = rep["one_step"]["overall"]
    console.print(
        f"one-step MAE (SD): model {o['model']['mae_norm']:.4f} | persistence {o['persistence']['mae_norm']:.4f} | "
        f"mean change {o['mean_change']['mae_norm']:.4f}; 90% coverage {rep['calibration']['coverage']:.3f}; "
        f"death AUROC {rep['termination']['death']['auroc']:.3f}"
    )
    console.print(f"report: {esc(paths['markdown'])}")
    console.print_json(json.dumps({k: str(v) for k, v in paths.items()}))
