"""ICU-Sepsis: the tabular sepsis MDP of Choudhary, Gupta & Thomas (RLC 2024), our embedded cohort and truth.

The MDP (PyPI ``icu-sepsis``, MIT) was estimated from the MIMIC-III AI-Clinician cohort: 716 states
(0-712 clinical, 713 death, 714 survival, 715 absorbing), 25 actions (``5*fluid + vaso``), reward 1 on
entering survival, gamma 1.

Two roles, kept apart on purpose:

- :func:`sample_cohort` draws **episodes** under a behaviour policy into a :class:`~sepsis_sdk.Cohort`.
  Learning code (world models, offline RL, behaviour models) only ever sees such cohorts.
- :class:`ICUSepsisMDP` holds the transition matrix: the hidden truth, read only by the scorer
  (:mod:`sepsis_sdk.truth`) and by the sampler.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sepsis_sdk.errors import UserError
from sepsis_sdk.features import FeatureSchema, FeatureSpec

N_STATES = 716
N_CLINICAL = 713
DEATH, SURVIVAL, ABSORBING = 713, 714, 715
N_ACTIONS = 25

BINARY_FEATURES = ("gender", "mechvent", "max_dose_vaso", "re_admission")
Z_FEATURES = (
    "age", "Weight_kg", "GCS", "HR", "SysBP", "MeanBP", "DiaBP", "RR", "Temp_C", "FiO2_1", "Potassium",
    "Sodium", "Chloride", "Glucose", "Magnesium", "Calcium", "Hb", "WBC_count", "Platelets_count", "PTT",
    "PT", "Arterial_pH", "paO2", "paCO2", "Arterial_BE", "HCO3", "Arterial_lactate", "SOFA", "SIRS",
    "Shock_Index", "PaO2_FiO2", "cumulated_balance",
)  # fmt: skip
ZLOG_FEATURES = (
    "SpO2", "BUN", "Creatinine", "SGOT", "SGPT", "Total_bili", "INR", "input_total", "input_4hourly",
    "output_total", "output_4hourly",
)  # fmt: skip
FEATURE_NAMES: tuple[str, ...] = (*BINARY_FEATURES, *Z_FEATURES, *ZLOG_FEATURES)
SOFA_COLUMN = "sofa"  # SOFA points of the state (from the package's sofa_scores), shown in clinical units


@dataclass(frozen=True)
class ICUSepsisMDP:
    """The ICU-Sepsis MDP's arrays.

    Attributes:
        tx_mat: ``(716, 25, 716)`` transition probabilities (the hidden truth).
        reward: ``(716, 25)`` expected immediate reward.
        d0: ``(716,)`` initial-state distribution.
        admissible: ``(716, 25)`` bool; an (s, a) seen 20 times or fewer in the source data is not
            admissible (its dynamics are the mean of the admissible rows).
        expert_policy: ``(716, 25)`` the clinicians' policy as stored (some mass on inadmissible actions).
        centers: ``(716, 47)`` state cluster centres in the stored feature space.
        sofa: ``(716,)`` SOFA score of each state.
    """

    tx_mat: np.ndarray
    reward: np.ndarray
    d0: np.ndarray
    admissible: np.ndarray
    expert_policy: np.ndarray
    centers: np.ndarray
    sofa: np.ndarray

    @property
    def terminal(self) -> np.ndarray:
        return np.arange(N_STATES) >= N_CLINICAL

    def clinician_policy(self, *, admissible_only: bool = True) -> np.ndarray:
        """The stored clinician policy; by default its mass renormalised over admissible actions."""
        pi = self.expert_policy.copy()
        if admissible_only:
            pi = pi * self.admissible
            sums = pi.sum(1, keepdims=True)
            uniform = self.admissible / self.admissible.sum(1, keepdims=True)
            pi = np.where(sums > 0, pi / np.where(sums > 0, sums, 1.0), uniform)
        return pi

    def observation(self, state: np.ndarray | int) -> np.ndarray:
        """Stored features (47 + SOFA) of one state or an array of states."""
        s = np.asarray(state)
        return np.concatenate([self.centers[s], self.sofa[s][..., None]], axis=-1)


@functools.lru_cache(maxsize=1)
def load_mdp() -> ICUSepsisMDP:
    """Load the MDP arrays from the ``icu-sepsis`` package (cached)."""
    import contextlib
    import io
    import warnings

    import gymnasium

    # icu_sepsis imports the unmaintained `gym`, which prints a banner to stderr on import.
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        import icu_sepsis  # noqa: F401  (registers the environment)

        env = gymnasium.make("Sepsis/ICU-Sepsis-v2")
    u = env.unwrapped
    tx = np.asarray(u._tx_mat, dtype=np.float64)
    r_full = np.asarray(u._r_mat, dtype=np.float64)
    reward = (tx * r_full).sum(-1)
    adm = np.zeros((N_STATES, N_ACTIONS), dtype=bool)
    for s, acts in enumerate(u._admissible_actions):
        adm[s, list(acts)] = True
    env.close()
    for arr in (tx, reward, adm):
        arr.setflags(write=False)
    return ICUSepsisMDP(
        tx_mat=tx,
        reward=reward,
        d0=np.asarray(u._d_0, dtype=np.float64),
        admissible=adm,
        expert_policy=np.asarray(u._expert_policy, dtype=np.float64),
        centers=np.asarray(u._state_cluster_centers, dtype=np.float64),
        sofa=np.asarray(u._sofa_scores, dtype=np.float64),
    )


@functools.lru_cache(maxsize=1)
def icu_sepsis_schema() -> FeatureSchema:
    """The 48 stored features of ICU-Sepsis observations (47 named columns + SOFA points).

    Bounds are the range of the 713 clinical state centres widened by 10 % of that range on each side:
    the cohort's means and SDs are not published, so clinical-unit bounds cannot be given.
    """
    mdp = load_mdp()
    c = mdp.centers[:N_CLINICAL]
    lo, hi = c.min(0), c.max(0)
    pad = 0.1 * (hi - lo) + 1e-6
    feats = []
    for j, name in enumerate(FEATURE_NAMES):
        if name == "max_dose_vaso":
            kind = {
                "unit": "ug/kg/min",
                "offset": 0.5,
                "description": "maximum vasopressor dose, stored as raw - 0.5",
            }
        elif name in BINARY_FEATURES:
            shift = " + 0.6" if name == "re_admission" else ""
            kind = {
                "kind": "binary",
                "transform": "binary",
                "offset": -0.1 if shift else 0.5,
                "description": f"flag stored as raw - 0.5{shift}",
            }
        elif name in Z_FEATURES:
            kind = {"unit": "SD", "transform": "z"}
        else:
            kind = {"unit": "SD", "transform": "zlog", "description": "z-score of log(x + 0.1)"}
        feats.append(FeatureSpec(name=name, lower=float(lo[j] - pad[j]), upper=float(hi[j] + pad[j]), **kind))
    feats.append(
        FeatureSpec(
            name=SOFA_COLUMN,
            unit="points",
            kind="ordinal",
            lower=0.0,
            upper=24.0,
            description="SOFA score of the state (icu-sepsis sofa_scores)",
        )
    )
    return FeatureSchema(name="icu-sepsis", features=tuple(feats))


PolicyLike = "np.ndarray | Callable[[np.ndarray], Any] | str"


def resolve_policy_table(policy: Any, mdp: ICUSepsisMDP | None = None) -> np.ndarray:
    """Turn a policy on ICU-Sepsis states into a ``(716, 25)`` table of action probabilities.

    Accepted: a name (``"clinician"``, ``"clinician_raw"``, ``"random"``, ``"optimal"``, ``"no_treatment"``);
    an array of shape ``(716, 25)`` / ``(713, 25)`` (probabilities) or ``(716,)`` / ``(713,)`` (actions);
    a :class:`~sepsis_sdk.policies.Policy` (``action_probabilities(histories) -> (n, 25)``), evaluated as a
    Markov policy: it sees a one-step history holding the state's observation (t=0) and ``state_id``; or a
    callable on the stored observation of a state (48 values) returning an action index or 25 probabilities.
    History-dependent policies are scored by Monte Carlo in the true MDP instead.
    """
    mdp = mdp or load_mdp()
    if isinstance(policy, str):
        from sepsis_sdk.truth import builtin_policy

        return builtin_policy(policy)
    if hasattr(policy, "action_probabilities"):
        from sepsis_sdk.types import Observation, PatientHistory

        obs = mdp.observation(np.arange(N_CLINICAL))
        names = tuple(icu_sepsis_schema().names)
        hist = [
            PatientHistory(
                patient_id=f"state-{s}",
                observations=(Observation(t=0, values=tuple(obs[s].tolist())),),
                feature_names=names,
                state_id=s,
            )
            for s in range(N_CLINICAL)
        ]
        probs = np.asarray(policy.action_probabilities(hist), dtype=np.float64)
        return _complete_table(probs)
    if callable(policy):
        rows = []
        for s in range(N_CLINICAL):
            out = policy(mdp.observation(s))
            rows.append(_as_row(out, s))
        return _complete_table(np.stack(rows))
    arr = np.asarray(policy)
    if arr.ndim == 1 and arr.shape[0] in (N_CLINICAL, N_STATES):
        idx = arr.astype(np.int64)
        if not np.array_equal(idx, arr) or idx.min() < 0 or idx.max() >= N_ACTIONS:
            raise UserError("a deterministic policy table needs integer actions 0-24")
        table = np.zeros((arr.shape[0], N_ACTIONS))
        table[np.arange(arr.shape[0]), idx] = 1.0
        return _complete_table(table[:N_CLINICAL])
    if arr.ndim == 2 and arr.shape[1] == N_ACTIONS and arr.shape[0] in (N_CLINICAL, N_STATES):
        return _complete_table(arr[:N_CLINICAL].astype(np.float64))
    raise UserError(
        f"cannot interpret a policy of type {type(policy).__name__} with shape {getattr(arr, 'shape', None)}"
    )


def _as_row(out: Any, s: int) -> np.ndarray:
    arr = np.asarray(out, dtype=np.float64)
    if arr.ndim == 0:
        a = int(arr)
        if a != arr or not 0 <= a < N_ACTIONS:
            raise UserError(f"policy returned {out!r} for state {s}; expected an action 0-24")
        row = np.zeros(N_ACTIONS)
        row[a] = 1.0
        return row
    if arr.shape != (N_ACTIONS,):
        raise UserError(f"policy returned shape {arr.shape} for state {s}; expected 25 probabilities")
    return arr


def _complete_table(probs: np.ndarray) -> np.ndarray:
    """Validate clinical-state rows and append uniform rows for the 3 terminal states."""
    if probs.shape != (N_CLINICAL, N_ACTIONS):
        raise UserError(f"policy table must cover the 713 clinical states, got {probs.shape}")
    if not np.isfinite(probs).all() or (probs < -1e-12).any():
        raise UserError("policy probabilities must be finite and non-negative")
    sums = probs.sum(1)
    if not np.allclose(sums, 1.0, atol=1e-6):
        bad = np.flatnonzero(~np.isclose(sums, 1.0, atol=1e-6))[:5].tolist()
        raise UserError(f"policy probabilities must sum to 1 in every state; states {bad} do not")
    full = np.full((N_STATES, N_ACTIONS), 1.0 / N_ACTIONS)
    full[:N_CLINICAL] = np.clip(probs, 0.0, None) / probs.clip(0.0, None).sum(1, keepdims=True)
    return full


def soften(
    table: np.ndarray, epsilon: float, mdp: ICUSepsisMDP | None = None, *, admissible_only: bool = True
) -> np.ndarray:
    """Mix a policy table with uniform over (admissible) actions: ``(1 - eps) * pi + eps * uniform``."""
    if not 0.0 <= epsilon <= 1.0:
        raise UserError(f"epsilon must be in [0, 1], got {epsilon}")
    mdp = mdp or load_mdp()
    base = mdp.admissible.astype(float) if admissible_only else np.ones_like(table)
    uni = base / base.sum(1, keepdims=True)
    return (1 - epsilon) * table + epsilon * uni


def sample_cohort(
    n_episodes: int = 1000,
    *,
    policy: Any = "clinician",
    epsilon: float = 0.0,
    seed: int = 0,
    max_steps: int = 100,
    progress: Callable[[int], None] | None = None,
) -> Any:
    """Sample ``n_episodes`` ICU-Sepsis episodes under a behaviour policy into a cohort.

    All episodes advance together (vectorised), so 20,000 episodes take about a second.

    Args:
        n_episodes: number of patients.
        policy: behaviour policy (see :func:`resolve_policy_table`); default the clinicians' stored policy
            renormalised over admissible actions.
        epsilon: mix the policy with uniform over admissible actions.
        seed: RNG seed; the same arguments give the same cohort.
        max_steps: safety cap on episode length (episodes still running are cut and marked unknown outcome;
            none are expected: the longest of 100k clinician episodes was far shorter).
        progress: optional callback receiving the number of finished episodes.

    Returns:
        A :class:`~sepsis_sdk.Cohort` with the 48 stored features, ``action``, ``reward`` (1 on the step that
        reaches survival), ``outcome``, ``state_id`` (hidden truth, scoring only) and ``behaviour_prob``.
    """
    import pandas as pd

    from sepsis_sdk.cohort import Cohort

    if n_episodes <= 0:
        raise UserError(f"n_episodes must be positive, got {n_episodes}")
    mdp = load_mdp()
    table = resolve_policy_table(policy, mdp)
    if epsilon:
        table = soften(table, epsilon, mdp)
    rng = np.random.default_rng(seed)
    cum_tx = np.cumsum(mdp.tx_mat, axis=-1)
    cum_pi = np.cumsum(table, axis=-1)
    n = n_episodes
    state = _draw(np.cumsum(mdp.d0)[None, :].repeat(n, 0), rng)
    alive = np.ones(n, dtype=bool)
    rec_ep, rec_t, rec_s, rec_a, rec_r, rec_p = [], [], [], [], [], []
    outcome = np.full(n, -1, dtype=np.int64)
    for t in range(max_steps):
        idx = np.flatnonzero(alive)
        if idx.size == 0:
            break
        s = state[idx]
        a = _draw(cum_pi[s], rng)
        s2 = _draw(cum_tx[s, a], rng)
        rec_ep.append(idx)
        rec_t.append(np.full(idx.size, t))
        rec_s.append(s)
        rec_a.append(a)
        rec_r.append((s2 == SURVIVAL).astype(float))
        rec_p.append(table[s, a])
        state[idx] = s2
        ended = s2 >= N_CLINICAL
        outcome[idx[ended]] = (s2[ended] == SURVIVAL).astype(np.int64)
        alive[idx[ended]] = False
        if progress is not None:
            progress(int((~alive).sum()))
    ep = np.concatenate(rec_ep)
    order = np.lexsort((np.concatenate(rec_t), ep))
    ep = ep[order]
    t_arr = np.concatenate(rec_t)[order]
    s_arr = np.concatenate(rec_s)[order]
    done = np.r_[ep[1:] != ep[:-1], True]
    obs = mdp.observation(s_arr)
    schema = icu_sepsis_schema()
    width = len(str(n - 1))
    cols: dict[str, Any] = {
        "patient_id": np.char.add("icu-", np.char.zfill(ep.astype(str), width)),
        "t": t_arr,
    }
    for j, name in enumerate(schema.names):
        cols[name] = obs[:, j]
    cols.update(
        action=np.concatenate(rec_a)[order].astype(np.int64),
        reward=np.concatenate(rec_r)[order],
        done=done,
        outcome=outcome[ep],
        state_id=s_arr.astype(np.int64),
        behaviour_prob=np.concatenate(rec_p)[order],
    )
    df = pd.DataFrame(cols)
    meta = {
        "n_episodes": n,
        "policy": policy if isinstance(policy, str) else "custom",
        "epsilon": epsilon,
        "seed": seed,
        "synthetic": False,
        "gamma": 1.0,
    }
    return Cohort(df, schema, source="icu-sepsis", meta=meta)


def _draw(cum: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Inverse-CDF sampling from rows of cumulative probabilities."""
    u = rng.random(cum.shape[0]) * cum[:, -1]
    return np.minimum((cum < u[:, None]).sum(1), cum.shape[1] - 1)


__all__ = [
    "ABSORBING",
    "DEATH",
    "FEATURE_NAMES",
    "N_CLINICAL",
    "N_STATES",
    "SURVIVAL",
    "ICUSepsisMDP",
    "icu_sepsis_schema",
    "load_mdp",
    "resolve_policy_table",
    "sample_cohort",
    "soften",
]
