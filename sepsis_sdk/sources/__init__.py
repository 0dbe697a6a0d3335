"""Cohort sources: the ICU-Sepsis MDP (embedded default), MIMIC loaders, and the synthetic generator.

:func:`load` is the one way from a spec (``"icu-sepsis"``, ``"synthetic"``, a file path or a name given to
:func:`register_source`) to a :class:`~sepsis_sdk.Cohort`; the runner, the CLIs and training all use it.
Submodules are imported on first use so that ``import sepsis_sdk.sources`` stays light.
"""

from __future__ import annotations

from typing import Any

from sepsis_sdk._lazy import lazy_getattr

_EXPORTS = {
    "load": ("sepsis_sdk.sources._load", "load"),
    "load_file": ("sepsis_sdk.sources._load", "load_file"),
    "register_source": ("sepsis_sdk.sources._load", "register_source"),
    "source_names": ("sepsis_sdk.sources._load", "source_names"),
    "sample_icu_sepsis": ("sepsis_sdk.sources.icu_sepsis", "sample_cohort"),
    "icu_sepsis_schema": ("sepsis_sdk.sources.icu_sepsis", "icu_sepsis_schema"),
    "load_mdp": ("sepsis_sdk.sources.icu_sepsis", "load_mdp"),
    "load_mimictable": ("sepsis_sdk.sources.mimic", "load_mimictable"),
    "load_mimic_iv": ("sepsis_sdk.sources.mimic", "load_mimic_iv"),
    "synthesize_cohort": ("sepsis_sdk.sources.synthetic", "synthesize_cohort"),
    "SyntheticSepsisModel": ("sepsis_sdk.sources.synthetic", "SyntheticSepsisModel"),
    "validate_file": ("sepsis_sdk.sources.mimic", "validate_file"),
    "write_mimic_iv": ("sepsis_sdk.sources.mimic", "write_mimic_iv"),
}
__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr("sepsis_sdk.sources", _EXPORTS, globals())
