"""The `turnq` command line: thin Typer commands over the Python API.

Each command parses its options, calls one `Queue` method and hands the result
to `turnq.render` (people) or `turnq.cli.output` (`--json`).

Commands are registered lazily, for start-up time: `turnq CMD` imports only CMD's
module (see `COMMANDS`); `turnq --help`, completion, an unknown command, and
`from turnq.cli import app` (tests, embedding) import them all.
"""

from __future__ import annotations

import os
import sys
from importlib import import_module
from typing import Any

#: Every command module, in the order of `turnq --help`: put work in, take it out, look, …
#: A new command module goes here AND its commands in COMMANDS below.
MODULES: tuple[str, ...] = (
    "claim_cmds", "work_cmd", "enqueue_cmds", "inspect_cmd",
    "fixture_cmds", "check_cmds",  # fixtures and checks: import, export, expect, diff, schema
    "store_cmds",  # stores: migrate
    "config_cmds",  # stores: config
    "debug_cmds",  # debugging: explain, log, watch, doctor
)

#: Command name -> the module that registers it. A command missing here still works
#: (its name is unknown, so every module is imported); it only starts slower.
COMMANDS: dict[str, str] = {
    **dict.fromkeys(("claim", "complete", "renew", "abandon", "cancel", "vacuum"), "claim_cmds"),
    "work": "work_cmd",
    **dict.fromkeys(("enqueue", "wake", "reset-session", "refresh-tools"), "enqueue_cmds"),
    "inspect": "inspect_cmd",
    **dict.fromkeys(("import", "export"), "fixture_cmds"),
    **dict.fromkeys(("expect", "diff", "schema"), "check_cmds"),
    "migrate": "store_cmds",
    "config": "config_cmds",
    **dict.fromkeys(("explain", "log", "watch", "doctor"), "debug_cmds"),
}


def load_commands(module: str | None = None) -> None:
    """Register one command module's commands (None: every module's)."""
    for name in (module,) if module is not None else MODULES:
        import_module(f".{name}", __name__)


def command_module(args: list[str]) -> str | None:
    """The one module `turnq ARGS` needs, or None when it needs them all (help, completion,
    an option before the command, an unknown command)."""
    if any(key.startswith("_TURNQ_COMPLETE") for key in os.environ):
        return None
    for arg in args:
        if arg.startswith("-"):  # `turnq --help …`: the group itself runs
            return None
        return COMMANDS.get(arg)
    return None


def main() -> None:
    args = sys.argv[1:]
    if args in (["--version"], ["-V"]):  # answered before any command module is imported
        from .app import exit_on_broken_pipe, version_line

        exit_on_broken_pipe(lambda: sys.stdout.write(version_line() + "\n"))
        return
    module = command_module(args)
    load_commands(module)
    from .app import app

    if module is None:
        app()
        return
    # Typer builds a Click command (and a pydantic adapter per option) for every registered
    # command on each run: build the group with only the one that runs.
    from typer.main import get_group

    registered = app.registered_commands
    app.registered_commands = [info for info in registered if _command_name(info) == args[0]] or registered
    try:
        group = get_group(app)
    finally:
        app.registered_commands = registered
    group()


def _command_name(info: Any) -> str:
    return info.name or info.callback.__name__.replace("_", "-")


def __getattr__(name: str) -> Any:
    if name == "app":  # the Typer app with every command registered
        load_commands()
        from .app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Importing a command module imports `.app`, which binds the submodule as this package's
# `app` attribute; drop it so that `turnq.cli.app` stays the Typer app (via __getattr__).
# (import_module, not `from . import app`: that would ask __getattr__ for `app`.)
_app_module = import_module(".app", __name__)
globals().pop("app", None)
