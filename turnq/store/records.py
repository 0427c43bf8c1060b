"""The store document's records as pydantic models (see turnq.store.codec).

Kept apart from the codec so that a command which never needs them does not build
them: the codec's fast path (fastcodec.py) reads turnq's own documents without them,
and `codec.ClaimRecord` etc. import this module on first use.
"""

from typing import Literal

from ..models import U64, QueuedWorkBatch, WireModel


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
