"""Datasets for the three LLM training stages of SepsisAgent (our implementation of the recipe).

- **Stage I — patient dynamics SFT** (:func:`dynamics_examples`): from real cohort transitions, the model
  reads a patient's history and a treatment and writes the key values at the next 4-hour step. It learns
  how patients evolve before it learns to treat them.
- **Stage II — PSR behaviour cloning** (:func:`psr_examples`): transcripts of the propose-simulate-refine
  loop written by a *teacher* that searches all 25 actions in the world model. Each decision yields two
  examples in the graph's own prompt formats (the propose turn and the refine turn), so the fine-tuned
  model plugs into :func:`sepsis_sdk.graphs.build_psr_graph` unchanged.
- **Stage III — world-model RL** (:func:`rl_prompts` + :class:`WorldModelReward`): prompts of the direct
  decision format, scored by a reward computed inside the world model (GRPO).

Examples are conversational ``{"prompt": [messages], "completion": [messages]}`` dicts, the format
TRL's trainers take.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sepsis_sdk.actions import N_ACTIONS, Action
from sepsis_sdk.cohort import Cohort
from sepsis_sdk.errors import UserError
from sepsis_sdk.types import PatientHistory


def _system() -> str:
    from sepsis_sdk.graphs import SYSTEM

    return SYSTEM


def _render(history: PatientHistory, cohort: Cohort) -> str:
    from sepsis_sdk.render import render_history

    return render_history(history, cohort.schema)


def _sample_histories(
    cohort: Cohort, n: int, seed: int, *, need_next: bool
) -> list[tuple[PatientHistory, Any]]:
    """``n`` random decision points (with the next step's observation when ``need_next``)."""
    rng = np.random.default_rng(seed)
    out: list[tuple[PatientHistory, Any]] = []
    episodes = list(cohort.episodes())
    if not episodes:
        raise UserError(f"{cohort.source}: the cohort is empty")
    candidates = [(e, t) for e in episodes for t in range(len(e) - (1 if need_next else 0))]
    if not candidates:
        raise UserError(
            f"{cohort.source}: no episode has two steps, so there are no transitions to learn from"
        )
    for i in rng.choice(len(candidates), size=min(n, len(candidates)), replace=False):
        ep, t = candidates[int(i)]
        nxt = ep.steps[t + 1].observation if need_next else None
        out.append((ep.history(t), nxt))
    return out


def dynamics_examples(cohort: Cohort, n: int = 512, *, seed: int = 0) -> list[dict[str, Any]]:
    """Stage I examples: history + treatment -> next key values as JSON (display units)."""
    from sepsis_sdk.render import key_features

    keys = key_features(cohort.schema)
    rows = []
    for hist, nxt in _sample_histories(cohort, n, seed, need_next=True):
        t = hist.t
        ep_action = _action_at(cohort, hist.patient_id, t)
        action = Action.from_index(ep_action)
        target = {}
        for role, name in keys:
            j = cohort.schema.index(name)
            target[role] = cohort.schema[name].to_display(nxt.values[j]) if nxt.observed[j] else "missing"
        prompt = (
            f"{_render(hist, cohort)}\n\nTreatment for the next 4 hours: {action.describe()}.\n"
            "Predict the key values at the next 4-hour step as JSON."
        )
        rows.append(
            {
                "prompt": [{"role": "system", "content": _system()}, {"role": "user", "content": prompt}],
                "completion": [{"role": "assistant", "content": json.dumps(target)}],
            }
        )
    return rows


def _action_at(cohort: Cohort, patient_id: str, t: int) -> int:
    df = cohort.data
    row = df[(df["patient_id"] == patient_id) & (df["t"] == t)]
    return int(row["action"].iloc[0])


@dataclass
class Teacher:
    """Scores all 25 actions with the world-model planner, for PSR transcripts (stage II) and RL (stage III).

    With a ``continuation`` (the clinicians' behaviour fitted on the training cohort, as
    :func:`~sepsis_sdk.training.llm_stages.train_llm_pipeline` passes) the score is the planner's
    pessimistic closed-loop value — "this action now, then usual care", minus its spread and missing
    support (:class:`~sepsis_sdk.policies.planner.WorldModelPlannerPolicy`, policy improvement). Without
    one it falls back to the planner's hold rule (P(discharge) - P(death) within ``horizon`` minus the
    uncertainty and support penalties), which on exact ICU-Sepsis dynamics cannot beat the clinicians.
    Guideline-breaking actions (G1/G2) lose ``guideline_penalty`` either way. Never reads hidden truth.
    """

    world_model: Any
    horizon: int = 3
    n_samples: int = 4
    uncertainty_penalty: float = 0.05
    support_penalty: float = 0.1
    guideline_penalty: float = 0.5
    seed: int = 0
    continuation: Any = None
    value_samples: int = 64
    _planner: Any = field(default=None, init=False, repr=False, compare=False)

    def planner(self) -> Any:
        """The planner behind the scores (built once)."""
        cached = self._planner
        if cached is None:
            from sepsis_sdk.policies.planner import WorldModelPlannerPolicy

            cached = WorldModelPlannerPolicy(
                self.world_model,
                continuation=self.continuation,
                horizon=self.horizon,
                n_samples=self.n_samples,
                n_value_samples=self.value_samples,
                uncertainty_penalty=self.uncertainty_penalty,
                support_penalty=self.support_penalty,
                safety=False,  # the guideline penalty below is the teacher's own soft rule
                seed=self.seed,
                name="teacher",
            )
            self._planner = cached
        return cached

    def scores(self, history: PatientHistory) -> np.ndarray:
        """``(25,)`` scores of every action for one patient (higher is better)."""
        score = np.asarray(self.planner().scores(self.world_model.batch([history]))[0], dtype=float)
        return score - self.guideline_penalty * self._violations(history)

    def _violations(self, history: PatientHistory) -> np.ndarray:
        try:
            from sepsis_sdk.safety import RuleContext, load_rules
        except ImportError:  # pragma: no cover - safety rules ship with the SDK
            return np.zeros(N_ACTIONS)
        rules = load_rules()
        out = np.zeros(N_ACTIONS)
        for a in range(N_ACTIONS):
            ctx = RuleContext.from_history(history, a, self.world_model.schema)
            out[a] = any(r.violated for r in rules.check(ctx) if r.applicable and r.rule_id in ("G1", "G2"))
        return out


def psr_examples(
    cohort: Cohort, teacher: Teacher, n: int = 128, *, n_candidates: int = 3, seed: int = 0
) -> list[dict[str, Any]]:
    """Stage II examples: the teacher's propose and refine turns for ``n`` decision points."""
    from sepsis_sdk.graphs import propose_prompt, refine_prompt
    from sepsis_sdk.tools import simulate_actions

    rows = []
    for hist, _ in _sample_histories(cohort, n, seed, need_next=False):
        obs = _render(hist, cohort)
        scores = teacher.scores(hist)
        top = [int(a) for a in np.argsort(-scores, kind="stable")[:n_candidates]]
        report = simulate_actions(
            teacher.world_model,
            hist,
            top,
            horizon=teacher.horizon,
            n_samples=teacher.n_samples,
            seed=teacher.seed,
            continuation=teacher.continuation,
            value_samples=teacher.value_samples,
        )
        cands = []
        for a in top:
            out = report.get(a)
            risk = (
                "simulate it"
                if out is None
                else f"estimated survival {out.value:.1%} if given now, then usual care"
                if out.value is not None
                else f"predicted death risk {out.p_death:.0%} over {teacher.horizon * 4} h"
            )
            act = Action.from_index(a)
            cands.append({"fluid": act.fluid, "vaso": act.vaso, "rationale": f"{act.describe()}; {risk}."})
        propose = {
            "candidates": cands,
            "reasoning": "Candidates ranked by simulated survival, safety and data support.",
        }
        best = Action.from_index(top[0])
        critique = "; ".join(f"{Action.from_index(a).describe()}: score {scores[a]:+.2f}" for a in top)
        refine = {
            "decision": "commit",
            "fluid": best.fluid,
            "vaso": best.vaso,
            "rationale": f"Best simulated trade-off of survival, uncertainty and guidelines ({critique}).",
        }
        sys_msg = {"role": "system", "content": _system()}
        rows.append(
            {
                "prompt": [sys_msg, {"role": "user", "content": propose_prompt(obs, n_candidates)}],
                "completion": [{"role": "assistant", "content": json.dumps(propose)}],
            }
        )
        rows.append(
            {
                "prompt": [
                    sys_msg,
                    {"role": "user", "content": refine_prompt(obs, report.to_text(), critique, 0)},
                ],
                "completion": [{"role": "assistant", "content": json.dumps(refine)}],
            }
        )
    return rows


def rl_prompts(
    cohort: Cohort, n: int = 64, *, seed: int = 0
) -> tuple[list[dict[str, Any]], list[PatientHistory]]:
    """Stage III prompts in the direct decision format, with the histories the reward needs."""
    from sepsis_sdk.graphs import direct_prompt

    rows, hists = [], []
    for i, (hist, _) in enumerate(_sample_histories(cohort, n, seed, need_next=False)):
        rows.append(
            {
                "prompt": [
                    {"role": "system", "content": _system()},
                    {"role": "user", "content": direct_prompt(_render(hist, cohort))},
                ],
                "history_id": i,
            }
        )
        hists.append(hist)
    return rows, hists


def parse_action(text: str) -> int | None:
    """The action of a ``{"fluid": f, "vaso": v, ...}`` reply, or None when it is not valid JSON / in range."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        obj = json.loads(text[start : end + 1])
        return Action(fluid=int(obj["fluid"]), vaso=int(obj["vaso"])).index
    except (ValueError, KeyError, TypeError, UserError):
        return None


class WorldModelReward:
    """Stage III reward: the teacher's world-model score of the chosen action, standardised per state.

    An unparseable or out-of-range reply gets ``invalid_reward`` (the agent must learn the format first).
    Signature follows TRL's reward functions: ``(prompts, completions, history_id, **kw) -> list[float]``.
    """

    __name__ = "world_model_reward"

    def __init__(
        self, teacher: Teacher, histories: Sequence[PatientHistory], *, invalid_reward: float = -1.0
    ) -> None:
        self.teacher = teacher
        self.histories = list(histories)
        self.invalid_reward = invalid_reward
        self._cache: dict[int, np.ndarray] = {}

    def _scores(self, i: int) -> np.ndarray:
        if i not in self._cache:
            s = self.teacher.scores(self.histories[i])
            self._cache[i] = (s - s.mean()) / (s.std() + 1e-6)
        return self._cache[i]

    def __call__(
        self, prompts: Any, completions: Sequence[Any], history_id: Sequence[int], **_: Any
    ) -> list[float]:
        out = []
        for comp, i in zip(completions, history_id, strict=True):
            text = comp[-1]["content"] if isinstance(comp, list) else str(comp)
            a = parse_action(text)
            out.append(self.invalid_reward if a is None else float(self._scores(int(i))[a]))
        return [v if math.isfinite(v) else self.invalid_reward for v in out]


__all__ = ["Teacher", "WorldModelReward", "dynamics_examples", "parse_action", "psr_examples", "rl_prompts"]
