"""The Queue API end to end on a JSON store, with a fixed clock that the tests move."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys

import pytest

from turnq import (
    BatchHeld,
    ClaimRef,
    FixedClock,
    InvalidInput,
    LeaseLost,
    NotFound,
    Queue,
    QueuedWorkClaim,
    QueuedWorkCompletion,
    SourceKeyConflict,
    SystemClock,
    make_draft,
)
from turnq.clock import SystemClock as _SystemClock
from turnq.models import SessionCommandReceipt

NOW = 1767225600000
S = "root"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def text_payload(*texts: str) -> dict:
    return {"type": "turn_input", "input": {"items": [{"type": "text", "text": t} for t in texts]}}


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def q(store_path, clock) -> Queue:
    return Queue(store_path, now=clock)


def ids(claim) -> list[str]:
    return [b.batch_id for b in claim.batches]


# --------------------------------------------------------------------------- construction and clocks


def test_queue_accepts_int_str_clock_or_nothing(store_path):
    assert Queue(store_path, now=NOW).clock.now_ms() == NOW
    assert Queue(store_path, now="2026-01-01T00:00:00Z").clock.now_ms() == NOW
    assert Queue(store_path, now=str(NOW)).clock.now_ms() == NOW
    clock = FixedClock(5)
    assert Queue(store_path, now=clock).clock is clock
    assert isinstance(Queue(store_path).clock, _SystemClock)
    assert not store_path.exists()


def test_default_owner_is_turnq_under_a_fixed_clock(q, clock):
    q.enqueue_text(S, "hi")
    got = q.claim(S)
    assert got.owner_id == "turnq"
    assert got.lease_token == sha(f"{S}:turnq:{got.claim_id}:{NOW}")


def test_default_owner_is_host_and_pid_under_the_system_clock(store_path):
    q = Queue(store_path, now=SystemClock())
    assert q.default_owner() == f"{socket.gethostname()}:{os.getpid()}"
    q.enqueue_text(S, "hi")
    assert q.claim(S).owner_id == f"{socket.gethostname()}:{os.getpid()}"


def test_every_operation_reads_the_clock(q, clock):
    a = q.enqueue_text(S, "a").batch
    clock.advance(1000)
    b = q.enqueue_text(S, "b").batch
    assert (a.enqueued_at_ms, b.enqueued_at_ms) == (NOW, NOW + 1000)
    clock.set(NOW + 5000)
    got = q.claim(S, ttl_ms=10)
    assert got.claimed_at_epoch_ms == NOW + 5000 and got.expires_at_epoch_ms == NOW + 5010


# --------------------------------------------------------------------------- enqueue


def test_enqueue_text_builds_one_turn_input(q):
    result = q.enqueue_text(S, "one", "two", source_key="host:x")
    batch = result.batch
    assert result.outcome == "enqueued"
    assert [i.payload.to_wire() for i in batch.items] == [{"type": "turn_input", "input": {
        "items": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}], "image_blobs": {}}}]
    assert (batch.delivery_policy, batch.slot_policy, batch.merge_key, batch.available_at_ms) == (
        "after_current_turn_commit", "join", "never", 0)
    assert q.list(S) == [batch]


def test_enqueue_text_policies(q):
    batch = q.enqueue_text(S, "x", delivery_policy="earliest_safe_boundary", slot_policy="exclusive",
                           merge_key={"group": "g"}, available_at_ms=NOW + 1).batch
    assert batch.to_wire()["merge_key"] == {"group": "g"}
    assert (batch.delivery_policy, batch.slot_policy, batch.available_at_ms) == (
        "earliest_safe_boundary", "exclusive", NOW + 1)
    with pytest.raises(InvalidInput):
        q.enqueue_text(S, "x", slot_policy="solo")
    assert len(q.list(S)) == 1


def test_enqueue_with_a_delay_uses_the_operations_clock(q, clock):
    clock.advance(250)
    batch = q.enqueue(make_draft(S, [text_payload("x")], available_at_ms=5), delay_ms=1000).batch
    assert batch.available_at_ms == NOW + 250 + 1000
    assert batch.enqueued_at_ms == NOW + 250
    assert q.claim(S) is None
    clock.advance(1000)
    assert [b.batch_id for b in q.claim(S).batches] == [batch.batch_id]
    with pytest.raises(InvalidInput):
        q.enqueue(make_draft(S, [text_payload("y")]), delay_ms=2**64)
    assert len(q.list(S)) == 1


def test_resolve_batch_id_through_the_queue(q):
    batch = q.enqueue_text(S, "a").batch
    assert q.resolve_batch_id(S, batch.batch_id[:10] + "…") == batch.batch_id
    assert q.cancel(S, q.resolve_batch_id(S, batch.batch_id[:10])) == batch


def test_enqueue_many_is_one_transaction(q):
    results = q.enqueue_many([make_draft("a", [text_payload("1")]), make_draft("b", [text_payload("2")])])
    assert [r.batch.enqueue_seq for r in results] == [1, 2]
    assert len(q.list("a")) == 1 and len(q.list("b")) == 1


def test_enqueue_many_stores_nothing_when_one_draft_is_invalid(q, store_path):
    q.enqueue_text(S, "before")
    before = store_path.read_bytes()
    drafts = [make_draft(S, [text_payload("ok")]), make_draft(S, []), make_draft(S, [text_payload("late")])]
    with pytest.raises(InvalidInput):
        q.enqueue_many(drafts)
    assert store_path.read_bytes() == before
    assert [b.enqueue_seq for b in q.list(S)] == [1]
    assert q.enqueue_text(S, "after").batch.enqueue_seq == 2


def test_enqueue_many_stores_nothing_when_a_strict_replay_conflicts(q, store_path):
    q.enqueue_text(S, "x", source_key="k")
    before = store_path.read_bytes()
    drafts = [make_draft(S, [text_payload("new")]), make_draft(S, [text_payload("changed")], source_key="k")]
    with pytest.raises(SourceKeyConflict):
        q.enqueue_many(drafts, strict=True)
    assert store_path.read_bytes() == before


def test_enqueue_many_with_a_repeated_key_replays_within_the_call(q):
    d = make_draft(S, [text_payload("x")], source_key="k")
    first, second = q.enqueue_many([d, d])
    assert first.outcome == "enqueued" and second.outcome == "replayed"
    assert first.batch == second.batch
    assert len(q.list(S)) == 1


def test_replayed_source_key_returns_the_original_payload(q):
    first = q.enqueue_text(S, "original", source_key="host:abc")
    again = q.enqueue_text(S, "edited", source_key="host:abc")
    assert again.replayed and again.payloads_differ
    assert again.batch == first.batch
    assert again.batch.items[0].payload.input.items[0].text == "original"
    assert [b.items[0].payload.input.items[0].text for b in q.list(S)] == ["original"]
    with pytest.raises(SourceKeyConflict):
        q.enqueue_text(S, "edited", source_key="host:abc", strict=True)


# --------------------------------------------------------------------------- claim → complete


def test_claim_then_complete(q, store_path):
    a = q.enqueue_text(S, "a").batch
    b = q.enqueue_text(S, "b").batch
    got = q.claim(S, owner="w")
    assert isinstance(got, QueuedWorkClaim)
    assert ids(got) == [a.batch_id, b.batch_id]
    assert got.expires_at_epoch_ms == NOW + 900_000  # default TTL
    assert got.claim_id == "qwc:1:1" and got.fencing_token == 1
    assert q.claim(S) is None  # all held
    done = q.complete(got)
    assert isinstance(done, QueuedWorkCompletion)
    assert done.to_wire() == {"session_id": S, "claim_id": "qwc:1:1", "lease_token": got.lease_token,
                              "batch_ids": [a.batch_id, b.batch_id]}
    assert q.list(S) == []
    assert q.tombstones(S) == []  # no source keys


def test_complete_accepts_a_completion_or_a_claim_ref(q):
    q.enqueue_text(S, "a")
    got = q.claim(S)
    completion = QueuedWorkCompletion(session_id=S, claim_id=got.claim_id, lease_token=got.lease_token,
                                      batch_ids=ids(got))
    assert q.complete(completion).batch_ids == ids(got)
    q.enqueue_text(S, "b")
    got = q.claim(S)
    assert q.complete(ClaimRef(S, got.claim_id, got.lease_token)).batch_ids == ids(got)


def test_claim_max_batches_and_exact_ids(q):
    a = q.enqueue_text(S, "a").batch
    b = q.enqueue_text(S, "b").batch
    assert q.claim(S, max_batches=0) is None
    with pytest.raises(InvalidInput):
        q.claim(S, max_batches=-1)
    with pytest.raises(InvalidInput):
        q.claim(S, boundary="whenever")
    assert q.claim(S, batch_ids=[b.batch_id]) is None
    got = q.claim(S, batch_ids=[b.batch_id, a.batch_id])
    assert ids(got) == [a.batch_id, b.batch_id]


def test_dry_run_writes_nothing_and_predicts_the_claim(q, store_path, clock):
    q.enqueue_text(S, "a")
    before = store_path.read_bytes()
    dry = q.claim(S, owner="w", dry_run=True)
    assert store_path.read_bytes() == before
    assert q.inspect(S).batches[0].state == "ready"
    real = q.claim(S, owner="w")
    assert real.to_wire() == dry.to_wire()


def test_renew_and_abandon(q, clock):
    a = q.enqueue_text(S, "a").batch
    got = q.claim(S, ttl_ms=1000)
    clock.advance(5000)  # expired, nobody re-claimed
    renewed = q.renew(got, ttl_ms=2000)
    assert renewed.expires_at_epoch_ms == NOW + 7000
    assert (renewed.claim_id, renewed.lease_token, renewed.fencing_token) == (
        got.claim_id, got.lease_token, got.fencing_token)
    assert q.claim(S) is None
    assert q.abandon(got) == [a.batch_id]
    assert q.abandon(got) == []
    with pytest.raises(LeaseLost):
        q.renew(got)
    again = q.claim(S)
    assert again.fencing_token == 2 and ids(again) == [a.batch_id]


def test_renew_default_ttl(q, clock):
    q.enqueue_text(S, "a")
    got = q.claim(S, ttl_ms=1)
    clock.advance(10)
    assert q.renew(got).expires_at_epoch_ms == NOW + 10 + 900_000


def test_cancel(q):
    a = q.enqueue_text(S, "a", source_key="host:a").batch
    b = q.enqueue_text(S, "b").batch
    assert q.cancel(S, b.batch_id) == b
    with pytest.raises(NotFound):
        q.cancel(S, b.batch_id)
    assert q.cancel(S, a.batch_id) == a
    assert [t.to_wire() for t in q.tombstones(S)] == [{
        "session_id": S, "source_key": "host:a", "batch_id": a.batch_id, "outcome": "cancelled",
        "settled_at_ms": NOW}]
    with pytest.raises(NotFound):
        q.cancel(S, a.batch_id)


def test_vacuum(q, clock):
    a = q.enqueue_text("s1", "a", source_key="k").batch
    b = q.enqueue_text("s2", "b", source_key="k").batch
    q.cancel("s1", a.batch_id)
    clock.advance(60_000)
    q.cancel("s2", b.batch_id)
    assert q.vacuum(older_than_ms=120_000) == []
    removed = q.vacuum(older_than_ms=60_000)
    assert [t.batch_id for t in removed] == [a.batch_id]
    assert q.vacuum("s1") == []
    assert [t.batch_id for t in q.vacuum("s2")] == [b.batch_id]
    assert q.tombstones("s1") == q.tombstones("s2") == []


def test_pending_leaves_out_held_batches(q, clock):
    a = q.enqueue_text(S, "a", slot_policy="exclusive").batch
    b = q.enqueue_text(S, "b", available_at_ms=NOW + 100).batch
    q.claim(S, ttl_ms=1000)
    assert q.pending(S) == [b]
    assert q.list(S) == [a, b]
    clock.advance(1000)
    assert q.pending(S) == [a, b]


# --------------------------------------------------------------------------- wakes and session commands


def test_wake_builds_the_delivery_as_the_cli_does(q, clock):
    result = q.wake(S, "proc-1", 7, "tests passed")
    batch = result.batch
    assert batch.source_key == "process:proc-1:event:7:wake"
    assert (batch.delivery_policy, batch.slot_policy, batch.merge_key, batch.available_at_ms) == (
        "earliest_safe_boundary", "exclusive", "never", 0)
    assert batch.items[0].payload.wake.to_wire() == {
        "wake_id": "proc-1:7",
        "target_session_id": S,
        "target_scope_id": f"session:{S}",
        "process_id": "proc-1",
        "sequence": 7,
        "event_type": "process.wake",
        "event_invocation": {"scope": {"session_id": S}, "subject": {
            "type": "process_event", "process_id": "proc-1", "sequence": 7, "event_type": "process.wake"}},
        "dedupe_key": "proc-1:7",
        "input": "tests passed",
        "created_at_ms": NOW,
    }


def test_wake_options_and_delay(q, clock):
    batch = q.wake(S, "p", 1, "x", wake_id="w", event_type="process.exit", scope_id="session:other",
                   dedupe_key="dd", delay_ms=500).batch
    wake = batch.items[0].payload.wake
    assert (wake.wake_id, wake.event_type, wake.target_scope_id, wake.dedupe_key) == (
        "w", "process.exit", "session:other", "dd")
    assert wake.event_invocation.subject.event_type == "process.exit"
    assert batch.available_at_ms == NOW + 500
    at = q.wake(S, "p", 2, "x", available_at_ms=NOW + 9).batch
    assert at.available_at_ms == NOW + 9


def test_wake_retried_later_is_one_batch(q, clock):
    first = q.wake(S, "p", 1, "x")
    clock.advance(30_000)
    again = q.wake(S, "p", 1, "x", strict=True)
    assert again.replayed and not again.payloads_differ
    assert again.batch == first.batch
    assert len(q.list(S)) == 1


def test_reset_session_receipt_and_fixed_key(q):
    result = q.reset_session(S, "user asked")
    key = sha(f"reset_session:{S}:user asked:{NOW}")[:16]
    receipt = result.receipt
    assert isinstance(receipt, SessionCommandReceipt)
    assert receipt.to_wire() == {"session_id": S, "batch_id": result.batch.batch_id,
                                 "source_key": f"command:reset_session:{key}"}
    # the same call at the same fixed clock is the same command
    assert q.reset_session(S, "user asked").receipt == receipt
    assert len(q.list(S)) == 1
    batch = result.batch
    assert (batch.delivery_policy, batch.slot_policy, batch.merge_key) == (
        "after_current_turn_commit", "exclusive", "never")


def test_refresh_tools_receipt_and_explicit_key(q, clock):
    result = q.refresh_tools(S, "tools changed", expected_generation=4, idempotency_key="abc")
    assert result.receipt.source_key == "command:refresh_tool_surface:abc"
    assert result.batch.items[0].payload.to_wire() == {"type": "session_command", "command": {
        "kind": "refresh_tool_surface", "reason": "tools changed", "expected_generation": 4}}
    clock.advance(1)
    assert q.refresh_tools(S, "tools changed", expected_generation=4, idempotency_key="abc").receipt == \
        result.receipt
    fixed = q.refresh_tools(S, "r")
    assert fixed.receipt.source_key == "command:refresh_tool_surface:" + sha(
        f"refresh_tool_surface:{S}:r:{NOW + 1}")[:16]
    with pytest.raises(InvalidInput):
        q.reset_session(S, "r", idempotency_key="  ")


def test_session_command_key_is_random_under_the_system_clock(store_path):
    q = Queue(store_path)
    a = q.reset_session(S, "r").receipt
    b = q.reset_session(S, "r").receipt
    assert a.source_key != b.source_key
    assert len(q.list(S)) == 2


def test_session_command_claims_alone_at_idle_only(q):
    q.reset_session(S, "r", idempotency_key="k")
    q.enqueue_text(S, "after")
    assert q.claim(S, boundary="active_turn_checkpoint") is None
    got = q.claim(S)
    assert len(got.batches) == 1
    work = q.inspect(S).materialized
    assert work["idle"] is not None  # the text batch is next


# --------------------------------------------------------------------------- views


def test_overview_to_wire(q, clock):
    q.enqueue_text("a", "ready")
    q.enqueue_text("a", "later", available_at_ms=NOW + 5000, slot_policy="exclusive")
    clock.advance(10)
    q.enqueue_text("b", "held", slot_policy="exclusive")
    q.enqueue_text("b", "expired", slot_policy="exclusive")
    q.claim("b", ttl_ms=100)
    q.claim("b", ttl_ms=0)
    c = q.enqueue_text("c", "gone", source_key="k").batch
    q.cancel("c", c.batch_id)
    assert q.overview().to_wire() == {"now_ms": NOW + 10, "sessions": [
        {"session_id": "a", "ready": 1, "delayed": 1, "held": 0, "lease_expired": 0, "tombstones": 0,
         "oldest_enqueued_at_ms": NOW},
        {"session_id": "b", "ready": 0, "delayed": 0, "held": 1, "lease_expired": 1, "tombstones": 0,
         "oldest_enqueued_at_ms": NOW + 10},
        {"session_id": "c", "ready": 0, "delayed": 0, "held": 0, "lease_expired": 0, "tombstones": 1,
         "oldest_enqueued_at_ms": None},
    ]}


def test_inspect_session_to_wire(q, clock):
    a = q.enqueue_text(S, "hello", source_key="host:m1", delivery_policy="earliest_safe_boundary").batch
    w = q.wake(S, "p1", 7, "done").batch
    held = q.enqueue_text(S, "mine").batch
    claim = q.claim(S, owner="w", batch_ids=[a.batch_id])
    assert claim is not None
    view = q.inspect(S).to_wire()
    assert list(view) == ["now_ms", "session_id", "batches", "tombstones", "next_claim", "materialized"]
    assert view["now_ms"] == NOW and view["session_id"] == S and view["tombstones"] == 0
    first = view["batches"][0]
    assert list(first) == ["batch", "state", "claim", "fencing_counter"]
    assert first == {"batch": a.to_wire(), "state": "held", "fencing_counter": 1, "claim": {
        "claim_id": claim.claim_id, "owner_id": "w", "lease_token": claim.lease_token, "fencing_token": 1,
        "claimed_at_epoch_ms": NOW, "expires_at_epoch_ms": NOW + 900_000}}
    assert [v["state"] for v in view["batches"]] == ["held", "ready", "ready"]
    assert view["batches"][1]["claim"] is None and view["batches"][1]["fencing_counter"] == 0
    assert view["next_claim"] == {"idle": [w.batch_id], "active_turn_checkpoint": [w.batch_id]}
    cause_text = "Background process wake\nProcess: p1\nEvent: process.wake #7\nWake input:\ndone"
    assert view["materialized"]["idle"]["turn_causes"][0]["text"] == cause_text
    assert view["materialized"]["idle"]["turn_input"] == {"items": [], "image_blobs": {}}
    assert view["materialized"]["idle"]["session_command"] is None
    assert view["materialized"]["active_turn_checkpoint"]["turn_causes"][0]["text"] == cause_text
    assert view["materialized"]["active_turn_checkpoint"]["messages"] == []
    assert held.batch_id not in view["next_claim"]["idle"]
    json.dumps(view)  # all plain JSON data


def test_inspect_null_materialisation_and_after_commit_head(q):
    q.enqueue_text(S, "after commit")
    view = q.inspect(S).to_wire()
    assert view["next_claim"]["active_turn_checkpoint"] == []
    assert view["materialized"]["active_turn_checkpoint"] is None
    assert view["materialized"]["idle"]["turn_input"]["items"] == [{"type": "text", "text": "after commit"}]
    empty = q.inspect("nobody").to_wire()
    assert empty["batches"] == [] and empty["materialized"] == {"idle": None, "active_turn_checkpoint": None}


def test_inspect_checkpoint_materialisation(q):
    q.enqueue_text(S, "a", "b", source_key="host:x1", delivery_policy="earliest_safe_boundary")
    cp = q.inspect(S).to_wire()["materialized"]["active_turn_checkpoint"]
    assert cp == {"messages": [{"role": "User", "content": "a\nb"}], "turn_causes": [],
                  "accepted_turn_inputs": [{"id": "x1", "message": {"role": "User", "content": "a\nb"}}]}


def test_inspect_pending_and_tombstones(q):
    a = q.enqueue_text(S, "a", slot_policy="exclusive").batch
    b = q.enqueue_text(S, "b", source_key="k").batch
    c = q.enqueue_text(S, "c", source_key="k2").batch
    q.cancel(S, c.batch_id)
    q.claim(S)
    pending = q.inspect(S, pending=True).to_wire()
    assert [v["batch"]["batch_id"] for v in pending["batches"]] == [b.batch_id]
    assert "tombstone_list" not in pending
    full = q.inspect(S, tombstones=True).to_wire()
    assert [v["batch"]["batch_id"] for v in full["batches"]] == [a.batch_id, b.batch_id]
    assert full["tombstones"] == 1
    assert full["tombstone_list"] == [{"session_id": S, "source_key": "k2", "batch_id": c.batch_id,
                                       "outcome": "cancelled", "settled_at_ms": NOW}]


def test_batch_view(q, clock):
    a = q.enqueue_text(S, "a", source_key="k").batch
    view = q.batch(S, a.batch_id).to_wire()
    assert view == {"batch": a.to_wire(), "state": "ready", "claim": None, "fencing_counter": 0}
    got = q.claim(S, ttl_ms=100)
    clock.advance(100)
    view = q.batch(S, a.batch_id).to_wire()
    assert view["state"] == "lease_expired" and view["claim"]["claim_id"] == got.claim_id
    q.complete(got)
    with pytest.raises(NotFound) as err:
        q.batch(S, a.batch_id)
    assert "tombstone" in str(err.value)
    with pytest.raises(NotFound):
        q.batch(S, "qwb:unknown")
    with pytest.raises(NotFound):
        q.batch("other", a.batch_id)


def test_inspect_never_writes(q, store_path):
    q.enqueue_text(S, "a")
    before = store_path.read_bytes()
    st = store_path.stat()
    q.inspect(S, tombstones=True)
    q.overview()
    q.batch(S, q.list(S)[0].batch_id)
    assert store_path.read_bytes() == before and store_path.stat().st_mtime_ns == st.st_mtime_ns


# --------------------------------------------------------------------------- scenarios


def test_scenario_after_commit_head_blocks_a_checkpoint_claim(q):
    q.enqueue_text(S, "wait for commit", delivery_policy="after_current_turn_commit")
    later = q.enqueue_text(S, "urgent", delivery_policy="earliest_safe_boundary").batch
    assert q.claim(S, boundary="active_turn_checkpoint") is None
    assert all(v.state == "ready" for v in q.inspect(S).batches)
    idle = q.claim(S, boundary="idle")
    assert [b.items[0].payload.input.items[0].text for b in idle.batches] == ["wait for commit"]
    assert later.batch_id not in ids(idle)
    checkpoint = q.claim(S, boundary="active_turn_checkpoint")
    assert ids(checkpoint) == [later.batch_id]


def test_scenario_a_delayed_head_is_skipped(q, clock):
    delayed = q.enqueue_text(S, "later", available_at_ms=NOW + 60_000).batch
    ready = q.enqueue_text(S, "now").batch
    got = q.claim(S)
    assert ids(got) == [ready.batch_id]
    assert q.claim(S) is None
    clock.advance(60_000)
    assert ids(q.claim(S)) == [delayed.batch_id]


def test_scenario_ttl_zero_claim_is_reclaimable_at_once(q):
    a = q.enqueue_text(S, "a").batch
    first = q.claim(S, owner="w1", ttl_ms=0)
    second = q.claim(S, owner="w2", ttl_ms=0)
    assert ids(first) == ids(second) == [a.batch_id]
    assert second.fencing_token > first.fencing_token
    assert (first.fencing_token, second.fencing_token) == (1, 2)
    assert second.claim_id == "qwc:1:2"


def test_scenario_stale_lease_cannot_complete_and_nothing_is_removed(q, clock, store_path):
    a = q.enqueue_text(S, "a", source_key="host:a").batch
    stale = q.claim(S, owner="w1", ttl_ms=1000)
    clock.advance(1000)
    fresh = q.claim(S, owner="w2")
    before = store_path.read_bytes()
    with pytest.raises(LeaseLost) as err:
        q.complete(stale)
    assert err.value.exit_status == 4
    assert store_path.read_bytes() == before
    assert q.list(S) == [a]
    assert q.tombstones(S) == []
    assert q.complete(fresh).batch_ids == [a.batch_id]


def test_scenario_cancel_refuses_a_held_batch_until_abandoned(q):
    a = q.enqueue_text(S, "a").batch
    got = q.claim(S)
    with pytest.raises(BatchHeld) as err:
        q.cancel(S, a.batch_id)
    assert err.value.exit_status == 4
    assert got.owner_id in str(err.value) and got.claim_id in str(err.value)
    assert q.list(S) == [a]
    assert q.abandon(got) == [a.batch_id]
    assert q.cancel(S, a.batch_id) == a
    assert q.list(S) == []


def test_scenario_source_key_replayed_after_completion_until_vacuum(q, clock):
    original = q.enqueue_text(S, "deliver once", source_key="host:m-1").batch
    q.complete(q.claim(S))
    clock.advance(1000)
    again = q.enqueue_text(S, "deliver once", source_key="host:m-1")
    assert again.outcome == "replayed_tombstone"
    assert again.batch == original
    assert again.tombstone.outcome == "completed" and again.tombstone.settled_at_ms == NOW
    assert q.list(S) == []
    assert q.claim(S) is None
    assert [t.batch_id for t in q.vacuum(S)] == [original.batch_id]
    fresh = q.enqueue_text(S, "deliver once", source_key="host:m-1")
    assert fresh.outcome == "enqueued"
    assert fresh.batch.batch_id != original.batch_id and fresh.batch.enqueue_seq == 2
    assert q.list(S) == [fresh.batch]


def test_sessions_are_isolated(q):
    a = q.enqueue_text("s1", "a", source_key="k").batch
    b = q.enqueue_text("s2", "b", source_key="k").batch
    got = q.claim("s1")
    assert ids(got) == [a.batch_id]
    with pytest.raises(LeaseLost):
        q.complete(ClaimRef("s2", got.claim_id, got.lease_token, (a.batch_id,)))
    with pytest.raises(NotFound):
        q.cancel("s1", b.batch_id)
    assert q.list("s2") == [b]


# --------------------------------------------------------------------------- layering


def test_core_imports_without_typer_or_rich(tmp_path):
    code = (
        "import sys\n"
        "sys.modules['typer'] = None\n"
        "sys.modules['rich'] = None\n"
        "import turnq, turnq.api, turnq.engine, turnq.store, turnq.views, turnq.materialize\n"
        "q = turnq.Queue('layer.json', now=1767225600000)\n"
        "q.enqueue_text('s', 'hi')\n"
        "assert q.claim('s') is not None\n"
        "assert 'typer' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
