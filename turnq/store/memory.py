"""An in-memory backend: nothing survives the process. For tests and embedding.

It also shows what a database backend does with a scope: `read(session_id)` and
`transaction(session_id)` hand the engine only that session (and the store-wide
sequence), and saving merges that session back. A test runs the API on it to
check that no operation needs more than the session it names.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ..state import QueueState
from .base import Store


class MemoryStore(Store):
    def __init__(self) -> None:
        self.location = "memory"
        self._state = QueueState()
        self._lock = threading.Lock()

    def read(self, session_id: str | None = None) -> QueueState:
        return self._scoped(session_id)

    @contextmanager
    def transaction(self, session_id: str | None = None) -> Iterator[QueueState]:
        with self._lock:
            state = self._scoped(session_id)
            yield state
            if state.changed:
                self._merge(state, session_id)

    def _scoped(self, session_id: str | None) -> QueueState:
        full = self._state
        if session_id is None:
            return copy.deepcopy(full)
        return QueueState(
            next_seq=full.next_seq,
            sessions={session_id: copy.deepcopy(full.sessions[session_id])} if session_id in full.sessions else {},
            tombstones={session_id: list(full.tombstones[session_id])} if session_id in full.tombstones else {},
        )

    def _merge(self, state: QueueState, session_id: str | None) -> None:
        if session_id is None:
            self._state = state
        else:
            merged = self._state
            merged.next_seq = state.next_seq
            for table, part in ((merged.sessions, state.sessions), (merged.tombstones, state.tombstones)):
                if session_id in part:
                    table[session_id] = part[session_id]
                else:
                    table.pop(session_id, None)
        self._state.changed = False
