"""`turnq inspect`: the state of the queue, and what a claim would take now."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ..errors import InvalidInput
from . import output
from .app import app
from .options import JsonOpt, NowOpt, StoreOpt, open_existing


@app.command(rich_help_panel="Look")
def inspect(
    session: Annotated[Optional[str], typer.Argument(help="Session to show. [default: all sessions]")] = None,
    batch: Annotated[Optional[str], typer.Option("--batch", help="Show one batch in full.")] = None,
    pending: Annotated[bool, typer.Option("--pending", help="Leave held batches out.")] = False,
    tombstones: Annotated[bool, typer.Option("--tombstones", help="List the session's tombstones.")] = False,
    store: StoreOpt = "turnq.json",
    now: NowOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show sessions, a session's batches and next claims, or one batch. Never writes."""
    if session is None and (batch is not None or pending or tombstones):
        raise InvalidInput("--batch, --pending and --tombstones need a SESSION")
    queue = open_existing(store, now)
    if session is None:
        if batch is not None or pending or tombstones:
            raise InvalidInput("--batch, --pending and --tombstones need a SESSION")
        view = queue.overview()
    elif batch is not None:
        view = queue.batch(session, queue.resolve_batch_id(session, batch))
    else:
        view = queue.inspect(session, pending=pending, tombstones=tombstones)
    if json_out:
        output.emit_json(view.to_wire())
        return
    from .. import render

    render.view(view)
