"""A SYNTHETIC MIMIC-IV-like sepsis cohort from a documented latent-physiology simulator.

Nothing here comes from patients. The simulator exists so that users and tests can run the MIMIC path
(SepsisAgent format: 39 features + masks + static + 90-day mortality) without credentials, and, because it
can replay the same patients under any policy, it gives **ground truth** for policy values.

Every output is labelled synthetic: the schema (``synthetic=True``, name ``"synthetic-mimic-iv"``), the
cohort source (``"synthetic-mimic-iv"``) and ``cohort.meta["synthetic"] = True``.

Model (one step = 4 hours; full equations and tolerances in ``docs/data_mimic.md``). Five latent states
per patient:

- ``S`` sepsis severity (inflammation, vasoplegia, capillary leak), decays at a patient-specific rate and
  is fed by oxygen debt;
- ``V`` intravascular volume relative to optimal (litres): capillary leak lowers it, fluid raises it by the
  fraction that stays intravascular (less when ``S`` is high);
- ``O`` extravascular fluid overload (litres): the fluid that leaks out, plus fluid given when already
  replete; worsens oxygenation, kidneys and mortality;
- ``D`` oxygen debt (hypoperfusion): builds while MAP < 68 mmHg or the patient is severely hypovolaemic,
  clears with a half-life of one step; drives lactate, kidney injury and mortality;
- ``K`` acute kidney injury: raises creatinine and BUN, lowers urine output.

MAP rises with volume only while hypovolaemic (Frank-Starling plateau) and with vasopressors (saturating);
the other features are noisy functions of these latents plus persistent patient effects, calibrated so that
under the clinician-like behaviour policy the marginals match the published MIMIC-IV sepsis statistics.

Example:
    >>> cohort = synthesize_cohort(200, seed=0)
    >>> cohort.synthetic
    True
    >>> model = SyntheticSepsisModel()
    >>> from sepsis_sdk.truth import SyntheticTruth
    >>> res = SyntheticTruth(model).simulate("no-treatment", episodes=500, seed=1)   # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from sepsis_sdk.actions import FLUID_EDGES, N_ACTIONS, VASO_EDGES
from sepsis_sdk.errors import UserError
from sepsis_sdk.features import mask_column
from sepsis_sdk.sources._mimic_schema import (
    MIMIC_IV_FEATURES,
    SOFA_COLUMN,
    approx_sofa,
    mimic_iv_schema,
    reference_stats,
)
from sepsis_sdk.types import MonteCarloResult

if TYPE_CHECKING:
    from sepsis_sdk.cohort import Cohort

SOURCE = "synthetic-mimic-iv"
_F = {name: j for j, name in enumerate(MIMIC_IV_FEATURES)}

# ------------------------------------------------------------------------------------------ parameters


@dataclass(frozen=True)
class SyntheticParams:
    """Coefficients of the simulator (defaults calibrated against the published MIMIC-IV statistics).

    Only the coefficients a user may want to vary are exposed; see ``docs/data_mimic.md`` for the full
    equations. All rates are per 4-hour step.
    """

    horizon: int = 20
    """Maximum steps per episode (80 h); patients who recover earlier are discharged from the window."""
    severity_shape: float = 3.0
    severity_scale: float = 0.4
    """Initial severity ``S0 ~ Gamma(shape, scale)`` (mean 1.2)."""
    recovery_mean: float = 0.07
    recovery_sd: float = 0.05
    """Per-patient severity decay rate ``r ~ N(mean, sd)`` (negative: a progressing patient)."""
    leak: float = 0.11
    """Litres of intravascular volume lost per step per unit severity (capillary leak)."""
    retention: float = 0.8
    """Fraction of a fluid bolus still intravascular after 4 h when ``S = 0`` (divided by 1 + 0.3 S)."""
    map_base: float = 93.0
    map_severity: float = 11.0
    map_volume: float = 16.0
    """MAP = base - severity*S + volume*tanh(V/1.5) (volume term /4 when V > 0) + vasopressor effect."""
    vaso_emax: float = 26.0
    vaso_ec50: float = 0.2
    """Vasopressor MAP effect ``emax * dose / (dose + ec50)`` (mmHg; dose in ug/kg/min)."""
    overload_threshold: float = 3.0
    """Litres of extravascular fluid beyond which overload raises mortality and kidney injury."""
    hazard_intercept: float = -7.4
    post_intercept: float = -3.6
    """Logit intercepts of the per-step ICU death hazard and of death after the window (90-day)."""
    discharge_prob: float = 0.3
    """Per-step probability of leaving the window once recovered (S < 0.5, MAP >= 65, no vasopressor)."""
    missingness: bool = True
    """Draw realistic lab measurement schedules (masks); False: every value observed."""


# Representative fluid volume inside each level for the simulator: drawn within the published bins.
_FLUID_LO = (0.0, 1.0, FLUID_EDGES[0], FLUID_EDGES[1], FLUID_EDGES[2])
_FLUID_HI = (0.0, FLUID_EDGES[0], FLUID_EDGES[1], FLUID_EDGES[2], None)
_VASO_LO = (0.0, 0.01, VASO_EDGES[0], VASO_EDGES[1], VASO_EDGES[2])
_VASO_HI = (0.0, VASO_EDGES[0], VASO_EDGES[1], VASO_EDGES[2], None)

# Lab panels drawn together (a measurement schedule per panel), with per-step measurement probability
# at t = 0 and later; "abg" is drawn more often when the last lactate was high.
_PANELS: dict[str, tuple[tuple[str, ...], float, float]] = {
    "vitals": (("heart_rate", "sysbp", "diabp", "meanbp", "resp_rate", "spo2"), 0.99, 0.97),
    "temp": (("temp_c",), 0.9, 0.75),
    "vent": (("fio2",), 0.85, 0.7),
    "gcs": (("gcs_eye", "gcs_verbal", "gcs_motor"), 0.9, 0.75),
    "chem": (("bicarbonate", "bun", "calcium_total", "chloride", "creatinine", "glucose", "magnesium",
              "potassium", "sodium", "total_co2"), 0.95, 0.35),
    "cbc": (("hemoglobin", "hematocrit", "platelet", "wbc"), 0.95, 0.33),
    "coag": (("inr", "pt", "ptt"), 0.85, 0.22),
    "lft": (("albumin", "alt", "ast", "bilirubin_total"), 0.7, 0.1),
    "abg": (("base_excess", "calcium_free", "lactate", "paco2", "pao2", "ph"), 0.85, 0.3),
    "urine": (("output_4hourly",), 1.0, 1.0),
}  # fmt: skip

# Generic labs: (loading on standardised severity, persistence share of variance, lognormal?).
_GENERIC: dict[str, tuple[float, float, bool]] = {
    "albumin": (-0.35, 0.8, False),
    "alt": (0.25, 0.75, True),
    "ast": (0.3, 0.75, True),
    "base_excess": (0.0, 0.6, False),
    "calcium_free": (-0.2, 0.6, False),
    "calcium_total": (-0.25, 0.7, False),
    "chloride": (0.0, 0.7, False),
    "glucose": (0.2, 0.4, True),
    "hemoglobin": (-0.1, 0.85, False),
    "inr": (0.3, 0.8, True),
    "ptt": (0.25, 0.7, True),
    "magnesium": (0.0, 0.5, False),
    "potassium": (0.1, 0.4, False),
    "sodium": (0.0, 0.75, False),
    "paco2": (0.0, 0.6, False),
    "bilirubin_total": (0.3, 0.85, True),
    "wbc": (0.4, 0.6, True),
    "platelet": (-0.4, 0.8, True),
}
_GENERIC_NAMES = tuple(_GENERIC)
_AR = 0.8  # within-patient autocorrelation of the non-persistent part of generic labs, per step

# Ordinal GCS components: category probabilities matched to the published mean/SD.
_GCS_PROBS = {
    "gcs_eye": (0.2, 0.1, 0.25, 0.45),
    "gcs_verbal": (0.5, 0.05, 0.05, 0.1, 0.3),
    "gcs_motor": (0.11, 0.03, 0.03, 0.07, 0.13, 0.63),
}

N_EPS = 24  # normal draws per patient per step
N_UNI = 16  # uniform draws per patient per step


# ------------------------------------------------------------------------------------------ policies

PolicySpec = Any  # str | Policy | Callable[[PatientHistory], int | Sequence[float]]


@dataclass
class PolicyContext:
    """What a vectorised policy sees at one step, for the ``n`` patients still in the window.

    Attributes:
        t: the step (same for all).
        values: ``(n, 39)`` stored feature values (last observation carried forward).
        mask: ``(n, 39)`` True where measured at this step.
        prev_action: ``(n,)`` previous action index (-1 at t = 0).
        fluid_total: ``(n,)`` mL of fluid given so far in the window.
        prev_vaso_level: ``(n,)`` previous vasopressor level (0 at t = 0).
    """

    t: int
    values: np.ndarray
    mask: np.ndarray
    prev_action: np.ndarray
    fluid_total: np.ndarray
    prev_vaso_level: np.ndarray

    def feature(self, name: str) -> np.ndarray:
        return self.values[:, _F[name]]


def _softmax(u: np.ndarray) -> np.ndarray:
    u = u - u.max(1, keepdims=True)
    e = np.exp(u)
    return e / e.sum(1, keepdims=True)


def clinician_like(ctx: PolicyContext) -> np.ndarray:
    """The behaviour policy: noisy guideline-following, as clinicians in MIMIC roughly behave.

    Fluid: aim at a high level (3.5) in the first 8 h when MAP < 65 or lactate > 2, a moderate level (2.5)
    later while hypoperfused, maintenance (1.2) otherwise, one level less after 5 L in the window.
    Vasopressor: start/increase when MAP < 65 after the first step (more below 55), wean when MAP > 75,
    otherwise keep the previous level. Preferences are Gaussian in the level (SD 0.9 fluid, 0.55 vaso),
    combined by a softmax and mixed with 2 % uniform, so every action has positive probability.
    """
    mp = ctx.feature("meanbp")
    lac = ctx.feature("lactate")
    hypo = (mp < 65) | (lac > 2.0)
    f_target = np.where(hypo, 3.5 if ctx.t < 2 else 2.5, 1.2)
    f_target = f_target - (ctx.fluid_total > 5000) * 1.0
    prev_v = ctx.prev_vaso_level.astype(float)
    v_target = prev_v.copy()
    if ctx.t >= 1:
        v_target = v_target + (mp < 65) * 1.0 + (mp < 55) * 0.7
    v_target = v_target - (mp > 75) * 1.0 - ((mp > 68) & (mp <= 75)) * 0.5
    v_target = np.clip(v_target, 0.0, 4.0)
    levels = np.arange(5, dtype=float)
    uf = -((levels[None, :] - f_target[:, None]) ** 2) / (2 * 0.9**2)
    uv = -((levels[None, :] - v_target[:, None]) ** 2) / (2 * 0.35**2)
    u = (uf[:, :, None] + uv[:, None, :]).reshape(len(mp), N_ACTIONS)  # index 5*fluid + vaso
    return 0.98 * _softmax(u) + 0.02 / N_ACTIONS


def guideline(ctx: PolicyContext) -> np.ndarray:
    """A deterministic Surviving-Sepsis-style rule: top fluid level while hypoperfused in the first 8 h,
    level 2 after, maintenance (1) otherwise; vasopressor titrated one level at a time to MAP 65-75."""
    mp = ctx.feature("meanbp")
    lac = ctx.feature("lactate")
    hypo = (mp < 65) | (lac > 2.0)
    f = np.where(hypo, 4 if ctx.t < 2 else 2, 1)
    f = np.where(ctx.fluid_total > 6000, np.minimum(f, 1), f)
    v = ctx.prev_vaso_level + (mp < 65) * (ctx.t >= 1) - (mp > 75)
    v = np.clip(v, 0, 4).astype(int)
    out = np.zeros((len(mp), N_ACTIONS))
    out[np.arange(len(mp)), 5 * f + v] = 1.0
    return out


def _constant(index: int) -> Callable[[PolicyContext], np.ndarray]:
    def pol(ctx: PolicyContext) -> np.ndarray:
        out = np.zeros((len(ctx.prev_action), N_ACTIONS))
        out[:, index] = 1.0
        return out

    return pol


def _random(ctx: PolicyContext) -> np.ndarray:
    return np.full((len(ctx.prev_action), N_ACTIONS), 1.0 / N_ACTIONS)


SYNTHETIC_POLICIES: dict[str, tuple[Callable[[PolicyContext], np.ndarray], str]] = {
    "clinician-like": (clinician_like, "noisy guideline-following behaviour policy (the default)"),
    "guideline": (guideline, "deterministic fluids-then-vasopressor rule targeting MAP 65-75"),
    "no-treatment": (_constant(0), "never any fluid or vasopressor"),
    "max-fluids": (_constant(20), "top fluid level at every step, no vasopressor (overload)"),
    "random": (_random, "uniform over the 25 actions"),
}


def _resolve_policy(policy: PolicySpec) -> tuple[Callable[[PolicyContext, list], np.ndarray], str, bool]:
    """-> (fn(ctx, histories) -> probs, name, needs_histories)."""
    if isinstance(policy, str):
        key = policy.replace("_", "-")
        if key not in SYNTHETIC_POLICIES:
            raise UserError(f"unknown synthetic policy {policy!r}; choose from {sorted(SYNTHETIC_POLICIES)}, "
                            "or pass a Policy or a callable history -> action")  # fmt: skip
        fn = SYNTHETIC_POLICIES[key][0]
        return (lambda ctx, _h: fn(ctx)), key, False
    if getattr(policy, "vectorized", False) and callable(policy):
        return (
            (lambda ctx, _h: np.asarray(policy(ctx), dtype=np.float64)),
            getattr(policy, "name", "vectorized"),
            False,
        )
    if hasattr(policy, "action_probabilities"):
        name = str(getattr(policy, "name", type(policy).__name__))
        return (lambda _ctx, h: np.asarray(policy.action_probabilities(h), dtype=np.float64)), name, True
    if callable(policy):
        # a function history -> action index or 25 probabilities (FunctionPolicy's contract, without
        # importing sepsis_sdk.policies: the sources sit below the policies and the truth layer)
        return (lambda _ctx, h: _function_rows(policy, h)), getattr(policy, "__name__", "function"), True
    raise UserError(f"cannot use {type(policy).__name__} as a policy: pass a name, a Policy or a callable")


def _function_rows(fn: Callable[[Any], Any], histories: list) -> np.ndarray:
    rows = np.zeros((len(histories), N_ACTIONS))
    for i, h in enumerate(histories):
        arr = np.asarray(fn(h), dtype=np.float64)
        if arr.ndim == 0:
            a = int(arr)
            if not 0 <= a < N_ACTIONS:
                raise UserError(f"policy returned action {a}; expected an action index 0-24")
            rows[i, a] = 1.0
        elif arr.shape == (N_ACTIONS,):
            rows[i] = arr  # the sums are checked by the simulator (_check_probs)
        else:
            raise UserError(
                f"policy returned shape {arr.shape}; expected an action index or 25 probabilities"
            )
    return rows


# ------------------------------------------------------------------------------------------ simulator


@dataclass
class _Trace:
    """Per-step records of one simulation (arrays indexed [patient, step])."""

    values: np.ndarray  # (n, H, 39) stored (imputed)
    mask: np.ndarray  # (n, H, 39)
    action: np.ndarray  # (n, H)
    prob: np.ndarray  # (n, H)
    fluid: np.ndarray  # (n, H) mL
    vaso: np.ndarray  # (n, H) ug/kg/min
    latent: np.ndarray  # (n, H, 5) S, V, Ov, D, K at the observation
    length: np.ndarray  # (n,)
    died_in_window: np.ndarray  # (n,) bool
    p_death_after: np.ndarray  # (n,) probability of death after the window (0 if died in it)
    outcome: np.ndarray  # (n,) 1 survived, 0 died (drawn)
    static: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def empty(cls, n: int, horizon: int, n_features: int, static: dict[str, np.ndarray]) -> _Trace:
        """Records of ``n`` patients before the first step (NaN / -1 / 0 where nothing happened yet)."""
        h = horizon
        return cls(values=np.full((n, h, n_features), np.nan), mask=np.zeros((n, h, n_features), dtype=bool),
                   action=np.full((n, h), -1, dtype=np.int64), prob=np.full((n, h), np.nan),
                   fluid=np.zeros((n, h)), vaso=np.zeros((n, h)), latent=np.full((n, h, 5), np.nan),
                   length=np.zeros(n, dtype=np.int64), died_in_window=np.zeros(n, dtype=bool),
                   p_death_after=np.zeros(n), outcome=np.zeros(n, dtype=np.int64), static=static)  # fmt: skip


class SyntheticSepsisModel:
    """The latent-physiology simulator behind :func:`synthesize_cohort`.

    The same ``seed`` gives the same patients and the same exogenous noise (common random numbers) whatever
    the policy, so two policies can be compared on identical patients: a counterfactual.

    Args:
        params: simulator coefficients (:class:`SyntheticParams`).
    """

    def __init__(self, params: SyntheticParams | None = None, **overrides: Any) -> None:
        params = params or SyntheticParams()
        if overrides:
            params = replace(params, **overrides)
        if params.horizon < 1:
            raise UserError(f"horizon must be >= 1, got {params.horizon}")
        self.params = params
        stats = reference_stats()["features"]
        self._ref_mean = np.array([stats[f]["mean"] for f in MIMIC_IV_FEATURES])
        schema = mimic_iv_schema(synthetic=True)
        self._lower, self._upper = (np.array(b) for b in schema.bounds())

    # ------------------------------------------------------------------ public API
    def simulate(
        self,
        n_patients: int = 1000,
        *,
        policy: PolicySpec = "clinician-like",
        seed: int = 0,
        impute: Literal["locf", "none"] = "locf",
        include_latent: bool = False,
    ) -> Cohort:
        """Simulate ``n_patients`` under ``policy`` into a labelled-synthetic cohort.

        Args:
            n_patients: number of patients.
            policy: a name from :data:`SYNTHETIC_POLICIES`, a :class:`~sepsis_sdk.policies.Policy`, or a
                callable ``history -> action index or 25 probabilities``.
            seed: the patients and all noise; the same seed gives the same patients under any policy.
            impute: ``"locf"`` (default) stores the last measured value where a feature was not measured
                (the reference mean before the first measurement), as SepsisAgent-style extracts do;
                ``"none"`` stores NaN there. Masks always say what was measured.
            include_latent: add the hidden states as ``latent__S`` ... columns (ground truth only; never
                a model input).

        Returns:
            A cohort in the SepsisAgent MIMIC-IV layout with ``fluid_dose``, ``vaso_dose``, ``sofa``
            (approximate), ``action``, Raghu-style ``reward``, ``outcome`` and ``behaviour_prob``.
        """
        _fn, name, _ = _resolve_policy(policy)
        tr = self._run(n_patients, policy, seed)
        return self._to_cohort(tr, seed=seed, policy_name=name, impute=impute, include_latent=include_latent)

    def policy_returns(
        self,
        policy: PolicySpec,
        *,
        n_patients: int = 5000,
        seed: int = 1,
        reward: Literal["survival", "raghu"] = "survival",
        gamma: float = 1.0,
    ) -> np.ndarray:
        """``(n_patients,)`` expected return of each simulated patient treated by ``policy``.

        The survival chance after the window is used in expectation (not drawn), which lowers the variance
        without bias. With ``reward="survival"`` a return is the probability of 90-day survival; with
        ``"raghu"`` the expected discounted Raghu-style return (terminal +-15 in expectation). This is the
        simulator behind :class:`sepsis_sdk.truth.SyntheticTruth`.
        """
        self._check_reward(reward)
        return self._expected_returns(self._run(n_patients, policy, seed), reward, gamma)

    def true_value(
        self,
        policy: PolicySpec,
        *,
        n_patients: int = 5000,
        seed: int = 1,
        reward: Literal["survival", "raghu"] = "survival",
        gamma: float = 1.0,
        level: float = 0.95,
    ) -> MonteCarloResult:
        """Deprecated: use ``sepsis_sdk.truth.SyntheticTruth(model, reward=..., gamma=...).simulate(policy,
        episodes=n_patients, seed=seed)`` (same numbers).

        Monte Carlo true value of ``policy`` in the simulator, with a normal-approximation CI. Use a seed
        different from the training cohort's to score on fresh patients.
        """
        import warnings

        warnings.warn(
            "SyntheticSepsisModel.true_value is deprecated; use sepsis_sdk.truth.SyntheticTruth(model).simulate",
            DeprecationWarning,
            stacklevel=2,
        )
        returns = self.policy_returns(policy, n_patients=n_patients, seed=seed, reward=reward, gamma=gamma)
        return MonteCarloResult.from_returns(returns, level)

    def compare(
        self, policies: dict[str, PolicySpec], *, n_patients: int = 5000, seed: int = 1,
        reward: Literal["survival", "raghu"] = "survival", gamma: float = 1.0,
    ) -> dict[str, float]:  # fmt: skip
        """Values of several policies on the **same** simulated patients (common random numbers)."""
        self._check_reward(reward)
        out = {}
        for name, pol in policies.items():
            tr = self._run(n_patients, pol, seed)
            out[name] = float(self._expected_returns(tr, reward, gamma).mean())
        return out

    def counterfactual(
        self,
        cohort: Cohort,
        policy: PolicySpec,
        *,
        from_step: int = 0,
        impute: Literal["locf", "none"] = "locf",
        include_latent: bool = False,
    ) -> Cohort:
        """The patients of a synthetic ``cohort`` (made by this simulator) treated by ``policy`` instead.

        Uses the cohort's recorded seed and size, so each patient keeps their initial state and noise; only
        the decisions (and what follows from them) change. With ``from_step=k`` the recorded actions are
        replayed for steps ``< k`` (the trajectory is reproduced exactly) and ``policy`` decides from step
        ``k`` on: the true outcome of deviating at ``k``. The result holds the cohort's patients only.
        """
        n, seed, replay, only = self._replay(cohort, from_step)
        tr = self._run(n, policy, seed, replay=replay, from_step=from_step, only=only)
        out = self._to_cohort(tr, seed=seed, policy_name=_resolve_policy(policy)[1], impute=impute,
                              include_latent=include_latent)  # fmt: skip
        out.meta.update(counterfactual_of=cohort.meta.get("policy"), from_step=int(from_step))
        keep = set(cohort.patient_ids.tolist())
        return out if len(keep) == n else out.select([p for p in out.patient_ids.tolist() if p in keep])

    def counterfactual_value(
        self,
        cohort: Cohort,
        policy: PolicySpec,
        *,
        from_step: int = 0,
        reward: Literal["survival", "raghu"] = "survival",
        gamma: float = 1.0,
        level: float = 0.95,
    ) -> MonteCarloResult:
        """True value of ``policy`` on the patients of a synthetic ``cohort`` (recorded actions before
        ``from_step``), with a CI over patients; the 90-day risk after the window is used in expectation."""
        self._check_reward(reward)
        n, seed, replay, only = self._replay(cohort, from_step)
        tr = self._run(n, policy, seed, replay=replay, from_step=from_step, only=only)
        idx = np.array(sorted(int(p[4:]) for p in cohort.patient_ids.tolist()))
        return MonteCarloResult.from_returns(self._expected_returns(tr, reward, gamma)[idx], level)

    @staticmethod
    def _check_reward(reward: str) -> None:
        if reward not in ("survival", "raghu"):
            raise UserError(f"reward must be 'survival' or 'raghu', got {reward!r}")

    def _replay(
        self, cohort: Cohort, from_step: int
    ) -> tuple[int, int, np.ndarray | None, np.ndarray | None]:
        meta = cohort.meta
        if not meta.get("synthetic") or meta.get("generator") != "SyntheticSepsisModel":
            raise UserError(f"{cohort.source}: counterfactuals need a cohort made by SyntheticSepsisModel")
        if meta.get("params") != dict(self.params.__dict__):
            raise UserError("the cohort was simulated with other parameters; build the model with them: "
                            "SyntheticSepsisModel(SyntheticParams(**cohort.meta['params']))")  # fmt: skip
        if meta.get("from_step", 0):
            raise UserError("cannot branch from a counterfactual cohort; branch from the original")
        if not isinstance(from_step, (int, np.integer)) or from_step < 0:
            raise UserError(f"from_step must be a non-negative integer, got {from_step!r}")
        n, seed = int(meta["n_patients"]), int(meta["seed"])
        df = cohort.data
        rows = np.array([int(p[4:]) for p in df["patient_id"].tolist()], dtype=np.int64)
        only = np.zeros(n, dtype=bool)
        only[rows] = True
        if only.all():
            only = None
        if from_step == 0:
            return n, seed, None, only
        replay = np.full((n, self.params.horizon), -1, dtype=np.int64)
        replay[rows, df["t"].to_numpy()] = df["action"].to_numpy()
        return n, seed, replay, only

    # ------------------------------------------------------------------ engine
    def _rngs(self, seed: int) -> list[np.random.Generator]:
        seqs = np.random.SeedSequence([int(seed), 0x5E95])
        return [np.random.default_rng(s) for s in seqs.spawn(self.params.horizon + 1)]

    def _run(
        self,
        n: int,
        policy: PolicySpec,
        seed: int,
        *,
        replay: np.ndarray | None = None,
        from_step: int = 0,
        only: np.ndarray | None = None,
    ) -> _Trace:
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n <= 0:
            raise UserError(f"n_patients must be a positive integer, got {n!r}")
        p = self.params
        fn, _, needs_hist = _resolve_policy(policy)
        rngs = self._rngs(seed)
        H, F = p.horizon, len(MIMIC_IV_FEATURES)
        g = rngs[0]

        age, male, charlson, pat, (S, V, Ov, D, K, MAP), lab_w, gcs_w = self._patients(g, n)
        vaso_prev = np.zeros(n)

        static = {"age": age, "gender": male, "charlson_comorbidity_index": charlson}
        tr = _Trace.empty(n, H, F, static)
        u_out = g.random(n)

        last = np.tile(self._ref_mean, (n, 1))  # carried-forward values (reference mean before any)
        last_lactate_high = np.zeros(n, dtype=bool)
        alive = np.ones(n, dtype=bool)
        prev_action = np.full(n, -1, dtype=np.int64)
        fluid_total = np.zeros(n)
        histories: list[tuple[list, list]] = [([], []) for _ in range(n)] if needs_hist else []
        names = tuple(MIMIC_IV_FEATURES)

        for t in range(H):
            r = rngs[t + 1]
            eps = r.standard_normal((n, N_EPS))
            uni = r.random((n, N_UNI))
            lab_w = _AR * lab_w + math.sqrt(1 - _AR**2) * r.standard_normal((n, len(_GENERIC)))
            gcs_w = 0.7 * gcs_w + math.sqrt(1 - 0.49) * r.standard_normal((n, 3))
            idx = np.flatnonzero(alive)
            if idx.size == 0:
                break
            # ---- observe
            true = self._observe(S, V, Ov, D, K, MAP, vaso_prev, pat, lab_w, gcs_w, eps)
            m = self._measure(t, uni, last_lactate_high)
            obs_now = np.where(m, true, last)
            last = obs_now
            last_lactate_high = np.where(m[:, _F["lactate"]], true[:, _F["lactate"]] > 2.0, last_lactate_high)
            tr.values[idx, t] = obs_now[idx]
            tr.mask[idx, t] = m[idx]
            tr.latent[idx, t] = np.stack([S, V, Ov, D, K], 1)[idx]
            # ---- decide (patients outside `only` get action 0 and never reach the policy)
            q = idx if only is None else idx[only[idx]]
            hist = (
                self._histories(histories, q, t, obs_now, m, prev_action, names, static) if needs_hist else []
            )
            ctx = PolicyContext(t=t, values=obs_now[q], mask=m[q], prev_action=prev_action[q],
                                fluid_total=fluid_total[q], prev_vaso_level=np.maximum(prev_action[q], 0) % 5)  # fmt: skip
            probs = self._decide(idx, q, t, ctx, hist, fn, replay if t < from_step else None)
            a, f_ml, v_dose = self._treat(probs, uni[idx])
            tr.action[idx, t] = a
            tr.prob[idx, t] = probs[np.arange(idx.size), a]
            tr.fluid[idx, t] = f_ml
            tr.vaso[idx, t] = v_dose
            fluid_total[idx] += f_ml
            prev_action[idx] = a
            # ---- transition (all patients advance; only those in the window are recorded)
            f_all = np.zeros(n)
            v_all = np.zeros(n)
            f_all[idx] = f_ml / 1000.0
            v_all[idx] = v_dose
            S, V, Ov, D, K, MAP = self._step(S, V, Ov, D, K, f_all, v_all, pat, eps)
            vaso_prev = v_all
            # ---- death in the window, then leaving it
            dies, leaves, post = self._exits(S, D, Ov, K, MAP, v_all, age, charlson, alive, uni, t)
            tr.died_in_window |= dies
            ends = dies | leaves
            tr.length[ends] = t + 1
            tr.p_death_after[leaves] = post[leaves]
            alive &= ~ends
        tr.outcome = np.where(tr.died_in_window, 0, (u_out >= tr.p_death_after).astype(np.int64))
        return tr

    def _patients(self, g: np.random.Generator, n: int) -> tuple:
        """Static features, persistent patient effects and the initial latent state (draw order fixed)."""
        p = self.params
        age = np.clip(g.normal(63.8, 16.1, n), 18.0, 100.0)
        male = (g.random(n) < 0.57).astype(float)
        z_age = (age - 63.8) / 16.1
        charlson = np.clip(np.round(5.3 + 2.96 * (0.5 * z_age + 0.866 * g.standard_normal(n))), 0, 20)
        pat = {
            "map_b": g.normal(0.0, 8.5, n),
            "hr_b": g.normal(0.0, 11.0, n),
            "rr_b": g.normal(0.0, 3.0, n),
            "t_b": g.normal(0.0, 0.15, n),
            "rec": g.normal(p.recovery_mean, p.recovery_sd, n),
            "creat_b": np.exp(np.log(0.8) + 0.07 * (charlson - 5.3) + 0.45 * g.standard_normal(n))
            * (1.0 + 1.8 * (g.random(n) < 0.12)),  # 12 % chronic kidney disease
            "bun_b": g.standard_normal(n),
            "pf_b": g.normal(0.0, 0.45, n),
            "fio2_b": g.standard_normal(n),
            "urine_b": g.normal(0.0, 0.8, n),
            "acid_b": g.standard_normal(n),
            "gcs_b": g.standard_normal((n, 3)),
            "lab_b": g.standard_normal((n, len(_GENERIC))),
            "hb_b": g.standard_normal(n),
        }
        S = g.gamma(p.severity_shape, p.severity_scale, n)
        V = -0.8 - 0.5 * S + 0.6 * g.standard_normal(n)
        Ov = np.maximum(0.0, 0.3 + 0.5 * g.standard_normal(n))
        D = np.maximum(0.0, 0.4 * S + 0.3 * np.maximum(-V - 1.0, 0) + 0.3 * g.standard_normal(n))
        K = np.maximum(0.0, 0.3 * S + 0.2 * g.standard_normal(n))
        lab_w = g.standard_normal((n, len(_GENERIC)))  # AR(1) state of generic labs
        gcs_w = g.standard_normal((n, 3))
        MAP = self._map(S, V, np.zeros(n), pat["map_b"], 5.0 * g.standard_normal(n))

        return age, male, charlson, pat, (S, V, Ov, D, K, MAP), lab_w, gcs_w

    def _decide(self, idx, q, t, ctx, hist, fn, replay) -> np.ndarray:
        """``(len(idx), 25)`` action probabilities: recorded actions when replaying, else the policy's."""
        probs = np.zeros((idx.size, N_ACTIONS))
        probs[:, 0] = 1.0
        pos = np.searchsorted(idx, q)
        if replay is not None:
            rec = replay[q, t]
            if (rec < 0).any():
                raise UserError(f"no recorded action at step {t} for {_pid(int(q[rec < 0][0]))}")
            probs[pos] = 0.0
            probs[pos, rec] = 1.0
        elif q.size:
            probs[pos] = self._check_probs(fn(ctx, hist), q.size)
        return probs

    def _treat(self, probs: np.ndarray, uni: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Draw the action (inverse CDF on ``uni[:, 0]``) and the doses given within its levels."""
        cum = np.cumsum(probs, 1)
        a = np.minimum((cum < (uni[:, 0] * cum[:, -1])[:, None]).sum(1), N_ACTIONS - 1)
        f_ml = self._dose(a // 5, uni[:, 1], _FLUID_LO, _FLUID_HI, 400.0, 3000.0)
        v_dose = self._dose(a % 5, uni[:, 2], _VASO_LO, _VASO_HI, 0.25, 2.0)
        return a, f_ml, v_dose

    def _exits(self, S, D, Ov, K, MAP, v_all, age, charlson, alive, uni, t) -> tuple:
        """Who dies in the window this step, who leaves it alive, and each one's risk of death after."""
        p = self.params
        haz = _sigmoid(p.hazard_intercept + 1.1 * S + 0.7 * D + 0.45 * np.maximum(Ov - p.overload_threshold - 1, 0)
                       + 0.08 * np.maximum(55 - MAP, 0) + 0.02 * (age - 63.8) + 0.05 * (charlson - 5.3))  # fmt: skip
        dies = alive & (uni[:, 3] < haz)
        recovered = (S < 0.5) & (MAP >= 65) & (v_all == 0) & (t >= 5)
        leaves = alive & ~dies & ((t == p.horizon - 1) | (recovered & (uni[:, 4] < p.discharge_prob)))
        post = _sigmoid(p.post_intercept + 1.0 * S + 0.6 * D + 0.35 * np.maximum(Ov - p.overload_threshold, 0)
                        + 0.45 * K + 0.035 * (age - 63.8) + 0.12 * (charlson - 5.3)
                        + 0.8 * (v_all > 0) + 0.03 * np.maximum(60 - MAP, 0))  # fmt: skip
        return dies, leaves, post

    @staticmethod
    def _check_probs(probs: np.ndarray, n: int) -> np.ndarray:
        probs = np.asarray(probs, dtype=np.float64)
        if probs.shape != (n, N_ACTIONS):
            raise UserError(f"policy returned shape {probs.shape}, expected ({n}, {N_ACTIONS})")
        if not np.isfinite(probs).all() or (probs < 0).any() or not np.allclose(probs.sum(1), 1.0, atol=1e-6):
            raise UserError("policy returned rows that are not probability distributions over 25 actions")
        return probs

    @staticmethod
    def _histories(store, idx, t, obs_now, m, prev_action, names, static):
        """Histories as a cohort would show them: stored (carried-forward) values plus masks."""
        from sepsis_sdk.types import Observation, PatientHistory

        out = []
        for i in idx:
            obs_list, act_list = store[i]
            if t > 0:
                act_list.append(int(prev_action[i]))
            obs_list.append(Observation.model_construct(t=t, values=tuple(obs_now[i].tolist()),
                                                        mask=tuple(m[i].tolist())))  # fmt: skip
            out.append(PatientHistory.model_construct(patient_id=_pid(i), observations=tuple(obs_list),
                                                      actions=tuple(act_list), static={k: float(v[i]) for k, v in static.items()}, feature_names=names,
                                                      state_id=None))  # fmt: skip
        return out

    @staticmethod
    def _dose(level, u, lo, hi, tail, cap) -> np.ndarray:
        lo_a = np.asarray(lo)[level]
        hi_a = np.asarray([np.nan if h is None else h for h in hi])[level]
        within = lo_a + u * (np.nan_to_num(hi_a) - lo_a)
        top = np.minimum(lo_a - tail * np.log1p(-u * 0.999), cap)
        return np.where(level == 0, 0.0, np.where(np.isnan(hi_a), top, within))

    def _map(self, S, V, vaso, map_b, noise) -> np.ndarray:
        p = self.params
        vol = np.tanh(V / 1.5)
        vol = np.where(V > 0, vol / 4.0, vol)
        return (p.map_base + map_b - p.map_severity * S + p.map_volume * vol
                + p.vaso_emax * vaso / (vaso + p.vaso_ec50) + noise)  # fmt: skip

    def _step(self, S, V, Ov, D, K, f, v, pat, eps):
        p = self.params
        ret = p.retention / (1.0 + 0.3 * S)
        V2 = 0.93 * V + ret * f - p.leak * S + 0.05 + 0.08 * eps[:, 0]
        Ov2 = np.maximum(
            0.0, 0.985 * Ov + (1.0 - ret) * f + 0.15 * np.maximum(V - 0.5, 0.0) + 0.03 * eps[:, 1]
        )
        S2 = np.clip(S * np.exp(-pat["rec"]) + 0.12 * D + 0.06 * np.sqrt(S + 0.05) * eps[:, 2], 0.0, 4.0)
        MAP2 = self._map(S2, V2, v, pat["map_b"], 5.0 * eps[:, 3])
        D2 = np.maximum(0.0, 0.5 * D + 0.07 * np.maximum(68.0 - MAP2, 0.0) + 0.15 * np.maximum(-V2 - 1.0, 0.0)
                        + 0.05 * S2 + 0.08 * eps[:, 4])  # fmt: skip
        K2 = np.maximum(0.0, 0.92 * K + 0.05 * D2 + 0.03 * S2 + 0.04 * np.maximum(Ov2 - p.overload_threshold, 0.0)
                        + 0.03 * eps[:, 5])  # fmt: skip
        return S2, V2, Ov2, D2, K2, MAP2

    def _observe(self, S, V, Ov, D, K, MAP, vaso, pat, lab_w, gcs_w, eps) -> np.ndarray:
        n = len(S)
        x = np.empty((n, len(MIMIC_IV_FEATURES)))
        zS = (S - 1.1) / 0.6
        x[:, _F["meanbp"]] = MAP
        # keep SBP > MAP > DBP (noise alone would cross them in ~1 % of rows)
        x[:, _F["sysbp"]] = np.maximum(117.0 + 1.25 * (MAP - 77.8) + 9.6 * eps[:, 6], MAP + 5.0)
        x[:, _F["diabp"]] = np.minimum(61.7 + 0.8 * (MAP - 77.8) + 6.8 * eps[:, 7], MAP - 2.0)
        hypo = np.where(V < 0, np.tanh(V / 0.8), 0.0)
        x[:, _F["heart_rate"]] = (69.0 + pat["hr_b"] + 9.0 * S - 8.0 * hypo + 4.0 * D + 12.0 * vaso / (vaso + 0.3)
                                  + 8.0 * eps[:, 8])  # fmt: skip
        x[:, _F["resp_rate"]] = 18.3 + pat["rr_b"] + 1.5 * S + 1.0 * D + 3.0 * eps[:, 9]
        x[:, _F["temp_c"]] = 36.98 + pat["t_b"] + 0.12 * zS + 0.25 * eps[:, 10]
        lac = (0.95 + 1.4 * D + 0.3 * S) * np.exp(0.3 * eps[:, 11])
        x[:, _F["lactate"]] = lac
        # kidney
        creat = pat["creat_b"] * np.exp(0.7 * K) * np.exp(0.05 * eps[:, 12])
        x[:, _F["creatinine"]] = creat
        x[:, _F["bun"]] = 20.0 * creat**0.75 * np.exp(0.55 * pat["bun_b"] + 0.1 * eps[:, 13])
        urine = np.exp(5.75 + 0.5 * np.tanh(V) - 0.9 * K + 0.02 * np.clip(MAP - 70, -30, 20) + pat["urine_b"]
                       + 0.8 * eps[:, 14])  # fmt: skip
        anuric = eps[:, 15] < -1.35 + 1.5 * np.maximum(K - 1.0, 0) + 0.6 * (MAP < 55)  # incl. not charted
        x[:, _F["output_4hourly"]] = np.where(anuric, 0.0, np.log1p(urine))
        # oxygenation: P/F falls with severity and overload; FiO2 set to keep saturation
        pf = 240.0 * np.exp(-0.25 * (S - 1.0) - 0.1 * Ov + pat["pf_b"])
        fio2 = np.clip(
            34.0 + 12.0 * pat["fio2_b"] + 55.0 * np.exp(-pf / 150.0) + 6.0 * eps[:, 16], 21.0, 100.0
        )
        pao2_true = pf * fio2 / 100.0
        pao2 = pao2_true * np.exp(0.25 * eps[:, 17])
        x[:, _F["fio2"]] = fio2
        x[:, _F["pao2"]] = pao2
        sat = 100.0 / (1.0 + 23400.0 / (pao2_true**3 + 150.0 * pao2_true))  # Severinghaus
        x[:, _F["spo2"]] = np.minimum(100.0, 98.6 - 0.35 * (100.0 - sat) + 1.5 * eps[:, 18])
        # acid-base: lactic acidosis lowers bicarbonate and pH
        hco3 = 23.45 - 1.3 * (lac - 1.8) + 4.3 * pat["acid_b"] + 1.2 * eps[:, 19]
        x[:, _F["bicarbonate"]] = hco3
        x[:, _F["total_co2"]] = hco3 + 1.85 + 0.8 * eps[:, 20]
        # generic labs from the reference marginals
        stats = reference_stats()["features"]
        for j, name in enumerate(_GENERIC_NAMES):
            a, rho, logn = _GENERIC[name]
            z = a * np.clip(zS, -2.5, 4.0) + math.sqrt(1 - a * a) * (
                math.sqrt(rho) * pat["lab_b"][:, j] + math.sqrt(1 - rho) * lab_w[:, j]
            )
            mu, sd = stats[name]["mean"], stats[name]["std"]
            if logn:
                s2 = math.log1p((sd / mu) ** 2)
                x[:, _F[name]] = np.exp(math.log(mu) - s2 / 2 + math.sqrt(s2) * z)
            else:
                x[:, _F[name]] = mu + sd * z
        # haemodilution by fluid overload
        x[:, _F["hemoglobin"]] -= 0.25 * (Ov - 1.0)
        x[:, _F["hematocrit"]] = 3.0 * x[:, _F["hemoglobin"]] + 0.5 + 1.5 * eps[:, 21]
        inr = x[:, _F["inr"]]
        x[:, _F["pt"]] = 11.0 * inr**0.95 * np.exp(0.05 * eps[:, 22])
        ph_stats = stats["ph"]
        x[:, _F["ph"]] = (ph_stats["mean"] + 0.013 * (hco3 - 23.4) - 0.004 * (x[:, _F["paco2"]] - 41.2)
                          + 0.04 * eps[:, 23])  # fmt: skip
        # ordinal GCS through a Gaussian copula (severity and oxygen debt lower it)
        for k, name in enumerate(("gcs_eye", "gcs_verbal", "gcs_motor")):
            z = (
                0.2
                - 0.35 * np.clip(zS, -2.5, 4.0)
                - 0.15 * D
                + 0.75 * pat["gcs_b"][:, k]
                + 0.45 * gcs_w[:, k]
            )
            z = z / math.sqrt(0.35**2 + 0.75**2 + 0.45**2)
            cut = _normal_cuts(_GCS_PROBS[name])
            x[:, _F[name]] = 1.0 + np.searchsorted(cut, z)
        return np.clip(x, self._lower, self._upper)

    def _measure(self, t: int, uni: np.ndarray, lactate_high: np.ndarray) -> np.ndarray:
        n = uni.shape[0]
        m = np.ones((n, len(MIMIC_IV_FEATURES)), dtype=bool)
        if not self.params.missingness:
            return m
        for k, (panel, (names, p0, pt)) in enumerate(_PANELS.items()):
            prob = np.full(n, p0 if t == 0 else pt)
            if panel == "abg" and t > 0:
                prob = np.where(lactate_high, 0.65, pt)
            took = uni[:, 5 + k] < prob
            for name in names:
                m[:, _F[name]] = took
        return m

    # ------------------------------------------------------------------ outputs
    def _expected_returns(self, tr: _Trace, reward: str, gamma: float) -> np.ndarray:
        surv = np.where(tr.died_in_window, 0.0, 1.0 - tr.p_death_after)
        if reward == "survival":
            return surv * gamma ** (tr.length - 1)
        H = tr.action.shape[1]
        steps = self._step_rewards(tr)  # (n, H), zero beyond the episode and on its last row
        disc = gamma ** np.arange(H)
        terminal = np.where(tr.died_in_window, -15.0, 15.0 * (1 - 2 * tr.p_death_after))
        return (steps * disc).sum(1) + terminal * gamma ** (tr.length - 1)

    def _sofa(self, tr: _Trace) -> np.ndarray:
        vals = {name: tr.values[:, :, j] for j, name in enumerate(MIMIC_IV_FEATURES)}
        return approx_sofa(vals, vaso_dose=tr.vaso)

    def _step_rewards(self, tr: _Trace) -> np.ndarray:
        sofa = self._sofa(tr)
        lac = tr.values[:, :, _F["lactate"]]
        ds = np.diff(sofa, axis=1)
        dl = np.nan_to_num(np.diff(lac, axis=1))
        r = -0.025 * ((ds == 0) & (sofa[:, 1:] > 0)) - 0.125 * ds - 2.0 * np.tanh(dl)
        H = tr.action.shape[1]
        out = np.zeros_like(tr.action, dtype=float)
        out[:, : H - 1] = np.nan_to_num(r)
        valid = np.arange(H)[None, :] < (tr.length[:, None] - 1)
        return np.where(valid, out, 0.0)

    def _to_cohort(
        self, tr: _Trace, *, seed: int, policy_name: str, impute: str, include_latent: bool
    ) -> Cohort:
        import pandas as pd

        from sepsis_sdk.cohort import Cohort
        from sepsis_sdk.rewards import RaghuReward

        n, H = tr.action.shape
        keep = np.arange(H)[None, :] < tr.length[:, None]
        ii, tt = np.nonzero(keep)  # row-major: patient then step, sorted
        vals = tr.values[ii, tt]
        msk = tr.mask[ii, tt]
        if impute == "none":
            vals = np.where(msk, vals, np.nan)
        elif impute != "locf":
            raise UserError(f"impute must be 'locf' or 'none', got {impute!r}")
        cols: dict[str, Any] = {"patient_id": np.array([_pid(i, n) for i in range(n)], dtype=object)[ii],
                                "t": tt.astype(np.int64)}  # fmt: skip
        for j, name in enumerate(MIMIC_IV_FEATURES):
            cols[name] = vals[:, j]
        for j, name in enumerate(MIMIC_IV_FEATURES):
            cols[mask_column(name)] = msk[:, j]
        for k, v in tr.static.items():
            cols[k] = v[ii]
        done = tt == (tr.length[ii] - 1)
        sofa = self._sofa(tr)[ii, tt]
        cols.update(
            fluid_dose=tr.fluid[ii, tt],
            vaso_dose=tr.vaso[ii, tt],
            **{SOFA_COLUMN: sofa},
            action=tr.action[ii, tt].astype(np.int64),
            reward=np.zeros(len(ii)),
            done=done,
            outcome=tr.outcome[ii].astype(np.int64),
            mortality_90d=(1 - tr.outcome[ii]).astype(np.int64),
            behaviour_prob=tr.prob[ii, tt],
        )
        if include_latent:
            for k, name in enumerate(("S", "V", "O", "D", "K")):
                cols[f"latent__{name}"] = tr.latent[ii, tt, k]
        df = pd.DataFrame(cols)
        meta = {
            "synthetic": True,
            "generator": "SyntheticSepsisModel",
            "seed": int(seed),
            "n_patients": int(n),
            "policy": policy_name,
            "impute": impute,
            "params": {k: v for k, v in self.params.__dict__.items()},
            "dose_binning": "published",
            "gamma": 1.0,
        }
        cohort = Cohort(df, mimic_iv_schema(synthetic=True), source=SOURCE, meta=meta)
        # Raghu-style reward on the approximate SOFA and lactate; the lactate difference of a row whose
        # lactate was not re-measured is 0 under LOCF (as in SepsisAgent-style extracts).
        cohort = RaghuReward(sofa=SOFA_COLUMN, lactate="lactate").relabel(cohort)
        cohort.meta["synthetic"] = True
        cohort.validate()  # the computed rewards, checked like read ones
        return cohort


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _pid(i: int, n: int | None = None) -> str:
    return f"syn-{int(i):06d}"


_CUTS: dict[tuple[float, ...], np.ndarray] = {}


def _normal_cuts(probs: Sequence[float]) -> np.ndarray:
    key = tuple(probs)
    if key not in _CUTS:
        from statistics import NormalDist

        c = np.cumsum(probs)[:-1]
        _CUTS[key] = np.array([NormalDist().inv_cdf(float(q)) for q in c])
    return _CUTS[key]


def synthesize_cohort(
    n_patients: int = 1000,
    *,
    seed: int = 0,
    policy: PolicySpec = "clinician-like",
    impute: Literal["locf", "none"] = "locf",
    include_latent: bool = False,
    params: SyntheticParams | None = None,
    **overrides: Any,
) -> Cohort:
    """A SYNTHETIC MIMIC-IV-like cohort (SepsisAgent format), labelled synthetic everywhere.

    Args:
        n_patients: number of synthetic patients (1,000 take well under a second).
        seed: the same seed gives the same cohort.
        policy: behaviour policy: ``"clinician-like"`` (default), another name in
            :data:`SYNTHETIC_POLICIES`, a :class:`~sepsis_sdk.policies.Policy`, or a callable
            ``history -> action``.
        impute: ``"locf"`` or ``"none"`` (see :meth:`SyntheticSepsisModel.simulate`).
        include_latent: add the hidden latent states (ground truth only).
        params: simulator coefficients; keyword ``overrides`` replace single fields (e.g. ``horizon=12``).

    Returns:
        A :class:`~sepsis_sdk.Cohort` with source ``"synthetic-mimic-iv"``.

    Example:
        >>> c = synthesize_cohort(100, seed=3)
        >>> c.source, c.synthetic, len(c.schema)
        ('synthetic-mimic-iv', True, 39)
    """
    model = SyntheticSepsisModel(params, **overrides)
    return model.simulate(n_patients, policy=policy, seed=seed, impute=impute, include_latent=include_latent)


__all__ = [
    "SOURCE",
    "SYNTHETIC_POLICIES",
    "PolicyContext",
    "SyntheticParams",
    "SyntheticSepsisModel",
    "clinician_like",
    "guideline",
    "synthesize_cohort",
]
