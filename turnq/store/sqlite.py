"""The SQLite backend (`sqlite:///path.db`): the standard library's sqlite3, in WAL mode.

Every write is one `BEGIN IMMEDIATE` transaction: it takes SQLite's write lock at once
(waiting up to the lock timeout, then StoreBusy), loads the rows of the session the
operation names, lets the engine change them, and writes back only the rows that
changed, with the audit entries, before `COMMIT`. Readers never wait: WAL gives each
read transaction a consistent snapshot. The tables are described in `rows.py`; they are
created on first write, and `turnq_meta.schema_version` refuses a newer schema.

Reads use a read-only connection (`mode=ro`), so they work where nothing can be written (a
read-only folder or file system, a full disk); the first write reopens it read-write. A
write checks, once it holds the write lock and again before COMMIT, that the file it has
open is still the one at the store's path (device and inode): a file removed (or replaced)
under a long-running process would otherwise take writes nobody can ever read. A store
path that is a symbolic link is resolved once, when the store is opened.
"""

from __future__ import annotations

import os
import stat
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .. import limits
from ..errors import StoreBusy, StoreUnreadable, StoreUnwritable, TurnqError, audit_ids_at_limit
from ..state import QueueState
from . import rows
from .base import DEFAULT_LOG_MAX_ENTRIES, Store

_SCHEMA = """
CREATE TABLE turnq_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE turnq_batches (
    batch_id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    enqueue_seq INTEGER NOT NULL UNIQUE,
    batch TEXT NOT NULL,
    fencing_counter INTEGER NOT NULL,
    claim_id TEXT, owner_id TEXT, lease_token TEXT, claimed_at_ms INTEGER, expires_at_ms INTEGER
);
CREATE INDEX turnq_batches_session ON turnq_batches (session_id, enqueue_seq);
CREATE TABLE turnq_tombstones (
    batch_id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    source_key TEXT NOT NULL,
    enqueue_seq INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    settled_at_ms INTEGER NOT NULL,
    batch TEXT NOT NULL
);
CREATE INDEX turnq_tombstones_session ON turnq_tombstones (session_id, settled_at_ms, enqueue_seq);
CREATE INDEX turnq_tombstones_key ON turnq_tombstones (session_id, source_key);
CREATE TABLE turnq_log (id INTEGER PRIMARY KEY, entry TEXT NOT NULL);
"""

_BATCH_SELECT = f"SELECT {', '.join(rows.BATCH_COLUMNS)} FROM turnq_batches"
_TOMB_SELECT = "SELECT batch_id, outcome, settled_at_ms, batch FROM turnq_tombstones"
_BATCH_INSERT = (f"INSERT INTO turnq_batches ({', '.join(rows.BATCH_COLUMNS)}) "
                 f"VALUES ({', '.join('?' * len(rows.BATCH_COLUMNS))})")
_BATCH_UPDATE = ("UPDATE turnq_batches SET session_id = ?2, enqueue_seq = ?3, batch = ?4, fencing_counter = ?5, "
                 "claim_id = ?6, owner_id = ?7, lease_token = ?8, claimed_at_ms = ?9, expires_at_ms = ?10 "
                 "WHERE batch_id = ?1")
_TOMB_FIND = f"{_TOMB_SELECT} WHERE session_id = ? AND source_key = ?"
#: Schema version 1 -> 2: the index an enqueue's tombstone lookup uses.
_UPGRADE_2 = "CREATE INDEX IF NOT EXISTS turnq_tombstones_key ON turnq_tombstones (session_id, source_key)"
_TOMB_INSERT = (f"INSERT INTO turnq_tombstones ({', '.join(rows.TOMBSTONE_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(rows.TOMBSTONE_COLUMNS))})")

#: SQLite integers are signed 64-bit; turnq's are unsigned. A value above I64_MAX is stored as
#: its two's-complement negative (no column holds a negative value otherwise), so nothing is lost.
I64_MAX = 2**63 - 1


#: ORDER BY of u64 columns: the values stored negative (above I64_MAX) come after the others.
_U64_ORDER_SEQ = "enqueue_seq < 0, enqueue_seq"
_U64_ORDER_SETTLED = "settled_at_ms < 0, settled_at_ms, enqueue_seq < 0, enqueue_seq"


def _to_db(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(v - 2**64 if type(v) is int and v > I64_MAX else v for v in row)


def _from_db(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(v + 2**64 if type(v) is int and v < 0 else v for v in row)


# SQLite's primary result codes (the low byte of an extended code).
_BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 5, 6, 8, 10, 11, 13, 14, 26


class SqliteStore(Store):
    def __init__(self, path: str | Path, *, lock_timeout_ms: int = 10_000, location: str | None = None,
                 log_enabled: bool = True, log_max_entries: int = DEFAULT_LOG_MAX_ENTRIES) -> None:
        # Resolved once, as the JSON store does: the database and its -wal sit at the target.
        self.path = Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)
        self.location = location if location is not None else f"sqlite:///{path}"
        self.lock_timeout_ms = lock_timeout_ms
        self.log_enabled = log_enabled
        self.log_max_entries = max(0, log_max_entries)
        self._conn: sqlite3.Connection | None = None
        self._writable = False  # whether _conn was opened read-write
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the file _conn has open
        self._pid = os.getpid()
        self._lock = threading.RLock()
        self._cache = rows.BatchCache()
        self._commits = 0  # this store's own commits, for change_marker (data_version leaves them out)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # ----------------------------------------------------------------- connection

    def _connection(self, create: bool) -> sqlite3.Connection | None:
        """The open connection: read-write for a transaction (`create`: the file is made when
        missing), else read-only. None when the file does not exist and `create` is false."""
        if self._conn is not None and self._pid == os.getpid():
            if create and not self._writable:
                self.close()  # a read-only connection: reopen it read-write
            elif not create and self._identity != self._file_identity():
                self.close()  # another file is at the path now: a read reads that one
            else:
                return self._conn
        # A connection opened before a fork belongs to the parent: leave it (unclosed) to it.
        self._conn, self._pid = None, os.getpid()
        self._refuse_special_file()
        if not self.path.exists():
            if not create:
                return None
            if not self.path.parent.is_dir():
                raise StoreUnwritable(
                    f"cannot write store {self.location}: its folder {self.path.parent} does not exist")
            self._create_file()
        new_file = not self.path.exists() or self.path.stat().st_size == 0
        conn = self._connect("rwc" if create else "ro", writing=create)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.lock_timeout_ms)}")
            if create and new_file:
                # Persistent in the file: readers then never block the writer, nor it them.
                # (Only for a file turnq creates: a foreign database is left as it is.)
                self._switch_to_wal(conn)
        except sqlite3.Error as err:
            conn.close()
            raise self._error(err, writing=create) from None
        self._conn, self._writable, self._identity = conn, create, self._file_identity()
        return conn

    def _switch_to_wal(self, conn: sqlite3.Connection) -> None:
        """PRAGMA journal_mode = WAL. Several processes may open a new file at once; the switch
        needs the file to itself and SQLite refuses it at once (SQLITE_BUSY: its busy handler is
        not used there), so it is tried again until the lock timeout. Once one process made the
        file WAL, the others' switch is a no-op."""
        deadline = time.monotonic() + self.lock_timeout_ms / 1000
        pause = 0.002
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as err:
                if getattr(err, "sqlite_errorcode", 0) & 0xFF not in (_BUSY, _LOCKED) or \
                        time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def _refuse_special_file(self) -> None:
        """A directory, FIFO or device at the path is no database: opening a FIFO would hang, and
        /dev/zero reads as an empty database (nothing is read or written then)."""
        try:
            mode = self.path.stat().st_mode
        except OSError:
            return  # missing (created or reported by the caller), or unreadable (SQLite words it)
        if not stat.S_ISREG(mode):
            raise StoreUnreadable(f"store {self.location} is {limits.file_kind(mode)}, not a SQLite database file")

    def _create_file(self) -> None:
        """Make the empty database file as any program makes a file (0666 less the umask; SQLite
        alone would use 0644 whatever the umask); its -wal and -shm files take its mode."""
        try:
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666))
        except FileExistsError:
            pass  # another process made it first
        except OSError as err:
            raise StoreUnwritable(f"cannot write store {self.location}: {err.strerror or err}") from None

    def _connect(self, mode: str, *, writing: bool) -> sqlite3.Connection:
        uri = f"file:{quote(str(self.path.absolute()))}?mode={mode}"
        conn = None
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=self.lock_timeout_ms / 1000, isolation_level=None,
                                   check_same_thread=False)
            if not writing:  # the file is opened lazily: make it happen here
                conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            return conn
        except sqlite3.Error as err:
            if conn is not None:
                conn.close()
            code = getattr(err, "sqlite_errorcode", 0) & 0xFF
            if writing or code not in (_CANTOPEN, _READONLY, _IOERR, _FULL) or self._wal_holds_frames():
                raise self._error(err, writing=writing) from None
        # A WAL database is opened read-only only if its -shm file can be made beside it: not
        # in a read-only folder or file system, nor on a full disk. Nobody can write there
        # either, so the file is read as immutable (without the -shm) — unless a -wal file
        # holds commits, which an immutable read would not see (refused above).
        try:
            conn = sqlite3.connect(uri + "&immutable=1", uri=True, isolation_level=None, check_same_thread=False)
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            return conn
        except sqlite3.Error as err:
            raise self._error(err, writing=False) from None

    def _wal_holds_frames(self) -> bool:
        try:
            return os.path.getsize(f"{self.path}-wal") > 0
        except OSError:
            return False

    def _file_identity(self) -> tuple[int, int] | None:
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return (info.st_dev, info.st_ino)

    def _check_identity(self) -> None:
        """Refuse to go on writing into a file that is no longer the one at the store's path."""
        if self._identity is not None and self._file_identity() == self._identity:
            return
        raise StoreUnwritable(f"cannot write store {self.location}: the database file at its path was removed or "
                              "replaced since it was opened; nothing was written (the next operation opens "
                              "the file that is there now)")

    def _error(self, err: sqlite3.Error, *, writing: bool) -> TurnqError:
        code = getattr(err, "sqlite_errorcode", 0) & 0xFF
        text = " ".join(str(err).split())
        if code in (_BUSY, _LOCKED):
            return StoreBusy(f"store {self.location} is busy: another process holds its write lock "
                             f"(waited {self.lock_timeout_ms} ms); retry, or raise --lock-timeout")
        if code in (_NOTADB, _CORRUPT):
            return StoreUnreadable(f"store {self.location} is unreadable: {text}; it was left as it is")
        if writing:  # a read never says "cannot write": it opened the file read-only
            return StoreUnwritable(f"cannot write store {self.location}: {text}; the store was left as it was")
        return StoreUnreadable(f"store {self.location} cannot be read: {text}")

    def _meta(self, conn: sqlite3.Connection) -> dict[str, int] | None:
        """turnq_meta as a dict; None when the database has no turnq tables at all."""
        try:
            return {key: _from_db((value,))[0] for key, value in conn.execute("SELECT key, value FROM turnq_meta")}
        except sqlite3.OperationalError as err:
            if "no such table" not in str(err):
                raise
        tables = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        if tables:
            raise StoreUnreadable(f"store {self.location} is unreadable: a SQLite database without turnq's "
                                  "tables (no turnq_meta); it was left as it is")
        return None

    def _upgrade(self, conn: sqlite3.Connection, meta: dict[str, int]) -> None:
        """Bring an older schema up to this turnq's, in the write transaction that found it."""
        if meta.get("schema_version", rows.SCHEMA_VERSION) < 2:
            conn.execute(_UPGRADE_2)
            conn.execute("UPDATE turnq_meta SET value = 2 WHERE key = 'schema_version'")
            meta["schema_version"] = 2

    def _checked_meta(self, meta: dict[str, int]) -> int:
        rows.check_version(meta.get("schema_version"), self.location)
        seq = meta.get("next_enqueue_seq")
        if not isinstance(seq, int) or seq < 1:
            raise StoreUnreadable(f"store {self.location} is unreadable: invalid next_enqueue_seq {seq!r}; "
                                  "it was left as it is")
        return seq

    def _create(self, conn: sqlite3.Connection) -> dict[str, int]:
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        meta = {"schema_version": rows.SCHEMA_VERSION, "next_enqueue_seq": 1, "next_log_id": 1}
        conn.executemany("INSERT INTO turnq_meta (key, value) VALUES (?, ?)", list(meta.items()))
        return meta

    def _load(self, conn: sqlite3.Connection, session_id: str | None, meta: dict[str, int],
              snapshot: rows.Snapshot | None) -> QueueState:
        """The scope's batches; its tombstones stay in the table (see rows.RowState)."""
        state = rows.RowState(self._checked_meta(meta), _Tombstones(self, conn, session_id, snapshot))
        state.tombstone_retention_ms = meta.get(rows.RETENTION_KEY)
        if snapshot is not None:
            snapshot.retention_ms = state.tombstone_retention_ms
        if session_id is None:
            batch_rows = conn.execute(f"{_BATCH_SELECT} ORDER BY {_U64_ORDER_SEQ}").fetchall()
        else:
            batch_rows = conn.execute(f"{_BATCH_SELECT} WHERE session_id = ? ORDER BY {_U64_ORDER_SEQ}",
                                      (session_id,)).fetchall()
        rows.load_batches([_from_db(r) for r in batch_rows], state, snapshot, self.location, self._cache)
        return state

    # ----------------------------------------------------------------- reading

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection | None]:
        """A read transaction (one snapshot), or None when there is no database file."""
        with self._lock:
            conn = self._connection(create=False)
            if conn is None:
                yield None
                return
            try:
                conn.execute("BEGIN")
                try:
                    yield conn
                finally:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
            except sqlite3.Error as err:
                raise self._error(err, writing=False) from None

    def exists(self) -> bool:
        return self.path.exists()

    def read(self, session_id: str | None = None) -> QueueState:
        with self._reading() as conn:
            if conn is None:
                return QueueState()
            meta = self._meta(conn)
            if meta is None:
                return QueueState()
            state = self._load(conn, session_id, meta, None)
            # The caller looks at the state after this snapshot ends: its tombstones, if it asks
            # for them (inspect, export), are read then, in a snapshot of their own.
            state._rows = _Tombstones(self, None, session_id, None)
            return state

    def read_settings(self) -> dict[str, int | None]:
        with self._reading() as conn:
            meta = None if conn is None else self._meta(conn)
            if meta is None:
                return {rows.RETENTION_KEY: None}
            rows.check_version(meta.get("schema_version"), self.location)
            return {rows.RETENTION_KEY: meta.get(rows.RETENTION_KEY)}

    def write_setting(self, name: str, value: int | None) -> None:
        with self.transaction(""):  # (creates or upgrades the tables; an empty session loads nothing)
            assert self._conn is not None
            self._write_setting(self._conn, name, value)

    @staticmethod
    def _write_setting(conn: sqlite3.Connection, name: str, value: int | None) -> None:
        if value is None:
            conn.execute("DELETE FROM turnq_meta WHERE key = ?", (name,))
        else:
            conn.execute("INSERT OR REPLACE INTO turnq_meta (key, value) VALUES (?, ?)", (name, *_to_db((value,))))

    def change_marker(self) -> Any:
        """`PRAGMA data_version` (it changes when another connection commits) and this store's
        own commit count: one cheap query, no read transaction."""
        with self._lock:
            conn = self._connection(create=False)
            if conn is None:
                return ("missing",)
            try:
                version = conn.execute("PRAGMA data_version").fetchone()[0]
            except sqlite3.Error as err:
                raise self._error(err, writing=False) from None
            return (id(conn), version, self._commits)

    def read_log(self, after_id: int = 0) -> list[dict[str, Any]]:
        with self._reading() as conn:
            if conn is None or self._meta(conn) is None:
                return []
            found = conn.execute("SELECT id, entry FROM turnq_log WHERE id > ? ORDER BY id", (after_id,)).fetchall()
            return rows.log_entries(found)

    def raw_document(self) -> dict[str, Any]:
        with self._reading() as conn:
            if conn is None:
                return {}  # as the JSON store says of a missing file
            meta = self._meta(conn)
            if meta is None:
                return {}
            batch_rows = conn.execute(f"{_BATCH_SELECT} ORDER BY {_U64_ORDER_SEQ}").fetchall()
            tomb_rows = conn.execute(f"{_TOMB_SELECT} ORDER BY {_U64_ORDER_SETTLED}").fetchall()
            return rows.raw_document(meta.get("next_enqueue_seq"), [_from_db(r) for r in batch_rows],
                                     [_from_db(r) for r in tomb_rows])

    def replace_document(self, document: dict[str, Any], *, backup: bool = True, backup_suffix: str | None = None,
                         expected: dict[str, Any] | None = None) -> str | None:
        """For `turnq doctor --fix`: the old content is kept as `PATH.bak-SUFFIX.json` (a JSON store
        document) when `backup` is set."""
        backup_stem = None
        if backup and self.path.exists():
            if not os.access(self.path, os.W_OK):  # refused before the backup, not after it
                raise StoreUnwritable(f"store {self.location} is read-only; nothing was changed")
            suffix = backup_suffix or str(int(self.path.stat().st_mtime * 1000))
            backup_stem = self.path.with_name(f"{self.path.name}.bak-{suffix}")
        return rows.replace_document(self, document, backup_path=backup_stem, expected=expected)

    def keep_backup(self, state: QueueState, suffix: str) -> str | None:
        from . import codec, files

        return files.write_backup(self.path.with_name(f"{self.path.name}.bak-{suffix}"), ".json",
                                  codec.encode(state).encode("utf-8"), self.path, self.location)

    # ----------------------------------------------------------------- writing

    @contextmanager
    def transaction(self, session_id: str | None = None, *, takes_seq: bool = False) -> Iterator[QueueState]:
        with self._lock:
            conn = self._connection(create=True)
            assert conn is not None
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as err:
                raise self._error(err, writing=True) from None
            changes_before = conn.total_changes
            try:
                try:
                    self._check_identity()
                    meta = self._meta(conn)
                    if meta is None:
                        meta = self._create(conn)
                    snapshot = rows.Snapshot(self._checked_meta(meta))
                    self._upgrade(conn, meta)
                    state = self._load(conn, session_id, meta, snapshot)
                except sqlite3.Error as err:
                    raise self._error(err, writing=False) from None
                yield state
                try:
                    if state.changed:
                        self._save(conn, snapshot, state)
                        state.changed = False
                    if state.audit:
                        entries = list(state.audit)
                        state.audit.clear()
                        if self.log_enabled:
                            self._append_log(conn, entries, int(meta.get("next_log_id", 1)))
                    self._check_identity()  # the last moment: a write not at the path is never acknowledged
                    conn.execute("COMMIT")
                    if conn.total_changes != changes_before:  # an empty claim changed nothing: no news
                        self._commits += 1
                except sqlite3.Error as err:
                    raise self._error(err, writing=True) from None
            except StoreUnwritable:
                self._rollback(conn)
                self.close()  # e.g. the file was replaced: the next operation opens what is there
                raise
            finally:
                self._rollback(conn)

    def _rollback(self, conn: sqlite3.Connection) -> None:
        if self._conn is conn and conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                self.close()  # the next operation opens a fresh connection

    def _save(self, conn: sqlite3.Connection, snapshot: rows.Snapshot, state: QueueState) -> None:
        changes = rows.diff(snapshot, state)
        if changes.delete_batches:
            conn.executemany("DELETE FROM turnq_batches WHERE batch_id = ?", [(i,) for i in changes.delete_batches])
        if changes.update_batches:
            conn.executemany(_BATCH_UPDATE, [_to_db(r) for r in changes.update_batches])
        if changes.insert_batches:
            conn.executemany(_BATCH_INSERT, [_to_db(r) for r in changes.insert_batches])
        if changes.delete_tombstones:
            conn.executemany("DELETE FROM turnq_tombstones WHERE batch_id = ?",
                             [(i,) for i in changes.delete_tombstones])
        if changes.insert_tombstones:
            conn.executemany(_TOMB_INSERT, [_to_db(r) for r in changes.insert_tombstones])
        if state.next_seq != snapshot.next_seq:
            conn.execute("UPDATE turnq_meta SET value = ? WHERE key = 'next_enqueue_seq'", _to_db((state.next_seq,)))
        if state.tombstone_retention_ms != snapshot.retention_ms:
            self._write_setting(conn, rows.RETENTION_KEY, state.tombstone_retention_ms)

    def _append_log(self, conn: sqlite3.Connection, entries: list[dict[str, Any]], next_id: int) -> None:
        if next_id + len(entries) - 1 > I64_MAX:  # the log's INTEGER PRIMARY KEY: ids stay in order
            raise audit_ids_at_limit(self.location, next_id - 1, "2^63-1 in a SQLite store")
        ids = range(next_id, next_id + len(entries))
        conn.executemany("INSERT INTO turnq_log (id, entry) VALUES (?, ?)",
                         [(i, rows.dumps(entry)) for i, entry in zip(ids, entries)])
        last = next_id + len(entries) - 1
        # At the limit, the next id (2^63) is kept as SQLite keeps every u64 above 2^63-1.
        conn.execute("INSERT OR REPLACE INTO turnq_meta (key, value) VALUES ('next_log_id', ?)", _to_db((last + 1,)))
        conn.execute("DELETE FROM turnq_log WHERE id <= ?", (last - self.log_max_entries,))


class _Tombstones:
    """A transaction's tombstones in the table (rows.TombstoneRows): by key, by range, or all."""

    def __init__(self, store: SqliteStore, conn: sqlite3.Connection, session_id: str | None,
                 snapshot: rows.Snapshot | None) -> None:
        self.store, self.conn, self.session_id, self.snapshot = store, conn, session_id, snapshot

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        if self.conn is not None:
            return self.conn.execute(sql, params).fetchall()
        with self.store._reading() as conn:  # a state from `read`: its snapshot has ended
            return [] if conn is None else conn.execute(sql, params).fetchall()

    def _decode(self, found: list[Any]) -> list[Any]:
        return [rows.tombstone_from_row(_from_db(row), self.store.location) for row in found]

    def find(self, session_id: str, source_key: str) -> Any:
        # No ORDER BY: SQLite would rather walk the (session, settled_at) index in order than
        # sort the one or two rows the key index finds. The newest is picked here.
        found = self._query(_TOMB_FIND, (session_id, source_key))
        return max(self._decode(found), key=lambda t: t.settled_at_ms, default=None)

    def drop(self, session_id: str | None, cutoff_ms: int | None) -> list[Any]:
        where, params = _settled_at_or_before(cutoff_ms)
        if session_id is not None:
            where, params = f"session_id = ? AND {where}", (session_id, *params)
        assert self.conn is not None, "only a transaction drops tombstones"
        found = self.conn.execute(f"DELETE FROM turnq_tombstones WHERE {where} "
                                  "RETURNING batch_id, outcome, settled_at_ms, batch", params).fetchall()
        removed = self._decode(found)
        if self.snapshot is not None:
            self.snapshot.tombstones.difference_update(tomb.batch_id for tomb in removed)
        return removed

    def count(self) -> dict[str, int]:
        if self.session_id is None:
            found = self._query("SELECT session_id, count(*) FROM turnq_tombstones GROUP BY session_id")
        else:
            found = self._query("SELECT session_id, count(*) FROM turnq_tombstones WHERE session_id = ? "
                                "GROUP BY session_id", (self.session_id,))
        return {session: int(n) for session, n in found}

    def load(self) -> list[Any]:
        if self.session_id is None:
            found = self._query(f"{_TOMB_SELECT} ORDER BY {_U64_ORDER_SETTLED}")
        else:
            found = self._query(f"{_TOMB_SELECT} WHERE session_id = ? ORDER BY {_U64_ORDER_SETTLED}",
                                (self.session_id,))
        loaded = self._decode(found)
        if self.snapshot is not None:
            for tomb in loaded:
                self.snapshot.add_tombstone(tomb)
        return loaded


def _settled_at_or_before(cutoff_ms: int | None) -> tuple[str, tuple[Any, ...]]:
    """`settled_at_ms <= cutoff` as an index range, for unsigned values stored as signed
    (one above I64_MAX is negative in the table: see _to_db)."""
    if cutoff_ms is None:
        return "1", ()
    if cutoff_ms <= I64_MAX:
        return "settled_at_ms BETWEEN 0 AND ?", (cutoff_ms,)
    return "(settled_at_ms >= 0 OR settled_at_ms <= ?)", (cutoff_ms - 2**64,)
