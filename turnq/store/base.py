"""The one small interface every storage backend implements.

A backend loads the whole queue state for the engine and saves it back, inside a
transaction that excludes every other writer. The engine and the CLI know only
this interface, so other backends (SQLite, PostgreSQL) slot in beside the JSON file.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager

from ..state import QueueState


class Store(ABC):
    #: Where the store lives, for messages ("turnq.json", "sqlite:///q.db").
    location: str

    @abstractmethod
    def read(self, session_id: str | None = None) -> QueueState:
        """A consistent snapshot for reading. Never writes, never creates anything.

        With `session_id`, the state needs to hold only that session (and the
        store-wide sequence): a database backend loads just its rows. None: everything."""

    @abstractmethod
    def transaction(self, session_id: str | None = None) -> AbstractContextManager[QueueState]:
        """Exclusive access: yields the current state (scoped as for `read`); when the
        block ends without an exception and the state says it changed, the new state
        is saved atomically. Raises StoreBusy when exclusive access cannot be had in time."""
