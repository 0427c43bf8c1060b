"""A library cycle (enqueue → claim → complete) in cycles/s, beside a plain sqlite3 queue."""

from __future__ import annotations

import sqlite3
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .stats import clock


def turnq_cycles(path: Path, cycles: int, *, audit_log: bool = True) -> float:
    """Cycles per second of enqueue → claim → complete on a fresh store file (each
    operation a durable transaction; `audit_log=False`: without the audit log's append)."""
    from turnq import Queue

    for old in (path, path.with_name(path.name + ".log")):
        if old.exists():
            old.unlink()
    queue = Queue(path) if audit_log else Queue(path, log_enabled=False)
    start = clock()
    for n in range(cycles):
        queue.enqueue_text("cycle", f"work {n}")
        claim = queue.claim("cycle", owner="bench")
        assert claim is not None
        queue.complete(claim)
    return cycles / (clock() - start)


def sqlite_cycles(path: Path, cycles: int) -> float:
    """The same cycle on an embedded SQLite queue: put → get (lease) → ack, a commit each."""
    if path.exists():
        path.unlink()
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE queue (id INTEGER PRIMARY KEY, session TEXT NOT NULL, body TEXT NOT NULL, "
                   "owner TEXT, expires_at REAL)")
        db.commit()
        start = clock()
        for n in range(cycles):
            db.execute("INSERT INTO queue (session, body) VALUES (?, ?)", ("cycle", f"work {n}"))
            db.commit()
            now = clock()
            row = db.execute("SELECT id FROM queue WHERE session = ? AND (expires_at IS NULL OR expires_at < ?) "
                             "ORDER BY id LIMIT 1", ("cycle", now)).fetchone()
            db.execute("UPDATE queue SET owner = ?, expires_at = ? WHERE id = ?", ("bench", now + 900, row[0]))
            db.commit()
            db.execute("DELETE FROM queue WHERE id = ?", (row[0],))
            db.commit()
        return cycles / (clock() - start)
    finally:
        db.close()


def bench_cycle(folder: str, *, cycles: int, runs: int, report: Callable[[str], None]) -> dict[str, Any]:
    base = Path(folder)
    turnq_rates, nolog_rates, sqlite_rates = [], [], []
    for _ in range(runs):  # alternate, so that the machine's load falls on all alike
        turnq_rates.append(turnq_cycles(base / "cycle.json", cycles))
        nolog_rates.append(turnq_cycles(base / "cycle.json", cycles, audit_log=False))
        sqlite_rates.append(sqlite_cycles(base / "cycle.db", cycles))
    turnq_rate, sqlite_rate = statistics.median(turnq_rates), statistics.median(sqlite_rates)
    nolog_rate = statistics.median(nolog_rates)
    report(f"cycle: enqueue -> claim -> complete, {cycles} cycles on a small store (median of {runs} runs)")
    report(f"  {'turnq (Python API, JSON file store)':44} {turnq_rate:9.1f} cycles/s")
    report(f"  {'turnq, audit log off (TURNQ_LOG=off)':44} {nolog_rate:9.1f} cycles/s")
    report(f"  {'plain sqlite3 put -> get -> ack (commit each)':44} {sqlite_rate:9.1f} cycles/s")
    report(f"  turnq / sqlite3: {turnq_rate / sqlite_rate:.2f}x")
    report()
    return {"cycles": cycles, "runs": runs, "turnq_cycles_per_s": round(turnq_rate, 1),
            "turnq_no_audit_log_cycles_per_s": round(nolog_rate, 1),
            "sqlite3_cycles_per_s": round(sqlite_rate, 1), "turnq_vs_sqlite3": round(turnq_rate / sqlite_rate, 3)}
