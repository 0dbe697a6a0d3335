"""Scale-out benchmarks (issue 14): serial vs process pool vs local Ray, Ray judging throughput, multi-node.

1. ``eval``: the same evaluation run (history-dependent policies over the test patients of a sampled
   ICU-Sepsis cohort) with ``SerialExecutor``, ``LocalProcessExecutor`` and ``RayExecutor`` on a local Ray,
   each with the patient chunks fanned out (``fan_out="chunks"``, one policy after another in the driver)
   or one task per policy (``fan_out="policies"``: built, probabilities and scorers on a worker); wall time
   of the whole run, its ratio to the serial run of the same invocation, and the executor's overhead per
   task (a no-op mapped over as many items); results compared for identity with the serial run.
2. ``judge``: MicroWorldBench grading of synthetic videos against a mock judge with injected latency, on
   Ray with 1..N tasks (videos) in flight and one global limit of C concurrent judge calls; throughput
   against the concurrency-bound ideal ``min(3 * workers, C) / latency`` calls/s (3 dimensions per video
   are asked at once) and against the local async runner.
3. ``nodes``: the same judging on a simulated multi-node cluster (``ray.cluster_utils.Cluster``: one GCS
   and several raylets on this host, what ``ray start --head`` + ``ray start --address`` do on real
   machines); records which node ran each task.

Usage::

    python benchmarks/bench_scale.py --quick            # about 2-4 minutes on a busy 2-core machine
    python benchmarks/bench_scale.py --episodes 10000 --policies 5 --videos 200
    python benchmarks/bench_scale.py --only eval --episodes 6000 --eval-scoring default \\
        --eval-rows serial,ray-chunks,ray-policies       # policy-level vs chunk-only fan-out, ~2 minutes

Results go to ``benchmarks/results/scale.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "scale.json"


class HistoryPolicy:
    """History-dependent (not Markov): a softmax over actions of features averaged over the stay so far.

    The per-history work (a few small numpy operations) stands in for a policy that reads the whole stay.
    """

    markov = False

    def __init__(self, k: int, n_features: int) -> None:
        rng = np.random.default_rng(k)
        self.name = f"history-{k}"
        self.w = rng.normal(size=(n_features, 25))
        self.decay = 0.5 + 0.1 * k

    def action_probabilities(self, histories):
        out = np.empty((len(histories), 25))
        for i, h in enumerate(histories):
            x = np.array([o.values for o in h.observations], dtype=float)
            x = np.nan_to_num(x)
            wts = self.decay ** np.arange(len(x))[::-1]
            z = (wts @ x) / wts.sum() @ self.w
            for _ in range(20):  # a little more work per decision, like a small model would do
                z = np.tanh(z) * 1.01
            p = np.exp(z - z.max())
            out[i] = p / p.sum()
        return out


def _noop(x):
    return x


def _overhead(ex, n: int = 200) -> float:
    t = time.perf_counter()
    list(ex.map(_noop, range(n)))
    return (time.perf_counter() - t) / n * 1e3


def _warm_eval(_):
    # a worker's first task would otherwise pay these imports inside the timed run
    import sepsis_sdk.evaluation.runner
    import sepsis_sdk.evaluation.scorers  # noqa: F401

    time.sleep(0.2)  # hold the slot so every worker gets one
    return os.getpid()


EVAL_ROWS = ("serial", "process", "process-policies", "ray-chunks", "ray-policies")
"""Rows of the evaluation benchmark: executor, and ``-policies`` = one task per policy (``fan_out``)."""


def bench_eval(
    episodes: int, n_policies: int, workers: int, tmp: Path, rows_wanted=EVAL_ROWS, scoring: str = "light"
) -> dict:
    """``scoring``: ``"light"`` (WIS/WPDIS, 50 bootstraps, 50 Monte-Carlo episodes: the probabilities
    dominate) or ``"default"`` (the config's defaults: DR/WIS/WPDIS, 500 bootstraps, 500 episodes: the
    scorers take about 40 % of a policy's time, all of it in the driver when only chunks fan out)."""
    from sepsis_sdk.evaluation.config import (
        EvaluationConfig,
        OPEConfig,
        SafetyConfig,
        TruthConfig,
    )
    from sepsis_sdk.evaluation.executor import LocalProcessExecutor, SerialExecutor
    from sepsis_sdk.evaluation.runner import run_evaluation
    from sepsis_sdk.scale import RayExecutor
    from sepsis_sdk.sources import load

    cohort = load("icu-sepsis", episodes=episodes, seed=0)
    pols = {p.name: p for p in (HistoryPolicy(k, len(cohort.schema)) for k in range(n_policies))}

    def run(ex, name, fan_out):
        light = {"ope": OPEConfig(estimators=("wis", "wpdis"), n_bootstrap=50),
                 "safety": SafetyConfig(n_bootstrap=50), "truth": TruthConfig(monte_carlo_episodes=50)}  # fmt: skip
        cfg = EvaluationConfig(out_dir=str(tmp / name), policies=(), chunk_patients=64,
                               **(light if scoring == "light" else {}))  # fmt: skip
        t = time.perf_counter()
        rep = run_evaluation(cfg, cohort=cohort, policies=pols, executor=ex, progress=False, fan_out=fan_out)
        wall = time.perf_counter() - t
        res = {k: v.to_dict() for k, v in rep.results.items()}
        for d in res.values():
            d.pop("seconds", None)
        probs = [np.load(f) for f in sorted((tmp / name).rglob("chunk_*.npy"))]
        return wall, res, probs, rep

    makers = {
        "serial": (SerialExecutor, "chunks"),
        "process": (lambda: LocalProcessExecutor(workers), "chunks"),
        "process-policies": (lambda: LocalProcessExecutor(workers), "policies"),
        "ray-chunks": (lambda: RayExecutor(num_cpus=workers), "chunks"),  # before policy-level fan-out
        "ray-policies": (lambda: RayExecutor(num_cpus=workers), "policies"),
    }
    wanted = ["serial", *(r for r in rows_wanted if r != "serial")]  # serial: the reference and baseline
    rows, ref, rep = {}, None, None
    for name in wanted:
        make, fan_out = makers[name]
        t0 = time.perf_counter()
        ex = make()
        list(ex.map(_noop, range(4)))  # start: the pool's processes spawned, the Ray cluster up
        start = time.perf_counter() - t0
        try:
            overhead = _overhead(ex)
            if name != "serial":
                list(ex.map(_warm_eval, range(2 * workers)))  # every worker has imported the SDK
            wall, res, probs, rep = run(ex, name, fan_out)
        finally:
            ex.close()
        same = None
        if ref is None:
            ref = (res, probs, wall)
        else:
            same = res == ref[0] and all(np.array_equal(a, b) for a, b in zip(probs, ref[1], strict=True))
        rows[name] = {
            "fan_out": fan_out,
            "start_s": round(start, 2),
            "run_wall_s": round(wall, 2),
            "serial_over_this": round(ref[2] / wall, 2),  # speed-up against serial, same run
            "overhead_ms_per_task": round(overhead, 3),
            "identical_to_serial": same,
            "load_avg_1min_after": round(os.getloadavg()[0], 1),
        }
        print(name, rows[name], flush=True)
    if "ray-chunks" in rows and "ray-policies" in rows:
        rows["ray-policies"]["chunks_over_this"] = round(
            rows["ray-chunks"]["run_wall_s"] / rows["ray-policies"]["run_wall_s"], 2
        )
    n_test = rep.meta["n_test_patients"]
    n_chunks = len(ref[1])
    return {
        "episodes": episodes,
        "test_patients": n_test,
        "policies": n_policies,
        "chunks": n_chunks,
        "workers": workers,
        "scoring": scoring,
        "rows": rows,
    }


def _benchmark(n: int):
    from sepsis_sdk.microbench import Benchmark
    from sepsis_sdk.microbench._data import BenchCriterion, BenchTask

    def crits(dim, k):
        return tuple(
            BenchCriterion(dimension=dim, key=str(j), position=j, text=f"{dim} {j}", sign=1, weight=1.0)
            for j in range(1, k + 1)
        )

    return Benchmark(
        tasks=tuple(
            BenchTask(index=i, task=f"task {i}", requirement="r", category="Cellular-level",
                      scientific=crits("scientific", 3), visual=crits("visual", 2), instruction=crits("instruction", 2))
            for i in range(1, n + 1)
        )
    )  # fmt: skip


def _videos(n: int, d: Path) -> Path:
    from sepsis_sdk.microbench import synthesize_video

    d.mkdir(parents=True, exist_ok=True)
    for i in range(1, n + 1):
        if not (d / f"{i}.mp4").exists():
            synthesize_video(d / f"{i}.mp4", n_frames=12)
    return d


def _warm(_):
    import sepsis_sdk.microbench._distributed  # noqa: F401

    time.sleep(0.3)  # hold the slot so every worker of the window is started
    return os.getpid()


def bench_judge(n_videos: int, latency: float, limit: int, workers: list[int], tmp: Path) -> dict:
    import ray

    from sepsis_sdk.microbench import RecordingJudge, run_benchmark
    from sepsis_sdk.microbench._distributed import run_benchmark_ray
    from sepsis_sdk.scale import ConcurrencyLimit, RayExecutor

    bench, videos = _benchmark(n_videos), _videos(n_videos, tmp / "videos")
    calls = 3 * n_videos
    rows = []
    t = time.perf_counter()
    rep = run_benchmark(bench, videos, RecordingJudge(name="mock", delay_s=latency), model="m",
                        out=tmp / "local.jsonl", concurrency=limit, fsync=False)  # fmt: skip
    local = {"calls": rep.written, "wall_s": round(time.perf_counter() - t, 2)}
    local["calls_per_s"] = round(rep.written / local["wall_s"], 1)
    print("local async", local, flush=True)
    ray.init(num_cpus=max(workers), include_dashboard=False, log_to_driver=False)
    try:
        for w in workers:
            lim = ConcurrencyLimit(limit)
            judge = RecordingJudge(name="mock", delay_s=latency)
            ex = RayExecutor(max_in_flight=w)
            list(ex.map(_warm, range(2 * w)))  # worker processes started and imports done before timing
            out = tmp / f"ray-{w}.jsonl"
            t = time.perf_counter()
            rep = run_benchmark_ray(
                bench, videos, judge, model="m", out=out, executor=ex, limit=lim, fsync=False
            )
            wall = time.perf_counter() - t
            st = lim.stats()
            lim.kill()
            keys = [(r["task"], r["dimension"]) for r in map(json.loads, out.read_text().splitlines())]
            ideal = min(3 * w, limit) / latency
            row = {
                "workers": w,
                "calls": rep.written,
                "wall_s": round(wall, 2),
                "calls_per_s": round(rep.written / wall, 1),
                "ideal_calls_per_s": round(ideal, 1),
                "share_of_ideal": round(rep.written / wall / ideal, 2),
                "peak_concurrent_calls": st["peak"],
                "lines": len(keys),
                "duplicate_lines": len(keys) - len(set(keys)),
                "missing_lines": calls - len(set(keys)),
            }
            rows.append(row)
            print(row, flush=True)
    finally:
        ray.shutdown()
    return {"videos": n_videos, "latency_s": latency, "limit": limit, "local_async": local, "ray": rows}


def bench_nodes(n_nodes: int, n_videos: int, latency: float, limit: int, tmp: Path) -> dict:
    import ray
    from ray.cluster_utils import Cluster

    from sepsis_sdk.microbench import RecordingJudge
    from sepsis_sdk.microbench._distributed import run_benchmark_ray
    from sepsis_sdk.scale import ConcurrencyLimit, RayExecutor

    bench, videos = _benchmark(n_videos), _videos(n_videos, tmp / "videos")
    t = time.perf_counter()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    for _ in range(n_nodes - 1):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    start = time.perf_counter() - t
    try:
        ex = RayExecutor(cluster.address)  # joins it, as `--ray-address host:port` would
        ex.connect()
        list(ex.map(_warm, range(2 * n_nodes)))
        nodes = [n["NodeID"][:8] for n in ray.nodes() if n["Alive"]]
        lim = ConcurrencyLimit(limit)
        t = time.perf_counter()
        rep = run_benchmark_ray(bench, videos, RecordingJudge(name="mock", delay_s=latency), model="m",
                                out=tmp / "nodes.jsonl", executor=ex, limit=lim, fsync=False)  # fmt: skip
        wall = time.perf_counter() - t
        placed = list(ex.map(_node_id, range(4 * n_nodes)))
        st = lim.stats()
        ex.close()
    finally:
        ray.shutdown()
        cluster.shutdown()
    ideal = min(3 * n_nodes, limit) / latency
    return {
        "nodes": n_nodes,
        "node_ids": nodes,
        "cluster_start_s": round(start, 2),
        "videos": n_videos,
        "calls": rep.written,
        "wall_s": round(wall, 2),
        "calls_per_s": round(rep.written / wall, 1),
        "ideal_calls_per_s": round(ideal, 1),
        "peak_concurrent_calls": st["peak"],
        "tasks_per_node": {n: placed.count(n) for n in sorted(set(placed))},
    }


def _node_id(_):
    import ray

    time.sleep(0.2)  # long enough that every node gets some
    return ray.get_runtime_context().get_node_id()[:8]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    ap.add_argument("--episodes", type=int, default=10000, help="ICU-Sepsis episodes (test part: 20 %%)")
    ap.add_argument("--policies", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--videos", type=int, default=200)
    ap.add_argument("--latency", type=float, default=0.1, help="mock judge latency per call (s)")
    ap.add_argument("--limit", type=int, default=8, help="global cap on concurrent judge calls")
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--only", choices=["eval", "judge", "nodes"], action="append")
    ap.add_argument("--eval-rows", default=",".join(EVAL_ROWS), help=f"comma-separated, of {EVAL_ROWS}")
    ap.add_argument("--eval-scoring", choices=["light", "default"], default="light")
    args = ap.parse_args()
    if args.quick:
        args.episodes, args.videos = min(args.episodes, 5000), min(args.videos, 200)
    only = set(args.only or ["eval", "judge", "nodes"])
    out: dict = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    out["machine"] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }
    import ray

    out["machine"]["ray"] = ray.__version__
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if "eval" in only:
            rows = tuple(r for r in args.eval_rows.split(",") if r)
            out["eval"] = bench_eval(
                args.episodes, args.policies, args.workers, tmp / "eval", rows, args.eval_scoring
            )
        if "judge" in only:
            out["judge"] = bench_judge(args.videos, args.latency, args.limit, [1, 2, 4, 8], tmp / "judge")
        if "nodes" in only:
            out["nodes"] = bench_nodes(
                args.nodes, min(args.videos, 120), args.latency, args.limit, tmp / "judge"
            )
    command = "python benchmarks/bench_scale.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" if not isinstance(v, bool) else (f"--{k}" if v else "")
        for k, v in vars(args).items()
        if k != "only" and v not in (None, False)
    )
    command += "".join(f" --only {o}" for o in args.only or [])
    for sec in only:  # each section says how it was made (sections may come from separate runs)
        out[sec]["command"] = command
        out[sec]["load_avg_1min_at_end"] = round(os.getloadavg()[0], 1)
        out[sec]["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    out.pop("command", None)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
