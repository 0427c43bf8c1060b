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


@pytest.fixture
def backend(any_store):
    """Every backend (conftest.any_store)."""
    return any_store


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


# --------------------------------------------------------------------------- audit log contract


def ops(backend, after_id=0):
    return [(entry["op"], entry["outcome"]) for entry in backend.read_log(after_id)]


def test_audit_log_records_every_mutating_operation_with_increasing_ids(q, backend, clock):
    first = q.enqueue_text("s", "one", source_key="k1").batch
    q.enqueue_text("s", "one", source_key="k1")  # a replay
    claim = q.claim("s", owner="w1", ttl_ms=1000)
    assert q.claim("s") is None  # an empty poll is not logged
    q.renew(claim, ttl_ms=5000)
    q.complete(claim)
    other = q.enqueue_text("s", "two").batch
    q.cancel("s", other.batch_id)
    q.reset_session("s", "fresh start")
    q.vacuum("s")
    log = backend.read_log()
    assert [(e["op"], e["outcome"]) for e in log] == [
        ("enqueue", "ok"), ("replay", "replayed"), ("claim", "ok"), ("renew", "ok"), ("complete", "ok"),
        ("enqueue", "ok"), ("cancel", "ok"), ("reset_session", "ok"), ("vacuum", "ok")]
    assert [e["id"] for e in log] == sorted(e["id"] for e in log)
    assert len({e["id"] for e in log}) == len(log)
    assert log[0]["batch_ids"] == [first.batch_id] and log[0]["source_key"] == "k1"
    assert log[0]["at_ms"] == NOW and log[0]["session_id"] == "s"
    assert log[2]["owner_id"] == "w1" and log[2]["fencing_token"] == claim.fencing_token
    assert log[2]["claim_id"] == claim.claim_id
    assert log[4]["batch_ids"] == [first.batch_id] and log[4]["fencing_token"] == claim.fencing_token


def test_a_refusal_is_logged_and_changes_nothing(q, backend, clock):
    q.enqueue_text("s", "x")
    stale = q.claim("s", owner="w1", ttl_ms=0)
    fresh = q.claim("s", owner="w2")
    before = [b.batch_id for b in q.list("s")]
    with pytest.raises(LeaseLost):
        q.complete(stale)
    last = backend.read_log()[-1]
    assert (last["op"], last["outcome"], last["claim_id"]) == ("complete", "refused", stale.claim_id)
    assert "lost" in last["reason"]
    assert [b.batch_id for b in q.list("s")] == before
    assert q.complete(fresh).batch_ids == fresh.batch_ids


def test_read_log_after_id_returns_only_newer_entries(q, backend):
    q.enqueue_text("s", "a")
    q.enqueue_text("s", "b")
    first, second = backend.read_log()
    assert backend.read_log(first["id"]) == [second]
    assert backend.read_log(second["id"]) == []


def test_entries_of_a_failed_transaction_are_not_persisted(backend):
    with pytest.raises(RuntimeError), backend.transaction("s") as state:
        state.record("enqueue", NOW, "s", ["b1"])
        raise RuntimeError("boom")
    assert backend.read_log() == []


def test_entries_are_persisted_even_when_the_state_did_not_change(backend):
    with backend.transaction("s") as state:
        state.record("complete", NOW, "s", ["b1"], outcome="refused", reason="stale")
    with backend.transaction("s") as state:
        assert state.audit == []  # cleared after persisting
    (entry,) = backend.read_log()
    assert entry["outcome"] == "refused" and entry["reason"] == "stale" and entry["id"] >= 1
    assert backend.read().session_ids() == []


def test_retention_keeps_the_newest_entries_and_ids_go_on(q, backend):
    backend.log_max_entries = 3
    for n in range(40):
        q.enqueue_text("s", f"m{n}")
    log = backend.read_log()
    assert len(log) == 3
    assert [e["id"] for e in log] == [38, 39, 40]
    q.enqueue_text("s", "one more")
    assert [e["id"] for e in backend.read_log()] == [39, 40, 41]


def test_a_disabled_log_records_nothing(q, backend):
    backend.log_enabled = False
    q.enqueue_text("s", "x")
    assert q.claim("s") is not None
    assert backend.read_log() == []


def test_raw_document_of_a_healthy_store_passes_doctor(q, backend, clock):
    from turnq.doctor import check

    assert check(backend.raw_document(), NOW) == []  # nothing stored yet
    q.enqueue_text("s", "a", source_key="k1")
    q.complete(q.claim("s"))
    q.enqueue_text("s", "b")
    q.enqueue_text("t", "c")
    q.claim("s", owner="w1")
    document = backend.raw_document()
    assert [r["batch"]["enqueue_seq"] for r in document["batches"]] == [2, 3]
    assert document["next_enqueue_seq"] == 4 and len(document["tombstones"]) == 1
    assert check(document, NOW) == []
    assert q.doctor().healthy
