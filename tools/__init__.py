"""Agent tools: a small protocol, the ``@tool`` decorator, a registry, and the built-in tools.

Built-ins:

- ``simulate``: the world model as a tool; up to K candidate actions, horizon H, one batched rollout;
  predicted paths of key vitals/labs in clinical units with 90 % bands, support, uncertainty, and the
  probabilities of death and discharge, plus a compact text for the prompt.
- ``check_guidelines``: which guideline/safety rules an action would break for the patient now.
- ``patient_history``: trends of key vitals and labs and the treatments given.

The SepsisAgent release's protocol tools, ``simulation`` and ``prescription`` (used by the tool-calling
graph), are registry tools too, with validated argument models (:class:`SimulationArgs`,
:class:`PrescriptionArgs`).

Example:
    >>> from sepsis_sdk.tools import ToolRegistry, ToolContext, tool
    >>> @tool
    ... def bed_occupancy(ctx: ToolContext = None) -> str:
    ...     '''How full the ICU is right now.'''
    ...     return "87 % of beds occupied"
    >>> reg = ToolRegistry.default()
    >>> _ = reg.add(bed_occupancy)
    >>> reg.names
    ['simulate', 'check_guidelines', 'patient_history', 'bed_occupancy']
"""

if __name__ != "sepsis_sdk.tools":  # pragma: no cover - guards against a second copy via `import tools`
    raise ImportError(
        f"this folder is the package 'sepsis_sdk.tools'; import it as that, not as {__name__!r}"
    )

from sepsis_sdk.render import infer_schema, key_features, render_history
from sepsis_sdk.safety import (
    DEFAULT_HARD_RULES,
    NoRules,
    RuleFinding,
    RuleSetChecker,
    SafetyChecker,
    as_safety_checker,
    violations,
)
from sepsis_sdk.safety import hard_rule_mask as safety_matrix  # the former name, kept
from sepsis_sdk.tools._base import (
    FunctionTool,
    Tool,
    ToolContext,
    ToolRegistry,
    ToolResult,
    ToolSettings,
    as_registry,
    openai_schema,
    parse_google_docstring,
    tool,
)
from sepsis_sdk.tools._builtin import ActionChoice, builtin_tools, check_guidelines, patient_history, simulate
from sepsis_sdk.tools._protocol import (
    PRESCRIPTION_TOOL,
    SIMULATION_TOOL,
    PrescriptionArgs,
    SimulationArgs,
    prescription,
    protocol_tools,
    simulation,
)
from sepsis_sdk.tools._simulate import (
    BEST_OPENINGS,
    BEST_SUPPORT,
    CandidateOutcome,
    FeaturePath,
    SimulationReport,
    simulate_actions,
)

__all__ = [
    "BEST_OPENINGS",
    "BEST_SUPPORT",
    "DEFAULT_HARD_RULES",
    "PRESCRIPTION_TOOL",
    "SIMULATION_TOOL",
    "ActionChoice",
    "CandidateOutcome",
    "FeaturePath",
    "FunctionTool",
    "NoRules",
    "PrescriptionArgs",
    "RuleFinding",
    "RuleSetChecker",
    "SafetyChecker",
    "SimulationArgs",
    "SimulationReport",
    "Tool",
    "ToolContext",
    "ToolRegistry",
    "ToolResult",
    "ToolSettings",
    "as_registry",
    "as_safety_checker",
    "builtin_tools",
    "check_guidelines",
    "infer_schema",
    "key_features",
    "openai_schema",
    "parse_google_docstring",
    "patient_history",
    "prescription",
    "protocol_tools",
    "render_history",
    "safety_matrix",
    "simulate",
    "simulate_actions",
    "simulation",
    "tool",
    "violations",
]


def __getattr__(name: str):
    # Deprecated: the ICU-Sepsis admissibility lookup reads hidden truth, so it moved to sepsis_sdk.truth.
    if name == "admissible_mask":
        import warnings

        from sepsis_sdk.truth import hidden_admissible_mask

        warnings.warn(
            "sepsis_sdk.tools.admissible_mask is deprecated: it reads hidden ICU-Sepsis truth; use "
            "sepsis_sdk.truth.hidden_admissible_mask (validation use only)",
            DeprecationWarning,
            stacklevel=2,
        )
        return hidden_admissible_mask
    raise AttributeError(f"module 'sepsis_sdk.tools' has no attribute {name!r}")
