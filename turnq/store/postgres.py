"""The PostgreSQL backend (`postgresql://user@host:port/db`, also `postgres://`): psycopg 3.

Safe with many workers on many hosts; writers of different sessions never wait for each
other. A write transaction (READ COMMITTED) takes at most three round trips:

1. one pipeline: BEGIN; `lock_timeout` for this transaction (a lock not had in time →
   StoreBusy); `pg_advisory_xact_lock_shared` on the store, then `pg_advisory_xact_lock` on the
   session (a 64-bit hash of schema and session id): writers of one session queue up, writers
   of different sessions run side by side; an operation on every session (vacuum of all, an
   enqueue into several sessions, doctor --fix, migrate) takes the store lock exclusively;
   the tombstone retention setting (in that first statement); the session's batch rows
   `SELECT … FOR UPDATE`. Its tombstones stay in their table (`pg_tombstones.py`): only an
   enqueue with a source key looks one up, by (session, key);
2. the engine runs on them, with the client's clock (`--now` works as on any store); when it
   enqueues a new batch it asks for the next enqueue_seq: one statement takes it from a
   sequence (`pg_schema.py`: no row is locked, so enqueuers of different sessions never queue).
   An enqueue with a source key sends its tombstone lookup in the same pipeline as that
   statement, which then takes a value only if no tombstone holds the key (a replay needs
   none); a store with a tombstone retention adds one range DELETE on the writes it applies to;
3. one pipeline: the changed rows written, the audit entries appended (`turnq_append_log`, ids
   from a sequence), COMMIT.

The pipelines go to libpq directly (`pgpipe.py`; psycopg's cursors cost the client more CPU
than the server spent on the statements). The transaction turns bitmap scans off and the audit
log is trimmed one row per entry (`pg_schema.LOG_FUNCTION`), so that an operation on a store
busy for hours without a vacuum costs what it costs on a new one.

So two claimers can never take the same batch, and a join run is taken whole or not at
all: the session lock makes the load-plan-write of a claim one step. Tables: see `rows.py`
and `pg_schema.py`; created on first write under an advisory lock, versioned in `turnq_meta`
(a version 1 or 2 store is upgraded to version 3 on its first write by this turnq; a newer one is
refused).

URL option `schema=NAME` (removed before connecting): keep the tables in that schema,
created if missing, e.g. `postgresql://u@h/db?schema=turnq_ci`. Other query options go to
libpq as usual (`?sslmode=require`, `?connect_timeout=5`, …).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import (
    InvalidInput,
    StoreBusy,
    StoreUnreadable,
    StoreUnwritable,
    TurnqError,
    audit_ids_at_limit,
)
from ..state import QueueState
from ..redact import redact_location as _redact  # the one redaction (userinfo, password=, encoded)
from . import pg_schema, pg_tombstones, pgwait, rows
from .base import DEFAULT_LOG_MAX_ENTRIES, Store

try:
    import psycopg
    from psycopg import errors as pg_errors
    from psycopg import sql

    from . import pgpipe
except ImportError:  # pragma: no cover - exercised by a subprocess test without psycopg
    psycopg = None  # type: ignore[assignment]

_COLS = ", ".join(rows.BATCH_COLUMNS)
_BATCH_SELECT = f"SELECT {_COLS} FROM turnq_batches"
_TOMB_SELECT = "SELECT batch_id, outcome, settled_at_ms, batch FROM turnq_tombstones"
_BATCH_INSERT = f"INSERT INTO turnq_batches ({_COLS}) VALUES ({', '.join(['%s'] * len(rows.BATCH_COLUMNS))})"
_BATCH_UPDATE = ("UPDATE turnq_batches SET session_id = %s, enqueue_seq = %s, batch = %s, fencing_counter = %s, "
                 "claim_id = %s, owner_id = %s, lease_token = %s, claimed_at_ms = %s, expires_at_ms = %s "
                 "WHERE batch_id = %s")
_TOMB_INSERT = (f"INSERT INTO turnq_tombstones ({', '.join(rows.TOMBSTONE_COLUMNS)}) "
                f"VALUES ({', '.join(['%s'] * len(rows.TOMBSTONE_COLUMNS))})")
#: PostgreSQL's lock_timeout is an int of milliseconds, and 0 means "wait forever": a longer
#: --lock-timeout waits this long (24.8 days), a zero one 1 ms (as the JSON store, one try).
PG_MAX_LOCK_TIMEOUT_MS = 2**31 - 1
#: For the write transaction (LOCAL): no bitmap scans. Every claim and complete leaves a dead row
#: version behind, and until a vacuum comes (autovacuum: a minute apart by default; it may be
#: off) a bitmap scan of the session's rows walks all of them, on every operation (measured:
#: 0.4 ms at 2,700 dead rows). A plain index scan marks the dead ones it meets (PostgreSQL's
#: "killed" index entries) and skips them after. (Not enable_seqscan = off: its disable cost
#: pushes a plan of the sequences past the JIT threshold, 180 ms a statement.)
_NO_BITMAP_SCANS = "set_config('enable_bitmapscan', 'off', true)"
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


class _SessionState(rows.RowState):
    """A session's state whose next enqueue_seq is taken from the store's sequence only when the
    engine asks for it (an enqueue), one fresh value per batch it enqueues: claims never touch it.
    Its tombstones stay in their table (rows.RowState; `_KeyLookup` is their source).

    The engine reads `next_seq`, makes the batch with that value, then sets `next_seq` to it + 1:
    that set marks the value as used, and the next read takes a new one. Any other value set
    (a caller putting the counter somewhere, as a fixture might) is `wanted` and is written at
    the end under the store lock, held exclusively for it."""

    def __init__(self, take_seq: Any, tombstones: rows.TombstoneRows) -> None:
        self._take_seq: Any = None
        self._taken: int | None = None
        self.wanted: int | None = None
        self.failure: TurnqError | None = None
        super().__init__(1, tombstones)  # sets next_seq = 1 through the setter below: undone next
        self.wanted = None
        self._take_seq = take_seq

    def takes_next(self) -> bool:
        """Would reading `next_seq` now take a value from the sequence?"""
        return self.wanted is None and self._taken is None

    def hand_seq(self, value: int) -> None:
        """A value taken ahead (see `_KeyLookup`): the next read of `next_seq` gives it."""
        self._taken = value

    @property  # type: ignore[override]
    def next_seq(self) -> int:
        if self.wanted is not None:
            return self.wanted
        if self._taken is None:
            self._taken = self._take_seq()
        return self._taken

    @next_seq.setter
    def next_seq(self, value: int) -> None:
        if self._taken is not None and value == self._taken + 1 and self.wanted is None:
            self._taken = None  # used: the next enqueue takes a new value
        else:
            self.wanted = value


class _KeyLookup(pg_tombstones.PgTombstones):
    """A write transaction's tombstones (pg_tombstones.py), its database errors turned into the
    TurnqError the transaction then ends in (`fail`). In a session transaction, `find` (only an
    enqueue with a source key calls it) goes out in one pipeline with taking the next
    enqueue_seq, taken only if no tombstone holds the key: an enqueue whose lookup finds nothing
    asks for a value next anyway, so this saves it a round trip, and a replay takes none. (A
    tombstone past the retention is found but is no replay: that enqueue then takes its value
    by itself, one round trip more.)"""

    def __init__(self, conn: Any, session_id: str | None, snapshot: rows.Snapshot, location: str,
                 fail: Callable[[Exception], TurnqError], prepared: pgpipe.Prepared) -> None:
        super().__init__(conn, session_id, snapshot, location)
        self.fail = fail
        self.prepared = prepared
        self.state: _SessionState | None = None  # a session transaction's, once it is made

    def find(self, session_id: str, source_key: str) -> Any:
        try:
            state = self.state
            if state is None or not state.takes_next():
                return super().find(session_id, source_key)
            pipe = pgpipe.Pipeline(self.conn, self.prepared)
            pipe.add(pg_tombstones.FIND, (session_id, source_key))
            pipe.add(pg_schema.TAKE_SEQ_UNLESS_HELD, (session_id, source_key))
            found, taken = pipe.run()
            if taken:
                state.hand_seq(int(taken[0][0]))
            return pg_tombstones.newest(found, self.location)
        except psycopg.Error as err:
            raise self.fail(err) from None

    def drop(self, session_id: str | None, cutoff_ms: int | None) -> list[Any]:
        try:
            return super().drop(session_id, cutoff_ms)
        except psycopg.Error as err:
            raise self.fail(err) from None

    def load(self) -> list[Any]:
        try:
            return super().load()
        except psycopg.Error as err:
            raise self.fail(err) from None

    def count(self) -> dict[str, int]:
        try:
            return super().count()
        except psycopg.Error as err:
            raise self.fail(err) from None


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
        self.lock_timeout_ms = min(max(1, int(lock_timeout_ms)), PG_MAX_LOCK_TIMEOUT_MS)
        self.log_enabled = log_enabled
        self.log_max_entries = max(0, log_max_entries)
        self._conn: Any = None
        self._pid = os.getpid()
        self._schema_ready = False
        self._lock = threading.RLock()
        self._cache = rows.BatchCache()
        self._prepared = pgpipe.Prepared()  # the write path's statements, prepared per connection

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
        # psycopg prepares nothing of its own: a ROLLBACK through it would then DEALLOCATE ALL,
        # the write path's statements too (pgpipe prepares those, once per connection).
        kwargs: dict[str, Any] = {"autocommit": True, "prepare_threshold": None}
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
        if isinstance(err, pg_errors.SequenceGeneratorLimitExceeded) and "turnq_log_ids" in text:
            # The audit ids' sequence (bigint) is used up: the transaction is rolled back whole.
            return audit_ids_at_limit(self.location, pg_schema.LOG_MAX_ID, "2^63-1 in a PostgreSQL store")
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
        """Create the tables on first use, or upgrade a version 1 or 2 store, under an advisory
        lock (concurrent first uses are safe); replace an older `turnq_append_log` (see
        `pg_schema.LOG_FUNCTION_REVISION`)."""
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
                for statement in pg_schema.statements(pg_schema.TABLES + ";\n" + pg_schema.OBJECTS):
                    conn.execute(statement)
            if self._check_version(conn) < pg_schema.SCHEMA_VERSION:
                # No older writer may be half-way: take the store lock exclusively.
                conn.execute(f"SELECT pg_advisory_xact_lock({_STORE_KEY})")
                version = self._check_version(conn)
                if version < pg_schema.SCHEMA_VERSION:
                    pg_schema.upgrade(conn, version, self.location)
            if pg_schema.log_function_is_older(conn.execute(pg_schema.LOG_FUNCTION_IN_STORE).fetchone()[0]):
                self._replace_log_function(conn)
        self._schema_ready = True

    def _replace_log_function(self, conn: Any) -> None:
        """The newer `turnq_append_log`, in a savepoint: a role that may write the tables but
        does not own the function keeps the older body (slower, not wrong) and goes on."""
        try:
            with conn.transaction():
                for statement in pg_schema.statements(pg_schema.LOG_FUNCTION):
                    conn.execute(statement)
        except pg_errors.InsufficientPrivilege:
            pass

    def _check_version(self, conn: Any) -> int:
        row = conn.execute("SELECT value FROM turnq_meta WHERE key = 'schema_version'").fetchone()
        version = None if row is None else int(row[0])
        rows.check_version(version, self.location, pg_schema.SCHEMA_VERSION)
        return version  # type: ignore[return-value]

    def _next_seq(self, conn: Any, version: int) -> int:
        """The next enqueue_seq, not taken (a version 1 store, not yet upgraded, keeps it in a row)."""
        if version == 1:
            query = "SELECT value FROM turnq_meta WHERE key = 'next_enqueue_seq'"
        else:
            query = pg_schema.PEEK_SEQ
        row = conn.execute(query).fetchone()
        if row is None or row[0] is None:
            raise StoreUnreadable(f"store {self.location} is unreadable: turnq_meta has no enqueue counter")
        return int(row[0])

    def _batch_query(self, session_id: str | None, *, lock: bool) -> tuple[str, tuple[Any, ...]]:
        suffix = " FOR UPDATE" if lock else ""
        if session_id is None:
            return f"{_BATCH_SELECT} ORDER BY enqueue_seq{suffix}", ()
        return f"{_BATCH_SELECT} WHERE session_id = %s ORDER BY enqueue_seq{suffix}", (session_id,)

    def _fill(self, state: QueueState, snapshot: rows.Snapshot | None, batch_rows: list[Any]) -> QueueState:
        """The scope's batch rows; tombstones stay in their table (rows.RowState)."""
        rows.load_batches([_batch_values(r) for r in batch_rows], state, snapshot, self.location, self._cache)
        return state

    def _load(self, conn: Any, session_id: str | None, state: QueueState, snapshot: rows.Snapshot | None,
              *, lock: bool) -> QueueState:
        return self._fill(state, snapshot, conn.execute(*self._batch_query(session_id, lock=lock)).fetchall())

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
        """turnq's tables are in the schema (a server or schema never written to: False)."""
        with self._reading() as conn:
            return conn is not None

    def read(self, session_id: str | None = None) -> QueueState:
        with self._reading() as conn:
            if conn is None:
                return QueueState()
            # Tombstones are read later, in a snapshot of their own, if asked for.
            tombstones = pg_tombstones.PgTombstones(None, session_id, None, self.location, self._reading)
            state = rows.RowState(self._next_seq(conn, self._check_version(conn)), tombstones)
            state.tombstone_retention_ms = pg_tombstones.read_retention(conn)
            return self._load(conn, session_id, state, None, lock=False)

    def read_settings(self) -> dict[str, int | None]:
        with self._reading() as conn:
            if conn is None:
                return {rows.RETENTION_KEY: None}
            self._check_version(conn)
            return {rows.RETENTION_KEY: pg_tombstones.read_retention(conn)}

    def write_setting(self, name: str, value: int | None) -> None:
        with self._lock:
            conn = self._connection(writing=True)
            try:
                self._ensure_schema(conn)
                with conn.transaction():
                    pg_tombstones.write_retention(conn, value)
            except psycopg.Error as err:
                raise self._error(err, writing=True) from None

    def read_log(self, after_id: int = 0) -> list[dict[str, Any]]:
        """Entries with id > `after_id`, never one that a later call could find below an id this
        call returned (so `turnq log --follow` never misses or repeats one).

        Ids come from a sequence, so they are not in commit order: a snapshot may see id 7
        committed while id 6 is still in flight. A run of ids without a hole from `after_id + 1`
        is safe as it is. Past a hole (an entry in flight, a rolled-back writer's id, or entries
        dropped by retention), the holder W of a missing id got its transaction id before it
        took the entry's id (`turnq_append_log` makes sure), so before the later entry
        committed, so before this read. A snapshot's xmax cannot bound W: it is only the newest
        *ended* transaction id + 1, and W may be newer than that. So the reader takes a
        transaction id of its own, R (newer than every id handed out before, W's included), and
        waits until the oldest transaction still running is newer than R: W has then ended, and
        every id up to the last one seen is settled: read them again. If that wait runs past the
        lock timeout (a transaction left open elsewhere on the server), return the safe run."""
        with self._reading() as conn:
            if conn is None:
                return []
            found = conn.execute("SELECT id, entry FROM turnq_log WHERE id > %s ORDER BY id", (after_id,)).fetchall()
        safe = _unbroken(found, after_id)
        if safe < len(found) and self._wait_for_older_transactions():
            with self._reading() as conn:
                found = conn.execute("SELECT id, entry FROM turnq_log WHERE id > %s AND id <= %s ORDER BY id",
                                     (after_id, found[-1][0])).fetchall()
            safe = len(found)
        return rows.log_entries(found[:safe])  # torn or hostile rows skipped

    def _wait_for_older_transactions(self) -> bool:
        """Wait until every transaction that had its id before this call has ended (False: the
        lock timeout ran out first)."""
        deadline = time.monotonic() + self.lock_timeout_ms / 1000
        pause = 0.002
        with self._lock:
            conn = self._connection(writing=False)
            try:
                # Autocommit: this one-statement transaction has ended before the wait begins.
                mark = conn.execute("SELECT pg_current_xact_id()").fetchone()[0]
                while True:
                    if conn.execute("SELECT pg_snapshot_xmin(pg_current_snapshot()) > %s::xid8",
                                    (str(mark),)).fetchone()[0]:
                        return True
                    if time.monotonic() + pause > deadline:
                        return False
                    time.sleep(pause)
                    pause = min(pause * 2, 0.05)
            except psycopg.Error as err:
                raise self._error(err, writing=False) from None

    def raw_document(self) -> dict[str, Any]:
        with self._reading() as conn:
            if conn is None:
                return {}  # no tables yet: as the JSON store says of a missing file
            version = conn.execute("SELECT value FROM turnq_meta WHERE key = 'schema_version'").fetchone()
            try:
                seq: Any = self._next_seq(conn, 1 if version is not None and int(version[0]) == 1 else 2)
            except (StoreUnreadable, psycopg.Error):
                seq = None  # doctor reports it
            batch_rows = [_batch_values(r) for r in conn.execute(f"{_BATCH_SELECT} ORDER BY enqueue_seq")]
            tomb_rows = [_tomb_values(r) for r in conn.execute(f"{_TOMB_SELECT} ORDER BY settled_at_ms, enqueue_seq")]
            return rows.raw_document(seq, batch_rows, tomb_rows)

    def replace_document(self, document: dict[str, Any], *, backup: bool = True, backup_suffix: str | None = None,
                         expected: dict[str, Any] | None = None) -> str | None:
        """For `turnq doctor --fix`: one transaction. A server has no file to keep a backup beside:
        none is made (None is returned); `turnq migrate --from URL --to FILE.json` makes one."""
        return rows.replace_document(self, document, expected=expected)

    def change_waiter(self, session_id: str) -> pgwait.PgWaiter:
        """LISTEN/NOTIFY: woken as a write that may make the session's work claimable commits."""
        return pgwait.PgWaiter(self, session_id)

    # ----------------------------------------------------------------- writing

    @contextmanager
    def transaction(self, session_id: str | None = None, *, takes_seq: bool = False) -> Iterator[QueueState]:
        with self._lock:
            conn = self._connection(writing=True)
            try:
                self._ensure_schema(conn)
            except psycopg.Error as err:
                raise self._error(err, writing=True) from None
            try:
                try:
                    state, snapshot = self._begin(conn, session_id, takes_seq)
                except psycopg.Error as err:
                    raise self._error(err, writing=True) from None
                yield state
                try:
                    self._finish(conn, state, snapshot)
                except psycopg.Error as err:
                    raise self._error(err, writing=True) from None
            finally:
                if self._conn is conn and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    try:
                        conn.execute("ROLLBACK")
                    except psycopg.Error:
                        self._drop()

    def _begin(self, conn: Any, session_id: str | None, takes_seq: bool) -> tuple[QueueState, rows.Snapshot]:
        """One round trip (a pipeline): BEGIN, the lock timeout (LOCAL: this transaction's), the
        advisory locks and the tombstone retention (one statement), the next enqueue_seq taken if
        the operation will certainly use it (`takes_seq`: saves an enqueue its own round trip;
        taken after the session's lock, so one session's values increase in commit order), the
        batch rows. Tombstones are not loaded (`_KeyLookup`)."""
        timeout = f"{int(self.lock_timeout_ms)}ms"
        # The retention rides on the locks' statement (no round trip of its own). It is read as
        # of that statement's start: a change made meanwhile applies from the next operation.
        retention = pg_tombstones.RETENTION_EXPR
        used_up = pg_schema.LOG_IDS_USED_UP if self.log_enabled else "false"
        seq_at = None
        pipe = pgpipe.Pipeline(conn, self._prepared)
        pipe.add("BEGIN")
        if session_id is None:
            first_at = pipe.add(f"SELECT set_config('lock_timeout', %s, true), {_NO_BITMAP_SCANS}, "
                                f"pg_advisory_xact_lock({_STORE_KEY}), {retention}, {used_up}", (timeout,))
            seq_at = pipe.add(pg_schema.PEEK_SEQ)
        else:
            first_at = pipe.add(f"SELECT set_config('lock_timeout', %s, true), {_NO_BITMAP_SCANS}, "
                                f"pg_advisory_xact_lock_shared({_STORE_KEY}), "
                                f"pg_advisory_xact_lock({_SESSION_KEY}), {retention}, {used_up}",
                                (timeout, session_id))
            if takes_seq:
                seq_at = pipe.add(pg_schema.TAKE_SEQ_IF_LOGGABLE if self.log_enabled else pg_schema.TAKE_SEQ)
        batch_at = pipe.add(*self._batch_query(session_id, lock=True))
        got = pipe.run()
        seq_rows = [] if seq_at is None else got[seq_at]
        *_, retention_ms, log_ids_used_up = got[first_at][0]
        if log_ids_used_up:  # refused before anything is taken or written
            raise audit_ids_at_limit(self.location, pg_schema.LOG_MAX_ID, "2^63-1 in a PostgreSQL store")
        state: QueueState
        if session_id is None:
            seq = int(seq_rows[0][0])
            snapshot = rows.Snapshot(seq)
            state = rows.RowState(seq, _KeyLookup(conn, None, snapshot, self.location,
                                                  lambda err: self._failed(state, err), self._prepared))
        else:
            snapshot = rows.Snapshot(0)  # the counter is not known until asked for
            tombstones = _KeyLookup(conn, session_id, snapshot, self.location, lambda err: self._failed(state, err),
                                    self._prepared)
            state = tombstones.state = _SessionState(lambda: self._take_seq(conn, state), tombstones)
            if seq_rows:
                state.hand_seq(int(seq_rows[0][0]))
        state.tombstone_retention_ms = snapshot.retention_ms = None if retention_ms is None else int(retention_ms)
        self._fill(state, snapshot, got[batch_at])
        return state, snapshot

    def _take_seq(self, conn: Any, state: QueueState) -> int:
        """The next enqueue_seq, taken from the sequence (asked for by the engine, mid-operation)."""
        try:
            pipe = pgpipe.Pipeline(conn, self._prepared)
            pipe.add(pg_schema.TAKE_SEQ)
            return int(pipe.run()[0][0][0])
        except psycopg.Error as err:
            raise self._failed(state, err) from None

    def _failed(self, state: QueueState, err: Exception) -> TurnqError:
        """A statement sent mid-operation failed: the database transaction is aborted now. Even if
        the caller goes on (the API logs a refusal and leaves the block normally), the transaction
        must end in this error (`_finish` raises it)."""
        state.failure = self._error(err, writing=True)  # type: ignore[attr-defined]
        return state.failure  # type: ignore[attr-defined]

    def _finish(self, conn: Any, state: QueueState, snapshot: rows.Snapshot) -> None:
        """One round trip (a pipeline): the changed rows, the audit entries, COMMIT."""
        failure = getattr(state, "failure", None)
        if failure is not None:
            state.audit.clear()
            raise failure
        wake = pgwait.sessions_to_wake(state)  # before `changed` and the audit entries are cleared
        pipe = pgpipe.Pipeline(conn, self._prepared)
        if state.changed:
            self._save(pipe, snapshot, state)
            state.changed = False
        if state.audit:
            entries = list(state.audit)
            state.audit.clear()
            if self.log_enabled:
                self._append_log(pipe, entries)
        if wake:  # delivered to LISTENing claimers when (and only if) this transaction commits
            pipe.add(pgwait.NOTIFY_SQL, (wake,))
        pipe.add("COMMIT")
        pipe.run()

    def _save(self, pipe: pgpipe.Pipeline, snapshot: rows.Snapshot, state: QueueState) -> None:
        changes = rows.diff(snapshot, state)
        if changes.delete_batches:
            pipe.add("DELETE FROM turnq_batches WHERE batch_id = ANY(%s)", (changes.delete_batches,))
        for r in changes.update_batches:
            pipe.add(_BATCH_UPDATE, (*r[1:], r[0]))
        for r in changes.insert_batches:
            pipe.add(_BATCH_INSERT, r)
        if changes.delete_tombstones:
            pipe.add("DELETE FROM turnq_tombstones WHERE batch_id = ANY(%s)", (changes.delete_tombstones,))
        for r in changes.insert_tombstones:
            pipe.add(_TOMB_INSERT, r)
        if isinstance(state, _SessionState):
            if state.wanted is not None:
                # Setting the counter: no other writer may take a value meanwhile.
                pipe.add(f"SELECT pg_advisory_xact_lock({_STORE_KEY})")
                pipe.add(pg_schema.SET_SEQ, (state.wanted,))
        elif state.next_seq != snapshot.next_seq:  # under the store lock, held exclusively
            pipe.add(pg_schema.SET_SEQ, (state.next_seq,))
        if state.tombstone_retention_ms != snapshot.retention_ms:
            pg_tombstones.write_retention(pipe, state.tombstone_retention_ms)

    def _append_log(self, pipe: pgpipe.Pipeline, entries: list[dict[str, Any]]) -> None:
        """One statement (`turnq_append_log`): ids from the `turnq_log_ids` sequence, only the
        newest `log_max_entries` kept."""
        pipe.add("SELECT turnq_append_log(%s::text[], %s)",
                 ([rows.dumps(entry) for entry in entries], self.log_max_entries))


def _unbroken(found: list[Any], after_id: int) -> int:
    """How many of `found` (rows by id) follow `after_id` without a hole."""
    expected = after_id + 1
    for count, row in enumerate(found):
        if row[0] != expected:
            return count
        expected += 1
    return len(found)


def _split_url(url: str) -> tuple[str, str | None]:
    """libpq's URL without turnq's own `schema=` option, and that schema (None: the default)."""
    try:
        parts = urlsplit(url)
    except ValueError as err:  # `postgresql://u:pw@[::1:5432/db`: an unclosed IPv6 bracket
        raise InvalidInput(f"{_redact(url)}: not a valid URL ({err})") from None
    query = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [value for key, value in query if key == "schema"]
    if len(schemas) > 1 or (schemas and not schemas[0]):
        raise InvalidInput(f"{_redact(url)}: give schema=NAME once, with a name")
    rest = urlencode([(key, value) for key, value in query if key != "schema"])
    scheme = "postgresql" if parts.scheme.lower() == "postgres" else parts.scheme
    return urlunsplit((scheme, parts.netloc, parts.path, rest, parts.fragment)), (schemas[0] if schemas else None)
