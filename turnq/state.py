"""The queue's state as the engine sees it: live batches with their claim state,
and tombstones. Backends load and save it; the engine changes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

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

    @property
    def session_id(self) -> str:
        return self.batch.session_id

    @property
    def batch_id(self) -> str:
        return self.batch.batch_id

    @property
    def seq(self) -> int:
        return self.batch.enqueue_seq

    def expired_at(self, cutoff_ms: int | None) -> bool:
        """Settled at or before `cutoff_ms` (None: no cutoff, so always)."""
        return cutoff_ms is None or self.settled_at_ms <= cutoff_ms

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
    #: The store's tombstone retention in ms (`turnq config set tombstone-retention`); None:
    #: tombstones are kept until `vacuum`. A store setting, loaded with the state.
    tombstone_retention_ms: int | None = None
    #: Tombstones that retention dropped during this transaction (the API logs them).
    expired: list[StoredTombstone] = field(default_factory=list, repr=False, compare=False)
    #: Per-session index by source key, built by `find_tombstone` on demand:
    #: session -> (the list it indexes, its length then, key -> newest tombstone).
    _key_index: dict[str, tuple[list[StoredTombstone], int, dict[str, StoredTombstone]]] = field(
        default_factory=dict, repr=False, compare=False)

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
        return sorted(set(self.sessions) | set(self.tombstone_counts()))

    def tombstone_counts(self) -> dict[str, int]:
        """Each session's number of tombstones (sessions without one left out)."""
        return {session_id: len(tombs) for session_id, tombs in self.tombstones.items() if tombs}

    def all_batches(self) -> list[StoredBatch]:
        """Every live batch, store-wide, in enqueue order."""
        return sorted((b for batches in self.sessions.values() for b in batches), key=lambda b: b.seq)

    def all_tombstones(self) -> list[StoredTombstone]:
        return sorted((t for ts in self.tombstones.values() for t in ts), key=lambda t: (t.settled_at_ms, t.seq))

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

    # ----------------------------------------------------------------- tombstones
    # What the engine asks of tombstones. LazyTombstoneState (below) overrides these for the
    # backends that leave tombstones where they are stored (looked up by key, dropped by range,
    # loaded whole only when `tombstones` itself is read), so that no operation but
    # inspect/vacuum/export pays for all of them.

    def retention_cutoff(self, now_ms: int | None) -> int | None:
        """Tombstones settled at or before this have outlived the retention (None: none has)."""
        if self.tombstone_retention_ms is None or now_ms is None:
            return None
        return now_ms - self.tombstone_retention_ms

    def find_tombstone(self, session_id: str, source_key: str, now_ms: int | None = None) -> StoredTombstone | None:
        """The session's tombstone holding `source_key`, unless retention has expired it at `now_ms`."""
        tombs = self.tombstones.get(session_id)
        if not tombs:
            return None
        built = self._key_index.get(session_id)
        if built is None or built[0] is not tombs or built[1] != len(tombs):
            index: dict[str, StoredTombstone] = {}
            for tomb in tombs:
                older = index.get(tomb.source_key)
                if older is None or older.settled_at_ms <= tomb.settled_at_ms:
                    index[tomb.source_key] = tomb
            built = self._key_index[session_id] = (tombs, len(tombs), index)
        found = built[2].get(source_key)
        return found if found is not None and not self._outlived(found, now_ms) else None

    def _outlived(self, tomb: StoredTombstone, now_ms: int | None) -> bool:
        cutoff = self.retention_cutoff(now_ms)
        return cutoff is not None and tomb.settled_at_ms <= cutoff

    def add_tombstone(self, tombstone: StoredTombstone) -> None:
        self.tombstones.setdefault(tombstone.session_id, []).append(tombstone)
        self.changed = True

    def drop_tombstones(self, session_id: str | None, cutoff_ms: int | None) -> list[StoredTombstone]:
        """Remove the tombstones (of one session, or all) settled at or before `cutoff_ms`
        (None: every one); return them."""
        sessions = [session_id] if session_id is not None else list(self.tombstones)
        removed: list[StoredTombstone] = []
        for sid in sessions:
            tombs = self.tombstones.get(sid)
            if not tombs:
                continue
            kept = [tomb for tomb in tombs if not tomb.expired_at(cutoff_ms)]
            if len(kept) == len(tombs):
                continue
            removed.extend(tomb for tomb in tombs if tomb.expired_at(cutoff_ms))
            if kept:
                self.tombstones[sid] = kept
            else:
                self.tombstones.pop(sid, None)
        if removed:
            self.changed = True
        return removed

    def expire_tombstones(self, session_id: str, now_ms: int) -> list[StoredTombstone]:
        """Retention, applied by a write of the session: drop its tombstones settled at or
        before `now - retention` (nothing when the store keeps them until vacuum)."""
        cutoff = self.retention_cutoff(now_ms)
        if cutoff is None or cutoff < 0:
            return []
        removed = self.drop_tombstones(session_id, cutoff)
        self.expired.extend(removed)
        return removed

    def held_tombstones(self) -> dict[str, list[StoredTombstone]]:
        """The tombstones this state holds in memory: all of them here; a LazyTombstoneState
        holds only those it loaded or that were added."""
        return self.tombstones


class TombstoneSource(Protocol):
    """Where a LazyTombstoneState's tombstones are: a database's table (store/sqlite.py,
    store/pg_tombstones.py) or the JSON store's tombstone lines (store/jsonlines.py)."""

    def find(self, session_id: str, source_key: str) -> StoredTombstone | None:
        """The newest tombstone of the session holding the key (an indexed lookup)."""

    def drop(self, session_id: str | None, cutoff_ms: int | None) -> list[StoredTombstone]:
        """Delete (and return) the tombstones of the session (None: all) settled at or before
        the cutoff (None: all), by an indexed range; forget them in the snapshot."""

    def load(self) -> list[StoredTombstone]:
        """Every tombstone in the transaction's scope (registered in the snapshot)."""

    def count(self) -> dict[str, int]:
        """How many tombstones each session of the scope holds (a database counts them
        without reading one)."""


class LazyTombstoneState(QueueState):
    """A state whose tombstones stay where they are stored until `tombstones` itself is read
    (inspect, export, migrate, …). The engine's tombstone calls (find, add, drop) go to the
    source by key or range instead, so claim, renew, abandon and complete never read one."""

    def __init__(self, next_seq: int = 1, rows: TombstoneSource | None = None) -> None:
        self._rows: TombstoneSource | None = None
        self._loaded: dict[str, list[StoredTombstone]] | None = None
        self._added: dict[str, list[StoredTombstone]] = {}
        super().__init__(next_seq=next_seq)  # sets `tombstones` = {} (loaded: nothing to load yet)
        if rows is not None:
            self._rows, self._loaded = rows, None

    @property  # type: ignore[override]
    def tombstones(self) -> dict[str, list[StoredTombstone]]:
        if self._loaded is None:
            assert self._rows is not None
            loaded: dict[str, list[StoredTombstone]] = {}
            for tomb in self._rows.load():
                loaded.setdefault(tomb.session_id, []).append(tomb)
            for session_id, added in self._added.items():  # not in the tables until saved
                loaded.setdefault(session_id, []).extend(added)
            self._loaded, self._added = loaded, {}
        return self._loaded

    def tombstone_counts(self) -> dict[str, int]:
        """Counted where they are stored (inspect's counts load no tombstone), unless loaded."""
        if self._loaded is not None or self._rows is None:
            return super().tombstone_counts()
        counts = dict(self._rows.count())
        for session_id, added in self._added.items():  # not in the tables until saved
            counts[session_id] = counts.get(session_id, 0) + len(added)
        return {session_id: n for session_id, n in counts.items() if n}

    @tombstones.setter
    def tombstones(self, value: dict[str, list[StoredTombstone]]) -> None:
        if self._rows is not None and self._loaded is None:
            self.tombstones  # load first, so that saving deletes the rows `value` leaves out
        self._loaded = value

    def find_tombstone(self, session_id: str, source_key: str, now_ms: int | None = None) -> StoredTombstone | None:
        if self._loaded is not None:
            return super().find_tombstone(session_id, source_key, now_ms)
        assert self._rows is not None
        found = next((t for t in reversed(self._added.get(session_id, [])) if t.source_key == source_key), None)
        if found is None:
            found = self._rows.find(session_id, source_key)
        return found if found is not None and not self._outlived(found, now_ms) else None

    def add_tombstone(self, tombstone: StoredTombstone) -> None:
        if self._loaded is not None:
            super().add_tombstone(tombstone)
            return
        self._added.setdefault(tombstone.session_id, []).append(tombstone)
        self.changed = True

    def drop_tombstones(self, session_id: str | None, cutoff_ms: int | None) -> list[StoredTombstone]:
        if self._rows is None:
            return super().drop_tombstones(session_id, cutoff_ms)
        removed = self._rows.drop(session_id, cutoff_ms)
        gone = {tomb.batch_id for tomb in removed}
        held = self._loaded if self._loaded is not None else self._added
        for sid in [session_id] if session_id is not None else list(held):
            tombs = held.get(sid)
            if not tombs:
                continue
            # Ones added in this transaction are not in the tables yet: drop them here.
            removed.extend(t for t in tombs if t.expired_at(cutoff_ms) and t.batch_id not in gone)
            kept = [t for t in tombs if not t.expired_at(cutoff_ms)]
            if kept:
                held[sid] = kept
            else:
                held.pop(sid, None)
        if removed:
            self.changed = True
        return removed

    def held_tombstones(self) -> dict[str, list[StoredTombstone]]:
        return self._loaded if self._loaded is not None else self._added

    @property
    def tombstone_source(self) -> TombstoneSource | None:
        """Where the tombstones not loaded are (None once `tombstones` has loaded them all)."""
        return self._rows if self._loaded is None else None
