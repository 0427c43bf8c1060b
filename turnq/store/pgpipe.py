"""A write transaction's statements sent in one round trip straight through libpq (`psycopg.pq`,
psycopg's documented low-level layer), without psycopg's cursor layer.

Why: on the write path of the PostgreSQL backend the client's CPU, not the server, set the pace.
One pipeline of four small statements cost about 400 µs of client CPU through
`Connection.pipeline()` + `execute` and about 85 µs through libpq directly (measured on the CI
machine); an operation sends two or three such pipelines. What this module does instead is
small: parameters go as text, results come back as text and are read by their column's type
(the few types turnq's tables and statements use), statements are prepared once per connection.

Errors are psycopg's own (`psycopg.errors.error_from_result`, `OperationalError` from libpq), so
the store's one error mapping applies. A pipeline cut short by anything but a server error
(a lost connection, Ctrl-C) leaves the connection unusable: `Pipeline.run` closes it then, and
the server rolls its transaction back.
"""

from __future__ import annotations

import select
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from psycopg import errors as pg_errors
from psycopg import pq

_OK = (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK)
#: Type oids read as int: int2, int4, int8, oid, xid8; numeric (turnq's are numeric(20), no scale).
_INT_TYPES = frozenset({20, 21, 23, 26, 5069})
_NUMERIC = 1700
_BOOL = 16


class Prepared:
    """A connection's statement names (`turnq_1`, …; psycopg's own are `_pg3_…`), by query."""

    def __init__(self) -> None:
        self.names: dict[bytes, bytes] = {}
        self.conn: Any = None
        self._made = 0  # names are never used twice on a connection, even one whose PREPARE failed

    def for_connection(self, conn: Any) -> Prepared:
        if conn is not self.conn:  # a new connection knows none of them
            self.names, self.conn = {}, conn
        return self

    def new_name(self) -> bytes:
        self._made += 1
        return b"turnq_%d" % self._made


class Pipeline:
    """Statements queued with `add`, sent and read with `run` (one round trip)."""

    def __init__(self, conn: Any, prepared: Prepared) -> None:
        self._conn = conn
        self._pg = conn.pgconn
        self._prepared = prepared.for_connection(conn)
        self._queries: list[tuple[bytes, list[bytes | None]]] = []
        self._encoding = conn.info.encoding

    def add(self, query: str, params: Sequence[Any] = ()) -> int:
        """Queue `query` (placeholders `%s`, as psycopg's); its index in `run`'s result."""
        self._queries.append((_numbered(query), [_text(value, self._encoding) for value in params]))
        return len(self._queries) - 1

    def execute(self, query: str, params: Sequence[Any] = ()) -> None:
        """`add` for helpers that write through a connection's `execute` and read nothing back."""
        self.add(query, params)

    def run(self) -> list[list[tuple[Any, ...]]]:
        """Send the queued statements and read their rows (one list per statement; a command's is
        empty). The first server error is raised once every result is in (the server skips the
        statements after it, and leaves a transaction it was in failed)."""
        pg, names = self._pg, self._prepared.names
        expected: list[bytes | None] = []  # per result: a PREPARE's statement name, or None
        try:
            pg.enter_pipeline_mode()
            for query, params in self._queries:
                name = names.get(query)
                if name is None:
                    name = self._prepared.new_name()
                    names[query] = name  # taken back below unless its PREPARE succeeds
                    pg.send_prepare(name, query)
                    expected.append(name)
                pg.send_query_prepared(name, params)
                expected.append(None)
            pg.pipeline_sync()
            _flush(pg)
            rows, error = self._read(expected)
            pg.exit_pipeline_mode()
        except BaseException:
            # Cut short with results unread (a lost connection, an interrupt): unusable.
            self._conn.close()
            raise
        if error is not None:
            if isinstance(error, pg_errors.InvalidSqlStatementName):
                self._prepared.names = {}  # deallocated behind our back (a pooler): prepare anew
            raise error
        return rows

    def _read(self, expected: list[bytes | None]) -> tuple[list[list[tuple[Any, ...]]], Exception | None]:
        pg, encoding = self._pg, self._encoding
        rows: list[list[tuple[Any, ...]]] = []
        error: Exception | None = None
        for prepare in expected:
            result = _next_result(pg)
            ok = result.status in _OK
            if not ok and error is None and result.status == pq.ExecStatus.FATAL_ERROR:
                error = pg_errors.error_from_result(result, encoding=encoding)
            if prepare is not None:
                if not ok:  # not made (failed, or skipped after an error): make it next time
                    self._prepared.names = {q: n for q, n in self._prepared.names.items() if n != prepare}
            else:
                rows.append(_rows(result, encoding) if ok else [])
        sync = _next_result(pg)
        if sync.status != pq.ExecStatus.PIPELINE_SYNC:  # pragma: no cover - libpq's protocol
            raise pg_errors.InternalError(f"unexpected result {sync.status!r} at the end of a pipeline")
        return rows, error


def _next_result(pg: Any) -> Any:
    """The next result that is not the end marker of a statement's results."""
    while True:
        while pg.is_busy():
            select.select([pg.socket], [], [])
            pg.consume_input()
        result = pg.get_result()
        if result is not None:
            return result


def _flush(pg: Any) -> None:
    """Send everything queued, reading meanwhile (a large pipeline must not wait on a server
    that waits for its results to be read)."""
    while pg.flush() == 1:
        readable, _, _ = select.select([pg.socket], [pg.socket], [])
        if readable:
            pg.consume_input()


_NUMBERED: dict[str, bytes] = {}


def _numbered(query: str) -> bytes:
    """`%s` placeholders as libpq's `$1`, `$2`, …"""
    done = _NUMBERED.get(query)
    if done is None:
        parts = query.split("%s")
        if any("%" in part for part in parts):
            raise ValueError(f"a query for pgpipe holds a '%' that is not a placeholder: {query!r}")
        done = parts[0]
        for number, part in enumerate(parts[1:], start=1):
            done += f"${number}{part}"
        _NUMBERED[query] = done = done.encode()
    return done


def _text(value: Any, encoding: str) -> bytes | None:
    """A parameter in PostgreSQL's text form (the server casts it to the column's type)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return b"t" if value else b"f"
    if isinstance(value, (int, Decimal)):
        return str(value).encode()
    if isinstance(value, (list, tuple)):
        value = _array(value)
    if isinstance(value, str):
        if "\x00" in value:  # libpq would cut a text parameter there (as psycopg, refuse it)
            raise pg_errors.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
        return value.encode(encoding)
    raise TypeError(f"pgpipe cannot send a {type(value).__name__}")


def _array(values: Sequence[Any]) -> str:
    """An array literal: every item double-quoted, its backslashes and quotes escaped."""
    items = []
    for value in values:
        if value is None:
            items.append("NULL")
        else:
            text = str(value).replace("\\", "\\\\").replace('"', '\\"')
            items.append(f'"{text}"')
    return "{" + ",".join(items) + "}"


def _rows(result: Any, encoding: str) -> list[tuple[Any, ...]]:
    readers = [_reader(result.ftype(col), encoding) for col in range(result.nfields)]
    get = result.get_value
    return [tuple(read(get(row, col)) for col, read in enumerate(readers)) for row in range(result.ntuples)]


def _reader(oid: int, encoding: str) -> Any:
    if oid in _INT_TYPES:
        return lambda raw: None if raw is None else int(raw)
    if oid == _NUMERIC:
        return lambda raw: None if raw is None else (int(raw) if b"." not in raw else Decimal(raw.decode()))
    if oid == _BOOL:
        return lambda raw: None if raw is None else raw == b"t"
    return lambda raw: None if raw is None else raw.decode(encoding)
