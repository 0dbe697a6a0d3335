"""The refine step's critique: a rubric over simulated outcomes, judged through the shared Judge protocol.

:func:`simulation_rubric` lists the criteria; :func:`candidate_evidence` turns one simulated candidate
into :class:`~sepsis_sdk.judge.Evidence` (text for an LLM judge, numbers for a rule judge);
:class:`SimulationCritic` is the default deterministic judge. Any :class:`~sepsis_sdk.judge.Judge`
(e.g. an LLM judge) can replace it: it receives the same rubric and evidence.
"""

from __future__ import annotations

from typing import Any

from sepsis_sdk.judge import Criterion, CriterionVerdict, Evidence, Rubric, Verdict
from sepsis_sdk.render import action_label

MORTALITY_MARGIN = 0.05
VALUE_MARGIN = 0.005
LOW_SUPPORT = 0.2
HIGH_UNCERTAINTY = 0.5


def simulation_rubric() -> Rubric:
    """Criteria the refine step judges each simulated candidate on."""
    return Rubric(
        name="psr-simulation-critique",
        instructions="Judge one candidate sepsis treatment from its simulated outcome and the guideline check.",
        criteria=(
            Criterion(id="rules", sign=-1, weight=2.0, dimension="safety",
                      text="The treatment breaks a hard guideline or safety rule for this patient now."),
            Criterion(id="value", sign=-1, weight=2.0, dimension="outcome",
                      text=f"Its closed-loop value (survival if given now, then usual care) is clearly below the best "
                           f"candidate's: its upper bound is under the best value, or it trails by {VALUE_MARGIN} or more."),
            Criterion(id="mortality", sign=-1, weight=1.0, dimension="outcome",
                      text=f"Predicted death risk is at least {MORTALITY_MARGIN:.2f} above the best simulated candidate."),
            Criterion(id="support", sign=-1, weight=0.5, dimension="reliability",
                      text=f"Support is below {LOW_SUPPORT}: few similar cases in the world model's training data."),
            Criterion(id="uncertainty", sign=-1, weight=0.5, dimension="reliability",
                      text=f"The world model's ensemble disagrees by more than {HIGH_UNCERTAINTY} SD on average."),
            Criterion(id="map", sign=1, weight=0.5, dimension="outcome",
                      text="Predicted mean arterial pressure does not fall over the horizon."),
            Criterion(id="lactate", sign=1, weight=0.5, dimension="outcome",
                      text="Predicted lactate does not rise over the horizon."),
        ),
    )  # fmt: skip


def _delta(cand: dict[str, Any], role: str) -> float | None:
    for p in cand.get("paths", []):
        if p["role"] == role:
            start = p.get("start")
            means = [m for m in p.get("mean", []) if m is not None]
            if start is None or not means:
                return None
            return float(means[-1]) - float(start)
    return None


def candidate_evidence(
    cand: dict[str, Any],
    *,
    best_p_death: float,
    violated: list[str],
    sim_text: str = "",
    best_value: float | None = None,
) -> Evidence:
    """Evidence about one simulated candidate (a ``CandidateOutcome.to_dict()``)."""
    data = {
        "value": cand.get("value"),
        "value_upper": cand.get("value_upper"),
        "best_value": best_value,
        "action": cand["action"],
        "p_death": cand["p_death"],
        "best_p_death": best_p_death,
        "support": cand["support"],
        "uncertainty": cand["uncertainty"],
        "violated": list(violated),
        "map_delta": _delta(cand, "MAP"),
        "lactate_delta": _delta(cand, "lactate"),
    }
    text = (
        f"Candidate {action_label(cand['action'])}: P(death)={cand['p_death']:.2f} (best candidate "
        f"{best_p_death:.2f}), support={cand['support']:.2f}, uncertainty={cand['uncertainty']:.2f}, "
        f"rules broken: {', '.join(violated) or 'none'}."
    )
    if sim_text:
        text += "\n" + sim_text
    return Evidence(text=text, data=data)


class SimulationCritic:
    """A deterministic judge of :func:`simulation_rubric` from :func:`candidate_evidence` numbers.

    A criterion whose number is missing (e.g. no MAP in the schema) is left unscored, not 0.
    """

    name = "simulation-critic"

    def judge(self, rubric: Rubric, evidence: Evidence) -> Verdict:
        d = evidence.data
        out = []
        for c in rubric.criteria:
            score: int | None
            reason: str
            if c.id == "rules":
                score = int(bool(d.get("violated")))
                reason = ("breaks " + ", ".join(d["violated"])) if score else "no hard rule broken"
            elif c.id == "value":
                if d.get("value") is None or d.get("best_value") is None:
                    score, reason = None, "no closed-loop value (no continuation policy)"
                else:
                    v, best, up = (
                        float(d["value"]),
                        float(d["best_value"]),
                        float(d.get("value_upper") or d["value"]),
                    )
                    score = int(up < best or best - v >= VALUE_MARGIN)
                    reason = f"value {v:.3f} (upper {up:.3f}) vs best {best:.3f}"
            elif c.id == "mortality":
                gap = float(d["p_death"]) - float(d["best_p_death"])
                score = int(gap >= MORTALITY_MARGIN)
                reason = f"P(death) {d['p_death']:.2f} vs best {d['best_p_death']:.2f}"
            elif c.id == "support":
                score = int(float(d["support"]) < LOW_SUPPORT)
                reason = f"support {d['support']:.2f}"
            elif c.id == "uncertainty":
                score = int(float(d["uncertainty"]) > HIGH_UNCERTAINTY)
                reason = f"uncertainty {d['uncertainty']:.2f}"
            elif c.id in ("map", "lactate"):
                delta = d.get(f"{c.id}_delta")
                if delta is None:
                    score, reason = None, f"no {c.id} in the simulation"
                else:
                    ok = delta >= -1e-9 if c.id == "map" else delta <= 1e-9
                    score, reason = int(ok), f"{c.id} change {delta:+.2f} (stored units)"
            else:
                score, reason = None, "criterion not known to this judge"
            out.append(CriterionVerdict(criterion_id=c.id, score=score, reason=reason))
        return Verdict(rubric=rubric.name, judge=self.name, verdicts=tuple(out))

    async def ajudge(self, rubric: Rubric, evidence: Evidence) -> Verdict:
        return self.judge(rubric, evidence)


def verdict_score(rubric: Rubric, verdict: Verdict) -> float:
    """Signed weighted sum of the scored criteria (higher is better)."""
    weights = {c.id: (c.sign, c.weight) for c in rubric.criteria}
    total = 0.0
    for v in verdict.verdicts:
        if v.score is not None and v.criterion_id in weights:
            sign, w = weights[v.criterion_id]
            total += sign * w * v.score
    return total


def render_critique(items: list[dict[str, Any]]) -> str:
    """One line per candidate: its score and the criteria that fired."""
    lines = []
    for it in items:
        flags = [f"{v['criterion_id']}: {v['reason']}" for v in it["verdicts"] if v["score"] == 1]
        lines.append(
            f"- {action_label(it['action'])}: score {it['score']:+.1f}; "
            + ("; ".join(flags) or "no concerns")
        )
        if it.get("error"):
            lines[-1] += f" (judge error: {it['error']})"
    return "\n".join(lines)
