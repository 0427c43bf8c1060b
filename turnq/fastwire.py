"""Fast validation of the shapes turnq reads on every command (no pydantic schema built).

`models.validate` and the store codec try these first. Each function accepts only
data that pydantic's validation (turnq.models) accepts too, and builds the same models
from it; anything else — an unknown or repeated key, a type it does not check, a
payload kind it does not know — raises `Bail`, and the caller validates with pydantic,
which gives the one-line error, the warning about an unknown field, or the model.
So these functions may be incomplete, but never more lenient than pydantic.

Why: building a pydantic validator or serialiser for the batch shapes costs tens of
milliseconds per process, more than a CLI command's own work, and validating a large
store's batches through pydantic dominated every operation on it.
"""

from __future__ import annotations

from typing import Any

from . import models as m
from .clock import U64_MAX


class Bail(Exception):
    """This input is not one the fast path vouches for: use pydantic."""


_construct = m.construct
_DELIVERY = frozenset(m.DELIVERY_POLICIES)
_SLOT = frozenset(m.SLOT_POLICIES)


def _str(value: Any) -> str:
    if type(value) is not str:
        raise Bail
    return value


def _opt_str(value: Any) -> str | None:
    if value is not None and type(value) is not str:
        raise Bail
    return value


def _u64(value: Any) -> int:
    if type(value) is not int or not 0 <= value <= U64_MAX:
        raise Bail
    return value


def _object(value: Any, allowed: frozenset[str], required: frozenset[str]) -> dict[str, Any]:
    """A JSON object with only known keys, each once, and every required key."""
    if not isinstance(value, dict) or getattr(value, "duplicates", None):
        raise Bail
    keys = value.keys()
    if not (keys <= allowed and keys >= required):
        raise Bail
    return value


def _fields(cls: type) -> frozenset[str]:
    return frozenset(cls.model_fields)  # type: ignore[attr-defined]


def _pydantic(wire_type: Any, value: Any) -> Any:
    """A subtree the fast path does not check by hand: pydantic, refusing unknown keys so
    that nothing is dropped silently here (the caller's full validation reports those)."""
    from pydantic import ValidationError

    try:
        return m.adapter(wire_type).validate_python(value, context=m.WireContext(strict=True))
    except ValidationError:
        raise Bail from None


# --------------------------------------------------------------------------- items and payloads

_TEXT = frozenset({"type", "text"})
_IMAGE = frozenset({"type", "id"})


def input_item(value: Any) -> m.TextItem | m.ImageRefItem:
    if isinstance(value, (m.TextItem, m.ImageRefItem)):
        return value
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        data = _object(value, _TEXT, _TEXT)
        return _construct(m.TextItem, {"type": "text", "text": _str(data["text"])})
    if kind == "image_ref":
        data = _object(value, _IMAGE, _IMAGE)
        return _construct(m.ImageRefItem, {"type": "image_ref", "id": _str(data["id"])})
    raise Bail


_TURN_INPUT = _fields(m.TurnInput)
_TURN_INPUT_REQUIRED = frozenset({"items"})
_OPTIONS = frozenset({"payload"})


def turn_input(value: Any) -> m.TurnInput:
    if isinstance(value, m.TurnInput):
        return value
    data = _object(value, _TURN_INPUT, _TURN_INPUT_REQUIRED)
    items = data["items"]
    if type(items) is not list:
        raise Bail
    blobs: dict[str, bytes] = {}
    raw_blobs = data.get("image_blobs", blobs)
    if raw_blobs:
        if not isinstance(raw_blobs, dict) or getattr(raw_blobs, "duplicates", None):
            raise Bail
        try:
            blobs = {_str(key): m._bytes_from_wire(blob) for key, blob in raw_blobs.items()}
        except ValueError:
            raise Bail from None
    elif not isinstance(raw_blobs, dict):
        raise Bail
    options = data.get("protocol_turn_options")
    if options is not None and not isinstance(options, m.ProtocolTurnOptions):
        options_data = _object(options, _OPTIONS, frozenset())
        try:
            payload = m._canonical_json_value(options_data.get("payload", {}))
        except ValueError:
            raise Bail from None
        options = _construct(m.ProtocolTurnOptions, {"payload": payload}, options_data.keys())
    return _construct(m.TurnInput, {
        "items": [input_item(item) for item in items],
        "image_blobs": blobs,
        "protocol_turn_options": options,
        "trace_turn_id": _opt_str(data.get("trace_turn_id")),
    }, data.keys())


_PAYLOAD_TURN = frozenset({"type", "input"})
_PAYLOAD_MODELS = (m.TurnInputPayload, m.ProcessWakePayload, m.SessionCommandPayload)


def payload(value: Any) -> Any:
    """A QueuedWorkPayload: turn inputs by hand, wakes and commands through pydantic."""
    if isinstance(value, _PAYLOAD_MODELS):
        return value
    if isinstance(value, dict) and value.get("type") == "turn_input":
        data = _object(value, _PAYLOAD_TURN, _PAYLOAD_TURN)
        return _construct(m.TurnInputPayload, {"type": "turn_input", "input": turn_input(data["input"])})
    return _pydantic(m.QueuedWorkPayload, value)


def merge_key(value: Any) -> Any:
    if type(value) is str:
        if value == "never" or value == "payload_default":
            return value
        raise Bail
    if isinstance(value, m.MergeGroup):
        return value
    if isinstance(value, dict) and len(value) == 1 and not getattr(value, "duplicates", None):
        group = value.get("group")
        if type(group) is str:
            return _construct(m.MergeGroup, {"group": group})
    raise Bail


def _choice(value: Any, choices: frozenset[str]) -> str:
    if type(value) is not str or value not in choices:
        raise Bail
    return value


# --------------------------------------------------------------------------- queue shapes

_ITEM = frozenset({"item_id", "payload"})


def item(value: Any) -> m.QueuedWorkItem:
    if isinstance(value, m.QueuedWorkItem):
        return value
    data = _object(value, _ITEM, _ITEM)
    return _construct(m.QueuedWorkItem, {"item_id": _str(data["item_id"]), "payload": payload(data["payload"])})


_BATCH = _fields(m.QueuedWorkBatch)
_BATCH_REQUIRED = _BATCH - {"source_key"}


def batch(value: Any) -> m.QueuedWorkBatch:
    if isinstance(value, m.QueuedWorkBatch):
        return value
    data = _object(value, _BATCH, _BATCH_REQUIRED)
    items = data["items"]
    if type(items) is not list:
        raise Bail
    return _construct(m.QueuedWorkBatch, {
        "batch_id": _str(data["batch_id"]),
        "session_id": _str(data["session_id"]),
        "enqueue_seq": _u64(data["enqueue_seq"]),
        "source_key": _opt_str(data.get("source_key")),
        "delivery_policy": _choice(data["delivery_policy"], _DELIVERY),
        "slot_policy": _choice(data["slot_policy"], _SLOT),
        "merge_key": merge_key(data["merge_key"]),
        "available_at_ms": _u64(data["available_at_ms"]),
        "enqueued_at_ms": _u64(data["enqueued_at_ms"]),
        "items": [item(one) for one in items],
    }, data.keys())


_DRAFT = _fields(m.QueuedWorkBatchDraft)
_DRAFT_REQUIRED = frozenset({"session_id", "delivery_policy", "slot_policy", "payloads"})


def draft(value: Any) -> m.QueuedWorkBatchDraft:
    if isinstance(value, m.QueuedWorkBatchDraft):
        return value
    data = _object(value, _DRAFT, _DRAFT_REQUIRED)
    payloads = data["payloads"]
    if type(payloads) is not list:
        raise Bail
    return _construct(m.QueuedWorkBatchDraft, {
        "session_id": _str(data["session_id"]),
        "source_key": _opt_str(data.get("source_key")),
        "delivery_policy": _choice(data["delivery_policy"], _DELIVERY),
        "slot_policy": _choice(data["slot_policy"], _SLOT),
        "merge_key": merge_key(data.get("merge_key", "never")),
        "available_at_ms": _u64(data.get("available_at_ms", 0)),
        "payloads": [payload(one) for one in payloads],
    }, data.keys())


_CLAIM = _fields(m.QueuedWorkClaim)


def claim(value: Any) -> m.QueuedWorkClaim:
    if isinstance(value, m.QueuedWorkClaim):
        return value
    data = _object(value, _CLAIM, _CLAIM)
    batches = data["batches"]
    if type(batches) is not list:
        raise Bail
    return _construct(m.QueuedWorkClaim, {
        "session_id": _str(data["session_id"]),
        "claim_id": _str(data["claim_id"]),
        "owner_id": _str(data["owner_id"]),
        "lease_token": _str(data["lease_token"]),
        "fencing_token": _u64(data["fencing_token"]),
        "claimed_at_epoch_ms": _u64(data["claimed_at_epoch_ms"]),
        "expires_at_epoch_ms": _u64(data["expires_at_epoch_ms"]),
        "batches": [batch(one) for one in batches],
    })


_COMPLETION = _fields(m.QueuedWorkCompletion)


def completion(value: Any) -> m.QueuedWorkCompletion:
    if isinstance(value, m.QueuedWorkCompletion):
        return value
    data = _object(value, _COMPLETION, _COMPLETION)
    batch_ids = data["batch_ids"]
    if type(batch_ids) is not list:
        raise Bail
    return _construct(m.QueuedWorkCompletion, {
        "session_id": _str(data["session_id"]),
        "claim_id": _str(data["claim_id"]),
        "lease_token": _str(data["lease_token"]),
        "batch_ids": [_str(one) for one in batch_ids],
    })


#: The wire types `models.validate` tries here first.
VALIDATORS: dict[Any, Any] = {
    m.QueuedWorkBatchDraft: draft,
    m.QueuedWorkBatch: batch,
    m.QueuedWorkClaim: claim,
    m.QueuedWorkCompletion: completion,
    m.QueuedWorkItem: item,
    m.TurnInput: turn_input,
}
