"""README.md stays runnable: every Python block runs, in order, in one namespace, and none of them (nor the
SDK code they call) emits a DeprecationWarning. Also the rewired-graph example the README points to.

Only what needs a download, a GPU or minutes is swapped, by exact text (so a README edit that drops one of
these lines fails here and gets looked at): the torch world model becomes the fake world model, and the
embedded SmolLM2 model of the first agent run becomes a schema-driven fake model. Nothing else is injected:
every name a block uses is defined by that block or an earlier one, as for a reader pasting them in order.
The "Test your code with the fakes" block is also written out as the ``conftest.py`` and ``test_agent.py``
it shows and run through pytest.
"""

from __future__ import annotations

import re
import runpy
import subprocess
import sys
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


def readme_test_files(text: str) -> dict[str, str]:
    """The files of the fakes section's block: ``# conftest.py`` / ``# test_agent.py`` headed parts."""
    (code,) = [c for _, c in python_blocks(text) if c.startswith("# conftest.py")]
    parts = re.split(r"^# (\w+\.py)\n", code, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_the_readme_has_its_blocks_and_swaps():
    text = README.read_text(encoding="utf-8")
    # every fence that says Python is one of the blocks the next test runs (no ```py / ```python3 strays)
    fences = re.findall(r"^```(\w+)", text, flags=re.M)
    assert {f for f in fences if f.lower().startswith("py")} == {"python"}
    assert len(python_blocks(text)) == fences.count("python") >= 7
    for old in SWAPS:
        assert text.count(old) == 1, f"README no longer contains {old!r}: update SWAPS in this test"
    for deprecated in ("AgentDeps", "monte_carlo_value", "true_value_of", "monte_carlo_true_value"):
        assert deprecated not in text  # deprecated names stay out
    assert set(readme_test_files(text)) == {"conftest.py", "test_agent.py"}


@pytest.mark.slow
def test_every_readme_python_block_runs_without_deprecations(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the data block writes cohort.parquet
    text = README.read_text(encoding="utf-8")
    for old, new in SWAPS.items():
        text = text.replace(old, new)
    # only the stand-ins of the swaps; "model", "history", ... must come from the README itself
    from sepsis_sdk.testing import FakeWorldModel, SchemaChatModel

    ns: dict = {"__name__": "readme", "FakeWorldModel": FakeWorldModel, "SchemaChatModel": SchemaChatModel}
    blocks = python_blocks(text)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ran = 0
        for line, code in blocks:
            exec(compile(code, f"{README}:{line}", "exec"), ns)  # the README's own code
            ran += 1
        ns["test_psr_node_order"](ns["history"])  # the fakes section's test, on the README's history
    assert ran == len(blocks) == text.count("```python")
    assert not own_deprecations(caught, str(README)), own_deprecations(caught, str(README))
    # a few of the values the README shows
    assert ns["a"].index == 16 and ns["a"].to_sepsisagent() == [1, 3]
    assert ns["state"]["final"]["action"] in range(25)
    assert set(ns["ope"].to_frame()["estimator"]) == {"wis", "wpdis", "phwis", "dr", "wdr", "fqe"}
    assert "sofa_trend" in ns["registry"].names


@pytest.mark.slow
def test_the_readme_testing_snippet_passes_under_pytest(tmp_path):
    """The fakes section, saved as the two files it shows, passes under pytest (its fixture included)."""
    for name, code in readme_test_files(README.read_text(encoding="utf-8")).items():
        (tmp_path / name).write_text(code, encoding="utf-8")
    env_cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-W",
        "error::DeprecationWarning:sepsis_sdk",
    ]
    proc = subprocess.run(
        [*env_cmd, "test_agent.py"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={**__import__("os").environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 passed" in proc.stdout


def test_the_rewire_graph_example_runs(capsys):
    example = str(ROOT / "examples" / "rewire_graph.py")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runpy.run_path(example, run_name="__main__")
    assert not own_deprecations(caught, example), own_deprecations(caught, example)
    out = capsys.readouterr().out
    assert "pick_best" in out and re.search(r"^action \d+ (model|guard|fallback) ", out, flags=re.M)
