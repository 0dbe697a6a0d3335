"""Evenly spaced frames from a video, decoded with PyAV, resized and JPEG-encoded for a judge.

The published rule takes ``n`` frames at indices ``floor((i + 0.5) * N / n)`` for ``i = 0..n-1`` where ``N``
is the number of frames (for ``n = 1`` that is ``N // 2``, as upstream).

Speed: upstream seeks once per sampled frame with OpenCV (``CAP_PROP_POS_FRAMES``), and every seek decodes
again from the previous keyframe. We decode the stream **once, sequentially**, with FFmpeg's frame threads,
convert only the frames we keep (swscale resize straight to RGB), and stop after the last wanted frame.
For long videos where the wanted frames lie far apart, jumping ahead is cheaper than decoding everything:
we learn the keyframe interval (GOP) from the keyframes met while decoding, and when the next wanted frame
is clearly more than one GOP ahead we seek to the keyframe before it (PyAV ``container.seek``) and carry
on decoding from there, recovering frame numbers from timestamps. If a seek lands after the wanted frame
(inexact timestamps) we fall back to one sequential decode, so the frames are always the rule's frames.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, Union

from sepsis_sdk._lazy import require
from sepsis_sdk.errors import UserError, VideoError

VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".webm", ".mov", ".avi", ".mkv", ".m4v", ".flv", ".wmv")
"""File suffixes :func:`find_videos` picks up."""


FRAME_PRESETS: dict[str, dict[str, Any]] = {
    "project": {"max_side": 768, "quality": 85},
    "reference": {"max_side": None, "quality": 100},
}
"""Frame settings by name: ``"project"`` (the default: longest side 768 px, JPEG q85) and ``"reference"``
(what the MicroVerse evaluator sends: full resolution, q100; about 8x the bytes on 720p clips)."""


@dataclass
class FrameSample:
    """Frames taken from one video.

    Attributes:
        path: the video file.
        images: JPEG bytes, one per sampled frame, in time order.
        indices: frame numbers (0-based) of the sampled frames.
        n_frames_total: frames in the video (``N`` of the rule).
        width: width of the encoded images.
        height: height of the encoded images.
        source_size: the video's own ``(width, height)``.
        meta: decoding statistics (``decoded`` frames, ``seeks``).
        repeated: the video has fewer frames than were sampled, so some frames are shown more than once
            (as the reference evaluator does); :attr:`indices` says which.
    """

    path: str
    images: list[bytes]
    indices: list[int]
    n_frames_total: int
    width: int
    height: int
    source_size: tuple[int, int] = (0, 0)
    meta: dict[str, Any] = field(default_factory=dict)
    repeated: bool = False

    @property
    def nbytes(self) -> int:
        return sum(len(b) for b in self.images)


def sample_positions(n_total: int, n: int, *, repeat: bool = False) -> list[int]:
    """Frame indices of the published rule: ``floor((i + 0.5) * n_total / n)``.

    With ``repeat`` a video shorter than ``n`` frames gets the same rule, so frames repeat
    (``n_total=4, n=8`` -> ``[0, 0, 1, 1, 2, 2, 3, 3]``), as the reference evaluator's positions do.

    Raises:
        UserError: ``n`` < 1.
        VideoError: the video has no frames, or fewer than ``n`` and ``repeat`` is off.
    """
    if n < 1:
        raise UserError(f"number of frames to sample must be >= 1, got {n}")
    if n_total < 1:
        raise VideoError("video has no frames")
    if n_total < n and not repeat:
        raise VideoError(f"video has {n_total} frames, fewer than the {n} to sample")
    return [int((2 * i + 1) * n_total // (2 * n)) for i in range(n)]


def _target_size(w: int, h: int, max_side: int | None) -> tuple[int, int]:
    if not max_side or max(w, h) <= max_side:
        return w, h
    scale = max_side / max(w, h)
    # even sizes keep chroma-subsampled encoders and swscale happy
    return max(2, round(w * scale / 2) * 2), max(2, round(h * scale / 2) * 2)


def encode_jpeg(rgb_image: Any, quality: int) -> bytes:
    """JPEG bytes of a PIL image."""
    buf = io.BytesIO()
    rgb_image.save(buf, format="JPEG", quality=int(quality), optimize=False)
    return buf.getvalue()


def shrink_jpeg(data: bytes, *, scale: float = 0.5, quality: int = 70) -> bytes:
    """A smaller JPEG of ``data`` (used when a judge says the payload is too large)."""
    image_mod = require("PIL.Image", "video", "frame encoding")
    im = image_mod.open(io.BytesIO(data)).convert("RGB")
    w, h = im.size
    im = im.resize((max(1, int(w * scale)), max(1, int(h * scale))))
    return encode_jpeg(im, quality)


def _count_frames(path: Path) -> int:
    """Video packets in the first video stream (a demux pass, no decoding)."""
    av = require("av", "video", "frame sampling")
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return sum(1 for p in c.demux(s) if p.size > 0)


def sample_frames(
    path: str | Path,
    n: int = 8,
    *,
    max_side: int | None = 768,
    quality: int = 85,
    seek_gap: SeekGap = "auto",
    short: ShortVideos = "repeat",
) -> FrameSample:
    """Sample ``n`` evenly spaced frames of a video as JPEG images.

    Args:
        path: an mp4 / webm / mov / avi (any container FFmpeg reads).
        n: frames to take (the published protocol uses 8).
        max_side: longest side of the encoded images in pixels (``None`` keeps the video's size).
        quality: JPEG quality 1-100 (the reference evaluator sends 100).
        seek_gap: when to jump ahead (to the keyframe before the next wanted frame) instead of decoding
            on: ``"auto"`` (default) when the gap is longer than the keyframe interval seen so far plus 8
            frames; an int: when the gap exceeds that many frames; ``None``: always decode sequentially.
        short: a video with fewer than ``n`` frames: ``"repeat"`` (default, as the reference) samples it
            by the same rule, so frames repeat (``FrameSample.repeated`` is then true); ``"reject"`` raises
            :class:`~sepsis_sdk.errors.VideoError`.

    Returns:
        The :class:`FrameSample`.

    Raises:
        VideoError: the file is missing, empty, corrupt, has no video stream, or (with
            ``short="reject"``) fewer than ``n`` frames. The message names the file.
        UserError: ``quality`` outside 1..100, ``max_side`` < 1 or an unknown ``short``.
    """
    if not 1 <= int(quality) <= 100:
        raise UserError(f"JPEG quality must be in 1..100, got {quality}")
    if max_side is not None and max_side < 1:
        raise UserError(f"max_side must be >= 1 (or None for full resolution), got {max_side}")
    if short not in ("repeat", "reject"):
        raise UserError(f"short must be 'repeat' or 'reject', got {short!r}")
    av = require("av", "video", "frame sampling")
    p = Path(path)
    if not p.is_file():
        raise VideoError(f"{p}: no such video file")
    if p.stat().st_size == 0:
        raise VideoError(f"{p}: empty file (0 bytes)")
    try:
        return _sample(
            av, p, n, max_side=max_side, quality=quality, seek_gap=seek_gap, repeat=short == "repeat"
        )
    except VideoError as exc:
        if str(exc).startswith(str(p)):
            raise
        raise VideoError(f"{p}: {exc}") from exc
    except UserError:
        raise
    except (av.FFmpegError, OSError, ValueError, IndexError, EOFError, RuntimeError) as exc:
        raise VideoError(f"{p}: cannot decode video ({type(exc).__name__}: {exc})") from exc


def _sample(
    av: Any, p: Path, n: int, *, max_side: int | None, quality: int, seek_gap: SeekGap, repeat: bool
) -> FrameSample:
    with av.open(str(p)) as container:
        if not container.streams.video:
            raise VideoError(f"{p}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        n_total = int(stream.frames or 0)
        if n_total <= 0:  # webm/mkv headers often carry no frame count
            n_total = _count_frames(p)
        if n_total <= 0:
            raise VideoError(f"{p}: video stream has no frames")
        wanted = sample_positions(n_total, n, repeat=repeat)
        stats: dict[str, int] = {}
        try:
            got = _decode_wanted(
                container, stream, wanted, max_side=max_side, quality=quality, seek_gap=seek_gap, stats=stats
            )
            missed = False
        except _SeekMissed:
            missed = True
    if missed:  # timestamps did not locate the frame after a seek: decode from the start instead
        with av.open(str(p)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            got = _decode_wanted(
                container, stream, wanted, max_side=max_side, quality=quality, seek_gap=None, stats=stats
            )
    if len(got) < len(wanted):
        # the header over-counted; count the real frames and try once more with the true N
        real = _count_frames(p)
        if real < n_total and (real >= n or (repeat and real >= 1)):
            with av.open(str(p)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                wanted = sample_positions(real, n, repeat=repeat)
                got = _decode_wanted(
                    container, stream, wanted, max_side=max_side, quality=quality, seek_gap=None
                )
            n_total = real
        if len(got) < len(wanted):
            raise VideoError(
                f"{p}: decoded only {len(got)} of the {len(wanted)} wanted frames (video truncated?)"
            )
    images = [g[1] for g in got]
    w, h, sw, sh = got[0][2]
    return FrameSample(
        path=str(p),
        images=images,
        indices=[g[0] for g in got],
        n_frames_total=n_total,
        width=w,
        height=h,
        source_size=(sw, sh),
        meta=stats,
        repeated=n_total < n,
    )


class _SeekMissed(Exception):
    """A seek landed after the wanted frame (inexact index); the caller decodes sequentially instead."""


SeekGap = Union[int, Literal["auto"], None]
ShortVideos = Literal["repeat", "reject"]


def _decode_wanted(
    container: Any,
    stream: Any,
    wanted: Sequence[int],
    *,
    max_side: int | None,
    quality: int,
    seek_gap: SeekGap,
    stats: dict[str, int] | None = None,
) -> list[tuple[int, bytes, tuple[int, int, int, int]]]:
    stats = stats if stats is not None else {}
    stats.setdefault("decoded", 0)
    stats.setdefault("seeks", 0)
    rate = stream.average_rate or stream.guessed_rate
    tb = stream.time_base
    start = stream.start_time or 0
    can_seek = seek_gap is not None and bool(rate) and bool(tb) and float(rate) > 0
    gops: list[int] = []  # distances between consecutive keyframes met while decoding on (the GOP length)
    last_key: int | None = None

    def index_of(frame: Any) -> int | None:
        if frame.pts is None:
            return None
        return round(float((frame.pts - start) * tb * Fraction(rate)))

    def threshold() -> int | None:
        if not can_seek:
            return None
        if seek_gap == "auto":
            # A seek lands on the keyframe before the target and decodes at most one GOP from there;
            # decoding on costs the whole gap. Seek only when the gap is clearly longer than a GOP.
            return max(gops) + 8 if gops else None
        return int(seek_gap)  # type: ignore[arg-type]

    out: list[tuple[int, bytes, tuple[int, int, int, int]]] = []
    todo = list(wanted)
    i = 0  # frame number while decoding sequentially from the start
    exact = True  # False right after a seek, until a frame's timestamp gives the number again
    thr = threshold()
    pending_seek = thr is not None and todo[0] > thr
    while todo:
        if pending_seek:
            ts = int(start + Fraction(todo[0]) / Fraction(rate) / tb)
            container.seek(ts, stream=stream, backward=True, any_frame=False)
            stats["seeks"] += 1
            exact, last_key = False, None
        pending_seek = False
        for frame in container.decode(stream):
            stats["decoded"] += 1
            if not exact:
                k = index_of(frame)
                if k is None or k > todo[0]:
                    raise _SeekMissed
                i, exact = k, True
            if frame.key_frame:
                if last_key is not None and i > last_key:
                    gops.append(i - last_key)
                last_key = i
            if i >= todo[0]:
                idx = todo.pop(0)
                out.append((idx, *_encode(frame, max_side, quality)))
                while todo and todo[0] <= i:  # repeated positions (n close to N)
                    out.append((todo.pop(0), out[-1][1], out[-1][2]))
                if not todo:
                    break
                thr = threshold()
                if thr is not None and todo[0] - i > thr:
                    pending_seek = True
                    break
            i += 1
        else:
            break  # stream ended
    return out


def _encode(frame: Any, max_side: int | None, quality: int) -> tuple[bytes, tuple[int, int, int, int]]:
    # to_ndarray (swscale straight to packed RGB, resizing in the same pass) then Image.fromarray is several
    # times faster than VideoFrame.to_image() or a PIL resize on this path.
    image_mod = require("PIL.Image", "video", "frame encoding")
    sw, sh = frame.width, frame.height
    w, h = _target_size(sw, sh, max_side)
    if (w, h) != (sw, sh):
        rgb = frame.to_ndarray(width=w, height=h, format="rgb24", interpolation="AREA")
    else:
        rgb = frame.to_ndarray(format="rgb24")
    return encode_jpeg(image_mod.fromarray(rgb), quality), (w, h, sw, sh)


def find_videos(folder: str | Path) -> dict[int, Path]:
    """Videos in ``folder`` named by task index (``12.mp4``), as upstream lays them out.

    Files whose stem is not an integer are ignored. Two files for one index (``3.mp4`` and ``3.webm``)
    are an error.

    Raises:
        UserError: the folder does not exist, or an index has two files.
    """
    d = Path(folder)
    if not d.is_dir():
        raise UserError(f"{d}: videos folder not found")
    out: dict[int, Path] = {}
    for f in sorted(d.iterdir()):
        if not f.is_file() or f.suffix.lower() not in VIDEO_SUFFIXES or f.name.startswith("."):
            continue
        try:
            idx = int(f.stem)
        except ValueError:
            continue
        if idx in out:
            raise UserError(f"{d}: two videos for task {idx}: {out[idx].name} and {f.name}")
        out[idx] = f
    return out
