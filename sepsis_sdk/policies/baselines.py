"""One registry of baseline policies: ``config -> create -> name``.

A baseline is a factory ``(train_cohort, *, seed, n_steps, **options) -> Policy`` registered under a name;
:func:`build_baseline` builds one by name (the evaluation config's ``kind``), :func:`baseline_names` lists
them. Built in: ``clinician`` (a behaviour model fitted on the training split), ``random``, ``tabular``
(AI-Clinician style) and the d3rlpy algorithms ``bc``, ``dqn``, ``double_dqn``, ``bcq``, ``cql``. The
d3rlpy wrappers live in :mod:`sepsis_sdk.training.offline_rl`; their entries name it as a
``"module:function"`` target imported only when built, so listing baselines never imports d3rlpy.

Add your own (also from outside the SDK)::

    from sepsis_sdk.policies import register_baseline

    @register_baseline("always-fluids", description="top fluid level, no vasopressor")
    def _always_fluids(train, *, seed=0, n_steps=None, **options):
        return FunctionPolicy(lambda h: 20, name="always-fluids", markov=True)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sepsis_sdk.errors import UserError
from sepsis_sdk.policies._base import UniformPolicy

if TYPE_CHECKING:
    from sepsis_sdk.cohort import Cohort

BaselineFactory = Callable[..., Any]


@dataclass(frozen=True)
class _Entry:
    description: str
    factory: BaselineFactory | str  # a callable, or "module:function" imported when built

    def resolve(self) -> BaselineFactory:
        if callable(self.factory):
            return self.factory
        mod, _, fn = self.factory.partition(":")
        return getattr(importlib.import_module(mod), fn)


_REGISTRY: dict[str, _Entry] = {}
#: ``name -> description`` of every registered baseline (kept in step with the registry).
BASELINES: dict[str, str] = {}


def register_baseline(
    name: str, factory: BaselineFactory | str | None = None, *, description: str = ""
) -> Any:
    """Register a baseline factory under ``name`` (as a decorator, or directly with ``factory``).

    Args:
        name: the baseline's name (the evaluation config's ``kind``).
        factory: ``(train, *, seed, n_steps, **options) -> Policy``, or a ``"module:function"`` string
            imported only when the baseline is built (keeps heavy dependencies lazy).
        description: one line for listings.

    Returns:
        The factory (decorator use) or None.
    """
    if factory is not None:
        _REGISTRY[name] = _Entry(description, factory)
        BASELINES[name] = description
        return None

    def deco(fn: BaselineFactory) -> BaselineFactory:
        desc = description or (fn.__doc__ or "").strip().split("\n")[0]
        _REGISTRY[name] = _Entry(desc, fn)
        BASELINES[name] = desc
        return fn

    return deco


def baseline_names() -> list[str]:
    """The registered baseline names, sorted."""
    return sorted(_REGISTRY)


def baseline_descriptions() -> dict[str, str]:
    """``name -> one-line description`` of every registered baseline."""
    return {k: _REGISTRY[k].description for k in sorted(_REGISTRY)}


def build_baseline(
    name: str, train: Cohort, *, seed: int = 0, n_steps: int | None = None, **options: Any
) -> Any:
    """Train (or build) the registered baseline ``name`` on the training cohort ``train``.

    Args:
        name: a name of :func:`baseline_names` (``planner`` needs a world model: build
            :class:`~sepsis_sdk.policies.WorldModelPlannerPolicy` yourself).
        train: the training split.
        seed: seed of any training.
        n_steps: gradient steps for offline RL (default 10,000).
        **options: passed to the factory (e.g. ``n_clusters`` for ``tabular``, ``kind`` for ``clinician``).
    """
    entry = _REGISTRY.get(name)
    if entry is None:
        raise UserError(f"unknown baseline {name!r}; choose from {baseline_names()}")
    return entry.resolve()(train, seed=seed, n_steps=n_steps, **options)


# ------------------------------------------------------------------------------------------ built-ins
@register_baseline("random", description="uniform over the 25 actions")
def _random(train: Cohort, *, seed: int = 0, n_steps: int | None = None, **options: Any) -> Any:
    return UniformPolicy()


@register_baseline(
    "clinician",
    description="behaviour model of the clinicians fitted on the training split (what they would do)",
)
def _clinician(train: Cohort, *, seed: int = 0, n_steps: int | None = None, **options: Any) -> Any:
    from sepsis_sdk.evaluation.behaviour import fit_behaviour_policy
    from sepsis_sdk.policies._features import BehaviourPolicy

    kw = {"kind": options.pop("kind", "logistic"), "softening": options.pop("softening", 0.01)}
    model = fit_behaviour_policy(train, **kw, **options)
    return BehaviourPolicy(model, train.schema.names, name="clinician", static_names=train.schema.static)


@register_baseline(
    "tabular", description="AI-Clinician-style: k-means states, counted transitions, policy iteration"
)
def _tabular(train: Cohort, *, seed: int = 0, n_steps: int | None = None, **options: Any) -> Any:
    from sepsis_sdk.policies.tabular import fit_tabular_policy

    return fit_tabular_policy(train, seed=seed, **options)


#: The d3rlpy algorithms (wrappers in :mod:`sepsis_sdk.training.offline_rl`).
OFFLINE_RL = ("bc", "dqn", "double_dqn", "bcq", "cql")
_OFFLINE_RL_NAMES = {
    "bc": "d3rlpy DiscreteBC (behaviour cloning, greedy)",
    "dqn": "d3rlpy DQN",
    "double_dqn": "d3rlpy DoubleDQN",
    "bcq": "d3rlpy DiscreteBCQ",
    "cql": "d3rlpy DiscreteCQL",
}
for _algo, _desc in _OFFLINE_RL_NAMES.items():
    register_baseline(_algo, f"sepsis_sdk.training.offline_rl:{_algo}_baseline", description=_desc)


@register_baseline("planner", description="world-model planner (agent area), needs a world model")
def _planner(train: Cohort, **options: Any) -> Any:
    raise UserError(
        "the planner needs a world model: build WorldModelPlannerPolicy(world_model, ...) yourself"
    )


__all__ = [
    "BASELINES",
    "OFFLINE_RL",
    "baseline_descriptions",
    "baseline_names",
    "build_baseline",
    "register_baseline",
]
