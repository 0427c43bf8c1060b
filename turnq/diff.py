"""What changed between two queue states (`turnq diff`): pure data, no I/O.

`diff_states(a, b)` compares two `QueueState`s batch by batch (by session and
batch id) and tombstone by tombstone, and returns the changes from `a` to `b`:

- `added` / `removed`: a live batch only in b / only in a (`removed` says `settled`:
  completed or cancelled, when b holds its tombstone);
- `claimed` (no claim → a claim), `released` (a claim → none), `reclaimed` (another
  claim), `renewed` (same claim, new expiry), each with the fencing counter before and after;
- `policy_changed` (delivery, slot, merge key, available at), `payload_changed` (the items),
  `changed` (any other field: sequence, enqueue time, source key);
- `tombstone_added` / `tombstone_removed` / `tombstone_changed`;
- `sequence_changed`: the store-wide next enqueue sequence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .state import Lease, QueueState, StoredBatch, StoredTombstone

POLICY_FIELDS = ("delivery_policy", "slot_policy", "merge_key", "available_at_ms")
OTHER_FIELDS = ("enqueue_seq", "enqueued_at_ms", "source_key")


@dataclass(frozen=True)
class Change:
    session_id: str
    batch_id: str
    kind: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "batch_id": self.batch_id, "change": self.kind,
                "details": self.details}

    def details_text(self) -> str:
        parts = []
        for key, value in self.details.items():
            if isinstance(value, dict) and set(value) == {"a", "b"}:
                parts.append(f"{key}: {_short(value['a'])} → {_short(value['b'])}")
            else:
                parts.append(f"{key}: {_short(value)}")
        return "; ".join(parts)


@dataclass(frozen=True)
class StateDiff:
    changes: list[Change]
    a: str = "a"
    b: str = "b"

    @property
    def equal(self) -> bool:
        return not self.changes

    def to_wire(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "equal": self.equal, "changes": [c.to_wire() for c in self.changes]}


def diff_states(a: QueueState, b: QueueState, *, a_name: str = "a", b_name: str = "b") -> StateDiff:
    """Every difference from `a` to `b` (empty when they hold the same queue)."""
    changes: list[Change] = []
    if a.next_seq != b.next_seq:
        changes.append(Change("", "", "sequence_changed", {"next_enqueue_seq": _ab(a.next_seq, b.next_seq)}))
    a_tombs = _tombstones(a)
    b_tombs = _tombstones(b)
    for session_id in sorted(set(a.session_ids()) | set(b.session_ids())):
        before = {s.batch_id: s for s in a.session(session_id)}
        after = {s.batch_id: s for s in b.session(session_id)}
        order = list(before) + [batch_id for batch_id in after if batch_id not in before]
        for batch_id in order:
            old, new = before.get(batch_id), after.get(batch_id)
            if new is None:
                assert old is not None
                details: dict[str, Any] = {"enqueue_seq": old.seq}
                tomb = b_tombs.get((session_id, batch_id))
                if tomb is not None and (session_id, batch_id) not in a_tombs:
                    details["settled"] = tomb.outcome
                changes.append(Change(session_id, batch_id, "removed", details))
            elif old is None:
                changes.append(Change(session_id, batch_id, "added", _added(new)))
            else:
                changes.extend(_batch_changes(session_id, old, new))
        for key in sorted(set(a_tombs) | set(b_tombs), key=lambda k: (k[0], k[1])):
            if key[0] != session_id:
                continue
            old_t, new_t = a_tombs.get(key), b_tombs.get(key)
            if old_t is None:
                assert new_t is not None
                changes.append(Change(session_id, key[1], "tombstone_added", _tomb_details(new_t)))
            elif new_t is None:
                changes.append(Change(session_id, key[1], "tombstone_removed", _tomb_details(old_t)))
            elif old_t != new_t:
                changes.append(Change(session_id, key[1], "tombstone_changed", {
                    name: _ab(getattr(old_t, name), getattr(new_t, name))
                    for name in ("outcome", "settled_at_ms") if getattr(old_t, name) != getattr(new_t, name)
                } or {"batch": "differs"}))
    return StateDiff(changes, a_name, b_name)


def _tombstones(state: QueueState) -> dict[tuple[str, str], StoredTombstone]:
    return {(t.batch.session_id, t.batch.batch_id): t for t in state.all_tombstones()}


def _ab(a: Any, b: Any) -> dict[str, Any]:
    return {"a": a, "b": b}


def _added(stored: StoredBatch) -> dict[str, Any]:
    details: dict[str, Any] = {"enqueue_seq": stored.seq}
    if stored.batch.source_key is not None:
        details["source_key"] = stored.batch.source_key
    if stored.lease is not None:
        details["claim_id"] = stored.lease.claim_id
        details["fencing_counter"] = stored.fencing
    return details


def _tomb_details(tomb: StoredTombstone) -> dict[str, Any]:
    return {"source_key": tomb.source_key, "outcome": tomb.outcome, "settled_at_ms": tomb.settled_at_ms}


def _lease_wire(lease: Lease | None) -> dict[str, Any] | None:
    return None if lease is None else lease.to_wire()


def _batch_changes(session_id: str, old: StoredBatch, new: StoredBatch) -> list[Change]:
    changes = []
    lease_kind = _lease_change(old.lease, new.lease)
    if lease_kind is not None or old.fencing != new.fencing:
        details: dict[str, Any] = {"fencing": _ab(old.fencing, new.fencing)}
        if old.lease is not None and new.lease is not None and old.lease.claim_id == new.lease.claim_id:
            details["expires_at_ms"] = _ab(old.lease.expires_at_ms, new.lease.expires_at_ms)
        else:
            details["claim_id"] = _ab(old.lease and old.lease.claim_id, new.lease and new.lease.claim_id)
        if new.lease is not None and (old.lease is None or old.lease.owner_id != new.lease.owner_id):
            details["owner"] = new.lease.owner_id
        changes.append(Change(session_id, new.batch_id, lease_kind or "fencing_changed", details))
    old_wire, new_wire = old.batch.to_wire(), new.batch.to_wire()
    policy = {name: _ab(old_wire[name], new_wire[name]) for name in POLICY_FIELDS if old_wire[name] != new_wire[name]}
    if policy:
        changes.append(Change(session_id, new.batch_id, "policy_changed", policy))
    if old_wire["items"] != new_wire["items"]:
        changes.append(Change(session_id, new.batch_id, "payload_changed", _payload_details(old_wire, new_wire)))
    other = {name: _ab(old_wire.get(name), new_wire.get(name)) for name in OTHER_FIELDS
             if old_wire.get(name) != new_wire.get(name)}
    if other:
        changes.append(Change(session_id, new.batch_id, "changed", other))
    return changes


def _lease_change(old: Lease | None, new: Lease | None) -> str | None:
    if old == new:
        return None
    if old is None:
        return "claimed"
    if new is None:
        return "released"
    if old.claim_id != new.claim_id or old.lease_token != new.lease_token:
        return "reclaimed"
    return "renewed"


def _payload_details(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    a_items, b_items = old["items"], new["items"]
    differing = [i for i in range(max(len(a_items), len(b_items)))
                 if i >= len(a_items) or i >= len(b_items) or a_items[i] != b_items[i]]
    return {"items": _ab(len(a_items), len(b_items)), "differing_items": differing}


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return "group:" + value["group"] if set(value) == {"group"} else str(value)
    return "-" if value is None else str(value)
