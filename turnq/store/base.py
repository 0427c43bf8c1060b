"""The one small interface every storage backend implements.

A backend loads the whole queue state for the engine and saves it back, inside a
transaction that excludes every other writer. The engine and the CLI know only
this interface, so other backends (SQLite, PostgreSQL) slot in beside the JSON file.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from typing import Any

from ..state import QueueState

#: How many audit-log entries a store keeps by default; the oldest go first.
DEFAULT_LOG_MAX_ENTRIES = 10_000


class Store(ABC):
    """A backend. Besides the queue state it keeps the audit log (see `transaction` and
    `read_log`): every backend persists `state.audit` or refuses `read_log`."""

    #: Where the store lives, for messages ("turnq.json", "sqlite:///q.db").
    location: str
    #: Audit log options; backends take them as keyword arguments and set these.
    log_enabled: bool = True
    log_max_entries: int = DEFAULT_LOG_MAX_ENTRIES

    @abstractmethod
    def read(self, session_id: str | None = None) -> QueueState:
        """A consistent snapshot for reading. Never writes, never creates anything.

        With `session_id`, the state needs to hold only that session (and the
        store-wide sequence): a database backend loads just its rows. None: everything."""

    @abstractmethod
    def transaction(self, session_id: str | None = None) -> AbstractContextManager[QueueState]:
        """Exclusive access: yields the current state (scoped as for `read`); when the
        block ends without an exception and the state says it changed, the new state
        is saved atomically. Raises StoreBusy when exclusive access cannot be had in time.

        Audit log: after saving (or when the state did not change), the entries in
        `state.audit` are persisted under the same lock / in the same database transaction,
        never before the state, each given the next increasing integer `id`; then the list is
        cleared. When the log is disabled they are dropped. At most `log_max_entries` are
        kept (the oldest are dropped first; ids are never reused).
        """

    def exists(self) -> bool:
        """Whether the store is there (a JSON or SQLite file, PostgreSQL tables turnq created),
        empty or not. Never creates anything. Commands that only read refuse a store that is not
        there: a mistyped location is not an empty queue. In-memory stores always exist."""
        return True

    def read_log(self, after_id: int = 0) -> list[dict[str, Any]]:
        """The audit entries with `id` > `after_id`, oldest first (each dict holds its `id`).
        A backend that keeps no log raises NotImplementedError: it never pretends to be empty."""
        raise NotImplementedError(f"the {type(self).__name__} backend keeps no audit log")

    def change_marker(self) -> Any:
        """A cheap value that differs whenever the store may have changed, for `turnq watch`
        to poll. None: no cheap way; the watcher reads the state and compares it."""
        return None

    def raw_document(self) -> dict[str, Any]:
        """The store's content as the JSON store document (spec: the store file's format),
        without validating it, for `turnq doctor`. May be broken: that is what doctor checks."""
        raise NotImplementedError(f"the {type(self).__name__} backend cannot show its raw document")

    def replace_document(self, document: dict[str, Any], *, backup: bool = True, backup_suffix: str | None = None,
                         expected: dict[str, Any] | None = None) -> str | None:
        """Replace the store's content with `document` (as `raw_document` gives it) under
        the store's lock, atomically, for `turnq doctor --fix`. With `expected`, first check
        (under the lock) that the content still is that, else raise StoreBusy and change nothing.
        Returns where a backup of the old content went (None: no backup; `backup_suffix` names
        it). Backends that cannot do it raise NotImplementedError."""
        raise NotImplementedError(f"the {type(self).__name__} backend cannot be repaired by turnq doctor --fix")
