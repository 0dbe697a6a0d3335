"""Safety in one home: one verdict type, one evaluator (single check == 25-action mask == cohort), no hidden
admissibility in safety/tools/graphs, and a guard that is never changed by the graphs that share it."""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import numpy as np
import pytest

from sepsis_sdk.actions import N_ACTIONS
from sepsis_sdk.features import FeatureSchema, FeatureSpec
from sepsis_sdk.safety import (
    HoldSafePolicy,
    NoRules,
    RuleContext,
    RuleFinding,
    RuleResult,
    RuleSetChecker,
    RuleVerdict,
    allowed_mask,
    as_safety_checker,
    hard_rule_mask,
    load_rules,
    nearest_allowed,
)
from sepsis_sdk.types import Observation, PatientHistory

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = FeatureSchema(
    name="mini-mimic",
    features=(
        FeatureSpec(name="meanbp", unit="mmHg", lower=20, upper=200),
        FeatureSpec(name="lactate", unit="mmol/L", lower=0.1, upper=30),
    ),
)


def make_history(map_now=58.0, lactate=3.4, actions=(5, 5)) -> PatientHistory:
    vals = [(70.0, 2.5), (62.0, 3.0), (map_now, lactate)][-(len(actions) + 1) :]
    obs = tuple(Observation(t=i, values=v) for i, v in enumerate(vals))
    return PatientHistory(
        patient_id="p2", observations=obs, actions=actions, feature_names=tuple(SCHEMA.names)
    )


# ---------------------------------------------------------------------------------------------- one verdict type
def test_one_verdict_type_for_engine_and_checkers():
    import sepsis_sdk.tools as tools
    import sepsis_sdk.tools._safety as old_safety

    assert RuleResult is RuleVerdict and RuleFinding is RuleVerdict
    assert tools.RuleFinding is RuleVerdict and old_safety.RuleFinding is RuleVerdict
    rules = load_rules()
    engine = rules.check(RuleContext(fluid=0, vaso=0, t=1, prev_fluid=0, prev_vaso=0, values={"map": 60.0}))
    checker = RuleSetChecker(hard=["G1"]).check(make_history(), 0, SCHEMA)
    assert all(type(v) is RuleVerdict for v in engine + checker)
    # the rule set enforces nothing by itself; the checker marks its hard rules
    assert not any(v.hard for v in engine)
    assert {v.rule_id for v in checker if v.hard} == {"G1"}
    g1 = next(v for v in checker if v.rule_id == "G1")
    assert (g1.applicable, g1.violated, g1.triggered, g1.kind) == (True, True, True, "guideline")
    # a rule that cannot be judged says so (violated None, not False), in both paths
    h3 = next(v for v in checker if v.rule_id == "H3")
    assert h3.applicable is False and h3.violated is None and "cum_balance" in h3.reason
    # a verdict built by hand, as custom checkers did with RuleFinding, is enforced by default
    assert RuleFinding("X1", True, True, "mine").hard is True


def test_to_dict_is_the_spelling_and_as_dict_warns():
    from sepsis_sdk.graphs import Guard

    v = RuleVerdict("G1", True, False, "ok", triggered=True)
    d = v.to_dict()
    assert d == {
        "rule_id": "G1",
        "applicable": True,
        "violated": False,
        "reason": "ok",
        "triggered": True,
        "approximate": False,
        "kind": "guideline",
        "hard": True,
    }
    with pytest.warns(DeprecationWarning, match="to_dict"):
        assert v.as_dict() == d
    res = Guard().check(make_history(), 16, SCHEMA)
    with pytest.warns(DeprecationWarning, match="to_dict"):
        assert res.as_dict() == res.to_dict()
    assert res.to_dict()["action"] == 16 and res.to_dict()["fluid"] == 3


def test_verdict_fields_after_reason_are_keyword_only():
    with pytest.raises(TypeError):
        RuleVerdict("G1", True, True, "r", True)  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------- one evaluator
def _cohort_agreement(cohort, max_rows: int) -> tuple[int, int]:
    """Assert per-action checks == the 25-action mask == cohort evaluation on the same decisions."""
    rules = load_rules()
    checker = RuleSetChecker(rules)
    n = len(cohort)
    per_action = [rules.evaluate_cohort(cohort, np.full(n, a)) for a in range(N_ACTIONS)]
    uniform = rules.evaluate_cohort(cohort, np.full((n, N_ACTIONS), 1 / N_ACTIONS))
    hard_rows = [per_action[0].row(r) for r in sorted(checker.hard)]
    t_col = cohort.data["t"].to_numpy()
    masked = judged = 0
    for i, h in enumerate(cohort.histories()):
        if i >= max_rows:
            break
        assert h.t == t_col[i]
        mask = checker.hard_mask(h, cohort.schema)
        table = rules.action_violations(checker.context(h, 0, cohort.schema))
        for a in range(N_ACTIONS):
            verdicts = checker.check(h, a, cohort.schema)
            res = per_action[a]
            for v in verdicts:
                r = res.row(v.rule_id)
                # single check == cohort evaluation with that action
                assert v.applicable == bool(res.applicable[r, i]), (i, a, v)
                assert bool(v.violated) == bool(res.violated[r, i]), (i, a, v)
                # the 25-action table == the single check, where the rule can be judged for every action
                if table[v.rule_id] is not None:
                    assert bool(table[v.rule_id][a]) == bool(v.violated)
            per_action_hard = any(v.hard and v.violated for v in verdicts)
            # the hard-rule mask == per-action checks == the cohort evaluation of each action
            assert mask[a] == per_action_hard == bool(res.violated[hard_rows, i].any()), (i, a)
        for rid in uniform.rule_ids:
            r = uniform.row(rid)
            if uniform.applicable[r, i]:
                judged += 1
                # the 25-candidate (probability) path == the mean of the one-action paths
                mean = np.mean([per_action[a].violated[r, i] for a in range(N_ACTIONS)])
                assert uniform.violated[r, i] == pytest.approx(mean)
        masked += int(mask.any())
    return masked, judged


def test_mask_equals_per_action_checks_equals_cohort_on_icu_sepsis():
    from sepsis_sdk.sources.icu_sepsis import sample_cohort

    masked, judged = _cohort_agreement(sample_cohort(8, seed=5), max_rows=40)
    assert masked > 0 and judged > 0  # covered states where some action breaks a hard rule


def test_mask_equals_per_action_checks_equals_cohort_in_clinical_units():
    from sepsis_sdk.sources.synthetic import synthesize_cohort

    masked, judged = _cohort_agreement(synthesize_cohort(8, seed=1), max_rows=60)
    assert masked > 0 and judged > 0


def test_hard_rule_mask_without_a_fast_path_asks_check_per_action():
    class OnlyCheck:
        name = "only-check"

        def check(self, history, action, schema):
            return [RuleVerdict("X", True, action >= 20, "top fluid")]

    m = hard_rule_mask(OnlyCheck(), make_history(), SCHEMA)
    assert m.tolist() == [a >= 20 for a in range(N_ACTIONS)]
    assert as_safety_checker(OnlyCheck()).name == "only-check"
    assert isinstance(as_safety_checker(False), NoRules)
    assert isinstance(as_safety_checker(load_rules()), RuleSetChecker)


def test_allowed_mask_admissibility_is_explicit():
    h = make_history()  # MAP 58, lactate 3.4: G1 forbids (0, 0), H1 low fluid without vaso
    safe = ~hard_rule_mask(as_safety_checker(), h, SCHEMA)
    assert np.array_equal(allowed_mask(h, SCHEMA, None), safe)
    adm = np.zeros(N_ACTIONS, dtype=bool)
    adm[[0, 16]] = True
    assert np.flatnonzero(allowed_mask(h, SCHEMA, None, admissible=adm)).tolist() == [16]
    notes: list[str] = []
    only_unsafe = np.zeros(N_ACTIONS, dtype=bool)
    only_unsafe[0] = True
    assert np.array_equal(allowed_mask(h, SCHEMA, None, admissible=only_unsafe, notes=notes), safe)
    assert "admissibility relaxed" in notes[0]
    with pytest.raises(Exception, match="25 booleans"):
        allowed_mask(h, SCHEMA, None, admissible=[True])
    assert nearest_allowed(0, allowed_mask(h, SCHEMA, None)) in (1, 5)
    # HoldSafePolicy takes the same explicit lookup
    assert HoldSafePolicy(admissible=lambda _: adm).choose(h, SCHEMA) == 16


# ---------------------------------------------------------------------------------------------- hidden truth
SCANNED = ("sepsis_sdk/safety", "tools", "graphs")
HIDDEN = {"hidden_admissible_mask", "admissible_mask", "load_mdp", "state_id", "admissible_actions"}


def _hidden_imports(tree: ast.AST) -> list[str]:
    """Imports of the truth layer / the MDP and reads of ``state_id`` outside a deprecation ``__getattr__``."""
    shim: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
            shim |= {id(n) for n in ast.walk(node)}
    hits = []
    for node in ast.walk(tree):
        if id(node) in shim:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            names = {a.name for a in node.names}
            if node.module.startswith("sepsis_sdk.truth") or names & HIDDEN:
                hits.append(f"from {node.module} import {sorted(names)}")
        elif isinstance(node, ast.Import):
            hits += [f"import {a.name}" for a in node.names if a.name.startswith("sepsis_sdk.truth")]
        elif isinstance(node, ast.Attribute) and node.attr in HIDDEN:
            hits.append(f".{node.attr}")
    return hits


def test_hidden_admissibility_is_not_imported_by_safety_tools_or_graphs():
    scanned = 0
    for folder in SCANNED:
        for f in sorted((ROOT / folder).rglob("*.py")):
            hits = _hidden_imports(ast.parse(f.read_text(encoding="utf-8")))
            assert not hits, f"{f.relative_to(ROOT)} reads hidden truth: {hits}"
            scanned += 1
    assert scanned > 15


def test_the_scan_would_catch_a_hidden_lookup():
    bad = "from sepsis_sdk.truth import hidden_admissible_mask\nx = h.state_id\n"
    assert len(_hidden_imports(ast.parse(bad))) == 2
    ok = "def __getattr__(name):\n    from sepsis_sdk.truth import hidden_admissible_mask\n"
    assert _hidden_imports(ast.parse(ok)) == []


def test_hidden_admissible_mask_is_a_labelled_truth_function():
    from sepsis_sdk.sources.icu_sepsis import load_mdp, sample_cohort
    from sepsis_sdk.truth import hidden_admissible_mask

    assert "hidden" in hidden_admissible_mask.__doc__.lower()
    h = next(iter(sample_cohort(2, seed=3).histories()))
    assert np.array_equal(hidden_admissible_mask(h), load_mdp().admissible[h.state_id])
    assert hidden_admissible_mask(make_history()) is None
    import sepsis_sdk.tools as tools

    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert tools.admissible_mask is hidden_admissible_mask
    assert any(issubclass(x.category, DeprecationWarning) for x in w)


# ---------------------------------------------------------------------------------------------- rendering
def test_rendering_is_a_public_core_module():
    import sepsis_sdk.render as render
    import sepsis_sdk.tools as tools
    import sepsis_sdk.tools._render as old

    assert render.__all__ == sorted(render.__all__)
    for name in ("render_history", "infer_schema", "key_features"):
        assert getattr(tools, name) is getattr(render, name) is getattr(old, name)
    text = render.render_history(make_history(), SCHEMA)
    assert "MAP [meanbp]: 70 mmHg, 62 mmHg, 58 mmHg (falling)" in text
    assert render.short_action(16) == "[fluid 3, vaso 1]"


def test_moved_names_stay_importable_from_graphs_and_tools():
    import sepsis_sdk.graphs as graphs
    import sepsis_sdk.safety as safety
    import sepsis_sdk.tools as tools

    for name in ("HoldSafePolicy", "allowed_mask", "nearest_allowed"):
        assert getattr(graphs, name) is getattr(safety, name)
    for name in ("DEFAULT_HARD_RULES", "NoRules", "RuleSetChecker", "SafetyChecker", "as_safety_checker"):
        assert getattr(tools, name) is getattr(safety, name)
    assert tools.safety_matrix is safety.hard_rule_mask and tools.violations is safety.violations
