"""The default backend: one JSON document in one file.

Every write is one transaction: take the sidecar lock (`PATH.lock`), read, apply,
write a temp file in the same folder, fsync it, rename it over the store, fsync
the folder. Readers never lock: the rename makes every state they can see whole.

The audit log is `PATH.log`, JSON Lines, one entry per line with an increasing `id`.
A transaction appends its entries (and fsyncs) under the same lock, after the rename.
Appending reads only the log's tail (for the last id), never the whole log. Retention:
readers see only the newest `log_max_entries`; the file is rewritten without the older
ones once it holds a tenth more than that (so trimming costs little per write). When the
append fails after the state was saved, the change stands: the store keeps a warning
(`Store.take_warnings`) instead of failing an operation that happened.

A store path that is a symbolic link is resolved once, when the store is opened: writes
go to the link's target (and the lock and log sit beside it), and the link stays a link.
The sidecar files themselves are never followed (see `files.py`).
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..clock import U64_MAX
from ..errors import StoreBusy, StoreUnreadable, StoreUnwritable, audit_ids_at_limit
from ..limits import loads_json, nesting_error, read_regular_file
from ..state import LazyTombstoneState, QueueState
from . import codec, files, jsonlines
from .base import DEFAULT_LOG_MAX_ENTRIES, Store
from .lockfile import Timeout, file_lock  # filelock's flock, without importing filelock

#: How much of the log's end is read first to find the last id (more when an entry is longer).
_TAIL_BYTES = 4_096


class JsonFileStore(Store):
    def __init__(self, path: str | Path, *, lock_timeout_ms: int = 10_000, log_enabled: bool = True,
                 log_max_entries: int = DEFAULT_LOG_MAX_ENTRIES) -> None:
        # Resolved once: a rename over the link would replace it with a regular file.
        self.path = Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)
        self.location = str(path)
        self.lock_timeout_ms = lock_timeout_ms
        self.log_enabled = log_enabled
        self.log_max_entries = max(0, log_max_entries)

    @property
    def log_path(self) -> Path:
        return self.path.with_name(self.path.name + ".log")

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    # ----------------------------------------------------------------- reading

    def exists(self) -> bool:
        return self.path.exists()

    def read(self, session_id: str | None = None) -> QueueState:
        # One file holds every session, and a write rewrites it whole: the scope is moot here.
        text = self._read_text()
        if text is None:
            return QueueState()
        lazy = self._read_lazy(text)
        if lazy is not None:
            return lazy
        try:
            data = json.loads(text)
        except ValueError as err:
            raise StoreUnreadable(
                f"store {self.location} is unreadable: not valid JSON ({err}); it may be truncated or "
                "corrupt; the file was left as it is"
            ) from None
        except RecursionError:
            raise _too_deep(self.location) from None
        try:  # the document's schema bounds its nesting (free-form values at 128): no pre-scan
            return codec.decode(data, self.location)
        except RecursionError:
            raise _too_deep(self.location) from None

    def _read_lazy(self, text: str) -> QueueState | None:
        """The state with its tombstone lines left as text until needed (see jsonlines.py);
        None when the file is not in turnq's layout or its head does not parse (the caller
        then reads it whole, and words any error)."""
        split = jsonlines.split(text)
        if split is None:
            return None
        head, lines = split
        try:
            data = json.loads(head)
        except (ValueError, RecursionError):  # the whole read words the error
            return None
        try:
            state = codec.decode(data, self.location)
        except RecursionError:
            raise _too_deep(self.location) from None
        if not lines:
            return state
        lazy = LazyTombstoneState(state.next_seq, jsonlines.TombstoneLines(lines, self.location))
        lazy.sessions, lazy.tombstone_retention_ms = state.sessions, state.tombstone_retention_ms
        return lazy

    def _read_text(self) -> str | None:
        try:  # a regular file only: /dev/zero or a FIFO would never end
            raw = read_regular_file(self.path, "store ", limit=None, error=StoreUnreadable)
        except FileNotFoundError:
            return None
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise StoreUnreadable(
                f"store {self.location} is unreadable: not UTF-8 text (byte {err.start}); the file was left as it is"
            ) from None

    # ----------------------------------------------------------------- writing

    @contextmanager
    def transaction(self, session_id: str | None = None, *, takes_seq: bool = False) -> Iterator[QueueState]:
        with self._locked():
            state = self.read()
            if self.log_enabled:  # refused before anything is written, not after
                files.check_not_symlink(self.log_path, "audit log")
            yield state
            if self.log_enabled and state.audit:
                self._check_log_room(len(state.audit))  # before the state is written: refused whole
            saved = state.changed
            if saved:
                self._write(codec.encode(state))
                state.changed = False
            if state.audit:
                entries = list(state.audit)
                state.audit.clear()
                if self.log_enabled:
                    try:
                        self._append_log(entries)
                    except StoreUnwritable as err:
                        # The state is committed: failing now would tell a retrying caller the
                        # change did not happen. Say that its log entry was lost instead.
                        what = "the change was saved" if saved else "nothing was changed"
                        self.warn(f"{what}, but its audit-log entry was lost: {err.message}")

    # ----------------------------------------------------------------- audit log

    def read_log(self, after_id: int = 0) -> list[dict[str, Any]]:
        try:
            fd = files.open_sidecar(self.log_path, os.O_RDONLY, "audit log")
            with os.fdopen(fd, "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            return []
        except OSError as err:
            raise StoreUnreadable(f"audit log {self.log_path} cannot be read: {err.strerror or err}") from None
        entries = _parse_lines(raw)
        if entries and self.log_max_entries >= 0:
            oldest_kept = entries[-1]["id"] - self.log_max_entries
            after_id = max(after_id, oldest_kept)
        return [entry for entry in entries if entry["id"] > after_id]

    def _check_log_room(self, count: int) -> None:
        """CounterLimit when `count` more entries would take an audit id past 2^64-1."""
        try:
            fd = files.open_sidecar(self.log_path, os.O_RDONLY, "audit log")
            with os.fdopen(fd, "rb") as handle:
                _first_id, last_id, _torn = _log_bounds(handle)
        except OSError:
            return  # no log yet (ids start at 1); any other trouble is the append's to word
        if last_id + count > U64_MAX:
            raise audit_ids_at_limit(self.location, last_id, "2^64-1")

    def _append_log(self, entries: list[dict[str, Any]]) -> None:
        path = self.log_path
        try:
            fd = files.open_sidecar(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, "audit log")
            with os.fdopen(fd, "a+b") as handle:
                first_id, last_id, torn = _log_bounds(handle)
                lines = []
                for entry in entries:
                    last_id += 1
                    lines.append(json.dumps({"id": last_id, **entry}, ensure_ascii=False, separators=(",", ":"),
                                            allow_nan=False))
                if first_id == 0:
                    first_id = last_id - len(entries) + 1
                text = ("\n" if torn else "") + "\n".join(lines) + "\n"
                handle.write(text.encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as err:
            raise StoreUnwritable(f"cannot write audit log {path}: {err.strerror or err}") from None
        held = last_id - first_id + 1
        if held > self.log_max_entries + max(self.log_max_entries // 10, 16):
            self._trim_log()

    def _trim_log(self) -> None:
        """Rewrite the log with only the newest `log_max_entries` (atomically, under the lock)."""
        kept = self.read_log()
        text = "".join(json.dumps(e, ensure_ascii=False, separators=(",", ":")) + "\n" for e in kept)
        try:
            files.write_atomically(self.log_path, text.encode("utf-8"))
        except OSError:
            pass  # the untrimmed log is still whole: trim next time

    def change_marker(self) -> Any:
        """The store file's identity, size and mtime (every write renames a new file in)."""
        try:
            info = self.path.stat()
        except OSError:
            return ("missing",)
        return (info.st_ino, info.st_size, info.st_mtime_ns)

    # ----------------------------------------------------------------- raw document (doctor)

    def raw_document(self) -> dict[str, Any]:
        text = self._read_text()
        if text is None:
            return {}
        try:
            data = json.loads(text)
        except ValueError as err:
            raise StoreUnreadable(
                f"store {self.location} is unreadable: not valid JSON ({err}); it may be truncated or corrupt"
            ) from None
        except RecursionError:
            raise _too_deep(self.location) from None
        if not isinstance(data, dict):
            raise StoreUnreadable(f"store {self.location} is unreadable: the document is not a JSON object")
        return data

    def replace_document(self, document: dict[str, Any], *, backup: bool = True, backup_suffix: str | None = None,
                         expected: dict[str, Any] | None = None) -> str | None:
        """Write `document` over the store under its lock (atomically: temp file + rename),
        keeping the old file as `PATH.bak-SUFFIX` first when `backup` is set."""
        try:  # a document the codec reads is written in the store's usual layout
            text = codec.encode(codec.decode(document, self.location))
        except StoreUnreadable:
            text = json.dumps(document, ensure_ascii=False, allow_nan=False) + "\n"
        with self._locked():
            if expected is not None and self.raw_document() != expected:
                raise StoreBusy(f"store {self.location} changed while it was checked; nothing was changed: "
                                "run the command again")
            backup_path = None
            if backup and self.path.exists():
                self._writable_mode()  # a read-only store refuses the write: refuse before the backup
                suffix = backup_suffix or str(int(os.path.getmtime(self.path) * 1000))
                try:
                    old = self.path.read_bytes()
                except OSError as err:
                    raise StoreUnreadable(f"store {self.location} cannot be read: {err.strerror or err}") from None
                backup_path = self._backup(old, suffix)
            self._write(text)
        return backup_path

    def keep_backup(self, state: QueueState, suffix: str) -> str | None:
        return self._backup(codec.encode(state).encode("utf-8"), suffix)

    def _backup(self, data: bytes, suffix: str) -> str:
        return files.write_backup(self.path.with_name(f"{self.path.name}.bak-{suffix}"), "", data, self.path,
                                  self.location)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        if self.path.is_dir():
            raise StoreUnreadable(f"store {self.location} is a directory, not a store file")
        if not self.path.parent.is_dir():
            # filelock would create the folder; a typo in --store should not.
            raise StoreUnwritable(f"cannot write store {self.location}: its folder {self.path.parent} does not exist")
        lock = file_lock(str(self.lock_path), timeout=self.lock_timeout_ms / 1000)
        try:
            lock.acquire()
        except Timeout:
            raise StoreBusy(
                f"store {self.location} is busy: another process holds {self.lock_path} "
                f"(waited {self.lock_timeout_ms} ms); retry, or raise --lock-timeout"
            ) from None
        except StoreUnwritable:
            raise
        except OSError as err:
            raise StoreUnwritable(
                f"cannot lock store {self.location}: {err.strerror or err} ({self.lock_path})"
            ) from None
        try:
            yield
        finally:
            lock.release()

    def _write(self, text: str) -> None:
        # An existing store keeps its mode; a new one gets the umask's, as any program's file.
        mode = self._writable_mode()
        try:
            files.write_atomically(self.path, text.encode("utf-8"), mode=mode)
        except OSError as err:
            raise StoreUnwritable(
                f"cannot write store {self.location}: {err.strerror or err}; the store was left as it was"
            ) from None
        self._sweep_temp_files()

    def _sweep_temp_files(self) -> None:
        """Remove temp files of writers killed mid-write. Only a lock holder makes them, and we
        hold the lock, so every one that is left belongs to a dead process."""
        pattern = re.compile(rf"\.{re.escape(self.path.name)}\.(?:log\.)?[a-z0-9_]{{8}}\.tmp")
        try:
            with os.scandir(self.path.parent) as entries:
                stale = [entry.path for entry in entries if pattern.fullmatch(entry.name)]
        except OSError:
            return
        for name in stale:
            files.remove_quietly(name)

    def _writable_mode(self) -> int | None:
        try:
            mode = stat.S_IMODE(self.path.stat().st_mode)
        except FileNotFoundError:
            return None
        if not mode & stat.S_IWUSR:
            raise StoreUnwritable(f"store {self.location} is read-only; nothing was changed")
        return mode


def _log_bounds(handle: Any) -> tuple[int, int, bool]:
    """(first id, last id, whether the last line is torn) of an open log, reading only
    its first line and its tail. (0, 0, False) for an empty log."""
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    if size == 0:
        return 0, 0, False
    handle.seek(0)
    first = _parse_lines(handle.readline())
    chunk = _TAIL_BYTES
    while True:  # read back from the end until the chunk holds a whole entry
        handle.seek(max(0, size - chunk))
        tail = handle.read()
        torn = not tail.endswith(b"\n")
        if size > chunk:
            tail = tail.split(b"\n", 1)[-1]  # the first line of the chunk may be cut
        last = _parse_lines(tail)
        if last or chunk >= size:
            break
        chunk *= 8
    last_id = last[-1]["id"] if last else 0
    first_id = first[0]["id"] if first else last_id
    handle.seek(0, os.SEEK_END)
    return first_id, last_id, torn


def _too_deep(location: str) -> StoreUnreadable:
    return StoreUnreadable(f"store {location} is unreadable: {nesting_error()}; the file was left as it is")


def _parse_lines(raw: bytes) -> list[dict[str, Any]]:
    """The well-formed entries of log text; a torn or foreign line is skipped."""
    entries = []
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        try:
            entry = loads_json(line)
        except (ValueError, RecursionError):  # RecursionError: hostile nesting
            continue
        if isinstance(entry, dict) and type(entry.get("id")) is int:
            entries.append(entry)
    return entries
