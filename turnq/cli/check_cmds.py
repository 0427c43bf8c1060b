"""`turnq expect`, `turnq diff` and `turnq schema`: checks for CI.

`expect` and `diff` exit 0 when everything holds / the stores are equal, and 1
(`check_failed`) with a readable difference otherwise. None of them writes.
"""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from ..errors import ExitStatus
from . import output
from .app import app
from .options import JsonOpt, NowOpt, StoreOpt, open_existing, option_time

Boundary = Literal["idle", "active_turn_checkpoint"]
StateName = Literal["ready", "delayed", "held", "expired"]
Shape = Literal["draft", "batch", "claim", "completion", "receipt", "payload", "store"]


@app.command(rich_help_panel="Fixtures and checks")
def expect(
    session: Annotated[str, typer.Argument(help="Session to check.")],
    count: Annotated[int | None, typer.Option("--count", help="Number of live batches (of --state).")] = None,
    state: Annotated[StateName | None, typer.Option(
        "--state", help="With --count: count only batches in this state.")] = None,
    source_keys: Annotated[str | None, typer.Option(
        "--source-keys", metavar="K1,K2,...", help="The session's batches' source keys, in order ('' for none).")]
    = None,
    next_claim: Annotated[str | None, typer.Option(
        "--next-claim", metavar="ID1,ID2,...",
        help="What a claim would take now: batch ids (or unique prefixes, or source keys), in order.")] = None,
    boundary: Annotated[Boundary, typer.Option("--boundary", help="Boundary of --next-claim and --next-text.")]
    = "idle",
    next_text: Annotated[str | None, typer.Option(
        "--next-text", help="The text that claim materialises into (texts, then wake texts, one per line).")]
    = None,
    store: StoreOpt = "turnq.json",
    now: NowOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Check a session's queue: exit 0 when every check holds, 1 with the difference otherwise."""
    from .. import expect as core

    queue = open_existing(store, now)
    wanted = core.Expectations(
        count=count, state=state,
        source_keys=None if source_keys is None else core.split_list(source_keys),
        next_claim=None if next_claim is None else core.split_list(next_claim),
        boundary=boundary, next_text=next_text)
    if count is not None and count < 0:
        from ..errors import InvalidInput

        raise InvalidInput(f"--count: must be 0 or more, got {count}")
    report = core.check(queue.store.read(session), session, wanted, queue.clock.now_ms())
    if json_out:
        output.emit_json(report.to_wire())
    else:
        from .. import render_checks

        render_checks.expectation(report)
    if not report.ok:
        raise typer.Exit(ExitStatus.CHECK_FAILED)


@app.command(rich_help_panel="Fixtures and checks")
def diff(
    a: Annotated[str, typer.Argument(metavar="A", help="A store (file or URL) or a fixture file.")],
    b: Annotated[str, typer.Argument(metavar="B", help="Another store or fixture file.")],
    now: NowOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Compare two stores (or a store and a fixture), batch by batch: exit 1 when they differ."""
    from .. import diff as core
    from .. import fixtures
    from ..redact import redact_location

    now_ms = None if not now else option_time(now, "--now")
    result = core.diff_states(fixtures.read_state(a, now_ms=now_ms), fixtures.read_state(b, now_ms=now_ms),
                              a_name=redact_location(a), b_name=redact_location(b))
    if json_out:
        output.emit_json(result.to_wire())
    else:
        from .. import render_checks

        render_checks.difference(result)
    if not result.equal:
        raise typer.Exit(ExitStatus.CHECK_FAILED)


@app.command(rich_help_panel="Fixtures and checks")
def schema(
    shape: Annotated[Shape | None, typer.Argument(
        help="Wire shape. [default: all, as one object keyed by shape]", show_default=False)] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Accepted, and changes nothing: the output is JSON.")]
    = False,
) -> None:
    """Print the JSON Schema of a wire shape, so producers in other languages can validate what they send."""
    import json

    from .. import schema as core

    document = core.all_schemas() if shape is None else core.schema(shape)
    typer.echo(json.dumps(document, indent=2, ensure_ascii=False))
