"""The SepsisAgent paper's model-based evaluation protocol (DESIGN.md 3.7).

For each test patient: replay the clinicians' recorded trajectory while the policy agrees with them; at the
policy's **first deviation**, leave the data and roll the **world model** forward with the policy in the
loop (closed loop: at every simulated step the policy sees the simulated history). The return is the
recorded return when the policy never deviates, else the rewards replayed before the deviation plus the
world model's expected survival after it.

Details we had to decide (the paper gives none):

- A policy "agrees" at a decision when its most likely action (deterministic policies) or an action drawn
  from it with ``seed`` (stochastic ones, ``sample=True``) equals the recorded one.
- After the deviation, ``n_samples`` particles per patient are simulated for at most ``horizon`` steps.
  Each step's death and discharge hazards come from the world model; the survival reward is the
  probability mass that reaches discharge. Mass still in the ICU after ``horizon`` steps is split in the
  proportion of discharge to death mass resolved along that particle (reported as ``unresolved``).
- The reward is survival (+1 discharge alive, 0 death): the ICU-Sepsis reward and the terminal part of the
  Raghu reward (intermediate SOFA/lactate terms are not modelled here).
- Intervals: percentile bootstrap over patients.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from sepsis_sdk.actions import N_ACTIONS
from sepsis_sdk.errors import UserError
from sepsis_sdk.policies import check_probabilities
from sepsis_sdk.types import Observation, PatientHistory

if TYPE_CHECKING:
    from sepsis_sdk.cohort import Cohort


@dataclass(frozen=True)
class ModelBasedResult:
    """The model-based estimate of one policy.

    Attributes:
        value: mean estimated return over patients.
        ci_low / ci_high: bootstrap interval.
        n_patients: patients evaluated.
        deviated: share of patients where the policy deviated from the clinicians.
        mean_deviation_step: mean decision index of the first deviation (among those that deviated).
        unresolved: mean probability mass still in the ICU at the horizon (split by the resolved ratio).
        per_patient: estimated return per patient (cohort order).
    """

    value: float
    ci_low: float | None
    ci_high: float | None
    n_patients: int
    deviated: float
    mean_deviation_step: float | None
    unresolved: float
    horizon: int
    n_samples: int
    per_patient: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; ``per_patient`` only when it holds values (the report stores the summary)."""
        d = asdict(self)
        d["per_patient"] = list(self.per_patient)
        if not d["per_patient"]:
            del d["per_patient"]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelBasedResult:
        """Rebuild from :meth:`to_dict` output (a missing ``per_patient`` is empty)."""
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["per_patient"] = tuple(float(v) for v in d.get("per_patient") or ())
        return cls(**kw)


def _choose(probs: np.ndarray, rng: np.random.Generator, sample: bool) -> np.ndarray:
    if not sample:
        return probs.argmax(1)
    c = np.cumsum(probs, 1)
    return np.minimum((c < rng.random(len(probs))[:, None] * c[:, -1:]).sum(1), N_ACTIONS - 1)


def model_based_value(
    cohort: Cohort,
    policy: Any,
    world_model: Any,
    *,
    horizon: int = 10,
    n_samples: int = 16,
    seed: int = 0,
    sample: bool = False,
    probabilities: np.ndarray | None = None,
    n_bootstrap: int = 500,
    level: float = 0.95,
) -> ModelBasedResult:
    """Estimate ``policy``'s value on ``cohort`` with the replay-then-simulate protocol.

    Args:
        cohort: test episodes of the clinicians (features in the world model's schema).
        policy: any :class:`~sepsis_sdk.policies.Policy`.
        world_model: any :class:`~sepsis_sdk.world_model.WorldModel` trained on the same features.
        horizon: simulated steps after the deviation.
        n_samples: particles per deviating patient.
        seed: seed of action draws and world-model sampling.
        sample: draw actions from the policy instead of taking its most likely action.
        probabilities: precomputed ``(n_rows, 25)`` policy probabilities on the cohort (saves a pass).
        n_bootstrap: patient resamples for the interval (0: none).
        level: interval level.
    """
    if horizon < 1 or n_samples < 1:
        raise UserError(f"horizon and n_samples must be >= 1, got {horizon}, {n_samples}")
    wm_names = list(world_model.schema.names)
    if wm_names != list(cohort.schema.names):
        raise UserError(
            f"world model features {wm_names[:5]}... do not match cohort {cohort.source!r} features "
            f"{cohort.schema.names[:5]}..."
        )
    rng = np.random.default_rng(seed)
    if probabilities is None:
        from sepsis_sdk.evaluation.probabilities import policy_probabilities

        probabilities = policy_probabilities(policy, cohort)
    probs = check_probabilities(probabilities, len(cohort), getattr(policy, "name", "policy"))
    chosen = _choose(probs, rng, sample)
    values, dev_step, start_hist, start_action, dev_eps = _replay(cohort, chosen)
    n_ep = len(values)
    unresolved = np.zeros(n_ep)
    if dev_eps:
        sim, unres = _simulate(
            policy, world_model, start_hist, start_action, horizon, n_samples, rng, sample, seed
        )
        values[dev_eps] += sim
        unresolved[dev_eps] = unres
    lo_ci, hi_ci = _interval(values, n_bootstrap, level, rng)
    deviated = dev_step >= 0
    return ModelBasedResult(
        value=float(values.mean()) if n_ep else float("nan"),
        ci_low=lo_ci,
        ci_high=hi_ci,
        n_patients=n_ep,
        deviated=float(deviated.mean()) if n_ep else 0.0,
        mean_deviation_step=float(dev_step[deviated].mean()) if deviated.any() else None,
        unresolved=float(unresolved.mean()) if n_ep else 0.0,
        horizon=horizon,
        n_samples=n_samples,
        per_patient=tuple(float(v) for v in values),
    )


def _replay(
    cohort: Cohort, chosen: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[PatientHistory], list[int], list[int]]:
    """Replay each episode until the first deviation from the recorded actions.

    Returns:
        ``(values, dev_step, histories, first_actions, deviating)``: the rewards replayed per episode,
        the step of its first deviation (-1: none), and for the deviating episodes the history up to the
        deviation, the policy's action there and the episode numbers.
    """
    rec = cohort.actions
    ep = cohort.episode_index()
    n_ep = int(ep.max()) + 1 if len(ep) else 0
    reward = cohort.data["reward"].to_numpy(dtype=np.float64)
    starts = np.r_[0, np.flatnonzero(np.diff(ep)) + 1]
    ends = np.r_[starts[1:], len(ep)]
    values = np.zeros(n_ep)
    dev_step = np.full(n_ep, -1)
    start_hist: list[PatientHistory] = []
    start_action: list[int] = []
    dev_eps: list[int] = []
    episodes = list(cohort.episodes())
    for i in range(n_ep):
        lo, hi = starts[i], ends[i]
        diff = np.flatnonzero(chosen[lo:hi] != rec[lo:hi])
        if diff.size == 0:
            values[i] = reward[lo:hi].sum()
            continue
        t = int(diff[0])
        dev_step[i] = t
        values[i] = reward[lo : lo + t].sum()
        start_hist.append(episodes[i].history(t))
        start_action.append(int(chosen[lo + t]))
        dev_eps.append(i)
    return values, dev_step, start_hist, start_action, dev_eps


def _interval(
    values: np.ndarray, n_bootstrap: int, level: float, rng: np.random.Generator
) -> tuple[float | None, float | None]:
    """Percentile bootstrap interval of the mean over patients (None without resamples)."""
    n_ep = len(values)
    if not (n_bootstrap and n_ep > 1):
        return None, None
    idx = rng.integers(0, n_ep, size=(n_bootstrap, n_ep))
    boots = values[idx].mean(1)
    a = (1 - level) / 2
    lo, hi = (float(q) for q in np.quantile(boots, [a, 1 - a]))
    return lo, hi


def _simulate(
    policy: Any,
    wm: Any,
    histories: list[PatientHistory],
    first_actions: list[int],
    horizon: int,
    n_samples: int,
    rng: np.random.Generator,
    sample: bool,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Closed-loop particles; returns per-patient expected survival and unresolved mass."""
    lower, upper = (np.asarray(v, dtype=np.float64) for v in wm.schema.bounds())
    parts: list[PatientHistory] = [h for h in histories for _ in range(n_samples)]
    acts = np.repeat(np.asarray(first_actions, dtype=np.int64), n_samples)
    alive = np.ones(len(parts))
    disch = np.zeros(len(parts))
    death = np.zeros(len(parts))
    for step in range(horizon):
        batch = wm.batch(parts)
        ro = wm.rollout(batch, acts[:, None, None], n_samples=1, seed=seed + step)
        p_d = np.clip(np.asarray(ro.p_death, dtype=np.float64)[:, 0], 0.0, 1.0)
        p_s = np.clip(np.asarray(ro.p_discharge, dtype=np.float64)[:, 0], 0.0, 1.0)
        tot = p_d + p_s
        scale = np.where(tot > 1.0, 1.0 / np.maximum(tot, 1e-12), 1.0)
        p_d, p_s = p_d * scale, p_s * scale
        disch += alive * p_s
        death += alive * p_d
        alive *= 1.0 - p_d - p_s
        if step == horizon - 1:
            break
        x = np.asarray(ro.states, dtype=np.float64)[:, 0, 0, 0, :]
        bad = ~np.isfinite(x).all(1)
        if bad.any():
            fb = np.asarray(wm.predict(batch, acts).mean, dtype=np.float64)
            x[bad] = fb[bad]
        x = np.clip(np.where(np.isfinite(x), x, (lower + upper) / 2), lower, upper)
        new_parts = []
        for j, h in enumerate(parts):
            obs = Observation(t=h.t + 1, values=tuple(x[j].tolist()))
            new_parts.append(
                PatientHistory(
                    patient_id=h.patient_id,
                    observations=(*h.observations, obs),
                    actions=(*h.actions, int(acts[j])),
                    static=h.static,
                    feature_names=h.feature_names,
                )
            )
        parts = new_parts
        p = check_probabilities(
            policy.action_probabilities(parts), len(parts), getattr(policy, "name", "policy")
        )
        acts = _choose(p, rng, sample)
    resolved = disch + death
    ratio = np.where(resolved > 0, disch / np.maximum(resolved, 1e-12), 0.5)
    value = disch + alive * ratio
    per = value.reshape(len(histories), n_samples).mean(1)
    unres = alive.reshape(len(histories), n_samples).mean(1)
    return per, unres


__all__ = ["ModelBasedResult", "model_based_value"]
