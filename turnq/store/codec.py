"""turnq's store document: the queue state as one versioned JSON document.

```
{"format": "turnq-store", "schema_version": 1, "next_enqueue_seq": N,
 "batches": [{"batch": QueuedWorkBatch, "fencing_counter": N, "claim": ClaimRecord | null}, ...],
 "tombstones": [{"batch": QueuedWorkBatch, "outcome": "completed" | "cancelled", "settled_at_ms": N}, ...]}
```
With a store setting (`turnq config`), a `"settings": {"tombstone_retention_ms": N}` line follows
the header; a document without settings leaves it out (so older stores read and write as before).
Batches are store-wide in `enqueue_seq` order; a ClaimRecord is
`{"claim_id", "owner_id", "lease_token", "claimed_at_epoch_ms", "expires_at_epoch_ms"}`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ..errors import StoreUnreadable
from ..models import WireContext, describe_validation_error
from ..state import Lease, QueueState, StoredBatch, StoredTombstone

if TYPE_CHECKING:
    from .records import BatchRecord, ClaimRecord

FORMAT = "turnq-store"
SCHEMA_VERSION = 1


_RECORDS = ("ClaimRecord", "BatchRecord", "TombstoneRecord", "StoreDocument")


def __getattr__(name: str) -> Any:
    """`codec.ClaimRecord`, `BatchRecord`, `TombstoneRecord`, `StoreDocument`: the record
    models, defined in records.py and built only when first used (start-up time)."""
    if name in _RECORDS:
        from . import records

        return getattr(records, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _records() -> Any:
    from . import records

    return records


def decode(data: Any, location: str) -> QueueState:
    """The state held by a parsed store document; StoreUnreadable when it is not one."""
    _check_header(data, location)
    # The fast path (fastcodec.py) checks what this function checks, and builds batches
    # lazily; it returns None for whatever it does not vouch for. A check added below
    # must be added there too (tests/test_store_json.py's hostile files run on both).
    from . import fastcodec

    fast = fastcodec.decode(data, location)
    if fast is not None:
        return fast
    try:
        document = _records().StoreDocument.model_validate(data, context=WireContext(strict=True))
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
        _check_claim(record, location)
        state.sessions.setdefault(batch.session_id, []).append(
            StoredBatch(batch, record.fencing_counter, _lease(record.claim))
        )
    if document.next_enqueue_seq <= last_seq:
        raise _unreadable(location, f"next_enqueue_seq {document.next_enqueue_seq} is not above the last batch's")
    state.tombstone_retention_ms = read_settings(data, location)
    for tomb in document.tombstones:
        if tomb.batch.source_key is None:
            raise _unreadable(location, f"tombstone of batch {tomb.batch.batch_id} has no source key")
        state.tombstones.setdefault(tomb.batch.session_id, []).append(
            StoredTombstone(tomb.batch, tomb.outcome, tomb.settled_at_ms)
        )
    return state


def read_settings(data: dict[str, Any], location: str) -> int | None:
    """The document's tombstone retention (ms; None: none). `settings` is optional; a setting
    this turnq does not know is ignored, as unknown fields are (spec/wire.md)."""
    settings = data.get("settings")
    if settings is None:
        return None
    if type(settings) is not dict:
        raise _unreadable(location, "\"settings\" is not a JSON object")
    value = settings.get("tombstone_retention_ms")
    if value is not None and (type(value) is not int or not 0 <= value <= 2**64 - 1):
        raise _unreadable(location, f"settings.tombstone_retention_ms {value!r} is not an unsigned 64-bit integer")
    return value


def _check_claim(record: BatchRecord, location: str) -> None:
    """A claim must point at the claim that made it: every claim sets `claim_id` to
    `qwc:{first batch's enqueue_seq}:{fencing token}` and the batch's fencing counter to that
    token, so a claim whose id is malformed, names a later first batch or a token above the
    batch's counter (0: never claimed) points at nothing; so does one that expires before it
    was made, or has no owner or lease token. (`turnq doctor` reports the same, from the raw file.)"""
    claim, batch = record.claim, record.batch
    if claim is None:
        return
    parts = claim.claim_id.split(":")
    well_formed = (len(parts) == 3 and parts[0] == "qwc" and parts[1].isdigit() and parts[2].isdigit()
                   and 1 <= int(parts[1]) <= batch.enqueue_seq and 1 <= int(parts[2]) <= record.fencing_counter)
    if not well_formed:
        raise _unreadable(location, f"batch {batch.batch_id} carries claim {claim.claim_id!r}, which matches no "
                          f"claim of it (fencing counter {record.fencing_counter})")
    if not claim.owner_id or not claim.lease_token or claim.expires_at_epoch_ms < claim.claimed_at_epoch_ms:
        raise _unreadable(location, f"batch {batch.batch_id} carries an invalid claim {claim.claim_id!r}")


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
    from .fastcodec import batch_line, tombstone_line

    # A batch or tombstone read from the file and not changed since is written back as it was read.
    batch_lines = [batch_line(stored) or _line(_batch_record(stored)) for stored in state.all_batches()]
    tomb_lines = _unread_tombstone_lines(state)
    if tomb_lines is None:
        tomb_lines = [tombstone_line(tomb) or _line(_tombstone_record(tomb)) for tomb in state.all_tombstones()]
    retention = state.tombstone_retention_ms
    settings = "" if retention is None else f'"settings": {{"tombstone_retention_ms": {retention}}},\n'
    return (
        f'{{"format": "{FORMAT}", "schema_version": {SCHEMA_VERSION}, "next_enqueue_seq": {state.next_seq},\n'
        f'{settings}"batches": [{_join(batch_lines)}],\n'
        f'"tombstones": [{_join(tomb_lines)}]}}\n'
    )


def _unread_tombstone_lines(state: QueueState) -> list[str] | None:
    """The JSON store's tombstone lines as read, plus those added, when nothing loaded them
    (see jsonlines.py); None: encode them from the state."""
    from .jsonlines import TombstoneLines

    source = getattr(state, "tombstone_source", None)
    if not isinstance(source, TombstoneLines):
        return None
    added = [tomb for tombs in state.held_tombstones().values() for tomb in tombs]
    return source.lines_with(added, lambda tomb: _line(_tombstone_record(tomb)))


def _join(lines: list[str]) -> str:
    return "\n" + ",\n".join(lines) + "\n" if lines else ""


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _batch_record(stored: StoredBatch) -> dict[str, Any]:
    claim = None if stored.lease is None else stored.lease.to_wire()
    return {"batch": stored.batch.to_wire(), "fencing_counter": stored.fencing, "claim": claim}


def _tombstone_record(tomb: StoredTombstone) -> dict[str, Any]:
    return {"batch": tomb.batch.to_wire(), "outcome": tomb.outcome, "settled_at_ms": tomb.settled_at_ms}


# ----------------------------------------------------------------- one record at a time
# For the database backends, which keep one row per batch and per tombstone: the same
# JSON objects as the document's lines, so every backend stores the same JSON.


def encode_batch_record(stored: StoredBatch) -> dict[str, Any]:
    """A batch's record as in the document: `{"batch", "fencing_counter", "claim"}`."""
    return _batch_record(stored)


def decode_batch_record(data: Any, location: str) -> StoredBatch:
    """A batch record (as `encode_batch_record` gives it); StoreUnreadable when it is not one."""
    try:
        record = _records().BatchRecord.model_validate(data, context=WireContext(strict=True))
    except ValidationError as err:
        raise _unreadable(location, describe_validation_error(err)) from None
    _check_claim(record, location)
    return StoredBatch(record.batch, record.fencing_counter, _lease(record.claim))


def encode_tombstone_record(tomb: StoredTombstone) -> dict[str, Any]:
    """A tombstone's record as in the document: `{"batch", "outcome", "settled_at_ms"}`."""
    return _tombstone_record(tomb)


def decode_tombstone_record(data: Any, location: str) -> StoredTombstone:
    try:
        record = _records().TombstoneRecord.model_validate(data, context=WireContext(strict=True))
    except ValidationError as err:
        raise _unreadable(location, describe_validation_error(err)) from None
    if record.batch.source_key is None:
        raise _unreadable(location, f"tombstone of batch {record.batch.batch_id} has no source key")
    return StoredTombstone(record.batch, record.outcome, record.settled_at_ms)
