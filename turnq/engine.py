"""The rules of spec/semantics.md as functions over a `QueueState` and one `now`.

Each operation checks everything first and only then changes the state, so a
refused operation leaves it untouched; the store writes the state back only when
the operation succeeded and changed something (`state.changed`).
No I/O here: no files, no clock, no printing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

from . import identifiers, ids, limits
from .clock import format_time
from .errors import BatchHeld, CounterLimit, InvalidInput, LeaseLost, NotFound, SourceKeyConflict
from .models import (
    U64_MAX,
    MergeGroup,
    ProcessWakeDelivery,
    ProcessWakePayload,
    QueuedWorkBatch,
    QueuedWorkBatchDraft,
    QueuedWorkClaim,
    QueuedWorkCompletion,
    QueuedWorkItem,
    SessionCommandPayload,
    SessionCommandReceipt,
    Tombstone,
    TurnInputPayload,
    construct,
    dump,
)
from .state import Lease, QueueState, StoredBatch, StoredTombstone

DEFAULT_TTL_MS = 900_000
DEFAULT_MAX_BATCHES = 64

ReplayKind = Literal["enqueued", "replayed", "replayed_tombstone"]


# --------------------------------------------------------------------------- enqueue


@dataclass(frozen=True)
class EnqueueResult:
    """What enqueue did: the batch (new, or the stored one a source key replayed)."""

    batch: QueuedWorkBatch
    outcome: ReplayKind
    #: For a replay: the new draft's payloads differ from the stored ones.
    payloads_differ: bool = False
    #: For a replay of settled work: the tombstone that holds the source key.
    tombstone: Tombstone | None = None

    @property
    def replayed(self) -> bool:
        return self.outcome != "enqueued"

    @property
    def receipt(self) -> SessionCommandReceipt:
        """The SessionCommandReceipt of a session command's batch."""
        return receipt(self.batch)


def enqueue(state: QueueState, draft: QueuedWorkBatchDraft, now_ms: int, *, strict: bool = False,
            checked: bool = False) -> EnqueueResult:
    """Rule enqueue 1-2: replay a known source key, else store a new batch. `checked`: the
    caller has run `check_draft` on this very draft already."""
    if not checked:
        check_draft(draft)
    replay = _find_replay(state, draft, now_ms, strict=strict)
    if replay is not None:
        return replay
    state.expire_tombstones(draft.session_id, now_ms)  # a write of the session: retention applies
    seq = state.next_seq
    if seq >= U64_MAX:  # the counter would become 2^64: outside the wire's u64, so refused
        raise CounterLimit(f"the store's enqueue sequence is at its limit ({seq}, 2^64-1): no batch can be "
                           "enqueued into this store any more; move the queue to a new store "
                           "(turnq export, then turnq import)")
    batch_id = ids.batch_id(draft.session_id, draft.source_key, now_ms, seq)
    # Every value is valid already (a validated draft, turnq's ids): built without pydantic's
    # validation, whose validator for the batch shapes costs more to build than the operation.
    batch = construct(QueuedWorkBatch, {
        "batch_id": batch_id,
        "session_id": draft.session_id,
        "enqueue_seq": seq,
        "source_key": draft.source_key,
        "delivery_policy": draft.delivery_policy,
        "slot_policy": draft.slot_policy,
        "merge_key": draft.merge_key,
        "available_at_ms": draft.available_at_ms,
        "enqueued_at_ms": now_ms,
        "items": [construct(QueuedWorkItem, {"item_id": ids.item_id(batch_id, i), "payload": p})
                  for i, p in enumerate(draft.payloads)],
    })
    state.next_seq = seq + 1
    state.add(StoredBatch(batch))
    return EnqueueResult(batch, "enqueued")


def check_draft(draft: QueuedWorkBatchDraft) -> None:
    if not draft.session_id:
        raise InvalidInput("draft: the session id is empty")
    if not draft.payloads:
        raise InvalidInput("draft: a batch needs at least one payload")
    identifiers.check_model(draft, "draft")
    _check_image_sizes(draft)
    for payload in draft.payloads:
        if isinstance(payload, ProcessWakePayload) and payload.wake.target_session_id != draft.session_id:
            raise InvalidInput(
                f"draft: the process wake targets session {payload.wake.target_session_id!r}, "
                f"not {draft.session_id!r}"
            )


def _check_image_sizes(draft: QueuedWorkBatchDraft) -> None:
    """Every image, however it came (--image, a fixture, inline in --payload or --draft JSON), is
    held to the same limit: the wire's integer arrays make a store about 4 times the image."""
    limit = None
    for payload in draft.payloads:
        if isinstance(payload, TurnInputPayload):
            for image_id, blob in payload.input.image_blobs.items():
                limit = limits.max_image_bytes() if limit is None else limit
                if len(blob) > limit:
                    raise InvalidInput(f"draft: image {image_id!r} is {len(blob)} bytes, over the limit of {limit} "
                                       f"bytes (raise it with {limits.IMAGE_BYTES_ENV})")


def _find_replay(state: QueueState, draft: QueuedWorkBatchDraft, now_ms: int, *,
                 strict: bool) -> EnqueueResult | None:
    key = draft.source_key
    if key is None:
        return None  # the only path that looks at tombstones needs a source key
    for stored in state.session(draft.session_id):
        if stored.batch.source_key == key:
            return _replay(stored.batch, draft, "replayed", None, strict)
    # By key alone (an indexed lookup on the databases); one past the retention is no replay.
    tombstone = state.find_tombstone(draft.session_id, key, now_ms)
    if tombstone is not None:
        return _replay(tombstone.batch, draft, "replayed_tombstone", tombstone.summary(), strict)
    return None


def _replay(batch: QueuedWorkBatch, draft: QueuedWorkBatchDraft, outcome: ReplayKind,
            tombstone: Tombstone | None, strict: bool) -> EnqueueResult:
    stored = [_comparable(item.payload) for item in batch.items]
    differ = stored != [_comparable(p) for p in draft.payloads]
    if differ and strict:
        raise SourceKeyConflict(
            f"source key {draft.source_key!r} is already used by batch {batch.batch_id} "
            "with different payloads (refused by --strict)"
        )
    return EnqueueResult(batch, outcome, differ, tombstone)


def _comparable(payload: Any) -> Any:
    data = dump(payload)
    if isinstance(payload, ProcessWakePayload):
        # A retried wake is always made at a later clock: its creation time is no difference.
        data["wake"].pop("created_at_ms", None)
    return data


def session_command_draft(session_id: str, command: Any, idempotency_key: str) -> QueuedWorkBatchDraft:
    """The draft of reset-session / refresh-tools (spec/semantics.md, *Session commands*)."""
    if type(session_id) is not str or type(idempotency_key) is not str:
        raise InvalidInput("the session id and the idempotency key must be strings")
    if not idempotency_key.strip():
        raise InvalidInput("the idempotency key is blank")
    return construct(QueuedWorkBatchDraft, {
        "session_id": session_id,
        "source_key": ids.command_source_key(command.kind, idempotency_key),
        "delivery_policy": "after_current_turn_commit",
        "slot_policy": "exclusive",
        "merge_key": "never",
        "available_at_ms": 0,
        "payloads": [construct(SessionCommandPayload, {"type": "session_command", "command": command})],
    })


def receipt(batch: QueuedWorkBatch) -> SessionCommandReceipt:
    assert batch.source_key is not None
    return construct(SessionCommandReceipt, {"session_id": batch.session_id, "batch_id": batch.batch_id,
                                             "source_key": batch.source_key})


def wake_draft(wake: ProcessWakeDelivery, available_at_ms: int = 0) -> QueuedWorkBatchDraft:
    """The draft of a process wake (spec/semantics.md, *Process wakes*)."""
    if type(available_at_ms) is not int or not 0 <= available_at_ms <= U64_MAX:
        raise InvalidInput(f"available_at_ms {available_at_ms!r} is out of range")
    return construct(QueuedWorkBatchDraft, {
        "session_id": wake.target_session_id,
        "source_key": ids.wake_source_key(wake.process_id, wake.sequence),
        "delivery_policy": "earliest_safe_boundary",
        "slot_policy": "exclusive",
        "merge_key": "never",
        "available_at_ms": available_at_ms,
        "payloads": [construct(ProcessWakePayload, {"type": "process_wake", "wake": wake})],
    })


# --------------------------------------------------------------------------- claim


def plan_claim(state: QueueState, session_id: str, boundary: str, max_batches: int, now_ms: int) -> list[StoredBatch]:
    """Claim rules 1-5: the batches a claim would take now (nothing changes)."""
    if max_batches <= 0:
        return []
    batches = state.session(session_id)
    head_index = next((i for i, b in enumerate(batches) if b.claimable_at(now_ms)), None)
    if head_index is None:
        return []
    head = batches[head_index]
    if boundary == "active_turn_checkpoint" and head.batch.delivery_policy == "after_current_turn_commit":
        return []
    run = [head]
    if head.batch.slot_policy == "exclusive":
        return run
    for follower in batches[head_index + 1:]:
        if len(run) >= max_batches or not joins(head, follower, now_ms):
            break
        run.append(follower)
    return run


def joins(head: StoredBatch, follower: StoredBatch, now_ms: int) -> bool:
    """Rule 5: may `follower` travel in the join run that `head` starts?"""
    return (
        follower.claimable_at(now_ms)
        and follower.batch.slot_policy == "join"
        and follower.batch.delivery_policy == head.batch.delivery_policy
        and merge_keys_equal(follower.batch.merge_key, head.batch.merge_key)
    )


def merge_keys_equal(a: str | MergeGroup, b: str | MergeGroup) -> bool:
    return a == b


def next_change_ms(state: QueueState, session_id: str, now_ms: int) -> int | None:
    """The earliest time after `now_ms` at which what a claim would take can change with
    no write to the store: a delay that ends or a lease that runs out. None: only a write
    (enqueue, abandon, ...) can change it. A waiting claimer sleeps at most until then."""
    times = [t for stored in state.session(session_id)
             for t in (stored.batch.available_at_ms,
                       stored.lease.expires_at_ms if stored.lease is not None else 0)
             if t > now_ms]
    return min(times, default=None)


def claim(state: QueueState, session_id: str, owner_id: str, boundary: str, ttl_ms: int, now_ms: int, *,
          max_batches: int = DEFAULT_MAX_BATCHES, batch_ids: Sequence[str] | None = None,
          dry_run: bool = False) -> QueuedWorkClaim | None:
    """Claim the next run (or exactly `batch_ids`); None when nothing is claimable.

    With `dry_run`, the claim that would be made now is returned, tokens included,
    and nothing changes.
    """
    check_ttl(ttl_ms)
    if not owner_id:
        raise InvalidInput("the owner id is empty")
    if type(owner_id) is not str:
        raise InvalidInput(f"the owner id must be a string, got {type(owner_id).__name__}")
    identifiers.check("the owner id", owner_id)
    identifiers.check("the batch id", batch_ids)
    if batch_ids is not None:
        run = _plan_exact(state, session_id, boundary, batch_ids, now_ms)
    else:
        run = plan_claim(state, session_id, boundary, max_batches, now_ms)
    if not run:
        return None
    fencing = 1 + max(stored.fencing for stored in run)
    if fencing > U64_MAX:
        at_limit = next(stored for stored in run if stored.fencing == U64_MAX)
        raise CounterLimit(f"the fencing counter of batch {at_limit.batch_id} is at its limit ({U64_MAX}, "
                           "2^64-1): a claim of it would get fencing token 2^64, so it was refused; cancel the "
                           "batch and enqueue its work again")
    claim_id = ids.claim_id(run[0].seq, fencing)
    lease = Lease(
        claim_id=claim_id,
        owner_id=owner_id,
        lease_token=ids.lease_token(session_id, owner_id, claim_id, now_ms),
        claimed_at_ms=now_ms,
        expires_at_ms=expiry(now_ms, ttl_ms),
    )
    if not dry_run:
        for stored in run:
            stored.fencing = fencing
            stored.lease = lease
        state.changed = True
    return claim_of(session_id, lease, fencing, run)


def _plan_exact(state: QueueState, session_id: str, boundary: str, batch_ids: Sequence[str],
                now_ms: int) -> list[StoredBatch]:
    if not batch_ids:
        raise InvalidInput("an exact claim needs at least one batch id")
    wanted = set(batch_ids)
    if len(wanted) != len(batch_ids):
        raise InvalidInput("an exact claim names a batch id twice")
    run = plan_claim(state, session_id, boundary, len(batch_ids), now_ms)
    return run if {stored.batch_id for stored in run} == wanted else []


def check_ttl(ttl_ms: int) -> None:
    if type(ttl_ms) is not int or not 0 <= ttl_ms <= U64_MAX:
        raise InvalidInput(f"the lease TTL {ttl_ms!r} ms is out of range (0 to {U64_MAX})")


def expiry(now_ms: int, duration_ms: int) -> int:
    """`now + duration`, saturating at 2^64-1 as the reference does (times never overflow)."""
    return min(now_ms + duration_ms, U64_MAX)


def claim_of(session_id: str, lease: Lease, fencing: int, batches: list[StoredBatch]) -> QueuedWorkClaim:
    return construct(QueuedWorkClaim, {
        "session_id": session_id,
        "claim_id": lease.claim_id,
        "owner_id": lease.owner_id,
        "lease_token": lease.lease_token,
        "fencing_token": fencing,
        "claimed_at_epoch_ms": lease.claimed_at_ms,
        "expires_at_epoch_ms": lease.expires_at_ms,
        "batches": [stored.batch for stored in batches],
    })


# --------------------------------------------------------------------------- settle a claim


@dataclass(frozen=True)
class ClaimRef:
    """Which claim to settle: its id and token, and its batches (None: all that carry it)."""

    session_id: str
    claim_id: str
    lease_token: str
    batch_ids: tuple[str, ...] | None = None

    @classmethod
    def of(cls, value: "QueuedWorkClaim | QueuedWorkCompletion | ClaimRef") -> "ClaimRef":
        if isinstance(value, ClaimRef):
            return value
        # A QueuedWorkClaim's batch_ids are its batches' ids; a completion lists them.
        return cls(value.session_id, value.claim_id, value.lease_token, tuple(value.batch_ids))


def _carriers(state: QueueState, ref: ClaimRef) -> list[StoredBatch]:
    return [b for b in state.session(ref.session_id) if b.carries(ref.claim_id, ref.lease_token)]


def _lost(ref: ClaimRef, why: str) -> LeaseLost:
    return LeaseLost(f"claim {ref.claim_id} in session {ref.session_id!r} was lost: {why}")


def _claimed_batches(state: QueueState, ref: ClaimRef) -> list[StoredBatch]:
    """The claim's batches when every one still carries it; else the lease was lost."""
    carriers = _carriers(state, ref)
    if ref.batch_ids is None:
        if not carriers:
            raise _lost(ref, "no batch carries it any more (it expired and was claimed again, or was settled)")
        return carriers
    if not ref.batch_ids:
        raise _lost(ref, "it names no batches")
    if len(set(ref.batch_ids)) != len(ref.batch_ids):
        raise _lost(ref, "a batch id is named twice")
    by_id = {stored.batch_id: stored for stored in carriers}
    missing = [batch_id for batch_id in ref.batch_ids if batch_id not in by_id]
    if missing:
        raise _lost(ref, f"batch {missing[0]} no longer carries it")
    return [by_id[batch_id] for batch_id in ref.batch_ids]


def renew(state: QueueState, ref: ClaimRef, ttl_ms: int, now_ms: int) -> QueuedWorkClaim:
    """Extend every batch that carries the claim to `now + ttl`, or fail changing nothing.

    The whole claim, whichever batches `ref` lists: a lease renewed in part would let another
    worker take the rest while this one still works on it. The listed batches are only
    checked: if one no longer carries the claim, the lease was lost."""
    check_ttl(ttl_ms)
    carriers = _carriers(state, ref)
    if not carriers:
        raise _lost(ref, "no batch carries it any more (it expired and was claimed again, or was settled)")
    held = {stored.batch_id for stored in carriers}
    missing = [batch_id for batch_id in ref.batch_ids or () if batch_id not in held]
    if missing:
        raise _lost(ref, f"batch {missing[0]} no longer carries it")
    batches = sorted(carriers, key=lambda b: b.seq)
    old = batches[0].lease
    assert old is not None
    lease = Lease(old.claim_id, old.owner_id, old.lease_token, old.claimed_at_ms, expiry(now_ms, ttl_ms))
    for stored in batches:
        stored.lease = lease
    state.changed = True
    return claim_of(ref.session_id, lease, batches[0].fencing, batches)


def abandon(state: QueueState, ref: ClaimRef) -> list[str]:
    """Release every batch that still carries the claim, whichever `ref` lists (none, some or
    all); return their ids. None released means the lease was already lost."""
    released = _carriers(state, ref)
    for stored in released:
        stored.lease = None
    if released:
        state.changed = True
    return [stored.batch_id for stored in released]


def complete(state: QueueState, ref: ClaimRef, now_ms: int) -> QueuedWorkCompletion:
    """Remove exactly the claim's batches (leaving tombstones), or fail removing nothing."""
    batches = _claimed_batches(state, ref)
    carriers = _carriers(state, ref)
    if len(carriers) != len(batches):
        named = {stored.batch_id for stored in batches}
        extra = next(stored.batch_id for stored in carriers if stored.batch_id not in named)
        raise _lost(ref, f"the completion leaves out batch {extra}, which the claim holds")
    _settle(state, ref.session_id, batches, "completed", now_ms)
    return construct(QueuedWorkCompletion, {
        "session_id": ref.session_id,
        "claim_id": ref.claim_id,
        "lease_token": ref.lease_token,
        "batch_ids": [stored.batch_id for stored in batches],
    })


def cancel(state: QueueState, session_id: str, batch_id: str, now_ms: int) -> QueuedWorkBatch:
    stored = state.find(session_id, batch_id)
    if stored is None:
        raise NotFound(f"no batch {batch_id} in session {session_id!r}")
    if stored.held_at(now_ms):
        lease = stored.lease
        assert lease is not None
        raise BatchHeld(
            f"batch {batch_id} is held by {lease.owner_id!r} (claim {lease.claim_id}) until "
            f"{format_time(lease.expires_at_ms)}; abandon or complete the claim first"
        )
    _settle(state, session_id, [stored], "cancelled", now_ms)
    return stored.batch


def _settle(state: QueueState, session_id: str, batches: list[StoredBatch], outcome: Any, now_ms: int) -> None:
    state.remove(session_id, {stored.batch_id for stored in batches})
    state.expire_tombstones(session_id, now_ms)  # retention first, as the spec says
    for stored in batches:
        if stored.batch.source_key is not None:
            state.add_tombstone(StoredTombstone(stored.batch, outcome, now_ms))


# --------------------------------------------------------------------------- tombstones


def vacuum(state: QueueState, session_id: str | None, older_than_ms: int | None, now_ms: int) -> list[Tombstone]:
    """Drop tombstones settled at or before `now - older_than` (all, when None)."""
    cutoff = None if older_than_ms is None else now_ms - older_than_ms
    if cutoff is not None and cutoff < 0:
        return []  # nothing was settled before the epoch
    removed = state.drop_tombstones(session_id, cutoff)  # a database drops them by an indexed range
    removed.sort(key=lambda t: (t.settled_at_ms, t.seq))
    return [tombstone.summary() for tombstone in removed]


# --------------------------------------------------------------------------- reading


def list_batches(state: QueueState, session_id: str) -> list[QueuedWorkBatch]:
    return [stored.batch for stored in state.session(session_id)]


def pending(state: QueueState, session_id: str, now_ms: int) -> list[QueuedWorkBatch]:
    return [stored.batch for stored in state.session(session_id) if not stored.held_at(now_ms)]


BatchStateName = Literal["ready", "delayed", "held", "lease_expired"]


def batch_state(stored: StoredBatch, now_ms: int) -> BatchStateName:
    if stored.held_at(now_ms):
        return "held"
    if stored.batch.available_at_ms > now_ms:
        return "delayed"
    if stored.lease is not None:
        return "lease_expired"
    return "ready"


def resolve_batch_id(state: QueueState, session_id: str, text: str) -> str:
    """A batch id from a unique prefix (as people copy it from a narrow table, `…` and all).

    An exact id, or a prefix matching nothing, comes back as given, so that the
    operation itself reports it as not found.
    """
    prefix = text.rstrip("…")
    known = [stored.batch_id for stored in state.session(session_id)]
    if prefix in known or len(prefix) < len("qwb:") + 4:
        return prefix
    matches = [batch_id for batch_id in known if batch_id.startswith(prefix)]
    if len(matches) > 1:
        raise InvalidInput(f"batch id prefix {prefix!r} is ambiguous in session {session_id!r}: "
                           f"{len(matches)} batches match")
    return matches[0] if matches else prefix
