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
    "--format", help="Fixture format. [default: from the file name's extension; stdin: JSON when it starts "
    "with {, else TOML]", show_default=False)]


@app.command("import", rich_help_panel="Fixtures and checks")
def import_(
    file: Annotated[str, typer.Argument(metavar="FILE", help="Fixture file (.toml or .json); '-' reads stdin.")],
    fmt: FormatOpt = None,
    store: StoreOpt = "turnq.json",
    now: NowOpt = None,
    json_out: JsonOpt = False,
    lock_timeout: LockTimeoutOpt = "10s",
    allow_outside: Annotated[list[str] | None, typer.Option(
        "--allow-outside", metavar="PATH", help="Let image paths point into this folder too (repeatable). "
        "[default: only inside the fixture's folder]", show_default=False)] = None,
) -> None:
    """Build a fixture (sessions, drafts, claims, exact batches) into the store: all of it, or nothing."""
    from .. import fixtures

    queue = open_queue(store, None, lock_timeout)
    now_ms = None if not now else option_time(now, "--now")
    if file == "-":
        from .. import limits

        # never more than the limit (stdin may be /dev/zero); loads_document refuses what is over it
        raw = sys.stdin.buffer.read(limits.max_input_bytes() + 1)
        if not raw.strip():  # most likely a pipe whose writer failed
            raise InvalidInput("FILE: stdin is empty: there is no fixture to import")
        document = fixtures.loads_document(raw, fmt or fixtures.sniff_format(raw), "stdin")
        fixture = fixtures.parse(document, base_dir=Path.cwd(), allow_outside=tuple(allow_outside or ()))
    else:
        fixture = fixtures.parse_file(file, fmt, allow_outside=tuple(allow_outside or ()))
    from ..render_progress import progress_bar, wanted

    with progress_bar("Importing", wanted(json_out)) as advance:
        result = fixtures.build(fixture, queue.store, now_ms=now_ms, progress=advance)
    if json_out:
        output.emit_json(result.to_wire())
        return
    from .. import render_checks

    output.render_or_json(lambda: render_checks.imported(result), result.to_wire)


def _format_of_output(output_file: str | None) -> str:
    """What `turnq import` will read the file as: its extension says; TOML otherwise."""
    suffix = Path(output_file).suffix.lower() if output_file and output_file != "-" else ""
    return "json" if suffix == ".json" else "toml"


@app.command(rich_help_panel="Fixtures and checks")
def export(
    sessions: Annotated[list[str] | None, typer.Argument(
        metavar="[SESSION]...", help="Sessions to export. [default: all]", show_default=False)] = None,
    fmt: Annotated[Literal["toml", "json"] | None, typer.Option(
        "--format", help="Fixture format. [default: from --output's extension (.json, .toml); json with --json; "
        "else toml]", show_default=False)] = None,
    output_file: Annotated[str | None, typer.Option(
        "--output", "-o", metavar="FILE", help="Write the fixture here. [default: stdout]")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="With --output: overwrite FILE even when it is a turnq store (refused otherwise, exit 2).")]
    = False,
    store: StoreOpt = "turnq.json",
    now: NowOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Write the store (or some sessions) as a fixture that `turnq import` rebuilds exactly."""
    from .. import fixtures

    if json_out and fmt == "toml":
        raise InvalidInput("--json: the JSON output is the fixture in JSON; it cannot be --format toml")
    fmt = "json" if json_out else (fmt or _format_of_output(output_file))
    queue = open_existing(store, now)
    now_ms = queue.clock.now_ms() if queue.clock.fixed else None
    text = fixtures.dumps(fixtures.export_document(queue.store.read(), sessions, now_ms=now_ms), fmt)
    if output_file is None or output_file == "-":
        sys.stdout.write(text)
        return
    # Atomically (a full disk leaves the old file whole: exit 9), and never over a store unless --force.
    fixtures.write_output(output_file, text, queue.store, force=force)
