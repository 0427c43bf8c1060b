"""The PostgreSQL backend (`postgresql://user@host:port/db`, also `postgres://`): psycopg 3.

Safe with many workers on many hosts. A write transaction (READ COMMITTED):

1. `SET LOCAL lock_timeout` from the store's lock timeout (a lock not had in time → StoreBusy);
2. `pg_advisory_xact_lock_shared` on the store, then `pg_advisory_xact_lock` on the session
   (a 64-bit hash of schema and session id): writers of one session queue up, writers of
   different sessions run side by side; an operation on every session (vacuum of all,
   an enqueue into several sessions) takes the store lock exclusively;
3. the session's batch rows `SELECT … FOR UPDATE` and its tombstones;
4. the engine runs on them, with the client's clock (`--now` works as on any store);
5. the store-wide enqueue counter (`turnq_meta` row `next_enqueue_seq`) is read
   `FOR UPDATE` only when the engine asks for it, that is when it enqueues a new batch;
6. changed rows written, audit entries inserted (ids from the `next_log_id` row, whose
   UPDATE locks it until commit, so ids increase in commit order), COMMIT.

So two claimers can never take the same batch, and a join run is taken whole or not at
all: the session lock makes the load-plan-write of a claim one step. Tables: see `rows.py`;
created on first write under an advisory lock, versioned in `turnq_meta`.

URL option `schema=NAME` (removed before connecting): keep the tables in that schema,
created if missing, e.g. `postgresql://u@h/db?schema=turnq_ci`. Other query options go to
libpq as usual (`?sslmode=require`, `?connect_timeout=5`, …).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import (
    InvalidInput,
    StoreBusy,
    StoreUnreadable,
    StoreUnwritable,
    TurnqError,
)
from ..state import QueueState
from . import rows
from .base import DEFAULT_LOG_MAX_ENTRIES, Store

try:
    import psycopg
    from psycopg import errors as pg_errors
    from psycopg import sql
except ImportError:  # pragma: no cover - exercised by a subprocess test without psycopg
    psycopg = None  # type: ignore[assignment]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS turnq_meta (key text PRIMARY KEY, value numeric(20) NOT NULL);
CREATE TABLE IF NOT EXISTS turnq_batches (
    batch_id text PRIMARY KEY,
    session_id text NOT NULL,
    enqueue_seq numeric(20) NOT NULL UNIQUE,
    batch text NOT NULL,
    fencing_counter numeric(20) NOT NULL,
    claim_id text, owner_id text, lease_token text, claimed_at_ms numeric(20), expires_at_ms numeric(20)
);
CREATE INDEX IF NOT EXISTS turnq_batches_session ON turnq_batches (session_id, enqueue_seq);
CREATE TABLE IF NOT EXISTS turnq_tombstones (
    batch_id text PRIMARY KEY,
    session_id text NOT NULL,
    source_key text NOT NULL,
    enqueue_seq numeric(20) NOT NULL,
    outcome text NOT NULL,
    settled_at_ms numeric(20) NOT NULL,
    batch text NOT NULL
);
CREATE INDEX IF NOT EXISTS turnq_tombstones_session ON turnq_tombstones (session_id, settled_at_ms, enqueue_seq);
CREATE TABLE IF NOT EXISTS turnq_log (id bigint PRIMARY KEY, entry text NOT NULL);
INSERT INTO turnq_meta (key, value) VALUES ('schema_version', 1), ('next_enqueue_seq', 1), ('next_log_id', 1)
    ON CONFLICT (key) DO NOTHING
"""

_COLS = ", ".join(rows.BATCH_COLUMNS)
_BATCH_SELECT = f"SELECT {_COLS} FROM turnq_batches"
_TOMB_SELECT = "SELECT batch_id, outcome, settled_at_ms, batch FROM turnq_tombstones"
_BATCH_INSERT = f"INSERT INTO turnq_batches ({_COLS}) VALUES ({', '.join(['%s'] * len(rows.BATCH_COLUMNS))})"
_BATCH_UPDATE = ("UPDATE turnq_batches SET session_id = %s, enqueue_seq = %s, batch = %s, fencing_counter = %s, "
                 "claim_id = %s, owner_id = %s, lease_token = %s, claimed_at_ms = %s, expires_at_ms = %s "
                 "WHERE batch_id = %s")
_TOMB_INSERT = (f"INSERT INTO turnq_tombstones ({', '.join(rows.TOMBSTONE_COLUMNS)}) "
                f"VALUES ({', '.join(['%s'] * len(rows.TOMBSTONE_COLUMNS))})")
_LOG_APPEND = """
WITH counter AS (
    UPDATE turnq_meta SET value = value + %(n)s WHERE key = 'next_log_id' RETURNING value - %(n)s AS first
), added AS (
    INSERT INTO turnq_log (id, entry)
    SELECT counter.first + e.ord - 1, e.entry
    FROM counter, unnest(%(entries)s::text[]) WITH ORDINALITY AS e(entry, ord)
    WHERE e.ord > %(n)s - %(keep)s
)
DELETE FROM turnq_log WHERE id < (SELECT first FROM counter) + %(n)s - %(keep)s
"""
_STORE_KEY = "hashtextextended('turnq-store:' || current_schema(), 0)"
_SESSION_KEY = "hashtextextended('turnq-session:' || current_schema() || ':' || %s, 0)"


def _u64(value: Any) -> Any:
    """numeric(20) columns (u64 values beyond bigint) come back as Decimal."""
    return int(value) if value is not None and not isinstance(value, (int, str)) else value


def _batch_values(row: Any) -> tuple[Any, ...]:
    r = list(row)
    for i in (2, 4, 8, 9):
        r[i] = _u64(r[i])
    return tuple(r)


def _tomb_values(row: Any) -> tuple[Any, ...]:
    batch_id, outcome, settled, batch = row
    return (batch_id, outcome, _u64(settled), batch)


class _SessionState(QueueState):
    """A session's state whose store-wide enqueue counter is read, and its row locked,
    only when the engine first asks for it (an enqueue): claims never wait on it."""

    def __init__(self, load_seq: Any) -> None:
        self._seq: int | None = None
        self._load_seq: Any = None
        self.loaded_seq: int | None = None
        self.failure: TurnqError | None = None
        super().__init__()  # sets next_seq = 1 through the setter below: undone next
        self._seq = None
        self._load_seq = load_seq

    @property  # type: ignore[override]
    def next_seq(self) -> int:
        if self._seq is None:
            self._seq = self.loaded_seq = self._load_seq()
        return self._seq

    @next_seq.setter
    def next_seq(self, value: int) -> None:
        if self._load_seq is not None and self.loaded_seq is None:
            # Never a blind write: lock the counter row (and know its value) first.
            self.loaded_seq = self._load_seq()
        self._seq = value

    @property
    def seen_seq(self) -> int | None:
        """The counter as the engine left it; None when it never asked for it."""
        return self._seq


class PostgresStore(Store):
    def __init__(self, url: str, *, lock_timeout_ms: int = 10_000, log_enabled: bool = True,
                 log_max_entries: int = DEFAULT_LOG_MAX_ENTRIES) -> None:
        if psycopg is None:
            raise InvalidInput(
                f"{_redact(url)} needs the PostgreSQL backend's driver, psycopg 3, which is not "
                "installed: pip install 'turnq[postgres]'"
            )
        self.conninfo, self.schema = _split_url(url)
        self.location = _redact(url)
        self.lock_timeout_ms = lock_timeout_ms
        self.log_enabled = log_enabled
        self.log_max_entries = max(0, log_max_entries)
        self._conn: Any = None
        self._pid = os.getpid()
        self._schema_ready = False
        self._lock = threading.RLock()
        self._cache = rows.BatchCache()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # ----------------------------------------------------------------- connection

    def _connection(self, writing: bool) -> Any:
        if self._conn is not None and not self._conn.closed and self._pid == os.getpid():
            return self._conn
        # A connection opened before a fork belongs to the parent: leave it (unclosed) to it.
        self._conn, self._pid = None, os.getpid()
        kwargs: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in self.conninfo:
            kwargs["connect_timeout"] = max(2, -(-self.lock_timeout_ms // 1000))
        try:
            conn = psycopg.connect(self.conninfo, **kwargs)
            if self.schema is not None:
                conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
        except psycopg.Error as err:
            raise self._error(err, writing, connecting=True) from None
        self._conn = conn
        return conn

    def _error(self, err: Exception, writing: bool, connecting: bool = False) -> TurnqError:
        text = " ".join(str(err).split()) or type(err).__name__
        if isinstance(err, (pg_errors.LockNotAvailable, pg_errors.DeadlockDetected)):
            return StoreBusy(f"store {self.location} is busy: another worker holds the lock "
                             f"(waited {self.lock_timeout_ms} ms); retry, or raise --lock-timeout")
        if connecting or isinstance(err, psycopg.OperationalError):
            self._drop()
            what = "cannot connect to" if connecting else "lost the connection to"
            cls = StoreUnwritable if writing else StoreUnreadable
            return cls(f"{what} store {self.location}: {text}")
        if writing:
            return StoreUnwritable(f"cannot write store {self.location}: {text}; the store was left as it was")
        return StoreUnreadable(f"store {self.location} cannot be read: {text}")

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # a broken connection may fail to close
                conn.close()

    def _tables_exist(self, conn: Any) -> bool:
        return conn.execute("SELECT to_regclass('turnq_meta') IS NOT NULL").fetchone()[0]

    def _ensure_schema(self, conn: Any) -> None:
        """Create the tables on first use, under an advisory lock (concurrent first uses are safe)."""
        if self._schema_ready:
            return
        with conn.transaction():
            conn.execute(f"SET LOCAL lock_timeout = {int(self.lock_timeout_ms)}")
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('turnq-schema', 0))")
            if self.schema is not None and not conn.execute(
                    "SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,)).fetchone():
                # (Only when missing: CREATE SCHEMA needs a privilege that using one does not.)
                conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(self.schema)))
            if not self._tables_exist(conn):
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            self._check_version(conn)
        self._schema_ready = True

    def _check_version(self, conn: Any) -> None:
        row = conn.execute("SELECT value FROM turnq_meta WHERE key = 'schema_version'").fetchone()
        rows.check_version(None if row is None else int(row[0]), self.location)

    def _meta_value(self, conn: Any, key: str, *, lock: bool) -> int:
        query = "SELECT value FROM turnq_meta WHERE key = %s" + (" FOR UPDATE" if lock else "")
        row = conn.execute(query, (key,)).fetchone()
        if row is None:
            raise StoreUnreadable(f"store {self.location} is unreadable: turnq_meta has no {key}")
        return int(row[0])

    def _load(self, conn: Any, session_id: str | None, state: QueueState, snapshot: rows.Snapshot | None,
              *, lock: bool) -> QueueState:
        suffix = " FOR UPDATE" if lock else ""
        if session_id is None:
            batch_rows = conn.execute(f"{_BATCH_SELECT} ORDER BY enqueue_seq{suffix}").fetchall()
            tomb_rows = conn.execute(f"{_TOMB_SELECT} ORDER BY settled_at_ms, enqueue_seq").fetchall()
        else:
            batch_rows = conn.execute(f"{_BATCH_SELECT} WHERE session_id = %s ORDER BY enqueue_seq{suffix}",
                                      (session_id,)).fetchall()
            tomb_rows = conn.execute(f"{_TOMB_SELECT} WHERE session_id = %s ORDER BY settled_at_ms, enqueue_seq",
                                     (session_id,)).fetchall()
        rows.load_batches([_batch_values(r) for r in batch_rows], state, snapshot, self.location, self._cache)
        rows.load_tombstones([_tomb_values(r) for r in tomb_rows], state, snapshot, self.location)
        return state

    # ----------------------------------------------------------------- reading

    @contextmanager
    def _reading(self) -> Iterator[Any]:
        """A read-only snapshot transaction, or None when the tables do not exist yet."""
        with self._lock:
            conn = self._connection(writing=False)
            try:
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                try:
                    yield conn if self._tables_exist(conn) else None
                finally:
                    if not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                        conn.execute("ROLLBACK")
            except psycopg.Error as err:
                raise self._error(err, writing=False) from None

    def exists(self) -> bool:
        """turnq's tables exist in the schema (emptied or not)."""
        with self._reading() as conn:
            return conn is not None

    def read(self, session_id: str | None = None) -> QueueState:
        with self._reading() as conn:
            if conn is None:
                return QueueState()
            self._check_version(conn)
            state = QueueState(next_seq=self._meta_value(conn, "next_enqueue_seq", lock=False))
            return self._load(conn, session_id, state, None, lock=False)

    def read_log(self, after_id: int = 0) -> list[dict[str, Any]]:
        with self._reading() as conn:
            if conn is None:
                return []
            found = conn.execute("SELECT id, entry FROM turnq_log WHERE id > %s ORDER BY id", (after_id,)).fetchall()
            return [rows.log_entry(row_id, text) for row_id, text in found]

    def raw_document(self) -> dict[str, Any]:
        with self._reading() as conn:
            if conn is None:
                return {}  # no tables yet: as the JSON store says of a missing file
            seq = conn.execute("SELECT value FROM turnq_meta WHERE key = 'next_enqueue_seq'").fetchone()
            batch_rows = [_batch_values(r) for r in conn.execute(f"{_BATCH_SELECT} ORDER BY enqueue_seq")]
            tomb_rows = [_tomb_values(r) for r in conn.execute(f"{_TOMB_SELECT} ORDER BY settled_at_ms, enqueue_seq")]
            return rows.raw_document(None if seq is None else int(seq[0]), batch_rows, tomb_rows)

    def replace_document(self, document: dict[str, Any], *, backup: bool = True, backup_suffix: str | None = None,
                         expected: dict[str, Any] | None = None) -> str | None:
        """For `turnq doctor --fix`: one transaction. A server has no file to keep a backup beside:
        none is made (None is returned); `turnq migrate --from URL --to FILE.json` makes one."""
        return rows.replace_document(self, document, expected=expected)

    # ----------------------------------------------------------------- writing

    @contextmanager
    def transaction(self, session_id: str | None = None) -> Iterator[QueueState]:
        with self._lock:
            conn = self._connection(writing=True)
            try:
                self._ensure_schema(conn)
                conn.execute("BEGIN")
            except psycopg.Error as err:
                raise self._error(err, writing=True) from None
            try:
                try:
                    state, snapshot = self._begin(conn, session_id)
                except psycopg.Error as err:
                    raise self._error(err, writing=True) from None
                yield state
                try:
                    self._finish(conn, state, snapshot)
                    conn.execute("COMMIT")
                except psycopg.Error as err:
                    raise self._error(err, writing=True) from None
            finally:
                if self._conn is conn and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    try:
                        conn.execute("ROLLBACK")
                    except psycopg.Error:
                        self._drop()

    def _begin(self, conn: Any, session_id: str | None) -> tuple[QueueState, rows.Snapshot]:
        # One round trip: the lock timeout (LOCAL: this transaction's), then the advisory locks.
        timeout = f"{int(self.lock_timeout_ms)}ms"
        if session_id is None:
            conn.execute(f"SELECT set_config('lock_timeout', %s, true), pg_advisory_xact_lock({_STORE_KEY})",
                         (timeout,))
            seq = self._meta_value(conn, "next_enqueue_seq", lock=True)
            state: QueueState = QueueState(next_seq=seq)
        else:
            conn.execute(f"SELECT set_config('lock_timeout', %s, true), pg_advisory_xact_lock_shared({_STORE_KEY}), "
                         f"pg_advisory_xact_lock({_SESSION_KEY})", (timeout, session_id))
            state = _SessionState(lambda: self._counter(conn, state))
            seq = 0  # not known until asked for
        snapshot = rows.Snapshot(seq)
        self._load(conn, session_id, state, snapshot, lock=True)
        return state, snapshot

    def _counter(self, conn: Any, state: _SessionState) -> int:
        """The enqueue counter, its row locked until commit (asked for by the engine, mid-operation)."""
        try:
            return self._meta_value(conn, "next_enqueue_seq", lock=True)
        except psycopg.Error as err:
            # The database transaction is aborted now: even if the caller goes on (the API logs a
            # refusal and leaves the block normally), the transaction must end in this error.
            state.failure = self._error(err, writing=True)
            raise state.failure from None

    def _finish(self, conn: Any, state: QueueState, snapshot: rows.Snapshot) -> None:
        failure = getattr(state, "failure", None)
        if failure is not None:
            state.audit.clear()
            raise failure
        if state.changed:
            self._save(conn, snapshot, state)
            state.changed = False
        if state.audit:
            entries = list(state.audit)
            state.audit.clear()
            if self.log_enabled:
                self._append_log(conn, entries)

    def _save(self, conn: Any, snapshot: rows.Snapshot, state: QueueState) -> None:
        changes = rows.diff(snapshot, state)
        with conn.cursor() as cur:
            if changes.delete_batches:
                cur.execute("DELETE FROM turnq_batches WHERE batch_id = ANY(%s)", (changes.delete_batches,))
            if changes.update_batches:
                cur.executemany(_BATCH_UPDATE, [(*r[1:], r[0]) for r in changes.update_batches])
            if changes.insert_batches:
                cur.executemany(_BATCH_INSERT, changes.insert_batches)
            if changes.delete_tombstones:
                cur.execute("DELETE FROM turnq_tombstones WHERE batch_id = ANY(%s)", (changes.delete_tombstones,))
            if changes.insert_tombstones:
                cur.executemany(_TOMB_INSERT, changes.insert_tombstones)
            if isinstance(state, _SessionState):  # never ask for the counter (and lock it) just to compare
                loaded, seq = state.loaded_seq, state.seen_seq
            else:
                loaded, seq = snapshot.next_seq, state.next_seq
            if seq is not None and seq != loaded:
                cur.execute("UPDATE turnq_meta SET value = %s WHERE key = 'next_enqueue_seq'", (seq,))

    def _append_log(self, conn: Any, entries: list[dict[str, Any]]) -> None:
        """One statement: take ids from the `next_log_id` row (its UPDATE locks it until commit,
        so ids increase in commit order), insert the entries (only the newest `log_max_entries`),
        and drop the entries older than the newest `log_max_entries`."""
        conn.execute(_LOG_APPEND, {"n": len(entries), "keep": self.log_max_entries,
                                   "entries": [rows.dumps(entry) for entry in entries]})


def _split_url(url: str) -> tuple[str, str | None]:
    """libpq's URL without turnq's own `schema=` option, and that schema (None: the default)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [value for key, value in query if key == "schema"]
    if len(schemas) > 1 or (schemas and not schemas[0]):
        raise InvalidInput(f"{_redact(url)}: give schema=NAME once, with a name")
    rest = urlencode([(key, value) for key, value in query if key != "schema"])
    scheme = "postgresql" if parts.scheme.lower() == "postgres" else parts.scheme
    return urlunsplit((scheme, parts.netloc, parts.path, rest, parts.fragment)), (schemas[0] if schemas else None)


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))
