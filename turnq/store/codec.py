"""turnq's store document: the queue state as one versioned JSON document.

```
{"format": "turnq-store", "schema_version": 1, "next_enqueue_seq": N,
 "batches": [{"batch": QueuedWorkBatch, "fencing_counter": N, "claim": ClaimRecord | null}, ...],
 "tombstones": [{"batch": QueuedWorkBatch, "outcome": "completed" | "cancelled", "settled_at_ms": N}, ...]}
```
Batches are store-wide in `enqueue_seq` order; a ClaimRecord is
`{"claim_id", "owner_id", "lease_token", "claimed_at_epoch_ms", "expires_at_epoch_ms"}`.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import ValidationError

from ..errors import StoreUnreadable
from ..models import (
    U64,
    QueuedWorkBatch,
    WireContext,
    WireModel,
    describe_validation_error,
)
from ..state import Lease, QueueState, StoredBatch, StoredTombstone

FORMAT = "turnq-store"
SCHEMA_VERSION = 1


class ClaimRecord(WireModel):
    claim_id: str
    owner_id: str
    lease_token: str
    claimed_at_epoch_ms: U64
    expires_at_epoch_ms: U64


class BatchRecord(WireModel):
    batch: QueuedWorkBatch
    fencing_counter: U64
    claim: ClaimRecord | None


class TombstoneRecord(WireModel):
    batch: QueuedWorkBatch
    outcome: Literal["completed", "cancelled"]
    settled_at_ms: U64


class StoreDocument(WireModel):
    format: str
    schema_version: int
    next_enqueue_seq: U64
    batches: list[BatchRecord]
    tombstones: list[TombstoneRecord]


def decode(data: Any, location: str) -> QueueState:
    """The state held by a parsed store document; StoreUnreadable when it is not one."""
    _check_header(data, location)
    try:
        document = StoreDocument.model_validate(data, context=WireContext(strict=True))
    except ValidationError as err:
        raise _unreadable(location, describe_validation_error(err)) from None
    state = QueueState(next_seq=document.next_enqueue_seq)
    last_seq = 0
    seen: set[str] = set()
    for record in document.batches:
        batch = record.batch
        if batch.batch_id in seen:
            raise _unreadable(location, f"batch id {batch.batch_id} appears twice")
        if batch.enqueue_seq <= last_seq:
            raise _unreadable(location, f"batch {batch.batch_id} is out of enqueue_seq order")
        seen.add(batch.batch_id)
        last_seq = batch.enqueue_seq
        state.sessions.setdefault(batch.session_id, []).append(
            StoredBatch(batch, record.fencing_counter, _lease(record.claim))
        )
    if document.next_enqueue_seq <= last_seq:
        raise _unreadable(location, f"next_enqueue_seq {document.next_enqueue_seq} is not above the last batch's")
    for tomb in document.tombstones:
        if tomb.batch.source_key is None:
            raise _unreadable(location, f"tombstone of batch {tomb.batch.batch_id} has no source key")
        state.tombstones.setdefault(tomb.batch.session_id, []).append(
            StoredTombstone(tomb.batch, tomb.outcome, tomb.settled_at_ms)
        )
    return state


def _check_header(data: Any, location: str) -> None:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise _unreadable(location, f"not a turnq store (no \"format\": \"{FORMAT}\")")
    version = data.get("schema_version")
    if type(version) is not int or version < 1:
        raise _unreadable(location, f"invalid schema_version {version!r}")
    if version > SCHEMA_VERSION:
        raise StoreUnreadable(
            f"store {location} was written by a newer turnq (schema version {version}; this turnq "
            f"reads {SCHEMA_VERSION}): upgrade turnq to use it; the file was left as it is"
        )


def _unreadable(location: str, why: str) -> StoreUnreadable:
    return StoreUnreadable(f"store {location} is unreadable: {why}; the file was left as it is")


def _lease(record: ClaimRecord | None) -> Lease | None:
    if record is None:
        return None
    return Lease(record.claim_id, record.owner_id, record.lease_token,
                 record.claimed_at_epoch_ms, record.expires_at_epoch_ms)


def encode(state: QueueState) -> str:
    """The document's text: a header, then one line per batch and per tombstone,
    so that a store committed as a fixture diffs line by line."""
    batch_lines = [_line(_batch_record(stored)) for stored in state.all_batches()]
    tomb_lines = [_line(_tombstone_record(tomb)) for tomb in state.all_tombstones()]
    return (
        f'{{"format": "{FORMAT}", "schema_version": {SCHEMA_VERSION}, "next_enqueue_seq": {state.next_seq},\n'
        f'"batches": [{_join(batch_lines)}],\n'
        f'"tombstones": [{_join(tomb_lines)}]}}\n'
    )


def _join(lines: list[str]) -> str:
    return "\n" + ",\n".join(lines) + "\n" if lines else ""


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _batch_record(stored: StoredBatch) -> dict[str, Any]:
    claim = None if stored.lease is None else stored.lease.to_wire()
    return {"batch": stored.batch.to_wire(), "fencing_counter": stored.fencing, "claim": claim}


def _tombstone_record(tomb: StoredTombstone) -> dict[str, Any]:
    return {"batch": tomb.batch.to_wire(), "outcome": tomb.outcome, "settled_at_ms": tomb.settled_at_ms}
