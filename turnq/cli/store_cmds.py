"""`turnq migrate`: copy a queue from one store to another (JSON file, SQLite, PostgreSQL)."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import ExitStatus
from . import output
from .app import app
from .options import JsonOpt, LockTimeoutOpt, NowOpt, open_queue

LOCATION_HELP = "a JSON file path, sqlite:///PATH.db or postgresql://USER@HOST/DB"


@app.command(rich_help_panel="Stores")
def migrate(
    source: Annotated[str, typer.Option("--from", help=f"The store to copy: {LOCATION_HELP}.",
                                        show_default=False)],
    target: Annotated[str, typer.Option("--to", help=f"The store to fill: {LOCATION_HELP}.", show_default=False)],
    replace: Annotated[bool, typer.Option(
        "--replace", help="Overwrite a target that is not empty (refused otherwise, exit 2); a JSON or SQLite "
        "target keeps a backup (STORE.bak-NOW).")] = False,
    allow_empty: Annotated[bool, typer.Option(
        "--allow-empty", help="With --replace: let an empty source empty the target (refused otherwise, exit 2).")]
    = False,
    now: NowOpt = None,
    json_out: JsonOpt = False,
    lock_timeout: LockTimeoutOpt = "10s",
) -> int:
    """Copy every batch, live claim, fencing counter, tombstone and the enqueue counter from one
    store to another, then read both back and compare them (exit 1 if they differ). A source
    that does not exist is refused (exit 5)."""
    from ..migrate import migrate as run

    source_queue = open_queue(source, now, lock_timeout, option="--from")
    target_queue = open_queue(target, now, lock_timeout, option="--to")
    from ..render_progress import progress_bar, wanted

    with progress_bar("Migrating", wanted(json_out)) as advance:
        done = run(source_queue.store, target_queue.store, now_ms=target_queue.clock.now_ms(), replace=replace,
                   allow_empty=allow_empty, progress=advance)
    if json_out:
        output.emit_json(done.to_wire())
    else:
        from ..render_store import migrated

        output.render_or_json(lambda: migrated(done), done.to_wire)
    return int(ExitStatus.OK) if done.verified else 1
