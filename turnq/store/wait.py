"""Waiting for a store to change: what `claim --wait` and `turnq work` block on.

A waiter is made BEFORE the claimer's first look at the store, so a change that lands
between that look and the wait still wakes it (no lost wake-up). `wait(timeout_s)`
returns True when the store may have changed since the last wait (or since the waiter
was made), False when the timeout passed with no sign of a change. A spurious True is
allowed (the caller just looks again); a missed change is not.

The default, `PollingWaiter`, polls the store's `change_marker` (JSON file: the file's
identity, size and mtime; SQLite: `PRAGMA data_version`) every 5 ms at first, doubling
up to every 50 ms while nothing changes: a change is seen within 50 ms (plus the claim),
and a waiting worker costs a `stat` (or one tiny query) 20 times a second. PostgreSQL
listens instead (`pgwait.py`): woken by NOTIFY as the change commits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

#: The first poll interval, and the longest one it backs off to (seconds).
FIRST_POLL_S = 0.005
MAX_POLL_S = 0.05


class ChangeWaiter:
    """Blocks until the store (maybe) changed. Subclasses implement `wait`; `close` frees
    what the waiter holds (a database connection)."""

    def wait(self, timeout_s: float) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> ChangeWaiter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PollingWaiter(ChangeWaiter):
    """Polls `marker()` with a backing-off interval. A marker of None means the store has
    no cheap marker: every poll interval then counts as a (maybe) change."""

    def __init__(self, marker: Callable[[], Any], *, first_s: float = FIRST_POLL_S,
                 max_s: float = MAX_POLL_S) -> None:
        self._marker = marker
        self._first_s, self._max_s = first_s, max_s
        self._last = marker()
        self._interval = first_s

    def wait(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(self._interval, left))
            self._interval = min(self._interval * 2, self._max_s)
            current = self._marker()
            if current is None:
                return True  # no marker: every poll is a maybe (at the backed-off pace)
            if current != self._last:
                self._last = current
                # Work tends to come in bursts: poll fast again after a change.
                self._interval = self._first_s
                return True
