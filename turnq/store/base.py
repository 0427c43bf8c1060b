"""The one small interface every storage backend implements.

A backend loads the whole queue state for the engine and saves it back, inside a
transaction that excludes every other writer. The engine and the CLI know only
this interface, so other backends (SQLite, PostgreSQL) slot in beside the JSON file.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from ..state import QueueState

if TYPE_CHECKING:
    from .wait import ChangeWaiter

#: How many audit-log entries a store keeps by default; the oldest go first.
DEFAULT_LOG_MAX_ENTRIES = 10_000

#: The store-level settings (`turnq config`), each an unsigned integer or None (its default).
#: `tombstone_retention_ms`: tombstones settled longer ago are dropped by the session's next
#: write and never replay (None: kept until `turnq vacuum`).
SETTINGS = ("tombstone_retention_ms",)


class Store(ABC):
    """A backend. Besides the queue state it keeps the audit log (see `transaction` and
    `read_log`): every backend persists `state.audit` or refuses `read_log`."""

    #: Where the store lives, for messages ("turnq.json", "sqlite:///q.db").
    location: str
    #: Audit log options; backends take them as keyword arguments and set these.
    log_enabled: bool = True
    log_max_entries: int = DEFAULT_LOG_MAX_ENTRIES

    def exists(self) -> bool:
        """Whether the store is there: its file (JSON, SQLite), turnq's tables in the schema
        (PostgreSQL), empty or not. Never creates anything. Commands that only read refuse a store
        that is not there: a mistyped location is not an empty queue. In-memory stores always exist."""
        return True

    def warn(self, message: str) -> None:
        """Keep a warning about a write that otherwise succeeded (e.g. its audit-log entry was
        lost), for the caller to show: the core never prints."""
        self.__dict__.setdefault("_warnings", []).append(message)

    def take_warnings(self) -> list[str]:
        """The warnings kept since the last call (oldest first), and forget them."""
        return self.__dict__.pop("_warnings", [])

    @abstractmethod
    def read(self, session_id: str | None = None) -> QueueState:
        """A consistent snapshot for reading. Never writes, never creates anything.

        With `session_id`, the state needs to hold only that session (and the
        store-wide sequence): a database backend loads just its rows. None: everything."""

    @abstractmethod
    def transaction(self, session_id: str | None = None, *,
                    takes_seq: bool = False) -> AbstractContextManager[QueueState]:
        """Exclusive access: yields the current state (scoped as for `read`); when the
        block ends without an exception and the state says it changed, the new state
        is saved atomically. Raises StoreBusy when exclusive access cannot be had in time.

        Audit log: after saving (or when the state did not change), the entries in
        `state.audit` are persisted under the same lock / in the same database transaction,
        never before the state, each given the next increasing integer `id`; then the list is
        cleared. When the log is disabled they are dropped. At most `log_max_entries` are
        kept (the oldest are dropped first; ids are never reused).

        `takes_seq`: the operation will certainly take an enqueue_seq (it enqueues a batch
        without a source key, so no replay can refuse it). A backend may then take the value
        ahead, in the round trip that opens the transaction; others ignore it.
        """

    def read_settings(self) -> dict[str, int | None]:
        """The store's settings (every name of SETTINGS). This default reads the whole state,
        as the JSON file does anyway; a database backend reads its meta rows."""
        return {"tombstone_retention_ms": self.read().tombstone_retention_ms}

    def write_setting(self, name: str, value: int | None) -> None:
        """Set one of SETTINGS (None: its default), in one transaction."""
        assert name in SETTINGS
        with self.transaction(None) as state:
            if state.tombstone_retention_ms != value:
                state.tombstone_retention_ms = value
                state.changed = True

    def read_log(self, after_id: int = 0) -> list[dict[str, Any]]:
        """The audit entries with `id` > `after_id`, oldest first (each dict holds its `id`).
        A backend that keeps no log raises NotImplementedError: it never pretends to be empty."""
        raise NotImplementedError(f"the {type(self).__name__} backend keeps no audit log")

    def change_marker(self) -> Any:
        """A cheap value that differs whenever the store may have changed, for `turnq watch`
        to poll. None: no cheap way; the watcher reads the state and compares it."""
        return None

    def change_waiter(self, session_id: str) -> ChangeWaiter:
        """A waiter that blocks until `session_id` may have changed (see store/wait.py). Make it
        before the first look at the store, so that no change between look and wait is missed.
        Default: poll `change_marker` with a short, backing-off interval (at most 50 ms)."""
        from .wait import PollingWaiter

        return PollingWaiter(self.change_marker)

    def raw_document(self) -> dict[str, Any]:
        """The store's content as the JSON store document (spec: the store file's format),
        without validating it, for `turnq doctor`. May be broken: that is what doctor checks."""
        raise NotImplementedError(f"the {type(self).__name__} backend cannot show its raw document")

    def keep_backup(self, state: QueueState, suffix: str) -> str | None:
        """Save `state` (what a transaction is about to replace: call it inside the transaction)
        as a JSON store document beside the store, `STORE.bak-SUFFIX` (never over an earlier
        file), for `turnq migrate --replace`. Returns its path; None: this backend has no
        place for one (a database server). StoreUnwritable when it cannot be written."""
        return None

    def replace_document(self, document: dict[str, Any], *, backup: bool = True, backup_suffix: str | None = None,
                         expected: dict[str, Any] | None = None) -> str | None:
        """Replace the store's content with `document` (as `raw_document` gives it) under
        the store's lock, atomically, for `turnq doctor --fix`. With `expected`, first check
        (under the lock) that the content still is that, else raise StoreBusy and change nothing.
        Returns where a backup of the old content went (None: no backup; `backup_suffix` names
        it). Backends that cannot do it raise NotImplementedError."""
        raise NotImplementedError(f"the {type(self).__name__} backend cannot be repaired by turnq doctor --fix")
