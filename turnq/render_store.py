"""Rich output of the store commands (`turnq migrate`)."""

from __future__ import annotations

from rich import box
from rich.table import Table
from rich.text import Text

from .clock import format_duration
from .migrate import Migration
from .render import _console, esc


def migrated(done: Migration) -> None:
    console = _console()
    console.print(Text.assemble(("Migrated", "bold"), f" {esc(done.source)} → {esc(done.target)}"))
    table = Table(box=box.SIMPLE_HEAVY)
    table.add_column("copied")
    table.add_column("count", justify="right")
    retention = done.tombstone_retention_ms
    for name, count in (("sessions", done.sessions), ("batches", done.batches), ("live claims", done.claims),
                        ("tombstones", done.tombstones), ("next enqueue_seq", done.next_enqueue_seq),
                        ("tombstone retention", "off" if retention is None else format_duration(retention))):
        table.add_row(name, str(count))
    console.print(table)
    if done.replaced_batches or done.replaced_tombstones:
        console.print(f"Replaced what the target held: {done.replaced_batches} batch(es), "
                      f"{done.replaced_tombstones} tombstone(s).")
    if done.backup is not None:
        console.print(Text(f"The target's old content was kept in {esc(done.backup)}"))
    if done.verified:
        console.print("Verified: both stores read back hold the same queue.")
        return
    console.print(Text.assemble(("Verification failed", "bold red"), f": {len(done.differences)} difference(s) "
                                "between the stores read back:"))
    for change in done.differences[:20]:
        fields = [str(change[key]) for key in ("change", "session_id", "batch_id") if change[key]]
        console.print(esc("  " + " ".join(fields)))


def settings(rows: list[tuple[str, str, str]], *, header: bool) -> None:
    """`turnq config`: setting, value, what it means."""
    table = Table(box=None, show_header=header, pad_edge=False)
    for column in ("setting", "value", "meaning"):
        table.add_column(column, overflow="fold")
    for name, value, meaning in rows:
        table.add_row(Text(name), Text(value), Text(meaning))
    _console().print(table)
