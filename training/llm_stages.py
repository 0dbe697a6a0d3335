"""Three-stage PEFT (LoRA) fine-tuning of a local causal LM into a SepsisAgent-style policy.

Stage I  ``dynamics``: SFT on real transitions (patient dynamics).
Stage II ``psr``:      SFT on propose-simulate-refine transcripts of a world-model teacher.
Stage III ``rl``:      GRPO inside the world model (reward = the teacher's standardised score).

Each stage trains one LoRA adapter and saves it (``adapter_config.json`` + safetensors) with the
tokenizer; the next stage continues the same adapter. The result plugs into every graph by model string,
e.g. ``local/<base>?adapter=<out>/stage3`` (see :mod:`sepsis_sdk.llm`).

Runs on CUDA when present, else CPU (tiny models and SmolLM2-135M train on 2 cores; see docs/training.md).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sepsis_sdk._lazy import require
from sepsis_sdk.errors import UserError


@dataclass
class StageConfig:
    """Hyper-parameters of one stage (documented defaults suit a 135M model on CPU)."""

    max_steps: int = 30
    learning_rate: float = 2e-4
    batch_size: int = 4
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    max_length: int = 1024
    # GRPO only
    num_generations: int = 4
    max_completion_length: int = 48
    temperature: float = 1.0
    seed: int = 0


def _common_args(cfg: StageConfig, out: Path) -> dict[str, Any]:
    """Trainer arguments shared by the SFT and GRPO stages (CPU unless CUDA is present)."""
    torch = require("torch", "training")
    return {
        "output_dir": str(out / "_trainer"),
        "max_steps": cfg.max_steps,
        "learning_rate": cfg.learning_rate,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": [],
        "seed": cfg.seed,
        "disable_tqdm": True,
        "gradient_checkpointing": False,
        "use_cpu": not torch.cuda.is_available(),
    }


def _load(base: str | Path, adapter: str | Path | None):
    transformers = require("transformers", "training")
    peft = require("peft", "training")
    tok = transformers.AutoTokenizer.from_pretrained(str(base))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = transformers.AutoModelForCausalLM.from_pretrained(str(base))
    if adapter is not None:
        model = peft.PeftModel.from_pretrained(model, str(adapter), is_trainable=True)
    return model, tok


def _lora(cfg: StageConfig):
    peft = require("peft", "training")
    return peft.LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.target_modules,
        task_type="CAUSAL_LM",
    )


def _finish(
    trainer: Any, tok: Any, out: Path, stage: str, n_examples: int, cfg: StageConfig
) -> dict[str, Any]:
    trainer.save_model(str(out))
    tok.save_pretrained(str(out))
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    info = {
        "stage": stage,
        "examples": n_examples,
        "steps": trainer.state.global_step,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "rewards": rewards,
        "config": asdict(cfg),
    }
    (out / "stage.json").write_text(json.dumps(info, indent=2))
    return info


def train_sft(
    base: str | Path,
    examples: list[dict[str, Any]],
    out_dir: str | Path,
    *,
    stage: str,
    adapter: str | Path | None = None,
    config: StageConfig | None = None,
) -> dict[str, Any]:
    """Train (or continue) a LoRA adapter with TRL's SFTTrainer on prompt/completion examples.

    The loss is on the completion only. Returns a summary (steps, first/last loss) also written to
    ``out_dir/stage.json``.
    """
    if not examples:
        raise UserError(f"stage {stage}: no training examples")
    cfg = config or StageConfig()
    trl = require("trl", "training")
    datasets = require("datasets", "training")
    out = Path(out_dir)
    model, tok = _load(base, adapter)
    args = trl.SFTConfig(
        per_device_train_batch_size=cfg.batch_size,
        max_length=cfg.max_length,
        completion_only_loss=True,
        **_common_args(cfg, out),
    )
    trainer = trl.SFTTrainer(
        model=model,
        args=args,
        train_dataset=datasets.Dataset.from_list(examples),
        processing_class=tok,
        peft_config=None if adapter else _lora(cfg),
    )
    trainer.train()
    return _finish(trainer, tok, out, stage, len(examples), cfg)


def train_grpo(
    base: str | Path,
    prompts: list[dict[str, Any]],
    reward_fn: Any,
    out_dir: str | Path,
    *,
    adapter: str | Path | None = None,
    config: StageConfig | None = None,
) -> dict[str, Any]:
    """Stage III: GRPO with TRL's GRPOTrainer and a world-model reward (LoRA continued from ``adapter``)."""
    if not prompts:
        raise UserError("stage rl: no prompts")
    cfg = config or StageConfig()
    trl = require("trl", "training")
    datasets = require("datasets", "training")
    out = Path(out_dir)
    model, tok = _load(base, adapter)
    args = trl.GRPOConfig(
        per_device_train_batch_size=cfg.num_generations,
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        **_common_args(cfg, out),
    )
    trainer = trl.GRPOTrainer(
        model=model,
        reward_funcs=[reward_fn],
        args=args,
        train_dataset=datasets.Dataset.from_list(prompts),
        processing_class=tok,
        peft_config=None if adapter else _lora(cfg),
    )
    trainer.train()
    return _finish(trainer, tok, out, "rl", len(prompts), cfg)


def run_pipeline(
    base: str | Path,
    cohort: Any,
    world_model: Any,
    out_dir: str | Path,
    *,
    stages: tuple[str, ...] = ("dynamics", "psr", "rl"),
    n_examples: int = 256,
    config: StageConfig | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Run the stages in order, each continuing the previous adapter; returns each stage's summary."""
    from sepsis_sdk.training.llm_data import (
        Teacher,
        WorldModelReward,
        dynamics_examples,
        psr_examples,
        rl_prompts,
    )

    unknown = set(stages) - {"dynamics", "psr", "rl"}
    if unknown:
        raise UserError(f"unknown stages {sorted(unknown)}; choose from dynamics, psr, rl")
    out = Path(out_dir)
    from sepsis_sdk.world_model.value import fit_continuation

    # the planner improves on the clinicians of the training cohort (never on hidden truth)
    teacher = Teacher(world_model, seed=seed, continuation=fit_continuation(cohort, seed=seed))
    adapter: Path | None = None
    results: dict[str, Any] = {}
    for stage in stages:
        dest = out / stage
        if stage == "dynamics":
            results[stage] = train_sft(
                base,
                dynamics_examples(cohort, n_examples, seed=seed),
                dest,
                stage=stage,
                adapter=adapter,
                config=config,
            )
        elif stage == "psr":
            results[stage] = train_sft(
                base,
                psr_examples(cohort, teacher, max(1, n_examples // 2), seed=seed),
                dest,
                stage=stage,
                adapter=adapter,
                config=config,
            )
        else:
            prompts, hists = rl_prompts(cohort, n_examples, seed=seed)
            results[stage] = train_grpo(
                base, prompts, WorldModelReward(teacher, hists), dest, adapter=adapter, config=config
            )
        adapter = dest
    (out / "pipeline.json").write_text(
        json.dumps({"base": str(base), "stages": list(stages), "final_adapter": str(adapter)}, indent=2)
    )
    return results


__all__ = ["StageConfig", "run_pipeline", "train_grpo", "train_sft"]
