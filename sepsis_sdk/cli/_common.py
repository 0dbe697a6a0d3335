"""Shared helpers of the CLI modules: console, progress bars, error reporting."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sepsis_sdk.errors import SepsisSDKError

console = Console()
err_console = Console(stderr=True)


def progress() -> Progress:
    """A rich progress bar with count and elapsed time (to stderr, so stdout stays clean)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    )


@contextlib.contextmanager
def friendly_errors() -> Iterator[None]:
    """Turn SDK errors into one red line and exit code 2 instead of a traceback."""
    try:
        yield
    except SepsisSDKError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(code=2) from exc
