"""The store document's fast path: decoding without pydantic, batches built when used.

`codec.decode` tries `decode` here first. It checks every record of the document
(so a hostile file is refused on every operation, as before), but builds a batch's
model only when the engine looks at it, and `codec.encode` writes a record that did
not change as the JSON it was read from. So one operation on a large store costs
about one `json` load and dump of its file, instead of validating and re-serialising
every batch through pydantic.

It vouches only for what it checks by hand; anything else makes `decode` return None
and the codec validates the whole document with pydantic, which words the error (or
accepts what this path was too cautious to). The checks after validation (ids,
order, claims, tombstones) are the codec's, with the codec's messages.
"""

from __future__ import annotations

import json
from json import encoder as _json_encoder
from typing import Any

from .. import fastwire
from ..clock import U64_MAX
from ..models import QueuedWorkBatch
from ..state import Lease, QueueState, StoredBatch, StoredTombstone

_DOCUMENT_KEYS = frozenset({"format", "schema_version", "next_enqueue_seq", "batches", "tombstones"})
_DOCUMENT_KEYS_SETTINGS = _DOCUMENT_KEYS | {"settings"}
_RECORD_KEYS = ("batch", "fencing_counter", "claim")
_CLAIM_KEYS = ("claim_id", "owner_id", "lease_token", "claimed_at_epoch_ms", "expires_at_epoch_ms")
_TOMB_KEYS = ("batch", "outcome", "settled_at_ms")
_TOMB_KEY_SET = frozenset(_TOMB_KEYS)
_BATCH_KEYS = tuple(QueuedWorkBatch.model_fields)
_BATCH_KEYS_NO_SOURCE = tuple(key for key in _BATCH_KEYS if key != "source_key")
_ITEM_KEYS = ("item_id", "payload")
_PAYLOAD_KEYS = ("type", "input")
_INPUT_KEYS = ("items", "image_blobs")
_TEXT_KEYS = ("type", "text")
_IMAGE_KEYS = ("type", "id")
_DELIVERY = ("earliest_safe_boundary", "after_current_turn_commit")
_SLOT = ("join", "exclusive")
_OUTCOMES = ("completed", "cancelled")



def _no_default(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON")


# One C encoder made once: `json.dumps(record, ensure_ascii=False, separators=(",", ":"),
# allow_nan=False)` (the codec's `_line`) without making an encoder for every record.
_c_encoder = _json_encoder.c_make_encoder(
    None, _no_default, _json_encoder.encode_basestring, None, ":", ",", False, False, False)


def _encode_line(record: Any) -> str:
    if _c_encoder is None:  # pragma: no cover - a Python without the C accelerator
        return json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return "".join(_c_encoder(record, 0))


class _Unsure(Exception):
    """Not a record this path vouches for."""


def _u64(value: Any) -> bool:
    return type(value) is int and 0 <= value <= U64_MAX


# The value types of a simple batch's keys, in order (merge key: a name, or {"group": NAME}).
_TYPES = {
    _BATCH_KEYS_NO_SOURCE: ((str, str, int, str, str, str, int, int, list), (str, str, int, str, str, dict, int, int, list)),
    _BATCH_KEYS: ((str, str, int, str, str, str, str, int, int, list), (str, str, int, str, str, str, dict, int, int, list)),
}
_MERGE_NAMES = frozenset({"never", "payload_default"})
_DELIVERY_SET = frozenset(_DELIVERY)
_SLOT_SET = frozenset(_SLOT)


def _simple_batch(raw: Any) -> bool:
    """True when `raw` is a valid QueuedWorkBatch in the exact form turnq writes (keys in
    order, text/image turn inputs): then its JSON is the batch's own and needs no model.
    (Written for speed: it runs for every batch of the store on every operation.)"""
    if type(raw) is not dict:
        return False
    expected = _TYPES.get(tuple(raw))
    if expected is None:
        return False
    types = tuple(map(type, raw.values()))
    if types == expected[0]:
        if raw["merge_key"] not in _MERGE_NAMES:
            return False
    elif types == expected[1]:
        merge = raw["merge_key"]
        if tuple(merge) != ("group",) or type(merge["group"]) is not str:
            return False
    else:
        return False
    if not (raw["delivery_policy"] in _DELIVERY_SET and raw["slot_policy"] in _SLOT_SET
            and 0 <= raw["enqueue_seq"] <= U64_MAX and 0 <= raw["available_at_ms"] <= U64_MAX
            and 0 <= raw["enqueued_at_ms"] <= U64_MAX):
        return False
    for item in raw["items"]:
        if type(item) is not dict or tuple(item) != _ITEM_KEYS or type(item["item_id"]) is not str:
            return False
        payload = item["payload"]
        if type(payload) is not dict or tuple(payload) != _PAYLOAD_KEYS or payload["type"] != "turn_input":
            return False
        turn = payload["input"]
        if type(turn) is not dict or tuple(turn) != _INPUT_KEYS or type(turn["items"]) is not list:
            return False
        blobs = turn["image_blobs"]
        if type(blobs) is not dict or blobs:
            return False
        for part in turn["items"]:
            if type(part) is not dict:
                return False
            keys = tuple(part)
            if keys == _TEXT_KEYS:
                if part["type"] != "text" or type(part["text"]) is not str:
                    return False
            elif keys == _IMAGE_KEYS:
                if part["type"] != "image_ref" or type(part["id"]) is not str:
                    return False
            else:
                return False
    return True


def _batch_model(raw: Any) -> tuple[QueuedWorkBatch, bool]:
    """A batch that is not simple: its model (fast path, else _Unsure), and whether the JSON
    it was read from is exactly what turnq would write for it."""
    try:
        batch = fastwire.batch(raw)
    except fastwire.Bail:
        raise _Unsure from None
    return batch, _encode_line(batch.to_wire()) == _encode_line(raw)


class LazyStoredBatch(StoredBatch):
    """A StoredBatch read from the document whose model is built on first use; it
    remembers the record it came from, to write it back unchanged when it is."""

    def __init__(self, batch: QueuedWorkBatch | None = None, fencing: int = 0, lease: Lease | None = None, *,
                 raw: Any = None, record: Any = None) -> None:
        self._batch = batch
        self._raw = raw
        self.fencing = fencing
        self.lease = lease
        # What was read: (batch model or None, fencing, lease, record); None: write it anew.
        self._read = None if record is None else (batch, fencing, lease, record)

    @property  # type: ignore[override]
    def batch(self) -> QueuedWorkBatch:
        batch = self._batch
        if batch is None:
            batch = self._batch = fastwire.batch(self._raw)
            if self._read is not None:
                self._read = (batch, *self._read[1:])
        return batch

    @batch.setter
    def batch(self, value: QueuedWorkBatch) -> None:
        self._batch = value

    @property
    def batch_id(self) -> str:
        return self._raw["batch_id"] if self._batch is None else self._batch.batch_id

    @property
    def seq(self) -> int:
        return self._raw["enqueue_seq"] if self._batch is None else self._batch.enqueue_seq

    def __eq__(self, other: object) -> bool:
        # As the dataclass compares, and equal to a plain StoredBatch holding the same.
        if isinstance(other, StoredBatch):
            return (self.batch, self.fencing, self.lease) == (other.batch, other.fencing, other.lease)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, as StoredBatch

    def unchanged_line(self) -> str | None:
        """The record's JSON as read, when nothing changed since; else None."""
        read = self._read
        if read is None or read[1] != self.fencing or read[2] != self.lease:
            return None
        if self._batch is not None and read[0] is not self._batch:
            return None
        return _encode_line(read[3])


class LazyStoredTombstone(StoredTombstone):
    """A tombstone read from the document, kept as the record it was read from: its batch
    model is built only when something looks at it (a replay, inspect, vacuum's answer), and
    `codec.encode` writes the record back as it was read. (Tombstones never change: one is
    only added or dropped.)"""

    def __init__(self, record: dict[str, Any]) -> None:  # pylint: disable=super-init-not-called
        object.__setattr__(self, "_record", record)
        object.__setattr__(self, "_batch", None)
        object.__setattr__(self, "outcome", record["outcome"])
        object.__setattr__(self, "settled_at_ms", record["settled_at_ms"])

    @property  # type: ignore[override]
    def batch(self) -> QueuedWorkBatch:
        batch = self._batch
        if batch is None:
            batch = fastwire.batch(self._record["batch"])
            object.__setattr__(self, "_batch", batch)
        return batch

    @property
    def source_key(self) -> str:
        return self._record["batch"]["source_key"]

    @property
    def session_id(self) -> str:
        return self._record["batch"]["session_id"]

    @property
    def batch_id(self) -> str:
        return self._record["batch"]["batch_id"]

    @property
    def seq(self) -> int:
        return self._record["batch"]["enqueue_seq"]

    def __eq__(self, other: object) -> bool:
        # As the dataclass compares, and equal to a plain StoredTombstone holding the same.
        if isinstance(other, StoredTombstone):
            return (self.batch, self.outcome, self.settled_at_ms) == (other.batch, other.outcome, other.settled_at_ms)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.batch_id, self.outcome, self.settled_at_ms))

    def __repr__(self) -> str:
        return f"LazyStoredTombstone(batch_id={self.batch_id!r}, outcome={self.outcome!r}, " \
               f"settled_at_ms={self.settled_at_ms!r})"

    def line(self) -> str:
        return _encode_line(self._record)


class _RecordView:
    """What codec._check_claim looks at, without building the batch model for unclaimed records."""

    __slots__ = ("claim", "fencing_counter", "stored")

    def __init__(self, stored: LazyStoredBatch, claim: Any, fencing_counter: int) -> None:
        self.stored = stored
        self.claim = claim
        self.fencing_counter = fencing_counter

    @property
    def batch(self) -> QueuedWorkBatch:
        return self.stored.batch


class _ClaimView:
    """A claim record's fields, as codec._check_claim and codec._lease read them."""

    __slots__ = _CLAIM_KEYS

    def __init__(self, raw: dict[str, Any]) -> None:
        for key in _CLAIM_KEYS:
            setattr(self, key, raw[key])


def _claim(raw: Any) -> _ClaimView:
    if not (type(raw) is dict and tuple(raw) == _CLAIM_KEYS and type(raw["claim_id"]) is str
            and type(raw["owner_id"]) is str and type(raw["lease_token"]) is str
            and _u64(raw["claimed_at_epoch_ms"]) and _u64(raw["expires_at_epoch_ms"])):
        raise _Unsure
    return _ClaimView(raw)


def decode(data: dict[str, Any], location: str) -> QueueState | None:
    """The document's state; None when this path cannot vouch for the document (the caller
    then validates it with pydantic); StoreUnreadable from the codec's own checks."""
    try:
        return _decode(data, location)
    except _Unsure:
        return None


def _decode(data: dict[str, Any], location: str) -> QueueState:
    from . import codec

    keys = data.keys()
    if (keys != _DOCUMENT_KEYS and keys != _DOCUMENT_KEYS_SETTINGS) or type(data["format"]) is not str:
        raise _Unsure
    next_seq, records, tombs = data["next_enqueue_seq"], data["batches"], data["tombstones"]
    if not _u64(next_seq) or type(records) is not list or type(tombs) is not list:
        raise _Unsure
    state = QueueState(next_seq=next_seq)
    sessions = state.sessions
    last_seq = 0
    seen: set[str] = set()
    check_claim = codec._check_claim
    for record in records:
        if type(record) is not dict or tuple(record) != _RECORD_KEYS or not _u64(record["fencing_counter"]):
            raise _Unsure
        raw = record["batch"]
        fencing = record["fencing_counter"]
        claim = record["claim"]
        if claim is not None:
            claim = _claim(claim)
        if _simple_batch(raw):
            stored = LazyStoredBatch(None, fencing, None, raw=raw, record=record)
            batch_id, seq = raw["batch_id"], raw["enqueue_seq"]
        else:
            batch, canonical = _batch_model(raw)
            stored = LazyStoredBatch(batch, fencing, None, raw=raw, record=record if canonical else None)
            batch_id, seq = batch.batch_id, batch.enqueue_seq
        if batch_id in seen:
            raise codec._unreadable(location, f"batch id {batch_id} appears twice")
        if seq <= last_seq:
            raise codec._unreadable(location, f"batch {batch_id} is out of enqueue_seq order")
        seen.add(batch_id)
        last_seq = seq
        if claim is not None:
            check_claim(_RecordView(stored, claim, fencing), location)
            lease = codec._lease(claim)
            stored.lease = lease
            if stored._read is not None:
                stored._read = (stored._read[0], fencing, lease, record)
        session_id = raw["session_id"]
        found = sessions.get(session_id)
        if found is None:
            sessions[session_id] = [stored]
        else:
            found.append(stored)
    if next_seq <= last_seq:
        raise codec._unreadable(location, f"next_enqueue_seq {next_seq} is not above the last batch's")
    state.tombstone_retention_ms = codec.read_settings(data, location)
    tombstones = state.tombstones
    for tomb in tombs:
        stored = tombstone(tomb, location)
        session_id = stored.session_id
        found = tombstones.get(session_id)
        if found is None:
            tombstones[session_id] = [stored]
        else:
            found.append(stored)
    return state


def tombstone(tomb: Any, location: str) -> StoredTombstone:
    """A tombstone record, checked as the codec checks it (_Unsure: not one this path vouches for)."""
    from . import codec

    if type(tomb) is not dict or tomb.keys() != _TOMB_KEY_SET:
        raise _Unsure
    outcome, settled = tomb["outcome"], tomb["settled_at_ms"]
    if type(outcome) is not str or outcome not in _OUTCOMES or not _u64(settled):
        raise _Unsure
    raw = tomb["batch"]
    if tuple(tomb) == _TOMB_KEYS and _simple_batch(raw):
        # Checked by hand as a live batch is; its model waits until someone needs it.
        if "source_key" not in raw:
            raise codec._unreadable(location, f"tombstone of batch {raw['batch_id']} has no source key")
        return LazyStoredTombstone(tomb)
    try:
        batch = fastwire.batch(raw)
    except fastwire.Bail:
        raise _Unsure from None
    if batch.source_key is None:
        raise codec._unreadable(location, f"tombstone of batch {batch.batch_id} has no source key")
    return StoredTombstone(batch, outcome, settled)


def tombstone_line(tomb: StoredTombstone) -> str | None:
    """The tombstone's record as it was read (see LazyStoredTombstone), else None."""
    if type(tomb) is LazyStoredTombstone:
        return tomb.line()
    return None


def batch_line(stored: StoredBatch) -> str | None:
    """The unchanged record's JSON as it was read (see LazyStoredBatch), else None."""
    if type(stored) is LazyStoredBatch:
        return stored.unchanged_line()
    return None
