"""The queue's state as the engine sees it: live batches with their claim state,
and tombstones. Backends load and save it; the engine changes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .models import QueuedWorkBatch, Tombstone

Outcome = Literal["completed", "cancelled"]


@dataclass(frozen=True)
class Lease:
    """The claim a batch carries. It stays after expiry until the batch is claimed
    again or released, so a holder whose lease ran out can still settle it."""

    claim_id: str
    owner_id: str
    lease_token: str
    claimed_at_ms: int
    expires_at_ms: int

    def held_at(self, now_ms: int) -> bool:
        return self.expires_at_ms > now_ms

    def to_wire(self, fencing_token: int | None = None) -> dict[str, object]:
        """The claim's fields as the wire names them (with its fencing token, when given)."""
        data: dict[str, object] = {"claim_id": self.claim_id, "owner_id": self.owner_id,
                                   "lease_token": self.lease_token}
        if fencing_token is not None:
            data["fencing_token"] = fencing_token
        data["claimed_at_epoch_ms"] = self.claimed_at_ms
        data["expires_at_epoch_ms"] = self.expires_at_ms
        return data


@dataclass
class StoredBatch:
    batch: QueuedWorkBatch
    #: The largest fencing token ever given to this batch (0: never claimed).
    fencing: int = 0
    lease: Lease | None = None

    @property
    def batch_id(self) -> str:
        return self.batch.batch_id

    @property
    def seq(self) -> int:
        return self.batch.enqueue_seq

    def held_at(self, now_ms: int) -> bool:
        return self.lease is not None and self.lease.held_at(now_ms)

    def claimable_at(self, now_ms: int) -> bool:
        return self.batch.available_at_ms <= now_ms and not self.held_at(now_ms)

    def carries(self, claim_id: str, lease_token: str) -> bool:
        lease = self.lease
        return lease is not None and lease.claim_id == claim_id and lease.lease_token == lease_token


@dataclass(frozen=True)
class StoredTombstone:
    """A settled batch that had a source key: the batch as it was, how and when it ended."""

    batch: QueuedWorkBatch
    outcome: Outcome
    settled_at_ms: int

    @property
    def source_key(self) -> str:
        assert self.batch.source_key is not None
        return self.batch.source_key

    def summary(self) -> Tombstone:
        return Tombstone(
            session_id=self.batch.session_id,
            source_key=self.source_key,
            batch_id=self.batch.batch_id,
            outcome=self.outcome,
            settled_at_ms=self.settled_at_ms,
        )


@dataclass
class QueueState:
    """Every session's batches (in enqueue order) and tombstones, and the store-wide sequence."""

    next_seq: int = 1
    sessions: dict[str, list[StoredBatch]] = field(default_factory=dict)
    tombstones: dict[str, list[StoredTombstone]] = field(default_factory=dict)
    #: Set by every change, so a transaction that changed nothing writes nothing.
    changed: bool = False
    #: Audit-log entries the core records during a transaction (JSON objects: `at_ms`, `op`,
    #: `session_id`, `batch_ids`, …). The store persists them at the end of the transaction,
    #: after the state (even when the state did not change: a refusal is logged too), then
    #: clears the list. Not part of the queue's state: never encoded into the store document.
    audit: list[dict[str, Any]] = field(default_factory=list)

    def record(self, op: str, at_ms: int, session_id: str | None, batch_ids: list[str], **fields: Any) -> None:
        """Add an audit entry (fields that are None are left out)."""
        entry: dict[str, Any] = {"at_ms": at_ms, "op": op, "session_id": session_id, "batch_ids": list(batch_ids)}
        entry.update((key, value) for key, value in fields.items() if value is not None)
        entry.setdefault("outcome", "ok")
        self.audit.append(entry)

    def session(self, session_id: str) -> list[StoredBatch]:
        return self.sessions.get(session_id, [])

    def session_tombstones(self, session_id: str) -> list[StoredTombstone]:
        return self.tombstones.get(session_id, [])

    def session_ids(self) -> list[str]:
        return sorted(set(self.sessions) | set(self.tombstones))

    def all_batches(self) -> list[StoredBatch]:
        """Every live batch, store-wide, in enqueue order."""
        return sorted((b for batches in self.sessions.values() for b in batches), key=lambda b: b.seq)

    def all_tombstones(self) -> list[StoredTombstone]:
        return sorted(
            (t for ts in self.tombstones.values() for t in ts), key=lambda t: (t.settled_at_ms, t.batch.enqueue_seq)
        )

    def find(self, session_id: str, batch_id: str) -> StoredBatch | None:
        for stored in self.session(session_id):
            if stored.batch_id == batch_id:
                return stored
        return None

    def add(self, stored: StoredBatch) -> None:
        self.sessions.setdefault(stored.batch.session_id, []).append(stored)
        self.changed = True

    def remove(self, session_id: str, batch_ids: set[str]) -> list[StoredBatch]:
        kept, removed = [], []
        for stored in self.session(session_id):
            (removed if stored.batch_id in batch_ids else kept).append(stored)
        if kept:
            self.sessions[session_id] = kept
        else:
            self.sessions.pop(session_id, None)
        self.changed = True
        return removed

    def add_tombstone(self, tombstone: StoredTombstone) -> None:
        self.tombstones.setdefault(tombstone.batch.session_id, []).append(tombstone)
        self.changed = True
