"""Frame sampling: our PyAV sampler vs OpenCV seek-per-frame (upstream's approach), same videos, one run.

Synthesises videos with PyAV (H.264 in mp4 at a typical generated-video size and length, plus a longer
one), then times, per video, 8 frames by the published rule, resized to a max side of 768 and JPEG-encoded
at quality 85 by:

* ``pyav``: ``sepsis_sdk.microbench.sample_frames`` (one sequential decode, seeking ahead on long gaps);
* ``pyav-seq``: the same with seeking disabled (``seek_gap=None``);
* ``opencv-seek``: ``cv2.VideoCapture`` with ``CAP_PROP_POS_FRAMES`` set before each frame (upstream).

It also checks that each method returned the right frames (the synthetic frames carry their number).

Run: ``.venv/bin/python benchmarks/bench_microbench_frames.py [--repeats 3] [--videos 4]``
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path


def opencv_seek_per_frame(
    path: Path, n: int = 8, max_side: int = 768, quality: int = 85
) -> tuple[list[bytes], list[int]]:
    import cv2

    from sepsis_sdk.microbench import sample_positions

    cap = cv2.VideoCapture(str(path))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    positions = sample_positions(total, n)
    out = []
    for pos in positions:
        cap.set(cv2.CAP_PROP_POS_FRAMES, pos)
        ok, frame = cap.read()
        if not ok:
            continue
        h, w = frame.shape[:2]
        if max(h, w) > max_side:
            s = max_side / max(h, w)
            frame = cv2.resize(
                frame, (round(w * s / 2) * 2, round(h * s / 2) * 2), interpolation=cv2.INTER_AREA
            )
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
        out.append(buf.tobytes())
    cap.release()
    return out, positions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--videos", type=int, default=2, help="videos per kind")
    args = ap.parse_args()

    from sepsis_sdk.microbench import sample_frames, synthesize_video
    from sepsis_sdk.microbench._synth import read_index

    kinds = {
        # a typical text-to-video clip: 5 s at 24 fps, 832x480, keyframe every 2 s
        "5s 832x480 gop48": dict(n_frames=121, width=832, height=480, fps=24, gop=48, texture=True),
        # a longer clip: 20 s at 24 fps, 640x360, keyframe every 2 s
        "20s 640x360 gop48": dict(n_frames=480, width=640, height=360, fps=24, gop=48, texture=True),
    }
    with tempfile.TemporaryDirectory() as tmp:
        print(
            f"machine: {platform.machine()} {platform.processor() or ''} python {platform.python_version()}"
        )
        t0 = time.perf_counter()
        videos = {
            k: [synthesize_video(Path(tmp) / f"{k.split()[0]}_{i}.mp4", **spec) for i in range(args.videos)]
            for k, spec in kinds.items()
        }
        print(f"synthesised {sum(map(len, videos.values()))} videos in {time.perf_counter() - t0:.1f} s")
        methods = {
            "pyav": lambda p: sample_frames(p, 8, max_side=768, quality=85),
            "pyav-seq": lambda p: sample_frames(p, 8, max_side=768, quality=85, seek_gap=None),
            "opencv-seek": lambda p: opencv_seek_per_frame(p),
        }
        print(
            "\n| videos | method | wall ms/video (min) | wall ms/video (median) | CPU ms/video (min) | right frames "
            "| speed-up vs opencv-seek (wall min) | (CPU min) |"
        )
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for kind, paths in videos.items():
            runs: dict[str, list[float]] = {m: [] for m in methods}
            cpu: dict[str, list[float]] = {m: [] for m in methods}
            right: dict[str, str] = {}
            for name, fn in methods.items():  # correctness pass (also warms caches)
                ok = total = 0
                for p in paths:
                    res = fn(p)
                    images, wanted = res if name == "opencv-seek" else (res.images, res.indices)
                    ok += sum(read_index(b) == w for b, w in zip(images, wanted, strict=False))
                    total += len(wanted)
                right[name] = f"{ok}/{total}"
            # interleave methods within each repeat so machine load hits them alike
            for _ in range(args.repeats):
                for name, fn in methods.items():
                    t, c = time.perf_counter(), time.process_time()
                    for p in paths:
                        fn(p)
                    runs[name].append((time.perf_counter() - t) / len(paths))
                    cpu[name].append((time.process_time() - c) / len(paths))
            base, base_cpu = min(runs["opencv-seek"]), min(cpu["opencv-seek"])
            for name in methods:
                lo, med, c = min(runs[name]), statistics.median(runs[name]), min(cpu[name])
                print(
                    f"| {kind} | {name} | {1000 * lo:.1f} | {1000 * med:.1f} | {1000 * c:.1f} | {right[name]} "
                    f"| {base / lo:.2f}x | {base_cpu / c:.2f}x |"
                )


if __name__ == "__main__":
    main()
