"""Human output of the debugging commands: explain, log, watch, doctor (Rich).

Only the CLI imports this module; `--json` output never does. Data (session ids,
owners, reasons, event types, file names) is shown literally, as in `turnq.render`.
"""

from __future__ import annotations

import io
from typing import Any

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from . import render
from .render import esc, lit
from .clock import format_time
from .models import BOUNDARIES

CODE_STYLE = {"claimable": "green", "held": "cyan", "delayed": "yellow"}
OUTCOME_STYLE = {"ok": "green", "refused": "red"}


def _console() -> Console:
    return render._console()


def _short(batch_id: str) -> str:
    return esc(batch_id[:14] + "…" if len(batch_id) > 15 else batch_id)


def _shorten_ids(text: str, ids: list[str]) -> str:
    for full in ids:
        text = text.replace(esc(full), _short(full))
    return text


# ----------------------------------------------------------------- explain


def explanation(shown: Any) -> None:
    console = _console()
    wide = console.width >= render.WIDE
    all_ids = [b.batch_id for b in shown.batches] + [i for run in shown.runs.values() for i in run]
    console.print(Text.assemble(("Session ", "bold"), lit(shown.session_id, "bold"),
                                f" at {format_time(shown.now_ms)}"))
    for boundary in BOUNDARIES:
        text = esc(shown.summary[boundary])
        console.print(Text(f"  {render.BOUNDARY_TITLE[boundary]}: {text if wide else _shorten_ids(text, all_ids)}"))
    if not shown.batches:
        return
    table = Table(box=box.SIMPLE_HEAVY, show_lines=False)
    table.add_column("seq", justify="right")
    table.add_column("batch", overflow="fold", no_wrap=wide)
    for boundary in BOUNDARIES:
        table.add_column(f"at the {render.BOUNDARY_TITLE[boundary]}", overflow="fold", ratio=1)
    for entry in shown.batches:
        row: list[Any] = [str(entry.enqueue_seq), esc(entry.batch_id) if wide else _short(entry.batch_id)]
        for boundary in BOUNDARIES:
            reason = entry.reasons[boundary]
            text = esc(reason.text) if wide else _shorten_ids(esc(reason.text), all_ids)
            row.append(Text.assemble((esc(reason.code), CODE_STYLE.get(reason.code, "magenta")), f"\n{text}"))
        table.add_row(*row)
    console.print(table)


# ----------------------------------------------------------------- log


def _details(entry: dict[str, Any], wide: bool = True) -> str:
    parts = []
    for key, label in (("source_key", "key"), ("claim_id", "claim"), ("owner_id", "owner"),
                       ("fencing_token", "token"), ("boundary", "at"), ("reason", "")):
        if entry.get(key) is not None and not (key == "claim_id" and str(entry[key]) in str(entry.get("reason"))):
            # (not .strip(): it would also eat data's \x1c-\x1f, which Python counts as whitespace)
            parts.append(f"{label} {entry[key]}" if label else str(entry[key]))
    if entry.get("changes"):
        parts.append("; ".join(str(change) for change in entry["changes"]))
    if entry.get("expires_at_ms") is not None:
        until = format_time(entry["expires_at_ms"])
        parts.append(f"until {until if wide else until[11:]}")
    text = esc(", ".join(parts))
    return text if wide else _shorten_ids(text, [str(b) for b in entry.get("batch_ids") or []])


def log_table(entries: list[dict[str, Any]], session: str | None = None) -> None:
    console = _console()
    if not entries:
        console.print("No log entries.")
        return
    wide = console.width >= render.WIDE
    times = [format_time(entry.get("at_ms", 0)) for entry in entries]
    days = sorted({t[:10] for t in times})
    title = "Audit log" + (f" of session {esc(session)}" if session else "")
    if not wide:  # the date goes in the title, the column keeps the time of day
        title += f", {days[0]}" + (f" to {days[-1]}" if len(days) > 1 else "") + " (UTC)"
    table = Table(title=Text(title), title_justify="left", box=box.SIMPLE_HEAVY)
    columns = ["id", "at", "op", "batches", "outcome", "details"]
    if session is None:
        columns.insert(3, "session")
    for name in columns:
        table.add_column(name, justify="right" if name == "id" else "left", overflow="fold",
                         no_wrap=name in ("id", "at", "op", "batches", "outcome"),
                         ratio=1 if name == "details" else None)
    for at, entry in zip(times, entries):
        batches = entry.get("batch_ids") or []
        outcome = str(entry.get("outcome"))
        row: list[Any] = [esc(entry.get("id")), at if wide else at[11:], esc(entry.get("op"))]
        if session is None:
            row.append(esc(entry.get("session_id") or "*"))
        row += ["\n".join(esc(b) if wide else _short(str(b)) for b in batches),
                lit(outcome, OUTCOME_STYLE.get(outcome, "yellow")), _details(entry, wide)]
        table.add_row(*row)
    console.print(table)


def log_lines(entries: list[dict[str, Any]], console: Console | None = None) -> None:
    """One line per entry, for --follow (a table cannot grow)."""
    console = console or _console()
    for entry in entries:
        batches = " ".join(_short(str(b)) for b in entry.get("batch_ids") or [])
        outcome = str(entry.get("outcome"))
        line = Text.assemble(f"#{esc(entry.get('id'))} {format_time(entry.get('at_ms', 0))} ",
                             lit(entry.get("op"), "bold"), f" {esc(entry.get('session_id') or '*')} {batches} ",
                             lit(outcome, OUTCOME_STYLE.get(outcome, "yellow")))
        details = _details(entry)
        if details:
            line.append(f" ({details})")
        console.print(line, soft_wrap=True)


# ----------------------------------------------------------------- watch


def watch_frame(view: Any, location: str, width: int, color_system: Any) -> Group:
    """The inspect view, drawn off-screen, under a header line: one frame of `turnq watch`."""
    buffer = io.StringIO()
    canvas = render._Console(file=buffer, width=width, force_terminal=True, color_system=color_system,
                             highlight=False, soft_wrap=False)
    render.view(view, canvas)
    header = Text.assemble(("turnq watch", "bold"), f"  {esc(location)}  at {format_time(view.now_ms)}  ",
                           ("Ctrl-C to quit", "dim"))
    return Group(header, Text.from_ansi(buffer.getvalue()))


# ----------------------------------------------------------------- doctor


def doctor_findings(report: Any) -> None:
    console = _console()
    if not report.findings:
        console.print(Text.assemble(("healthy", "green"), f": store {esc(report.location)} keeps every invariant."))
        return
    errors = sum(f.severity == "error" for f in report.findings)
    console.print(Text(f"Store {esc(report.location)}: {errors} error(s), {len(report.findings) - errors} notice(s)"))
    for finding in report.findings:
        style = "red" if finding.severity == "error" else "yellow"
        head = Text.assemble((f"{finding.severity:<6}", style), " ", lit(finding.code, "bold"))
        if finding.batch_id:
            head.append(f"  batch {esc(finding.batch_id)}")
        console.print(head, soft_wrap=True)
        console.print(Text(f"    {esc(finding.message)}"), soft_wrap=True)
        console.print(Text(f"    fix: {esc(finding.fix or '(none safe: decide by hand)')}", style="dim"),
                      soft_wrap=True)


def doctor_plan(report: Any) -> None:
    console = _console()
    if not report.changes:
        console.print("Nothing to repair safely." if report.findings else "Nothing to repair.")
        return
    console.print(Text.assemble(("Planned changes", "bold"),
                                " (dry run: nothing is written)" if report.dry_run else ":"))
    for change in report.changes:
        console.print(Text(f"  - {esc(change)}"), soft_wrap=True)


def doctor_fixed(report: Any) -> None:
    console = _console()
    console.print(Text(f"Repaired {esc(report.location)}" + (f"; the old file is kept as {esc(report.backup)}"
                                                        if report.backup else "") + "."))
    remaining = [f for f in report.remaining or [] if f.severity == "error"]
    if remaining:
        console.print(Text.assemble((f"{len(remaining)} error(s) remain", "red"), ": they need a person to decide."))
    else:
        console.print(Text.assemble(("healthy", "green"), " now."))
