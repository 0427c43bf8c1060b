"""Read-only views of the queue for `inspect`: what each batch's state is, and
what a claim would take (and materialise into) now at each boundary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import engine
from .materialize import CheckpointWork, TurnWork, materialize
from .models import BOUNDARIES, QueuedWorkBatch, Tombstone, dump
from .state import Lease, QueueState, StoredBatch


@dataclass(frozen=True)
class BatchView:
    batch: QueuedWorkBatch
    state: engine.BatchStateName
    lease: Lease | None
    fencing_counter: int

    @classmethod
    def of(cls, stored: StoredBatch, now_ms: int) -> "BatchView":
        return cls(stored.batch, engine.batch_state(stored, now_ms), stored.lease, stored.fencing)

    def to_wire(self) -> dict[str, Any]:
        claim = None if self.lease is None else self.lease.to_wire(fencing_token=self.fencing_counter)
        return {"batch": self.batch.to_wire(), "state": self.state, "claim": claim,
                "fencing_counter": self.fencing_counter}


@dataclass(frozen=True)
class SessionSummary:
    session_id: str
    ready: int = 0
    delayed: int = 0
    held: int = 0
    lease_expired: int = 0
    tombstones: int = 0
    oldest_enqueued_at_ms: int | None = None

    def to_wire(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Overview:
    now_ms: int
    sessions: list[SessionSummary]
    #: The store's tombstone retention (None: kept until vacuum; omitted from JSON then).
    tombstone_retention_ms: int | None = None

    def to_wire(self) -> dict[str, Any]:
        data: dict[str, Any] = {"now_ms": self.now_ms, "sessions": [s.to_wire() for s in self.sessions]}
        if self.tombstone_retention_ms is not None:
            data["tombstone_retention_ms"] = self.tombstone_retention_ms
        return data


@dataclass(frozen=True)
class SessionView:
    now_ms: int
    session_id: str
    batches: list[BatchView]
    tombstone_count: int
    next_claim: dict[str, list[QueuedWorkBatch]]
    materialized: dict[str, TurnWork | CheckpointWork | None]
    tombstone_list: list[Tombstone] | None = field(default=None)
    tombstone_retention_ms: int | None = None

    def to_wire(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "now_ms": self.now_ms,
            "session_id": self.session_id,
            "batches": [view.to_wire() for view in self.batches],
            "tombstones": self.tombstone_count,
            "next_claim": {b: [batch.batch_id for batch in self.next_claim[b]] for b in BOUNDARIES},
            "materialized": {b: None if w is None else w.to_wire() for b, w in self.materialized.items()},
        }
        if self.tombstone_list is not None:
            data["tombstone_list"] = dump(self.tombstone_list)
        if self.tombstone_retention_ms is not None:
            data["tombstone_retention_ms"] = self.tombstone_retention_ms
        return data


def overview(state: QueueState, now_ms: int) -> Overview:
    summaries = []
    tombstones = state.tombstone_counts()
    for session_id in sorted(set(state.sessions) | set(tombstones)):
        counts = {"ready": 0, "delayed": 0, "held": 0, "lease_expired": 0}
        batches = state.session(session_id)
        for stored in batches:
            counts[engine.batch_state(stored, now_ms)] += 1
        oldest = min((b.batch.enqueued_at_ms for b in batches), default=None)
        summaries.append(SessionSummary(session_id, **counts, tombstones=tombstones.get(session_id, 0),
                                        oldest_enqueued_at_ms=oldest))
    return Overview(now_ms, summaries, state.tombstone_retention_ms)


def session_view(state: QueueState, session_id: str, now_ms: int, *, pending: bool = False,
                 tombstones: bool = False, max_batches: int = engine.DEFAULT_MAX_BATCHES) -> SessionView:
    views = [BatchView.of(stored, now_ms) for stored in state.session(session_id)]
    if pending:
        views = [view for view in views if view.state != "held"]
    next_claim: dict[str, list[QueuedWorkBatch]] = {}
    materialized: dict[str, TurnWork | CheckpointWork | None] = {}
    for boundary in BOUNDARIES:
        run = [stored.batch for stored in engine.plan_claim(state, session_id, boundary, max_batches, now_ms)]
        next_claim[boundary] = run
        materialized[boundary] = materialize(run, boundary) if run else None
    if tombstones:
        tomb_list = [t.summary() for t in state.session_tombstones(session_id)]
        count = len(tomb_list)
    else:
        tomb_list, count = None, state.tombstone_counts().get(session_id, 0)
    return SessionView(now_ms, session_id, views, count, next_claim, materialized, tomb_list,
                       state.tombstone_retention_ms)


def batch_view(state: QueueState, session_id: str, batch_id: str, now_ms: int) -> BatchView:
    stored = state.find(session_id, batch_id)
    if stored is None:
        settled = any(t.batch.batch_id == batch_id for t in state.session_tombstones(session_id))
        why = " (it was settled and only its tombstone remains)" if settled else ""
        raise engine.NotFound(f"no batch {batch_id} in session {session_id!r}{why}")
    return BatchView.of(stored, now_ms)
