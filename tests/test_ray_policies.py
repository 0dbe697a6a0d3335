"""Issue 14: policy-level fan-out in ``run_evaluation`` (one task per policy: built, probabilities, scorers).

The policies live in a module written to a temporary folder: spawn workers of the process pool import it
from ``sys.path``; Ray workers get it by value (``register_pickle_by_value``). Every run is compared with
the serial run of the same config: results, the CSV table and the saved probability chunks must be equal
(the policies here are deterministic). Ray tests use a local Ray with 2 CPUs and no dashboard and skip
when ``ray`` is absent; the serial and process-pool ones run without it.
"""

from __future__ import annotations

import csv
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from sepsis_sdk.errors import UserError
from sepsis_sdk.evaluation.config import (
    CohortConfig,
    EvaluationConfig,
    OPEConfig,
    PolicyConfig,
    SafetyConfig,
    TruthConfig,
)
from sepsis_sdk.evaluation.executor import LocalProcessExecutor, SerialExecutor
from sepsis_sdk.evaluation.runner import run_evaluation

_MODULE = '''
import os
import signal
import uuid
from pathlib import Path

import numpy as np


class StayPolicy:
    """History-dependent: fluids rise with the stay so far, shifted by ``k``; each call leaves a mark."""

    markov = False

    def __init__(self, k=0, marks=None):
        self.name, self.k, self.marks = f"stay-{k}", k, marks

    def action_probabilities(self, histories):
        if self.marks:
            (Path(self.marks) / uuid.uuid4().hex).write_text(str(os.getpid()))
        out = np.full((len(histories), 25), 0.01)
        for i, h in enumerate(histories):
            out[i, (5 * min(4, h.t // 2) + self.k) % 25] += 0.75 + 0.01 * len(h.observations)
        return out / out.sum(1, keepdims=True)


class DiesOnce(StayPolicy):
    """Kills its own worker process the first time it is asked anything away from the driver."""

    def __init__(self, k, marks, driver_pid):
        super().__init__(k)
        self.died, self.driver_pid = marks, driver_pid

    def action_probabilities(self, histories):
        flag = Path(self.died) / "died"
        if os.getpid() != self.driver_pid and not flag.exists():
            flag.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return super().action_probabilities(histories)
'''


@pytest.fixture
def mods(tmp_path, monkeypatch):
    """The policy module, importable here and in spawn workers (and shipped by value to Ray workers)."""
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "fanout_test_policies.py").write_text(_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    import fanout_test_policies

    yield fanout_test_policies
    sys.modules.pop("fanout_test_policies", None)


def _config(out: Path, *configured: PolicyConfig) -> EvaluationConfig:
    return EvaluationConfig(
        out_dir=str(out), cohort=CohortConfig(n_episodes=200, seed=3), policies=configured,
        ope=OPEConfig(estimators=("wis", "wpdis"), n_bootstrap=30), safety=SafetyConfig(n_bootstrap=30),
        truth=TruthConfig(monte_carlo_episodes=30), chunk_patients=8,
    )  # fmt: skip


_CONFIGURED = (
    PolicyConfig(name="clinician"),
    PolicyConfig(name="random"),
    PolicyConfig(name="optimal", kind="builtin", options={"table": "optimal"}),
)


def _run(out: Path, policies: dict, executor, configured=_CONFIGURED, **kw):
    seen: list[str] = []
    rep = run_evaluation(_config(out, *configured), policies=policies, executor=executor, progress=False,
                         on_policy_done=lambda r: seen.append(r.name), **kw)  # fmt: skip
    return rep, seen


def _table(out: Path) -> list[dict[str, str]]:
    """``results.csv`` without the wall-time column."""
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r.pop("seconds")
    return rows


def _dicts(rep) -> dict:
    out = {k: v.to_dict() for k, v in rep.results.items()}
    for d in out.values():
        d.pop("seconds")
    return out


def _chunks(out: Path) -> dict[str, np.ndarray]:
    return {str(f.relative_to(out)): np.load(f) for f in sorted((out / "work").rglob("chunk_*.npy"))}


def _assert_same_run(a: Path, rep_a, b: Path, rep_b) -> None:
    assert list(rep_a.results) == list(rep_b.results)  # rows in the order of the policies
    assert _dicts(rep_a) == _dicts(rep_b)
    assert _table(a) == _table(b)
    ca, cb = _chunks(a), _chunks(b)
    assert list(ca) == list(cb) and ca  # the same chunk files: none lost, none extra
    for k in ca:
        np.testing.assert_array_equal(ca[k], cb[k])


def _objects(m, marks=None) -> dict:
    return {p.name: p for p in (m.StayPolicy(0, marks), m.StayPolicy(3, marks))}


@pytest.fixture
def serial_run(tmp_path, mods):
    rep, seen = _run(tmp_path / "serial", _objects(mods), SerialExecutor())
    return tmp_path / "serial", rep, seen


# ---------------------------------------------------------------------------------------------- no Ray
def test_policy_tasks_in_process_equal_the_chunk_run(tmp_path, mods, serial_run):
    out, ref, ref_seen = serial_run
    rep, seen = _run(tmp_path / "tasks", _objects(mods), SerialExecutor(), fan_out="policies")
    _assert_same_run(out, ref, tmp_path / "tasks", rep)
    assert seen == ref_seen == ["clinician", "random", "optimal", "stay-0", "stay-3"]


def test_an_unknown_fan_out_is_refused(tmp_path):
    with pytest.raises(UserError, match="unknown fan_out 'nodes'"):
        run_evaluation(_config(tmp_path, *_CONFIGURED), executor=SerialExecutor(), progress=False,
                       fan_out="nodes")  # fmt: skip


def test_fan_out_is_a_config_field_and_a_cli_option(tmp_path, monkeypatch):
    import pydantic
    from typer.testing import CliRunner

    from sepsis_sdk.cli import app
    from sepsis_sdk.evaluation import runner

    cfg = _config(tmp_path, *_CONFIGURED).model_copy(update={"fan_out": "policies"})
    assert cfg.fingerprint() == _config(tmp_path, *_CONFIGURED).fingerprint()  # results do not depend on it
    with pytest.raises(pydantic.ValidationError):
        type(cfg).model_validate({**cfg.model_dump(), "fan_out": "nodes"})
    asked = []
    real = runner._fan_out_mode
    monkeypatch.setattr(runner, "_fan_out_mode", lambda f, ex, n: asked.append(f) or real(f, ex, n))
    run_evaluation(cfg, executor=SerialExecutor(), progress=False)
    run_evaluation(cfg.model_copy(update={"out_dir": str(tmp_path / "b")}), executor=SerialExecutor(),
                   progress=False, fan_out="chunks")  # fmt: skip
    assert asked == ["policies", "chunks"]  # the config's choice, unless the call names one
    bad = CliRunner().invoke(app, ["evaluate", "--out", str(tmp_path / "c"), "--fan-out", "nodes"])
    assert bad.exit_code == 2 and "fan_out" in bad.output


class _Cluster:
    """Stands in for a Ray executor of ``width`` CPUs (only what the choice of fan-out reads)."""

    name = "ray"

    def __init__(self, width: int) -> None:
        self.width = width

    def parallelism(self) -> int:
        return self.width


def test_auto_fans_out_policies_on_ray_when_they_fill_the_cluster():
    from sepsis_sdk.evaluation.runner import _fan_out_mode

    assert [_fan_out_mode("auto", _Cluster(4), n) for n in (0, 1, 3, 4, 9)] == (
        ["chunks", "chunks", "chunks", "policies", "policies"]
    )
    assert _fan_out_mode("auto", _Cluster(1), 1) == "chunks"  # one policy: its chunks are the work
    assert _fan_out_mode("auto", LocalProcessExecutor(2), 8) == "chunks"  # the pool: only when asked
    assert _fan_out_mode("auto", SerialExecutor(), 8) == "chunks"
    assert _fan_out_mode("policies", SerialExecutor(), 1) == "policies"
    assert _fan_out_mode("chunks", _Cluster(1), 8) == "chunks"


@pytest.mark.slow
def test_process_pool_policy_tasks_equal_serial(tmp_path, mods, serial_run):
    out, ref, _ = serial_run
    pool = LocalProcessExecutor(2)
    try:
        rep, seen = _run(tmp_path / "pool", _objects(mods), pool, fan_out="policies")
        assert seen == ["clinician", "random", "optimal", "stay-0", "stay-3"]
    finally:
        pool.close()
    assert not pool.fell_back  # the pool did the work (5 picklable tasks)
    _assert_same_run(out, ref, tmp_path / "pool", rep)


# ---------------------------------------------------------------------------------------------- Ray
@pytest.mark.slow
def test_policies_fan_out_on_ray_with_the_serial_results(local_ray, tmp_path, mods, serial_run):
    from sepsis_sdk.scale import RayExecutor

    local_ray.cloudpickle.register_pickle_by_value(mods)
    out, ref, ref_seen = serial_run
    with RayExecutor() as ex:  # 5 policies >= 2 CPUs: "auto" gives one task per policy
        rep, seen = _run(tmp_path / "ray", _objects(mods), ex)
        assert ex.stats == {"puts": 1, "tasks": 5}  # shared inputs put once; no chunk tasks
    _assert_same_run(out, ref, tmp_path / "ray", rep)
    assert seen == ref_seen  # callbacks in the order of the policies
    with RayExecutor() as ex:  # the old way, forced: one task per patient chunk
        rep, _ = _run(tmp_path / "chunks", _objects(mods), ex, fan_out="chunks")
        assert ex.stats["tasks"] == len(_chunks(tmp_path / "chunks"))
    _assert_same_run(out, ref, tmp_path / "chunks", rep)


@pytest.mark.slow
def test_a_policy_that_cannot_be_shipped_is_scored_here_with_a_warning(local_ray, tmp_path, mods, serial_run):
    from sepsis_sdk.scale import RayExecutor

    local_ray.cloudpickle.register_pickle_by_value(mods)
    out, ref, _ = serial_run
    pols = _objects(mods)
    pols["stay-3"].lock = threading.Lock()  # cannot be pickled
    with RayExecutor() as ex, pytest.warns(RuntimeWarning, match="policy 'stay-3' cannot be shipped"):
        rep, seen = _run(tmp_path / "ray", pols, ex, fan_out="policies")
        assert ex.stats["tasks"] == 4
    _assert_same_run(out, ref, tmp_path / "ray", rep)
    assert seen == ["clinician", "random", "optimal", "stay-0", "stay-3"]


@pytest.mark.slow
def test_a_build_failing_on_a_worker_names_the_policy(local_ray, tmp_path, mods):
    from sepsis_sdk.scale import RayExecutor

    bad = (PolicyConfig(name="random"), PolicyConfig(name="mystery", kind="no_such_baseline"))
    with pytest.raises(UserError, match="unknown baseline") as serial:  # the same error type as serial
        _run(tmp_path / "serial", {}, SerialExecutor(), configured=bad)
    assert "mystery" not in str(serial.value)
    with RayExecutor() as ex, pytest.raises(UserError) as err:
        _run(tmp_path / "ray", {}, ex, configured=bad, fan_out="policies")
    assert str(err.value).startswith("policy 'mystery' failed on a ray worker: unknown baseline")
    # the policy before it was saved, the failed one was not
    assert (tmp_path / "ray" / "policies" / "random.json").exists()
    assert not (tmp_path / "ray" / "policies" / "mystery.json").exists()


@pytest.mark.slow
def test_a_killed_worker_reruns_its_policy_and_loses_nothing(local_ray, tmp_path, mods, serial_run):
    import os

    from sepsis_sdk.scale import RayExecutor

    local_ray.cloudpickle.register_pickle_by_value(mods)
    out, ref, _ = serial_run
    (tmp_path / "marks").mkdir()
    pols = _objects(mods)
    pols["stay-3"] = mods.DiesOnce(3, str(tmp_path / "marks"), os.getpid())
    with RayExecutor(max_retries=2) as ex:
        rep, seen = _run(tmp_path / "ray", pols, ex, fan_out="policies")
    assert (tmp_path / "marks" / "died").exists()  # a worker really was killed mid-policy
    _assert_same_run(out, ref, tmp_path / "ray", rep)  # every row once, every chunk file once
    assert seen == ["clinician", "random", "optimal", "stay-0", "stay-3"]


@pytest.mark.slow
def test_a_run_resumes_across_modes_without_redoing_saved_chunks(local_ray, tmp_path, mods):
    from sepsis_sdk.scale import RayExecutor

    local_ray.cloudpickle.register_pickle_by_value(mods)
    for d in ("fresh", "resumed"):
        (tmp_path / d).mkdir()
    cut = tmp_path / "cut"
    _run(cut, _objects(mods), SerialExecutor(), configured=())  # chunk mode, in this process
    chunks = sorted((cut / "work" / "stay-0").glob("chunk_*.npy"))
    for f in (cut / "policies").glob("*.json"):
        f.unlink()  # both results lost, ...
    for f in chunks[1::2]:
        f.unlink()  # ... and half of stay-0's chunks: a run killed mid-policy
    fresh, _ = _run(
        tmp_path / "ref", _objects(mods, str(tmp_path / "fresh")), SerialExecutor(), configured=()
    )
    with RayExecutor() as ex:
        rep, _ = _run(cut, _objects(mods, str(tmp_path / "resumed")), ex, configured=(), fan_out="policies")
    calls = {d: len(list((tmp_path / d).iterdir())) for d in ("fresh", "resumed")}
    kept = len(chunks) - len(chunks[1::2])
    assert calls["fresh"] - calls["resumed"] == kept + len(chunks)  # stay-3's chunks all kept too
    _assert_same_run(tmp_path / "ref", fresh, cut, rep)
