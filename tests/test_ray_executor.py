"""Issue 14: the Ray executor, actors and the cluster-wide concurrency limit, on a local Ray (2 CPUs).

One local cluster serves the whole session (starting Ray costs seconds). Functions defined here travel to
the workers by value (``register_pickle_by_value``): under ``--import-mode=importlib`` the workers could
not import this file by name.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from sepsis_sdk.errors import ClusterError  # noqa: E402
from sepsis_sdk.evaluation.executor import LocalProcessExecutor, SerialExecutor, make_executor  # noqa: E402
from sepsis_sdk.scale import ConcurrencyLimit, RayActorExecutor, RayExecutor, limited  # noqa: E402


@pytest.fixture(scope="module")
def ray_cluster(local_ray):
    """The session's local Ray (tests/conftest.py), with this module's functions pickled by value."""
    local_ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    return local_ray


# ---------------------------------------------------------------------------------------------- helpers
def _slow_square(x):
    time.sleep(0.05 * ((7 * x) % 3))  # finish out of order
    return x * x


class _Shared:
    """A large shared input: counts how often the driver serialises it."""

    serialised = 0

    def __init__(self) -> None:
        self.table = np.arange(10_000.0)

    def __reduce__(self):
        type(self).serialised += 1
        return (_rebuild, (self.table,))


def _rebuild(table):
    obj = object.__new__(_Shared)
    obj.table = table
    return obj


def _lookup(shared, k):
    return float(shared.table[k])


def _die_once(marks: str, x):
    """Kills its own worker process the first time it sees item 3 (a marker file remembers)."""
    mark = Path(marks) / f"attempt-{x}-{os.getpid()}"
    mark.write_text("")
    if x == 3 and len(list(Path(marks).glob("attempt-3-*"))) == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return x * 10


def _load(log: str):
    with open(log, "a") as f:
        f.write(f"{os.getpid()}\n")
    return {"weights": 2.0}


def _predict(model, x):
    return model["weights"] * x


def _predict_or_die(marks: str, model, x):
    if x == 4 and not (Path(marks) / "died").exists():
        (Path(marks) / "died").write_text("")
        os._exit(1)
    return model["weights"] * x


# ---------------------------------------------------------------------------------------------- executor
def test_ray_executor_keeps_item_order_and_matches_serial(ray_cluster):
    ex = make_executor("ray")
    assert isinstance(ex, RayExecutor) and ex.name == "ray"
    items = list(range(12))
    assert list(ex.map(_slow_square, items)) == list(SerialExecutor().map(_slow_square, items))
    assert sorted(ex.map_unordered(_slow_square, items)) == [(k, k * k) for k in items]
    ex.close()
    assert ray.is_initialized()  # it joined the session's cluster, so it leaves it running


def test_shared_inputs_are_put_once_not_per_task(ray_cluster):
    shared = _Shared()
    _Shared.serialised = 0
    with RayExecutor() as ex:
        got = list(ex.map(partial(_lookup, shared), range(16)))
    assert got == [float(k) for k in range(16)]
    assert _Shared.serialised == 1 and ex.stats == {"puts": 1, "tasks": 16}


def test_in_flight_work_is_bounded(ray_cluster):
    consumed = []

    def items():
        for k in range(20):
            consumed.append(k)
            yield k

    ex = RayExecutor(max_in_flight=3)
    ahead = []
    for n, _ in enumerate(ex.map(_slow_square, items()), start=1):
        ahead.append(len(consumed) - n)
    assert max(ahead) <= 3 - 1 and len(consumed) == 20


def test_what_cannot_be_shipped_runs_here_like_the_process_pool(ray_cluster):
    lock = threading.Lock()  # cannot be pickled
    ex = RayExecutor()
    with pytest.warns(RuntimeWarning, match="cannot be shipped to the cluster"):  # never silently local
        got = list(ex.map(lambda x: (x, lock.locked()), [1, 2]))
    assert got == [(1, False), (2, False)] and ex.fell_back


def test_an_error_in_the_task_reaches_the_caller_unchanged(ray_cluster):
    with pytest.raises(ZeroDivisionError):
        list(RayExecutor().map(partial(divmod, 1), [1, 0, 2]))


def test_a_killed_worker_loses_and_duplicates_nothing(ray_cluster, tmp_path):
    ex = RayExecutor(max_retries=2)
    got = list(ex.map(partial(_die_once, str(tmp_path)), range(8)))
    assert got == [x * 10 for x in range(8)]  # every result, once, in order
    attempts = sorted(p.name.split("-")[1] for p in tmp_path.glob("attempt-*"))
    assert attempts.count("3") == 2  # the killed task ran again, on a fresh worker
    assert all(attempts.count(str(x)) == 1 for x in range(8) if x != 3)


def test_unreachable_cluster_names_the_address(ray_cluster):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ex = make_executor("ray", address=f"127.0.0.1:{port}")
    with pytest.raises(ClusterError, match=rf"127\.0\.0\.1:{port}"):
        ex.connect()
    with pytest.raises(ClusterError, match=rf"ray://127\.0\.0\.1:{port}"):
        RayExecutor(f"ray://127.0.0.1:{port}").connect()


# ---------------------------------------------------------------------------------------------- actors
def test_actors_load_once_and_serve_many_items(ray_cluster, tmp_path):
    log = tmp_path / "loads.txt"
    ax = RayActorExecutor(partial(_load, str(log)), n_actors=2)
    try:
        assert list(ax.map(_predict, range(10))) == [2.0 * x for x in range(10)]
        assert list(ax.map(_predict, range(3))) == [0.0, 2.0, 4.0]
        assert len(log.read_text().split()) == 2  # one load per actor for 13 items
    finally:
        ax.close()


def test_a_killed_actor_is_restarted_and_its_item_rerun(ray_cluster, tmp_path):
    log = tmp_path / "loads.txt"
    ax = RayActorExecutor(partial(_load, str(log)), n_actors=2, max_retries=2)
    try:
        got = list(ax.map(partial(_predict_or_die, str(tmp_path)), range(8)))
        assert got == [2.0 * x for x in range(8)]
        assert len(log.read_text().split()) == 3  # two loads, and one more for the restarted actor
    finally:
        ax.close()


# ---------------------------------------------------------------------------------------------- limit
class _CountingServer:
    """A local HTTP server that records how many requests it holds at once."""

    def __init__(self, delay_s: float = 0.15) -> None:
        lock = threading.Lock()
        state = {"now": 0, "peak": 0, "total": 0}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                with lock:
                    state["now"] += 1
                    state["total"] += 1
                    state["peak"] = max(state["peak"], state["now"])
                time.sleep(delay_s)
                with lock:
                    state["now"] -= 1
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.state = state
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


class _Client:
    """A stand-in for a hosted chat model: one HTTP request per ``complete``."""

    name = "mock-hosted"

    def __init__(self, url: str) -> None:
        self.url = url

    def complete(self, messages, **kw):
        import urllib.request

        with urllib.request.urlopen(self.url, timeout=30) as r:
            return r.read().decode()


def _sweep_chunk(client, chunk):
    """One worker's share of a sweep: three calls at once (as an async agent or a thread pool would)."""
    with ThreadPoolExecutor(3) as pool:
        return list(pool.map(lambda k: client.complete([{"role": "user", "content": str(k)}]), chunk))


@pytest.mark.slow
def test_the_cluster_wide_limit_holds_at_a_mock_server(ray_cluster):
    server = _CountingServer()
    try:
        chunks = [list(range(i, i + 3)) for i in range(0, 24, 3)]
        with RayExecutor() as ex:  # without a limit: 2 workers x 3 threads reach the server together
            assert all(r == ["ok"] * 3 for r in ex.map(partial(_sweep_chunk, _Client(server.url)), chunks))
        unlimited_peak = server.state["peak"]
        server.state.update(peak=0, total=0)
        limit = ConcurrencyLimit(2)
        client = limited(_Client(server.url), limit)
        assert client.name == "mock-hosted"
        with RayExecutor() as ex:
            assert all(r == ["ok"] * 3 for r in ex.map(partial(_sweep_chunk, client), chunks))
        assert server.state["total"] == 24
        assert server.state["peak"] <= 2 < unlimited_peak
        assert limit.stats()["peak"] == 2 and limit.stats()["in_use"] == 0
        limit.kill()
    finally:
        server.close()


# ---------------------------------------------------------------------------------------------- evaluation
_POLICY_MODULE = '''
import numpy as np

class HistoryPolicy:
    """History-dependent: fluids rise with the length of the stay seen so far."""

    name = "history"
    markov = False
    calls = 0

    def action_probabilities(self, histories):
        self.calls += 1
        out = np.full((len(histories), 25), 0.01)
        for i, h in enumerate(histories):
            out[i, 5 * min(4, h.t // 2)] += 0.75
        return out / out.sum(1, keepdims=True)
'''


@pytest.mark.slow
def test_evaluation_on_ray_equals_the_process_pool(ray_cluster, tmp_path, monkeypatch):
    from sepsis_sdk.evaluation.config import (
        CohortConfig,
        EvaluationConfig,
        OPEConfig,
        SafetyConfig,
        TruthConfig,
    )
    from sepsis_sdk.evaluation.runner import run_evaluation

    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "ray_test_policies.py").write_text(_POLICY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))  # spawn workers of the pool import it from here
    import ray_test_policies

    ray.cloudpickle.register_pickle_by_value(ray_test_policies)

    def run(executor, name, policy=None):
        cfg = EvaluationConfig(
            out_dir=str(tmp_path / name), cohort=CohortConfig(n_episodes=200, seed=3), policies=(),
            ope=OPEConfig(estimators=("wis", "wpdis"), n_bootstrap=30), safety=SafetyConfig(n_bootstrap=30),
            truth=TruthConfig(monte_carlo_episodes=40), chunk_patients=8,
        )  # fmt: skip
        rep = run_evaluation(cfg, policies={"history": policy or ray_test_policies.HistoryPolicy()},
                             executor=executor, progress=False)  # fmt: skip
        probs = np.concatenate([np.load(f) for f in sorted((tmp_path / name).rglob("chunk_*.npy"))])
        return rep.results["history"].to_dict(), probs

    pool = LocalProcessExecutor(2)
    try:
        by_pool, probs_pool = run(pool, "pool")
    finally:
        pool.close()
    with RayExecutor() as ex:
        by_ray, probs_ray = run(ex, "ray")
        assert ex.stats["tasks"] == len(list((tmp_path / "ray").rglob("chunk_*.npy"))) > 1
    np.testing.assert_array_equal(probs_ray, probs_pool)
    for d in (by_pool, by_ray):
        d.pop("seconds", None)
    assert by_ray == by_pool
    # a Ray run killed mid-policy resumes locally from the same files: only the missing chunks are redone
    chunks = sorted((tmp_path / "ray").rglob("chunk_*.npy"))
    (tmp_path / "ray" / "policies" / "history.json").unlink()
    for f in chunks[1::2]:
        f.unlink()
    fresh, resumed = ray_test_policies.HistoryPolicy(), ray_test_policies.HistoryPolicy()
    run(SerialExecutor(), "serial", fresh)  # counts every chunk's call plus the Monte-Carlo truth's
    by_resumed, probs_resumed = run(SerialExecutor(), "ray", resumed)
    assert fresh.calls - resumed.calls == len(chunks) - len(chunks[1::2])  # the kept chunks were not redone
    by_resumed.pop("seconds", None)
    assert by_resumed == by_pool
    np.testing.assert_array_equal(probs_resumed, probs_pool)


# ---------------------------------------------------------------------------------------------- agent sweeps
class _StayPolicy:
    """History-dependent: more fluid the longer the stay, less when the mean blood pressure is high."""

    name = "stay"
    markov = False

    def action_probabilities(self, histories):
        out = np.full((len(histories), 25), 0.02)
        for i, h in enumerate(histories):
            out[i, 5 * min(4, len(h.observations) // 3) + (h.t % 2)] += 1.0
        return out / out.sum(1, keepdims=True)


class _StatePolicy(_StayPolicy):
    """Markov: reads the current observation only (so its value is exact on the 713 states)."""

    name, markov = "state", True

    def action_probabilities(self, histories):
        out = np.full((len(histories), 25), 0.02)
        for i, h in enumerate(histories):
            v = np.nan_to_num(np.asarray(h.observations[-1].values, dtype=float))
            out[i, int(abs(v[:5].sum()) * 7) % 25] += 1.0
        return out / out.sum(1, keepdims=True)


def _make_state_policy():
    return _StatePolicy()


@pytest.mark.slow
def test_distributed_policy_sweeps_equal_the_plain_policy(ray_cluster):
    from sepsis_sdk.scale import DistributedPolicy
    from sepsis_sdk.truth import ICUSepsisTruth

    truth = ICUSepsisTruth()
    with RayExecutor() as ex:  # Monte-Carlo episodes: each step's decisions fan out in chunks
        dp = DistributedPolicy(_StayPolicy(), executor=ex, chunk_size=16)
        assert (dp.name, dp.markov) == ("stay", False)
        mc = truth.simulate(dp, episodes=40, seed=4, max_steps=8)
        assert ex.stats["tasks"] > 10  # many steps, several chunks each
    assert mc.to_dict() == truth.simulate(_StayPolicy(), episodes=40, seed=4, max_steps=8).to_dict()
    # the exact 713-state value, one policy built per actor
    dp = DistributedPolicy(factory=_make_state_policy, name="state", markov=True, n_actors=2, chunk_size=64)
    try:
        assert truth.exact_value(dp) == truth.exact_value(_StatePolicy())
    finally:
        dp.close()


# ---------------------------------------------------------------------------------------------- training
@pytest.mark.slow
def test_world_model_members_fit_in_parallel_to_the_same_model(ray_cluster):
    pytest.importorskip("xgboost")
    from sepsis_sdk.sources import load
    from sepsis_sdk.world_model.xgboost_backend import XGBoostConfig, XGBoostWorldModel

    cohort = load("icu-sepsis", episodes=40, seed=2)
    cfg = XGBoostConfig(n_members=2, n_estimators=1, n_jobs=1)  # 2 x 49 one-tree boosters: seconds
    serial = XGBoostWorldModel.fit(cohort, cfg)
    with RayExecutor() as ex:
        seen = []
        par = XGBoostWorldModel.fit(cohort, cfg, executor=ex, progress=lambda d, t, m: seen.append((d, t)))
        assert ex.stats["tasks"] == 2 and ex.stats["puts"] == 1  # one task per member, the data put once
    assert seen[-1][0] == seen[-1][1]  # progress still reaches the end
    hist = list(cohort.select(cohort.patient_ids[:5].tolist()).histories())
    a, b = serial.predict(hist, 7), par.predict(hist, 7)
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.std, b.std)
    np.testing.assert_array_equal(serial.noise, par.noise)


def test_a_backend_that_trains_members_together_refuses_an_executor(ray_cluster):
    from sepsis_sdk.errors import UserError
    from sepsis_sdk.sources import load
    from sepsis_sdk.training.world_model import train_on_cohort

    with pytest.raises(UserError, match="'neighbour' does not fit its ensemble members separately"):
        train_on_cohort(load("icu-sepsis", episodes=40, seed=1), backend="neighbour", executor=RayExecutor())


def test_cli_evaluate_names_an_unreachable_ray_address(ray_cluster, tmp_path):
    import socket

    from typer.testing import CliRunner

    from sepsis_sdk.cli import app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [
        "evaluate",
        "--episodes",
        "50",
        "--policies",
        "random",
        "--out",
        str(tmp_path / "o"),
        "--no-progress",
    ]
    res = CliRunner().invoke(app, [*args, "--executor", "ray", "--ray-address", f"127.0.0.1:{port}"])
    assert res.exit_code == 2 and f"127.0.0.1:{port}" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(app, [*args, "--executor", "process", "--ray-address", "auto"])
    assert res.exit_code == 2 and "needs executor 'ray'" in res.output
