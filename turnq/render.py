"""Human output: Rich tables and panels that explain the queue's state.

Only the CLI imports this module (and so Rich); `--json` output never does.

Data is shown literally: the consoles here never parse markup or emoji codes in
strings (a queued `[b]` or `[/]` is text, not a style), every value that comes from
data goes through `lit`/`esc` (control characters shown as `\x1b`, `\n`), and styled
lines are built with `Text.assemble`, never with markup strings. As a last guard the
console escapes any control character left in what it writes (`_Console`).
"""

from __future__ import annotations

import json
import re
from typing import Any

from rich import box
from rich.console import Console, Group
from rich.highlighter import JSONHighlighter
from rich.panel import Panel
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from .images import summary as image_summary
from .clock import format_duration, format_time
from .engine import EnqueueResult
from .materialize import CheckpointWork, TurnWork, materialize
from .models import (
    ImageRefItem,
    MergeGroup,
    ProcessWakePayload,
    QueuedWorkBatch,
    QueuedWorkClaim,
    QueuedWorkCompletion,
    SessionCommandPayload,
    TextItem,
    Tombstone,
    TurnInputPayload,
)
from .textsafe import escape_control
from .views import BatchView, Overview, SessionView

STATE_STYLE = {"ready": "green", "delayed": "yellow", "held": "cyan", "lease_expired": "red"}
DELIVERY_SHORT = {"earliest_safe_boundary": "earliest", "after_current_turn_commit": "after commit"}
BOUNDARY_SHORT = {"idle": "idle", "active_turn_checkpoint": "a checkpoint"}
BOUNDARY_TITLE = {"idle": "idle boundary", "active_turn_checkpoint": "active-turn checkpoint"}


class _Console(Console):
    """A console that takes strings literally (no markup, no emoji codes, no highlighting)."""

    def __init__(self, **options: Any) -> None:
        options.setdefault("highlight", False)
        super().__init__(markup=False, emoji=False, **options)

    def on_broken_pipe(self) -> None:
        # Rich would exit 1 on its own; let the CLI's one error map decide.
        raise BrokenPipeError

    def _render_buffer(self, buffer: Any) -> str:
        # The last guard: a control character that reached a segment (a renderer forgot `lit`)
        # is written escaped, never raw. Rich's own cursor moves are `control` segments.
        return super()._render_buffer(
            segment if segment.control else Segment(escape_control(segment.text, keep_newlines=True),
                                                    segment.style, segment.control)
            for segment in buffer)

    def print(self, *objects: Any, **kwargs: Any) -> None:
        if not self.is_terminal and "soft_wrap" not in kwargs and objects and \
                all(isinstance(o, (str, Text)) for o in objects):
            # A message piped or redirected stays one line per line: hard-wrapping it at the
            # width (80 without COLUMNS) would break sentences and pad them with spaces.
            kwargs["soft_wrap"] = True
        super().print(*(fit_table(self, o) if isinstance(o, Table) else o for o in objects), **kwargs)


def fit_table(console: Console, table: Table) -> Table:
    """Leave out columns from the right until the table fits the width it is given, and say so in
    its caption (Rich would squeeze them to nothing without a word)."""
    left_out = []
    while len(table.columns) > 1 and _least_width(console, table) > console.width:
        column = table.columns.pop()
        left_out.append(str(column.header))
    if left_out:
        note = (f"{len(left_out)} column(s) left out at {console.width} columns: {', '.join(reversed(left_out))} "
                "(a wider terminal, COLUMNS=N or --json shows them)")
        table.caption = f"{table.caption}\n{note}" if table.caption else note
        table.caption_justify = "left"
    return table


def _least_width(console: Console, table: Table) -> int:
    """The narrowest the table can be with every column readable: a no-wrap column at its full
    width, any other at its longest word or a few characters. (Rich's own minimum ignores no_wrap
    and then squeezes such columns to nothing.) Rich's column measure is private: without it, nothing is left out."""
    measure = getattr(table, "_measure_column", None)
    extra = getattr(table, "_extra_width", None)
    if measure is None or not isinstance(extra, int):
        return 0
    widths = [measure(console, console.options, column) for column in table.columns]
    # a wrapping column can also fold a long word (an id): a few characters keep it readable
    return extra + sum(m.maximum if c.no_wrap else min(m.minimum, _READABLE) for c, m in zip(table.columns, widths))


_READABLE = 10


def _console() -> Console:
    return _Console(soft_wrap=False)


def esc(value: Any) -> str:
    """A data value as one line for people: control characters (newlines too) escaped."""
    return escape_control(str(value))


def lit(value: Any, style: str = "", *, multiline: bool = False) -> Text:
    """A data value as literal Rich text: never markup, control characters escaped
    (newlines kept as line breaks with `multiline`)."""
    return Text(escape_control(str(value), keep_newlines=multiline), style=style)


def _indented(value: str, indent: str = "  ") -> Text:
    """A multi-line data text, each line indented."""
    return Text(indent + escape_control(value, keep_newlines=True).replace("\n", "\n" + indent))


# ----------------------------------------------------------------- small pieces


def when(ms: int, now_ms: int | None = None) -> str:
    """`2026-01-01T00:15:00.000Z (in 15m)` — absolute, and relative when `now` is known."""
    text = format_time(ms)
    if now_ms is None:
        return text
    if ms > now_ms:
        return f"{text} (in {format_duration(ms - now_ms)})"
    if ms < now_ms:
        return f"{text} ({format_duration(now_ms - ms)} ago)"
    return f"{text} (now)"


def merge_text(key: Any) -> str:
    return f"group:{esc(key.group)}" if isinstance(key, MergeGroup) else str(key)


def _clip(text: str, width: int = 40) -> str:
    """One line of at most `width` characters, control characters escaped (never cut in half)."""
    one_line = esc(text)
    if len(one_line) <= width:
        return one_line
    shown: list[str] = []
    used = 0
    for char in text:
        piece = esc(char)
        if used + len(piece) > width - 1:
            break
        shown.append(piece)
        used += len(piece)
    return "".join(shown) + "…"


def _fields_grid() -> Table:
    """Two columns, name and value; long values (ids, tokens) fold rather than vanish."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    return grid


def _age(ms: int) -> str:
    return "just now" if ms <= 0 else f"{format_duration(ms)} ago"


def item_summary(batch: QueuedWorkBatch) -> str:
    parts = []
    for item in batch.items:
        payload = item.payload
        if isinstance(payload, TurnInputPayload):
            for entry in payload.input.items:
                if isinstance(entry, TextItem):
                    parts.append(f'"{_clip(entry.text)}"')
                elif isinstance(entry, ImageRefItem):
                    parts.append(esc(image_summary(entry.id, payload.input.image_blobs.get(entry.id))))
        elif isinstance(payload, ProcessWakePayload):
            wake = payload.wake
            parts.append(f"wake {esc(wake.process_id)} {esc(wake.event_type)} #{wake.sequence}")
        elif isinstance(payload, SessionCommandPayload):
            parts.append(f"{payload.command.kind}: {_clip(payload.command.reason, 30)}")
    return "; ".join(parts)


def state_text(view: BatchView, now_ms: int, *, wide: bool = False) -> Text:
    """`held by w1 (14m left)`; wide terminals add the absolute time."""
    lease = view.lease

    def at(ms: int) -> str:
        return f" until {format_time(ms)}" if wide else ""

    if view.state == "held" and lease is not None:
        label = f"held by {esc(lease.owner_id)}{at(lease.expires_at_ms)} ({format_duration(lease.expires_at_ms - now_ms)} left)"
    elif view.state == "delayed":
        label = f"delayed{at(view.batch.available_at_ms)} ({format_duration(view.batch.available_at_ms - now_ms)} left)"
    elif view.state == "lease_expired" and lease is not None:
        label = f"lease of {esc(lease.owner_id)} expired {_age(now_ms - lease.expires_at_ms)}: claimable"
    else:
        label = "ready"
    return Text(label, style=STATE_STYLE[view.state])


WIDE = 180  # from this many columns on, ids are shown whole and policies one per column


def short_id(batch_id: str, console: Console) -> str:
    """`qwb:` + 10 hex digits in a narrow terminal; any unique prefix works in commands."""
    return esc(batch_id if console.width >= WIDE else batch_id[:14] + "…")


def batch_table(console: Console, views: list[BatchView] | list[QueuedWorkBatch], now_ms: int | None = None,
                title: str | None = None, *, caption: bool = False) -> Table:
    """One row per batch. Wide terminals get a column per policy; narrow ones a combined one."""
    wide = console.width >= WIDE
    table = Table(title=title, box=box.SIMPLE_HEAVY, title_justify="left",
                  caption=None if wide or not caption else
                  "ids shortened: a unique prefix works in commands; --json shows them whole",
                  caption_justify="left")
    table.add_column("seq", justify="right")
    table.add_column("batch", no_wrap=wide, overflow="fold")
    if wide:
        table.add_column("source key", overflow="fold")
        for name in ("delivery", "slot", "merge"):
            table.add_column(name, no_wrap=True)
    else:
        table.add_column("policy", overflow="fold")
    if now_ms is not None:
        table.add_column("state", overflow="fold")
        if wide:
            table.add_column("fence", justify="right")
    table.add_column("items", overflow="fold")
    for entry in views:
        batch = entry.batch if isinstance(entry, BatchView) else entry
        ident = short_id(batch.batch_id, console)
        row: list[Any] = [str(batch.enqueue_seq), ident if wide or not batch.source_key else
                          f"{ident}\nkey {esc(batch.source_key)}"]
        if wide:
            row += [esc(batch.source_key or ""), batch.delivery_policy, batch.slot_policy, merge_text(batch.merge_key)]
        else:
            row.append(_policy(batch))
        if now_ms is not None and isinstance(entry, BatchView):
            state = state_text(entry, now_ms, wide=wide)
            if wide:
                row += [state, str(entry.fencing_counter)]
            else:  # one column less: the fencing counter goes under the state
                row.append(Text.assemble(state, Text(f"\nfence {entry.fencing_counter}", style="dim")))
        row.append(item_summary(batch))
        table.add_row(*row)
    return table


def _policy(batch: QueuedWorkBatch) -> str:
    return f"{DELIVERY_SHORT[batch.delivery_policy]}, {batch.slot_policy}, {merge_text(batch.merge_key)}"


# ----------------------------------------------------------------- enqueue


def enqueued(results: list[EnqueueResult]) -> None:
    console = _console()
    for result in results:
        batch = result.batch
        verb = {"enqueued": "Enqueued into", "replayed": "Already queued (a replay; nothing written) in",
                "replayed_tombstone": "Already settled (a replay; nothing enqueued) in"}[result.outcome]
        console.print(Text.assemble((verb, "bold"), " session ", lit(batch.session_id, "bold"), ":"))
        console.print(batch_table(console, [batch]))
        if result.outcome == "enqueued" and batch.available_at_ms > batch.enqueued_at_ms:
            console.print(Text(f"Claimable from {when(batch.available_at_ms, batch.enqueued_at_ms)}."))


def command_receipt(result: EnqueueResult) -> None:
    receipt = result.receipt
    verb = "Enqueued" if result.outcome == "enqueued" else "Already queued (replay):"
    _console().print(Text.assemble((verb, "bold"), f" {_command_of(result.batch)} for session ",
                                   lit(receipt.session_id, "bold"), f"\n  batch {receipt.batch_id}\n  source key ",
                                   lit(receipt.source_key)))


def _command_of(batch: QueuedWorkBatch) -> str:
    payload = batch.items[0].payload
    return payload.command.kind if isinstance(payload, SessionCommandPayload) else "command"


# ----------------------------------------------------------------- claims


def claim(made: QueuedWorkClaim | None, session: str, boundary: str, *, dry_run: bool, exact: bool,
          why: str | None = None) -> None:
    console = _console()
    if made is None:
        why = why or ("the named batches are not exactly what a claim would take now" if exact else
                      "nothing claimable")
        console.print(Text.assemble("Nothing to claim in session ", lit(session, "bold"),
                                    f" at the {BOUNDARY_TITLE[boundary]}: ", lit(why),
                                    ". See 'turnq explain ", lit(session), "'."))
        return
    title = "Would claim (dry run)" if dry_run else "Claimed"
    header = _fields_grid()
    header.add_row("claim id", lit(made.claim_id))
    header.add_row("owner", lit(made.owner_id))
    header.add_row("fencing token", str(made.fencing_token))
    header.add_row("lease token", lit(made.lease_token))
    header.add_row("expires", f"{when(made.expires_at_epoch_ms, made.claimed_at_epoch_ms)}")
    console.print(Panel(header, title=Text(f"{title}: {len(made.batches)} batch(es) from {esc(session)} at "
                                           f"{BOUNDARY_SHORT[boundary]}"), title_align="left", expand=False))
    console.print(batch_table(console, made.batches))
    console.print(work_panel(materialize(made.batches, boundary), boundary))


def completed(done: QueuedWorkCompletion) -> None:
    _console().print(Text.assemble(("Completed", "bold"), f" claim {esc(done.claim_id)}: {len(done.batch_ids)} "
                                   "batch(es) removed from session ", lit(done.session_id, "bold"),
                                   "\n  " + "\n  ".join(esc(b) for b in done.batch_ids)))


def renewed(made: QueuedWorkClaim) -> None:
    _console().print(Text.assemble(("Renewed", "bold"), f" claim {esc(made.claim_id)} ({len(made.batches)} "
                                   f"batch(es)): lease now expires {format_time(made.expires_at_epoch_ms)}"))


def released(ref: Any, batch_ids: list[str]) -> None:
    if not batch_ids:
        _console().print(Text(f"Claim {esc(ref.claim_id)} held nothing any more: no batch was released."))
        return
    _console().print(Text.assemble(("Abandoned", "bold"), f" claim {esc(ref.claim_id)}: {len(batch_ids)} batch(es) "
                                   "claimable again\n  " + "\n  ".join(esc(b) for b in batch_ids)))


def cancelled(batch: QueuedWorkBatch) -> None:
    console = _console()
    console.print(Text.assemble(("Cancelled", "bold"), " in session ", lit(batch.session_id, "bold"), ":"))
    console.print(batch_table(console, [batch]))


def vacuumed(removed: list[Tombstone], *, dry_run: bool = False) -> None:
    console = _console()
    if not removed:
        console.print("No tombstone to drop.")
        return
    if dry_run:
        console.print(Text(f"Would drop {len(removed)} tombstone(s) (dry run: nothing written).", style="bold"))
    else:
        console.print(Text.assemble((f"Dropped {len(removed)} tombstone(s)", "bold"),
                                    "; their source keys are free again."))
    console.print(tombstone_table(console, removed))


def tombstone_table(console: Console, tombstones: list[Tombstone], title: str | None = None) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAVY, title_justify="left")
    table.add_column("source key", overflow="fold")
    table.add_column("batch", overflow="fold")
    table.add_column("outcome")
    table.add_column("settled")
    for tomb in tombstones:
        table.add_row(esc(tomb.source_key), short_id(tomb.batch_id, console), tomb.outcome, format_time(tomb.settled_at_ms))
    return table


# ----------------------------------------------------------------- materialised work


def work_panel(work: TurnWork | CheckpointWork, boundary: str) -> Panel:
    parts: list[Any] = []
    if isinstance(work, TurnWork):
        if work.session_command is not None:
            command = work.session_command
            parts.append(Text(f"Exclusive session command: {command.kind} — {esc(command.reason)}",
                              style="bold magenta"))
        turn_input = work.turn_input
        if turn_input.items:
            parts.append(Text("Turn input:", style="bold"))
            for entry in turn_input.items:
                if isinstance(entry, TextItem):
                    parts.append(_indented(entry.text))
                else:
                    blob = turn_input.image_blobs.get(entry.id)
                    line = image_summary(entry.id, blob) + (", dropped" if blob is None else "")
                    parts.append(Text(f"  [{esc(line)}]", style="dim"))
        title = "What the runtime gets at the idle boundary"
    else:
        for message in work.messages:
            images = f" (+{len(message.images)} image(s))" if message.images else ""
            parts.append(Text(f"User message{images}:", style="bold"))
            parts.append(_indented(message.content))
        title = "What is injected at an active-turn checkpoint"
    for cause in work.turn_causes:
        parts.append(Text(f"Turn cause {esc(cause.id)}:", style="bold"))
        parts.append(_indented(cause.text))
    if not parts:
        parts.append(Text("(nothing for the model)", style="dim"))
    return Panel(Group(*parts), title=title, title_align="left", expand=False)


# ----------------------------------------------------------------- inspect


def view(shown: Overview | SessionView | BatchView, console: Console | None = None) -> None:
    """Print a view of `inspect` (on `console`: `turnq watch` draws into its own)."""
    if isinstance(shown, Overview):
        overview(shown, console)
    elif isinstance(shown, SessionView):
        session(shown, console)
    else:
        batch_detail(shown, console)


def overview(shown: Overview, console: Console | None = None) -> None:
    console = console or _console()
    if not shown.sessions:
        console.print(f"The store is empty (at {format_time(shown.now_ms)}).")
        return
    table = Table(title=f"Sessions at {format_time(shown.now_ms)}", box=box.SIMPLE_HEAVY, title_justify="left")
    for name in ("session", "ready", "delayed", "held", "lease expired", "tombstones", "oldest"):
        table.add_column(name, justify="left" if name in ("session", "oldest") else "right", overflow="fold")
    for s in shown.sessions:
        age = "" if s.oldest_enqueued_at_ms is None else _age(shown.now_ms - s.oldest_enqueued_at_ms)
        table.add_row(esc(s.session_id), str(s.ready), str(s.delayed), str(s.held), str(s.lease_expired),
                      str(s.tombstones), age)
    console.print(table)
    _retention(console, shown.tombstone_retention_ms)


def _retention(console: Console, retention_ms: int | None) -> None:
    """The store's tombstone retention, when one is set (the default, keep until vacuum, says nothing)."""
    if retention_ms is not None:
        console.print(Text(f"Tombstone retention: {format_duration(retention_ms)} "
                           "(older tombstones no longer replay; see turnq config)"))


def session(shown: SessionView, console: Console | None = None) -> None:
    console = console or _console()
    title = (f"Session {esc(shown.session_id)} at {format_time(shown.now_ms)}: {len(shown.batches)} batch(es), "
             f"{shown.tombstone_count} tombstone(s)")
    if shown.batches:
        console.print(batch_table(console, shown.batches, shown.now_ms, title=title, caption=True))
    else:
        console.print(title)
    for boundary in ("idle", "active_turn_checkpoint"):
        run = shown.next_claim[boundary]
        if not run:
            console.print(Text.assemble((f"Next claim at the {BOUNDARY_TITLE[boundary]}:", "bold"),
                                        f" nothing: {_why_nothing(shown)}"))
            continue
        seqs = ", ".join(f"seq {b.enqueue_seq}" for b in run)
        console.print(Text.assemble((f"Next claim at the {BOUNDARY_TITLE[boundary]}:", "bold"),
                                    f" {len(run)} batch(es) ({seqs})"))
        work = shown.materialized[boundary]
        if work is not None:
            console.print(work_panel(work, boundary))
    if shown.tombstone_list is not None:
        console.print(tombstone_table(console, shown.tombstone_list, title="Tombstones") if shown.tombstone_list
                      else "No tombstones.")
    _retention(console, shown.tombstone_retention_ms)


def _why_nothing(shown: SessionView) -> str:
    head = next((v for v in shown.batches if v.state in ("ready", "lease_expired")), None)
    if head is not None and head.batch.delivery_policy == "after_current_turn_commit":
        return f"the head (seq {head.batch.enqueue_seq}) is after_current_turn_commit and waits for the idle boundary"
    if not shown.batches:
        return "the session has no batches"
    counts = {state: sum(v.state == state for v in shown.batches) for state in ("held", "delayed")}
    return f"no batch is claimable now ({counts['held']} held, {counts['delayed']} delayed)"


def batch_detail(shown: BatchView, console: Console | None = None) -> None:
    console = console or _console()
    batch = shown.batch
    grid = _fields_grid()
    grid.add_row("batch", lit(batch.batch_id))
    grid.add_row("session", lit(batch.session_id))
    grid.add_row("seq", str(batch.enqueue_seq))
    grid.add_row("source key", lit(batch.source_key) if batch.source_key is not None else "(none)")
    grid.add_row("delivery", batch.delivery_policy)
    grid.add_row("slot", batch.slot_policy)
    grid.add_row("merge key", merge_text(batch.merge_key))
    grid.add_row("available at", format_time(batch.available_at_ms) if batch.available_at_ms else "at once")
    grid.add_row("enqueued at", format_time(batch.enqueued_at_ms))
    grid.add_row("state", Text(shown.state, style=STATE_STYLE[shown.state]))
    grid.add_row("fencing counter", str(shown.fencing_counter))
    if shown.lease is not None:
        lease = shown.lease
        grid.add_row("claim", lit(f"{lease.claim_id} by {lease.owner_id}, token {lease.lease_token}"))
        grid.add_row("lease", f"claimed {format_time(lease.claimed_at_ms)}, expires {format_time(lease.expires_at_ms)}")
    console.print(Panel(grid, title=Text(f"Batch {batch.enqueue_seq}"), title_align="left", expand=False))
    for index, item in enumerate(batch.items):
        console.print(Panel(payload_json(json.dumps(_payload_for_people(item.payload))),
                            title=Text(f"item {index}: {item.payload.type}"), title_align="left", expand=False))


def _payload_for_people(payload: Any) -> Any:
    """The payload's wire form, each image blob (a list of byte values) as its one-line summary."""
    if not isinstance(payload, TurnInputPayload) or not payload.input.image_blobs:
        return payload.to_wire()
    blobs = payload.input.image_blobs
    bare = payload.model_copy(update={"input": payload.input.model_copy(update={"image_blobs": {}})})
    data = bare.to_wire()
    data["input"]["image_blobs"] = {key: image_summary(key, blobs[key]) for key in sorted(blobs)}
    return data


def payload_json(wire_json: str) -> Text:
    """A payload's JSON, indented and highlighted. json.dumps escapes C0 in strings; DEL and
    C1 become JSON escapes (`\\u009b`) too, so the text is still the JSON of the payload."""
    pretty = json.dumps(json.loads(wire_json), indent=2, ensure_ascii=False)
    pretty = re.sub("[\x7f-\x9f]", lambda m: f"\\u{ord(m.group()):04x}", pretty)
    text = JSONHighlighter()(Text(pretty))
    text.no_wrap, text.overflow = True, None
    return text
