"""The Python API: a `Queue` over one store, with an injectable clock.

Every method is one atomic operation on the store (spec/semantics.md), takes and
returns the wire models, and raises `turnq.errors.TurnqError` subclasses. It never
prints and never exits; the CLI is built on it.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from typing import Any, Iterable, Sequence

from . import engine, ids, views
from .clock import Clock, FixedClock, SystemClock, parse_time
from .engine import ClaimRef, EnqueueResult
from .errors import InvalidInput
from .models import (
    BOUNDARIES,
    DELIVERY_POLICIES,
    SLOT_POLICIES,
    U64_MAX,
    ProcessWakeDelivery,
    QueuedWorkBatch,
    QueuedWorkBatchDraft,
    QueuedWorkClaim,
    QueuedWorkCompletion,
    RefreshToolSurface,
    ResetSession,
    Tombstone,
    validate,
)
from .store import Store, open_store

ClaimLike = QueuedWorkClaim | QueuedWorkCompletion | ClaimRef


class Queue:
    """A turn queue on a store.

    >>> q = Queue("turnq.json", now="2026-01-01T00:00:00Z")
    >>> batch = q.enqueue_text("root", "hello").batch
    >>> claim = q.claim("root", owner="worker-a")
    >>> q.complete(claim)
    """

    def __init__(self, store: str | Path | Store = "turnq.json", *, now: int | str | Clock | None = None,
                 lock_timeout_ms: int = 10_000) -> None:
        self.store = open_store(store, lock_timeout_ms=lock_timeout_ms)
        self.clock = _clock(now)

    # ----------------------------------------------------------------- defaults

    def default_owner(self) -> str:
        """`turnq` under a fixed clock (reproducible fixtures), else `{hostname}:{pid}`."""
        return "turnq" if self.clock.fixed else f"{socket.gethostname()}:{os.getpid()}"

    def _idempotency_key(self, kind: str, session_id: str, reason: str, now_ms: int) -> str:
        if self.clock.fixed:
            return ids.fixed_idempotency_key(kind, session_id, reason, now_ms)
        return uuid.uuid4().hex

    # ----------------------------------------------------------------- enqueue

    def enqueue(self, draft: QueuedWorkBatchDraft, *, strict: bool = False,
                delay_ms: int | None = None) -> EnqueueResult:
        """Enqueue one draft. `delay_ms` sets `available_at_ms` to the operation's now + delay."""
        if delay_ms is None:
            return self.enqueue_many([draft], strict=strict)[0]
        with self.store.transaction(draft.session_id) as state:
            now = self.clock.now_ms()
            if now + delay_ms > U64_MAX:
                raise InvalidInput(f"a delay of {delay_ms} ms is out of range")
            delayed = draft.model_copy(update={"available_at_ms": now + delay_ms})
            return engine.enqueue(state, delayed, now, strict=strict)

    def enqueue_many(self, drafts: Iterable[QueuedWorkBatchDraft], *, strict: bool = False) -> list[EnqueueResult]:
        """Enqueue several drafts in one transaction: all are stored, or none."""
        drafts = list(drafts)
        sessions = {draft.session_id for draft in drafts}
        with self.store.transaction(sessions.pop() if len(sessions) == 1 else None) as state:
            now = self.clock.now_ms()
            return [engine.enqueue(state, draft, now, strict=strict) for draft in drafts]

    def enqueue_text(self, session_id: str, *texts: str, source_key: str | None = None,
                     delivery_policy: str = "after_current_turn_commit", slot_policy: str = "join",
                     merge_key: Any = "never", available_at_ms: int = 0, strict: bool = False) -> EnqueueResult:
        """Shortcut: one turn_input payload of text items."""
        draft = make_draft(session_id, [{"type": "turn_input", "input": {
            "items": [{"type": "text", "text": text} for text in texts]}}],
            source_key=source_key, delivery_policy=delivery_policy, slot_policy=slot_policy,
            merge_key=merge_key, available_at_ms=available_at_ms)
        return self.enqueue(draft, strict=strict)

    def wake(self, session_id: str, process_id: str, sequence: int, input: str, *, wake_id: str | None = None,
             event_type: str = "process.wake", scope_id: str | None = None, dedupe_key: str | None = None,
             delay_ms: int = 0, available_at_ms: int | None = None, strict: bool = False) -> EnqueueResult:
        """Enqueue a process wake built as the CLI builds it (spec/cli.md, `turnq wake`)."""
        _check_session(session_id)
        wake_id = wake_id if wake_id is not None else f"{process_id}:{sequence}"
        with self.store.transaction(session_id) as state:
            now = self.clock.now_ms()
            wake = validate(ProcessWakeDelivery, {
                "wake_id": wake_id,
                "target_session_id": session_id,
                "target_scope_id": scope_id if scope_id is not None else f"session:{session_id}",
                "process_id": process_id,
                "sequence": sequence,
                "event_type": event_type,
                "event_invocation": {
                    "scope": {"session_id": session_id},
                    "subject": {"type": "process_event", "process_id": process_id, "sequence": sequence,
                                "event_type": event_type},
                },
                "dedupe_key": dedupe_key if dedupe_key is not None else wake_id,
                "input": input,
                "created_at_ms": now,
            }, what="wake")
            available = available_at_ms if available_at_ms is not None else (now + delay_ms if delay_ms else 0)
            return engine.enqueue(state, engine.wake_draft(wake, available), now, strict=strict)

    def enqueue_wake(self, wake: ProcessWakeDelivery, *, available_at_ms: int = 0,
                     strict: bool = False) -> EnqueueResult:
        """Enqueue a ready-made ProcessWakeDelivery for its target session."""
        return self.enqueue(engine.wake_draft(wake, available_at_ms), strict=strict)

    def reset_session(self, session_id: str, reason: str, *, idempotency_key: str | None = None,
                      strict: bool = False) -> EnqueueResult:
        """Enqueue a reset_session command; `.receipt` of the result is the SessionCommandReceipt."""
        return self._session_command(session_id, validate(ResetSession, {"reason": reason}, what="reset-session"),
                                     idempotency_key, strict)

    def refresh_tools(self, session_id: str, reason: str, *, expected_generation: int | None = None,
                      idempotency_key: str | None = None, strict: bool = False) -> EnqueueResult:
        command = validate(RefreshToolSurface, {"reason": reason, "expected_generation": expected_generation},
                           what="refresh-tools")
        return self._session_command(session_id, command, idempotency_key, strict)

    def _session_command(self, session_id: str, command: Any, key: str | None, strict: bool) -> EnqueueResult:
        _check_session(session_id)
        with self.store.transaction(session_id) as state:
            now = self.clock.now_ms()
            if key is None:
                key = self._idempotency_key(command.kind, session_id, command.reason, now)
            draft = engine.session_command_draft(session_id, command, key)
            return engine.enqueue(state, draft, now, strict=strict)

    # ----------------------------------------------------------------- claims

    def claim(self, session_id: str, *, owner: str | None = None, boundary: str = "idle",
              ttl_ms: int = engine.DEFAULT_TTL_MS, max_batches: int = engine.DEFAULT_MAX_BATCHES,
              batch_ids: Sequence[str] | None = None, dry_run: bool = False) -> QueuedWorkClaim | None:
        """Claim the next run (or exactly `batch_ids`); None when nothing is claimable now.
        `dry_run` returns the claim that would be made, and changes nothing."""
        _check_session(session_id)
        _check_choice("boundary", boundary, BOUNDARIES)
        owner = owner if owner is not None else self.default_owner()
        if max_batches < 0:
            raise InvalidInput("max batches must be 0 or more")
        if dry_run:
            state = self.store.read(session_id)
            return engine.claim(state, session_id, owner, boundary, ttl_ms, self.clock.now_ms(),
                                max_batches=max_batches, batch_ids=batch_ids, dry_run=True)
        with self.store.transaction(session_id) as state:
            return engine.claim(state, session_id, owner, boundary, ttl_ms, self.clock.now_ms(),
                                max_batches=max_batches, batch_ids=batch_ids)

    def renew(self, claim: ClaimLike, *, ttl_ms: int = engine.DEFAULT_TTL_MS) -> QueuedWorkClaim:
        ref = ClaimRef.of(claim)
        with self.store.transaction(ref.session_id) as state:
            return engine.renew(state, ref, ttl_ms, self.clock.now_ms())

    def abandon(self, claim: ClaimLike) -> list[str]:
        """Release the claim's batches that still carry it; returns their ids (maybe none)."""
        ref = ClaimRef.of(claim)
        with self.store.transaction(ref.session_id) as state:
            return engine.abandon(state, ref)

    def complete(self, claim: ClaimLike) -> QueuedWorkCompletion:
        ref = ClaimRef.of(claim)
        with self.store.transaction(ref.session_id) as state:
            return engine.complete(state, ref, self.clock.now_ms())

    def cancel(self, session_id: str, batch_id: str) -> QueuedWorkBatch:
        with self.store.transaction(session_id) as state:
            return engine.cancel(state, session_id, batch_id, self.clock.now_ms())

    def vacuum(self, session_id: str | None = None, *, older_than_ms: int | None = None) -> list[Tombstone]:
        with self.store.transaction(session_id) as state:
            return engine.vacuum(state, session_id, older_than_ms, self.clock.now_ms())

    # ----------------------------------------------------------------- reading

    def list(self, session_id: str) -> list[QueuedWorkBatch]:
        return engine.list_batches(self.store.read(session_id), session_id)

    def pending(self, session_id: str) -> list[QueuedWorkBatch]:
        return engine.pending(self.store.read(session_id), session_id, self.clock.now_ms())

    def tombstones(self, session_id: str) -> list[Tombstone]:
        return [t.summary() for t in self.store.read(session_id).session_tombstones(session_id)]

    def resolve_batch_id(self, session_id: str, text: str) -> str:
        """The full id of a batch named by a unique prefix (see engine.resolve_batch_id)."""
        return engine.resolve_batch_id(self.store.read(session_id), session_id, text)

    def batch(self, session_id: str, batch_id: str) -> views.BatchView:
        return views.batch_view(self.store.read(session_id), session_id, batch_id, self.clock.now_ms())

    def overview(self) -> views.Overview:
        return views.overview(self.store.read(), self.clock.now_ms())

    def inspect(self, session_id: str, *, pending: bool = False, tombstones: bool = False) -> views.SessionView:
        return views.session_view(self.store.read(session_id), session_id, self.clock.now_ms(), pending=pending,
                                  tombstones=tombstones)


def make_draft(session_id: str, payloads: list[Any], *, source_key: str | None = None,
               delivery_policy: str = "after_current_turn_commit", slot_policy: str = "join",
               merge_key: Any = "never", available_at_ms: int = 0) -> QueuedWorkBatchDraft:
    """Build a draft from plain values (payloads as wire dicts or models)."""
    _check_choice("delivery policy", delivery_policy, DELIVERY_POLICIES)
    _check_choice("slot policy", slot_policy, SLOT_POLICIES)
    return validate(QueuedWorkBatchDraft, {
        "session_id": session_id, "source_key": source_key, "delivery_policy": delivery_policy,
        "slot_policy": slot_policy, "merge_key": merge_key, "available_at_ms": available_at_ms,
        "payloads": payloads,
    }, what="draft")


def _check_session(session_id: str) -> None:
    if not session_id:
        raise InvalidInput("the session id is empty")


def _check_choice(what: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise InvalidInput(f"unknown {what} {value!r}: expected one of {', '.join(choices)}")


def _clock(now: int | str | Clock | None) -> Clock:
    if now is None:
        return SystemClock()
    if isinstance(now, str):
        return FixedClock(parse_time(now))
    if isinstance(now, int):
        return FixedClock(now)
    return now
