"""Why is a batch (not) claimable? The claim rules of spec/semantics.md, told batch by batch.

Pure: a `QueueState`, a session and one `now` in, an `Explanation` out. It walks the
same plan the engine makes (`engine.plan_claim`), so what it calls claimable is
exactly what a claim at that boundary would take now; for every other batch it names
the first rule that keeps it out, with the fields that rule looked at.

Reason codes (one per batch and boundary):
- `claimable`: part of the run a claim would take now (`run`); `lease_expired_at_ms` when an
  earlier claim's lease ran out (claimable again).
- `held`: a live claim holds it (`owner_id`, `claim_id`, `fencing_token`, `expires_at_ms`).
- `delayed`: not available before `available_at_ms`.
- `after_commit_at_checkpoint`: it is the head, its delivery policy is after_current_turn_commit,
  and the boundary is active_turn_checkpoint: it waits for the idle boundary.
- `behind_after_commit_head`: the same, for a batch after such a head (`head_batch_id`).
- `head_exclusive`: the head's slot policy is exclusive, so it travels alone (`head_batch_id`).
- `slot_policy`: its own slot policy is exclusive, so it cannot join a run; it may only head one.
- `delivery_policy`: its delivery policy differs from the head's (`head_delivery_policy`).
- `merge_key`: its merge key differs from the head's (`merge_key`, `head_merge_key`).
- `max_batches`: the run is already `max_batches` long.
- `run_ended`: an earlier batch ended the run (`ended_at`, `ended_because`).
- `no_claims`: max_batches is 0, so a claim takes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import engine
from .clock import format_time
from .errors import NotFound
from .models import BOUNDARIES, MergeGroup
from .state import QueueState, StoredBatch


@dataclass(frozen=True)
class Reason:
    code: str
    text: str
    fields: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {"code": self.code, **self.fields, "text": self.text}


@dataclass(frozen=True)
class BatchExplanation:
    batch_id: str
    enqueue_seq: int
    state: str
    reasons: dict[str, Reason]

    def to_wire(self) -> dict[str, Any]:
        return {"batch_id": self.batch_id, "enqueue_seq": self.enqueue_seq, "state": self.state,
                "boundaries": {b: self.reasons[b].to_wire() for b in BOUNDARIES}}


@dataclass(frozen=True)
class Explanation:
    now_ms: int
    session_id: str
    max_batches: int
    #: Per boundary: the batch ids a claim would take now (maybe none).
    runs: dict[str, list[str]]
    #: Per boundary: one sentence on what a claim would do now.
    summary: dict[str, str]
    batches: list[BatchExplanation]

    def to_wire(self) -> dict[str, Any]:
        return {"now_ms": self.now_ms, "session_id": self.session_id, "max_batches": self.max_batches,
                "boundaries": {b: {"run": self.runs[b], "text": self.summary[b]} for b in BOUNDARIES},
                "batches": [b.to_wire() for b in self.batches]}


def explain(state: QueueState, session_id: str, now_ms: int, *, batch_id: str | None = None,
            max_batches: int = engine.DEFAULT_MAX_BATCHES) -> Explanation:
    """Explain every batch of the session (or just `batch_id`) at both boundaries."""
    batches = state.session(session_id)
    if batch_id is not None and not any(b.batch_id == batch_id for b in batches):
        settled = next((t for t in state.session_tombstones(session_id) if t.batch.batch_id == batch_id), None)
        why = (f" (it was {settled.outcome} at {format_time(settled.settled_at_ms)}; only its tombstone remains)"
               if settled else "")
        raise NotFound(f"no batch {batch_id} in session {session_id!r}{why}")
    per_boundary = {b: _explain_boundary(batches, b, max_batches, now_ms) for b in BOUNDARIES}
    runs = {b: per_boundary[b][0] for b in BOUNDARIES}
    summary = {b: _summary(batches, b, runs[b], per_boundary[b][1], max_batches) for b in BOUNDARIES}
    shown = []
    for stored in batches:
        if batch_id is not None and stored.batch_id != batch_id:
            continue
        shown.append(BatchExplanation(stored.batch_id, stored.seq, engine.batch_state(stored, now_ms),
                                      {b: per_boundary[b][1][stored.batch_id] for b in BOUNDARIES}))
    return Explanation(now_ms, session_id, max_batches, runs, summary, shown)


def _explain_boundary(batches: list[StoredBatch], boundary: str, max_batches: int,
                      now_ms: int) -> tuple[list[str], dict[str, Reason]]:
    run = engine.plan_claim(QueueState(sessions={"s": batches}), "s", boundary, max_batches, now_ms)
    run_ids = [stored.batch_id for stored in run]
    head_index = next((i for i, b in enumerate(batches) if b.claimable_at(now_ms)), None)
    # A run is contiguous from the head: the batch right after it is the one that ended it.
    break_index = None if head_index is None else head_index + max(len(run_ids), 1)
    reasons: dict[str, Reason] = {}
    for index, stored in enumerate(batches):
        reason = _unavailable(stored, now_ms)
        if stored.batch_id in run_ids:
            reason = _claimable(stored, run_ids)
        elif reason is not None:
            pass  # held or delayed: skipped before the head, ends the run after it
        elif max_batches <= 0:
            reason = Reason("no_claims", "max_batches is 0: a claim takes nothing", {"max_batches": max_batches})
        else:
            assert head_index is not None and break_index is not None and index >= head_index
            head = batches[head_index]
            reason = _kept_out(stored, head, boundary, len(run_ids), max_batches)
            if reason is None or index > break_index and reason.code not in _WHOLE_RUN:
                ended = batches[break_index]
                why = reasons[ended.batch_id].code
                reason = Reason("run_ended", f"the run ended before it, at {ended.batch_id} ({why.replace('_', ' ')})",
                                {"ended_at": ended.batch_id, "ended_because": why})
        reasons[stored.batch_id] = _with_expired_lease(reason, stored, now_ms)
    return run_ids, reasons


#: Reasons that concern the whole run (the head), not the batch's place in it.
_WHOLE_RUN = ("after_commit_at_checkpoint", "behind_after_commit_head", "head_exclusive")


def _unavailable(stored: StoredBatch, now_ms: int) -> Reason | None:
    lease = stored.lease
    if lease is not None and lease.held_at(now_ms):
        return Reason("held", f"held by {lease.owner_id} (claim {lease.claim_id}, fencing token {stored.fencing}) "
                      f"until {format_time(lease.expires_at_ms)}",
                      {"owner_id": lease.owner_id, "claim_id": lease.claim_id, "fencing_token": stored.fencing,
                       "expires_at_ms": lease.expires_at_ms})
    available = stored.batch.available_at_ms
    if available > now_ms:
        return Reason("delayed", f"delayed until {format_time(available)}", {"available_at_ms": available})
    return None


def _claimable(stored: StoredBatch, run_ids: list[str]) -> Reason:
    position = run_ids.index(stored.batch_id)
    role = "the head of" if position == 0 else f"batch {position + 1} of"
    return Reason("claimable", f"claimable now as {role} the run [{', '.join(run_ids)}]",
                  {"run": list(run_ids), "position": position})


def _kept_out(stored: StoredBatch, head: StoredBatch, boundary: str, run_length: int,
              max_batches: int) -> Reason | None:
    """Why a claimable batch at or after the head is not in the run (None: it would join it)."""
    batch, head_batch = stored.batch, head.batch
    if boundary == "active_turn_checkpoint" and head_batch.delivery_policy == "after_current_turn_commit":
        if stored is head:
            return Reason("after_commit_at_checkpoint",
                          "its delivery policy after_current_turn_commit waits for the idle boundary; "
                          "a checkpoint claim takes nothing while it is the head", {})
        return Reason("behind_after_commit_head",
                      f"behind {head.batch_id}, an after_current_turn_commit head that waits for the idle "
                      "boundary (later batches do not jump it)", {"head_batch_id": head.batch_id})
    if head_batch.slot_policy == "exclusive":
        return Reason("head_exclusive", f"the head {head.batch_id} has slot policy exclusive: it is claimed alone",
                      {"head_batch_id": head.batch_id})
    if run_length >= max_batches:
        return Reason("max_batches", f"the run already has max_batches = {max_batches} batches",
                      {"max_batches": max_batches})
    if batch.slot_policy != "join":
        return Reason("slot_policy", f"its slot policy is {batch.slot_policy}: it does not join a run "
                      "(it is claimed alone when it is the head)", {"slot_policy": batch.slot_policy})
    if batch.delivery_policy != head_batch.delivery_policy:
        return Reason("delivery_policy", f"its delivery policy {batch.delivery_policy} differs from the head's "
                      f"({head_batch.delivery_policy})", {"delivery_policy": batch.delivery_policy,
                                                          "head_delivery_policy": head_batch.delivery_policy})
    if not engine.merge_keys_equal(batch.merge_key, head_batch.merge_key):
        return Reason("merge_key", f"its merge key {_merge(batch.merge_key)} differs from the head's "
                      f"({_merge(head_batch.merge_key)})", {"merge_key": _merge_wire(batch.merge_key),
                                                            "head_merge_key": _merge_wire(head_batch.merge_key)})
    return None


def _with_expired_lease(reason: Reason, stored: StoredBatch, now_ms: int) -> Reason:
    lease = stored.lease
    if lease is None or lease.held_at(now_ms):
        return reason
    note = f"its lease (claim {lease.claim_id}, owner {lease.owner_id}) expired at {format_time(lease.expires_at_ms)}"
    return Reason(reason.code, f"{note} (claimable again); {reason.text}",
                  {**reason.fields, "lease_expired_at_ms": lease.expires_at_ms, "expired_claim_id": lease.claim_id})


def _summary(batches: list[StoredBatch], boundary: str, run_ids: list[str], reasons: dict[str, Reason],
             max_batches: int) -> str:
    if run_ids:
        return f"a claim at {boundary} takes [{', '.join(run_ids)}] now"
    if not batches:
        return "the session has no batches"
    if max_batches <= 0:
        return "max_batches is 0: a claim takes nothing"
    first = next((reasons[b.batch_id] for b in batches
                  if reasons[b.batch_id].code == "after_commit_at_checkpoint"), None)
    if first is not None:
        return f"a claim at {boundary} takes nothing: the head waits for the idle boundary"
    return f"a claim at {boundary} takes nothing: every batch is held or delayed"


def nothing_to_claim(shown: Explanation, boundary: str, named: list[str] | None = None) -> str:
    """One line on why a claim at `boundary` takes nothing now (or, with `named`, why those
    batches are not exactly what it would take): empty, delayed, held, the head waiting for the
    idle boundary, or the batch that keeps a named one out (an exclusive head, ...)."""
    by_id = {b.batch_id: b for b in shown.batches}
    if named:
        run = shown.runs[boundary]
        out = next((by_id[i] for i in named if i in by_id and by_id[i].reasons[boundary].code != "claimable"), None)
        takes = f"a claim takes [{', '.join(run)}] now" if run else "a claim takes nothing now"
        if out is None:
            return f"the named batches are not the run a claim would take: {takes}"
        return f"seq {out.enqueue_seq} is not in the run ({out.reasons[boundary].text}); {takes}"
    if not shown.batches:
        return "the session is empty"
    if shown.max_batches <= 0:
        return "max_batches is 0: a claim takes nothing"
    waiting = next((b for b in shown.batches if b.reasons[boundary].code == "after_commit_at_checkpoint"), None)
    if waiting is not None:
        return (f"the head (seq {waiting.enqueue_seq}) is after_current_turn_commit and waits for the idle "
                "boundary")
    blocked = [b for b in shown.batches if b.reasons[boundary].code in ("held", "delayed")]
    if not blocked:
        return shown.summary[boundary]
    soonest = min(blocked, key=lambda b: b.reasons[boundary].fields.get(
        "expires_at_ms", b.reasons[boundary].fields.get("available_at_ms", 0)))
    if len(blocked) == 1:
        return f"seq {soonest.enqueue_seq} is {soonest.reasons[boundary].text}"
    return (f"all {len(blocked)} batches are held or delayed; the first to free up is seq {soonest.enqueue_seq}, "
            f"{soonest.reasons[boundary].text}")


def _merge(key: str | MergeGroup) -> str:
    return f"group:{key.group}" if isinstance(key, MergeGroup) else str(key)


def _merge_wire(key: str | MergeGroup) -> Any:
    return {"group": key.group} if isinstance(key, MergeGroup) else key
