"""A Gymnasium environment inside any world model, so RL libraries can train in the learned simulator.

Example:
    >>> from sepsis_sdk.rewards import SurvivalReward
    >>> env = WorldModelEnv(wm, cohort, reward=SurvivalReward())       # doctest: +SKIP
    >>> obs, info = env.reset(seed=0)                                    # doctest: +SKIP
    >>> obs, r, terminated, truncated, info = env.step(7)                # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from sepsis_sdk.actions import N_ACTIONS, validate_index
from sepsis_sdk.errors import UserError
from sepsis_sdk.types import Observation, PatientHistory

RewardFn = Callable[[Mapping[str, float], "Mapping[str, float] | None", "str | None"], float]


def _default_reward(prev: Mapping[str, float], nxt: Mapping[str, float] | None, outcome: str | None) -> float:
    return 1.0 if outcome == "survival" else 0.0


class WorldModelEnv(gym.Env):
    """Episodes simulated by a world model, one 4-hour decision per step, 25 discrete actions.

    Observations are the stored feature values (``Box`` inside the schema's bounds). An episode starts
    from the first decision point of a randomly drawn cohort patient and ends when the model samples death
    or discharge (``terminated``) or after ``max_steps`` (``truncated``).

    Args:
        world_model: any object with the WorldModel protocol.
        initial: a :class:`~sepsis_sdk.Cohort` (its patients' first observations) or a list of
            :class:`~sepsis_sdk.PatientHistory` to start from.
        reward: ``reward(prev, next, outcome) -> float`` with ``prev``/``next`` mapping feature names to
            stored values (``next`` is None on a terminal step) and ``outcome`` ``"survival"``, ``"death"``
            or None, as :class:`sepsis_sdk.rewards.SurvivalReward` and ``RaghuReward``. Default: +1 on
            survival.
        max_steps: truncation horizon.
        seed: default seed (``reset(seed=...)`` overrides it).

    ``info`` carries ``outcome``, ``p_death``, ``p_discharge`` and ``support`` of the step's action.
    """

    metadata = {"render_modes": []}  # noqa: RUF012

    def __init__(
        self,
        world_model: Any,
        initial: Any,
        *,
        reward: RewardFn | None = None,
        max_steps: int = 20,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.world_model = world_model
        schema = world_model.schema
        self.names = tuple(schema.names)
        if hasattr(initial, "episodes") and hasattr(initial, "schema"):
            starts = [ep.history(0) for ep in initial.episodes()]
        else:
            starts = list(initial)
        if not starts:
            raise UserError("WorldModelEnv needs at least one initial patient")
        self._starts: Sequence[PatientHistory] = starts
        self.reward_fn = reward or _default_reward
        if max_steps < 1:
            raise UserError(f"max_steps must be >= 1, got {max_steps}")
        self.max_steps = int(max_steps)
        lo, hi = (np.asarray(b, dtype=np.float32) for b in schema.bounds())
        self.observation_space = gym.spaces.Box(lo, hi, dtype=np.float32)
        self.action_space = gym.spaces.Discrete(N_ACTIONS)
        self._seed = seed
        self._history: PatientHistory | None = None
        self._steps = 0

    def _obs(self) -> np.ndarray:
        assert self._history is not None
        v = np.asarray(self._history.current.values, dtype=np.float64)
        lo, hi = self.observation_space.low, self.observation_space.high
        return np.clip(np.nan_to_num(v, nan=0.0), lo, hi).astype(np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed if seed is not None else self._seed)
        self._seed = None
        i = int(self.np_random.integers(len(self._starts)))
        if options and "patient" in options:
            i = int(options["patient"])
        start = self._starts[i]
        self._history = PatientHistory(
            patient_id=f"{start.patient_id}-sim",
            observations=(start.observations[-1].model_copy(update={"t": 0}),),
            static=start.static,
            feature_names=start.feature_names or self.names,
        )
        self._steps = 0
        return self._obs(), {"patient": start.patient_id}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._history is None:
            raise UserError("call reset() before step()")
        a = validate_index(int(action) if isinstance(action, np.integer) else action)
        h = self._history
        seed = int(self.np_random.integers(2**31))
        out = self.world_model.rollout([h], np.array([[[a]]]), n_samples=1, seed=seed)
        code = int(out.terminal[0, 0, 0]) if out.terminal is not None else (0 if out.alive[0, 0, 0, 0] else 1)
        outcome = {0: None, 1: "death", 2: "survival"}[code]
        prev = dict(zip(self.names, h.current.values, strict=True))
        self._steps += 1
        info = {
            "outcome": outcome,
            "p_death": float(out.p_death[0, 0]),
            "p_discharge": float(out.p_discharge[0, 0]),
            "support": float(out.support[0, 0]),
        }
        if outcome is not None:
            r = float(self.reward_fn(prev, None, outcome))
            self._history = h.model_copy(
                update={
                    "actions": (*h.actions, a),
                    "observations": (*h.observations, h.current.model_copy(update={"t": h.t + 1})),
                }
            )
            return self._obs(), r, True, False, info
        nxt = np.asarray(out.states[0, 0, 0, 0], dtype=np.float64)
        r = float(self.reward_fn(prev, dict(zip(self.names, nxt.tolist(), strict=True)), None))
        obs = Observation(t=h.t + 1, values=tuple(nxt.tolist()))
        self._history = PatientHistory(
            patient_id=h.patient_id,
            observations=(*h.observations, obs)[-(self.world_model.window) :],
            actions=(*h.actions, a)[-(self.world_model.window - 1) :] if self.world_model.window > 1 else (),
            static=h.static,
            feature_names=h.feature_names,
        )
        truncated = self._steps >= self.max_steps
        return self._obs(), r, False, truncated, info
