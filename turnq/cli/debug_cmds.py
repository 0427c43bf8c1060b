"""Debugging a queue: `turnq explain`, `turnq log`, `turnq watch`, `turnq doctor`."""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer

from ..errors import ExitStatus, InvalidInput
from . import output
from .app import app
from .options import (
    JsonOpt,
    LockTimeoutOpt,
    NowOpt,
    StoreOpt,
    open_existing,
    option_duration,
    option_time,
    option_u64,
)

PANEL = "Debug"


@app.command(rich_help_panel=PANEL)
def explain(
    session: Annotated[str, typer.Argument(help="Session to explain.")],
    batch: Annotated[str | None, typer.Argument(help="Only this batch (an id or a unique prefix).")] = None,
    max_batches: Annotated[int, typer.Option("--max-batches", help="Explain claims of at most this many batches.")]
    = 64,
    store: StoreOpt = "turnq.json",
    now: NowOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Why each batch is (or is not) claimable now, at each boundary. Never writes."""
    option_u64(max_batches, "--max-batches")
    queue = open_existing(store, now)
    shown = queue.explain(session, batch, max_batches=max_batches)
    if json_out:
        output.emit_json(shown.to_wire())
        return
    from .. import render_debug

    render_debug.explanation(shown)


def _since(value: str | None, now_ms: int) -> int | None:
    """`--since`: a time (epoch ms or RFC 3339), or a duration back from now (`10m`)."""
    if value is None:
        return None
    try:
        return option_time(value, "--since")
    except InvalidInput as err:
        if "epoch seconds" in err.message:  # not a duration of weeks either: the slip's hint says more
            raise
        try:
            back = option_duration(value, "--since")
        except InvalidInput:
            raise InvalidInput(f"--since: expected a time (epoch ms, RFC 3339) or a duration (10m), got {value!r}")
        return max(0, now_ms - back)


@app.command(rich_help_panel=PANEL)
def log(
    session: Annotated[str | None, typer.Argument(help="Only this session. [default: every session]")] = None,
    batch: Annotated[str | None, typer.Option("--batch", help="Only entries naming this batch (id or prefix).")]
    = None,
    since: Annotated[str | None, typer.Option(
        "--since", help="Only entries at or after this time (epoch ms, RFC 3339) or this long ago (10m).")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new entries until Ctrl-C.")] = False,
    interval: Annotated[str, typer.Option("--interval", help="How often --follow polls the log.")] = "500ms",
    store: StoreOpt = "turnq.json",
    now: NowOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="JSON Lines on stdout: one entry per line.")] = False,
) -> None:
    """Show the audit log: what every operation did, and what was refused (TURNQ_LOG=off: none)."""
    poll_s = option_duration(interval, "--interval") / 1000
    if follow and poll_s <= 0:
        raise InvalidInput("--interval: must be more than 0")
    queue = open_existing(store, now)
    since_ms = _since(since, queue.clock.now_ms())
    try:
        entries, last_id = queue.history(session_id=session, batch_id=batch, since_ms=since_ms)
    except NotImplementedError as err:
        raise InvalidInput(f"log: {err}") from None
    if json_out:
        output.emit_json_lines(entries)
    elif follow:
        from .. import render_debug

        render_debug.log_lines(entries)
    else:
        from .. import render_debug

        render_debug.log_table(entries, session)
        return
    if not follow:
        return
    sys.stdout.flush()
    # Ctrl-C ends it: KeyboardInterrupt goes to the app, which exits 130 as for any command.
    while True:
        time.sleep(poll_s)
        entries, last_id = queue.history(last_id, session_id=session, batch_id=batch, since_ms=since_ms)
        if not entries:
            continue
        if json_out:
            output.emit_json_lines(entries)
        else:
            from .. import render_debug

            render_debug.log_lines(entries)
        sys.stdout.flush()


@app.command(rich_help_panel=PANEL)
def watch(
    session: Annotated[str | None, typer.Argument(help="Session to watch. [default: all sessions]")] = None,
    interval: Annotated[str, typer.Option("--interval", help="How often to look for changes.")] = "250ms",
    store: StoreOpt = "turnq.json",
    now: NowOpt = None,
) -> None:
    """Show `inspect` live, redrawn when the store changes, with lease countdowns. Ctrl-C quits."""
    poll_s = option_duration(interval, "--interval") / 1000
    if poll_s <= 0:
        raise InvalidInput("--interval: must be more than 0")
    queue = open_existing(store, now)
    if not sys.stdout.isatty():
        raise InvalidInput("watch needs a terminal (stdout is not one); use `turnq inspect` or `turnq log --follow`")
    from rich.live import Live

    from .. import render_debug

    def frame() -> object:
        view = queue.overview() if session is None else queue.inspect(session)
        return render_debug.watch_frame(view, queue.store.location, live.console.width, live.console.color_system)

    live = Live(auto_refresh=False, redirect_stdout=False, redirect_stderr=False, transient=False)
    marker = queue.store.change_marker()
    last_draw = 0.0
    with live:
        live.update(frame(), refresh=True)
        last_draw = time.monotonic()
        while True:
            time.sleep(poll_s)
            current = queue.store.change_marker()
            # Redraw on a change, and every second anyway: the lease countdowns tick.
            if current != marker or current is None or time.monotonic() - last_draw >= 1.0:
                marker = current
                live.update(frame(), refresh=True)
                last_draw = time.monotonic()


@app.command(rich_help_panel=PANEL)
def doctor(
    fix: Annotated[bool, typer.Option("--fix", help="Make the safe repairs (after a backup: STORE.bak-<now>).")]
    = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="With --fix: only show the planned repairs.")] = False,
    stale_after: Annotated[str, typer.Option(
        "--stale-after", help="A claim expired this long ago (more than 0) counts as stale.")] = "24h",
    clear_stale: Annotated[bool, typer.Option(
        "--clear-stale", help="With --fix: also clear stale claims (their holders can no longer complete them).")]
    = False,
    store: StoreOpt = "turnq.json",
    now: NowOpt = None,
    json_out: JsonOpt = False,
    lock_timeout: LockTimeoutOpt = "10s",
) -> None:
    """Check the store's invariants on the raw file; exit 0 if healthy, 1 if not."""
    if dry_run and not fix:
        raise InvalidInput("--dry-run: only with --fix")
    if clear_stale and not fix:
        raise InvalidInput("--clear-stale: only with --fix")
    stale_ms = option_duration(stale_after, "--stale-after")
    if stale_ms == 0:  # every expired lease would be stale, though its holder can still complete it
        raise InvalidInput("--stale-after: must be more than 0 (a lease that just ran out is not stale)")
    queue = open_existing(store, now, lock_timeout)
    # Plan first (and show the plan), then write: a failed write still leaves the plan on screen.
    report = queue.doctor(fix=fix, dry_run=fix, stale_claim_ms=stale_ms, clear_stale=clear_stale)
    report.dry_run = dry_run
    if json_out:
        if fix and not dry_run and report.changes:
            queue.apply_repairs(report)
        output.emit_json(report.to_wire())
    else:
        from .. import render_debug

        render_debug.doctor_findings(report)
        if fix:
            render_debug.doctor_plan(report)
        if fix and not dry_run and report.changes:
            queue.apply_repairs(report)
            output.render_or_json(lambda: render_debug.doctor_fixed(report), report.to_wire)
    if not report.healthy:
        raise typer.Exit(ExitStatus.CHECK_FAILED)
