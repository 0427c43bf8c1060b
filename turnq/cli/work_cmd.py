"""`turnq work SESSION -- COMMAND …`: a worker that runs a command per claim (turnq/worker.py)."""

from __future__ import annotations

import sys
import threading
from typing import Annotated, Literal, Optional

import typer

from ..errors import InvalidInput
from . import output
from .app import app
from .options import JsonOpt, LockTimeoutOpt, NowOpt, StoreOpt, open_queue, option_duration, option_u64

Boundary = Literal["idle", "active_turn_checkpoint"]
OnFailure = Literal["abandon", "keep"]


@app.command(rich_help_panel="Take work out")
def work(
    session: Annotated[str, typer.Argument(help="Session to take work from.")],
    command: Annotated[list[str], typer.Argument(
        help="The command to run per claim, after `--` (claim JSON on its stdin and in $TURNQ_CLAIM_FILE).",
        metavar="-- COMMAND [ARGS]", show_default=False)],
    owner: Annotated[Optional[str], typer.Option(
        "--owner", envvar="TURNQ_OWNER", help="Who holds the leases. [default: HOSTNAME:PID; turnq under --now]",
        show_default=False)] = None,
    boundary: Annotated[Boundary, typer.Option("--boundary", help="Where the runtime is claiming.")] = "idle",
    ttl: Annotated[str, typer.Option("--ttl", help="Lease length; renewed every TTL/3 while the command runs.")]
    = "1m",
    max_batches: Annotated[int, typer.Option("--max-batches", help="At most this many batches a claim.")] = 64,
    wait: Annotated[Optional[str], typer.Option(
        "--wait", help="How long to wait for work when there is none. [default: for ever; 0 with --idle-exit]",
        show_default=False)] = None,
    idle_exit: Annotated[bool, typer.Option("--idle-exit", help="Stop when the queue is empty after --wait.")]
    = False,
    max_claims: Annotated[Optional[int], typer.Option("--max-claims", help="Stop after this many claims.")] = None,
    timeout: Annotated[Optional[str], typer.Option(
        "--timeout", help="Stop a command running longer than this, and abandon its claim.")] = None,
    grace: Annotated[str, typer.Option("--grace", help="After SIGTERM, wait this long before SIGKILL.")] = "10s",
    on_failure: Annotated[OnFailure, typer.Option(
        "--on-failure", help="A command that exits non-zero: abandon its claim (a retry at once) or keep it "
        "(left to expire: a back-off).")] = "abandon",
    store: StoreOpt = "turnq.json",
    now: NowOpt = None,
    json_out: Annotated[bool, typer.Option(
        "--json", help="One JSON Lines record per claim on stdout (the command's stdout goes to stderr).")] = False,
    lock_timeout: LockTimeoutOpt = "10s",
) -> None:
    """Run COMMAND for each claim as work comes; complete on exit 0 (exit 130/143 on SIGINT/SIGTERM)."""
    from .. import worker

    if not command:
        raise InvalidInput("give the command to run after `--`, e.g. turnq work SESSION -- ./handle.sh")
    option_u64(max_batches, "--max-batches")
    option_u64(max_claims, "--max-claims")
    if owner is not None and not owner:
        raise InvalidInput("--owner: the owner id is empty")
    ttl_ms = option_duration(ttl, "--ttl")
    if ttl_ms <= 0:
        raise InvalidInput("--ttl: a worker's lease must be longer than 0")
    wait_ms = option_duration(wait, "--wait") if wait is not None else None
    if wait_ms == 0 and not idle_exit:
        raise InvalidInput("--wait 0 without --idle-exit would poll without pause: give a longer --wait")
    handler = worker.CommandHandler(
        list(command), grace_s=option_duration(grace, "--grace") / 1000,
        timeout_s=option_duration(timeout, "--timeout") / 1000 if timeout is not None else None,
        store=store if store else None, stdout=sys.stderr.fileno() if json_out else None)
    queue = open_queue(store, now, lock_timeout)
    stop = threading.Event()
    with worker.stop_on_signals(stop) as received:
        for result in queue.work(session, handler, owner=owner, boundary=boundary, ttl_ms=ttl_ms,
                                 max_batches=max_batches, wait_ms=wait_ms, idle_exit=idle_exit,
                                 max_claims=max_claims, on_failure=on_failure, stop=stop, stop_signal=received,
                                 on_busy=output.warn):
            _report(result, json_out)
    signum = received()
    if signum is not None:
        raise typer.Exit(128 + signum)  # 130 after SIGINT, 143 after SIGTERM, as a shell expects


def _report(result: object, json_out: bool) -> None:
    from .. import render_work

    render_work.work_line(result)
    if json_out:
        output.emit_json(result.to_wire())  # type: ignore[attr-defined]
        sys.stdout.flush()  # one record as each claim ends, for a reader at the other end of a pipe
