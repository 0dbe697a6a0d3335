"""The three PEFT training stages on a tiny random Llama (real TRL trainers, CPU)."""

import json

import numpy as np
import pytest

from sepsis_sdk.sources.icu_sepsis import sample_cohort
from sepsis_sdk.testing import FakeWorldModel
from sepsis_sdk.training.llm_data import (
    Teacher,
    WorldModelReward,
    dynamics_examples,
    parse_action,
    psr_examples,
    rl_prompts,
)

pytest.importorskip("trl")
pytest.importorskip("peft")


@pytest.fixture(scope="module")
def cohort():
    return sample_cohort(40, seed=0)


@pytest.fixture(scope="module")
def teacher(cohort):
    # MAP-like feature rises with vasopressors; death hazard falls as MAP rises: the teacher must prefer vaso.
    schema = cohort.schema
    j = schema.index("MeanBP")

    def hazard(state, action):
        p = np.clip(0.05 - 0.02 * state[:, j], 0.001, 0.5)
        return p, np.full(len(p), 0.01)

    return Teacher(FakeWorldModel(schema, hazard=hazard), horizon=2, n_samples=2, guideline_penalty=0.0)


def test_dynamics_examples_hold_the_next_values(cohort):
    ex = dynamics_examples(cohort, 6, seed=1)
    assert len(ex) == 6
    msg = ex[0]["prompt"][-1]["content"]
    assert "Treatment for the next 4 hours" in msg and "MAP" in msg
    target = json.loads(ex[0]["completion"][0]["content"])
    assert {"MAP", "lactate", "SOFA"} <= set(target)
    assert target["SOFA"].endswith("points")


def test_teacher_prefers_the_action_the_world_model_rewards(cohort, teacher):
    hist = next(cohort.episodes()).history(0)
    scores = teacher.scores(hist)
    assert scores.shape == (25,)
    best = int(np.argmax(scores))
    assert best % 5 == 4  # highest vasopressor level raises MAP most in the fake model


def test_psr_examples_use_the_graph_formats(cohort, teacher):
    ex = psr_examples(cohort, teacher, 2, n_candidates=3, seed=0)
    assert len(ex) == 4  # a propose turn and a refine turn per decision
    propose = json.loads(ex[0]["completion"][0]["content"])
    assert len(propose["candidates"]) == 3
    refine = json.loads(ex[1]["completion"][0]["content"])
    assert refine["decision"] == "commit"
    assert (refine["fluid"], refine["vaso"]) == (
        propose["candidates"][0]["fluid"],
        propose["candidates"][0]["vaso"],
    )
    assert (
        "World-model simulation" in ex[1]["prompt"][-1]["content"]
        or "simulat" in ex[1]["prompt"][-1]["content"].lower()
    )


def test_reward_scores_valid_actions_and_penalises_invalid_ones(cohort, teacher):
    prompts, hists = rl_prompts(cohort, 3, seed=0)
    reward = WorldModelReward(teacher, hists)
    good = [{"role": "assistant", "content": '{"fluid": 0, "vaso": 4, "rationale": "x"}'}]
    bad = [{"role": "assistant", "content": '{"fluid": 9, "vaso": 4}'}]
    junk = [{"role": "assistant", "content": "give fluids"}]
    r = reward(prompts[:1] * 3, [good, bad, junk], history_id=[0, 0, 0])
    assert r[1] == r[2] == -1.0
    assert r[0] > 0  # standardised: the best action is above the state's mean
    assert parse_action('text {"fluid": 2, "vaso": 1} more') == 11
    assert parse_action("{oops}") is None


@pytest.mark.slow
def test_three_stage_pipeline_trains_and_saves_adapters(cohort, teacher, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from sepsis_sdk.training._tiny import make_tiny_llama
    from sepsis_sdk.training.llm_stages import StageConfig, run_pipeline, train_sft

    ex = dynamics_examples(cohort, 8, seed=0)
    corpus = [
        m["content"] for e in ex + psr_examples(cohort, teacher, 2) for m in e["prompt"] + e["completion"]
    ]
    base = make_tiny_llama(tmp_path / "base", corpus)
    # SFT really learns: two short examples repeated, the completion loss falls clearly
    tiny = [
        {
            "prompt": [{"role": "user", "content": "MAP falling , lactate rising"}],
            "completion": [{"role": "assistant", "content": '{"fluid": 3, "vaso": 1}'}],
        },
        {
            "prompt": [{"role": "user", "content": "MAP stable , lactate stable"}],
            "completion": [{"role": "assistant", "content": '{"fluid": 0, "vaso": 0}'}],
        },
    ]
    info = train_sft(
        base,
        tiny * 2,
        tmp_path / "sft",
        stage="dynamics",
        config=StageConfig(
            max_steps=10,
            batch_size=4,
            learning_rate=1e-2,
            lora_r=16,
            target_modules=["q_proj", "v_proj", "gate_proj", "up_proj", "down_proj"],
        ),
    )
    assert info["steps"] == 10
    assert info["last_loss"] < 0.6 * info["first_loss"]
    # the full pipeline continues one adapter through the three stages
    cfg = StageConfig(max_steps=1, batch_size=2, num_generations=2, max_completion_length=8)
    res = run_pipeline(base, cohort, teacher.world_model, tmp_path / "run", n_examples=4, config=cfg)
    assert set(res) == {"dynamics", "psr", "rl"} and res["rl"]["rewards"]
    final = tmp_path / "run" / "rl"
    assert (final / "adapter_config.json").exists()
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), final)
    assert sum(p.numel() for n, p in model.named_parameters() if "lora_" in n) > 0


@pytest.mark.slow
def test_train_cli_runs_stage_one(tmp_path):
    from typer.testing import CliRunner

    from sepsis_sdk.cli import app
    from sepsis_sdk.training._tiny import make_tiny_llama

    base = make_tiny_llama(tmp_path / "base", ["MAP lactate SOFA points SD"])
    res = CliRunner().invoke(
        app,
        [
            "train",
            "llm",
            "--base",
            str(base),
            "--out",
            str(tmp_path / "out"),
            "--stages",
            "dynamics",
            "--patients",
            "20",
            "--examples",
            "4",
            "--steps",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "dynamics" in res.output and (tmp_path / "out" / "dynamics" / "adapter_config.json").exists()
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["dynamics"]["steps"] == 1
    bad = CliRunner().invoke(
        app, ["train", "llm", "--base", str(base), "--out", str(tmp_path / "o2"), "--stages", "sft"]
    )
    assert bad.exit_code == 2 and "unknown stages" in bad.output
