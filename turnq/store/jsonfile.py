"""The default backend: one JSON document in one file.

Every write is one transaction: take the sidecar lock (`PATH.lock`), read, apply,
write a temp file in the same folder, fsync it, rename it over the store, fsync
the folder. Readers never lock: the rename makes every state they can see whole.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from ..errors import StoreBusy, StoreUnreadable, StoreUnwritable
from ..state import QueueState
from . import codec
from .base import Store


class JsonFileStore(Store):
    def __init__(self, path: str | Path, *, lock_timeout_ms: int = 10_000) -> None:
        self.path = Path(path)
        self.location = str(path)
        self.lock_timeout_ms = lock_timeout_ms

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    # ----------------------------------------------------------------- reading

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

    @contextmanager
    def _locked(self) -> Iterator[None]:
        if self.path.is_dir():
            raise StoreUnreadable(f"store {self.location} is a directory, not a store file")
        if not self.path.parent.is_dir():
            # filelock would create the folder; a typo in --store should not.
            raise StoreUnwritable(f"cannot write store {self.location}: its folder {self.path.parent} does not exist")
        lock = FileLock(str(self.lock_path), timeout=self.lock_timeout_ms / 1000)
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
