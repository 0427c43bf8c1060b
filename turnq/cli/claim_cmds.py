"""Commands that take work out: claim, complete, renew, abandon, cancel, vacuum."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

import typer

from .. import models
from ..engine import ClaimRef
from ..errors import InvalidInput
from . import output
from .app import app
from .options import (
    ClaimStrictOpt,
    JsonOpt,
    LockTimeoutOpt,
    NowOpt,
    StoreOpt,
    open_existing,
    open_queue,
    option_duration,
    option_u64,
    read_arg_text,
    validate_wire,
)

Boundary = Literal["idle", "active_turn_checkpoint"]
TtlOpt = Annotated[str, typer.Option("--ttl", help="Lease length (250ms, 30s, 15m, 2h).")]
EMPTY_EXIT = 3


@app.command(rich_help_panel="Take work out")
def claim(
    session: Annotated[str, typer.Argument(help="Session to claim from.")],
    owner: Annotated[Optional[str], typer.Option(
        "--owner", envvar="TURNQ_OWNER", help="Who holds the lease. [default: HOSTNAME:PID; turnq under --now]",
        show_default=False)] = None,
    boundary: Annotated[Boundary, typer.Option("--boundary", help="Where the runtime is claiming.")] = "idle",
    ttl: TtlOpt = "15m",
    max_batches: Annotated[int, typer.Option("--max-batches", help="At most this many batches.")] = 64,
    batch: Annotated[Optional[list[str]], typer.Option(
        "--batch", help="Claim exactly these batches, or nothing (repeatable).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the claim that would be made; write nothing.")]
    = False,
    wait: Annotated[Optional[str], typer.Option(
        "--wait", help="When nothing is claimable, wait up to this long for work and claim it as it comes "
        "(exit 3 after).")] = None,
    store: StoreOpt = "turnq.json",
    now: NowOpt = None,
    json_out: JsonOpt = False,
    lock_timeout: LockTimeoutOpt = "10s",
) -> None:
    """Claim the ready work at a boundary (exit 3 when there is none)."""
    option_u64(max_batches, "--max-batches")
    wait_ms = option_duration(wait, "--wait") if wait is not None else 0
    if wait_ms and dry_run:
        raise InvalidInput("--wait cannot be combined with --dry-run")
    if owner is not None and not owner:
        raise InvalidInput("--owner: the owner id is empty")
    # A dry run only reads: a store that is not there is refused, not an empty queue.
    queue = open_existing(store, now, lock_timeout) if dry_run else open_queue(store, now, lock_timeout)
    exact = [queue.resolve_batch_id(session, b) for b in batch] if batch else None
    if exact and len(set(exact)) != len(exact):
        raise InvalidInput("--batch: the same batch is named twice")
    made = queue.claim(session, owner=owner, boundary=boundary, ttl_ms=option_duration(ttl, "--ttl"),
                       max_batches=max_batches, batch_ids=exact, dry_run=dry_run, wait_ms=wait_ms)
    if json_out:
        output.emit_json(None if made is None else made.to_wire())
    else:
        from .. import render

        why = None
        if made is None:  # the claim rules, told (turnq explain): one line on why nothing was taken
            from ..explain import nothing_to_claim

            why = nothing_to_claim(queue.explain(session, max_batches=max_batches), boundary, exact)
        output.render_or_json(lambda: render.claim(made, session, boundary, dry_run=dry_run, exact=bool(batch), why=why),
                              lambda: None if made is None else made.to_wire())
    if made is None:
        raise typer.Exit(EMPTY_EXIT)


# ----------------------------------------------------------------- settling a claim

ClaimOpt = Annotated[Optional[str], typer.Option(
    "--claim", metavar="JSON|@FILE|-", help="The claim (as `claim --json` prints it) or a completion.")]
SessionArg = Annotated[Optional[str], typer.Argument(help="Session (with --claim-id and --lease-token).")]
ClaimIdOpt = Annotated[Optional[str], typer.Option("--claim-id", help="The claim's id.")]
TokenOpt = Annotated[Optional[str], typer.Option("--lease-token", help="The claim's lease token.")]
BatchesOpt = Annotated[Optional[list[str]], typer.Option(
    "--batch", help="Only these batches (repeatable). [default: every batch carrying the claim]")]
#: renew and abandon act on the whole claim (spec/semantics.md): --batch never narrows them.
RenewBatchesOpt = Annotated[Optional[list[str]], typer.Option(
    "--batch", help="Batches the claim must still hold (repeatable; exit 4 if one does not). Never narrows the "
    "renewal: every batch carrying the claim is renewed.")]
AbandonBatchesOpt = Annotated[Optional[list[str]], typer.Option(
    "--batch", help="Accepted for symmetry (repeatable); never narrows: every batch still carrying the claim is "
    "released, listed or not.")]


def claim_ref(claim_json: str | None, session: str | None, claim_id: str | None, lease_token: str | None,
              batches: list[str] | None, strict: bool) -> ClaimRef:
    """Which claim a complete/renew/abandon is about: --claim, or the explicit ids."""
    if claim_json is not None:
        clash = next((name for name, value in (("SESSION", session), ("--claim-id", claim_id),
                      ("--lease-token", lease_token), ("--batch", batches)) if value), None)
        if clash:
            raise InvalidInput(f"{clash} cannot be combined with --claim")
        return _parse_claim(read_arg_text(claim_json, "--claim"), strict)
    missing = [name for name, value in (("SESSION", session), ("--claim-id", claim_id),
               ("--lease-token", lease_token)) if not value]
    if missing:
        raise InvalidInput(f"give --claim, or SESSION with --claim-id and --lease-token (missing {missing[0]})")
    assert session and claim_id and lease_token
    return ClaimRef(session, claim_id, lease_token, tuple(batches) if batches else None)


def _parse_claim(text: str, strict: bool) -> ClaimRef:
    try:
        data = models.wirejson.loads(text)
    except ValueError as err:
        raise InvalidInput(f"--claim: invalid JSON: {err}") from None
    if data is None:
        raise InvalidInput("--claim: got null: there is no claim (the claim command found nothing, exit 3)")
    if isinstance(data, dict) and "batches" in data:
        return ClaimRef.of(validate_wire(models.QueuedWorkClaim, data, "--claim", strict=strict))
    if isinstance(data, dict) and "batch_ids" in data:
        return ClaimRef.of(validate_wire(models.QueuedWorkCompletion, data, "--claim", strict=strict))
    raise InvalidInput("--claim: not a QueuedWorkClaim or QueuedWorkCompletion (no `batches` or `batch_ids`)")


@app.command(rich_help_panel="Take work out")
def complete(
    session: SessionArg = None,
    claim_json: ClaimOpt = None,
    claim_id: ClaimIdOpt = None,
    lease_token: TokenOpt = None,
    batch: BatchesOpt = None,
    strict: ClaimStrictOpt = False,
    store: StoreOpt = "turnq.json",
    now: NowOpt = None,
    json_out: JsonOpt = False,
    lock_timeout: LockTimeoutOpt = "10s",
) -> None:
    """Settle a claim: remove its batches for good (exit 4 if the lease was lost)."""
    ref = claim_ref(claim_json, session, claim_id, lease_token, batch, strict)
    done = open_queue(store, now, lock_timeout).complete(ref)
    if json_out:
        output.emit_json(done.to_wire())
        return
    from .. import render

    output.render_or_json(lambda: render.completed(done), done.to_wire)


@app.command(rich_help_panel="Take work out")
def renew(
    session: SessionArg = None,
    claim_json: ClaimOpt = None,
    claim_id: ClaimIdOpt = None,
    lease_token: TokenOpt = None,
    batch: RenewBatchesOpt = None,
    ttl: TtlOpt = "15m",
    strict: ClaimStrictOpt = False,
    store: StoreOpt = "turnq.json",
    now: NowOpt = None,
    json_out: JsonOpt = False,
    lock_timeout: LockTimeoutOpt = "10s",
) -> None:
    """Extend a claim's lease to now + TTL, on every batch carrying it (exit 4 if the lease was lost)."""
    ref = claim_ref(claim_json, session, claim_id, lease_token, batch, strict)
    renewed = open_queue(store, now, lock_timeout).renew(ref, ttl_ms=option_duration(ttl, "--ttl"))
    if json_out:
        output.emit_json(renewed.to_wire())
        return
    from .. import render

    output.render_or_json(lambda: render.renewed(renewed), renewed.to_wire)


@app.command(rich_help_panel="Take work out")
def abandon(
    session: SessionArg = None,
    claim_json: ClaimOpt = None,
    claim_id: ClaimIdOpt = None,
    lease_token: TokenOpt = None,
    batch: AbandonBatchesOpt = None,
    strict: ClaimStrictOpt = False,
    store: StoreOpt = "turnq.json",
    now: NowOpt = None,
    json_out: JsonOpt = False,
    lock_timeout: LockTimeoutOpt = "10s",
) -> None:
    """Give a claim's batches back, every batch carrying it: claimable again at once."""
    ref = claim_ref(claim_json, session, claim_id, lease_token, batch, strict)
    released = open_queue(store, now, lock_timeout).abandon(ref)
    if json_out:
        output.emit_json({"released": released})
        return
    from .. import render

    output.render_or_json(lambda: render.released(ref, released), lambda: {"released": released})


@app.command(rich_help_panel="Take work out")
def cancel(
    session: Annotated[str, typer.Argument(help="The batch's session.")],
    batch_id: Annotated[str, typer.Argument(help="The batch to remove.")],
    store: StoreOpt = "turnq.json",
    now: NowOpt = None,
    json_out: JsonOpt = False,
    lock_timeout: LockTimeoutOpt = "10s",
) -> None:
    """Remove a batch that is not held (exit 4 if held, 5 if unknown)."""
    queue = open_queue(store, now, lock_timeout)
    removed = queue.cancel(session, queue.resolve_batch_id(session, batch_id))
    if json_out:
        output.emit_json(removed.to_wire())
        return
    from .. import render

    output.render_or_json(lambda: render.cancelled(removed), removed.to_wire)


@app.command(rich_help_panel="Take work out")
def vacuum(
    session: Annotated[Optional[str], typer.Argument(help="Only this session's tombstones.")] = None,
    older_than: Annotated[Optional[str], typer.Option(
        "--older-than", help="Only tombstones settled at least this long ago. [default: all]")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the tombstones that would be dropped; write nothing.")]
    = False,
    store: StoreOpt = "turnq.json",
    now: NowOpt = None,
    json_out: JsonOpt = False,
    lock_timeout: LockTimeoutOpt = "10s",
) -> None:
    """Drop tombstones, freeing their source keys."""
    older_ms = option_duration(older_than, "--older-than") if older_than is not None else None
    removed = open_queue(store, now, lock_timeout).vacuum(session, older_than_ms=older_ms, dry_run=dry_run)
    if json_out:
        output.emit_json({"removed": models.dump(removed)})  # with --dry-run: what would be removed
        return
    from .. import render

    output.render_or_json(lambda: render.vacuumed(removed, dry_run=dry_run), lambda: {"removed": models.dump(removed)})
