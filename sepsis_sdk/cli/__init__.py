"""The ``sepsis-sdk`` command line.

Each area contributes a Typer sub-app in its own module (``sepsis_sdk/cli/<area>.py`` exposing ``app``);
they are registered here. CLI modules import heavy libraries inside their commands, never at module level.

One exit-code convention holds for every command (0 ok, 2 bad input or usage, 1 internal error; see
``docs/cli.md``): :class:`~sepsis_sdk.cli._common.RootGroup` applies it around every command, so a command
only raises SDK errors and never prints a traceback unless ``--debug`` asks for one.
"""

from __future__ import annotations

import importlib
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from sepsis_sdk.cli._common import DEBUG_ENV, RootGroup, SDKCommand, SDKGroup

app = typer.Typer(
    name="sepsis-sdk",
    help="World-model-augmented sepsis agents, exact ICU-Sepsis ground truth, and MicroWorldBench grading.",
    no_args_is_help=True,
    add_completion=False,
    epilog="Exit codes: 0 ok, 2 bad input or usage (a bad file, flag or output path), 1 internal error "
    "(--debug shows its traceback). See docs/cli.md.",
    pretty_exceptions_show_locals=False,
    cls=RootGroup,
)


@app.callback()
def _root(
    debug: bool = typer.Option(
        False,
        "--debug",
        envvar=DEBUG_ENV,
        help="Show the full traceback of an internal error (exit code 1) instead of one line.",
    ),
) -> None:
    """Global options (``--debug``); the commands are registered below."""


# (module, command or group name, kind): "group" adds a sub-app, "commands" merges top-level commands.
_AREAS = [
    ("sepsis_sdk.cli.data", "data", "group"),
    ("sepsis_sdk.cli.core", None, "commands"),
    ("sepsis_sdk.cli.world_model", "world-model", "group"),
    ("sepsis_sdk.cli.agent", None, "commands"),
    ("sepsis_sdk.cli.evaluate", None, "commands"),
    ("sepsis_sdk.cli.agent_eval", None, "commands"),
    ("sepsis_sdk.cli.microbench", "microbench", "group"),
    ("sepsis_sdk.cli.train", "train", "group"),
]


def _use_sdk_classes(sub: Any) -> None:
    """Give every command of a sub-app (and its nested groups) the help fixes of SDKCommand/SDKGroup."""
    # typer fills in its own classes as defaults; a module that chose another class keeps it.
    for cmd in sub.registered_commands:
        if cmd.cls in (None, TyperCommand):
            cmd.cls = SDKCommand
    for grp in sub.registered_groups:
        if grp.cls in (None, TyperGroup):
            grp.cls = SDKGroup
        if grp.typer_instance is not None:
            _use_sdk_classes(grp.typer_instance)


def _register() -> None:
    for module, name, kind in _AREAS:
        mod = importlib.import_module(module)
        _use_sdk_classes(mod.app)
        if kind == "group":
            app.add_typer(mod.app, name=name, cls=SDKGroup)
        else:
            for cmd in mod.app.registered_commands:
                app.registered_commands.append(cmd)


_register()


def main() -> None:
    """Entry point of the ``sepsis-sdk`` console script."""
    app()
