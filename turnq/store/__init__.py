"""Storage backends: the only code that touches files or databases.

A store location is a path (the JSON file backend), `sqlite:///PATH` (SQLite) or
`postgresql://…` / `postgres://…` (PostgreSQL). The database backends, and the modules
they need (sqlite3, psycopg), are imported only when such a URL is opened.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..errors import InvalidInput
from ..redact import redact_location
from .base import Store
from .jsonfile import JsonFileStore
from .memory import MemoryStore

__all__ = ["JsonFileStore", "MemoryStore", "Store", "open_store"]


def open_store(location: str | Path | Store, *, lock_timeout_ms: int = 10_000, **log_options: Any) -> Store:
    """A store from a location: a `Store` as it is, a path to a JSON store file, or a
    store URL (`sqlite:///relative.db`, `sqlite:////absolute.db`, `postgresql://…`).
    `log_options`: the audit log's `log_enabled` and `log_max_entries` (see Store).
    A malformed URL, or one of an unknown kind, is InvalidInput."""
    if isinstance(location, Store):
        return location
    text = str(location)
    scheme = _URL_SCHEME.match(text)
    if scheme is None:
        return JsonFileStore(_checked_path(text), lock_timeout_ms=lock_timeout_ms, **log_options)
    kind = scheme.group(1).lower()
    if kind == "sqlite":
        from .sqlite import SqliteStore

        path = sqlite_path(text)
        _checked_path(path)
        return SqliteStore(path, lock_timeout_ms=lock_timeout_ms, location=text, **log_options)
    if kind in ("postgresql", "postgres"):
        from .postgres import PostgresStore

        return PostgresStore(text, lock_timeout_ms=lock_timeout_ms, **log_options)
    raise InvalidInput(
        f"unknown store URL {redact_location(text)!r}: expected a file path (JSON), sqlite:///PATH or postgresql://…"
    )


#: Longest file name (one path component) and path, in bytes, that Linux and macOS file systems take.
NAME_MAX, PATH_MAX = 255, 4095


def _checked_path(text: str) -> Path:
    """The path, refused (InvalidInput) when the file system could not hold its name: stat()
    would fail with ENAMETOOLONG in places that expect only "no such file"."""
    size = len(text.encode("utf-8", "surrogateescape"))
    longest = max((len(part.encode("utf-8", "surrogateescape")) for part in Path(text).parts), default=0)
    if longest > NAME_MAX or size > PATH_MAX:
        what = f"a file name of {longest} bytes" if longest > NAME_MAX else f"a path of {size} bytes"
        raise InvalidInput(f"store {text[:60]!r}…: {what} is longer than file systems allow "
                           f"({NAME_MAX} per name, {PATH_MAX} in all)")
    return Path(text)


#: `scheme://` at the start: a URL, not a path (a path holding "://" can be given as ./path).
_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def sqlite_path(url: str) -> str:
    """The file of `sqlite:///PATH`: three slashes then a relative path, four for an absolute
    one (`sqlite:////var/q.db`), as SQLAlchemy spells them."""
    rest = url.split("://", 1)[1]
    if not rest.startswith("/"):
        raise InvalidInput(
            f"{redact_location(url)!r} names a host; a SQLite URL is sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    path = rest[1:]
    if "?" in path or "#" in path:
        raise InvalidInput(f"{redact_location(url)!r}: a SQLite URL takes no options (? or #)")
    if not path or path.endswith("/"):
        raise InvalidInput(f"{redact_location(url)!r} names no database file: use sqlite:///path.db")
    return path
