"""The default backend: one JSON document in one file.

Every write is one transaction: take the sidecar lock (`PATH.lock`), read, apply,
write a temp file in the same folder, fsync it, rename it over the store, fsync
the folder. Readers never lock: the rename makes every state they can see whole.

The audit log is `PATH.log`, JSON Lines, one entry per line with an increasing `id`.
A transaction appends its entries (and fsyncs) under the same lock, after the rename.
Appending reads only the log's tail (for the last id), never the whole log. Retention:
readers see only the newest `log_max_entries`; the file is rewritten without the older
ones once it holds a tenth more than that (so trimming costs little per write).
"""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import StoreBusy, StoreUnreadable, StoreUnwritable
from ..state import QueueState
from . import codec
from .base import DEFAULT_LOG_MAX_ENTRIES, Store
from .lockfile import Timeout, file_lock  # filelock's flock, without importing filelock

#: How much of the log's end is read first to find the last id (more when an entry is longer).
_TAIL_BYTES = 4_096


class JsonFileStore(Store):
    def __init__(self, path: str | Path, *, lock_timeout_ms: int = 10_000, log_enabled: bool = True,
                 log_max_entries: int = DEFAULT_LOG_MAX_ENTRIES) -> None:
        self.path = Path(path)
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
        try:
            data = json.loads(text)
        except ValueError as err:
            raise StoreUnreadable(
                f"store {self.location} is unreadable: not valid JSON ({err}); it may be truncated or "
                "corrupt; the file was left as it is"
            ) from None
        return codec.decode(data, self.location)

    def _read_text(self) -> str | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            raise StoreUnreadable(f"store {self.location} is a directory, not a store file") from None
        except OSError as err:
            raise StoreUnreadable(f"store {self.location} cannot be read: {err.strerror or err}") from None
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise StoreUnreadable(
                f"store {self.location} is unreadable: not UTF-8 text (byte {err.start}); the file was left as it is"
            ) from None

    # ----------------------------------------------------------------- writing

    @contextmanager
    def transaction(self, session_id: str | None = None) -> Iterator[QueueState]:
        with self._locked():
            state = self.read()
            yield state
            if state.changed:
                self._write(codec.encode(state))
                state.changed = False
            if state.audit:
                entries = list(state.audit)
                state.audit.clear()
                if self.log_enabled:
                    self._append_log(entries)

    # ----------------------------------------------------------------- audit log

    def read_log(self, after_id: int = 0) -> list[dict[str, Any]]:
        try:
            raw = self.log_path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as err:
            raise StoreUnreadable(f"audit log {self.log_path} cannot be read: {err.strerror or err}") from None
        entries = _parse_lines(raw)
        if entries and self.log_max_entries >= 0:
            oldest_kept = entries[-1]["id"] - self.log_max_entries
            after_id = max(after_id, oldest_kept)
        return [entry for entry in entries if entry["id"] > after_id]

    def _append_log(self, entries: list[dict[str, Any]]) -> None:
        path = self.log_path
        try:
            with open(path, "a+b") as handle:
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
            raise StoreUnwritable(
                f"the change to store {self.location} was saved, but its audit log {path} could not be "
                f"written: {err.strerror or err}"
            ) from None
        held = last_id - first_id + 1
        if held > self.log_max_entries + max(self.log_max_entries // 10, 16):
            self._trim_log()

    def _trim_log(self) -> None:
        """Rewrite the log with only the newest `log_max_entries` (atomically, under the lock)."""
        kept = self.read_log()
        text = "".join(json.dumps(e, ensure_ascii=False, separators=(",", ":")) + "\n" for e in kept)
        folder = self.log_path.parent
        fd, temp_name = tempfile.mkstemp(dir=folder, prefix=f".{self.log_path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(text.encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp_name, self.log_path)
        except OSError:
            _remove_quietly(temp_name)  # the untrimmed log is still whole: trim next time

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
                suffix = backup_suffix or str(int(os.path.getmtime(self.path) * 1000))
                backup_path = self.path.with_name(f"{self.path.name}.bak-{suffix}")
                number = 1
                while backup_path.exists():  # never overwrite an earlier backup (a fixed clock repeats)
                    backup_path = self.path.with_name(f"{self.path.name}.bak-{suffix}-{number}")
                    number += 1
                try:
                    backup_path.write_bytes(self.path.read_bytes())
                except OSError as err:
                    raise StoreUnwritable(
                        f"cannot back up store {self.location} to {backup_path}: {err.strerror or err}; "
                        "nothing was changed"
                    ) from None
            self._write(text)
        return None if backup_path is None else str(backup_path)

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
        except OSError as err:
            raise StoreUnwritable(
                f"cannot lock store {self.location}: {err.strerror or err} ({self.lock_path})"
            ) from None
        try:
            yield
        finally:
            lock.release()

    def _write(self, text: str) -> None:
        mode = self._writable_mode()
        folder = self.path.parent
        temp_name = None
        try:
            fd, temp_name = tempfile.mkstemp(dir=folder, prefix=f".{self.path.name}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as handle:
                handle.write(text.encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temp_name, mode)
            os.replace(temp_name, self.path)
            temp_name = None
        except OSError as err:
            raise StoreUnwritable(
                f"cannot write store {self.location}: {err.strerror or err}; the store was left as it was"
            ) from None
        finally:
            if temp_name is not None:
                _remove_quietly(temp_name)
        # The rename has committed the new state: every reader now sees it. Syncing the
        # folder only hardens that against power loss, so its failure (some file systems
        # refuse fsync on a directory) must not report the committed write as failed.
        try:
            _fsync_dir(folder)
        except OSError:
            pass
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
            _remove_quietly(name)

    def _writable_mode(self) -> int:
        try:
            mode = stat.S_IMODE(self.path.stat().st_mode)
        except FileNotFoundError:
            return 0o644
        if not mode & stat.S_IWUSR:
            raise StoreUnwritable(f"store {self.location} is read-only; nothing was changed")
        return mode


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_quietly(name: str) -> None:
    try:
        os.unlink(name)
    except OSError:
        pass


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


def _parse_lines(raw: bytes) -> list[dict[str, Any]]:
    """The well-formed entries of log text; a torn or foreign line is skipped."""
    entries = []
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and type(entry.get("id")) is int:
            entries.append(entry)
    return entries
