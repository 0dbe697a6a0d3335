"""Prompts of the agent graphs (our own wording; short, so small local models can follow)."""

from __future__ import annotations

from sepsis_sdk.tools import PRESCRIPTION_TOOL as _PRESCRIPTION_TOOL
from sepsis_sdk.tools import SIMULATION_TOOL as _SIMULATION_TOOL

ACTION_SPACE = (
    "Each 4-hour step you choose two levels, each 0-4. IV fluid: 0 none, 1 1-50, 2 50-180, 3 180-530, "
    "4 >530 mL/4h. Vasopressor (noradrenaline-equivalent): 0 none, 1 <0.08, 2 0.08-0.22, 3 0.22-0.45, "
    "4 >0.45 ug/kg/min."
)

GUIDELINES = (
    "Guidelines: if lactate > 2 mmol/L or MAP < 65 mmHg, give some treatment (not fluid 0 with vaso 0). "
    "If MAP >= 65 after the first step, do not raise the vasopressor level above the previous step."
)

SYSTEM = (
    "You are an ICU sepsis treatment assistant supporting clinicians. "
    + ACTION_SPACE
    + " "
    + GUIDELINES
    + " A clinical world model can simulate candidate treatments; its predictions are uncertain, so weigh "
    "support and uncertainty. Answer only in the requested JSON format."
)


def propose_prompt(observation: str, n: int, feedback: str = "") -> str:
    more = f"\n\nFeedback on your previous candidates:\n{feedback}" if feedback else ""
    return (
        f"{observation}{more}\n\nPropose {n} different candidate treatments worth simulating, each with a "
        "one-sentence rationale, as JSON: "
        '{"candidates": [{"fluid": 0-4, "vaso": 0-4, "rationale": "..."}], "reasoning": "..."}'
    )


def refine_prompt(observation: str, simulation: str, critique: str | None, rounds_left: int) -> str:
    """The refine turn's user message; ``critique=None`` leaves the critique section out."""
    revise = (
        f'Set "decision" to "revise" to propose new candidates instead ({rounds_left} round(s) left), or '
        if rounds_left > 0
        else "No rounds are left: "
    )
    crit = "" if critique is None else f"Critique of the simulated outcomes:\n{critique}\n\n"
    return (
        f"{observation}\n\n{simulation}\n\n{crit}"
        f'Choose one treatment. {revise}set "decision" to "commit" to prescribe it. Answer as JSON: '
        '{"decision": "commit" | "revise", "fluid": 0-4, "vaso": 0-4, "rationale": "..."}'
    )


def direct_prompt(observation: str) -> str:
    return (
        f"{observation}\n\nChoose the treatment for the next 4 hours. Answer as JSON: "
        '{"fluid": 0-4, "vaso": 0-4, "rationale": "..."}'
    )


# The official SepsisAgent protocol (tools over the OpenAI API). Tool names and argument names follow the
# release so a model trained on it runs unchanged; the wording of the prompts is ours.
SEPSISAGENT_SYSTEM = (
    "You are a clinical decision-support agent for sepsis in the ICU. Every 4 hours you prescribe a "
    "vasopressor level and an IV fluid level, each 0-4 (0 = none, 4 = highest quartile). You may call "
    '`simulation` with up to 3 candidate actions written as "[vasopressor, fluid]" strings to see what a '
    "clinical world model predicts; the simulator is imperfect, so use it as one input among others. "
    "When you have decided, call `prescription` with `vasopressor` and `iv_fluid`."
)

# The release's tool schemas live with the tools themselves (sepsis_sdk.tools); re-exported here.
SIMULATION_TOOL = _SIMULATION_TOOL
PRESCRIPTION_TOOL = _PRESCRIPTION_TOOL

NUDGE = "Please decide now: call the `prescription` tool with `vasopressor` and `iv_fluid` (integers 0-4)."
