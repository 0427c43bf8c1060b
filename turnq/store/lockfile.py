"""The store's sidecar lock: `flock` on `PATH.lock`, as `filelock.FileLock` takes it on Unix.

`filelock` costs a CLI command tens of milliseconds to import; where `fcntl.flock`
exists this module does the same thing directly: the same lock on the same file (so
it excludes, and is excluded by, any `filelock.FileLock` on that path), polled until
the timeout, and the file left in place on release. Elsewhere it uses `filelock`.
"""

from __future__ import annotations

import errno
import os
import time
from typing import Any

from . import files

try:
    import fcntl
except ImportError:  # pragma: no cover - not Unix
    fcntl = None  # type: ignore[assignment]

_CONTENTION = frozenset({errno.EACCES, errno.EAGAIN, errno.EWOULDBLOCK})
POLL_INTERVAL = 0.05  # seconds between tries, as filelock's default


class Timeout(TimeoutError):
    """The lock was not acquired within the timeout."""

    def __init__(self, lock_file: str) -> None:
        super().__init__(f"The file lock '{lock_file}' could not be acquired.")
        self.lock_file = lock_file


def file_lock(path: str, *, timeout: float) -> Any:
    """A lock on `path` with `acquire()` (raising `Timeout`, or OSError) and `release()`."""
    if fcntl is None or not hasattr(fcntl, "flock"):  # pragma: no cover - not Unix
        import filelock

        return _FileLockAdapter(filelock.FileLock(path, timeout=timeout))
    return FlockLock(path, timeout=timeout)


class FlockLock:
    def __init__(self, path: str, *, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self._fd: int | None = None

    def acquire(self) -> None:
        deadline = time.monotonic() + self.timeout if self.timeout >= 0 else None
        while True:
            # Never through a link (a planted one could make turnq create or lock any file);
            # a new lock file's mode follows the umask.
            fd = files.open_sidecar(self.path, os.O_RDWR | os.O_CREAT, "lock file")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                os.close(fd)
                if err.errno not in _CONTENTION:
                    raise
            else:
                if os.fstat(fd).st_nlink > 0:  # not a file someone removed meanwhile
                    self._fd = fd
                    return
                os.close(fd)
            if deadline is not None and time.monotonic() >= deadline:
                raise Timeout(self.path)
            time.sleep(POLL_INTERVAL if deadline is None else max(0.0, min(POLL_INTERVAL,
                                                                           deadline - time.monotonic())))

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)


class _FileLockAdapter:  # pragma: no cover - not Unix
    def __init__(self, lock: Any) -> None:
        self.lock = lock

    def acquire(self) -> None:
        import filelock

        try:
            self.lock.acquire()
        except filelock.Timeout:
            raise Timeout(str(self.lock.lock_file)) from None

    def release(self) -> None:
        self.lock.release()
