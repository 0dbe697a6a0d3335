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
    assert r[1] == r[2] == reward.invalid_reward == -2.0  # below any parseable action, supported or not
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
    # an example longer than max_length is refused (TRL would cut its completion off and drop it silently),
    # or left out with a count when asked
    long = [
        {"prompt": [{"role": "user", "content": "MAP falling " * 300}], "completion": tiny[0]["completion"]}
    ]
    with pytest.raises(Exception, match="1 of 3 examples are longer than max_length=256"):
        train_sft(
            base,
            tiny + long,
            tmp_path / "long",
            stage="dynamics",
            config=StageConfig(max_steps=1, max_length=256),
        )
    info = train_sft(base, tiny + long, tmp_path / "long", stage="dynamics", config=StageConfig(max_steps=1, max_length=256,
                                                                              long_examples="drop"))  # fmt: skip
    assert info["dropped_long"] == 1 and info["examples"] == 2
    # the full pipeline continues one adapter through the three stages (a PSR refine turn is ~2,000 tokens)
    cfg = StageConfig(max_steps=1, batch_size=2, num_generations=2, max_completion_length=8, max_length=4096)
    res = run_pipeline(base, cohort, teacher.world_model, tmp_path / "run", n_examples=4, config=cfg)
    assert set(res) == {"dynamics", "psr", "rl"} and res["rl"]["rewards"]
    final = tmp_path / "run" / "rl"
    assert (final / "adapter_config.json").exists()
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), final)
    assert sum(p.numel() for n, p in model.named_parameters() if "lora_" in n) > 0
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert set(run["stages"]) == {"dynamics", "psr", "rl"} and run["plan"]["direct_examples"] == 4
    # an interrupted run resumes: finished stages with the same settings are kept, not trained again
    weights = final / "adapter_model.safetensors"
    stamp = weights.stat().st_mtime_ns
    (tmp_path / "run" / "psr" / "adapter_config.json").unlink()  # as if it crashed while saving stage II
    res2 = run_pipeline(base, cohort, teacher.world_model, tmp_path / "run", n_examples=4, config=cfg)
    assert res2["dynamics"]["first_loss"] == res["dynamics"]["first_loss"]  # kept
    assert (tmp_path / "run" / "psr" / "adapter_config.json").exists()  # trained again
    assert weights.stat().st_mtime_ns != stamp  # stage III follows a new stage II, so it is trained again
    # stage III in the PSR graph's refine turn (the brief recipe's rl_turns="refine")
    from sepsis_sdk.training.llm_stages import PipelinePlan

    plan = PipelinePlan(rl_prompts=2, n_candidates=3, rl_turns="refine", simulation_report="brief",
                        refine_critique=False)  # fmt: skip
    res3 = run_pipeline(
        base, cohort, teacher.world_model, tmp_path / "refine", stages=("rl",), plan=plan, config=cfg
    )
    assert res3["rl"]["examples"] == 2 and res3["rl"]["rewards"]
    assert res3["rl"]["plan"]["rl_turns"] == "refine" and res3["rl"]["plan"]["simulation_report"] == "brief"
    assert (tmp_path / "refine" / "rl" / "adapter_config.json").exists()


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


# ---------------------------------------------------------------------------------- the converged teacher
@pytest.fixture(scope="module")
def planner_teacher():
    """The recipe's teacher on a small ICU-Sepsis cohort: the neighbour model, planned to convergence."""
    from sepsis_sdk.world_model import NeighbourWorldModel
    from sepsis_sdk.world_model.value import fit_continuation

    big = sample_cohort(400, seed=3)
    wm = NeighbourWorldModel.fit(big, k=1, prior_count=0)
    return big, Teacher(wm, continuation=fit_continuation(big, seed=0))


def test_teacher_plans_to_convergence_on_the_neighbour_model(planner_teacher):
    from sepsis_sdk.policies.planner import WorldModelPlannerPolicy

    big, teacher = planner_teacher
    assert teacher.planner().lookahead == "converge"
    hists = [ep.history(0) for ep in list(big.episodes())[:12]]
    scores = teacher.scores_many(hists)
    assert scores.shape == (12, 25)
    assert np.isneginf(scores).any() and np.isfinite(scores).any(axis=1).all()  # unsupported actions: -inf
    ref = WorldModelPlannerPolicy(teacher.world_model, continuation=teacher.continuation, lookahead="converge",
                                  safety=False)  # fmt: skip
    plain = np.asarray(ref.scores(teacher.world_model.batch(hists)))
    # the same planner's values; the teacher only subtracts its guideline penalty
    ok = np.isfinite(plain)
    pen = teacher.guideline_penalty * np.stack([teacher._violations(h) for h in hists])
    np.testing.assert_allclose(scores[ok], (plain - pen)[ok], atol=1e-9)
    np.testing.assert_array_equal(teacher.choose(hists), scores.argmax(1))


def test_direct_graph_examples_clone_the_teacher_in_the_graph_format(planner_teacher):
    from sepsis_sdk.graphs import SYSTEM
    from sepsis_sdk.training.llm_data import graph_examples

    big, teacher = planner_teacher
    ex = graph_examples(big, teacher, 6, graph="direct", markov_share=1.0, seed=0)
    assert len(ex) == 6  # one decision turn each
    for e in ex:
        system, user = e["prompt"]
        assert system == {"role": "system", "content": SYSTEM}
        assert user["content"].endswith('Answer as JSON: {"fluid": 0-4, "vaso": 0-4, "rationale": "..."}')
        assert "t=0" in user["content"] and "No treatment given yet." in user["content"]  # the Markov view
        reply = json.loads(e["completion"][0]["content"])
        assert set(reply) == {"fluid", "vaso", "rationale"}
    # the completion is the teacher's choice for that prompt's patient
    from sepsis_sdk.training.llm_data import _sample_histories
    from sepsis_sdk.truth.agent import markov_history

    hists = [markov_history(h) for h, _ in _sample_histories(big, 6, 0, need_next=False)]
    want = teacher.choose(hists)
    got = [parse_action(e["completion"][0]["content"]) for e in ex]
    assert got == [int(a) for a in want]
    with pytest.raises(Exception, match="graph must be"):
        graph_examples(big, teacher, 2, graph="tools")
    with pytest.raises(Exception, match="markov_share"):
        graph_examples(big, teacher, 2, markov_share=1.5)


def test_psr_examples_commit_the_teachers_best_candidate(planner_teacher):
    big, teacher = planner_teacher
    ex = psr_examples(big, teacher, 3, n_candidates=3, seed=1)
    assert len(ex) == 6
    for propose_ex, refine_ex in zip(ex[::2], ex[1::2], strict=True):
        assert '"candidates"' in propose_ex["prompt"][-1]["content"]
        assert '"decision"' in refine_ex["prompt"][-1]["content"]
        cands = json.loads(propose_ex["completion"][0]["content"])["candidates"]
        refine = json.loads(refine_ex["completion"][0]["content"])
        assert refine["decision"] == "commit"
        assert (refine["fluid"], refine["vaso"]) == (cands[0]["fluid"], cands[0]["vaso"])
        # the refine prompt is the graph's own: it carries the simulation report of these candidates
        assert "simulat" in refine_ex["prompt"][-1]["content"].lower()


def test_reward_ranks_supported_actions_above_unsupported_ones(planner_teacher):
    big, teacher = planner_teacher
    prompts, hists = rl_prompts(big, 4, markov_share=0.5, seed=0)
    reward = WorldModelReward(teacher, hists)
    s = teacher.scores(hists[0])
    best, unsupported = int(np.argmax(s)), int(np.flatnonzero(np.isneginf(s))[0])
    comp = [
        [{"role": "assistant", "content": json.dumps({"fluid": a // 5, "vaso": a % 5})}]
        for a in (best, unsupported)
    ]
    r = reward(prompts[:2], comp, history_id=[0, 0])
    assert r[1] == reward.unsupported_reward == -1.0
    assert r[0] >= 0.0 > r[1] > reward.invalid_reward


def test_recipes_are_registered_and_conflicting_cli_options_are_refused(tmp_path):
    from typer.testing import CliRunner

    from sepsis_sdk.cli import app
    from sepsis_sdk.training.llm_stages import RECIPES, get_recipe

    r = get_recipe("sepsisagent-135m")
    assert {"sepsisagent-135m", "sepsisagent-gpu"} <= set(RECIPES) and r.episodes == 20_000
    assert set(r.configs) == {"dynamics", "psr", "rl"} and r.plan.markov_share == 0.75
    with pytest.raises(Exception, match="unknown training recipe"):
        get_recipe("nope")
    res = CliRunner().invoke(app, ["train", "llm", "--recipe", "sepsisagent-135m", "--steps", "3",
                                   "--out", str(tmp_path / "o")])  # fmt: skip
    assert res.exit_code == 2 and "--steps" in res.output


# ------------------------------------------------------------------ refine cloning: shuffled, planned values
def test_shuffled_proposals_make_the_refine_turn_read_the_planned_simulation(planner_teacher):
    """The refine target is the teacher's best candidate, at a position that varies; values are planned."""
    from sepsis_sdk.training.llm_data import graph_examples

    big, _ = planner_teacher
    teacher = Teacher(_teacher_wm(planner_teacher), continuation=planner_teacher[1].continuation,
                      simulate_with="planned")  # fmt: skip
    ex = graph_examples(big, teacher, 12, graph="psr", n_candidates=5, markov_share=1.0,
                        proposal_order="shuffled", simulation_report="values", seed=4)  # fmt: skip
    assert len(ex) == 24
    positions = []
    for propose_ex, refine_ex in zip(ex[::2], ex[1::2], strict=True):
        ranked = json.loads(propose_ex["completion"][0]["content"])["candidates"]
        assert len(ranked) == 5
        refine = json.loads(refine_ex["completion"][0]["content"])
        # the propose example teaches the ranked list, and the refine answer is the teacher's best of it
        assert (refine["fluid"], refine["vaso"]) == (ranked[0]["fluid"], ranked[0]["vaso"])
        text = refine_ex["prompt"][-1]["content"]
        assert "continues as planned (pessimistic-pi; exact)" in text
        assert "Best supported:" in text or "No candidate has support >= 0.5" in text
        assert " -> " not in text  # the values-only report: no key-feature paths
        lines = [ln for ln in text.splitlines() if ln[:3] in {f"{c}. " for c in "ABCDE"}]
        want = f"fluid {refine['fluid']} "
        positions.append(next(i for i, ln in enumerate(lines) if ln[3:].startswith(want)
                              and f"vaso {refine['vaso']} " in ln.split(":")[0]))  # fmt: skip
    assert len(set(positions)) > 1  # the best is not always candidate A
    # refine_target="report": the refine turn commits the candidate the report's closing line names
    rep = graph_examples(big, teacher, 6, graph="psr", n_candidates=5, markov_share=1.0,
                         proposal_order="shuffled", simulation_report="values", refine_target="report", seed=4)  # fmt: skip
    differs = 0
    for propose_ex, refine_ex in zip(rep[::2], rep[1::2], strict=True):
        text = refine_ex["prompt"][-1]["content"]
        last = next(ln for ln in text.splitlines() if ln.startswith(("Best supported: ", "No candidate has")))
        named = (
            last.split(": ", 1)[1] if last.startswith("Best") else last.split("the highest value is ", 1)[1]
        )
        line = next(
            ln for ln in text.splitlines() if ln.startswith(named[:3])
        )  # "C. fluid 1 (...), vaso 0 ..."
        refine = json.loads(refine_ex["completion"][0]["content"])
        assert line.startswith(f"{named[:3]}fluid {refine['fluid']} ") and f"vaso {refine['vaso']} " in line
        ranked = json.loads(propose_ex["completion"][0]["content"])["candidates"]
        differs += (refine["fluid"], refine["vaso"]) != (ranked[0]["fluid"], ranked[0]["vaso"])
    assert differs > 0  # on this cohort the report's best is not always the teacher's
    with pytest.raises(Exception, match="refine_target"):
        graph_examples(big, teacher, 2, graph="psr", refine_target="best")
    only = graph_examples(big, teacher, 3, graph="psr", n_candidates=3, turns="refine", seed=4)
    assert len(only) == 3 and all('"decision"' in e["prompt"][-1]["content"] for e in only)
    with pytest.raises(Exception, match="proposal_order"):
        graph_examples(big, teacher, 2, graph="psr", proposal_order="random")
    with pytest.raises(Exception, match="turns"):
        graph_examples(big, teacher, 2, graph="psr", turns="propose")
    with pytest.raises(Exception, match="simulate_with"):
        Teacher(teacher.world_model, continuation=teacher.continuation, simulate_with="oracle")


def test_brief_transcripts_without_critique_clone_the_named_candidate(planner_teacher):
    """The short refine turn of sepsisagent-135m-psr-brief: brief report, no critique, commit what it names."""
    import re

    from sepsis_sdk.training.llm_data import graph_examples

    big, _ = planner_teacher
    teacher = Teacher(_teacher_wm(planner_teacher), continuation=planner_teacher[1].continuation,
                      simulate_with="planned")  # fmt: skip
    ex = graph_examples(big, teacher, 6, graph="psr", n_candidates=5, markov_share=1.0, proposal_order="shuffled",
                        simulation_report="brief", refine_target="report", refine_critique=False, seed=4)  # fmt: skip
    assert len(ex) == 12
    for refine_ex in ex[1::2]:
        text = refine_ex["prompt"][-1]["content"]
        assert "Critique of the simulated outcomes" not in text and "P(death" not in text
        lines = [ln for ln in text.splitlines() if re.match(r"^[A-E]\. \[fluid \d, vaso \d\]: value ", ln)]
        assert len(lines) == 5 and all(", cautious " in ln for ln in lines)  # planned values: cautious shown
        named = re.search(r"^(?:Best supported: |No candidate has .*? is )([A-E])\. \[fluid (\d), vaso (\d)\]",
                          text, re.M)  # fmt: skip
        assert named is not None
        refine = json.loads(refine_ex["completion"][0]["content"])
        assert (refine["fluid"], refine["vaso"]) == (int(named.group(2)), int(named.group(3)))
        assert lines["ABCDE".index(named.group(1))].startswith(
            f"{named.group(1)}. [fluid {refine['fluid']}, "
        )


def test_the_brief_recipe_is_the_psr_recipe_with_the_short_refine_prompt():
    from sepsis_sdk.training.llm_stages import _stage_plan, get_recipe

    psr, brief = get_recipe("sepsisagent-135m-psr"), get_recipe("sepsisagent-135m-psr-brief")
    p, q = _stage_plan(psr.plan, "psr"), _stage_plan(brief.plan, "psr")
    assert q == {**p, "simulation_report": "brief", "refine_critique": False}
    assert {k: brief.configs[k] for k in ("dynamics", "psr")} == {
        k: psr.configs[k] for k in ("dynamics", "psr")
    }
    # its stage III trains the refine turn it decides in, with room for the committed JSON reply
    assert _stage_plan(brief.plan, "rl") == {"rl_prompts": 12, "markov_share": 0.75, "rl_turns": "refine",
                                             "n_candidates": 5, "proposal_order": "shuffled",
                                             "simulation_report": "brief", "refine_critique": False}  # fmt: skip
    assert brief.configs["rl"].max_completion_length == 64 and brief.configs["rl"].max_steps == 12
    assert _stage_plan(psr.plan, "rl") == {"rl_prompts": 8, "markov_share": 0.75}  # older runs still resume
    assert (brief.episodes, brief.cohort_seed) == (psr.episodes, psr.cohort_seed)
    assert _stage_plan(brief.plan, "dynamics") == _stage_plan(psr.plan, "dynamics")  # stage I is shared


def _teacher_wm(planner_teacher):
    return planner_teacher[1].world_model


def test_planned_continuation_is_the_converged_policy_and_hold_mode_refuses(planner_teacher):
    from sepsis_sdk.policies.planner import PlannedContinuation, PlannerContinuation, WorldModelPlannerPolicy
    from sepsis_sdk.world_model.value import TableContinuation, support_states

    _big, teacher = planner_teacher
    cont = teacher.planner().planned_continuation()
    assert isinstance(cont, PlannedContinuation) and cont.name == "pessimistic-pi"
    assert isinstance(cont.inner, TableContinuation) and cont.markov
    sb = support_states(teacher.world_model)
    # on the model's support states it plays the converged policy's actions
    opt = teacher.planner().optimized
    np.testing.assert_array_equal(cont.probabilities(sb).argmax(1), opt.actions)
    # and its cautious values there are the converged pessimistic Q the planner ranks by
    np.testing.assert_allclose(cont.cautious_values(sb), opt.q)
    one = WorldModelPlannerPolicy(teacher.world_model, continuation=teacher.continuation, lookahead=1)
    assert isinstance(one.planned_continuation(), PlannerContinuation)
    hold = WorldModelPlannerPolicy(teacher.world_model, mode="hold")
    with pytest.raises(Exception, match="mode='improve'"):
        hold.planned_continuation()


def test_transcript_settings_enter_the_stage_plan_only_when_not_default():
    from sepsis_sdk.training.llm_stages import PipelinePlan, _stage_plan, get_recipe

    assert set(_stage_plan(PipelinePlan(), "psr")) == {"direct_examples", "psr_examples", "markov_share",
                                                        "n_candidates"}  # fmt: skip
    r = get_recipe("sepsisagent-135m-psr")
    p = _stage_plan(r.plan, "psr")
    assert p["proposal_order"] == "shuffled" and p["simulate_with"] == "planned"
    assert p["simulation_report"] == "values" and p["n_candidates"] == 5 and "psr_turns" not in p
    assert p["refine_target"] == "report"
    # stage I is the shipped recipe's, so its adapter is reused
    assert r.configs["dynamics"] == get_recipe("sepsisagent-135m").configs["dynamics"]
    assert _stage_plan(r.plan, "dynamics") == _stage_plan(get_recipe("sepsisagent-135m").plan, "dynamics")


def test_refine_rl_prompts_end_at_the_psr_refine_turn_and_the_reward_scores_its_commit(planner_teacher):
    """Stage III of the PSR recipe: the graph's own refine turn, rewarded by the teacher's world model."""
    import re

    from sepsis_sdk.training.llm_data import graph_examples, refine_rl_prompts
    from sepsis_sdk.training.llm_stages import PipelinePlan

    big, _ = planner_teacher
    teacher = Teacher(_teacher_wm(planner_teacher), continuation=planner_teacher[1].continuation,
                      simulate_with="planned")  # fmt: skip
    prompts, hists = refine_rl_prompts(big, teacher, 5, n_candidates=5, markov_share=1.0, seed=2)
    assert len(prompts) == len(hists) == 5
    assert [p["history_id"] for p in prompts] == list(range(5))
    reward = WorldModelReward(teacher, hists)
    for p, hist in zip(prompts, hists, strict=True):
        msgs = p["prompt"]
        # the refine turn as the graph sends it: its system prompt and one user turn holding the patient, the
        # candidates and their simulation report (no answer: GRPO samples it)
        assert [m["role"] for m in msgs] == ["system", "user"] and '"decision"' in msgs[-1]["content"]
        text = msgs[-1]["content"]
        assert "Critique of the simulated outcomes" not in text  # the recipe's brief report, no critique
        shown = [
            (int(f), int(v)) for f, v in re.findall(r"^[A-E]\. \[fluid (\d), vaso (\d)\]: value ", text, re.M)
        ]
        assert len(shown) == 5
        # the candidates are the teacher's top five for this patient (handed over shuffled)
        s = teacher.scores(hist)
        top = {int(a) for a in np.argsort(-s, kind="stable")[:5]}
        assert {5 * f + v for f, v in shown} == top
        # the reward follows the teacher's world-model score of what is committed
        best, worst = max(top, key=lambda a: s[a]), min(top, key=lambda a: s[a])
        comp = [[{"role": "assistant", "content": json.dumps({"decision": "commit", "fluid": a // 5,
                                                              "vaso": a % 5, "rationale": "x"})}]
                for a in (best, worst)] + [[{"role": "assistant", "content": '{"decision": "commit", "fluid'}]]  # fmt: skip
        r = reward([p] * 3, comp, history_id=[p["history_id"]] * 3)
        assert r[0] >= r[1] > r[2] == reward.invalid_reward
        if s[best] > s[worst]:
            assert r[0] > r[1]
    # the same conversation stage II trains on, for the same decision point and seed
    ex = graph_examples(big, teacher, 5, graph="psr", n_candidates=5, markov_share=1.0, proposal_order="shuffled",
                        simulation_report="brief", refine_critique=False, turns="refine", seed=5)  # fmt: skip
    assert [e["prompt"] for e in ex] == [p["prompt"] for p in prompts]
    with pytest.raises(Exception, match="rl_turns must be one of"):
        PipelinePlan(rl_turns="propose")
    with pytest.raises(Exception, match="proposal_order"):
        refine_rl_prompts(big, teacher, 2, proposal_order="random")
