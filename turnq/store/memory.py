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
from typing import Any

from ..state import QueueState
from .base import DEFAULT_LOG_MAX_ENTRIES, Store


class MemoryStore(Store):
    def __init__(self, *, log_enabled: bool = True, log_max_entries: int = DEFAULT_LOG_MAX_ENTRIES) -> None:
        self.location = "memory"
        self._state = QueueState()
        self._lock = threading.Lock()
        self.log_enabled = log_enabled
        self.log_max_entries = max(0, log_max_entries)
        self._log: list[dict[str, Any]] = []
        self._last_log_id = 0

    def exists(self) -> bool:
        return True

    def read(self, session_id: str | None = None) -> QueueState:
        return self._scoped(session_id)

    @contextmanager
    def transaction(self, session_id: str | None = None, *, takes_seq: bool = False) -> Iterator[QueueState]:
        with self._lock:
            state = self._scoped(session_id)
            yield state
            if state.changed:
                self._merge(state, session_id)
            if state.audit:
                entries = list(state.audit)
                state.audit.clear()
                if self.log_enabled:
                    self._append_log(entries)

    def read_log(self, after_id: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(entry) for entry in self._log if entry["id"] > after_id]

    def raw_document(self) -> dict[str, Any]:
        """The state as the JSON store document (what a JSON store file would hold)."""
        import json

        from . import codec

        with self._lock:
            if (not self._state.sessions and not self._state.tombstones and self._state.next_seq == 1
                    and self._state.tombstone_retention_ms is None):
                return {}
            return json.loads(codec.encode(self._state))

    def replace_document(self, document: dict[str, Any], *, backup: bool = True, backup_suffix: str | None = None,
                         expected: dict[str, Any] | None = None) -> str | None:
        """Only a document the codec reads can be held in memory; there is nowhere to keep a backup."""
        from ..errors import StoreBusy
        from . import codec

        state = codec.decode(document, self.location)
        if expected is not None and self.raw_document() != expected:
            raise StoreBusy("the in-memory store changed while it was checked; nothing was changed")
        with self._lock:
            self._state = state
        return None

    def _append_log(self, entries: list[dict[str, Any]]) -> None:
        for entry in entries:
            self._last_log_id += 1
            self._log.append({"id": self._last_log_id, **copy.deepcopy(entry)})
        if len(self._log) > self.log_max_entries:
            del self._log[: len(self._log) - self.log_max_entries]

    def _scoped(self, session_id: str | None) -> QueueState:
        full = self._state
        if session_id is None:
            return copy.deepcopy(full)
        return QueueState(
            next_seq=full.next_seq,
            sessions={session_id: copy.deepcopy(full.sessions[session_id])} if session_id in full.sessions else {},
            tombstones={session_id: list(full.tombstones[session_id])} if session_id in full.tombstones else {},
            tombstone_retention_ms=full.tombstone_retention_ms,
        )

    def _merge(self, state: QueueState, session_id: str | None) -> None:
        if session_id is None:
            self._state = state
        else:
            merged = self._state
            merged.next_seq = state.next_seq
            merged.tombstone_retention_ms = state.tombstone_retention_ms
            for table, part in ((merged.sessions, state.sessions), (merged.tombstones, state.tombstones)):
                if session_id in part:
                    table[session_id] = part[session_id]
                else:
                    table.pop(session_id, None)
        self._state.changed = False
