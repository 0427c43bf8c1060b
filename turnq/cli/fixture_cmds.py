"""`turnq import` and `turnq export`: fixture files in and out of a store."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from ..errors import InvalidInput
from . import output
from .app import app
from .options import JsonOpt, LockTimeoutOpt, NowOpt, StoreOpt, open_existing, open_queue, option_time

FormatOpt = Annotated[Literal["toml", "json"] | None, typer.Option(
    "--format", help="Fixture format. [default: from the file name's extension]", show_default=False)]


@app.command("import", rich_help_panel="Fixtures and checks")
def import_(
    file: Annotated[str, typer.Argument(metavar="FILE", help="Fixture file (.toml or .json); '-' reads stdin.")],
    fmt: FormatOpt = None,
    store: StoreOpt = "turnq.json",
    now: NowOpt = None,
    json_out: JsonOpt = False,
    lock_timeout: LockTimeoutOpt = "10s",
) -> None:
    """Build a fixture (sessions, drafts, claims, exact batches) into the store: all of it, or nothing."""
    from .. import fixtures

    queue = open_queue(store, None, lock_timeout)
    now_ms = None if not now else option_time(now, "--now")
    if file == "-":
        if fmt is None:
            raise InvalidInput("--format: reading stdin needs --format toml|json")
        document = fixtures.loads_document(sys.stdin.buffer.read(), fmt, "stdin")
        fixture = fixtures.parse(document, base_dir=Path.cwd())
    else:
        fixture = fixtures.parse_file(file, fmt)
    result = fixtures.build(fixture, queue.store, now_ms=now_ms)
    if json_out:
        output.emit_json(result.to_wire())
        return
    from .. import render_checks

    output.render_or_json(lambda: render_checks.imported(result), result.to_wire)


@app.command(rich_help_panel="Fixtures and checks")
def export(
    sessions: Annotated[list[str] | None, typer.Argument(
        metavar="[SESSION]...", help="Sessions to export. [default: all]", show_default=False)] = None,
    fmt: Annotated[Literal["toml", "json"] | None, typer.Option(
        "--format", help="Fixture format. [default: toml; json with --json]", show_default=False)] = None,
    output_file: Annotated[str | None, typer.Option(
        "--output", "-o", metavar="FILE", help="Write the fixture here. [default: stdout]")] = None,
    store: StoreOpt = "turnq.json",
    now: NowOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Write the store (or some sessions) as a fixture that `turnq import` rebuilds exactly."""
    from .. import fixtures

    if json_out and fmt == "toml":
        raise InvalidInput("--json: the JSON output is the fixture in JSON; it cannot be --format toml")
    fmt = "json" if json_out else (fmt or "toml")
    queue = open_existing(store, now)
    now_ms = queue.clock.now_ms() if queue.clock.fixed else None
    text = fixtures.dumps(fixtures.export_document(queue.store.read(), sessions, now_ms=now_ms), fmt)
    if output_file is None or output_file == "-":
        sys.stdout.write(text)
        return
    try:
        Path(output_file).write_text(text, encoding="utf-8")
    except OSError as err:
        raise InvalidInput(f"--output: cannot write {output_file}: {err.strerror or err}") from None
