"""The ``sepsis-sdk`` command line.

Each area contributes a Typer sub-app in its own module (``sepsis_sdk/cli/<area>.py`` exposing ``app``);
they are registered here. CLI modules import heavy libraries inside their commands, never at module level.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="sepsis-sdk",
    help="World-model-augmented sepsis agents, exact ICU-Sepsis ground truth, and MicroWorldBench grading.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

# (module, command or group name, kind): "group" adds a sub-app, "commands" merges top-level commands.
_AREAS = [
    ("sepsis_sdk.cli.data", "data", "group"),
    ("sepsis_sdk.cli.core", None, "commands"),
    ("sepsis_sdk.cli.world_model", "world-model", "group"),
    ("sepsis_sdk.cli.agent", None, "commands"),
    ("sepsis_sdk.cli.evaluate", None, "commands"),
    ("sepsis_sdk.cli.microbench", "microbench", "group"),
    ("sepsis_sdk.cli.train", "train", "group"),
]


def _register() -> None:
    for module, name, kind in _AREAS:
        mod = importlib.import_module(module)
        if kind == "group":
            app.add_typer(mod.app, name=name)
        else:
            for cmd in mod.app.registered_commands:
                app.registered_commands.append(cmd)


_register()


def main() -> None:
    """Entry point of the ``sepsis-sdk`` console script."""
    app()
