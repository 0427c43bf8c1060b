"""Rich output of the store commands (`turnq migrate`)."""

from __future__ import annotations

from rich import box
from rich.table import Table

from .migrate import Migration
from .render import _console


def migrated(done: Migration) -> None:
    console = _console()
    console.print(f"[bold]Migrated[/bold] {done.source} → {done.target}")
    table = Table(box=box.SIMPLE_HEAVY)
    table.add_column("copied")
    table.add_column("count", justify="right")
    for name, count in (("sessions", done.sessions), ("batches", done.batches), ("live claims", done.claims),
                        ("tombstones", done.tombstones), ("next enqueue_seq", done.next_enqueue_seq)):
        table.add_row(name, str(count))
    console.print(table)
    if done.replaced_batches or done.replaced_tombstones:
        console.print(f"Replaced what the target held: {done.replaced_batches} batch(es), "
                      f"{done.replaced_tombstones} tombstone(s).")
    if done.backup is not None:
        from rich.text import Text

        console.print(Text(f"The target's old content was kept in {done.backup}"))
    if done.verified:
        console.print("Verified: both stores read back hold the same queue.")
        return
    console.print(f"[bold red]Verification failed[/bold red]: {len(done.differences)} difference(s) "
                  "between the stores read back:")
    for change in done.differences[:20]:
        console.print(f"  {change['change']} {change['session_id']} {change['batch_id']}".rstrip())
