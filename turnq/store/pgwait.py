"""PostgreSQL's claim-wait: LISTEN on the store's channel, NOTIFY from the write path.

A write transaction that may have made work claimable (an enqueue, abandon, cancel, import,
... anything but a claim or a renew, which only take work) sends `pg_notify(channel,
session_id)` before COMMIT; PostgreSQL delivers it when (and only if) the transaction
commits. NOTIFY takes a store-wide lock at commit, so it is sent only when needed: never
for a claim, a renew, or an operation that changed nothing.

The channel is one per store schema: `turnq_` + the first 16 hex digits of md5(schema),
as `current_schema()` names it (a channel name is an identifier, at most 63 bytes). The
payload is the session id ('' when the change touched no one session or the id is too long
for a payload: every waiter of the store wakes).

A `PgWaiter` holds its own connection (LISTEN needs one that is not inside the store's
transactions) and wakes for its session's notifications only.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from ..state import QueueState
from .wait import ChangeWaiter

#: One statement, one round trip, whatever the number of sessions.
NOTIFY_SQL = "SELECT pg_notify('turnq_' || left(md5(current_schema()), 16), s) FROM unnest(%s::text[]) AS s"
_CHANNEL_SQL = "SELECT 'turnq_' || left(md5(coalesce(current_schema(), %s)), 16)"
#: Operations that only take work away: they never make anything claimable.
_TAKING_OPS = frozenset({"claim", "renew"})
#: A NOTIFY payload holds at most 8000 bytes.
_MAX_PAYLOAD = 7_000


def sessions_to_wake(state: QueueState) -> list[str]:
    """The payloads to NOTIFY for a transaction about to commit (none: send nothing). Call it
    before the store clears `state.changed` and `state.audit`."""
    if not state.changed:
        return []
    ops = [entry for entry in state.audit if entry.get("outcome") != "refused"]
    if ops and all(entry.get("op") in _TAKING_OPS for entry in ops):
        return []
    sessions = {entry.get("session_id") for entry in ops}
    if not sessions or None in sessions or any(len(str(s).encode()) > _MAX_PAYLOAD for s in sessions):
        return [""]  # unknown or too long: wake every waiter of the store
    return sorted(str(s) for s in sessions)


class PgWaiter(ChangeWaiter):
    """LISTENs on the store's channel over a connection of its own."""

    def __init__(self, store: Any, session_id: str) -> None:
        self._store = store
        self._session = session_id
        self._conn: Any = None
        self._connect()

    def _connect(self) -> None:
        import psycopg
        from psycopg import sql

        try:
            conn = psycopg.connect(self._store.conninfo, autocommit=True,
                                   connect_timeout=max(2, -(-self._store.lock_timeout_ms // 1000)))
        except psycopg.Error as err:
            raise self._store._error(err, False, connecting=True) from None
        try:
            if self._store.schema is not None:
                conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self._store.schema)))
            # The schema may not exist yet (nothing written): then current_schema() is NULL.
            channel = conn.execute(_CHANNEL_SQL, (self._store.schema or "public",)).fetchone()[0]
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        except psycopg.Error as err:
            conn.close()
            raise self._store._error(err, False) from None
        self._conn = conn

    def wait(self, timeout_s: float) -> bool:
        import psycopg

        if self._conn is None or self._conn.closed:
            self._connect()
            return True  # notifications may have been missed while disconnected: look again
        deadline = time.monotonic() + max(0.0, timeout_s)
        try:
            while (left := deadline - time.monotonic()) > 0:
                for note in self._conn.notifies(timeout=left, stop_after=1):
                    if note.payload in ("", self._session):
                        return True
            return False
        except psycopg.Error:
            self.close()
            return True  # reconnect on the next wait; meanwhile the caller looks again

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
