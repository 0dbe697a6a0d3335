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
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

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
    # An SFT example longer than max_length: "error" (default) refuses to train; "drop" leaves it out with a
    # warning. TRL itself keeps the start of a long example, which cuts the completion off, and then drops
    # the example as fully masked without a word: the shipped sepsisagent-135m lost its 10 PSR refine turns
    # (~1,650 tokens, max_length 1024) that way; its recipe says "drop" so that it still reproduces.
    long_examples: str = "error"
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
        # TRL's configs default to bf16=True. On a CPU without bf16 matrix units (AVX2) that sends every
        # matmul to a scalar fallback kernel: SmolLM2-135M did not finish one SFT step of 4 examples in
        # 500 s, against about 15 s in float32 (measured here). bf16 only where CUDA supports it.
        "bf16": bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported()),
        "fp16": False,
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


def _progress_callback(stage: str, every_s: float = 10.0) -> Any:
    """A trainer callback printing ``train stage: step k/N loss=... (t s)`` on stderr at most every ``every_s``."""
    import sys
    import time

    transformers = require("transformers", "training")

    class _Progress(transformers.TrainerCallback):
        def __init__(self) -> None:
            self.t0 = time.perf_counter()
            self.last = -every_s

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            now = time.perf_counter() - self.t0
            done = state.global_step >= state.max_steps
            if now - self.last < every_s and not done:
                return
            self.last = now
            logs = logs or {}
            shown = " ".join(
                f"{k}={logs[k]:.4g}" for k in ("loss", "reward") if isinstance(logs.get(k), float)
            )
            print(f"train {stage}: step {state.global_step}/{state.max_steps} {shown} ({now:.0f} s)",
                  file=sys.stderr, flush=True)  # fmt: skip

    return _Progress()


def _finish(
    trainer: Any, tok: Any, out: Path, stage: str, n_examples: int, cfg: StageConfig, *, dropped: int = 0
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
    if dropped:
        info["dropped_long"] = dropped  # examples left out for being longer than max_length
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
    if cfg.long_examples not in ("error", "drop"):
        raise UserError(f"long_examples must be 'error' or 'drop', got {cfg.long_examples!r}")
    trl = require("trl", "training")
    datasets = require("datasets", "training")
    out = Path(out_dir)
    model, tok = _load(base, adapter)
    examples, dropped = _fit_length(examples, tok, cfg, stage)
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
        callbacks=[_progress_callback(stage)],
    )
    trainer.train()
    info = _finish(trainer, tok, out, stage, len(examples), cfg, dropped=dropped)
    return info


def _fit_length(
    examples: list[dict[str, Any]], tok: Any, cfg: StageConfig, stage: str
) -> tuple[list[dict[str, Any]], int]:
    """The examples that fit ``cfg.max_length`` tokens (chat template applied), and how many did not.

    Raises:
        UserError: some do not fit and ``cfg.long_examples == "error"`` (TRL would cut their completions off
            and silently train on nothing of them).
    """
    lengths = []
    for ex in examples:
        ids = tok.apply_chat_template(ex["prompt"] + ex["completion"], tokenize=True, return_dict=True)
        lengths.append(len(ids["input_ids"]))
    long = {i for i, n in enumerate(lengths) if n > cfg.max_length}
    if not long:
        return examples, 0
    msg = (
        f"stage {stage}: {len(long)} of {len(examples)} examples are longer than max_length={cfg.max_length} "
        f"tokens (longest {max(lengths)}); truncation would cut their completions off"
    )
    if cfg.long_examples == "error":
        raise UserError(f"{msg}: raise StageConfig.max_length, or set long_examples='drop' to leave them out")
    kept = [ex for i, ex in enumerate(examples) if i not in long]
    if not kept:
        raise UserError(f"{msg}, and no example is left")
    print(f"warning: {msg}: left out (long_examples='drop')", file=sys.stderr)
    return kept, len(long)


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
        callbacks=[_progress_callback("rl")],
    )
    trainer.train()
    return _finish(trainer, tok, out, "rl", len(prompts), cfg)


@dataclass
class PipelinePlan:
    """How much data each stage sees (the defaults are the recipe of the shipped ``sepsisagent-135m``).

    Attributes:
        dynamics_examples: stage I transitions.
        direct_examples: stage II decisions in the direct graph's format (one turn each).
        psr_examples: stage II decisions in the PSR graph's formats (a propose and a refine turn each).
        rl_prompts: stage III prompts (each sampled ``num_generations`` times).
        markov_share: the share of stage II/III decision points shown as the one-step history of the exact
            Markov evaluation (the rest keep their recorded history).
        n_candidates: candidates per PSR propose turn.
        proposal_order: how the teacher lists its candidates (``"ranked"`` or ``"shuffled"``, see
            :func:`~sepsis_sdk.training.llm_data.graph_examples`).
        simulation_report: what the PSR refine turns show of the simulation (``PSROptions``: ``"full"``,
            ``"values"``, ``"cautious"`` or ``"brief"``).
        refine_critique: whether the PSR refine turns include the judge's critique (``PSROptions``).
        simulate_with: whose care the simulated values continue with (``"usual"``: the clinicians';
            ``"planned"``: the teacher's planner, :meth:`~sepsis_sdk.training.llm_data.Teacher.simulation_continuation`).
        psr_turns: ``"all"`` (propose and refine turns) or ``"refine"`` (refine turns only).
        refine_target: ``"teacher"`` or ``"report"`` (see :func:`~sepsis_sdk.training.llm_data.graph_examples`).
        rl_turns: the turn stage III trains: ``"direct"``, the direct graph's decision prompt
            (:func:`~sepsis_sdk.training.llm_data.rl_prompts`), or ``"refine"``, the PSR graph's refine turn
            with this plan's candidates, report and critique settings
            (:func:`~sepsis_sdk.training.llm_data.refine_rl_prompts`): where a PSR agent decides.
    """

    dynamics_examples: int = 48
    direct_examples: int = 400
    psr_examples: int = 40
    rl_prompts: int = 24
    markov_share: float = 0.75
    n_candidates: int = 3
    proposal_order: str = "ranked"
    simulation_report: str = "full"
    simulate_with: str = "usual"
    psr_turns: str = "all"
    refine_target: str = "teacher"
    refine_critique: bool = True
    rl_turns: str = "direct"

    def __post_init__(self) -> None:
        if self.rl_turns not in RL_TURNS:
            raise UserError(f"rl_turns must be one of {RL_TURNS}, got {self.rl_turns!r}")

    @classmethod
    def uniform(cls, n: int) -> PipelinePlan:
        """``n`` examples for every stage (stage II: ``n`` direct and ``n // 2`` PSR decisions)."""
        return cls(dynamics_examples=n, direct_examples=n, psr_examples=max(1, n // 2), rl_prompts=n)


RL_TURNS = ("direct", "refine")
"""The turns stage III can train (:attr:`PipelinePlan.rl_turns`)."""

TRANSCRIPT_SETTINGS = ("proposal_order", "simulation_report", "simulate_with", "psr_turns", "refine_target",
                       "refine_critique")  # fmt: skip
"""The plan fields that change stage II's transcripts (in a stage's saved plan only when not the default)."""


def _stage_plan(plan: PipelinePlan, stage: str) -> dict[str, Any]:
    """The part of the plan a stage's data depend on (what a resumed run must match)."""
    fields = {"dynamics": ("dynamics_examples",), "psr": ("direct_examples", "psr_examples", "markov_share",
              "n_candidates"), "rl": ("rl_prompts", "markov_share")}[stage]  # fmt: skip
    out = {f: getattr(plan, f) for f in fields}
    defaults = PipelinePlan()
    if stage == "psr":  # the transcript settings count only when not the default: older runs still resume
        for f in TRANSCRIPT_SETTINGS:
            if getattr(plan, f) != getattr(defaults, f):
                out[f] = getattr(plan, f)
    if stage == "rl" and plan.rl_turns != defaults.rl_turns:  # refine prompts: the PSR settings shape them
        out["rl_turns"] = plan.rl_turns
        for f in ("n_candidates", "proposal_order", "simulation_report", "refine_critique"):
            out[f] = getattr(plan, f)
    return out


def _comparable(config: Any) -> Any:
    """A stage config without ``long_examples``: it does not change what is trained from the examples kept
    (stages saved before it existed behaved as "drop"; a finished "error" stage had no long example)."""
    if not isinstance(config, dict):
        return config
    return {k: v for k, v in config.items() if k != "long_examples"}


def _finished_stage(
    dest: Path, cfg: StageConfig, plan: PipelinePlan, stage: str, adapter: Path | None
) -> dict[str, Any] | None:
    """The saved summary of ``stage`` when ``dest`` holds its adapter trained with these settings."""
    info_file = dest / "stage.json"
    if not (info_file.is_file() and (dest / "adapter_config.json").is_file()):
        return None
    try:
        info = json.loads(info_file.read_text())
    except json.JSONDecodeError:
        return None
    same = (
        _comparable(info.get("config")) == _comparable(asdict(cfg))
        and info.get("plan") == _stage_plan(plan, stage)
        and info.get("after") == (None if adapter is None else adapter.name)
    )
    return info if same else None


def run_pipeline(
    base: str | Path,
    cohort: Any,
    world_model: Any,
    out_dir: str | Path,
    *,
    stages: tuple[str, ...] = ("dynamics", "psr", "rl"),
    n_examples: int | None = None,
    config: StageConfig | None = None,
    configs: dict[str, StageConfig] | None = None,
    plan: PipelinePlan | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Run the stages in order, each continuing the previous adapter; returns each stage's summary.

    Args:
        base: the base model folder.
        cohort: the training cohort (stage I transitions; stage II/III decision points; the clinicians'
            behaviour the teacher improves on).
        world_model: the teacher's world model (fitted on ``cohort``); the neighbour model plans to
            convergence (:class:`~sepsis_sdk.training.llm_data.Teacher`).
        out_dir: one folder per stage (``dynamics/``, ``psr/``, ``rl/``) plus ``run.json``.
        stages: a subset of dynamics, psr, rl, in order.
        n_examples: shorthand for ``PipelinePlan.uniform(n_examples)``.
        config: the settings of every stage; ``configs`` overrides it per stage name.
        plan: data sizes per stage (default :class:`PipelinePlan`).
        seed: data sampling, teacher and training seed.

    ``run.json`` records the base, the cohort, the plan, each stage's configuration, data size, steps,
    losses or rewards and wall time: enough to reproduce the run. An interrupted run resumes: a stage
    whose folder already holds its adapter, trained with the same settings after the same previous
    stage, is kept and not trained again.
    """
    import time

    from sepsis_sdk.training.llm_data import (
        Teacher,
        WorldModelReward,
        dynamics_examples,
        graph_examples,
        refine_rl_prompts,
        rl_prompts,
    )

    unknown = set(stages) - {"dynamics", "psr", "rl"}
    if unknown:
        raise UserError(f"unknown stages {sorted(unknown)}; choose from dynamics, psr, rl")
    unknown = set(configs or {}) - {"dynamics", "psr", "rl"}
    if unknown:
        raise UserError(f"configs for unknown stages {sorted(unknown)}; choose from dynamics, psr, rl")
    if plan is not None and n_examples is not None:
        raise UserError("pass either n_examples or plan, not both")
    plan = plan or (PipelinePlan.uniform(n_examples) if n_examples is not None else PipelinePlan())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from sepsis_sdk.world_model.value import fit_continuation

    def cfg_for(stage: str) -> StageConfig:
        return (configs or {}).get(stage) or config or StageConfig(seed=seed)

    # the planner improves on the clinicians of the training cohort (never on hidden truth)
    teacher = Teacher(world_model, seed=seed, continuation=fit_continuation(cohort, seed=seed),
                      simulate_with=plan.simulate_with)  # fmt: skip
    adapter: Path | None = None
    results: dict[str, Any] = {}
    record: dict[str, Any] = {
        "base": str(base),
        "cohort": {
            "source": getattr(cohort, "source", None),
            "episodes": getattr(cohort, "n_patients", None),
        },
        "world_model": type(world_model).__name__,
        "teacher": {
            "lookahead": teacher.lookahead,
            "guideline_penalty": teacher.guideline_penalty,
            "simulate_with": teacher.simulate_with,
        },
        "plan": asdict(plan),
        "seed": seed,
        "stages": {},
    }
    trained_now = False
    for stage in stages:
        dest = out / stage
        cfg = cfg_for(stage)
        t0 = time.perf_counter()
        # a stage after one trained in this run is trained too: its saved adapter followed the old one
        done = None if trained_now else _finished_stage(dest, cfg, plan, stage, adapter)
        if done is not None:  # an interrupted run resumes: this stage's adapter is saved, same settings
            print(f"train {stage}: already trained in {dest} (same settings), kept", file=sys.stderr)
            results[stage] = done
            record["stages"][stage] = done
            adapter = dest
            continue
        trained_now = True
        if stage == "dynamics":
            data = dynamics_examples(cohort, plan.dynamics_examples, seed=seed)
            t_data = time.perf_counter() - t0
            results[stage] = train_sft(base, data, dest, stage=stage, adapter=adapter, config=cfg)
        elif stage == "psr":
            data = []
            if plan.direct_examples:
                data += graph_examples(cohort, teacher, plan.direct_examples, graph="direct",
                                       markov_share=plan.markov_share, seed=seed)  # fmt: skip
            if plan.psr_examples:
                data += graph_examples(cohort, teacher, plan.psr_examples, graph="psr",
                                       n_candidates=plan.n_candidates, markov_share=plan.markov_share,
                                       proposal_order=plan.proposal_order,
                                       simulation_report=plan.simulation_report, turns=plan.psr_turns,
                                       refine_target=plan.refine_target,
                                       refine_critique=plan.refine_critique, seed=seed + 1)  # fmt: skip
            np.random.default_rng(seed).shuffle(data)  # direct and PSR turns mixed in every batch
            t_data = time.perf_counter() - t0
            results[stage] = train_sft(base, data, dest, stage=stage, adapter=adapter, config=cfg)
        else:
            if plan.rl_turns == "refine":
                prompts, hists = refine_rl_prompts(cohort, teacher, plan.rl_prompts,
                                                   n_candidates=plan.n_candidates, markov_share=plan.markov_share,
                                                   proposal_order=plan.proposal_order,
                                                   simulation_report=plan.simulation_report,
                                                   refine_critique=plan.refine_critique, seed=seed)  # fmt: skip
            else:
                prompts, hists = rl_prompts(
                    cohort, plan.rl_prompts, markov_share=plan.markov_share, seed=seed
                )
            t_data = time.perf_counter() - t0
            results[stage] = train_grpo(
                base, prompts, WorldModelReward(teacher, hists), dest, adapter=adapter, config=cfg
            )
        results[stage]["data_s"] = round(t_data, 1)
        results[stage]["wall_s"] = round(time.perf_counter() - t0, 1)
        results[stage]["plan"] = _stage_plan(plan, stage)
        results[stage]["after"] = None if adapter is None else str(adapter.name)
        (dest / "stage.json").write_text(json.dumps(results[stage], indent=2, default=str))
        record["stages"][stage] = results[stage]
        (out / "run.json").write_text(json.dumps(record, indent=2, default=str))  # after every stage
        adapter = dest
    record["final_adapter"] = str(adapter)
    (out / "run.json").write_text(json.dumps(record, indent=2, default=str))
    (out / "pipeline.json").write_text(
        json.dumps({"base": str(base), "stages": list(stages), "final_adapter": str(adapter)}, indent=2)
    )
    return results


def export_adapter(
    src: str | Path, dest: str | Path, *, base: str = "smollm2", dtype: str = "float16"
) -> dict[str, Any]:
    """Copy a trained LoRA adapter into a portable folder (how the embedded agent's files were made).

    The weights are stored in ``dtype`` (float16 halves the size; PEFT casts them back to the base model's
    dtype on load), ``base_model_name_or_path`` becomes ``base`` (an alias the ``local/`` provider
    resolves on any machine, not this machine's cache path), and the run record (``run.json`` of the
    pipeline folder above ``src``, when there is one) is kept as ``training.json``.

    Returns:
        ``{"files": [...], "bytes": total size, "parameters": LoRA parameter count}``.
    """

    require("safetensors", "training")  # a clear error when the extra is missing
    torch = require("torch", "training")
    from safetensors.torch import load_file, save_file

    src, dest = Path(src), Path(dest)
    cfg_path = src / "adapter_config.json"
    weights = src / "adapter_model.safetensors"
    if not cfg_path.is_file() or not weights.is_file():
        raise UserError(
            f"{src} is not a saved LoRA adapter (adapter_config.json + adapter_model.safetensors)"
        )
    dest.mkdir(parents=True, exist_ok=True)
    cfg = json.loads(cfg_path.read_text())
    cfg["base_model_name_or_path"] = base
    (dest / "adapter_config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    tensors = {k: v.to(getattr(torch, dtype)).contiguous() for k, v in load_file(str(weights)).items()}
    save_file(tensors, str(dest / "adapter_model.safetensors"), metadata={"format": "pt"})
    run = src.parent / "run.json"
    if run.is_file():
        record = json.loads(run.read_text())
        if isinstance(record, dict) and "base" in record:
            record["base"] = base  # the alias: the folder it was trained from is that machine's own path
        (dest / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    files = sorted(p.name for p in dest.iterdir() if p.is_file())
    return {
        "files": files,
        "bytes": sum((dest / f).stat().st_size for f in files),
        "parameters": int(sum(t.numel() for t in tensors.values())),
    }


ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass(frozen=True)
class Recipe:
    """A complete, named training run: the cohort, the teacher's world model, the data plan, each stage.

    Attributes:
        name: the recipe's name (``sepsis-sdk train llm --recipe NAME``).
        episodes: ICU-Sepsis episodes sampled from the clinicians' policy (the training cohort).
        cohort_seed: the cohort's sampling seed.
        plan: data sizes per stage.
        configs: each stage's settings.
        seed: the pipeline's seed.
    """

    name: str
    episodes: int
    cohort_seed: int
    plan: PipelinePlan
    configs: dict[str, StageConfig]
    seed: int = 0


def _recipe_135m() -> Recipe:
    # Sized for 2 CPU cores, about 45 minutes in all. Measured there: SmolLM2-135M trains at 60-70 tokens/s
    # (TRL SFT, float32, LoRA on every linear layer); a stage-I example is ~1,000 tokens, a direct-graph
    # decision ~500-700, a PSR refine turn ~1,650. Stage II is one pass over 160 examples; stage III 8
    # GRPO steps of 4 samples. LoRA r=8 on every linear layer (2.44 M parameters; 4.9 MB in float16).
    lora = {"lora_r": 8, "lora_alpha": 16, "target_modules": list(ALL_LINEAR)}
    return Recipe(
        name="sepsisagent-135m",
        episodes=20_000,
        cohort_seed=0,
        plan=PipelinePlan(dynamics_examples=32, direct_examples=140, psr_examples=10, rl_prompts=8),
        configs={
            # long_examples="drop": what this recipe's run did (TRL dropped its 10 refine turns, longer than
            # 1,024 tokens, without a word); kept so the command still reproduces the shipped adapter
            "dynamics": StageConfig(
                max_steps=8, batch_size=4, learning_rate=2e-4, long_examples="drop", **lora
            ),
            "psr": StageConfig(max_steps=20, batch_size=8, learning_rate=5e-4, long_examples="drop", **lora),
            "rl": StageConfig(
                max_steps=8, learning_rate=1e-4, num_generations=4, max_completion_length=32, **lora
            ),
        },
    )


def _recipe_135m_psr() -> Recipe:
    # The refine-cloning recipe: stage I as in sepsisagent-135m (its adapter is reused when present), then
    # stage II on PSR turns only: 5 candidates, the teacher's ranked proposals handed to the graph shuffled,
    # the values-only report with values that continue as the teacher plans (not as the clinicians would),
    # and a refine turn that commits the candidate the report names best supported. A propose turn is ~660
    # tokens, a refine turn ~1,500 (SmolLM2 tokenizer), trained at ~61 tokens/s on the 2 cores: the 96
    # examples of 48 decision points are one pass of about 28 min. One example per step: mixed in a batch,
    # the propose turns are padded to the refine turns' length (a batch of 4 took over 170 s, of 8 needed
    # over 24 GB in float32 and was killed for memory). max_length 2304: the longest of 128 such examples
    # was 2,151 tokens (2048 refused two of them).
    base = _recipe_135m()
    lora = {"lora_r": 8, "lora_alpha": 16, "target_modules": list(ALL_LINEAR)}
    return Recipe(
        name="sepsisagent-135m-psr",
        episodes=base.episodes,
        cohort_seed=base.cohort_seed,
        plan=PipelinePlan(
            dynamics_examples=32,
            direct_examples=0,
            psr_examples=48,
            rl_prompts=8,
            n_candidates=5,
            proposal_order="shuffled",
            simulation_report="values",
            simulate_with="planned",
            refine_target="report",
        ),
        configs={
            **base.configs,
            "psr": StageConfig(max_steps=96, batch_size=1, learning_rate=3e-4, max_length=2304, **lora),
        },
    )


def _recipe_135m_psr_brief() -> Recipe:
    # The refine-cloning recipe with the short refine prompt: the brief report (one line per candidate:
    # value, cautious value, support; the closing line names the best-supported cautious pick) and no
    # critique, so the refine prompt adds 335 tokens to the propose prompt's prefix instead of 1,153
    # (benchmarks/experiments/psr_prompt_budget.py, one state), for the 45-minute PSR sweep. Everything else is
    # sepsisagent-135m-psr's, and the model is trained on the report it is run with (cautious values need
    # the planned continuation, which the plan has).
    # Stage III trains the refine turn (rl_turns="refine"): the prompt the PSR agent decides in, ~1,000
    # tokens with the brief report, so a GRPO step of 4 samples is about a minute on the 2 cores; 12 prompts,
    # one per step. A committed refine reply is ~35 tokens: 64 leaves room for the rationale (32, the
    # direct recipe's, would cut the JSON off and score every sample as invalid).
    r = _recipe_135m_psr()
    return replace(
        r,
        name="sepsisagent-135m-psr-brief",
        plan=replace(
            r.plan, simulation_report="brief", refine_critique=False, rl_turns="refine", rl_prompts=12
        ),
        configs={**r.configs, "rl": replace(r.configs["rl"], max_steps=12, max_completion_length=64)},
    )


def _recipe_gpu() -> Recipe:
    # The same pipeline for a Qwen-class 0.5-4B instruct base on one CUDA GPU (pass --base FOLDER): ten
    # times the data, LoRA r=16, bf16 (set automatically on CUDA). Not run here: no GPU was lent to the
    # session that wrote it (docs/training.md).
    lora = {"lora_r": 16, "lora_alpha": 32, "target_modules": list(ALL_LINEAR)}
    return Recipe(
        name="sepsisagent-gpu",
        episodes=20_000,
        cohort_seed=0,
        plan=PipelinePlan(dynamics_examples=1024, direct_examples=4000, psr_examples=400, rl_prompts=256),
        configs={
            "dynamics": StageConfig(max_steps=64, batch_size=16, learning_rate=2e-4, **lora),
            "psr": StageConfig(max_steps=600, batch_size=16, learning_rate=2e-4, **lora),
            "rl": StageConfig(
                max_steps=256, learning_rate=5e-5, num_generations=8, max_completion_length=48, **lora
            ),
        },
    )


RECIPES: dict[str, Any] = {
    "sepsisagent-135m": _recipe_135m,
    "sepsisagent-135m-psr": _recipe_135m_psr,
    "sepsisagent-135m-psr-brief": _recipe_135m_psr_brief,
    "sepsisagent-gpu": _recipe_gpu,
}
"""Named training recipes (``name -> () -> Recipe``); register your own here."""


def get_recipe(name: str) -> Recipe:
    """The recipe registered as ``name``.

    Raises:
        UserError: an unknown name (the known ones are listed).
    """
    try:
        return RECIPES[name]()
    except KeyError:
        raise UserError(f"unknown training recipe {name!r}; known: {sorted(RECIPES)}") from None


__all__ = [
    "RECIPES",
    "PipelinePlan",
    "Recipe",
    "StageConfig",
    "export_adapter",
    "get_recipe",
    "run_pipeline",
    "train_grpo",
    "train_sft",
]
