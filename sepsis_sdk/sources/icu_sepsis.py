"""ICU-Sepsis: the tabular sepsis MDP of Choudhary, Gupta & Thomas (RLC 2024), our embedded cohort and truth.

The MDP (PyPI ``icu-sepsis``, MIT) was estimated from the MIMIC-III AI-Clinician cohort: 716 states
(0-712 clinical, 713 death, 714 survival, 715 absorbing), 25 actions (``5*fluid + vaso``), reward 1 on
entering survival, gamma 1.

Two roles, kept apart on purpose:

- :func:`sample_cohort` draws **episodes** under a behaviour policy into a :class:`~sepsis_sdk.Cohort`.
  Learning code (world models, offline RL, behaviour models) only ever sees such cohorts.
- :class:`ICUSepsisMDP` holds the transition matrix: the hidden truth, read only by the scorer
  (:mod:`sepsis_sdk.truth`) and by the simulator here (:func:`rollout`; :func:`sample_cohort` is that
  simulator recording rows, and the truth layer's Monte Carlo uses the same one).

This module never imports :mod:`sepsis_sdk.truth` (the truth layer builds on it, not the other way round).
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
SOURCE = "icu-sepsis"
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


# ------------------------------------------------------------------------------------------ built-ins
@dataclass(frozen=True)
class OptimalSolution:
    """Result of value iteration: the optimal deterministic policy and its values.

    Attributes:
        policy: ``(716,)`` action per state.
        values: ``(716,)`` optimal state values.
        q: ``(716, 25)`` optimal action values.
        iterations: value-iteration sweeps until convergence.
    """

    policy: np.ndarray
    values: np.ndarray
    q: np.ndarray
    iterations: int

    @property
    def value(self) -> float:
        """The optimal value from the initial distribution."""
        return float(load_mdp().d0 @ self.values)

    def table(self) -> np.ndarray:
        """The policy as a ``(716, 25)`` one-hot table."""
        t = np.zeros((N_STATES, N_ACTIONS))
        t[np.arange(N_STATES), self.policy] = 1.0
        return t


@functools.lru_cache(maxsize=4)
def optimal_policy(
    *, admissible_only: bool = False, tol: float = 1e-12, max_iter: int = 100_000
) -> OptimalSolution:
    """The optimal policy by value iteration (ties: an admissible action first, then the lowest index).

    It lives next to the MDP (not in :mod:`sepsis_sdk.truth`, which re-exports it) because ``"optimal"``
    is one of the built-in behaviour policies the sampler accepts by name.

    Args:
        admissible_only: restrict the maximisation to admissible actions (the published optimum 0.8751
            is over all 25 actions, whose inadmissible rows are the mean of the admissible ones).
        tol: stop when no state value changes by more than this.
        max_iter: most sweeps.
    """
    mdp = load_mdp()
    v = np.zeros(N_STATES)
    mask = np.where(mdp.admissible, 0.0, -np.inf) if admissible_only else 0.0
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 (the count is returned)
        q = mdp.reward + mdp.tx_mat @ v + mask
        q[N_CLINICAL:] = 0.0
        v_new = q.max(1)
        if np.abs(v_new - v).max() < tol:
            v = v_new
            break
        v = v_new
    q = mdp.reward + mdp.tx_mat @ v + mask
    q[N_CLINICAL:] = 0.0
    # Ties go to an admissible action: in a state with one admissible action all 25 rows are equal, and
    # "lowest index" put 16.7 % of states on an inadmissible action (misleading agreement figures).
    tied = q >= q.max(1, keepdims=True) - 1e-10
    return OptimalSolution(policy=(tied * (1 + mdp.admissible)).argmax(1), values=v, q=q, iterations=it)


BUILTIN_POLICIES = {
    "clinician": "clinicians' stored policy, renormalised over admissible actions (the default behaviour policy)",
    "clinician_raw": "clinicians' stored policy as published (some mass on inadmissible actions)",
    "random": "uniform over all 25 actions",
    "random_admissible": "uniform over the admissible actions of each state",
    "optimal": "optimal policy by value iteration over all 25 actions",
    "no_treatment": "never give fluids or vasopressors (action 0)",
}


@functools.lru_cache(maxsize=8)
def _builtin(name: str) -> np.ndarray:
    mdp = load_mdp()
    if name == "clinician":
        return resolve_policy_table(mdp.clinician_policy(admissible_only=True)[:N_CLINICAL], mdp)
    if name == "clinician_raw":
        return resolve_policy_table(mdp.expert_policy[:N_CLINICAL], mdp)
    if name == "random":
        return np.full((N_STATES, N_ACTIONS), 1.0 / N_ACTIONS)
    if name == "random_admissible":
        a = mdp.admissible.astype(float)
        return a / a.sum(1, keepdims=True)
    if name == "optimal":
        return optimal_policy().table()
    if name == "no_treatment":
        t = np.zeros((N_STATES, N_ACTIONS))
        t[:, 0] = 1.0
        return t
    raise UserError(f"unknown built-in policy {name!r}; choose from {sorted(BUILTIN_POLICIES)}")


def builtin_policy(name: str) -> np.ndarray:
    """A ``(716, 25)`` table of one of :data:`BUILTIN_POLICIES` (a copy)."""
    return _builtin(name).copy()


# ------------------------------------------------------------------------------------------ simulator
@dataclass(frozen=True)
class Rollout:
    """Episodes simulated in the true MDP, one record per decision, sorted by episode then step.

    Attributes:
        episode, t, state, action: ``(n_rows,)`` episode index, step, hidden state, action taken.
        reward: ``(n_rows,)`` 1 on the step that reaches survival.
        prob: ``(n_rows,)`` probability the policy gave the action taken.
        outcome: ``(n_episodes,)`` 1 survived, 0 died, -1 cut at ``max_steps``.
    """

    episode: np.ndarray
    t: np.ndarray
    state: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    prob: np.ndarray
    outcome: np.ndarray

    @property
    def n_episodes(self) -> int:
        return len(self.outcome)

    @property
    def returns(self) -> np.ndarray:
        """``(n_episodes,)`` return of each episode (gamma 1: 1 if it reached survival)."""
        return np.bincount(self.episode, weights=self.reward, minlength=self.n_episodes)

    @property
    def unfinished(self) -> int:
        """Episodes cut at ``max_steps`` (their return counts as 0)."""
        return int((self.outcome < 0).sum())


def is_history_dependent(policy: Any) -> bool:
    """Whether ``policy`` must see each patient's history (a :class:`~sepsis_sdk.policies.Policy` whose
    ``markov`` is false) rather than be tabulated on the 713 states."""
    return hasattr(policy, "action_probabilities") and not getattr(policy, "markov", False)


def rollout(
    policy: Any = "clinician",
    n_episodes: int = 1000,
    *,
    epsilon: float = 0.0,
    seed: int = 0,
    max_steps: int = 100,
    progress: Callable[[int], None] | None = None,
) -> Rollout:
    """Simulate ``n_episodes`` in the true ICU-Sepsis MDP: the one batched simulator of the SDK.

    All episodes advance together. A Markov policy (name, table, callable on the observation, or a
    :class:`~sepsis_sdk.policies.Policy` with ``markov = True``) is tabulated once over the 713 states; a
    history-dependent policy (a ``Policy`` with ``markov`` false or unset) is asked at every step for all
    live patients at once, each as a :class:`~sepsis_sdk.PatientHistory` (observations and actions so far).
    :func:`sample_cohort` records the rows as a cohort; :class:`sepsis_sdk.truth.ICUSepsisTruth` uses the
    returns.

    Args:
        policy: the policy acting (see above and :func:`resolve_policy_table`).
        n_episodes: number of patients.
        epsilon: mix a Markov policy with uniform over admissible actions.
        seed: RNG seed; the same arguments give the same episodes.
        max_steps: cap on episode length (episodes still running are cut, outcome -1).
        progress: optional callback receiving the number of finished episodes.
    """
    if n_episodes <= 0:
        raise UserError(f"n_episodes must be positive, got {n_episodes}")
    mdp = load_mdp()
    rng = np.random.default_rng(seed)
    if is_history_dependent(policy):
        if epsilon:
            raise UserError("epsilon applies to Markov policies only")
        act = _HistoryActor(policy, mdp, n_episodes)
    else:
        table = resolve_policy_table(policy, mdp)
        act = _TableActor(soften(table, epsilon, mdp) if epsilon else table)
    cum_tx = np.cumsum(mdp.tx_mat, axis=-1)
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
        a, p = act(t, idx, s, rng)
        s2 = _draw(cum_tx[s, a], rng)
        rec_ep.append(idx)
        rec_t.append(np.full(idx.size, t))
        rec_s.append(s)
        rec_a.append(a)
        rec_r.append((s2 == SURVIVAL).astype(float))
        rec_p.append(p)
        state[idx] = s2
        ended = s2 >= N_CLINICAL
        outcome[idx[ended]] = (s2[ended] == SURVIVAL).astype(np.int64)
        alive[idx[ended]] = False
        if progress is not None:
            progress(int((~alive).sum()))
    ep = np.concatenate(rec_ep)
    order = np.lexsort((np.concatenate(rec_t), ep))
    return Rollout(
        episode=ep[order],
        t=np.concatenate(rec_t)[order],
        state=np.concatenate(rec_s)[order],
        action=np.concatenate(rec_a)[order].astype(np.int64),
        reward=np.concatenate(rec_r)[order],
        prob=np.concatenate(rec_p)[order],
        outcome=outcome,
    )


class _TableActor:
    """Actions of a Markov policy from its state table (precomputed cumulative rows)."""

    def __init__(self, table: np.ndarray) -> None:
        self.table = table
        self.cum = np.cumsum(table, axis=-1)

    def __call__(self, t: int, idx: np.ndarray, s: np.ndarray, rng: np.random.Generator) -> tuple:
        a = _draw(self.cum[s], rng)
        return a, self.table[s, a]


class _HistoryActor:
    """Actions of a history-dependent policy: one batched call per step on the live patients' histories."""

    def __init__(self, policy: Any, mdp: ICUSepsisMDP, n: int) -> None:
        from sepsis_sdk.types import Observation

        self._obs_type = Observation
        self.policy = policy
        self.mdp = mdp
        self.names = tuple(icu_sepsis_schema().names)
        self.obs: list[list[Any]] = [[] for _ in range(n)]
        self.acts: list[list[int]] = [[] for _ in range(n)]
        self.width = len(str(n - 1))

    def __call__(self, t: int, idx: np.ndarray, s: np.ndarray, rng: np.random.Generator) -> tuple:
        from sepsis_sdk.types import PatientHistory

        values = self.mdp.observation(s)
        hists = []
        for j, i in enumerate(idx.tolist()):
            self.obs[i].append(self._obs_type(t=t, values=tuple(values[j].tolist())))
            hists.append(
                PatientHistory(
                    patient_id=f"icu-{i:0{self.width}d}",
                    observations=tuple(self.obs[i]),
                    actions=tuple(self.acts[i]),
                    feature_names=self.names,
                    state_id=int(s[j]),
                )
            )
        probs = _check_rows(self.policy.action_probabilities(hists), len(hists), self.policy)
        a = _draw(np.cumsum(probs, axis=-1), rng)
        for j, i in enumerate(idx.tolist()):
            self.acts[i].append(int(a[j]))
        return a, probs[np.arange(len(a)), a]


def _check_rows(probs: Any, n: int, policy: Any) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    who = getattr(policy, "name", type(policy).__name__)
    if probs.shape != (n, N_ACTIONS):
        raise UserError(f"{who} returned shape {probs.shape}, expected ({n}, {N_ACTIONS})")
    if not np.isfinite(probs).all() or (probs < 0).any() or not np.allclose(probs.sum(1), 1.0, atol=1e-6):
        raise UserError(f"{who} returned rows that are not probability distributions over 25 actions")
    return probs


# ------------------------------------------------------------------------------------------ cohort
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

    This is :func:`rollout` recording its rows: all episodes advance together (vectorised), so 20,000
    episodes take about a second.

    Args:
        n_episodes: number of patients.
        policy: behaviour policy (see :func:`rollout`); default the clinicians' stored policy
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

    ro = rollout(policy, n_episodes, epsilon=epsilon, seed=seed, max_steps=max_steps, progress=progress)
    n, ep = n_episodes, ro.episode
    done = np.r_[ep[1:] != ep[:-1], True]
    obs = load_mdp().observation(ro.state)
    schema = icu_sepsis_schema()
    width = len(str(n - 1))
    cols: dict[str, Any] = {
        "patient_id": np.char.add("icu-", np.char.zfill(ep.astype(str), width)),
        "t": ro.t,
    }
    for j, name in enumerate(schema.names):
        cols[name] = obs[:, j]
    cols.update(
        action=ro.action,
        reward=ro.reward,
        done=done,
        outcome=ro.outcome[ep],
        state_id=ro.state.astype(np.int64),
        behaviour_prob=ro.prob,
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
    return Cohort(df, schema, source=SOURCE, meta=meta)


def _draw(cum: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Inverse-CDF sampling from rows of cumulative probabilities."""
    u = rng.random(cum.shape[0]) * cum[:, -1]
    return np.minimum((cum < u[:, None]).sum(1), cum.shape[1] - 1)


__all__ = [
    "ABSORBING",
    "BUILTIN_POLICIES",
    "DEATH",
    "FEATURE_NAMES",
    "N_ACTIONS",
    "N_CLINICAL",
    "N_STATES",
    "SOURCE",
    "SURVIVAL",
    "ICUSepsisMDP",
    "OptimalSolution",
    "Rollout",
    "builtin_policy",
    "icu_sepsis_schema",
    "is_history_dependent",
    "load_mdp",
    "optimal_policy",
    "resolve_policy_table",
    "rollout",
    "sample_cohort",
    "soften",
]
