"""The hidden-truth invariant: only the truth layer and the ICU-Sepsis sampler read the hidden dynamics.

An AST scan of every module shipped in the package (sepsis_sdk plus the mapped tools/, graphs/, training/,
microbench/ folders) for what reveals the true dynamics: the transition matrix (``tx_mat``), the admissible
sets (``admissible_actions``), the MDP itself (``load_mdp``, ``ICUSepsisMDP``) and the hidden state
(``state_id``: attribute, column name or a non-None keyword).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {
    "sepsis_sdk": "sepsis_sdk",
    "tools": "sepsis_sdk.tools",
    "graphs": "sepsis_sdk.graphs",
    "training": "sepsis_sdk.training",
    "microbench": "sepsis_sdk.microbench",
}
HIDDEN_ATTRS = {"tx_mat", "_tx_mat", "admissible_actions", "_admissible_actions", "state_id"}
HIDDEN_NAMES = {"load_mdp", "ICUSepsisMDP", "tx_mat", "admissible_actions"}
HIDDEN_STRINGS = {"state_id", "tx_mat"}

#: The modules allowed to read the hidden dynamics: the truth layer and the sampler it drives.
ALLOWED_PREFIXES = ("sepsis_sdk.truth", "sepsis_sdk.sources.icu_sepsis")

#: Documented exceptions: module -> why it still touches the hidden state. Each entry must still be needed
#: (a stale entry fails ``test_exceptions_are_not_stale``: delete it when its module is cleaned up).
EXCEPTIONS = {
    # Carriers, not readers: they move the sampler's ``state_id`` column to the truth layer unchanged.
    "sepsis_sdk.types": "declares the optional state_id field of Step/PatientHistory (scoring only)",
    "sepsis_sdk.cohort": "carries the state_id column into histories and reports has_state_ids",
    # Policies *defined on* the hidden states: reference tables (built-in 'optimal', 'clinician', ...)
    # that are scored, never learned; they are applied by state on ICU-Sepsis cohorts only.
    "sepsis_sdk.policies._base": "StateTablePolicy looks up its table by history.state_id",
    "sepsis_sdk.evaluation.ope": "state_table_probabilities applies a state table by the state_id column",
    "sepsis_sdk.evaluation.behaviour": "KnownBehaviour: the sampler's true behaviour table, OPE validation",
    "sepsis_sdk.evaluation.validation": "OPE validation study on ICU-Sepsis (softens the known behaviour)",
}


def _modules():
    for folder, pkg in FOLDERS.items():
        for f in sorted((ROOT / folder).rglob("*.py")):
            parts = [p for p in f.relative_to(ROOT / folder).with_suffix("").parts if p != "__init__"]
            yield ".".join([pkg, *parts]), f


def _hidden_uses(tree: ast.AST) -> set[str]:
    hits = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Attribute) and n.attr in HIDDEN_ATTRS:
            hits.add(f".{n.attr}")
        elif isinstance(n, ast.Name) and n.id in HIDDEN_NAMES:
            hits.add(n.id)
        elif isinstance(n, ast.alias) and n.name in HIDDEN_NAMES:
            hits.add(f"import {n.name}")
        elif isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value in HIDDEN_STRINGS:
            hits.add(repr(n.value))
        elif (
            isinstance(n, ast.keyword)
            and n.arg in HIDDEN_ATTRS
            and not (isinstance(n.value, ast.Constant) and n.value.value is None)  # state_id=None: no truth
        ):
            hits.add(f"{n.arg}=")
    return hits


@pytest.fixture(scope="module")
def readers() -> dict[str, set[str]]:
    out = {}
    for mod, f in _modules():
        hits = _hidden_uses(ast.parse(f.read_text(encoding="utf-8")))
        if hits and not mod.startswith(ALLOWED_PREFIXES):
            out[mod] = hits
    return out


def test_only_the_truth_layer_reads_the_hidden_dynamics(readers):
    unexpected = {m: sorted(h) for m, h in readers.items() if m not in EXCEPTIONS}
    assert not unexpected, (
        "these modules read hidden ICU-Sepsis truth (go through sepsis_sdk.truth instead, e.g. "
        f"truth_for(cohort), or document an exception in tests/test_truth_invariant.py): {unexpected}"
    )


def test_exceptions_are_not_stale(readers):
    stale = sorted(set(EXCEPTIONS) - set(readers))
    assert not stale, f"no longer read hidden truth: remove them from EXCEPTIONS: {stale}"


def test_the_scan_catches_a_reader():
    src = "from sepsis_sdk.sources.icu_sepsis import load_mdp\np = load_mdp().tx_mat\nx = df['state_id']\n"
    assert _hidden_uses(ast.parse(src)) == {"import load_mdp", "load_mdp", ".tx_mat", "'state_id'"}
    assert _hidden_uses(ast.parse("PatientHistory(state_id=None)")) == set()


def test_sources_never_import_the_truth_layer():
    """The truth layer builds on the sources (the sampler is its simulator), never the reverse: no circle."""
    bad = []
    for mod, f in _modules():
        if not mod.startswith("sepsis_sdk.sources"):
            continue
        for n in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            names = [n.module or ""] if isinstance(n, ast.ImportFrom) else []
            names += [a.name for a in n.names] if isinstance(n, ast.Import) else []
            bad += [f"{mod} -> {x}" for x in names if x.startswith("sepsis_sdk.truth")]
    assert not bad, bad
