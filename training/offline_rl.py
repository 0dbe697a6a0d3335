"""Offline-RL baselines with d3rlpy 2.8.1: DiscreteBC, DQN, DoubleDQN, DiscreteBCQ, DiscreteCQL.

They learn from a cohort's transitions only (never from the ICU-Sepsis transition matrix) and act
greedily on the current observation, so they are Markov policies and get exact true values on
ICU-Sepsis. Training runs on the CPU unless ``device`` says otherwise.

Choices (the papers leave them open):
- gamma 0.99 for learning even though ICU-Sepsis is scored with gamma 1: bootstrapped targets with
  gamma 1 diverge on sparse terminal rewards; episodes are short (about 10 steps), so the bias is small.
- inputs are the stored features, standardised by d3rlpy's ``StandardObservationScaler``; missing values
  are filled with training means.
- a 2 x 128 MLP, batch 256, Adam, learning rate 3e-4 (1e-3 for BC), target update every 1,000 steps.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sepsis_sdk._lazy import require
from sepsis_sdk.actions import N_ACTIONS
from sepsis_sdk.errors import UserError
from sepsis_sdk.policies import FeaturePolicy, training_fill

if TYPE_CHECKING:
    from sepsis_sdk.cohort import Cohort

ALGORITHMS = {
    "bc": "DiscreteBCConfig",
    "dqn": "DQNConfig",
    "double_dqn": "DoubleDQNConfig",
    "bcq": "DiscreteBCQConfig",
    "cql": "DiscreteCQLConfig",
}
_ALIASES = {"discrete_bc": "bc", "doubledqn": "double_dqn", "discrete_bcq": "bcq", "discrete_cql": "cql"}


def _d3rlpy() -> Any:
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        return require("d3rlpy", "offline-rl", "offline-RL baselines")


@dataclass
class OfflineRLPolicy(FeaturePolicy):
    """A trained d3rlpy algorithm as a greedy :class:`~sepsis_sdk.policies.Policy`.

    Attributes:
        algo: the d3rlpy algorithm object.
        algorithm: our short name (``cql``).
        history: d3rlpy's per-epoch training metrics.
    """

    algo: Any = None
    algorithm: str = ""
    history: list[Any] = field(default_factory=list, repr=False)

    def greedy_actions(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.algo.predict(np.asarray(x, dtype=np.float32)), dtype=np.int64)

    def probabilities_from_features(self, x: np.ndarray) -> np.ndarray:
        a = self.greedy_actions(x)
        out = np.zeros((len(a), N_ACTIONS))
        out[np.arange(len(a)), a] = 1.0
        return out

    def q_values(self, x: np.ndarray) -> np.ndarray:
        """``(n, 25)`` learned Q-values (not available for behaviour cloning)."""
        if self.algorithm == "bc":
            raise UserError("DiscreteBC has no Q-function")
        x = self._prepare(np.asarray(x, dtype=np.float64)).astype(np.float32)
        return np.stack(
            [self.algo.predict_value(x, np.full(len(x), a, dtype=np.int64)) for a in range(N_ACTIONS)], axis=1
        )


def _fit_quietly(
    d3: Any, model: Any, dataset: Any, key: str, n_steps: int, show_progress: bool, threads: int, quiet: Any
) -> Any:
    """``model.fit`` in a temporary directory, with d3rlpy's logs and warnings silenced."""
    torch = require("torch", "torch", "offline-RL baselines")
    old_threads = torch.get_num_threads()
    # Small MLPs train fastest on one thread; more threads only contend (measured: ~7x faster on 2 busy cores).
    torch.set_num_threads(threads)
    with (
        _restore_threads(torch, old_threads),
        tempfile.TemporaryDirectory() as tmp,
        warnings.catch_warnings(),
        contextlib.chdir(tmp),
        contextlib.redirect_stdout(quiet),
    ):
        warnings.simplefilter("ignore")
        return model.fit(
            dataset,
            n_steps=n_steps,
            n_steps_per_epoch=min(n_steps, 1000),
            show_progress=show_progress,
            save_interval=10**9,
            logger_adapter=d3.logging.NoopAdapterFactory(),
            experiment_name=f"sepsis-sdk-{key}",
            with_timestamp=False,
        )


@contextlib.contextmanager
def _restore_threads(torch: Any, n: int) -> Any:
    try:
        yield
    finally:
        torch.set_num_threads(n)


def make_dataset(cohort: Cohort, fill: np.ndarray | None = None) -> Any:
    """A d3rlpy ``MDPDataset`` of the cohort's episodes (terminal where the outcome is known)."""
    d3 = _d3rlpy()
    x = np.where(cohort.masks(), cohort.features(), np.nan)
    fill = training_fill(cohort) if fill is None else fill
    x = np.where(np.isfinite(x), x, fill[None, :]).astype(np.float32)
    done = cohort.data["done"].to_numpy(dtype=bool)
    if "outcome" in cohort.data.columns:
        known = cohort.data["outcome"].to_numpy() >= 0
        terminals = done & known
    else:
        terminals = done
    timeouts = done & ~terminals
    return d3.dataset.MDPDataset(
        observations=x,
        actions=cohort.actions.astype(np.int64),
        rewards=cohort.data["reward"].to_numpy(dtype=np.float32),
        terminals=terminals.astype(np.float32),
        timeouts=timeouts.astype(np.float32),
        action_space=d3.constants.ActionSpace.DISCRETE,
        action_size=N_ACTIONS,
    )


def train_offline_rl(
    cohort: Cohort,
    algo: str = "cql",
    n_steps: int = 10_000,
    seed: int = 0,
    *,
    gamma: float = 0.99,
    batch_size: int = 256,
    hidden_units: tuple[int, ...] = (128, 128),
    learning_rate: float | None = None,
    target_update_interval: int = 1000,
    device: str | None = None,
    show_progress: bool = False,
    threads: int = 1,
    **config: Any,
) -> OfflineRLPolicy:
    """Train one offline-RL baseline on ``cohort`` and return it as a greedy policy.

    Args:
        cohort: training episodes (the training split).
        algo: ``bc``, ``dqn``, ``double_dqn``, ``bcq`` or ``cql``.
        n_steps: gradient steps.
        seed: seeds d3rlpy (torch and numpy).
        gamma: discount used for learning (see module docstring).
        batch_size: minibatch size.
        hidden_units: MLP encoder sizes.
        learning_rate: Adam learning rate (default 1e-3 for BC, 3e-4 otherwise).
        target_update_interval: target network sync period (value-based algorithms).
        device: ``"cpu:0"`` (default) or ``"cuda:0"``.
        show_progress: show d3rlpy's progress bar.
        threads: torch CPU threads while training (restored afterwards).
        **config: extra fields of the d3rlpy config (e.g. ``alpha`` for CQL, ``action_flexibility`` for BCQ).

    Example:
        >>> policy = train_offline_rl(cohort, "cql", n_steps=2000, seed=0)   # doctest: +SKIP
        >>> policy.cohort_probabilities(test).argmax(1)                      # doctest: +SKIP
    """
    key = _ALIASES.get(algo.lower(), algo.lower())
    if key not in ALGORITHMS:
        raise UserError(f"unknown offline-RL algorithm {algo!r}; choose from {sorted(ALGORITHMS)}")
    if n_steps <= 0:
        raise UserError(f"n_steps must be positive, got {n_steps}")
    d3 = _d3rlpy()
    d3.seed(seed)
    fill = training_fill(cohort)
    quiet = io.StringIO()  # d3rlpy logs every parameter through structlog to stdout
    with contextlib.redirect_stdout(quiet):
        dataset = make_dataset(cohort, fill)
    kw: dict[str, Any] = {
        "batch_size": batch_size,
        "learning_rate": learning_rate or (1e-3 if key == "bc" else 3e-4),
        "encoder_factory": d3.models.VectorEncoderFactory(hidden_units=list(hidden_units)),
        "observation_scaler": d3.preprocessing.StandardObservationScaler(),
    }
    if key != "bc":
        kw["gamma"] = gamma
        kw["target_update_interval"] = target_update_interval
    kw.update(config)
    model = getattr(d3.algos, ALGORITHMS[key])(**kw).create(device=device or "cpu:0")
    history = _fit_quietly(d3, model, dataset, key, n_steps, show_progress, threads, quiet)
    return OfflineRLPolicy(
        name=key,
        feature_names=tuple(cohort.schema.names),
        fill=fill,
        algo=model,
        algorithm=key,
        history=list(history),
    )


def _baseline(algo: str) -> Any:
    def build(train: Cohort, *, seed: int = 0, n_steps: int | None = None, **options: Any) -> OfflineRLPolicy:
        return train_offline_rl(train, algo, n_steps=n_steps or 10_000, seed=seed, **options)

    build.__name__ = build.__qualname__ = f"{algo}_baseline"
    build.__doc__ = f"Baseline factory of ``{algo}`` (registered in :mod:`sepsis_sdk.policies.baselines`)."
    return build


# The baseline registry names these as "sepsis_sdk.training.offline_rl:<algo>_baseline" targets, imported
# only when one is built (so listing baselines never imports d3rlpy).
bc_baseline = _baseline("bc")
dqn_baseline = _baseline("dqn")
double_dqn_baseline = _baseline("double_dqn")
bcq_baseline = _baseline("bcq")
cql_baseline = _baseline("cql")


__all__ = ["ALGORITHMS", "OfflineRLPolicy", "make_dataset", "train_offline_rl"]
