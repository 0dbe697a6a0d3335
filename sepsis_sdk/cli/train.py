"""``sepsis-sdk train ...``: the three PEFT stages for a local LLM policy."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from sepsis_sdk.cli._common import console, ensure_writable, esc, friendly_errors

app = typer.Typer(
    help="Fine-tune local LLMs (PEFT/LoRA) into SepsisAgent-style policies.", no_args_is_help=True
)


def _base(spec: str) -> Path:
    if spec in {"smollm2", "local/smollm2"}:
        from sepsis_sdk.llm import smollm2_path

        return smollm2_path()
    return Path(spec)


@app.command("llm")
def llm(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the stage adapters."),
    base: str = typer.Option(
        "smollm2", help="Base model: 'smollm2' (embedded default) or a HF model folder."
    ),
    cohort: str = typer.Option(
        "icu-sepsis", help="icu-sepsis | synthetic | a cohort or MIMIC file | a source name"
    ),
    patients: int = typer.Option(500, help="Patients to sample when --cohort is icu-sepsis or synthetic."),
    world_model: str = typer.Option("fake", help="A saved world model folder, or 'fake' (smoke runs only)."),
    stages: str = typer.Option(
        "dynamics,psr,rl", help="Comma-separated subset of dynamics, psr, rl (in order)."
    ),
    examples: int = typer.Option(256, help="Training examples (prompts for rl) per stage."),
    steps: int = typer.Option(30, help="Optimiser steps per stage."),
    lr: float = typer.Option(2e-4, help="Learning rate."),
    seed: int = typer.Option(0, help="Seed for data sampling and training."),
) -> None:
    """Run stage I (dynamics SFT), II (PSR behaviour cloning) and III (world-model GRPO) with LoRA."""
    from sepsis_sdk.sources import load
    from sepsis_sdk.training.llm_stages import StageConfig, run_pipeline

    with friendly_errors():
        ensure_writable(out, directory=True)  # before minutes of fine-tuning
        data = load(cohort, episodes=patients, seed=seed)
        if world_model == "fake":
            from sepsis_sdk.world_model import FakeWorldModel

            wm = FakeWorldModel(data.schema)
        else:
            from sepsis_sdk.world_model import load_world_model

            wm = load_world_model(world_model)
        results = run_pipeline(
            _base(base),
            data,
            wm,
            out,
            stages=tuple(s.strip() for s in stages.split(",") if s.strip()),
            n_examples=examples,
            config=StageConfig(max_steps=steps, learning_rate=lr, seed=seed),
            seed=seed,
        )
    for stage, info in results.items():
        console.print(
            f"{esc(stage):<9} steps={info['steps']:<4} loss {info['first_loss']} -> {info['last_loss']}"
            + (f"  mean reward {sum(info['rewards']) / len(info['rewards']):+.3f}" if info["rewards"] else "")
        )
    final = out / list(results)[-1]
    name = "smollm2" if base in {"smollm2", "local/smollm2"} else base
    console.print(esc(f"final adapter: {final}\nuse it as model string: local/{name}?adapter={final}"))
    (out / "summary.json").write_text(json.dumps(results, indent=2, default=str))
