"""One suite, every backend: the queue behaves the same whatever stores it.

The memory backend hands the engine only the session an operation names (as a
database backend would load only its rows), so these tests also check that no
operation needs more than its own session.
"""

from __future__ import annotations

import pytest

from turnq import BatchHeld, LeaseLost, NotFound, Queue
from turnq.clock import FixedClock
from turnq.store import JsonFileStore, MemoryStore

NOW = 1767225600000


@pytest.fixture(params=["json", "memory"])
def backend(request, tmp_path):
    return JsonFileStore(tmp_path / "turnq.json") if request.param == "json" else MemoryStore()


@pytest.fixture
def clock():
    return FixedClock(NOW)


@pytest.fixture
def q(backend, clock):
    return Queue(backend, now=clock)


def texts(claim):
    return [item.payload.input.items[0].text for batch in claim.batches for item in batch.items]


def test_two_sessions_never_see_each_other(q):
    q.enqueue_text("a", "for a", delivery_policy="earliest_safe_boundary")
    q.enqueue_text("b", "for b", delivery_policy="earliest_safe_boundary")
    assert texts(q.claim("a")) == ["for a"]
    assert q.claim("a") is None
    assert texts(q.claim("b")) == ["for b"]
    assert [s.session_id for s in q.overview().sessions] == ["a", "b"]


def test_sequence_is_store_wide_across_sessions(q):
    seqs = [q.enqueue_text(s, "x").batch.enqueue_seq for s in ("a", "b", "a", "c")]
    assert seqs == [1, 2, 3, 4]


def test_after_commit_head_blocks_a_checkpoint_claim(q):
    q.enqueue_text("s", "after commit")  # the CLI's and API's default delivery
    q.enqueue_text("s", "earliest", delivery_policy="earliest_safe_boundary")
    assert q.claim("s", boundary="active_turn_checkpoint") is None
    assert texts(q.claim("s", boundary="idle")) == ["after commit"]


def test_ttl_zero_is_reclaimable_at_once_with_a_larger_fencing_token(q):
    q.enqueue_text("s", "x")
    first = q.claim("s", ttl_ms=0)
    second = q.claim("s", ttl_ms=0)
    assert second.fencing_token == first.fencing_token + 1
    with pytest.raises(LeaseLost):
        q.complete(first)
    assert q.complete(second).batch_ids == second.batch_ids


def test_stale_token_removes_nothing_and_held_batch_cannot_be_cancelled(q, clock):
    batch = q.enqueue_text("s", "x").batch
    claim = q.claim("s", owner="w1", ttl_ms=1000)
    with pytest.raises(BatchHeld):
        q.cancel("s", batch.batch_id)
    clock.advance(2000)
    again = q.claim("s", owner="w2")
    with pytest.raises(LeaseLost):
        q.complete(claim)
    assert [b.batch_id for b in q.list("s")] == [batch.batch_id]
    assert q.abandon(again) == [batch.batch_id]
    assert q.cancel("s", batch.batch_id) == batch


def test_tombstone_replay_until_vacuum(q, clock):
    original = q.enqueue_text("s", "once", source_key="host:k").batch
    q.complete(q.claim("s"))
    replay = q.enqueue_text("s", "once again", source_key="host:k")
    assert replay.outcome == "replayed_tombstone" and replay.batch == original and replay.payloads_differ
    assert q.list("s") == []
    clock.advance("1h")
    assert [t.batch_id for t in q.vacuum("s", older_than_ms=3_600_000)] == [original.batch_id]
    fresh = q.enqueue_text("s", "once again", source_key="host:k")
    assert fresh.outcome == "enqueued" and fresh.batch.batch_id != original.batch_id
    with pytest.raises(NotFound):
        q.cancel("s", original.batch_id)


def test_renew_and_inspect_agree(q, clock):
    q.enqueue_text("s", "x", delivery_policy="earliest_safe_boundary")
    claim = q.claim("s", ttl_ms=1000)
    clock.advance(5000)  # expired but not re-claimed: still renewable
    renewed = q.renew(claim, ttl_ms=60_000)
    assert renewed.expires_at_epoch_ms == NOW + 5000 + 60_000
    view = q.inspect("s")
    assert [v.state for v in view.batches] == ["held"]
    assert view.next_claim["idle"] == []


def test_backends_give_identical_results(tmp_path):
    """The same operations on both backends give the same wire output, byte for byte."""
    outputs = []
    for store in (JsonFileStore(tmp_path / "a.json"), MemoryStore()):
        q = Queue(store, now=FixedClock(NOW))
        out = [q.enqueue_text("s", "a", source_key="host:a", merge_key={"group": "g"}).batch.to_wire_json(),
               q.enqueue_text("s", "b", merge_key={"group": "g"}).batch.to_wire_json(),
               q.wake("s", "p1", 1, "woke").batch.to_wire_json(),
               q.reset_session("t", "fresh start").receipt.to_wire_json()]
        claim = q.claim("s", owner="w")
        out += [claim.to_wire_json(), q.complete(claim).to_wire_json(), repr(q.inspect("s").to_wire()),
                repr(q.overview().to_wire())]
        outputs.append(out)
    assert outputs[0] == outputs[1]


def test_enqueue_wake_queues_a_ready_made_delivery_once(q):
    from turnq.models import ProcessWakeDelivery

    wake = ProcessWakeDelivery(wake_id="w1", target_session_id="s", target_scope_id="session:s", process_id="p",
                               sequence=4, dedupe_key="w1", input="done", created_at_ms=NOW)
    first = q.enqueue_wake(wake, available_at_ms=NOW + 10)
    assert first.outcome == "enqueued"
    assert first.batch.source_key == "process:p:event:4:wake"
    assert (first.batch.delivery_policy, first.batch.slot_policy) == ("earliest_safe_boundary", "exclusive")
    assert first.batch.available_at_ms == NOW + 10
    later = wake.model_copy(update={"created_at_ms": NOW + 5})
    again = q.enqueue_wake(later)
    assert again.outcome == "replayed" and not again.payloads_differ  # created_at_ms is no difference
