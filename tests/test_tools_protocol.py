"""The SepsisAgent protocol's `simulation` and `prescription` as registry tools with validated arguments."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sepsis_sdk.features import FeatureSchema, FeatureSpec
from sepsis_sdk.tools import (
    PRESCRIPTION_TOOL,
    SIMULATION_TOOL,
    PrescriptionArgs,
    SimulationArgs,
    ToolContext,
    ToolRegistry,
    openai_schema,
    prescription,
    protocol_tools,
    simulation,
)
from sepsis_sdk.types import Observation, PatientHistory
from sepsis_sdk.world_model.fake import FakeWorldModel

SCHEMA = FeatureSchema(
    name="mini-mimic",
    features=(
        FeatureSpec(name="meanbp", unit="mmHg", lower=20, upper=200),
        FeatureSpec(name="lactate", unit="mmol/L", lower=0.1, upper=30),
    ),
)


def make_history() -> PatientHistory:
    obs = tuple(Observation(t=i, values=(m, 3.0)) for i, m in enumerate([70.0, 62.0]))
    return PatientHistory(patient_id="p", observations=obs, actions=(5,), feature_names=tuple(SCHEMA.names))


@pytest.mark.parametrize(
    ("actions", "expected"),
    [
        (["[1, 2]", "[0, 3]"], [11, 15]),  # the release's form: strings "[vaso, fluid]"
        ([[1, 2], [0, 3]], [11, 15]),  # [vaso, fluid] lists
        ('["[1, 2]", "[0, 3]"]', [11, 15]),  # the whole list as one JSON string
        ("[[1, 2]]", [11]),
        ("[1, 2]", [11]),  # one action as a string
        ([1, 2], [11]),  # one bare pair
        (["(4, 0)"], [4]),
    ],
)
def test_simulation_args_accept_the_forms_models_send(actions, expected):
    assert [a.index for a in SimulationArgs(actions=actions).actions] == expected


@pytest.mark.parametrize(
    ("actions", "problem"),
    [
        (["[1, 2]", "[0, 3]", "[2, 2]", "[4, 4]"], "at most 3 actions"),
        (["[7, 1]"], "level must be 0-4"),
        ([], "non-empty list"),
        (["[1]"], "expected [vaso, fluid]"),
        ([3.5], "[vasopressor, fluid]"),
    ],
)
def test_simulation_args_reject_with_a_readable_reason(actions, problem):
    with pytest.raises(ValidationError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        SimulationArgs(actions=actions)


def test_prescription_args():
    assert PrescriptionArgs(vasopressor="1", iv_fluid=2.0).to_action().index == 11
    for bad in ({"vasopressor": 5, "iv_fluid": 1}, {"vasopressor": True, "iv_fluid": 1}, {"vasopressor": 1.5, "iv_fluid": 1},
                {"vasopressor": 1}, {"vasopressor": 1, "iv_fluid": 1, "why": "x"}):  # fmt: skip
        with pytest.raises(ValidationError):
            PrescriptionArgs(**bad)


def test_schemas_are_the_releases():
    assert openai_schema(simulation) == SIMULATION_TOOL and openai_schema(prescription) == PRESCRIPTION_TOOL
    assert [t.name for t in protocol_tools()] == ["simulation", "prescription"]


def test_through_the_registry_errors_come_back_as_text():
    reg = ToolRegistry(protocol_tools())
    ctx = ToolContext(history=make_history(), world_model=FakeWorldModel(SCHEMA), horizon=2, n_samples=2)
    ok = reg.invoke("simulation", '{"actions": ["[1, 2]", "[0, 3]"]}', ctx)
    assert ok.ok and [c["action"] for c in ok.data["candidates"]] == [11, 15] and ok.data["horizon"] == 2
    assert "World-model simulation" in ok.content
    too_many = reg.invoke("simulation", {"actions": ["[0, 0]"] * 4}, ctx)
    assert (
        not too_many.ok
        and "at most 3 actions" in too_many.content
        and "[vasopressor, fluid]" in too_many.content
    )
    assert "failed" in reg.invoke("simulation", '{"actions": ["[1, 2]"', ctx).content  # malformed JSON
    rx = reg.invoke("prescription", {"vasopressor": 2, "iv_fluid": 2}, ctx)
    assert rx.ok and rx.data["action"] == 12 and rx.data["sepsisagent"] == [2, 2] and rx.value.index == 12
    bad = reg.invoke("prescription", {"vasopressor": 5, "iv_fluid": 1}, ctx)
    assert not bad.ok and bad.content.startswith("Invalid prescription") and "vasopressor" in bad.content


def test_simulation_without_a_world_model_is_a_tool_error():
    res = ToolRegistry(protocol_tools()).invoke(
        "simulation", {"actions": ["[0, 1]"]}, ToolContext(history=make_history())
    )
    assert not res.ok and "needs a world model" in res.content
