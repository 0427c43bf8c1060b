"""The PostgreSQL backend's tombstone statements, apart from its transaction logic.

Each is one statement on an open connection (inside the operation's transaction):
look one up by (session, source key) through the index of schema version 3, delete a
session's (or every) tombstone settled at or before a cutoff by an index range, read
every one of a scope (only for what needs them all: inspect, export, migrate, …), and
read or write the retention setting (a `turnq_meta` row). `PgTombstones` hands them to
`rows.RowState`, so claim, renew, abandon and complete never read a tombstone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import rows

#: Part of schema version 3 (pg_schema.py), added by the upgrade of a version 1 or 2 store.
KEY_INDEX = "CREATE INDEX IF NOT EXISTS turnq_tombstones_key ON turnq_tombstones (session_id, source_key)"

#: The retention, as an expression to add to a statement the transaction sends anyway
#: (no round trip of its own): NULL when the store keeps tombstones until vacuum.
RETENTION_EXPR = f"(SELECT value FROM turnq_meta WHERE key = '{rows.RETENTION_KEY}')"

_COLUMNS = "batch_id, outcome, settled_at_ms, batch"
_SELECT = f"SELECT {_COLUMNS} FROM turnq_tombstones"
#: No ORDER BY … LIMIT 1: a planner may then walk the (session, settled_at) index instead of
#: the key's; the newest of the (one or two) rows is picked by `newest`. Params: (session, key).
FIND = f"{_SELECT} WHERE session_id = %s AND source_key = %s"


def _values(row: Any) -> tuple[Any, ...]:
    batch_id, outcome, settled, batch = row
    return (batch_id, outcome, None if settled is None else int(settled), batch)


def find(conn: Any, session_id: str, source_key: str, location: str) -> Any:
    """The session's newest tombstone holding the key, or None (an index lookup)."""
    return newest(conn.execute(FIND, (session_id, source_key)).fetchall(), location)


def newest(found_rows: list[Any], location: str) -> Any:
    """The newest tombstone of the rows `FIND` returned (sent in a pipeline), or None."""
    found = [rows.tombstone_from_row(_values(row), location) for row in found_rows]
    return max(found, key=lambda tomb: tomb.settled_at_ms, default=None)


def drop(conn: Any, session_id: str | None, cutoff_ms: int | None, location: str) -> list[Any]:
    """Delete and return the tombstones of the session (None: all) settled at or before the
    cutoff (None: whenever), by a range of the (session_id, settled_at_ms, …) index."""
    where, params = [], []
    if session_id is not None:
        where.append("session_id = %s")
        params.append(session_id)
    if cutoff_ms is not None:
        where.append("settled_at_ms <= %s")
        params.append(cutoff_ms)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    found = conn.execute(f"DELETE FROM turnq_tombstones{clause} RETURNING {_COLUMNS}", params).fetchall()
    return [rows.tombstone_from_row(_values(row), location) for row in found]


def load(conn: Any, session_id: str | None, location: str) -> list[Any]:
    if session_id is None:
        found = conn.execute(f"{_SELECT} ORDER BY settled_at_ms, enqueue_seq").fetchall()
    else:
        found = conn.execute(f"{_SELECT} WHERE session_id = %s ORDER BY settled_at_ms, enqueue_seq",
                             (session_id,)).fetchall()
    return [rows.tombstone_from_row(_values(row), location) for row in found]


def count(conn: Any, session_id: str | None) -> dict[str, int]:
    """Tombstones per session (of `session_id` only, when given), none read."""
    if session_id is None:
        found = conn.execute("SELECT session_id, count(*) FROM turnq_tombstones GROUP BY session_id").fetchall()
    else:
        found = conn.execute("SELECT session_id, count(*) FROM turnq_tombstones WHERE session_id = %s "
                             "GROUP BY session_id", (session_id,)).fetchall()
    return {session: int(n) for session, n in found}


def read_retention(conn: Any) -> int | None:
    row = conn.execute(f"SELECT {RETENTION_EXPR}").fetchone()
    return None if row is None or row[0] is None else int(row[0])


def write_retention(conn: Any, value: int | None) -> None:
    if value is None:
        conn.execute("DELETE FROM turnq_meta WHERE key = %s", (rows.RETENTION_KEY,))
    else:
        conn.execute("INSERT INTO turnq_meta (key, value) VALUES (%s, %s) "
                     "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", (rows.RETENTION_KEY, value))


class PgTombstones:
    """rows.TombstoneRows on PostgreSQL. `conn`: the transaction's connection; None for a state
    from `read`, whose snapshot has ended: `reading()` then opens a snapshot of its own."""

    def __init__(self, conn: Any, session_id: str | None, snapshot: rows.Snapshot | None, location: str,
                 reading: Callable[[], Any] | None = None) -> None:
        self.conn, self.session_id, self.snapshot, self.location = conn, session_id, snapshot, location
        self.reading = reading

    def _run(self, action: Callable[[Any], Any], empty: Any) -> Any:
        if self.conn is not None:
            return action(self.conn)
        assert self.reading is not None
        with self.reading() as conn:
            return empty if conn is None else action(conn)

    def find(self, session_id: str, source_key: str) -> Any:
        return self._run(lambda conn: find(conn, session_id, source_key, self.location), None)

    def drop(self, session_id: str | None, cutoff_ms: int | None) -> list[Any]:
        assert self.conn is not None, "only a transaction drops tombstones"
        removed = drop(self.conn, session_id, cutoff_ms, self.location)
        if self.snapshot is not None:
            self.snapshot.tombstones.difference_update(tomb.batch_id for tomb in removed)
        return removed

    def count(self) -> dict[str, int]:
        return self._run(lambda conn: count(conn, self.session_id), {})

    def load(self) -> list[Any]:
        loaded = self._run(lambda conn: load(conn, self.session_id, self.location), [])
        if self.snapshot is not None:
            for tomb in loaded:
                self.snapshot.add_tombstone(tomb)
        return loaded
