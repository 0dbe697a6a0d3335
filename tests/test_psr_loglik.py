"""The PSR graph's ``decide="loglik"``: propose = top-K of the 25 propose openings, refine = the most likely
commit among the candidates, on the tiny random local model and scripted choosers (fast, offline)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("langgraph")

from sepsis_sdk.actions import Action
from sepsis_sdk.errors import LLMCallError, UserError
from sepsis_sdk.graphs import Guard, build_psr_graph, build_trace
from sepsis_sdk.graphs import _prompts as P
from sepsis_sdk.graphs._loglik import propose_options, refine_options
from sepsis_sdk.llm import Usage
from sepsis_sdk.llm._choice import Choice
from sepsis_sdk.safety import HoldSafePolicy
from sepsis_sdk.testing import FunctionChatModel
from sepsis_sdk.truth.agent import state_histories
from sepsis_sdk.world_model.fake import FakeWorldModel

FREE = dict(guard=Guard(safety=False, fallback=HoldSafePolicy()))  # the model's choice stays final


class ScriptedChooser(FunctionChatModel):
    """A chooser with fixed scores per option text (unknown options score -50); records every call."""

    def __init__(self, scores: dict[str, float], fail_at: int | None = None) -> None:
        super().__init__(lambda m, t: "{}")
        self.scores = scores
        self.fail_at = fail_at
        self.asked: list[tuple[list[dict], list[str]]] = []

    def choose(self, messages, options):
        self.asked.append((messages, list(options)))
        if self.fail_at is not None and len(self.asked) >= self.fail_at:
            raise LLMCallError("scoring failed", model="fake")
        lp = tuple(self.scores.get(o, -50.0) for o in options)
        i = max(range(len(lp)), key=lambda j: (lp[j], -j))
        return Choice(index=i, option=options[i], logprobs=lp, usage=Usage(prompt_tokens=10, calls=1))


def _opening(fluid: int, vaso: int) -> str:
    return propose_options()[Action(fluid=fluid, vaso=vaso).index]


def test_openings_are_how_the_stage_ii_transcripts_begin():
    # training.llm_data.psr_examples writes json.dumps of these dicts (default separators).
    for a in (Action(fluid=0, vaso=0), Action(fluid=3, vaso=1), Action(fluid=4, vaso=4)):
        propose = {"candidates": [{"fluid": a.fluid, "vaso": a.vaso, "rationale": "r."}], "reasoning": "x"}
        refine = {"decision": "commit", "fluid": a.fluid, "vaso": a.vaso, "rationale": "r"}
        assert json.dumps(propose).startswith(propose_options()[a.index])
        assert json.dumps(refine).startswith(refine_options([a.index])[0])
    assert len(set(propose_options())) == 25
    assert refine_options([7, 2]) == [refine_options([7])[0], refine_options([2])[0]]


def test_scripted_chooser_top_k_candidates_and_argmax_commit():
    scores = {_opening(2, 1): -1.0, _opening(1, 0): -2.0, _opening(4, 4): -0.5, _opening(0, 0): -3.0}
    # Refine: of the three candidates, (1, 0) commits (most likely), though it was second at propose.
    scores.update({refine_options([Action(fluid=1, vaso=0).index])[0]: -0.1,
                   refine_options([Action(fluid=4, vaso=4).index])[0]: -4.0,
                   refine_options([Action(fluid=2, vaso=1).index])[0]: -2.0})  # fmt: skip
    chooser = ScriptedChooser(scores)
    g = build_psr_graph(chooser, world_model=FakeWorldModel(), decide="loglik", n_candidates=3, **FREE)
    assert g.name == "psr_loglik"
    h = state_histories([5])[0]
    out = g.invoke({"history": h})
    cands = [c["action"] for c in out["candidates"]]
    assert cands == [
        Action(fluid=4, vaso=4).index,
        Action(fluid=2, vaso=1).index,
        Action(fluid=1, vaso=0).index,
    ]
    assert out["final"]["action"] == Action(fluid=1, vaso=0).index and out["final"]["source"] == "model"
    assert out["final"]["rounds"] == 1 and out["choice"]["decision"] == "commit"
    # Exactly two scoring calls: the 25 propose openings, then the 3 candidates' commit openings.
    (pm, popts), (rm, ropts) = chooser.asked
    assert popts == propose_options() and ropts == refine_options(cands)
    # The prompts are the generating nodes' (system + propose_prompt / refine_prompt with no rounds left).
    obs = out["observation"]
    assert pm == [{"role": "system", "content": P.SYSTEM},
                  {"role": "user", "content": P.propose_prompt(obs, 3)}]  # fmt: skip
    refine_text = P.refine_prompt(obs, out["simulation"]["text"], out["critique"]["text"], 0)
    assert rm == [{"role": "system", "content": P.SYSTEM}, {"role": "user", "content": refine_text}]
    assert "No rounds are left" in refine_text
    # The simulate node ran the world model on the candidates; the trace records the scores.
    assert sorted(c["action"] for c in out["simulation"]["candidates"]) == sorted(cands)
    tr = build_trace(out)
    assert len(tr["proposals"]) == 1 and len(tr["proposals"][0]["logprobs"]) == 25
    choice = next(e for e in out["events"] if e.get("type") == "choice")
    assert choice["candidates"] == cands and choice["logprobs"] == [-4.0, -2.0, -0.1]
    assert "most likely opening" in out["candidates"][0]["rationale"]


def test_guard_still_checks_the_committed_action():
    # The model commits to no treatment; with the SDK rules a hypotensive, high-lactate state is treated.
    none = Action(fluid=0, vaso=0).index
    scores = {_opening(0, 0): 0.0, refine_options([none])[0]: 0.0}
    g = build_psr_graph(ScriptedChooser(scores), world_model=FakeWorldModel(), decide="loglik",
                        n_candidates=2, fallback=HoldSafePolicy())  # fmt: skip
    for h in state_histories(range(0, 713, 50)):
        final = g.invoke({"history": h})["final"]
        assert final["proposed"] == none or final["source"] == "model"
        assert final["source"] in ("model", "guard") and 0 <= final["action"] < 25
        if final["source"] == "guard":
            assert final["action"] != none and final["reasons"]


@pytest.mark.parametrize("fail_at", [1, 2])
def test_a_failing_chooser_goes_to_the_fallback(fail_at):
    chooser = ScriptedChooser({}, fail_at=fail_at)
    g = build_psr_graph(chooser, world_model=FakeWorldModel(), decide="loglik", fallback=HoldSafePolicy(),
                        max_retries=0)  # fmt: skip
    out = g.invoke({"history": state_histories([3])[0]})
    final = out["final"]
    assert final["source"] == "fallback" and 0 <= final["action"] < 25
    step = "propose" if fail_at == 1 else "refine"
    assert final["rationale"].startswith("fallback policy") and f"{step} failed" in final["rationale"]
    assert len(chooser.asked) == fail_at  # a failed propose simulates nothing and asks nothing more


def test_build_errors():
    wm = FakeWorldModel()
    with pytest.raises(UserError, match="in-process"):
        build_psr_graph("openai/gpt-4o-mini", world_model=wm, decide="loglik")
    with pytest.raises(UserError, match="decide"):
        build_psr_graph("openai/gpt-4o-mini", world_model=wm, decide="sample")
    with pytest.raises(UserError, match="max_rounds"):
        build_psr_graph(ScriptedChooser({}), world_model=wm, decide="loglik", max_rounds=3)
    # max_rounds=1 is accepted; the generating graph keeps its default name and rounds.
    assert (
        build_psr_graph(ScriptedChooser({}), world_model=wm, decide="loglik", max_rounds=1).name
        == "psr_loglik"
    )
    assert build_psr_graph(ScriptedChooser({}), world_model=wm).name == "psr"


# ---------------------------------------------------------------------------------------------- tiny LM
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    import torch

    from sepsis_sdk.llm._local import load_local_model
    from sepsis_sdk.testing import tiny_causal_lm

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model, shared cores
    path = tiny_causal_lm(tmp_path_factory.mktemp("tiny-psr") / "lm", seed=0)
    yield path, load_local_model(str(path))
    torch.set_num_threads(before)


def test_tiny_model_end_to_end_matches_scores_computed_directly(tiny):
    from sepsis_sdk.llm import LiteLLMChat, score_continuations

    path, local = tiny
    g = build_psr_graph(LiteLLMChat(f"local/{path}"), world_model=FakeWorldModel(), decide="loglik",
                        n_candidates=3, **FREE)  # fmt: skip
    for h in state_histories([0, 200, 600]):
        out = g.invoke({"history": h})
        final = out["final"]
        assert 0 <= final["action"] < 25 and final["source"] == "model"
        obs = out["observation"]
        system = {"role": "system", "content": P.SYSTEM}
        direct = score_continuations(
            local,
            local.render([system, {"role": "user", "content": P.propose_prompt(obs, 3)}]),
            propose_options(),
        )
        cands = [c["action"] for c in out["candidates"]]
        assert len(set(cands)) == 3
        # The candidates are the top 3 of the propose scores, in order (to float rounding on ties).
        best = sorted(direct, reverse=True)[:3]
        assert [direct[a] for a in cands] == pytest.approx(best, abs=1e-4)
        prop = next(e for e in out["events"] if e.get("type") == "proposal")
        assert prop["logprobs"] == pytest.approx(direct, abs=1e-3)
        # The commit is the argmax of the refine scores among the candidates.
        text = P.refine_prompt(obs, out["simulation"]["text"], out["critique"]["text"], 0)
        refine = score_continuations(local, local.render([system, {"role": "user", "content": text}]),
                                     refine_options(cands))  # fmt: skip
        assert refine[cands.index(final["action"])] == pytest.approx(max(refine), abs=1e-4)
        choice = next(e for e in out["events"] if e.get("type") == "choice")
        assert choice["logprobs"] == pytest.approx(refine, abs=1e-3)


def test_tiny_model_markov_sweep_with_the_sdk_guard(tiny):
    from sepsis_sdk.truth.agent import markov_agent_value

    path, _ = tiny
    g = build_psr_graph(f"local/{path}", world_model=FakeWorldModel(), decide="loglik", n_candidates=2,
                        fallback=HoldSafePolicy())  # fmt: skip
    r = markov_agent_value(g, model=f"local/{path}", states=range(4), complete_with=HoldSafePolicy(),
                           options={"decide": "loglik"}, max_concurrency=2)  # fmt: skip
    assert r.value is not None and r.shares.get("fallback", 0.0) == 0.0
    assert r.shares["model"] + r.shares["guard"] == pytest.approx(1.0)
    assert ((r.actions[:4] >= 0) & (r.actions[:4] < 25)).all()


# ---------------------------------------------------------------------------------------------- CLI
def _evaluate(tmp_path, *extra):
    from typer.testing import CliRunner

    from sepsis_sdk.cli import app

    args = ["evaluate-agent", "--states", "0-1", "--complete-with", "clinician", "--cache", str(tmp_path / "cache"),
            *extra]  # fmt: skip
    return CliRunner().invoke(app, args, env={"COLUMNS": "200"})


def test_cli_decide_loglik_is_in_the_cache_key(tiny, tmp_path):
    path, _ = tiny
    model = f"local/{path}"
    res = _evaluate(
        tmp_path, "--graph", "psr", "--model", model, "--decide", "loglik", "--out", str(tmp_path / "a")
    )
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "a" / "agent_value.json").read_text())
    assert data["key"]["options"]["decide"] == "loglik" and data["key"]["options"]["max_rounds"] == 1
    assert data["shares"]["model"] == 1.0 and data["new_decisions"] == 2
    # A rerun resumes from the cache without deciding again.
    res = _evaluate(
        tmp_path, "--graph", "psr", "--model", model, "--decide", "loglik", "--out", str(tmp_path / "a")
    )
    assert (
        res.exit_code == 0
        and json.loads((tmp_path / "a" / "agent_value.json").read_text())["new_decisions"] == 0
    )
    # Same model, graph and options but the other decide mode: another cache folder, its own decisions. (The
    # tight deadline makes both fall back at once: only the key is tested here, not the decisions.)
    dirs = []
    for decide in ("generate", "loglik"):
        out = tmp_path / f"d-{decide}"
        res = _evaluate(tmp_path, "--graph", "direct", "--model", model, "--decide", decide, "--deadline", "0.001",
                        "--out", str(out))  # fmt: skip
        assert res.exit_code == 0, res.output
        data = json.loads((out / "agent_value.json").read_text())
        assert data["new_decisions"] == 2
        dirs.append(data["cache_dir"])
        assert ("decide" in data["key"]["options"]) == (decide == "loglik")
    assert dirs[0] != dirs[1]


def test_cli_decide_loglik_needs_direct_or_psr_and_a_local_model(tmp_path):
    res = _evaluate(tmp_path, "--graph", "tool-calling", "--decide", "loglik", "--out", str(tmp_path / "o"))
    assert res.exit_code == 2 and "--graph direct or psr" in res.output and "Traceback" not in res.output
    res = _evaluate(tmp_path, "--graph", "direct", "--model", "openai/gpt-4o-mini", "--decide", "loglik",
                    "--out", str(tmp_path / "o"))  # fmt: skip
    assert res.exit_code == 2 and "in-process model" in res.output
    res = _evaluate(
        tmp_path, "--graph", "psr", "--decide", "loglik", "--max-rounds", "2", "--out", str(tmp_path / "o")
    )
    assert res.exit_code == 2 and "max_rounds" in res.output
    res = _evaluate(tmp_path, "--decide", "sample", "--out", str(tmp_path / "o"))
    assert res.exit_code == 2 and "--decide" in res.output


def test_cli_recommend_decide_loglik(tiny, tmp_path):
    from typer.testing import CliRunner

    from sepsis_sdk.cli import app

    path, _ = tiny
    patient = tmp_path / "patient.json"
    patient.write_text(state_histories([7])[0].model_dump_json())
    trace = tmp_path / "trace.json"
    res = CliRunner().invoke(app, ["recommend", "--patient", str(patient), "--model", f"local/{path}", "--decide",
                                   "loglik", "--horizon", "3", "--trace", str(trace)], env={"COLUMNS": "200"})  # fmt: skip
    assert res.exit_code == 0, res.output
    tr = json.loads(trace.read_text())
    assert tr["graph"] == "psr_loglik" and tr["source"] in ("model", "guard") and len(tr["proposals"]) == 1
    assert "Simulated candidates" in res.output


def test_refine_prompt_says_no_rounds_left_even_under_a_context_with_more_rounds():
    from sepsis_sdk.graphs import AgentContext, PSROptions

    chooser = ScriptedChooser({})
    wm = FakeWorldModel()
    g = build_psr_graph(chooser, world_model=wm, decide="loglik", **FREE)
    ctx = AgentContext.create(chooser, world_model=wm, options=PSROptions(max_rounds=3), graph="psr_loglik")
    out = g.invoke({"history": state_histories([9])[0]}, context=ctx)
    assert out["final"]["rounds"] == 1 and len(chooser.asked) == 2
    assert "No rounds are left" in chooser.asked[1][0][1]["content"]


def test_cli_simulation_report_values_is_in_the_key_and_psr_only(tiny, tmp_path):
    path, _ = tiny
    model = f"local/{path}"
    res = _evaluate(tmp_path, "--graph", "psr", "--model", model, "--decide", "loglik", "--simulation-report",
                    "values", "--out", str(tmp_path / "v"))  # fmt: skip
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "v" / "agent_value.json").read_text())
    assert data["key"]["options"]["simulation_report"] == "values" and data["new_decisions"] == 2
    res = _evaluate(
        tmp_path, "--graph", "direct", "--simulation-report", "values", "--out", str(tmp_path / "o")
    )
    assert res.exit_code == 2 and "--graph psr only" in res.output and "Traceback" not in res.output
    res = _evaluate(tmp_path, "--graph", "psr", "--simulation-report", "short", "--out", str(tmp_path / "o"))
    assert res.exit_code == 2 and "simulation_report" in res.output


def test_cli_brief_report_without_critique_is_its_own_key_and_psr_only(tiny, tmp_path):
    path, _ = tiny
    model = f"local/{path}"
    res = _evaluate(tmp_path, "--graph", "psr", "--model", model, "--decide", "loglik", "--simulation-report",
                    "brief", "--no-critique", "--out", str(tmp_path / "b"))  # fmt: skip
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "b" / "agent_value.json").read_text())
    opts = data["key"]["options"]
    assert opts["simulation_report"] == "brief" and opts["refine_critique"] is False
    assert data["new_decisions"] == 2
    res = _evaluate(tmp_path, "--graph", "direct", "--no-critique", "--out", str(tmp_path / "o"))
    assert res.exit_code == 2 and "--graph psr only" in res.output and "Traceback" not in res.output


def test_cli_refuses_a_cautious_report_before_any_decision(tmp_path):
    # the CLI builds no planned continuation, so a cautious report could never be shown: exit 2 at once
    res = _evaluate(
        tmp_path, "--graph", "psr", "--simulation-report", "cautious", "--out", str(tmp_path / "c")
    )
    assert res.exit_code == 2 and "planned continuation" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "c" / "agent_value.json").exists()
