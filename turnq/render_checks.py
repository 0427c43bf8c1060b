"""Human output of the fixture and check commands (import, expect, diff).

Only the CLI imports this module (and so Rich); `--json` output never does. Strings
are literal (the console parses no markup) and data is escaped with `esc`, as in `turnq.render`.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from .render import _console, esc, when


def imported(result: Any) -> None:
    console = _console()
    console.print(f"Imported into {esc(result.location)} at {when(result.now_ms)}: "
                  f"{len(result.results)} draft(s), {len(result.claims)} claim(s), "
                  f"{result.batches} exact batch(es), {result.tombstones} tombstone(s)")
    if len(result.results) > MANY:
        console.print(_per_session(result.results))
    if result.results:
        table = Table(box=None, padding=(0, 2))
        for column in ("at", "session", "seq", "outcome", "batch"):
            table.add_column(column)
        for where, r in result.results[:FIRST if len(result.results) > MANY else MANY]:
            table.add_row(esc(where), esc(r.batch.session_id), str(r.batch.enqueue_seq), r.outcome, esc(r.batch.batch_id))
        console.print(table)
        _and_more(console, len(result.results), "draft(s)")
    for where, claim, done in result.claims[:FIRST if len(result.claims) > MANY else MANY]:
        state = "completed" if done else f"held by {esc(claim.owner_id)} until {when(claim.expires_at_epoch_ms)}"
        console.print(Text(f"{esc(where)}: claim {esc(claim.claim_id)} (fencing {claim.fencing_token}) of "
                           f"{len(claim.batches)} batch(es), {state}"))
    _and_more(console, len(result.claims), "claim(s)")


#: A result longer than MANY rows is summarised: counts per session, then the FIRST rows.
MANY, FIRST = 30, 10


def _per_session(results: list[Any]) -> Table:
    counts: dict[str, dict[str, int]] = {}
    for _where, r in results:
        row = counts.setdefault(r.batch.session_id, {})
        row[r.outcome] = row.get(r.outcome, 0) + 1
    outcomes = sorted({outcome for row in counts.values() for outcome in row})
    table = Table(box=None, padding=(0, 2), title="Drafts per session", title_justify="left")
    for column in ("session", *outcomes):
        table.add_column(column, justify="left" if column == "session" else "right")
    for session, row in counts.items():
        table.add_row(esc(session), *(str(row.get(outcome, 0)) for outcome in outcomes))
    return table


def _and_more(console: Any, count: int, what: str) -> None:
    if count > MANY:
        console.print(Text(f"… and {count - FIRST} more {what} (--json lists every one)"))


def expectation(report: Any) -> None:
    console = _console()
    table = Table(box=None, padding=(0, 2))
    for column in ("check", "expected", "actual", ""):
        table.add_column(column, overflow="fold")
    for check in report.checks:
        mark = Text("ok", style="green") if check.ok else Text("FAILED", style="bold red")
        table.add_row(esc(check.name), _short_ids(esc(check.expected_text())), _short_ids(esc(check.actual_text())),
                      mark)
    console.print(table)
    if any("qwb:" in c.expected_text() + c.actual_text() for c in report.checks):
        console.print("ids shortened: --json shows them whole")
    failed = [c for c in report.checks if not c.ok]
    if failed:
        console.print(f"{len(failed)} of {len(report.checks)} check(s) failed for session {esc(report.session_id)}")
    else:
        console.print(f"all {len(report.checks)} check(s) hold for session {esc(report.session_id)}")


def difference(result: Any) -> None:
    console = _console()
    if result.equal:
        console.print(f"no differences between {esc(result.a)} and {esc(result.b)}")
        return
    table = Table(box=None, padding=(0, 2))
    for column in ("session", "batch", "change", "details"):
        table.add_column(column, overflow="fold")
    for change in result.changes:
        table.add_row(esc(change.session_id), _short_ids(esc(change.batch_id)), esc(change.kind),
                      esc(change.details_text()))
    console.print(f"{esc(result.a)} → {esc(result.b)}: {len(result.changes)} difference(s)")
    console.print(table)


def _short_ids(text: str) -> str:
    """Batch ids cut to `qwb:` and 14 hex digits (a unique prefix in practice)."""
    import re

    return re.sub(r"qwb:([0-9a-f]{14})[0-9a-f]{50}", r"qwb:\1…", text)
