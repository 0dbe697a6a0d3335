"""Column layouts and feature schemas of the two MIMIC formats, and the approximate SOFA of MIMIC-IV rows.

Two file formats are read (see ``docs/data_mimic.md``):

- **AI-Clinician MIMICtable** (Komorowski et al. 2018): the 59 columns listed in :data:`MIMICTABLE_COLUMNS`,
  one row per ICU stay per 4-hour bloc, values in clinical units.
- **SepsisAgent-style MIMIC-IV episodes**: one row per stay per 4-hour step with the 39 dynamic features
  of :data:`MIMIC_IV_FEATURES`, an optional ``mask__<feature>`` column per feature, the static columns
  ``age``, ``gender``, ``charlson_comorbidity_index``, the outcome ``mortality_90d`` and the treatment
  as doses (``fluid_dose`` mL/4h, ``vaso_dose`` ug/kg/min) or as levels (``fluid_level``, ``vaso_level``).

Plausibility bounds are **physiological hard limits** (values a living ICU patient can have, or the
reporting range of the assay), deliberately wider than the published 1st/99th percentiles: a value outside
them is a unit or entry error, not a sick patient. ``tests/test_mimic_schema.py`` checks that every
bound contains the published p01-p99 range.
"""

from __future__ import annotations

import functools
import json
import math
from importlib import resources
from typing import Any

import numpy as np

from sepsis_sdk.features import FeatureSchema, FeatureSpec

# --------------------------------------------------------------------------------------------- MIMIC-IV
MIMIC_IV_FEATURES: tuple[str, ...] = (
    "heart_rate", "sysbp", "diabp", "meanbp", "resp_rate", "spo2", "temp_c", "fio2", "gcs_eye",
    "gcs_verbal", "gcs_motor", "albumin", "alt", "ast", "base_excess", "bicarbonate", "bilirubin_total",
    "bun", "calcium_free", "calcium_total", "chloride", "creatinine", "glucose", "hemoglobin", "hematocrit",
    "inr", "lactate", "magnesium", "paco2", "pao2", "ph", "platelet", "potassium", "pt", "ptt", "sodium",
    "total_co2", "wbc", "output_4hourly",
)  # fmt: skip
VITALS: tuple[str, ...] = ("heart_rate", "sysbp", "diabp", "meanbp", "resp_rate", "spo2", "temp_c")
MIMIC_IV_STATIC: tuple[str, ...] = ("age", "gender", "charlson_comorbidity_index")
ID_COLUMN = "stay_id"
STEP_COLUMN = "step"
MORTALITY_COLUMN = "mortality_90d"
DOSE_COLUMNS = ("fluid_dose", "vaso_dose")  # mL per 4 h, max noradrenaline-equivalent ug/kg/min
LEVEL_COLUMNS = ("fluid_level", "vaso_level")  # 0-4 each
SOFA_COLUMN = "sofa"

# Hard limits in the stored space (output_4hourly: log1p(mL/4h)). Why each is what it is: vitals from
# survivable extremes; labs from assay reporting ranges; all contain the published p01-p99 with margin.
_MIMIC_IV_LIMITS: dict[str, tuple[float, float]] = {
    "heart_rate": (20.0, 250.0),
    "sysbp": (30.0, 300.0),
    "diabp": (10.0, 200.0),
    "meanbp": (20.0, 250.0),
    "resp_rate": (0.0, 80.0),  # 0 on some ventilator modes
    "spo2": (40.0, 100.0),
    "temp_c": (25.0, 45.0),
    "fio2": (21.0, 100.0),
    "gcs_eye": (1.0, 4.0),
    "gcs_verbal": (1.0, 5.0),
    "gcs_motor": (1.0, 6.0),
    "albumin": (0.5, 7.0),
    "alt": (1.0, 20_000.0),
    "ast": (1.0, 30_000.0),
    "base_excess": (-40.0, 40.0),
    "bicarbonate": (2.0, 60.0),
    "bilirubin_total": (0.05, 80.0),
    "bun": (1.0, 300.0),
    "calcium_free": (0.3, 2.5),
    "calcium_total": (3.0, 17.0),
    "chloride": (60.0, 160.0),
    "creatinine": (0.1, 25.0),
    "glucose": (10.0, 1500.0),
    "hemoglobin": (2.0, 25.0),
    "hematocrit": (6.0, 75.0),
    "inr": (0.5, 20.0),
    "lactate": (0.1, 30.0),
    "magnesium": (0.3, 8.0),
    "paco2": (8.0, 200.0),
    "pao2": (15.0, 700.0),
    "ph": (6.5, 8.0),
    "platelet": (1.0, 2000.0),
    "potassium": (1.5, 10.0),
    "pt": (8.0, 150.0),
    "ptt": (15.0, 250.0),
    "sodium": (95.0, 190.0),
    "total_co2": (2.0, 60.0),
    "wbc": (0.05, 300.0),
    "output_4hourly": (0.0, math.log1p(10_000.0)),  # up to 10 L per 4 h
}
# Right-skewed positive labs: models should work on log(x - lower + 1).
_MIMIC_IV_LOG = {"alt", "ast", "bilirubin_total", "bun", "creatinine", "inr", "lactate", "pt", "ptt", "wbc",
                 "glucose", "pao2", "platelet"}  # fmt: skip
_MIMIC_IV_DESCRIPTIONS = {
    "fio2": "inspired oxygen fraction in percent (21 = room air)",
    "output_4hourly": "urine output over the 4-h step, stored as log1p(mL/4h)",
    "base_excess": "as published: the reference cohort's values are positive (p01 1.0), see docs/data_mimic.md",
}


@functools.lru_cache(maxsize=1)
def reference_stats() -> dict[str, Any]:
    """The published marginal statistics of the MIMIC-IV sepsis cohort (copied into the package)."""
    text = resources.files("sepsis_sdk.sources").joinpath("mimic_iv_stats.json").read_text(encoding="utf-8")
    return json.loads(text)


@functools.lru_cache(maxsize=2)
def mimic_iv_schema(*, synthetic: bool = False) -> FeatureSchema:
    """Feature schema of the SepsisAgent-style MIMIC-IV format (39 dynamic features, 3 static).

    Args:
        synthetic: mark the schema as describing synthetic data (:func:`synthesize_cohort` sets it).
    """
    stats = reference_stats()["features"]
    feats = []
    for name in MIMIC_IV_FEATURES:
        lo, hi = _MIMIC_IV_LIMITS[name]
        st = stats[name]
        kind = "ordinal" if name.startswith("gcs_") else "continuous"
        transform = "log1p" if st["stored_as"] == "log1p" else "raw"
        desc = _MIMIC_IV_DESCRIPTIONS.get(name, "")
        desc = (desc + "; " if desc else "") + f"reference mean {st['mean']:g}, SD {st['std']:g}"
        feats.append(
            FeatureSpec(name=name, unit=st["unit"], kind=kind, lower=lo, upper=hi, transform=transform,
                        log_model=name in _MIMIC_IV_LOG, description=desc)
        )  # fmt: skip
    return FeatureSchema(
        name="synthetic-mimic-iv" if synthetic else "mimic-iv",
        features=tuple(feats),
        static=MIMIC_IV_STATIC,
        synthetic=synthetic,
    )


def mimic_iv_columns(*, doses: bool = True) -> list[str]:
    """The columns of a MIMIC-IV episode file, in the documented order (masks optional, left out here)."""
    action = list(DOSE_COLUMNS if doses else LEVEL_COLUMNS)
    return [ID_COLUMN, STEP_COLUMN, *MIMIC_IV_FEATURES, *MIMIC_IV_STATIC, MORTALITY_COLUMN, *action]


# ------------------------------------------------------------------------------------------ MIMICtable
MIMICTABLE_COLUMNS: tuple[str, ...] = (
    "bloc", "icustayid", "charttime", "gender", "age", "elixhauser", "re_admission", "died_in_hosp",
    "died_within_48h_of_out_time", "mortality_90d", "delay_end_of_record_and_discharge_or_death",
    "Weight_kg", "GCS", "HR", "SysBP", "MeanBP", "DiaBP", "RR", "SpO2", "Temp_C", "FiO2_1", "Potassium",
    "Sodium", "Chloride", "Glucose", "BUN", "Creatinine", "Magnesium", "Calcium", "Ionised_Ca", "CO2_mEqL",
    "SGOT", "SGPT", "Total_bili", "Albumin", "Hb", "WBC_count", "Platelets_count", "PTT", "PT", "INR",
    "Arterial_pH", "paO2", "paCO2", "Arterial_BE", "Arterial_lactate", "HCO3", "mechvent", "Shock_Index",
    "PaO2_FiO2", "median_dose_vaso", "max_dose_vaso", "input_total", "input_4hourly", "output_total",
    "output_4hourly", "cumulated_balance", "SOFA", "SIRS",
)  # fmt: skip
MIMICTABLE_STATIC: tuple[str, ...] = ("gender", "age", "elixhauser", "re_admission")
MIMICTABLE_OUTCOMES: tuple[str, ...] = (
    "died_in_hosp", "died_within_48h_of_out_time", "mortality_90d", "delay_end_of_record_and_discharge_or_death",
)  # fmt: skip
# The treatment of the bloc: not state features (they are the action).
MIMICTABLE_ACTION_COLUMNS: tuple[str, ...] = ("median_dose_vaso", "max_dose_vaso", "input_4hourly")

# Hard limits in AI-Clinician units (FiO2 as a fraction, age in years, fluids in mL).
_MIMICTABLE_LIMITS: dict[str, tuple[float, float]] = {
    "Weight_kg": (20.0, 350.0),
    "GCS": (3.0, 15.0),
    "HR": (0.0, 250.0),
    "SysBP": (0.0, 300.0),
    "MeanBP": (0.0, 250.0),
    "DiaBP": (0.0, 200.0),
    "RR": (0.0, 80.0),
    "SpO2": (40.0, 100.0),
    "Temp_C": (25.0, 45.0),
    "FiO2_1": (0.2, 1.0),
    "Potassium": (1.0, 15.0),
    "Sodium": (95.0, 190.0),
    "Chloride": (60.0, 160.0),
    "Glucose": (1.0, 2000.0),
    "BUN": (0.5, 300.0),
    "Creatinine": (0.05, 30.0),
    "Magnesium": (0.2, 10.0),
    "Calcium": (2.0, 20.0),
    "Ionised_Ca": (0.2, 5.0),
    "CO2_mEqL": (1.0, 80.0),
    "SGOT": (0.0, 30_000.0),
    "SGPT": (0.0, 20_000.0),
    "Total_bili": (0.0, 100.0),
    "Albumin": (0.5, 7.0),
    "Hb": (1.0, 25.0),
    "WBC_count": (0.0, 500.0),
    "Platelets_count": (0.0, 2500.0),
    "PTT": (5.0, 250.0),
    "PT": (5.0, 200.0),
    "INR": (0.3, 25.0),
    "Arterial_pH": (6.5, 8.0),
    "paO2": (10.0, 800.0),
    "paCO2": (5.0, 200.0),
    "Arterial_BE": (-50.0, 50.0),
    "Arterial_lactate": (0.05, 35.0),
    "HCO3": (1.0, 70.0),
    "mechvent": (0.0, 1.0),
    "Shock_Index": (0.0, 10.0),
    "PaO2_FiO2": (10.0, 1000.0),
    "input_total": (0.0, 1e6),
    "output_total": (0.0, 1e6),
    "output_4hourly": (0.0, 20_000.0),
    "cumulated_balance": (-1e6, 1e6),
    "SOFA": (0.0, 24.0),
    "SIRS": (0.0, 4.0),
}
MIMICTABLE_FEATURES: tuple[str, ...] = tuple(_MIMICTABLE_LIMITS)
_MIMICTABLE_LOG = {"BUN", "Creatinine", "SGOT", "SGPT", "Total_bili", "INR", "input_total", "output_total",
                   "output_4hourly", "Arterial_lactate", "WBC_count", "Glucose", "PTT", "PT"}  # fmt: skip
_MIMICTABLE_UNITS = {
    "Weight_kg": "kg", "GCS": "points", "HR": "bpm", "SysBP": "mmHg", "MeanBP": "mmHg", "DiaBP": "mmHg",
    "RR": "breaths/min", "SpO2": "%", "Temp_C": "degC", "FiO2_1": "fraction", "Potassium": "mEq/L",
    "Sodium": "mEq/L", "Chloride": "mEq/L", "Glucose": "mg/dL", "BUN": "mg/dL", "Creatinine": "mg/dL",
    "Magnesium": "mg/dL", "Calcium": "mg/dL", "Ionised_Ca": "mmol/L", "CO2_mEqL": "mEq/L", "SGOT": "U/L",
    "SGPT": "U/L", "Total_bili": "mg/dL", "Albumin": "g/dL", "Hb": "g/dL", "WBC_count": "K/uL",
    "Platelets_count": "K/uL", "PTT": "sec", "PT": "sec", "INR": "ratio", "Arterial_pH": "",
    "paO2": "mmHg", "paCO2": "mmHg", "Arterial_BE": "mEq/L", "Arterial_lactate": "mmol/L", "HCO3": "mEq/L",
    "mechvent": "", "Shock_Index": "bpm/mmHg", "PaO2_FiO2": "mmHg", "input_total": "mL",
    "output_total": "mL", "output_4hourly": "mL/4h", "cumulated_balance": "mL", "SOFA": "points",
    "SIRS": "points",
}  # fmt: skip


@functools.lru_cache(maxsize=1)
def mimictable_schema() -> FeatureSchema:
    """Feature schema of the AI-Clinician MIMICtable (the 45 clinical columns; doses are the action).

    ``input_total`` and ``cumulated_balance`` are kept as recorded; in AI-Clinician extracts they include
    the current bloc's fluid, so they partly reveal the action of that bloc (see ``docs/data_mimic.md``).
    """
    feats = []
    for name, (lo, hi) in _MIMICTABLE_LIMITS.items():
        kind = (
            "binary"
            if name == "mechvent"
            else ("ordinal" if name in ("GCS", "SOFA", "SIRS") else "continuous")
        )
        feats.append(
            FeatureSpec(name=name, unit=_MIMICTABLE_UNITS[name], kind=kind, lower=lo, upper=hi,
                        log_model=name in _MIMICTABLE_LOG)
        )  # fmt: skip
    return FeatureSchema(name="mimictable", features=tuple(feats), static=MIMICTABLE_STATIC)


# ---------------------------------------------------------------------------------- approximate SOFA
def approx_sofa(
    values: dict[str, np.ndarray],
    vaso_dose: np.ndarray | None = None,
    vaso_level: np.ndarray | None = None,
) -> np.ndarray:
    """Approximate SOFA points (0-24) of MIMIC-IV rows from the 39 features and the vasopressor.

    The MIMIC-IV format has no SOFA column, so five of the six organ scores are taken from the features
    with the standard SOFA thresholds, and one is approximated:

    - respiration: PaO2/FiO2 (``pao2 / (fio2 / 100)``) <400: 1, <300: 2, <200: 3, <100: 4. Ventilation is
      not in the format, so points 3-4 are given without it (an overestimate for unventilated patients);
    - coagulation: platelets <150: 1, <100: 2, <50: 3, <20: 4;
    - liver: bilirubin >=1.2: 1, >=2: 2, >=6: 3, >=12: 4;
    - cardiovascular: MAP <70: 1; any vasopressor: 3 if <=0.1 ug/kg/min else 4 (with levels only: level 1
      counts as <=0.1, levels 2-4 as >0.1, since the level-1/2 edge is 0.08);
    - CNS: GCS (eye + verbal + motor) 13-14: 1, 10-12: 2, 6-9: 3, <6: 4 (sedation not corrected);
    - renal: creatinine >=1.2: 1, >=2: 2, >=3.5: 3, >=5: 4. Urine output is **not** used because
      4-hourly urine is zero whenever it is not charted.

    Missing (NaN) inputs score 0 for their organ, as is usual for SOFA.
    """

    def v(name: str) -> np.ndarray:
        return np.asarray(values[name], dtype=np.float64)

    def steps(x: np.ndarray, edges: tuple[float, ...], *, lower_is_worse: bool) -> np.ndarray:
        x = np.nan_to_num(x, nan=np.inf if lower_is_worse else -np.inf)
        pts = np.zeros(x.shape)
        for e in edges:
            pts += (x < e) if lower_is_worse else (x >= e)
        return pts

    with np.errstate(divide="ignore", invalid="ignore"):
        pf = v("pao2") / (v("fio2") / 100.0)
    resp = steps(pf, (400.0, 300.0, 200.0, 100.0), lower_is_worse=True)
    coag = steps(v("platelet"), (150.0, 100.0, 50.0, 20.0), lower_is_worse=True)
    liver = steps(v("bilirubin_total"), (1.2, 2.0, 6.0, 12.0), lower_is_worse=False)
    gcs = v("gcs_eye") + v("gcs_verbal") + v("gcs_motor")
    cns = steps(gcs, (15.0, 13.0, 10.0, 6.0), lower_is_worse=True)
    renal = steps(v("creatinine"), (1.2, 2.0, 3.5, 5.0), lower_is_worse=False)
    cardio = steps(v("meanbp"), (70.0,), lower_is_worse=True)
    if vaso_dose is not None:
        d = np.nan_to_num(np.asarray(vaso_dose, dtype=np.float64))
        cardio = np.where(d > 0, np.where(d <= 0.1, 3.0, 4.0), cardio)
    elif vaso_level is not None:
        lv = np.asarray(vaso_level)
        cardio = np.where(lv >= 1, np.where(lv == 1, 3.0, 4.0), cardio)
    return resp + coag + liver + cns + renal + cardio


__all__ = [
    "DOSE_COLUMNS",
    "ID_COLUMN",
    "LEVEL_COLUMNS",
    "MIMICTABLE_ACTION_COLUMNS",
    "MIMICTABLE_COLUMNS",
    "MIMICTABLE_FEATURES",
    "MIMICTABLE_OUTCOMES",
    "MIMICTABLE_STATIC",
    "MIMIC_IV_FEATURES",
    "MIMIC_IV_STATIC",
    "MORTALITY_COLUMN",
    "SOFA_COLUMN",
    "STEP_COLUMN",
    "VITALS",
    "approx_sofa",
    "mimic_iv_columns",
    "mimic_iv_schema",
    "mimictable_schema",
    "reference_stats",
]
