"""The generation hook: plug a text-to-video model or API in and produce the folder ``run`` grades."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from sepsis_sdk.errors import UserError
from sepsis_sdk.microbench._data import BenchTask


@runtime_checkable
class VideoGenerator(Protocol):
    """Anything that turns a prompt into a video file.

    Attributes:
        name: the model name (used as the video-set name when grading).
        suffix: container suffix of the files it writes, e.g. ``".mp4"``.

    Example:
        >>> class MyAPI:
        ...     name, suffix = "my-t2v", ".mp4"
        ...     def generate(self, prompt, out_path):
        ...         out_path.write_bytes(call_my_api(prompt))   # doctest: +SKIP
        ...         return out_path
    """

    name: str
    suffix: str

    def generate(self, prompt: str, out_path: Path) -> Path:
        """Write a video for ``prompt`` to ``out_path`` and return the path."""
        ...


@dataclass
class GenerationReport:
    """What :func:`generate_videos` did: task indices created, skipped (already there) and failed."""

    out_dir: Path
    created: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)


def generate_videos(
    generator: VideoGenerator,
    tasks: Iterable[BenchTask],
    out_dir: str | Path,
    *,
    prompt: Callable[[BenchTask], str] | None = None,
    overwrite: bool = False,
    on_video: Callable[[int, Path | None], None] | None = None,
) -> GenerationReport:
    """Make one video per task, named ``<index><suffix>`` as ``microbench run`` expects.

    Resumable: a task whose video exists is skipped. The generator writes to a temporary name that is
    renamed when it returns, so an interrupted generation never leaves a file that looks finished.
    A generator error is recorded for that task and the others go on.

    Args:
        generator: the :class:`VideoGenerator`.
        tasks: the tasks (e.g. a :class:`~sepsis_sdk.microbench.Benchmark` or a slice of it).
        out_dir: the videos folder.
        prompt: task -> prompt (default :attr:`BenchTask.prompt`: task then detailed requirements).
        overwrite: regenerate existing videos.
        on_video: called with (index, path or ``None`` on failure) after each task.

    Returns:
        A :class:`GenerationReport`.
    """
    suffix = getattr(generator, "suffix", ".mp4")
    if not suffix.startswith("."):
        raise UserError(f"generator suffix must start with '.', got {suffix!r}")
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    make_prompt = prompt or (lambda t: t.prompt)
    rep = GenerationReport(out_dir=folder)
    for t in tasks:
        final = folder / f"{t.index}{suffix}"
        if final.exists() and final.stat().st_size > 0 and not overwrite:
            rep.skipped.append(t.index)
            continue
        tmp = folder / f".{t.index}.part{suffix}"  # keep the suffix: encoders pick the container from it
        try:
            written = Path(generator.generate(make_prompt(t), tmp))
            if not written.is_file() or written.stat().st_size == 0:
                raise UserError(f"generator {generator.name!r} wrote no file for task {t.index}")
            os.replace(written, final)
        except Exception as exc:
            tmp.unlink(missing_ok=True)
            rep.failed[t.index] = f"{type(exc).__name__}: {exc}"
            if on_video is not None:
                on_video(t.index, None)
            continue
        rep.created.append(t.index)
        if on_video is not None:
            on_video(t.index, final)
    return rep
