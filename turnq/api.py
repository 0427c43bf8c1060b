"""The Python API: a `Queue` over one store, with an injectable clock.

Every method is one atomic operation on the store (spec/semantics.md), takes and
returns the wire models, and raises `turnq.errors.TurnqError` subclasses. It never
prints and never exits; the CLI is built on it.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from . import engine, identifiers, ids
from .clock import Clock, FixedClock, SystemClock, parse_time
from .engine import ClaimRef, EnqueueResult
from .errors import CounterLimit, InvalidInput, StoreBusy, StoreUnreadable, StoreUnwritable, TurnqError
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
from .state import QueueState
from .store import Store, open_store

if TYPE_CHECKING:  # imported by the reading methods that use it (start-up time)
    from . import views
    from .store.wait import ChangeWaiter

ClaimLike = QueuedWorkClaim | QueuedWorkCompletion | ClaimRef
T = TypeVar("T")


class Queue:
    """A turn queue on a store.

    >>> q = Queue("turnq.json", now="2026-01-01T00:00:00Z")
    >>> batch = q.enqueue_text("root", "hello").batch
    >>> claim = q.claim("root", owner="worker-a")
    >>> q.complete(claim)
    """

    def __init__(self, store: str | Path | Store = "turnq.json", *, now: int | str | Clock | None = None,
                 lock_timeout_ms: int = 10_000, log_enabled: bool = True,
                 log_max_entries: int | None = None) -> None:
        """`log_enabled` / `log_max_entries`: the audit log of a store opened from a path
        (a `Store` passed in keeps its own options)."""
        log_options: dict[str, Any] = {"log_enabled": log_enabled}
        if log_max_entries is not None:
            log_options["log_max_entries"] = log_max_entries
        self.store = open_store(store, lock_timeout_ms=lock_timeout_ms, **log_options)
        self.clock = _clock(now)

    # ----------------------------------------------------------------- audit

    def _audited(self, scope: str | None, refusal: dict[str, Any],
                 action: Callable[[QueueState, int], T], *, takes_seq: bool = False) -> T:
        """Run `action(state, now)` in one transaction. The action records its own audit
        entries; if it refuses (LeaseLost, NotFound, ...), the refusal is logged — `refusal`
        gives its op and fields — the state is left as it was, and the error is raised.
        `takes_seq`: see `Store.transaction`."""
        refused: TurnqError | None = None
        # Before the store sees it: a database keys its locks by the session id.
        identifiers.check("the session id", scope)
        try:
            with self.store.transaction(scope, takes_seq=takes_seq) as state:
                now = self.clock.now_ms()
                try:
                    result = action(state, now)
                    _log_expired(state, now)
                except (InvalidInput, StoreBusy, StoreUnreadable, StoreUnwritable):
                    raise  # bad input or a failing store is not a queue event: nothing is logged
                except TurnqError as err:
                    state.changed = False  # the engine changes nothing before it refuses; be sure
                    fields = dict(refusal)
                    op, session_id = fields.pop("op"), fields.pop("session_id")
                    batch_ids = fields.pop("batch_ids", [])
                    state.record(op, now, session_id, batch_ids or [], outcome="refused", reason=err.message,
                                 **fields)
                    refused = err
        except (StoreUnwritable, CounterLimit):
            if refused is None:
                raise
            # Only the refusal's log entry failed to be written: the refusal is what the caller must hear.
        if refused is not None:
            raise refused
        return result

    def history(self, after_id: int = 0, *, session_id: str | None = None, batch_id: str | None = None,
                since_ms: int | None = None) -> tuple[list[dict[str, Any]], int]:
        """The store's audit log: (entries with id above `after_id`, oldest first, only those of
        `session_id`, naming `batch_id` (an id or a prefix), at or after `since_ms`; the last
        id read, filtered out or not — the `after_id` of the next poll)."""
        entries = self.store.read_log(after_id)
        last_id = entries[-1]["id"] if entries else after_id
        batch_prefix = None if batch_id is None else batch_id.rstrip("…")
        shown = [entry for entry in entries
                 if (session_id is None or entry.get("session_id") == session_id)
                 and (batch_prefix is None or any(str(b).startswith(batch_prefix)
                                                  for b in entry.get("batch_ids") or ()))
                 and (since_ms is None or entry.get("at_ms", 0) >= since_ms)]
        return shown, last_id

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

        checked = _all_valid([draft])

        def action(state: QueueState, now: int) -> EnqueueResult:
            if not 0 <= delay_ms <= U64_MAX:
                raise InvalidInput(f"a delay of {delay_ms} ms is out of range")
            delayed = draft.model_copy(update={"available_at_ms": engine.expiry(now, delay_ms)})
            return _enqueue_logged(state, delayed, now, strict, checked=checked)

        return self._audited(draft.session_id, _enqueue_refusal(draft), action,
                             takes_seq=checked and draft.source_key is None and 0 <= delay_ms <= U64_MAX)

    def enqueue_many(self, drafts: Iterable[QueuedWorkBatchDraft], *, strict: bool = False) -> list[EnqueueResult]:
        """Enqueue several drafts in one transaction: all are stored, or none."""
        drafts = list(drafts)
        sessions = {draft.session_id for draft in drafts}
        scope = next(iter(sessions)) if len(sessions) == 1 else None
        refusal = _enqueue_refusal(drafts[0]) if len(drafts) == 1 else {
            "op": "enqueue", "session_id": scope, "batch_ids": []}
        checked = _all_valid(drafts)
        return self._audited(scope, refusal, lambda state, now: [
            _enqueue_logged(state, draft, now, strict, checked=checked) for draft in drafts],
            takes_seq=checked and scope is not None and drafts[0].source_key is None)

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
        for what, value in (("the process id", process_id), ("the wake id", wake_id), ("the event type", event_type),
                            ("the scope id", scope_id), ("the dedupe key", dedupe_key)):
            identifiers.check(what, value)
        wake_id = wake_id if wake_id is not None else f"{process_id}:{sequence}"

        def action(state: QueueState, now: int) -> EnqueueResult:
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
            available = (available_at_ms if available_at_ms is not None
                         else engine.expiry(now, delay_ms) if delay_ms else 0)
            return _enqueue_logged(state, engine.wake_draft(wake, available), now, strict, op="wake")

        return self._audited(session_id, {"op": "wake", "session_id": session_id, "batch_ids": [],
                                          "source_key": f"wake:{wake_id}"}, action)

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
        identifiers.check("the idempotency key", key)
        identifiers.check("the reason", command.reason)

        def action(state: QueueState, now: int) -> EnqueueResult:
            idem = key if key is not None else self._idempotency_key(command.kind, session_id, command.reason, now)
            draft = engine.session_command_draft(session_id, command, idem)
            return _enqueue_logged(state, draft, now, strict, op=op)

        op = _COMMAND_OPS.get(command.kind, command.kind)
        return self._audited(session_id, {"op": op, "session_id": session_id, "batch_ids": []}, action)

    # ----------------------------------------------------------------- claims

    def claim(self, session_id: str, *, owner: str | None = None, boundary: str = "idle",
              ttl_ms: int = engine.DEFAULT_TTL_MS, max_batches: int = engine.DEFAULT_MAX_BATCHES,
              batch_ids: Sequence[str] | None = None, dry_run: bool = False, wait_ms: int = 0,
              stop: Callable[[], bool] | None = None, waiter: ChangeWaiter | None = None) -> QueuedWorkClaim | None:
        """Claim the next run (or exactly `batch_ids`); None when nothing is claimable now.
        `dry_run` returns the claim that would be made, and changes nothing.

        `wait_ms`: when nothing is claimable, wait up to that long for work (an enqueue, an
        abandon, a delay that ends, a lease that runs out) and claim it as it comes; None only
        after the wait. `stop()` true ends the wait early (checked at least every 250 ms).
        `waiter`: a `store.change_waiter(session_id)` to keep across several claims (a worker's
        loop: one PostgreSQL LISTEN connection, not one per claim); None: one per call."""
        _check_session(session_id)
        _check_choice("boundary", boundary, BOUNDARIES)
        owner = owner if owner is not None else self.default_owner()
        if max_batches < 0:
            raise InvalidInput("max batches must be 0 or more")
        if wait_ms < 0:
            raise InvalidInput("the wait must be 0 or more")
        if dry_run:
            if wait_ms:
                raise InvalidInput("a dry-run claim cannot wait")
            state = self.store.read(session_id)
            return engine.claim(state, session_id, owner, boundary, ttl_ms, self.clock.now_ms(),
                                max_batches=max_batches, batch_ids=batch_ids, dry_run=True)

        def attempt() -> tuple[QueuedWorkClaim | None, int | None]:
            return self._claim_once(session_id, owner, boundary, ttl_ms, max_batches, batch_ids)

        def peek() -> tuple[bool, int | None]:
            """Is anything claimable (read only: no write lock)? If not, the next change time."""
            state, now = self.store.read(session_id), self.clock.now_ms()
            if engine.plan_claim(state, session_id, boundary, max_batches, now):
                return True, None
            return False, engine.next_change_ms(state, session_id, now)

        if not wait_ms:
            return attempt()[0]
        from .waiting import claim_waiting

        # An exact claim's refusals are logged: it always goes through the transaction.
        return claim_waiting(self, session_id, attempt, wait_ms, stop, waiter, peek if batch_ids is None else None)

    def _claim_once(self, session_id: str, owner: str, boundary: str, ttl_ms: int, max_batches: int,
                    batch_ids: Sequence[str] | None) -> tuple[QueuedWorkClaim | None, int | None]:
        """One claim transaction: (the claim, None), or (None, when claimability may next change
        with no write: see engine.next_change_ms)."""
        hint: list[int | None] = [None]

        def action(state: QueueState, now: int) -> QueuedWorkClaim | None:
            claim = engine.claim(state, session_id, owner, boundary, ttl_ms, now, max_batches=max_batches,
                                 batch_ids=batch_ids)
            if claim is not None:  # an empty poll changes nothing and is not logged
                state.record("claim", now, session_id, claim.batch_ids, claim_id=claim.claim_id,
                             owner_id=claim.owner_id, fencing_token=claim.fencing_token, boundary=boundary,
                             expires_at_ms=claim.expires_at_epoch_ms)
            else:
                hint[0] = engine.next_change_ms(state, session_id, now)
            return claim

        made = self._audited(session_id, {"op": "claim", "session_id": session_id,
                                          "batch_ids": list(batch_ids or [])}, action)
        return made, hint[0]

    def work(self, session_id: str, handler: Callable[[Any], Any], **options: Any) -> Iterator[Any]:
        """Run `handler(job)` on each claim as it comes, keeping its lease alive, and yield a
        `turnq.worker.WorkResult` per claim (see `turnq.worker.work` for the options)."""
        from .worker import work

        return work(self, session_id, handler, **options)

    def renew(self, claim: ClaimLike, *, ttl_ms: int = engine.DEFAULT_TTL_MS) -> QueuedWorkClaim:
        ref = _checked_ref(claim)

        def action(state: QueueState, now: int) -> QueuedWorkClaim:
            renewed = engine.renew(state, ref, ttl_ms, now)
            state.record("renew", now, ref.session_id, renewed.batch_ids, claim_id=ref.claim_id,
                         owner_id=renewed.owner_id, fencing_token=renewed.fencing_token,
                         expires_at_ms=renewed.expires_at_epoch_ms)
            return renewed

        return self._audited(ref.session_id, _claim_refusal("renew", ref), action)

    def abandon(self, claim: ClaimLike) -> list[str]:
        """Release the claim's batches that still carry it; returns their ids (maybe none)."""
        ref = _checked_ref(claim)

        def action(state: QueueState, now: int) -> list[str]:
            holder = _holder(state, ref)
            released = engine.abandon(state, ref)
            state.record("abandon", now, ref.session_id, released, claim_id=ref.claim_id, **holder,
                         outcome="ok" if released else "nothing_held")
            return released

        return self._audited(ref.session_id, _claim_refusal("abandon", ref), action)

    def complete(self, claim: ClaimLike) -> QueuedWorkCompletion:
        ref = _checked_ref(claim)

        def action(state: QueueState, now: int) -> QueuedWorkCompletion:
            holder = _holder(state, ref)
            done = engine.complete(state, ref, now)
            state.record("complete", now, ref.session_id, done.batch_ids, claim_id=ref.claim_id, **holder)
            return done

        return self._audited(ref.session_id, _claim_refusal("complete", ref), action)

    def cancel(self, session_id: str, batch_id: str) -> QueuedWorkBatch:
        identifiers.check("the batch id", batch_id)

        def action(state: QueueState, now: int) -> QueuedWorkBatch:
            batch = engine.cancel(state, session_id, batch_id, now)
            state.record("cancel", now, session_id, [batch.batch_id], source_key=batch.source_key)
            return batch

        return self._audited(session_id, {"op": "cancel", "session_id": session_id, "batch_ids": [batch_id]},
                             action)

    def vacuum(self, session_id: str | None = None, *, older_than_ms: int | None = None,
               dry_run: bool = False) -> list[Tombstone]:
        """Drop tombstones (freeing their source keys); `dry_run` returns the ones it would drop
        and changes nothing."""
        if dry_run:  # the same selection, on a state that is never saved
            return engine.vacuum(self.store.read(session_id), session_id, older_than_ms, self.clock.now_ms())

        def action(state: QueueState, now: int) -> list[Tombstone]:
            removed = engine.vacuum(state, session_id, older_than_ms, now)
            by_session: dict[str, list[Tombstone]] = {}
            for tombstone in removed:
                by_session.setdefault(tombstone.session_id, []).append(tombstone)
            for sid, tombs in by_session.items():
                state.record("vacuum", now, sid, [t.batch_id for t in tombs],
                             source_keys=[t.source_key for t in tombs])
            return removed

        return self._audited(session_id, {"op": "vacuum", "session_id": session_id, "batch_ids": []}, action)

    # ----------------------------------------------------------------- reading

    def list(self, session_id: str) -> list[QueuedWorkBatch]:
        _check_session(session_id)
        return engine.list_batches(self.store.read(session_id), session_id)

    def pending(self, session_id: str) -> list[QueuedWorkBatch]:
        _check_session(session_id)
        return engine.pending(self.store.read(session_id), session_id, self.clock.now_ms())

    def tombstones(self, session_id: str) -> list[Tombstone]:
        _check_session(session_id)
        return [t.summary() for t in self.store.read(session_id).session_tombstones(session_id)]

    # ----------------------------------------------------------------- store settings

    def settings(self) -> dict[str, int | None]:
        """The store's settings (`turnq config`): `tombstone_retention_ms` (None: tombstones are
        kept until vacuum)."""
        return self.store.read_settings()

    def set_setting(self, name: str, value: int | None) -> dict[str, int | None]:
        """Change one store setting (None: back to its default); returns the settings after."""
        from .store.base import SETTINGS

        if name not in SETTINGS:
            raise InvalidInput(f"unknown setting {name!r}: expected one of {', '.join(SETTINGS)}")
        if value is not None and (type(value) is not int or not 0 <= value <= U64_MAX):
            raise InvalidInput(f"{name}: {value!r} is out of range")
        self.store.write_setting(name, value)
        return self.store.read_settings()

    def resolve_batch_id(self, session_id: str, text: str) -> str:
        """The full id of a batch named by a unique prefix (see engine.resolve_batch_id)."""
        return engine.resolve_batch_id(self.store.read(session_id), session_id, text)

    def explain(self, session_id: str, batch_id: str | None = None, *,
                max_batches: int = engine.DEFAULT_MAX_BATCHES) -> Any:
        """Why each batch of the session (or one, by id or prefix) is or is not claimable now,
        at each boundary (a `turnq.explain.Explanation`). Never writes."""
        from . import explain

        _check_session(session_id)
        if max_batches < 0:
            raise InvalidInput("max batches must be 0 or more")
        state = self.store.read(session_id)
        if batch_id is not None:
            batch_id = engine.resolve_batch_id(state, session_id, batch_id)
        return explain.explain(state, session_id, self.clock.now_ms(), batch_id=batch_id, max_batches=max_batches)

    def doctor(self, *, fix: bool = False, dry_run: bool = False, stale_claim_ms: int | None = None,
               clear_stale: bool = False) -> Any:
        """Check the store's invariants on its raw document (a `turnq.doctor.Report`). With
        `fix`, plan the safe repairs (`report.changes`) and make them (after a backup, under
        the lock, atomically); with `dry_run` as well, only plan them (see `apply_repairs`).
        Claims expired `stale_claim_ms` ago (> 0) or more are cleared only with `clear_stale`:
        until someone claims their batches, their holders can still complete them."""
        from . import doctor
        from .errors import StoreUnreadable

        stale = doctor.DEFAULT_STALE_CLAIM_MS if stale_claim_ms is None else stale_claim_ms
        if stale <= 0:  # 0 would call every expired lease stale, though its holder can still settle it
            raise InvalidInput("stale_claim_ms must be more than 0: a lease that just ran out is not stale")
        now = self.clock.now_ms()
        report = doctor.Report(self.store.location, [], dry_run=dry_run)
        try:
            document = self.store.raw_document()
        except StoreUnreadable as err:
            report.findings.append(doctor.Finding("unreadable", "error", err.message))
            return report
        except NotImplementedError as err:
            raise InvalidInput(f"doctor: {err}") from None
        report.findings = doctor.check(document, now, stale_claim_ms=stale, clear_stale=clear_stale)
        if fix:
            report.document = document
            report.repaired, report.changes = doctor.repair(document, report.findings, now, stale_claim_ms=stale)
            if not dry_run:
                self.apply_repairs(report)
        return report

    def apply_repairs(self, report: Any) -> Any:
        """Write the repairs a `doctor(fix=True, dry_run=True)` report planned (if the store
        did not change since: else StoreBusy). Keeps a backup (`report.backup`)."""
        from . import doctor

        if not report.changes or report.repaired is None:
            return report
        now = self.clock.now_ms()
        try:
            report.backup = self.store.replace_document(report.repaired, backup=True, backup_suffix=str(now),
                                                        expected=report.document)
        except NotImplementedError as err:
            raise InvalidInput(f"doctor --fix: {err}") from None
        report.fixed, report.dry_run = True, False
        report.remaining = doctor.check(report.repaired, now)
        if not any(f.severity == "error" for f in report.remaining):
            # Log the repair (a store still broken cannot be opened for it: its backup tells).
            batch_ids = sorted({f.batch_id for f in report.findings if f.fix is not None and f.batch_id})
            with self.store.transaction(None) as state:
                state.record("repair", now, None, batch_ids, changes=list(report.changes), backup=report.backup)
        return report

    def batch(self, session_id: str, batch_id: str) -> views.BatchView:
        from . import views

        _check_session(session_id)
        return views.batch_view(self.store.read(session_id), session_id, batch_id, self.clock.now_ms())

    def overview(self) -> views.Overview:
        from . import views

        return views.overview(self.store.read(), self.clock.now_ms())

    def inspect(self, session_id: str, *, pending: bool = False, tombstones: bool = False) -> views.SessionView:
        from . import views

        _check_session(session_id)
        return views.session_view(self.store.read(session_id), session_id, self.clock.now_ms(), pending=pending,
                                  tombstones=tombstones)


#: The audit log's op of each session command.
_COMMAND_OPS = {"reset_session": "reset_session", "refresh_tool_surface": "refresh_tools"}


def _all_valid(drafts: list[QueuedWorkBatchDraft]) -> bool:
    """Do all drafts pass the engine's draft rules? Checked before the store is opened, so a
    store may take an enqueue_seq ahead for a draft without a source key (`takes_seq`: nothing
    can replay it) without ever taking one for a draft the engine then refuses; when one fails,
    the engine checks and refuses it in the transaction, as it always did."""
    try:
        for draft in drafts:
            engine.check_draft(draft)
    except InvalidInput:
        return False
    return bool(drafts)


def _enqueue_logged(state: QueueState, draft: QueuedWorkBatchDraft, now: int, strict: bool, *,
                    op: str = "enqueue", checked: bool = False) -> EnqueueResult:
    """engine.enqueue, recording the entry: `enqueue` (or `wake`, `reset_session`, ...) for a
    new batch, outcome `replayed` / `replayed_tombstone` when the source key replayed one."""
    result = engine.enqueue(state, draft, now, strict=strict, checked=checked)
    state.record("replay" if result.replayed and op == "enqueue" else op, now, draft.session_id,
                 [result.batch.batch_id], source_key=draft.source_key,
                 outcome="ok" if not result.replayed else result.outcome,
                 payloads_differ=True if result.payloads_differ else None)
    return result


def _log_expired(state: QueueState, now: int) -> None:
    """Tombstones that the store's retention dropped in this write are logged as a vacuum would
    log them (with `retention_ms`), so the log still tells where every tombstone went."""
    by_session: dict[str, list[Any]] = {}
    for tomb in state.expired:
        by_session.setdefault(tomb.session_id, []).append(tomb)
    state.expired.clear()
    for sid, tombs in by_session.items():
        state.record("vacuum", now, sid, [t.batch_id for t in tombs], source_keys=[t.source_key for t in tombs],
                     retention_ms=state.tombstone_retention_ms)


def _enqueue_refusal(draft: QueuedWorkBatchDraft) -> dict[str, Any]:
    return {"op": "enqueue", "session_id": draft.session_id, "batch_ids": [], "source_key": draft.source_key}


def _claim_refusal(op: str, ref: ClaimRef) -> dict[str, Any]:
    return {"op": op, "session_id": ref.session_id, "batch_ids": list(ref.batch_ids or []),
            "claim_id": ref.claim_id}


def _holder(state: QueueState, ref: ClaimRef) -> dict[str, Any]:
    """The owner and fencing token of the claim's batches (before they are settled)."""
    for stored in state.session(ref.session_id):
        if stored.carries(ref.claim_id, ref.lease_token) and stored.lease is not None:
            return {"owner_id": stored.lease.owner_id, "fencing_token": stored.fencing}
    return {}


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
    identifiers.check("the session id", session_id)


def _checked_ref(claim: ClaimLike) -> ClaimRef:
    """The claim to settle, its identifiers checked before any store sees them."""
    ref = ClaimRef.of(claim)
    for what, value in (("the session id", ref.session_id), ("the claim id", ref.claim_id),
                        ("the lease token", ref.lease_token), ("the batch id", ref.batch_ids or ())):
        identifiers.check(what, value)
    return ref


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
