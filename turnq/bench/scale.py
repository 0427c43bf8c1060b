"""turnq beside a plain queue on the same database, 1 and 8 processes (part of
`python -m turnq.bench.backends`).

cycle = enqueue → claim → complete. Each process works on a session of its own (one
connection per process, for as long as the measurement lasts) and counts its cycles.

- turnq PostgreSQL beside a plain SKIP LOCKED queue on the same server: `INSERT`, then
  `UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP LOCKED) RETURNING`, then `DELETE`, autocommit;
- turnq SQLite beside plain `sqlite3` in WAL mode (the same three statements, autocommit).
- PostgreSQL: turnq's audit log filled to its retention first (a store in use), so its writes trim it.
- PostgreSQL also: turnq's own statements for the cycle replayed without turnq's Python (the
  ceiling of turnq's transaction shape: BEGIN, locks, rows, write, audit entry, COMMIT per operation).

The kinds are measured in turn within each run (interleaved), so the machine's other work falls
on all alike; each figure is given as the range over the runs, and the ratio turnq / plain is
taken within each run. The worker processes are started once and given one measurement at a time.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PROCESS_COUNTS = (1, 8)
KINDS = {"postgresql": ("turnq PostgreSQL", "plain SKIP LOCKED queue"),
         "sqlite": ("turnq SQLite", "plain sqlite3 (WAL)")}

_PLAIN_PG = """CREATE TABLE IF NOT EXISTS plain_queue (
    id bigserial PRIMARY KEY, session text NOT NULL, payload text NOT NULL, claimed_by text)"""
_PLAIN_PG_INDEX = "CREATE INDEX IF NOT EXISTS plain_queue_session ON plain_queue (session, id)"
_PLAIN_SQLITE = """CREATE TABLE IF NOT EXISTS plain_queue (
    id INTEGER PRIMARY KEY, session TEXT NOT NULL, payload TEXT NOT NULL, claimed_by TEXT)"""
_PLAIN_SQLITE_INDEX = "CREATE INDEX IF NOT EXISTS plain_queue_session ON plain_queue (session, id)"


# ----------------------------------------------------------------- one process's cycles


def _turnq_cycler(url: str, session: str) -> tuple[Callable[[int], None], Callable[[], None]]:
    from turnq import Queue

    queue = Queue(url, lock_timeout_ms=60_000)

    def cycle(n: int) -> None:
        queue.enqueue_text(session, f"work {n}")
        claim = queue.claim(session, owner=session)
        if claim is None:
            raise RuntimeError(f"{session}: nothing to claim right after an enqueue")
        queue.complete(claim)

    close = getattr(queue.store, "close", None)
    return cycle, (close if close is not None else (lambda: None))


def _plain_pg_cycler(url: str, session: str) -> tuple[Callable[[int], None], Callable[[], None]]:
    import psycopg

    from turnq.store.postgres import _split_url

    conninfo, schema = _split_url(url)
    conn = psycopg.connect(conninfo, autocommit=True)
    conn.execute(f'SET search_path TO "{schema}"')

    def cycle(n: int) -> None:
        conn.execute("INSERT INTO plain_queue (session, payload) VALUES (%s, %s)", (session, f"work {n}"))
        row = conn.execute("UPDATE plain_queue SET claimed_by = %s WHERE id = (SELECT id FROM plain_queue "
                           "WHERE session = %s AND claimed_by IS NULL ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) "
                           "RETURNING id", (session, session)).fetchone()
        if row is None:
            raise RuntimeError(f"{session}: nothing to claim right after an insert")
        conn.execute("DELETE FROM plain_queue WHERE id = %s", (row[0],))

    return cycle, conn.close


def _plain_sqlite_cycler(url: str, session: str) -> tuple[Callable[[int], None], Callable[[], None]]:
    conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=60, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 60000")

    def cycle(n: int) -> None:
        conn.execute("INSERT INTO plain_queue (session, payload) VALUES (?, ?)", (session, f"work {n}"))
        row = conn.execute("UPDATE plain_queue SET claimed_by = ? WHERE id = (SELECT id FROM plain_queue "
                           "WHERE session = ? AND claimed_by IS NULL ORDER BY id LIMIT 1) RETURNING id",
                           (session, session)).fetchone()
        if row is None:
            raise RuntimeError(f"{session}: nothing to claim right after an insert")
        conn.execute("DELETE FROM plain_queue WHERE id = ?", (row[0],))

    return cycle, conn.close


def _shape_pg_cycler(url: str, session: str) -> tuple[Callable[[int], None], Callable[[], None]]:
    """turnq's PostgreSQL statements for the cycle, sent as turnq sends them (per operation: one
    pipeline of BEGIN, the settings and locks, the session's rows; one of the write, the audit
    entry, the NOTIFY where turnq sends one, COMMIT; both through libpq directly, as turnq's
    `pgpipe`) on turnq's own tables, with none of turnq's Python: the ceiling of this
    transaction shape, to tell the shape's cost from the client's."""
    import psycopg

    from turnq.store import pg_schema, pgpipe
    from turnq.store.postgres import _split_url

    conninfo, schema = _split_url(url)
    conn = psycopg.connect(conninfo, autocommit=True, prepare_threshold=None)
    conn.execute(f'SET search_path TO "{schema}"')
    prepared = pgpipe.Prepared()
    locks = ("SELECT set_config('lock_timeout', '60000ms', true), set_config('enable_bitmapscan', 'off', true), "
             "pg_advisory_xact_lock_shared(hashtextextended('turnq-store:' || current_schema(), 0)), "
             "pg_advisory_xact_lock(hashtextextended('turnq-session:' || current_schema() || ':' || %s, 0)), "
             "(SELECT value FROM turnq_meta WHERE key = 'tombstone_retention_ms')")
    select = "SELECT * FROM turnq_batches WHERE session_id = %s ORDER BY enqueue_seq FOR UPDATE"
    entry = '{"op":"bench"}'

    def operation(write: tuple[str, Callable[[int | None], tuple[Any, ...]]], notify: bool,
                  take_seq: bool = False) -> None:
        pipe = pgpipe.Pipeline(conn, prepared)
        pipe.add("BEGIN")
        pipe.add(locks, (session,))
        if take_seq:
            pipe.add(pg_schema.TAKE_SEQ)
        pipe.add(select, (session,))
        got = pipe.run()
        value = int(got[2][0][0]) if take_seq else None
        pipe = pgpipe.Pipeline(conn, prepared)
        pipe.add(write[0], write[1](value))
        pipe.add("SELECT turnq_append_log(%s::text[], %s)", ([entry], 10_000))
        if notify:
            pipe.add("SELECT pg_notify('turnq_bench', %s)", (session,))
        pipe.add("COMMIT")
        pipe.run()

    def cycle(n: int) -> None:
        batch_id = f"{session}-{n}"
        operation(("INSERT INTO turnq_batches VALUES (%s, %s, %s, %s, 0, NULL, NULL, NULL, NULL, NULL)",
                   lambda seq: (batch_id, session, seq, f'{{"work": {n}}}')), notify=True, take_seq=True)
        operation(("UPDATE turnq_batches SET claim_id = 'c', owner_id = %s, lease_token = 't', claimed_at_ms = 1, "
                   "expires_at_ms = 2, fencing_counter = 1 WHERE batch_id = %s", lambda _: (session, batch_id)),
                  notify=False)
        operation(("DELETE FROM turnq_batches WHERE batch_id = ANY(%s)", lambda _: ([batch_id],)), notify=True)

    return cycle, conn.close


_CYCLERS = {"turnq": _turnq_cycler, "plain-postgresql": _plain_pg_cycler, "plain-sqlite": _plain_sqlite_cycler,
            "shape-postgresql": _shape_pg_cycler}


def _serve(tasks: Any, results: Any) -> None:
    """A worker process: for each task, set up, say ready, run from the start time for the
    given seconds, report the cycles done."""
    while True:
        task = tasks.get()
        if task is None:
            return
        cycler, url, session, seconds = task
        try:
            cycle, close = _CYCLERS[cycler](url, session)
            cycle(0)  # connected, schema made, modules imported: only the timed cycles count
            results.put(("ready", None))
            start_at = tasks.get()
            time.sleep(max(0.0, start_at - time.time()))
            done, end = 0, time.monotonic() + seconds
            while time.monotonic() < end:
                done += 1
                cycle(done)
            close()
            results.put(("done", done))
        except Exception as err:  # noqa: BLE001 - reported to the parent, which fails the run
            results.put(("error", f"{type(err).__name__}: {err}"))


class _Pool:
    def __init__(self, size: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.results = context.Queue()
        self.tasks = [context.Queue() for _ in range(size)]
        self.procs = [context.Process(target=_serve, args=(q, self.results), daemon=True) for q in self.tasks]
        for proc in self.procs:
            proc.start()

    def rate(self, cycler: str, url: str, processes: int, seconds: float) -> float:
        """Cycles per second of `processes` workers at once, each on its own session."""
        for n in range(processes):
            self.tasks[n].put((cycler, url, f"scale-{n}", seconds))
        self._collect(processes, "ready")
        start_at = time.time() + 0.05
        for n in range(processes):
            self.tasks[n].put(start_at)
        return sum(self._collect(processes, "done")) / seconds

    def _collect(self, count: int, kind: str) -> list[Any]:
        got = []
        for _ in range(count):
            what, value = self.results.get(timeout=600)
            if what == "error":
                raise RuntimeError(f"a benchmark worker failed: {value}")
            got.append(value)
        return got

    def close(self) -> None:
        for queue in self.tasks:
            queue.put(None)
        for proc in self.procs:
            proc.join(timeout=30)


# ----------------------------------------------------------------- stores


@contextmanager
def _plain_location(kind: str, url: str) -> Iterator[str]:
    """The plain queue's table beside turnq's: the same server (schema) or the same folder."""
    if kind == "postgresql":
        import psycopg

        from turnq.store.postgres import _split_url

        conninfo, schema = _split_url(url)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            conn.execute(f'SET search_path TO "{schema}"')
            conn.execute(_PLAIN_PG)
            conn.execute(_PLAIN_PG_INDEX)
        yield url
    else:
        path = Path(url.removeprefix("sqlite:///")).with_name(f"plain-{uuid.uuid4().hex[:8]}.db")
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(_PLAIN_SQLITE)
        conn.execute(_PLAIN_SQLITE_INDEX)
        conn.close()
        yield f"sqlite:///{path}"


def _create(url: str) -> None:
    """turnq's tables made by one process before the workers start (their first use is not
    what is measured; a new SQLite file's WAL switch then also happens once). On PostgreSQL the
    audit log is then filled to its retention, as a store in use has it: every write then also
    trims the log (a new store's writes would not)."""
    from turnq.store.base import DEFAULT_LOG_MAX_ENTRIES

    cycle, close = _turnq_cycler(url, "warm")
    cycle(0)
    close()
    if url.startswith("postgresql://"):
        import psycopg

        from turnq.store.postgres import _split_url

        conninfo, schema = _split_url(url)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{schema}"')
            conn.execute("SELECT turnq_append_log(array_fill('{\"op\":\"bench\"}'::text, ARRAY[%s]), %s)",
                         (DEFAULT_LOG_MAX_ENTRIES, DEFAULT_LOG_MAX_ENTRIES))


def bench_scale(kinds: list[str], location: Callable[[str, Path, str], Any], folder: Path, *, runs: int,
                seconds: float, report: Callable[[str], None]) -> dict[str, Any]:
    """The table: for each backend in `kinds`, 1 and 8 processes, turnq beside the plain queue."""
    samples: dict[tuple[str, int], dict[str, list[float]]] = {
        (kind, n): {"turnq": [], "plain": [], "shape": []} for kind in kinds for n in PROCESS_COUNTS}
    pool = _Pool(max(PROCESS_COUNTS))
    try:
        for run in range(runs):
            for kind in kinds:
                for processes in PROCESS_COUNTS:
                    name = f"scale-{kind}-{processes}-{run}"
                    with location(kind, folder, name) as url, _plain_location(kind, url) as plain:
                        _create(url)
                        # turnq and the plain queue alternate which goes first, run by run.
                        order = [("turnq", "turnq", url), ("plain", f"plain-{kind}", plain)]
                        if f"shape-{kind}" in _CYCLERS:
                            order.insert(1, ("shape", f"shape-{kind}", url))
                        for label, cycler, where in order[::1 if run % 2 == 0 else -1]:
                            rate = pool.rate(cycler, where, processes, seconds)
                            samples[(kind, processes)][label].append(rate)
    finally:
        pool.close()
    return _table(kinds, samples, runs, seconds, report)


def _span(values: list[float], digits: int = 0) -> str:
    low, high = min(values), max(values)
    fmt = f"{{:,.{digits}f}}"
    return fmt.format(low) if fmt.format(low) == fmt.format(high) else f"{fmt.format(low)}–{fmt.format(high)}"


def _table(kinds: list[str], samples: dict[tuple[str, int], dict[str, list[float]]], runs: int, seconds: float,
           report: Callable[[str], None]) -> dict[str, Any]:
    report(f"scaling: cycle = enqueue -> claim -> complete, each process on a session of its own, "
           f"{seconds:g} s per figure, {runs} run(s) interleaved; ranges over the runs, ratio turnq/plain per run")
    result: dict[str, Any] = {}
    for kind in kinds:
        turnq_name, plain_name = KINDS[kind]
        report(f"| cycle = enqueue → claim → complete | {turnq_name} | {plain_name} | ratio |")
        report("|---|---|---|---|")
        for processes in PROCESS_COUNTS:
            got = samples[(kind, processes)]
            ratios = [t / p for t, p in zip(got["turnq"], got["plain"], strict=True) if p > 0]
            label = "1 process" if processes == 1 else f"{processes} processes, one session each"
            report(f"| {label} | {_span(got['turnq'])} | {_span(got['plain'])} | {_span(ratios, 2)} |")
            result[f"{kind}_{processes}"] = {"turnq": [round(v, 1) for v in got["turnq"]],
                                             "plain": [round(v, 1) for v in got["plain"]],
                                             "ratio_median": round(statistics.median(ratios), 3) if ratios else None}
        one, eight = (statistics.median(samples[(kind, n)]["turnq"]) for n in PROCESS_COUNTS)
        report(f"  turnq {kind}: 8 processes / 1 process = {eight / one:.2f}")
        for processes in PROCESS_COUNTS:
            got = samples[(kind, processes)]
            if got["shape"]:
                ratios = [t / p for t, p in zip(got["shape"], got["plain"], strict=True) if p > 0]
                report(f"  turnq's statements alone, without turnq's Python, {processes} process(es): "
                       f"{_span(got['shape'])} cycles/s, {_span(ratios, 2)} of plain")
                result[f"{kind}_{processes}"]["shape"] = [round(v, 1) for v in got["shape"]]
        report("")
    return result
