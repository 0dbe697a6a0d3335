"""Validation of the OPE estimators against exact ICU-Sepsis values.

For each data size and seed we sample a cohort from the clinicians' policy (as a hospital's data would
be), estimate a set of target policies with every estimator, and compare with the exact value from
:func:`sepsis_sdk.truth.true_value`: bias, RMSE, interval coverage and how often the AI-Clinician "95 %
lower bound" really lies below the truth.

Example:
    >>> table = validate_estimators(sizes=(1000,), seeds=(0, 1), n_bootstrap=100)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from sepsis_sdk.errors import UserError
from sepsis_sdk.evaluation.ope import ESTIMATORS, evaluate_ope, target_probs_from_table

if TYPE_CHECKING:
    import pandas as pd

    from sepsis_sdk.cohort import Cohort


def validation_policies() -> dict[str, np.ndarray]:
    """The target policies of the published validation table, as ``(716, 25)`` tables.

    - ``clinician``: the behaviour policy itself (on-policy check).
    - ``clinician_eps0.1`` / ``clinician_eps0.3``: clinicians mixed with uniform over admissible actions.
    - ``clinician_argmax``: the clinicians' most frequent action in each state (deterministic).
    - ``random_admissible``: uniform over each state's admissible actions.
    - ``random``: uniform over all 25 actions: 22 of them, on average, are never taken by clinicians in
      a state (inadmissible), a support violation importance sampling cannot correct.
    - ``optimal_admissible``: optimal over admissible actions only (inside the clinicians' support).
    - ``optimal``: optimal over all 25 actions (in 17 % of states it picks an action clinicians never take).
    """
    from sepsis_sdk.sources.icu_sepsis import load_mdp, soften
    from sepsis_sdk.truth import builtin_policy, optimal_policy

    mdp = load_mdp()
    clin = builtin_policy("clinician")
    argmax = np.zeros_like(clin)
    argmax[np.arange(len(clin)), clin.argmax(1)] = 1.0
    return {
        "clinician": clin,
        "clinician_eps0.1": soften(clin, 0.1, mdp),
        "clinician_eps0.3": soften(clin, 0.3, mdp),
        "clinician_argmax": argmax,
        "random_admissible": builtin_policy("random_admissible"),
        "random": builtin_policy("random"),
        "optimal_admissible": optimal_policy(admissible_only=True).table(),
        "optimal": builtin_policy("optimal"),
    }


def validate_estimators(
    policies: Mapping[str, np.ndarray] | None = None,
    *,
    sizes: Sequence[int] = (1000, 5000, 20000),
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    behaviour: Literal["learned", "known"] | Sequence[str] = "learned",
    behaviour_kind: str = "tabular",
    softening: float = 0.01,
    estimators: Sequence[str] = ESTIMATORS,
    n_bootstrap: int = 200,
    fqe_model: str = "auto",
    gamma: float = 1.0,
    return_runs: bool = False,
    progress: Callable[[str], None] | None = None,
    on_cohort: Callable[[pd.DataFrame], None] | None = None,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Bias, RMSE and interval coverage of each estimator x policy x data size against exact values.

    Args:
        policies: name -> ``(716, 25)`` table (default :func:`validation_policies`).
        sizes: cohort sizes (episodes) to sample from the clinicians' policy.
        seeds: one cohort per size and seed (sampling seed = bootstrap seed = model seed).
        behaviour: ``"known"`` uses the true clinician probabilities (isolates the estimator's error);
            ``"learned"`` fits :func:`~sepsis_sdk.evaluation.behaviour.fit_behaviour_policy` on each cohort;
            a list (``("known", "learned")``) runs both on the same cohorts, sharing the Q-models.
        behaviour_kind: model kind when learned (``"tabular"``, default: near-exact on ICU-Sepsis; ``"logistic"``, ``"gbm"``).
        softening: softening of the learned behaviour model.
        estimators: estimators to run.
        n_bootstrap: bootstrap resamples per estimate.
        fqe_model: Q-model of DR/WDR/FQE (see :func:`~sepsis_sdk.evaluation.fqe.fit_fqe`).
        gamma: discount (ICU-Sepsis truth is for gamma = 1).
        return_runs: also return the per-run table.
        progress: optional callback receiving a short text per finished cohort.
        on_cohort: optional callback receiving each cohort's per-run rows as soon as they exist (to
            save partial results of a long grid).

    Returns:
        A table with one row per estimator, policy and size: ``true_value``, ``mean_estimate``, ``bias``,
        ``sd``, ``rmse``, ``coverage`` (share of intervals containing the truth), ``lb5_below_truth``
        (share of 5th-percentile lower bounds at or below the truth), ``mean_ci_width``, ``mean_ess``,
        ``runs``; and, with ``return_runs``, the per-run table as a second value.
    """
    import pandas as pd

    from sepsis_sdk.sources.icu_sepsis import sample_cohort
    from sepsis_sdk.truth import true_value

    if gamma != 1.0:
        raise UserError("ICU-Sepsis true values are for gamma = 1")
    policies = dict(policies) if policies is not None else validation_policies()
    modes = [behaviour] if isinstance(behaviour, str) else list(behaviour)
    for mode in modes:
        if mode not in ("learned", "known"):
            raise UserError(f"behaviour must be 'learned' or 'known', got {mode!r}")
    truth = {name: true_value(table) for name, table in policies.items()}
    ope_kw = {"estimators": estimators, "gamma": gamma, "n_bootstrap": n_bootstrap, "fqe_model": fqe_model}
    rows: list[dict[str, Any]] = []
    for size in sizes:
        for seed in seeds:
            cohort = sample_cohort(int(size), seed=int(seed))
            behaviours = _behaviours(cohort, modes, behaviour_kind, softening, int(seed))
            new_rows = _cohort_runs(cohort, policies, behaviours, truth, int(size), int(seed), ope_kw)
            rows.extend(new_rows)
            if on_cohort is not None:
                on_cohort(pd.DataFrame(new_rows))
            if progress is not None:
                progress(f"size={size} seed={seed}")
    runs = pd.DataFrame(rows)
    summary = summarise_runs(runs)
    return (summary, runs) if return_runs else summary


def _behaviours(
    cohort: Cohort, modes: Sequence[str], kind: str, softening: float, seed: int
) -> dict[str, np.ndarray]:
    """Behaviour probabilities of the actions taken: the true ones (``known``) and/or a fitted model."""
    from sepsis_sdk.evaluation.behaviour import KnownBehaviour, fit_behaviour_policy

    out: dict[str, np.ndarray] = {}
    for mode in modes:
        if mode == "known":
            out["known"] = KnownBehaviour.from_cohort(cohort).taken_probabilities(cohort)
        else:
            model = fit_behaviour_policy(cohort, kind=kind, softening=softening, seed=seed)
            out[kind] = model.taken_probabilities(cohort)
    return out


def _cohort_runs(
    cohort: Cohort,
    policies: Mapping[str, np.ndarray],
    behaviours: Mapping[str, np.ndarray],
    truth: Mapping[str, float],
    size: int,
    seed: int,
    ope_kw: dict[str, Any],
) -> list[dict[str, Any]]:
    """One row per estimator x policy x behaviour on one cohort."""
    rows: list[dict[str, Any]] = []
    for name, table in policies.items():
        pe = target_probs_from_table(cohort, table)
        q_model = None  # the Q-model depends on the target only: fit once, share across behaviours
        for label, pb in behaviours.items():
            res = evaluate_ope(cohort, pe, behaviour=pb, seed=seed, q_model=q_model, **ope_kw)
            q_model = res.q_model
            for est_name, e in res.estimates.items():
                rows.append({
                    "estimator": est_name, "policy": name, "size": size, "seed": seed,
                    "true_value": truth[name], "value": e.value, "ci_low": e.ci_low,
                    "ci_high": e.ci_high, "lower_bound_5pct": e.lower_bound_5pct, "ess": e.ess,
                    "covered": e.covers(truth[name]), "lb5_below": e.lower_bound_5pct <= truth[name],
                    "behaviour": label,
                })  # fmt: skip
    return rows


def summarise_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Aggregate a per-run table (from :func:`validate_estimators`) into bias / RMSE / coverage rows."""
    import pandas as pd

    out = []
    keys = (
        ["behaviour", "estimator", "policy", "size"]
        if "behaviour" in runs.columns
        else ["estimator", "policy", "size"]
    )
    for key, g in runs.groupby(keys, sort=False):
        est, pol, size = key[-3:]
        err = g["value"].to_numpy() - g["true_value"].to_numpy()
        finite = np.isfinite(err)
        e = err[finite]
        out.append({
            **({"behaviour": key[0]} if len(key) == 4 else {}),
            "estimator": est, "policy": pol, "size": size, "runs": int(len(g)),
            "true_value": float(g["true_value"].iloc[0]),
            "mean_estimate": float(g["value"][finite].mean()) if finite.any() else float("nan"),
            "bias": float(e.mean()) if e.size else float("nan"),
            "sd": float(e.std(ddof=1)) if e.size > 1 else float("nan"),
            "rmse": float(np.sqrt((e**2).mean())) if e.size else float("nan"),
            "coverage": float(g["covered"].mean()),
            "lb5_below_truth": float(g["lb5_below"].mean()),
            "mean_ci_width": float((g["ci_high"] - g["ci_low"]).mean()),
            "mean_ess": float(g["ess"].mean()),
        })  # fmt: skip
    return pd.DataFrame(out)


def validation_markdown(summary: pd.DataFrame, *, digits: int = 3) -> str:
    """Markdown tables (one per behaviour model) of ``bias / RMSE / coverage`` per policy x estimator x size."""
    parts = []
    frame = summary if "behaviour" in summary.columns else summary.assign(behaviour="-")
    sizes = sorted(frame["size"].unique())
    for beh, g in frame.groupby("behaviour", sort=False):
        head = ["policy (truth)", "estimator", *[f"n={s:,}: bias / RMSE / cov" for s in sizes]]
        lines = [f"**behaviour: {beh}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for (pol, est), h in g.groupby(["policy", "estimator"], sort=False):
            cells = []
            for s in sizes:
                r = h[h["size"] == s]
                if r.empty:
                    cells.append("")
                    continue
                r = r.iloc[0]
                cells.append(
                    f"{r['bias']:+.{digits}f} / {r['rmse']:.{digits}f} / {r['coverage']:.2f} ({int(r['runs'])})"
                )
            lines.append(f"| {pol} ({h['true_value'].iloc[0]:.4f}) | {est} | " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m sepsis_sdk.evaluation.validation``: run the grid, write per-run CSV and print the table."""
    import argparse
    import time
    from pathlib import Path

    ap = argparse.ArgumentParser(description="Validate OPE estimators against exact ICU-Sepsis values.")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--behaviour", choices=["known", "learned"], nargs="+", default=["known"])
    ap.add_argument("--behaviour-kind", default="tabular")
    ap.add_argument("--policies", nargs="*", default=None, help="subset of validation_policies()")
    ap.add_argument("--n-bootstrap", type=int, default=200)
    ap.add_argument("--fqe-model", default="auto")
    ap.add_argument("--out", default=None, help="CSV of the per-run table (appended after every cohort)")
    args = ap.parse_args(argv)
    pols = validation_policies()
    if args.policies:
        pols = {k: pols[k] for k in args.policies}
    t0 = time.time()
    summary, _ = validate_estimators(
        pols, sizes=args.sizes, seeds=args.seeds, behaviour=args.behaviour, behaviour_kind=args.behaviour_kind,
        n_bootstrap=args.n_bootstrap, fqe_model=args.fqe_model, return_runs=True,
        progress=lambda msg: print(f"[{time.time() - t0:7.1f}s] {msg}", flush=True),
        on_cohort=(lambda df: df.to_csv(args.out, mode="a", header=not Path(args.out).exists(), index=False))
        if args.out else None,
    )  # fmt: skip
    print(summary.round(4).to_string(index=False))


__all__ = ["summarise_runs", "validate_estimators", "validation_markdown", "validation_policies"]


if __name__ == "__main__":  # pragma: no cover
    main()
