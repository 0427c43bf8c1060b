"""The `turnq` command line: thin Typer commands over the Python API.

Each command parses its options, calls one `Queue` method and hands the result
to `turnq.render` (people) or `turnq.cli.output` (`--json`).
"""

from __future__ import annotations

# Registration order is the order of `turnq --help`: put work in, take it out, look.
from . import claim_cmds, enqueue_cmds, inspect_cmd  # noqa: F401,I001  (register the commands)
from .app import app


def main() -> None:
    app()
