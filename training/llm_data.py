"""Datasets for the three LLM training stages of SepsisAgent (our implementation of the recipe).

- **Stage I — patient dynamics SFT** (:func:`dynamics_examples`): from real cohort transitions, the model
  reads a patient's history and a treatment and writes the key values at the next 4-hour step. It learns
  how patients evolve before it learns to treat them.
- **Stage II — PSR behaviour cloning** (:func:`psr_examples`): transcripts of the propose-simulate-refine
  loop written by a *teacher* that searches all 25 actions in the world model. Each decision yields two
  examples in the graph's own prompt formats (the propose turn and the refine turn), so the fine-tuned
  model plugs into :func:`sepsis_sdk.graphs.build_psr_graph` unchanged.
- **Stage III — world-model RL** (:func:`rl_prompts` or :func:`refine_rl_prompts`, +
  :class:`WorldModelReward`): prompts of the direct decision format, or of the PSR graph's refine turn
  (where a PSR agent decides), scored by a reward computed inside the world model (GRPO).

Examples are conversational ``{"prompt": [messages], "completion": [messages]}`` dicts, the format
TRL's trainers take.
"""

from __future__ import annotations

import json
import math
import re
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
    """Scores all 25 actions with the world-model planner, for the stage-II transcripts and the stage-III reward.

    The planner is the decisions layer's
    :class:`~sepsis_sdk.policies.planner.WorldModelPlannerPolicy` with a ``continuation`` (the clinicians'
    behaviour fitted on the training cohort, as :func:`~sepsis_sdk.training.llm_stages.run_pipeline`
    passes). ``lookahead="auto"`` plans to convergence (pessimistic policy iteration) on a finite-support
    model such as the neighbour model, the best form measured for a learned model (docs/decisions.md), and
    uses one step of improvement ("this action now, then usual care") on the others. A score is then the
    planned probability of survival, ``-inf`` for an action the data do not support (fewer than
    ``min_count`` transitions). Without a continuation the planner's hold rule is used (P(discharge) -
    P(death) within ``horizon``), which on exact ICU-Sepsis dynamics cannot beat the clinicians.
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
    lookahead: int | str = "auto"
    simulate_with: str = "usual"
    _planner: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.simulate_with not in SIMULATE_WITH:
            raise UserError(f"simulate_with must be one of {SIMULATE_WITH}, got {self.simulate_with!r}")

    def simulation_continuation(self) -> Any:
        """The continuation the PSR transcripts' simulation reports use for their values.

        ``simulate_with="usual"``: care continues as the clinicians would (``continuation``); ``"planned"``:
        as the teacher's own planner would (:meth:`WorldModelPlannerPolicy.planned_continuation`), so a
        candidate's reported value is the planned policy's (without the teacher's data penalty). The agent
        must then be evaluated with the same continuation (``benchmarks/experiments/agent_ablation.py
        --continuation planned``).
        """
        if self.simulate_with == "planned" and self.continuation is not None:
            return self.planner().planned_continuation()
        return self.continuation

    def planner(self) -> Any:
        """The planner behind the scores (built once)."""
        cached = self._planner
        if cached is None:
            from sepsis_sdk.policies.planner import WorldModelPlannerPolicy
            from sepsis_sdk.world_model.value import FiniteSupportModel

            look = self.lookahead
            if look == "auto":
                finite = isinstance(self.world_model, FiniteSupportModel) and bool(
                    getattr(self.world_model, "has_finite_support", True)
                )
                look = "converge" if finite and self.continuation is not None else 1
            cached = WorldModelPlannerPolicy(
                self.world_model,
                continuation=self.continuation,
                lookahead=look,
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
        """``(25,)`` scores of every action for one patient (higher is better; ``-inf``: unsupported)."""
        return self.scores_many([history])[0]

    def scores_many(self, histories: Sequence[PatientHistory]) -> np.ndarray:
        """``(N, 25)`` scores for many patients in one batched call of the planner."""
        if not histories:
            return np.zeros((0, N_ACTIONS))
        raw = np.asarray(self.planner().scores(self.world_model.batch(list(histories))), dtype=float)
        cands = np.asarray(self.planner().candidates, dtype=np.int64)
        score = np.full((len(histories), N_ACTIONS), -np.inf)
        score[:, cands] = raw
        return score - self.guideline_penalty * np.stack([self._violations(h) for h in histories])

    def choose(self, histories: Sequence[PatientHistory]) -> np.ndarray:
        """The teacher's action for each patient (the best score; the first on a tie)."""
        return self.scores_many(histories).argmax(1)

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


SIMULATE_WITH = ("usual", "planned")
"""How care continues in the stage-II transcripts' simulated values (:meth:`Teacher.simulation_continuation`)."""
PROPOSAL_ORDERS = ("ranked", "shuffled")
"""How the teacher lists its candidates in a propose turn (:func:`graph_examples`)."""


def _report_best(text: str, listed: Sequence[int]) -> int | None:
    """The candidate a simulation report's closing line names (``SimulationReport.best_line``), if any."""
    from sepsis_sdk.tools import BEST_OPENINGS

    m = re.search("^(?:" + "|".join(map(re.escape, BEST_OPENINGS)) + r")([A-Z])\. ", text, re.M)
    if m is None:
        return None
    i = ord(m.group(1)) - ord("A")
    return int(listed[i]) if 0 <= i < len(listed) else None


class _TeacherModel:
    """A scripted chat model that answers every graph prompt with the teacher's choice for one patient.

    The agent graphs run unchanged around it, so each recorded ``(messages, reply)`` pair is exactly what
    the graph sends and parses: the system prompt, the patient rendering, the simulation report and the
    critique are the graph's own, not a re-implementation of them.
    """

    def __init__(
        self,
        teacher: Teacher,
        n_candidates: int,
        *,
        order: str = "ranked",
        refine_target: str = "teacher",
        rng: np.random.Generator | None = None,
    ) -> None:
        from sepsis_sdk.testing import FunctionChatModel

        self.teacher = teacher
        self.n_candidates = n_candidates
        self.order = order
        self.refine_target = refine_target
        self.listed: list[int] = []
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.scores: np.ndarray | None = None
        self.proposed: list[int] = []
        self.turns: list[tuple[list[dict[str, Any]], str]] = []
        self.chat = FunctionChatModel(self._reply, name="teacher")

    def _reply(self, messages: list[dict[str, Any]], tools: Any) -> str:
        assert self.scores is not None, "set the patient's scores before running the graph"
        text = str(messages[-1].get("content", ""))
        order = [int(a) for a in np.argsort(-self.scores, kind="stable")]
        if '"candidates"' in text:  # the propose turn
            self.proposed = order[: self.n_candidates]
            self.listed = list(self.proposed)
            reply = self._proposal(self.proposed)
            if self.order == "shuffled":
                # The example teaches the ranked list (best first), but the graph is handed the candidates in
                # a random order, so the refine turn's answer is not always candidate A: the model has to
                # read the simulation to find it.
                self.turns.append(([dict(m) for m in messages], reply))
                self.listed = [self.proposed[i] for i in self.rng.permutation(len(self.proposed))]
                return self._proposal(self.listed)
        elif '"decision"' in text:  # the refine turn: commit the best simulated candidate
            shown = [a for a in order if a in self.proposed] or order
            named = _report_best(text, self.listed) if self.refine_target == "report" else None
            act = Action.from_index(shown[0] if named is None else named)
            reply = json.dumps({"decision": "commit", "fluid": act.fluid, "vaso": act.vaso,
                                "rationale": "Highest planned survival among the simulated candidates."})  # fmt: skip
        else:  # the direct decision
            act = Action.from_index(order[0])
            reply = json.dumps({"fluid": act.fluid, "vaso": act.vaso, "rationale": self._why(order[0])})
        self.turns.append(([dict(m) for m in messages], reply))
        return reply

    def _proposal(self, actions: list[int]) -> str:
        cands = []
        for a in actions:
            act = Action.from_index(a)
            cands.append({"fluid": act.fluid, "vaso": act.vaso, "rationale": self._why(a)})
        return json.dumps(
            {"candidates": cands, "reasoning": "Ranked by planned survival, safety and data support."}
        )

    def _why(self, a: int) -> str:
        assert self.scores is not None
        v = float(self.scores[a])
        if not math.isfinite(v):
            return "Rarely given to such patients: little data."
        return f"Planned survival {min(max(v, 0.0), 1.0):.0%} if given now."


def graph_examples(
    cohort: Cohort,
    teacher: Teacher,
    n: int = 128,
    *,
    graph: str = "psr",
    n_candidates: int = 3,
    markov_share: float = 0.5,
    proposal_order: str = "ranked",
    simulation_report: str = "full",
    turns: str = "all",
    refine_target: str = "teacher",
    refine_critique: bool = True,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Stage II examples: the agent graph's own turns, answered by the teacher, for ``n`` decision points.

    The graph (``"psr"``: propose and refine turns; ``"direct"``: the one decision turn) runs unchanged
    around a scripted model that answers as the teacher would (its top ``n_candidates`` actions, then a
    commit of the best one simulated), and each model turn becomes one prompt/completion example.

    Args:
        cohort: where the decision points are drawn (each step of each stay equally likely, so states
            patients visit often are drawn often).
        teacher: the planner whose choices are cloned.
        n: decision points.
        graph: ``"psr"`` or ``"direct"``.
        n_candidates: candidates per propose turn (PSR).
        markov_share: the share of decision points shown as the one-step history the exact Markov
            evaluation uses (:func:`sepsis_sdk.truth.agent.markov_history`: current values only, no
            treatment yet); the rest keep their recorded history.
        proposal_order: ``"ranked"``: the graph gets the teacher's candidates best first, as the propose
            example lists them. ``"shuffled"``: the propose example still lists them best first (what the
            model should propose), but the graph is handed them in a random order, so the refine turn's
            answer (the best one simulated) is not always candidate A and the model has to read the
            simulation to find it. With ranked proposals a model learns "commit A"; measured: the shipped
            agent's PSR graph chose what its direct graph chose in 709 of 713 states.
        simulation_report: what the refine prompt shows of the simulation (``PSROptions``): ``"full"``,
            ``"values"``, ``"cautious"`` or ``"brief"``; the agent must be run with the same.
        refine_critique: whether the refine prompt includes the judge's critique (``PSROptions``); the
            agent must be run with the same.
        turns: ``"all"`` or ``"refine"`` (PSR: keep only the refine turns, the shorter way to teach reading).
        refine_target: what the refine turn commits: ``"teacher"``, the teacher's best of the simulated
            candidates (its own pessimistic scores), or ``"report"``, the candidate the simulation report
            names best supported (:meth:`~sepsis_sdk.tools.SimulationReport.best_line`; the teacher's best
            when the report has no values). ``"report"`` clones a rule the model can see: the teacher's
            scores are not in the prompt, and on 12 pilot states they disagreed with the report's best in 7.
        seed: sampling seed.
    """
    if turns not in ("all", "refine"):
        raise UserError(f"turns must be 'all' or 'refine', got {turns!r}")
    rows = []
    for _, messages, reply in _graph_turns(cohort, teacher, n, graph=graph, n_candidates=n_candidates,
                                           markov_share=markov_share, proposal_order=proposal_order,
                                           simulation_report=simulation_report, refine_target=refine_target,
                                           refine_critique=refine_critique, seed=seed):  # fmt: skip
        if turns == "refine" and not _is_refine(messages):
            continue
        rows.append({"prompt": messages, "completion": [{"role": "assistant", "content": reply}]})
    return rows


def _is_refine(messages: list[dict[str, Any]]) -> bool:
    """Whether a recorded turn is the PSR graph's refine turn (its prompt asks for a ``"decision"``)."""
    return '"decision"' in str(messages[-1].get("content", ""))


def _graph_turns(
    cohort: Cohort,
    teacher: Teacher,
    n: int,
    *,
    graph: str,
    n_candidates: int,
    markov_share: float,
    proposal_order: str,
    simulation_report: str,
    refine_target: str,
    refine_critique: bool,
    seed: int,
) -> list[tuple[PatientHistory, list[dict[str, Any]], str]]:
    """``(history, messages, reply)`` for every model turn of the graph run around the teacher on ``n``
    decision points (the arguments as in :func:`graph_examples`, checked here)."""
    if graph not in ("psr", "direct"):
        raise UserError(f"graph must be 'psr' or 'direct', got {graph!r}")
    if not 0.0 <= markov_share <= 1.0:
        raise UserError(f"markov_share must be in [0, 1], got {markov_share}")
    if proposal_order not in PROPOSAL_ORDERS:
        raise UserError(f"proposal_order must be one of {PROPOSAL_ORDERS}, got {proposal_order!r}")
    if refine_target not in ("teacher", "report"):
        raise UserError(f"refine_target must be 'teacher' or 'report', got {refine_target!r}")
    from sepsis_sdk.graphs import build_direct_graph, build_psr_graph
    from sepsis_sdk.truth.agent import markov_history

    fake = _TeacherModel(teacher, n_candidates, order=proposal_order, refine_target=refine_target,
                         rng=np.random.default_rng(seed + 2))  # fmt: skip
    if graph == "psr":
        g = build_psr_graph(fake.chat, world_model=teacher.world_model,
                            continuation=teacher.simulation_continuation(), n_candidates=n_candidates,
                            max_rounds=1, horizon=teacher.horizon, n_samples=teacher.n_samples,
                            seed=teacher.seed, simulation_report=simulation_report,
                            refine_critique=refine_critique)  # fmt: skip
    else:
        g = build_direct_graph(fake.chat, world_model=teacher.world_model, continuation=teacher.continuation)
    rng = np.random.default_rng(seed + 1)
    hists = [h for h, _ in _sample_histories(cohort, n, seed, need_next=False)]
    hists = [markov_history(h) if rng.random() < markov_share else h for h in hists]
    all_scores = teacher.scores_many(hists)
    out = []
    for hist, sc in zip(hists, all_scores, strict=True):
        fake.scores = sc
        fake.proposed = []
        fake.turns.clear()
        g.invoke({"history": hist})
        out += [(hist, messages, reply) for messages, reply in fake.turns]
    return out


def psr_examples(
    cohort: Cohort, teacher: Teacher, n: int = 128, *, n_candidates: int = 3, seed: int = 0
) -> list[dict[str, Any]]:
    """Stage II examples in the PSR graph's formats: :func:`graph_examples` with ``graph="psr"``."""
    return graph_examples(cohort, teacher, n, graph="psr", n_candidates=n_candidates, seed=seed)


def rl_prompts(
    cohort: Cohort, n: int = 64, *, markov_share: float = 0.5, seed: int = 0
) -> tuple[list[dict[str, Any]], list[PatientHistory]]:
    """Stage III prompts in the direct decision format, with the histories the reward needs.

    ``markov_share`` of them show the one-step history of the exact Markov evaluation (as in
    :func:`graph_examples`).
    """
    from sepsis_sdk.graphs import direct_prompt
    from sepsis_sdk.truth.agent import markov_history

    if not 0.0 <= markov_share <= 1.0:
        raise UserError(f"markov_share must be in [0, 1], got {markov_share}")
    rng = np.random.default_rng(seed + 2)
    rows, hists = [], []
    for i, (hist, _) in enumerate(_sample_histories(cohort, n, seed, need_next=False)):
        if rng.random() < markov_share:
            hist = markov_history(hist)
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


def refine_rl_prompts(
    cohort: Cohort,
    teacher: Teacher,
    n: int = 16,
    *,
    n_candidates: int = 5,
    markov_share: float = 0.75,
    proposal_order: str = "shuffled",
    simulation_report: str = "brief",
    refine_critique: bool = False,
    seed: int = 0,
) -> tuple[list[dict[str, Any]], list[PatientHistory]]:
    """Stage III prompts in the PSR graph's refine format, with the histories the reward needs.

    Each prompt is the whole conversation up to the PSR graph's refine turn (system prompt, patient,
    propose turn with the teacher's ``n_candidates`` proposals handed over in ``proposal_order``, the
    simulation report, the critique when ``refine_critique``): the turn the PSR agent decides in, built by
    the graph itself around the teacher (as :func:`graph_examples` does for stage II). What the model then
    commits is rewarded by :class:`WorldModelReward`, so GRPO trains the decision where the agent makes
    it rather than in the direct graph's prompt. The agent must be run with the same settings.
    """
    rows, hists = [], []
    for hist, messages, _ in _graph_turns(cohort, teacher, n, graph="psr", n_candidates=n_candidates,
                                          markov_share=markov_share, proposal_order=proposal_order,
                                          simulation_report=simulation_report, refine_target="teacher",
                                          refine_critique=refine_critique, seed=seed + 3):  # fmt: skip
        if _is_refine(messages):
            rows.append({"prompt": messages, "history_id": len(hists)})
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

    Among the actions the data support, the reward is the teacher's score standardised over them (0 for
    the only one); an action the data do not support gets ``unsupported_reward``, and an unparseable or
    out-of-range reply ``invalid_reward`` (the agent must learn the format first). Computed inside the
    world model only, never from the hidden truth. Signature follows TRL's reward functions:
    ``(prompts, completions, history_id, **kw) -> list[float]``.
    """

    __name__ = "world_model_reward"

    def __init__(
        self,
        teacher: Teacher,
        histories: Sequence[PatientHistory],
        *,
        invalid_reward: float = -2.0,
        unsupported_reward: float = -1.0,
    ) -> None:
        self.teacher = teacher
        self.histories = list(histories)
        self.invalid_reward = invalid_reward
        self.unsupported_reward = unsupported_reward
        self._cache: dict[int, np.ndarray] = {}

    def _scores(self, i: int) -> np.ndarray:
        if i not in self._cache:
            s = self.teacher.scores(self.histories[i])
            ok = np.isfinite(s)
            out = np.full(s.shape, self.unsupported_reward)
            if ok.any():
                sup = s[ok]
                out[ok] = (sup - sup.mean()) / (sup.std() + 1e-6) if ok.sum() > 1 else 0.0
            self._cache[i] = out
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


__all__ = [
    "Teacher",
    "WorldModelReward",
    "dynamics_examples",
    "graph_examples",
    "parse_action",
    "psr_examples",
    "rl_prompts",
]
