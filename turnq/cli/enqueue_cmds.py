"""Commands that put work into a queue: enqueue, wake, reset-session, refresh-tools."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import typer

from .. import limits, models
from ..api import make_draft
from ..clock import format_time
from ..engine import EnqueueResult
from ..errors import InvalidInput
from . import output
from .app import app
from .options import (
    ReplayStrictOpt,
    JsonOpt,
    LockTimeoutOpt,
    NowOpt,
    StoreOpt,
    StrictOpt,
    check_single_stdin,
    open_queue,
    option_duration,
    option_time,
    option_u64,
    parse_merge,
    parse_wire,
    read_arg_text,
)

Delivery = Literal["earliest_safe_boundary", "after_current_turn_commit"]
Slot = Literal["join", "exclusive"]

DelayOpt = Annotated[Optional[str], typer.Option(
    "--delay", help="Make the batch claimable only after this long (250ms, 30s, 15m, 2h).")]
AvailableAtOpt = Annotated[Optional[str], typer.Option(
    "--available-at", help="Make the batch claimable only from this time (epoch ms or RFC 3339).")]


@app.command(rich_help_panel="Put work in")
def enqueue(
    ctx: typer.Context,
    session: Annotated[Optional[str], typer.Argument(help="Session to enqueue into (not with --draft).")] = None,
    text: Annotated[Optional[list[str]], typer.Option(
        "--text", metavar="TEXT|@FILE|-", help="A text item (repeatable): the text, @FILE for a file's, - for stdin.")]
    = None,
    image: Annotated[Optional[list[str]], typer.Option(
        "--image", metavar="ID=PATH", help="An image item read from PATH (repeatable).")] = None,
    payload: Annotated[Optional[list[str]], typer.Option(
        "--payload", metavar="JSON|@FILE|-", help="A QueuedWorkPayload (repeatable).")] = None,
    draft: Annotated[Optional[str], typer.Option(
        "--draft", metavar="JSON|@FILE|-", help="Whole QueuedWorkBatchDraft(s): one object, or JSON Lines.")] = None,
    delivery: Annotated[Optional[Delivery], typer.Option(
        "--delivery", help="Delivery policy. [default: after_current_turn_commit]", show_default=False)] = None,
    slot: Annotated[Optional[Slot], typer.Option(
        "--slot", help="Slot policy. [default: join]", show_default=False)] = None,
    merge: Annotated[Optional[str], typer.Option(
        "--merge", metavar="never|payload_default|group:NAME", help="Merge key. [default: never]")] = None,
    source_key: Annotated[Optional[str], typer.Option(
        "--source-key", help="Idempotency key: the same key in a session enqueues once.")] = None,
    delay: DelayOpt = None,
    available_at: AvailableAtOpt = None,
    strict: StrictOpt = False,
    store: StoreOpt = "turnq.json",
    now: NowOpt = None,
    json_out: JsonOpt = False,
    lock_timeout: LockTimeoutOpt = "10s",
) -> None:
    """Enqueue a batch: text and images, payloads, or whole drafts."""
    texts, images, payloads = text or [], image or [], payload or []
    check_single_stdin({"--text": texts, "--payload": payloads, "--draft": [draft]})
    queue = open_queue(store, now, lock_timeout)
    if draft is not None:
        given = {"SESSION": session, "--text": texts, "--image": images, "--payload": payloads,
                 "--delivery": delivery, "--slot": slot, "--merge": merge, "--source-key": source_key,
                 "--delay": delay, "--available-at": available_at}
        clash = next((name for name, value in given.items() if value), None)
        if clash:
            raise InvalidInput(f"{clash} cannot be combined with --draft (a draft carries its own session, "
                               "payloads and policies)")
        drafts = _parse_drafts(read_arg_text(draft, "--draft"), strict)
        results = queue.enqueue_many(drafts, strict=strict)
    else:
        if not session:
            raise InvalidInput("give a SESSION (or --draft)")
        wire_payloads = _ordered_turn_input(ctx, texts, images) + [
            parse_wire(models.QueuedWorkPayload, read_arg_text(p, "--payload"), "--payload", strict=strict)
            for p in payloads
        ]
        if not wire_payloads:
            raise InvalidInput("nothing to enqueue: give --text, --image, --payload or --draft")
        if delay is not None and available_at is not None:
            raise InvalidInput("--delay cannot be combined with --available-at")
        one = make_draft(
            session, wire_payloads, source_key=source_key,
            delivery_policy=delivery or "after_current_turn_commit", slot_policy=slot or "join",
            merge_key=parse_merge(merge) if merge is not None else "never",
            available_at_ms=option_time(available_at, "--available-at") if available_at is not None else 0,
        )
        _checked(one, "--payload" if payloads else "SESSION")
        delay_ms = option_duration(delay, "--delay") if delay is not None else None
        results = [queue.enqueue(one, strict=strict, delay_ms=delay_ms)]
    report_enqueued(results, json_out)


def _parse_drafts(text: str, strict: bool) -> list[models.QueuedWorkBatchDraft]:
    """One JSON object, or JSON Lines of them."""
    stripped = text.strip()
    if not stripped:
        raise InvalidInput("--draft: empty input")
    try:
        models.wirejson.loads(stripped)
        chunks = [(None, stripped)]
    except ValueError:
        chunks = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    drafts = []
    for number, chunk in chunks:
        where = "--draft" if number is None else f"--draft (line {number})"
        drafts.append(_checked(parse_wire(models.QueuedWorkBatchDraft, chunk, where, strict=strict), where))
    return drafts


def _checked(draft: models.QueuedWorkBatchDraft, where: str) -> models.QueuedWorkBatchDraft:
    """The draft rules (engine.check_draft), with the option at fault named in the message."""
    from ..engine import check_draft

    try:
        check_draft(draft)
    except InvalidInput as err:
        raise InvalidInput(f"{where}: {err.message.removeprefix('draft: ')}") from None
    return draft


def _ordered_turn_input(ctx: typer.Context, texts: list[str], images: list[str]) -> list[dict[str, Any]]:
    """The turn_input payload of --text/--image, items in the order they were given."""
    if not texts and not images:
        return []
    blobs: dict[str, bytes] = {}
    image_ids = []
    for spec in images:
        image_id, data = _read_image(spec)
        blobs[image_id] = data
        image_ids.append(image_id)
    order = _interleaving(ctx, texts, images)
    text_iter, image_iter = iter(texts), iter(image_ids)
    items = [{"type": "text", "text": read_arg_text(next(text_iter), "--text")} if kind == "--text" else
             {"type": "image_ref", "id": next(image_iter)} for kind in order]
    return [{"type": "turn_input", "input": {"items": items, "image_blobs": blobs}}]


def _read_image(spec: str) -> tuple[str, bytes]:
    image_id, sep, path = spec.partition("=")
    if not sep or not image_id or not path:
        raise InvalidInput(f"--image: expected ID=PATH, got {spec!r}")
    try:  # a regular file, at most TURNQ_MAX_IMAGE_BYTES: the wire's integer arrays make a store ~4x it
        return image_id, limits.read_regular_file(path, "--image: ", limit=limits.max_image_bytes(),
                                                  env=limits.IMAGE_BYTES_ENV)
    except OSError as err:
        raise InvalidInput(f"--image: cannot read {path}: {err.strerror or err}") from None


def _interleaving(ctx: typer.Context, texts: list[str], images: list[str]) -> list[str]:
    """Which of --text/--image came in which order on the command line."""
    fallback = ["--text"] * len(texts) + ["--image"] * len(images)
    argv = ctx.meta.get("turnq.argv")
    if argv is None:
        return fallback
    takes_value = {opt for param in ctx.command.params if not getattr(param, "is_flag", True)
                   for opt in getattr(param, "opts", [])}
    seen: list[tuple[str, str]] = []
    tokens = iter(argv)
    for token in tokens:
        if token == "--":
            break
        name, has_value, value = token.partition("=")
        if has_value and name in ("--text", "--image"):
            seen.append((name, value))
        elif token in takes_value:
            value = next(tokens, "")
            if token in ("--text", "--image"):
                seen.append((token, value))
    if [v for k, v in seen if k == "--text"] != texts or [v for k, v in seen if k == "--image"] != images:
        return fallback
    return [kind for kind, _ in seen]


def report_enqueued(results: list[EnqueueResult], json_out: bool) -> None:
    for result in results:
        _note_replay(result)
    if json_out:
        output.emit_json_lines(result.batch.to_wire() for result in results)
        return
    from .. import render

    output.render_or_json(lambda: render.enqueued(results),
                          lambda: results[0].batch.to_wire() if len(results) == 1 else
                          [result.batch.to_wire() for result in results])


def _note_replay(result: EnqueueResult) -> None:
    batch = result.batch
    if result.outcome == "replayed":
        output.note(f"source key {batch.source_key!r} is already queued as batch {batch.batch_id} "
                    f"(seq {batch.enqueue_seq}); this draft added nothing")
    elif result.outcome == "replayed_tombstone" and result.tombstone is not None:
        tomb = result.tombstone
        output.note(f"source key {batch.source_key!r}: this work was already {tomb.outcome} at "
                    f"{format_time(tomb.settled_at_ms)} (batch {batch.batch_id}); this draft added nothing "
                    "('turnq vacuum' frees the key)")
    if result.payloads_differ:
        output.warn(f"source key {batch.source_key!r}: the payloads given differ from the stored ones; "
                    "the stored batch was kept (--strict refuses this)")


@app.command(rich_help_panel="Put work in")
def wake(
    session: Annotated[str, typer.Argument(help="Session the wake is queued for.")],
    process_id: Annotated[str, typer.Option("--process-id", help="The process that woke the session.")],
    sequence: Annotated[int, typer.Option("--sequence", help="The process event's sequence number.")],
    input_text: Annotated[str, typer.Option(
        "--input", metavar="TEXT|@FILE|-", help="The model-facing wake text: the text, @FILE for a file's, - for stdin.")],
    wake_id: Annotated[Optional[str], typer.Option("--wake-id", help="[default: PROCESS_ID:SEQUENCE]")] = None,
    event_type: Annotated[str, typer.Option("--event-type")] = "process.wake",
    scope_id: Annotated[Optional[str], typer.Option("--scope-id", help="[default: session:SESSION]")] = None,
    dedupe_key: Annotated[Optional[str], typer.Option("--dedupe-key", help="[default: the wake id]")] = None,
    delay: DelayOpt = None,
    available_at: AvailableAtOpt = None,
    strict: ReplayStrictOpt = False,
    store: StoreOpt = "turnq.json",
    now: NowOpt = None,
    json_out: JsonOpt = False,
    lock_timeout: LockTimeoutOpt = "10s",
) -> None:
    """Enqueue a process wake (exclusive, earliest safe boundary; one batch per process event)."""
    option_u64(sequence, "--sequence")
    if delay is not None and available_at is not None:
        raise InvalidInput("--delay cannot be combined with --available-at")
    queue = open_queue(store, now, lock_timeout)
    result = queue.wake(
        session, process_id, sequence, read_arg_text(input_text, "--input"), wake_id=wake_id, event_type=event_type, scope_id=scope_id,
        dedupe_key=dedupe_key, strict=strict,
        delay_ms=option_duration(delay, "--delay") if delay is not None else 0,
        available_at_ms=option_time(available_at, "--available-at") if available_at is not None else None,
    )
    report_enqueued([result], json_out)


KeyOpt = Annotated[Optional[str], typer.Option(
    "--idempotency-key", help="Same key, same command: enqueued once. [default: random; fixed under --now]")]


@app.command("reset-session", rich_help_panel="Put work in")
def reset_session(
    session: Annotated[str, typer.Argument(help="Session to reset.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (shown to the runtime).")],
    idempotency_key: KeyOpt = None,
    strict: ReplayStrictOpt = False,
    store: StoreOpt = "turnq.json",
    now: NowOpt = None,
    json_out: JsonOpt = False,
    lock_timeout: LockTimeoutOpt = "10s",
) -> None:
    """Enqueue a reset_session command (after the current turn commits, exclusive)."""
    _check_key(idempotency_key)
    result = open_queue(store, now, lock_timeout).reset_session(
        session, reason, idempotency_key=idempotency_key, strict=strict)
    _report_command(result, json_out)


@app.command("refresh-tools", rich_help_panel="Put work in")
def refresh_tools(
    session: Annotated[str, typer.Argument(help="Session whose tool surface changed.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (shown to the runtime).")],
    expected_generation: Annotated[Optional[int], typer.Option("--expected-generation")] = None,
    idempotency_key: KeyOpt = None,
    strict: ReplayStrictOpt = False,
    store: StoreOpt = "turnq.json",
    now: NowOpt = None,
    json_out: JsonOpt = False,
    lock_timeout: LockTimeoutOpt = "10s",
) -> None:
    """Enqueue a refresh_tool_surface command (after the current turn commits, exclusive)."""
    _check_key(idempotency_key)
    option_u64(expected_generation, "--expected-generation")
    result = open_queue(store, now, lock_timeout).refresh_tools(
        session, reason, expected_generation=expected_generation, idempotency_key=idempotency_key, strict=strict)
    _report_command(result, json_out)


def _check_key(key: str | None) -> None:
    if key is not None and not key.strip():
        raise InvalidInput("--idempotency-key: the key is blank")


def _report_command(result: EnqueueResult, json_out: bool) -> None:
    _note_replay(result)
    if json_out:
        output.emit_json(result.receipt.to_wire())
        return
    from .. import render

    output.render_or_json(lambda: render.command_receipt(result), result.receipt.to_wire)
