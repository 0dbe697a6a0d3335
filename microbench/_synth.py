"""Synthesise small videos with PyAV (for tests, benchmarks and the example generator).

Frame ``i`` of ``n`` is a flat grey of level :func:`frame_level` ``(i, n)`` and its frame number written as
12 black/white blocks in the top band (:func:`read_index`), so a test can tell exactly which frame a decoded
image is.
"""

from __future__ import annotations

from pathlib import Path

from sepsis_sdk._lazy import require
from sepsis_sdk.errors import UserError

_BITS = 12

# container suffix -> default codec
DEFAULT_CODECS: dict[str, str] = {
    ".mp4": "libx264",
    ".mov": "libx264",
    ".mkv": "libx264",
    ".webm": "libvpx",
    ".avi": "mjpeg",
    ".flv": "flv",
    ".wmv": "wmv2",
}


def frame_level(i: int, n: int) -> int:
    """Grey level (16..235) of frame ``i`` in a synthesised video of ``n`` frames."""
    return 16 + round(219 * i / max(1, n - 1))


def synthesize_video(
    path: str | Path,
    *,
    n_frames: int = 24,
    width: int = 64,
    height: int = 48,
    fps: int = 24,
    codec: str | None = None,
    gop: int | None = None,
    bar: bool = True,
    texture: bool = False,
    seed: int = 0,
) -> Path:
    """Write a small test video.

    Args:
        path: output file; the suffix picks the container (mp4, mov, webm, avi, mkv).
        n_frames: frames to write.
        width: frame width (even).
        height: frame height (even).
        fps: frame rate.
        codec: FFmpeg encoder (default by suffix: libx264, libvpx for webm, mjpeg for avi).
        gop: keyframe interval (encoder default when ``None``).
        bar: write the frame number as blocks in the top band (makes inter-frame prediction work too).
        texture: add a drifting pattern and fine noise below the band, so decoding costs about what it
            costs on real footage (benchmarks); flat frames otherwise.
        seed: seed of the noise.

    Returns:
        The path written.
    """
    av = require("av", "video", "video synthesis")
    np = require("numpy", "video")
    p = Path(path)
    codec = codec or DEFAULT_CODECS.get(p.suffix.lower())
    if codec is None:
        raise UserError(f"{p}: no default codec for suffix {p.suffix!r}; pass codec=")
    p.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(p), mode="w") as out:
        s = out.add_stream(codec, rate=fps)
        s.width, s.height = width, height
        s.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        if gop is not None:
            s.codec_context.gop_size = gop
        if codec in ("libx264",):
            s.options = {"crf": "18", "preset": "ultrafast"}
        elif codec in ("mpeg4",):
            s.codec_context.bit_rate = 2_000_000
            s.options = {"qscale": "2"}
        elif codec in ("libvpx", "libvpx-vp9"):
            s.options = {"crf": "10", "b": "1M", "deadline": "realtime", "cpu-used": "8"}
        rng = np.random.default_rng(seed)
        if texture:
            yy, xx = np.mgrid[0:height, 0:width]
        for i in range(n_frames):
            img = np.full((height, width, 3), frame_level(i, n_frames), dtype=np.uint8)
            if texture:
                wave = 40 * np.sin((xx + 3 * i) / 9.0) * np.cos((yy - 2 * i) / 13.0)
                noise = rng.normal(0, 6, size=(height, width))
                band = np.clip(img[..., 0] + wave + noise, 0, 255).astype(np.uint8)
                img = np.stack([band, np.roll(band, i, axis=1), band[::-1]], axis=-1)
            if bar:
                bw = width // _BITS
                for b in range(_BITS):
                    img[: height // 4, b * bw : (b + 1) * bw] = 255 if (i >> b) & 1 else 0
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for pkt in s.encode(frame):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)
    return p


def mean_level(jpeg: bytes) -> float:
    """Mean grey level of the lower part of a JPEG frame (below the index band)."""
    import io

    image_mod = require("PIL.Image", "video")
    np = require("numpy", "video")
    im = image_mod.open(io.BytesIO(jpeg)).convert("L")
    a = np.asarray(im)
    return float(a[a.shape[0] // 3 :].mean())


def read_index(jpeg: bytes) -> int:
    """The frame number a synthesised frame carries in its top band (see :func:`synthesize_video`)."""
    import io

    image_mod = require("PIL.Image", "video")
    np = require("numpy", "video")
    a = np.asarray(image_mod.open(io.BytesIO(jpeg)).convert("L"), dtype=float)
    h, w = a.shape
    bw = w // _BITS
    band = a[: max(1, h // 4 - 1)]
    value = 0
    for b in range(_BITS):
        block = band[
            :, int(b * bw + bw * 0.25) : max(int(b * bw + bw * 0.25) + 1, int((b + 1) * bw - bw * 0.25))
        ]
        if block.mean() > 127:
            value |= 1 << b
    return value
