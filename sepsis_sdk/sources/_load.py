"""One way from a cohort spec to a :class:`~sepsis_sdk.Cohort`: ``sepsis_sdk.sources.load(spec, **options)``.

``spec`` is a registered source name (built in: ``"icu-sepsis"``, ``"synthetic"``), a file path (a cohort
Parquet written by :meth:`Cohort.to_parquet <sepsis_sdk.Cohort.to_parquet>`, an AI-Clinician MIMICtable or a
SepsisAgent-style MIMIC-IV episode file, CSV or Parquet, recognised by their columns) or a Cohort (returned
as is). Register your own generator or loader with :func:`register_source`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sepsis_sdk.errors import CohortValidationError, UserError

if TYPE_CHECKING:
    from sepsis_sdk.cohort import Cohort

SourceFactory = Callable[..., "Cohort"]
_SOURCES: dict[str, tuple[SourceFactory, str]] = {}


def register_source(name: str, *, description: str = "") -> Callable[[SourceFactory], SourceFactory]:
    """Register ``factory(**options) -> Cohort`` under ``name`` for :func:`load`.

    Generators take the common options ``episodes`` (patients) and ``seed``; the CLIs pass both.

    Example:
        >>> from sepsis_sdk.sources import register_source
        >>> @register_source("my-ward")                       # doctest: +SKIP
        ... def _my_ward(*, episodes=1000, seed=0):
        ...     return Cohort.read_parquet("/data/my_ward.parquet").head(episodes)
    """

    def deco(factory: SourceFactory) -> SourceFactory:
        _SOURCES[name] = (factory, description or (factory.__doc__ or "").strip().split("\n")[0])
        return factory

    return deco


def source_names() -> list[str]:
    """The registered source names, sorted."""
    return sorted(_SOURCES)


def load(spec: str | Path | Any, **options: Any) -> Cohort:
    """The cohort named by ``spec``.

    Args:
        spec: a registered name (:func:`source_names`), a file path, or a Cohort (returned unchanged).
        **options: for a registered name, its factory's options (``episodes``, ``seed``, ``policy``, ...);
            for a MIMIC file, ``dose_binning`` and ``split_seed``. A file is read as it is: the generator
            options ``episodes`` and ``seed`` (which the CLIs always pass) do not apply to it.

    Raises:
        UserError: an unknown name that is not an existing file.
        CohortValidationError: a file that is not a cohort in a known format.

    Example:
        >>> from sepsis_sdk.sources import load
        >>> load("synthetic", episodes=20, seed=0).n_patients
        20
    """
    if hasattr(spec, "schema") and hasattr(spec, "data"):
        return spec
    key = str(spec)
    if key in _SOURCES:
        return _SOURCES[key][0](**options)
    path = Path(key)
    if path.exists():
        return load_file(path, **options)
    raise UserError(
        f"unknown cohort source {key!r}: not a registered name ({source_names()}) nor an existing file"
    )


def load_file(path: str | Path, *, episodes: Any = None, seed: Any = None, **options: Any) -> Cohort:
    """Load a cohort file: a cohort Parquet, an AI-Clinician MIMICtable or a MIMIC-IV episode file.

    ``episodes`` and ``seed`` are accepted and ignored (a file is read as it is); other ``options`` go to
    :func:`~sepsis_sdk.sources.mimic.load_mimictable` / :func:`~sepsis_sdk.sources.mimic.load_mimic_iv`.
    """
    from sepsis_sdk.cohort import Cohort

    path = Path(path)
    if Cohort.is_cohort_file(path):
        return Cohort.read_parquet(path)
    from sepsis_sdk.sources import mimic

    fmt = mimic.detect_format(path)
    if fmt == "mimictable":
        return mimic.load_mimictable(path, **options)
    if fmt == "mimic-iv":
        return mimic.load_mimic_iv(path, **options)
    raise CohortValidationError(
        "unrecognised file: not a sepsis-sdk cohort Parquet, an AI-Clinician MIMICtable (icustayid + bloc) "
        "or a MIMIC-IV episode file",
        source=str(path),
    )


@register_source("icu-sepsis", description="episodes sampled from the ICU-Sepsis MDP (the embedded default)")
def _icu_sepsis(
    *, episodes: int = 1000, seed: int = 0, policy: Any = "clinician", epsilon: float = 0.0, **options: Any
) -> Cohort:
    from sepsis_sdk.sources.icu_sepsis import sample_cohort

    return sample_cohort(episodes, policy=policy, epsilon=epsilon, seed=seed, **options)


@register_source("synthetic", description="a SYNTHETIC MIMIC-IV-like cohort (no credentials needed)")
def _synthetic(*, episodes: int = 1000, seed: int = 0, **options: Any) -> Cohort:
    from sepsis_sdk.sources.synthetic import synthesize_cohort

    return synthesize_cohort(episodes, seed=seed, **options)


__all__ = ["load", "load_file", "register_source", "source_names"]
