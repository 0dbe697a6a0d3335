import numpy as np
import pytest

from sepsis_sdk.actions import (
    FLUID_BINS,
    FLUID_EDGES,
    VASO_BINS,
    VASO_EDGES,
    Action,
    all_actions,
    bin_dose,
    indices,
    validate_index,
)
from sepsis_sdk.errors import InvalidActionError


def test_index_is_fluid_major_and_round_trips():
    assert Action(fluid=3, vaso=1).index == 16
    assert [a.index for a in all_actions()] == list(range(25))
    for i in range(25):
        a = Action.from_index(i)
        assert (a.fluid, a.vaso) == divmod(i, 5)
        assert Action.from_index(a.index) == a


def test_sepsisagent_order_is_vaso_first():
    a = Action(fluid=4, vaso=2)
    assert a.to_sepsisagent() == [2, 4]
    assert Action.from_sepsisagent([2, 4]) == a
    assert Action.from_sepsisagent("[2, 4]") == a
    assert Action.from_sepsisagent(" (0,3) ") == Action(fluid=3, vaso=0)


@pytest.mark.parametrize("bad", [-1, 25, 3.5, "7", None, True, np.int64(30)])
def test_invalid_indices_raise(bad):
    with pytest.raises(InvalidActionError):
        validate_index(bad)


@pytest.mark.parametrize(
    "kwargs", [{"fluid": 5, "vaso": 0}, {"fluid": 0, "vaso": -1}, {"fluid": 1.5, "vaso": 0}]
)
def test_invalid_levels_raise(kwargs):
    with pytest.raises(InvalidActionError):
        Action(**kwargs)


@pytest.mark.parametrize("text", ["[1]", "[a, b]", "[1, 2, 3]", "[7, 0]"])
def test_bad_sepsisagent_pairs_raise(text):
    with pytest.raises(InvalidActionError):
        Action.from_sepsisagent(text)


def test_numpy_integers_and_positional_args_are_accepted():
    assert Action(np.int64(2), np.int32(1)).index == 11
    assert validate_index(np.int64(24)) == 24
    assert indices([Action(fluid=0, vaso=1), 7]) == [1, 7]


def test_dose_binning_follows_published_edges():
    assert [bin_dose(d, FLUID_EDGES) for d in (0, 1, 50, 50.1, 180, 200, 530, 531)] == [
        0,
        1,
        1,
        2,
        2,
        3,
        3,
        4,
    ]
    assert [bin_dose(d, VASO_EDGES) for d in (0, 0.001, 0.08, 0.1, 0.45, 0.5)] == [0, 1, 1, 2, 3, 4]
    assert bin_dose(float("nan"), FLUID_EDGES) == 0
    assert FLUID_BINS[4].label() == ">530 mL/4h"
    assert VASO_BINS[0].label() == "none"
    assert "IV fluid 180-530 mL/4h" in Action(fluid=3, vaso=0).describe()
