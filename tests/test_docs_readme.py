"""README.md stays runnable: every Python block runs, in order, in one namespace, and none of them (nor the
SDK code they call) emits a DeprecationWarning. Also the rewired-graph example the README points to.

Only what needs a download, a GPU or minutes is swapped, by exact text (so a README edit that drops one of
these lines fails here and gets looked at): the torch world model becomes the fake world model, and the
embedded SmolLM2 model of the first agent run becomes a schema-driven fake model. Names the README leaves
to the reader (``model``, ``other_model``) are given fakes.
"""

from __future__ import annotations

import re
import runpy
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

#: exact README text -> what the test runs instead (each must occur exactly once)
SWAPS = {
    'sdk.train_world_model(cohort.split(seed=0).train, "torch")': "FakeWorldModel()",
    'build_psr_graph("local/smollm2", world_model=wm, n_candidates=3': (
        "build_psr_graph(SchemaChatModel(), world_model=wm, n_candidates=3"
    ),
}
#: our own code: a DeprecationWarning attributed to one of these files fails the test
OWN = tuple(str(ROOT / d) for d in ("sepsis_sdk", "graphs", "tools", "training", "microbench"))


def own_deprecations(caught: list[warnings.WarningMessage], *files: str) -> list[str]:
    """The DeprecationWarnings attributed to ``files`` or to the SDK's own modules (not third parties')."""
    return [
        f"{w.filename}:{w.lineno}: {w.message}"
        for w in caught
        if issubclass(w.category, DeprecationWarning) and w.filename.startswith((*files, *OWN))
    ]


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(first line number, code)`` of every fenced Python block."""
    out = []
    for m in re.finditer(r"^```python\n(.*?)^```", text, flags=re.S | re.M):
        out.append((text[: m.start()].count("\n") + 2, m.group(1)))
    return out


def test_the_readme_has_its_blocks_and_swaps():
    text = README.read_text(encoding="utf-8")
    assert len(python_blocks(text)) >= 7
    for old in SWAPS:
        assert text.count(old) == 1, f"README no longer contains {old!r}: update SWAPS in this test"
    assert "AgentDeps" not in text and "monte_carlo_value" not in text  # deprecated names stay out


@pytest.mark.slow
def test_every_readme_python_block_runs_without_deprecations(tmp_path, monkeypatch):
    from sepsis_sdk.testing import FakeWorldModel, SchemaChatModel, ScriptedChatModel

    monkeypatch.chdir(tmp_path)  # the data block writes cohort.parquet
    text = README.read_text(encoding="utf-8")
    for old, new in SWAPS.items():
        text = text.replace(old, new)
    proposals = {"candidates": [{"fluid": 2, "vaso": 1}, {"fluid": 4, "vaso": 2}]}
    ns: dict = {
        "__name__": "readme",
        "FakeWorldModel": FakeWorldModel,
        "SchemaChatModel": SchemaChatModel,
        "model": ScriptedChatModel([proposals]),
        "other_model": ScriptedChatModel([proposals]),
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for line, code in python_blocks(text):
            exec(compile(code, f"{README}:{line}", "exec"), ns)  # the README's own code
        ns["test_psr_node_order"](ns["history"])  # the fakes section's test, on a real history
    assert not own_deprecations(caught, str(README)), own_deprecations(caught, str(README))
    # a few of the values the README shows
    assert ns["a"].index == 16 and ns["a"].to_sepsisagent() == [1, 3]
    assert ns["state"]["final"]["action"] in range(25)
    assert set(ns["ope"].to_frame()["estimator"]) == {"wis", "wpdis", "phwis", "dr", "wdr", "fqe"}
    assert "sofa_trend" in ns["registry"].names


def test_the_rewire_graph_example_runs(capsys):
    example = str(ROOT / "examples" / "rewire_graph.py")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runpy.run_path(example, run_name="__main__")
    assert not own_deprecations(caught, example), own_deprecations(caught, example)
    out = capsys.readouterr().out
    assert "pick_best" in out and re.search(r"^action \d+ (model|guard|fallback) ", out, flags=re.M)
