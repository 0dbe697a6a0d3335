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
    recipe: str | None = typer.Option(
        None,
        help="A named recipe that sets the cohort, world model, data sizes and every stage's settings "
        "(sepsisagent-135m: the shipped embedded agent). Not combinable with the size options.",
    ),
    base: str = typer.Option(
        "smollm2", help="Base model: 'smollm2' (embedded default) or a HF model folder."
    ),
    cohort: str = typer.Option(
        "icu-sepsis", help="icu-sepsis | synthetic | a cohort or MIMIC file | a source name"
    ),
    patients: int | None = typer.Option(
        None, help="Patients to sample when --cohort is icu-sepsis or synthetic (default 500)."
    ),
    world_model: str = typer.Option(
        "neighbour",
        help="The teacher's world model: 'neighbour' (fitted on the cohort; plans to convergence), a saved "
        "world model folder, or 'fake' (smoke runs only).",
    ),
    stages: str = typer.Option(
        "dynamics,psr,rl", help="Comma-separated subset of dynamics, psr, rl (in order)."
    ),
    examples: int | None = typer.Option(
        None, help="Training examples (prompts for rl) per stage (default 256)."
    ),
    steps: int | None = typer.Option(None, help="Optimiser steps per stage (default 30)."),
    lr: float | None = typer.Option(None, help="Learning rate (default 2e-4)."),
    seed: int | None = typer.Option(None, help="Seed for data sampling and training (default 0)."),
) -> None:
    """Run stage I (dynamics SFT), II (PSR behaviour cloning) and III (world-model GRPO) with LoRA."""
    from sepsis_sdk.errors import UserError
    from sepsis_sdk.sources import load
    from sepsis_sdk.training.llm_stages import PipelinePlan, StageConfig, get_recipe, run_pipeline

    with friendly_errors():
        plan = configs = None
        if recipe is not None:
            given = [n for n, v in (("--examples", examples), ("--steps", steps), ("--lr", lr),
                                    ("--patients", patients), ("--seed", seed)) if v is not None]  # fmt: skip
            if given:
                raise UserError(f"--recipe sets the data sizes and settings itself; drop {', '.join(given)}")
            r = get_recipe(recipe)
            patients, seed, plan, configs = r.episodes, r.cohort_seed, r.plan, r.configs
        seed = 0 if seed is None else seed
        ensure_writable(out, directory=True)  # before minutes of fine-tuning
        data = load(cohort, episodes=500 if patients is None else patients, seed=seed)
        if world_model == "fake":
            from sepsis_sdk.world_model import FakeWorldModel

            wm = FakeWorldModel(data.schema)
        elif world_model == "neighbour":
            from sepsis_sdk.world_model import NeighbourWorldModel

            wm = NeighbourWorldModel.fit(data, k=1, prior_count=0)
        else:
            from sepsis_sdk.world_model import load_world_model

            wm = load_world_model(world_model)
        if plan is None:
            plan = PipelinePlan.uniform(256 if examples is None else examples)
            cfg = StageConfig(max_steps=30 if steps is None else steps,
                              learning_rate=2e-4 if lr is None else lr, seed=seed)  # fmt: skip
            configs = {"dynamics": cfg, "psr": cfg, "rl": cfg}
        results = run_pipeline(
            _base(base),
            data,
            wm,
            out,
            stages=tuple(s.strip() for s in stages.split(",") if s.strip()),
            plan=plan,
            configs=configs,
            seed=seed,
        )
    for stage, info in results.items():
        console.print(
            f"{esc(stage):<9} steps={info['steps']:<4} loss {info['first_loss']} -> {info['last_loss']}"
            + (f"  mean reward {sum(info['rewards']) / len(info['rewards']):+.3f}" if info["rewards"] else "")
            + f"  ({info['wall_s']:.0f} s)"
        )
    final = out / list(results)[-1]
    name = "smollm2" if base in {"smollm2", "local/smollm2"} else base
    console.print(esc(f"final adapter: {final}\nuse it as model string: local/{name}?adapter={final}"))
    (out / "summary.json").write_text(json.dumps(results, indent=2, default=str))


@app.command("export-adapter")
def export_adapter_cmd(
    src: Path = typer.Argument(..., help="A trained stage folder (e.g. runs/sepsisagent-135m/rl)."),
    dest: Path = typer.Argument(..., help="The portable adapter folder to write."),
    base: str = typer.Option("smollm2", help="The base model alias written into adapter_config.json."),
    dtype: str = typer.Option("float16", help="Weight dtype: float16, bfloat16 or float32."),
) -> None:
    """Copy a trained LoRA adapter into a portable folder (base alias, float16 weights, run record)."""
    from sepsis_sdk.errors import UserError
    from sepsis_sdk.training.llm_stages import export_adapter

    with friendly_errors():
        if dtype not in ("float16", "bfloat16", "float32"):
            raise UserError(f"--dtype must be float16, bfloat16 or float32, got {dtype!r}")
        info = export_adapter(src, dest, base=base, dtype=dtype)
    console.print(esc(f"wrote {dest}: {', '.join(info['files'])} ({info['bytes'] / 1e6:.1f} MB, "
                      f"{info['parameters']:,} LoRA parameters)"))  # fmt: skip
