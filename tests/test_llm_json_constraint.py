"""The JSON-schema prefix validator behind constrained decoding."""

from __future__ import annotations

import json
from typing import Literal, Optional, Union

import pytest
from pydantic import BaseModel, Field

from sepsis_sdk.llm._json_constraint import JsonPrefix


class Inner(BaseModel):
    name: str = Field(max_length=5)
    ok: bool


class Plan(BaseModel):
    fluid: int = Field(ge=0, le=4)
    vaso: int = Field(ge=0, le=4)
    why: str = ""
    kind: Literal["up", "down"] = "up"
    tags: list[str] = Field(default_factory=list, max_length=2)
    inner: Optional[Inner] = None
    dose: Union[int, float] = 0
    extra: dict[str, int] = Field(default_factory=dict)


SCHEMA = Plan.model_json_schema()
FULL = (
    '{"fluid": 2, "vaso":0,"why": "MAP \\"low\\" \\u00e9", "kind": "down", "tags": ["a", "b"], '
    '"inner": {"name": "n", "ok": true}, "dose": -1.5e3, "extra": {"k": 3}}'
)


def test_every_prefix_of_a_valid_document_is_partial_and_the_whole_is_complete():
    Plan.model_validate_json(FULL)
    v = JsonPrefix(SCHEMA)
    statuses = [v.check(FULL[:k]) for k in range(len(FULL))]
    assert statuses == ["partial"] * len(FULL)
    assert v.check(FULL) == "complete"


@pytest.mark.parametrize(
    "text",
    [
        '{"fluid": 5',  # above maximum, pruned at once
        '{"fluid": -',  # minimum 0: no sign
        '{"fluid": 1.5',  # integer
        '{"fluid": 1, "fluid"',  # duplicate key
        '{"bogus"',  # undeclared key
        '{"vaso": 1}',  # required fluid missing
        '{"fluid":1,"vaso":2,"kind":"s',  # not an enum prefix
        '{"fluid":1,"vaso":2,"tags":["a","b",',  # maxItems 2
        '{"fluid":1,"vaso":2,"inner":{"name":"toolong"',  # maxLength 5
        '{"fluid":1,"vaso":2}  ',  # trailing text after the value
        '{  "fluid"',  # at most one whitespace character in a row
        '{"fluid":01',  # leading zero
        '{"fluid":1,"vaso":2,"why":"a\x01',  # control character in a string
        '{"fluid":1,"vaso":2,"extra":{"k":"v"',  # dict values must be integers
        "[1]",  # top level must be an object
    ],
)
def test_invalid_texts(text):
    assert JsonPrefix(SCHEMA).check(text) == "invalid"


def test_any_of_backtracks_between_alternatives():
    # dose is int | float: "1." is only a prefix of the float branch, "1.5}" completes it.
    v = JsonPrefix(SCHEMA)
    assert v.check('{"fluid":1,"vaso":2,"dose":1.') == "partial"
    assert v.check('{"fluid":1,"vaso":2,"dose":1.5}') == "complete"
    assert v.check('{"fluid":1,"vaso":2,"inner":null}') == "complete"


def test_generic_object_when_no_schema():
    v = JsonPrefix(None)
    assert v.check('{"a": [1, {"b": null}], "c": "d"}') == "complete"
    assert v.check('{"a": [1, {"b": nul') == "partial"
    assert v.check('{"a": tru e}') == "invalid"


def test_enum_const_and_arrays_of_refs():
    class Step(BaseModel):
        level: Literal[0, 1, 2]

    class Steps(BaseModel):
        steps: list[Step] = Field(min_length=1)
        tag: Literal["x"]

    v = JsonPrefix(Steps.model_json_schema())
    assert v.check('{"steps": [], "tag": "x"}') == "invalid"  # minItems 1
    assert v.check('{"steps": [{"level": 2}], "tag": "x"}') == "complete"
    assert v.check('{"steps": [{"level": 3') == "invalid"
    assert v.check('{"tag": "y') == "invalid"


def test_exhaustive_small_documents_agree_with_json_and_pydantic():
    class Small(BaseModel):
        a: int = Field(ge=0, le=9)
        b: bool

    v = JsonPrefix(Small.model_json_schema())
    docs = [json.dumps({"a": a, "b": b}) for a in range(12) for b in (True, False)]
    for doc in docs:
        try:
            Small.model_validate_json(doc)
            valid = True
        except ValueError:
            valid = False
        assert (v.check(doc) == "complete") == valid, doc


def test_exclusive_bounds_and_exponents_are_pruned_early():
    v = JsonPrefix(
        {
            "type": "object",
            "properties": {
                "p": {"type": "number", "exclusiveMaximum": 1, "exclusiveMinimum": -1},
                "n": {"type": "integer", "minimum": -3, "maximum": 3},
            },
        }
    )
    assert v.check('{"p": 0.5') == "partial"
    assert v.check('{"p": 1') == "invalid"  # 1.x >= 1: no continuation can be valid
    assert v.check('{"p": -1') == "invalid"
    assert v.check('{"p": -0.5}') == "complete"
    assert v.check('{"p": 0e') == "invalid"
    assert v.check('{"n": -4') == "invalid"
    assert v.check('{"n": -3}') == "complete"
    assert v.check('{"n": 30') == "invalid"
