import numpy as np
import pytest

from sepsis_sdk.errors import UserError
from sepsis_sdk.rewards import RaghuReward, SurvivalReward, get_reward
from sepsis_sdk.sources.icu_sepsis import sample_cohort


def test_raghu_step_and_terminal_values():
    r = RaghuReward()
    # SOFA unchanged (>0) and lactate flat: only the -0.025 penalty
    assert r({"sofa": 4, "lactate": 2.0}, {"sofa": 4, "lactate": 2.0}, None) == pytest.approx(-0.025)
    # SOFA +2, lactate +1: -0.25 - 2 tanh(1)
    assert r({"sofa": 4, "lactate": 2.0}, {"sofa": 6, "lactate": 3.0}, None) == pytest.approx(
        -0.25 - 2 * np.tanh(1)
    )
    assert r({"sofa": 0, "lactate": 1.0}, {"sofa": 0, "lactate": 1.0}, None) == 0.0
    assert r({}, None, "survival") == 15.0 and r({}, None, "death") == -15.0


def test_relabel_matches_per_transition_calls():
    c = sample_cohort(50, seed=0)
    reward = RaghuReward(lactate="Arterial_lactate")
    relabelled = reward.relabel(c).data
    df = c.data
    for i in range(len(df) - 1):
        if df["done"].iat[i]:
            expected = 15.0 if df["outcome"].iat[i] == 1 else -15.0
        else:
            prev = {"sofa": df["sofa"].iat[i], "Arterial_lactate": df["Arterial_lactate"].iat[i]}
            nxt = {"sofa": df["sofa"].iat[i + 1], "Arterial_lactate": df["Arterial_lactate"].iat[i + 1]}
            expected = reward(prev, nxt, None)
        assert relabelled["reward"].iat[i] == pytest.approx(expected)


def test_survival_reward_reproduces_icu_sepsis_rewards():
    c = sample_cohort(200, seed=2)
    np.testing.assert_array_equal(SurvivalReward().relabel(c).data["reward"], c.data["reward"])
    assert get_reward("survival").name == "survival"
    with pytest.raises(UserError):
        get_reward("nope")
    with pytest.raises(UserError, match="lactate"):
        RaghuReward().relabel(c)
