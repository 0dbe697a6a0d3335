"""Shared helpers of the CLI modules: consoles, progress bars, the exit-code convention, output checks.

Exit codes of every ``sepsis-sdk`` command (the table is in ``docs/cli.md``):

- ``0``: success.
- ``2``: bad input or usage: a wrong flag or value, a file that is not what it should be, an output path
  that cannot be written (read-only, full disk, a file where a folder is needed), a missing extra. Every
  :class:`~sepsis_sdk.errors.SepsisSDKError` (its ``exit_code``), every ``OSError`` and every pydantic
  ``ValidationError`` that reaches the command line ends here, as one line on stderr.
- ``1``: an internal error (a bug, or an exception the SDK did not expect): one short line and the hint
  to rerun with ``--debug`` for the traceback.

:class:`RootGroup` applies the convention once, around every command; :class:`SDKCommand` and
:class:`SDKGroup` fix the help pages. Everything dynamic that the CLI prints goes through
:func:`rich.markup.escape` (:func:`esc`), so bracketed text such as ``[fluid 0, vaso 0]`` or
``sepsis-sdk[local]`` is printed as it is instead of being read as markup.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from typer.core import TyperCommand, TyperGroup

from sepsis_sdk.errors import SepsisSDKError, UserError

console = Console()
err_console = Console(stderr=True)

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
DEBUG_ENV = "SEPSIS_SDK_DEBUG"
"""Environment variable: set to 1 to let internal errors show their full traceback (like ``--debug``)."""

MIN_FREE_BYTES = 1 << 20
""":func:`ensure_writable` refuses an output on a file system with less free space than this (1 MiB)."""


def esc(value: Any) -> str:
    """``str(value)`` with rich markup escaped: print file names, ids and messages through this."""
    return escape(str(value))


def install_hint(extra: str) -> str:
    """The install command for an optional extra, escaped for rich (``[local]`` would vanish otherwise)."""
    return escape(f"pip install 'sepsis-sdk[{extra}]'")


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


# ------------------------------------------------------------------------------------ exit codes


def _is_validation_error(exc: BaseException) -> bool:
    try:
        from pydantic import ValidationError
    except ImportError:  # pragma: no cover - pydantic is a core dependency
        return False
    return isinstance(exc, ValidationError)


def exit_code_for(exc: BaseException) -> int:
    """The exit status a command ends with when ``exc`` reaches the command line.

    2 for SDK errors (their ``exit_code``), file-system errors and pydantic validation errors (bad input);
    1 for anything else (an internal error).
    """
    if isinstance(exc, SepsisSDKError):
        return int(getattr(exc, "exit_code", EXIT_BAD_INPUT))
    if isinstance(exc, OSError) or _is_validation_error(exc):
        return EXIT_BAD_INPUT
    return EXIT_INTERNAL


def describe_error(exc: BaseException) -> str:
    """One plain line (not markup) saying what went wrong, naming the file where one is known."""
    if isinstance(exc, SepsisSDKError):
        return str(exc)
    if isinstance(exc, OSError):
        what = exc.strerror or str(exc) or type(exc).__name__
        where = exc.filename if exc.filename is not None else None
        if where is None and exc.errno == errno.ENOSPC:
            return f"{what} (the disk is full; free some space or write elsewhere)"
        return f"{where}: {what}" if where is not None else what
    if _is_validation_error(exc):
        return f"invalid value: {exc}"
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"internal error: {type(exc).__name__}" + (f": {first}" if first else "")


def report_error(exc: BaseException) -> int:
    """Print ``exc`` as one red line on stderr and return its exit code."""
    code = exit_code_for(exc)
    err_console.print(f"[red]error:[/red] {esc(describe_error(exc))}", soft_wrap=True)
    if code == EXIT_INTERNAL:
        err_console.print(
            "This is a bug or an unexpected condition: rerun with `sepsis-sdk --debug ...` (or "
            f"{DEBUG_ENV}=1) to see the traceback, and report it.",
            markup=False,
        )
    return code


@contextlib.contextmanager
def friendly_errors() -> Iterator[None]:
    """Turn SDK and file-system errors into one red line and exit code 2 instead of a traceback.

    :class:`RootGroup` does the same around every command; this block is for code that must stop at a
    known point (e.g. before a progress bar is drawn).
    """
    try:
        yield
    except (SepsisSDKError, OSError) as exc:
        raise typer.Exit(code=report_error(exc)) from exc


def _debug_requested(ctx: typer.Context) -> bool:
    if ctx.params.get("debug"):
        return True
    return os.environ.get(DEBUG_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


# ------------------------------------------------------------------------------------ help pages


def _hide_flag_types(params: list[Any]) -> None:
    # typer's rich help prints the value type of every option, "<bool>" even for flags that take no
    # value (the plain formatter leaves it out). An empty metavar is typer's own way to set that column.
    for p in params:
        if getattr(p, "is_flag", False) and p.metavar is None:
            p.metavar = ""


class _FlagHelp:
    """Help that leaves out the value type of flags (``--help``, ``--fresh``): one fix for commands and groups."""

    params: list[Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _hide_flag_types(self.params)

    def get_help_option(self, ctx: Any) -> Any:
        opt = super().get_help_option(ctx)  # type: ignore[misc]
        if opt is not None:
            _hide_flag_types([opt])
        return opt


class SDKCommand(_FlagHelp, TyperCommand):
    """A command whose help leaves out the value type of flags (``--help``, ``--fresh``)."""


class SDKGroup(_FlagHelp, TyperGroup):
    """A command group with the same help fixes as :class:`SDKCommand`."""


class RootGroup(SDKGroup):
    """The ``sepsis-sdk`` group: applies the exit-code convention around every command, once."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # typer's own exits and usage errors already carry their code (usage errors: 2)
        except BrokenPipeError:
            # The reader went away (`sepsis-sdk ... | head`): stop quietly, as Python's docs advise.
            devnull = os.open(os.devnull, os.O_WRONLY)
            with contextlib.suppress(OSError, ValueError):
                os.dup2(devnull, 1)
            raise typer.Exit(code=EXIT_INTERNAL) from None
        except Exception as exc:
            if _debug_requested(ctx):
                raise
            raise typer.Exit(code=report_error(exc)) from None


# ------------------------------------------------------------------------------------ output paths


def ensure_writable(path: str | Path, *, directory: bool = False, min_free: int = MIN_FREE_BYTES) -> Path:
    """Check, before any expensive work, that an output can be written; create its folder.

    Args:
        path: the output file (or, with ``directory=True``, the output folder).
        directory: ``path`` is a folder that will hold the outputs (created when missing).
        min_free: refuse a file system with less free space than this many bytes.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        UserError: the path is a folder where a file is needed (or the reverse), a parent is a file, the
            folder is not writable, or the disk is (nearly) full. The message names the path.
    """
    p = Path(path)
    if directory:
        if p.exists() and not p.is_dir():
            raise UserError(f"{p}: exists and is not a directory; give a folder for the outputs")
        folder = p
    else:
        if p.is_dir():
            raise UserError(f"{p}: is a directory; give a file name for the output")
        folder = p.parent if str(p.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(f"{p}: a parent of this path is a file, not a directory") from None
    except NotADirectoryError:
        raise UserError(f"{p}: a parent of this path is a file, not a directory") from None
    except OSError as exc:
        raise UserError(f"{p}: cannot create the folder {folder}: {exc.strerror or exc}") from None
    # Probing is the only reliable test (os.access ignores read-only mounts and ACLs for root).
    try:
        fd, probe = tempfile.mkstemp(prefix=".sepsis-sdk-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"{p}: cannot write in {folder}: {exc.strerror or exc}") from None
    try:
        import shutil

        free = shutil.disk_usage(folder).free
    except OSError:  # pragma: no cover - some file systems do not report usage
        free = None
    if free is not None and free < min_free:
        raise UserError(
            f"{p}: only {free} bytes free on the disk of {folder} (the disk is full); free some space or "
            "write elsewhere"
        )
    return p


__all__ = [
    "DEBUG_ENV",
    "EXIT_BAD_INPUT",
    "EXIT_INTERNAL",
    "EXIT_OK",
    "RootGroup",
    "SDKCommand",
    "SDKGroup",
    "console",
    "describe_error",
    "ensure_writable",
    "err_console",
    "esc",
    "exit_code_for",
    "friendly_errors",
    "install_hint",
    "progress",
    "report_error",
]
