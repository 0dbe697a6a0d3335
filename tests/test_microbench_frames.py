"""Frame sampling with PyAV on videos the tests synthesise (tiny: 64x48, 24 frames)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

av = pytest.importorskip("av")

from PIL import Image  # noqa: E402

from sepsis_sdk.errors import UserError, VideoError  # noqa: E402
from sepsis_sdk.microbench import find_videos, sample_frames, sample_positions, synthesize_video  # noqa: E402
from sepsis_sdk.microbench._synth import read_index  # noqa: E402


def _has_encoder(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
    except Exception:
        return False
    return True


CASES = [
    (".mp4", "libx264"),
    (".mp4", "mpeg4"),
    (".webm", "libvpx"),
    (".webm", "libvpx-vp9"),
    (".avi", "mjpeg"),
    (".mov", "libx264"),
]


def test_positions_follow_the_published_rule():
    assert sample_positions(24, 8) == [1, 4, 7, 10, 13, 16, 19, 22]
    assert sample_positions(100, 8) == [6, 18, 31, 43, 56, 68, 81, 93]  # int((i + 0.5) * 12.5)
    assert sample_positions(9, 1) == [4]  # N // 2, as upstream
    assert sample_positions(8, 8) == list(range(8))
    with pytest.raises(VideoError, match="fewer than the 8"):
        sample_positions(7, 8)
    with pytest.raises(UserError):
        sample_positions(10, 0)


@pytest.mark.parametrize(("suffix", "codec"), CASES)
def test_samples_the_right_frames_in_each_container(tmp_path, suffix, codec):
    if not _has_encoder(codec):
        pytest.skip(f"encoder {codec} not in this FFmpeg build")
    p = synthesize_video(tmp_path / f"v{suffix}", codec=codec)
    s = sample_frames(p, 8)
    assert s.n_frames_total == 24
    assert s.indices == [1, 4, 7, 10, 13, 16, 19, 22]
    assert [read_index(b) for b in s.images] == s.indices  # the frames really are those frames
    assert all(b[:2] == b"\xff\xd8" for b in s.images)  # JPEG
    assert (s.width, s.height, s.source_size) == (64, 48, (64, 48))


def test_resizes_to_max_side_and_keeps_aspect(tmp_path):
    p = synthesize_video(tmp_path / "big.mp4", width=320, height=240, n_frames=16)
    s = sample_frames(p, 4, max_side=160, quality=60)
    assert (s.width, s.height) == (160, 120)
    assert Image.open(io.BytesIO(s.images[0])).size == (160, 120)
    assert [read_index(b) for b in s.images] == [2, 6, 10, 14]
    full = sample_frames(p, 4, max_side=None)
    assert (full.width, full.height) == (320, 240) and full.nbytes > s.nbytes


def test_seeking_ahead_on_long_videos_returns_the_same_frames(tmp_path):
    p = synthesize_video(tmp_path / "long.mp4", n_frames=600, width=96, height=64, gop=30)
    seq = sample_frames(p, 8, seek_gap=None)
    jump = sample_frames(p, 8, seek_gap=20)
    auto = sample_frames(p, 8)  # learns the 30-frame GOP, then seeks over the 75-frame gaps
    assert seq.indices == jump.indices == auto.indices == sample_positions(600, 8)
    for s in (seq, jump, auto):
        assert [read_index(b) for b in s.images] == s.indices
    assert seq.meta["seeks"] == 0 and seq.meta["decoded"] >= 562
    assert jump.meta["seeks"] == 8 and auto.meta["seeks"] >= 6
    assert auto.meta["decoded"] < seq.meta["decoded"] / 2
    short = sample_frames(synthesize_video(tmp_path / "short.mp4", n_frames=48, gop=12), 8)
    assert short.meta["seeks"] == 0  # gaps of 6 frames: never worth a seek


def test_webm_without_frame_count_in_header_is_counted(tmp_path):
    if not _has_encoder("libvpx"):
        pytest.skip("no libvpx")
    p = synthesize_video(tmp_path / "v.webm", n_frames=20)
    with av.open(str(p)) as c:
        header = c.streams.video[0].frames
    s = sample_frames(p, 5)
    assert s.n_frames_total == 20 and s.indices == [2, 6, 10, 14, 18]
    assert header in (0, 20)  # whichever the muxer wrote, the count is right


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_bytes(b"\x00\x01garbage" * 100), "cannot decode"),
        (lambda p: None, "no such video file"),
    ],
)
def test_broken_files_raise_video_error_naming_the_file(tmp_path, make, message):
    p = tmp_path / "7.mp4"
    make(p)
    with pytest.raises(VideoError, match=message) as exc:
        sample_frames(p)
    assert str(p) in str(exc.value)


def test_truncated_and_too_short_videos(tmp_path):
    good = synthesize_video(tmp_path / "good.mp4", n_frames=24)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    with pytest.raises(VideoError, match=str(cut)):
        sample_frames(cut)
    short = synthesize_video(tmp_path / "short.mp4", n_frames=5)
    with pytest.raises(VideoError, match="5 frames, fewer than the 8"):
        sample_frames(short, short="reject")
    assert sample_frames(short, 5).indices == [0, 1, 2, 3, 4]


def test_audio_only_file_has_no_video_stream(tmp_path):
    import numpy as np

    p = tmp_path / "a.mp4"
    with av.open(str(p), "w") as out:
        s = out.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono"
        )
        frame.sample_rate = 8000
        for pkt in s.encode(frame):
            out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)
    with pytest.raises(VideoError, match="no video stream"):
        sample_frames(p)


def test_find_videos_by_task_index(tmp_path):
    for name in ("1.mp4", "12.webm", "3.AVI", "notes.txt", "x.mp4", ".5.part.mp4"):
        (tmp_path / name).write_bytes(b"x")
    found = find_videos(tmp_path)
    assert {k: v.name for k, v in found.items()} == {1: "1.mp4", 3: "3.AVI", 12: "12.webm"}
    (tmp_path / "1.mov").write_bytes(b"x")
    with pytest.raises(UserError, match="two videos for task 1"):
        find_videos(tmp_path)
    with pytest.raises(UserError, match="not found"):
        find_videos(Path(tmp_path / "missing"))


@pytest.mark.parametrize(
    ("suffix", "codec", "gop"),
    [(".avi", "mjpeg", None), (".webm", "libvpx-vp9", 12), (".mkv", "libx264", 12)],
)
def test_seek_ahead_finds_the_exact_frames_in_other_containers(tmp_path, suffix, codec, gop):
    if not _has_encoder(codec):
        pytest.skip(f"encoder {codec} not in this FFmpeg build")
    p = synthesize_video(tmp_path / f"long{suffix}", n_frames=240, codec=codec, gop=gop)
    s = sample_frames(p, 8)  # gaps of 30 frames, GOP 12 (1 for mjpeg): worth seeking
    assert s.indices == sample_positions(240, 8)
    assert [read_index(b) for b in s.images] == s.indices
    assert s.meta["seeks"] >= 5 and s.meta["decoded"] < 226
