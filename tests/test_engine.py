"""Unit tests of the rule functions in turnq.engine over a bare QueueState.

One or more tests per numbered rule of spec/semantics.md. No store, no clock: every
operation gets its `now` explicitly.
"""

from __future__ import annotations

import copy
import hashlib

import pytest

from turnq import engine
from turnq.api import make_draft
from turnq.engine import ClaimRef
from turnq.errors import (
    BatchHeld,
    ExitStatus,
    InvalidInput,
    LeaseLost,
    NotFound,
    SourceKeyConflict,
)
from turnq.models import (
    ProcessWakeDelivery,
    QueuedWorkBatchDraft,
    RefreshToolSurface,
    ResetSession,
    validate,
)
from turnq.state import Lease, QueueState

NOW = 1767225600000
TTL = 60_000
S = "root"


# --------------------------------------------------------------------------- helpers


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def text_payload(*texts: str) -> dict:
    return {"type": "turn_input", "input": {"items": [{"type": "text", "text": t} for t in texts]}}


def draft(session: str = S, *texts: str, **kw) -> QueuedWorkBatchDraft:
    return make_draft(session, [text_payload(*(texts or ("hi",)))], **kw)


def put(state: QueueState, session: str = S, text: str = "hi", now: int = NOW, **kw):
    """Enqueue one text batch (join, after_current_turn_commit, merge never unless told)."""
    return engine.enqueue(state, draft(session, text, **kw), now).batch


def claim(state: QueueState, session: str = S, *, owner: str = "w", boundary: str = "idle", ttl: int = TTL,
          now: int = NOW, **kw):
    return engine.claim(state, session, owner, boundary, ttl, now, **kw)


def ids_of(claimed) -> list[str]:
    return [b.batch_id for b in claimed.batches]


def wake(session: str = S, *, process_id: str = "p1", sequence: int = 7, input: str = "done",
         created_at_ms: int = NOW, event_type: str = "process.wake") -> ProcessWakeDelivery:
    return validate(ProcessWakeDelivery, {
        "wake_id": f"{process_id}:{sequence}", "target_session_id": session, "target_scope_id": f"session:{session}",
        "process_id": process_id, "sequence": sequence, "event_type": event_type, "dedupe_key": "d",
        "input": input, "created_at_ms": created_at_ms,
    })


def snapshot(state: QueueState):
    """A comparable copy of everything the state holds."""
    return (
        state.next_seq,
        {sid: [(b.batch.to_wire(), b.fencing, b.lease) for b in bs] for sid, bs in state.sessions.items()},
        {sid: [(t.batch.to_wire(), t.outcome, t.settled_at_ms) for t in ts] for sid, ts in state.tombstones.items()},
    )


@pytest.fixture
def state() -> QueueState:
    return QueueState()


# --------------------------------------------------------------------------- enqueue rule 1: replay


def test_replay_of_live_batch_returns_stored_batch_even_when_payloads_differ(state):
    first = engine.enqueue(state, draft(S, "original", source_key="host:k"), NOW)
    assert first.outcome == "enqueued" and not first.replayed
    state.changed = False
    before = snapshot(state)

    again = engine.enqueue(state, draft(S, "different", source_key="host:k"), NOW + 5)

    assert again.outcome == "replayed" and again.replayed
    assert again.batch == first.batch
    assert again.batch.items[0].payload.input.items[0].text == "original"
    assert again.payloads_differ is True
    assert again.tombstone is None
    assert state.changed is False
    assert snapshot(state) == before
    assert engine.list_batches(state, S) == [first.batch]


def test_replay_with_same_payloads_does_not_flag_a_difference(state):
    first = engine.enqueue(state, draft(S, "same", source_key="host:k"), NOW)
    again = engine.enqueue(state, draft(S, "same", source_key="host:k"), NOW + 1)
    assert again.replayed and again.batch == first.batch
    assert again.payloads_differ is False


def test_replay_keeps_stored_policies_and_ignores_new_ones(state):
    first = engine.enqueue(state, draft(S, "x", source_key="k", delivery_policy="after_current_turn_commit",
                                        slot_policy="join", merge_key="never"), NOW)
    again = engine.enqueue(state, draft(S, "x", source_key="k", delivery_policy="earliest_safe_boundary",
                                        slot_policy="exclusive", merge_key={"group": "g"}, available_at_ms=NOW + 9),
                           NOW)
    assert again.replayed
    assert again.batch.delivery_policy == "after_current_turn_commit"
    assert again.batch.slot_policy == "join"
    assert again.batch.merge_key == "never"
    assert again.batch.available_at_ms == 0
    assert again.batch == first.batch


def test_replay_of_claimed_batch_returns_it(state):
    first = put(state, source_key="host:k")
    assert claim(state) is not None
    state.changed = False
    again = engine.enqueue(state, draft(S, "hi", source_key="host:k"), NOW + 1)
    assert again.replayed and again.batch == first
    assert state.changed is False
    assert len(engine.list_batches(state, S)) == 1


def test_strict_replay_with_different_payloads_is_a_conflict_and_changes_nothing(state):
    engine.enqueue(state, draft(S, "a", source_key="host:k"), NOW)
    state.changed = False
    before = snapshot(state)
    with pytest.raises(SourceKeyConflict) as err:
        engine.enqueue(state, draft(S, "b", source_key="host:k"), NOW, strict=True)
    assert err.value.exit_status == ExitStatus.CONFLICT == 6
    assert state.changed is False
    assert snapshot(state) == before


def test_strict_replay_with_equal_payloads_is_fine(state):
    first = engine.enqueue(state, draft(S, "a", source_key="host:k"), NOW)
    again = engine.enqueue(state, draft(S, "a", source_key="host:k"), NOW, strict=True)
    assert again.replayed and again.batch == first.batch


def test_source_keys_are_per_session(state):
    a = put(state, "s1", source_key="host:k")
    b = engine.enqueue(state, draft("s2", "hi", source_key="host:k"), NOW)
    assert b.outcome == "enqueued"
    assert b.batch.batch_id != a.batch_id
    assert b.batch.session_id == "s2"


def test_batches_without_source_key_never_replay(state):
    a = put(state)
    b = put(state)
    assert a.batch_id != b.batch_id
    assert len(engine.list_batches(state, S)) == 2


# --------------------------------------------------------------------------- enqueue rule 2: new batch


def test_enqueue_seq_starts_at_one_and_is_store_wide(state):
    assert state.next_seq == 1
    seqs = [put(state, sid).enqueue_seq for sid in ("s1", "s2", "s1", "s3")]
    assert seqs == [1, 2, 3, 4]
    assert state.next_seq == 5


def test_enqueue_seq_is_never_reused_after_complete_or_cancel(state):
    a = put(state)
    b = put(state)
    engine.cancel(state, S, b.batch_id, NOW)
    c = put(state)
    assert c.enqueue_seq == 3
    got = claim(state)
    engine.complete(state, ClaimRef.of(got), NOW)
    assert engine.list_batches(state, S) == []
    d = put(state)
    assert d.enqueue_seq == 4
    assert len({a.batch_id, b.batch_id, c.batch_id, d.batch_id}) == 4


def test_new_batch_ids_and_fields_follow_wire_md(state):
    d = make_draft(S, [text_payload("a"), text_payload("b")], source_key="host:abc",
                   delivery_policy="earliest_safe_boundary", slot_policy="join", merge_key={"group": "chat"},
                   available_at_ms=NOW + 10)
    result = engine.enqueue(state, d, NOW)
    batch = result.batch
    assert result.outcome == "enqueued" and not result.payloads_differ
    assert batch.enqueue_seq == 1
    assert batch.batch_id == "qwb:" + sha(f'{S}:Some("host:abc"):{NOW}:1')
    assert [item.item_id for item in batch.items] == [f"{batch.batch_id}:item:0", f"{batch.batch_id}:item:1"]
    assert [item.payload for item in batch.items] == list(d.payloads)
    assert batch.enqueued_at_ms == NOW
    assert batch.session_id == S
    assert batch.source_key == "host:abc"
    assert batch.delivery_policy == "earliest_safe_boundary"
    assert batch.slot_policy == "join"
    assert batch.merge_key.to_wire() == {"group": "chat"}
    assert batch.available_at_ms == NOW + 10
    stored = state.find(S, batch.batch_id)
    assert stored is not None and stored.fencing == 0 and stored.lease is None
    assert state.changed is True


def test_batch_id_without_source_key_uses_rust_none(state):
    batch = put(state, now=NOW + 3)
    assert batch.source_key is None
    assert batch.batch_id == "qwb:" + sha(f"{S}:None:{NOW + 3}:1")
    assert "source_key" not in batch.to_wire()


def test_batch_id_escapes_source_key_as_rust_debug(state):
    batch = put(state, source_key='a"b\\c\n\'')
    assert batch.batch_id == "qwb:" + sha(f'{S}:Some("a\\"b\\\\c\\n\'"):{NOW}:1')


def test_same_session_key_clock_still_gives_distinct_ids(state):
    a = put(state)
    b = put(state)
    assert a.enqueued_at_ms == b.enqueued_at_ms == NOW
    assert a.batch_id != b.batch_id


def test_enqueue_refuses_a_draft_without_payloads(state):
    d = make_draft(S, [])
    with pytest.raises(InvalidInput):
        engine.enqueue(state, d, NOW)
    assert state.changed is False and state.next_seq == 1 and state.sessions == {}


def test_enqueue_refuses_an_empty_session_id(state):
    d = make_draft("", [text_payload("x")])
    with pytest.raises(InvalidInput) as err:
        engine.enqueue(state, d, NOW)
    assert err.value.exit_status == ExitStatus.USAGE
    assert state.changed is False and state.sessions == {}


def test_enqueue_refuses_a_wake_for_another_session(state):
    d = make_draft("s1", [{"type": "process_wake", "wake": wake("s2").to_wire()}])
    with pytest.raises(InvalidInput):
        engine.enqueue(state, d, NOW)
    assert state.changed is False and state.sessions == {}


def test_enqueue_accepts_a_wake_for_its_own_session(state):
    d = make_draft("s1", [{"type": "process_wake", "wake": wake("s1").to_wire()}])
    assert engine.enqueue(state, d, NOW).outcome == "enqueued"


def test_make_draft_refuses_a_payload_that_fails_the_wire_rules():
    with pytest.raises(InvalidInput):
        make_draft(S, [{"type": "turn_input", "input": {"items": [{"type": "text"}]}}])
    with pytest.raises(InvalidInput):
        make_draft(S, [{"type": "bogus"}])
    with pytest.raises(InvalidInput):
        make_draft(S, [text_payload("x")], delivery_policy="whenever")


# --------------------------------------------------------------------------- claim rule 1


def test_claim_with_max_batches_zero_gives_nothing(state):
    put(state)
    state.changed = False
    assert claim(state, max_batches=0) is None
    assert state.changed is False
    assert state.session(S)[0].lease is None


def test_claim_of_an_empty_or_unknown_session_gives_nothing(state):
    put(state, "other")
    state.changed = False
    assert claim(state, S) is None
    assert state.changed is False


# --------------------------------------------------------------------------- claim rule 2: the head


def test_claim_looks_only_at_its_session(state):
    put(state, "other")
    mine = put(state, S)
    got = claim(state, S)
    assert ids_of(got) == [mine.batch_id]
    assert state.session("other")[0].lease is None


def test_delayed_batches_before_the_head_are_skipped(state):
    delayed = put(state, available_at_ms=NOW + 1000)
    b = put(state)
    c = put(state)
    got = claim(state)
    assert ids_of(got) == [b.batch_id, c.batch_id]
    assert state.find(S, delayed.batch_id).lease is None


def test_held_batches_before_the_head_are_skipped(state):
    a = put(state)
    first = claim(state, max_batches=1)
    assert ids_of(first) == [a.batch_id]
    b = put(state)
    second = claim(state, now=NOW + 1)
    assert ids_of(second) == [b.batch_id]


def test_no_head_when_everything_is_delayed_or_held(state):
    put(state, available_at_ms=NOW + 1000)
    put(state)
    assert claim(state) is not None
    state.changed = False
    assert claim(state, now=NOW + 1) is None
    assert state.changed is False


def test_available_at_equal_to_now_is_claimable(state):
    a = put(state, available_at_ms=NOW + 1000)
    assert claim(state, now=NOW + 999) is None
    got = claim(state, now=NOW + 1000)
    assert ids_of(got) == [a.batch_id]


# --------------------------------------------------------------------------- claim rule 3: boundaries


def test_checkpoint_claim_waits_for_an_after_commit_head(state):
    put(state, delivery_policy="after_current_turn_commit")
    put(state, delivery_policy="earliest_safe_boundary")
    state.changed = False
    assert claim(state, boundary="active_turn_checkpoint") is None
    assert state.changed is False
    assert all(b.lease is None for b in state.session(S))


def test_idle_claims_any_delivery_policy(state):
    a = put(state, delivery_policy="after_current_turn_commit")
    got = claim(state, boundary="idle")
    assert ids_of(got) == [a.batch_id]
    b = put(state, delivery_policy="earliest_safe_boundary")
    got = claim(state, boundary="idle")
    assert ids_of(got) == [b.batch_id]


def test_checkpoint_claims_an_earliest_safe_head(state):
    a = put(state, delivery_policy="earliest_safe_boundary")
    b = put(state, delivery_policy="earliest_safe_boundary")
    put(state, delivery_policy="after_current_turn_commit")
    got = claim(state, boundary="active_turn_checkpoint")
    assert ids_of(got) == [a.batch_id, b.batch_id]


def test_checkpoint_skips_a_held_after_commit_batch_to_reach_the_head(state):
    a = put(state, delivery_policy="after_current_turn_commit")
    assert ids_of(claim(state, max_batches=1)) == [a.batch_id]
    b = put(state, delivery_policy="earliest_safe_boundary")
    got = claim(state, boundary="active_turn_checkpoint", now=NOW + 1)
    assert ids_of(got) == [b.batch_id]


# --------------------------------------------------------------------------- claim rule 4: exclusive


def test_exclusive_head_is_claimed_alone(state):
    a = put(state, slot_policy="exclusive")
    put(state)
    put(state)
    got = claim(state)
    assert ids_of(got) == [a.batch_id]


def test_join_run_ends_before_an_exclusive_batch(state):
    a = put(state)
    b = put(state)
    c = put(state, slot_policy="exclusive")
    assert ids_of(claim(state)) == [a.batch_id, b.batch_id]
    assert ids_of(claim(state)) == [c.batch_id]


# --------------------------------------------------------------------------- claim rule 5: join runs


def test_plain_never_batches_join_together(state):
    batches = [put(state, merge_key="never") for _ in range(3)]
    assert ids_of(claim(state)) == [b.batch_id for b in batches]


def test_payload_default_joins_payload_default(state):
    a = put(state, merge_key="payload_default")
    b = put(state, merge_key="payload_default")
    c = put(state, merge_key="never")
    assert ids_of(claim(state)) == [a.batch_id, b.batch_id]
    assert ids_of(claim(state)) == [c.batch_id]


def test_groups_join_only_the_same_group(state):
    a = put(state, merge_key={"group": "a"})
    b = put(state, merge_key={"group": "a"})
    c = put(state, merge_key={"group": "b"})
    d = put(state, merge_key={"group": "a"})
    assert ids_of(claim(state)) == [a.batch_id, b.batch_id]
    assert ids_of(claim(state)) == [c.batch_id]
    assert ids_of(claim(state)) == [d.batch_id]


def test_merge_keys_compare_by_value():
    from turnq.models import MergeKey

    g1 = validate(MergeKey, {"group": "a"})
    g2 = validate(MergeKey, {"group": "a"})
    assert engine.merge_keys_equal(g1, g2)
    assert not engine.merge_keys_equal(g1, validate(MergeKey, {"group": "b"}))
    assert engine.merge_keys_equal("never", "never")
    assert not engine.merge_keys_equal("never", "payload_default")
    assert not engine.merge_keys_equal(g1, "never")


def test_run_ends_at_a_different_delivery_policy(state):
    a = put(state, delivery_policy="earliest_safe_boundary")
    b = put(state, delivery_policy="after_current_turn_commit")
    assert ids_of(claim(state)) == [a.batch_id]
    assert ids_of(claim(state)) == [b.batch_id]


def test_run_ends_at_a_delayed_batch_and_does_not_step_over_it(state):
    a = put(state)
    put(state, available_at_ms=NOW + 1000)
    put(state)
    got = claim(state)
    assert ids_of(got) == [a.batch_id]


def test_run_ends_at_a_held_batch_and_does_not_step_over_it(state):
    put(state)
    b = put(state)
    put(state)
    # Hold b alone: claim a+b, then take a's claim away (abandon always releases a whole claim).
    first = claim(state, max_batches=2)
    state.find(S, first.batches[0].batch_id).lease = None
    assert state.find(S, b.batch_id).held_at(NOW)
    got = claim(state, now=NOW + 1)
    assert len(got.batches) == 1
    assert got.batches[0].batch_id == first.batches[0].batch_id


def test_max_batches_caps_the_run(state):
    batches = [put(state) for _ in range(5)]
    assert ids_of(claim(state, max_batches=2)) == [b.batch_id for b in batches[:2]]
    assert ids_of(claim(state, max_batches=1)) == [batches[2].batch_id]
    assert ids_of(claim(state, max_batches=64)) == [b.batch_id for b in batches[3:]]


def test_plan_claim_changes_nothing(state):
    a = put(state)
    state.changed = False
    run = engine.plan_claim(state, S, "idle", 64, NOW)
    assert [s.batch_id for s in run] == [a.batch_id]
    assert state.changed is False and run[0].lease is None


# --------------------------------------------------------------------------- claim rule 6: fencing


def test_first_claim_has_fencing_token_one_and_sets_every_counter(state):
    a = put(state)
    b = put(state)
    got = claim(state)
    assert got.fencing_token == 1
    assert state.find(S, a.batch_id).fencing == 1
    assert state.find(S, b.batch_id).fencing == 1


def test_fencing_is_one_plus_the_largest_counter_over_taken_batches(state):
    x = put(state)
    y = put(state)
    # claim X alone (1), abandon
    c1 = claim(state, max_batches=1)
    assert ids_of(c1) == [x.batch_id] and c1.fencing_token == 1
    assert engine.abandon(state, ClaimRef.of(c1)) == [x.batch_id]
    # claim X+Y (2), abandon
    c2 = claim(state, max_batches=2)
    assert ids_of(c2) == [x.batch_id, y.batch_id] and c2.fencing_token == 2
    engine.abandon(state, ClaimRef.of(c2))
    # claim X alone (3)
    c3 = claim(state, max_batches=1)
    assert ids_of(c3) == [x.batch_id] and c3.fencing_token == 3
    # Y alone must get more than any earlier claim of Y (2): turnq gives 1 + 2 = 3.
    c4 = claim(state, max_batches=1)
    assert ids_of(c4) == [y.batch_id]
    assert c4.fencing_token == 3 > c2.fencing_token
    assert state.find(S, y.batch_id).fencing == 3
    assert c4.claim_id == f"qwc:{y.enqueue_seq}:3" != c3.claim_id


def test_join_claim_takes_the_largest_counter_even_when_the_head_is_smaller(state):
    x = put(state)
    y = put(state)
    # Drive Y's counter above X's: X (1); X+Y (2); hold X (3) while Y is claimed alone twice (3, 4).
    c = claim(state, max_batches=1)            # X: 1
    engine.abandon(state, ClaimRef.of(c))
    c = claim(state, max_batches=2)            # X, Y: 2
    engine.abandon(state, ClaimRef.of(c))
    hold_x = claim(state, max_batches=1)       # X: 3
    cy = claim(state, max_batches=1)           # Y: 3
    engine.abandon(state, ClaimRef.of(cy))
    cy = claim(state, max_batches=1)           # Y: 4
    engine.abandon(state, ClaimRef.of(cy))
    engine.abandon(state, ClaimRef.of(hold_x))
    assert state.find(S, x.batch_id).fencing == 3
    assert state.find(S, y.batch_id).fencing == 4
    both = claim(state, max_batches=2)
    assert ids_of(both) == [x.batch_id, y.batch_id]
    assert both.fencing_token == 5
    assert both.claim_id == f"qwc:{x.enqueue_seq}:5"


# --------------------------------------------------------------------------- claim rule 7: the claim


def test_claim_fields_and_formats(state):
    a = put(state)
    b = put(state)
    got = claim(state, owner="worker-a", ttl=5000, now=NOW + 7)
    assert got.session_id == S
    assert got.owner_id == "worker-a"
    assert got.claim_id == f"qwc:{a.enqueue_seq}:1"
    assert got.lease_token == sha(f"{S}:worker-a:{got.claim_id}:{NOW + 7}")
    assert got.claimed_at_epoch_ms == NOW + 7
    assert got.expires_at_epoch_ms == NOW + 7 + 5000
    assert got.batches == [a, b]
    assert state.changed is True
    for stored in state.session(S):
        lease = stored.lease
        assert lease.claim_id == got.claim_id and lease.owner_id == "worker-a"
        assert lease.lease_token == got.lease_token
        assert (lease.claimed_at_ms, lease.expires_at_ms) == (NOW + 7, NOW + 7 + 5000)


def test_default_ttl_is_fifteen_minutes():
    assert engine.DEFAULT_TTL_MS == 900_000
    assert engine.DEFAULT_MAX_BATCHES == 64


def test_ttl_zero_is_claimable_again_at_once_with_a_larger_fencing_token(state):
    a = put(state)
    first = claim(state, ttl=0)
    assert first.expires_at_epoch_ms == NOW
    stored = state.find(S, a.batch_id)
    assert not stored.held_at(NOW)
    assert engine.batch_state(stored, NOW) == "lease_expired"
    second = claim(state, ttl=0, owner="other")
    assert ids_of(second) == [a.batch_id]
    assert second.fencing_token == 2 > first.fencing_token
    assert second.lease_token != first.lease_token


def test_claim_refuses_a_negative_ttl_and_an_empty_owner(state):
    put(state)
    state.changed = False
    with pytest.raises(InvalidInput):
        claim(state, ttl=-1)
    with pytest.raises(InvalidInput):
        claim(state, owner="")
    assert state.changed is False
    assert state.session(S)[0].lease is None


def test_expired_lease_batch_can_be_claimed_by_another_owner(state):
    a = put(state)
    claim(state, ttl=1000)
    assert claim(state, now=NOW + 999) is None
    again = claim(state, owner="w2", now=NOW + 1000)
    assert ids_of(again) == [a.batch_id]
    assert again.owner_id == "w2" and again.fencing_token == 2


# --------------------------------------------------------------------------- exact claim


def test_exact_claim_takes_the_named_set_in_any_order(state):
    a = put(state)
    b = put(state)
    put(state)
    got = claim(state, batch_ids=[b.batch_id, a.batch_id])
    assert ids_of(got) == [a.batch_id, b.batch_id]
    assert got.claim_id == f"qwc:{a.enqueue_seq}:1"


def test_exact_claim_equals_what_a_normal_claim_would_take(state):
    for _ in range(3):
        put(state)
    put(state, slot_policy="exclusive")
    normal = claim(copy.deepcopy(state), max_batches=3)
    exact = claim(state, batch_ids=[b.batch_id for b in reversed(normal.batches)])
    assert exact.to_wire() == normal.to_wire()


def test_exact_claim_cannot_skip_earlier_work(state):
    put(state)
    b = put(state)
    c = put(state)
    state.changed = False
    assert claim(state, batch_ids=[b.batch_id]) is None
    assert claim(state, batch_ids=[b.batch_id, c.batch_id]) is None
    assert state.changed is False
    assert all(s.lease is None for s in state.session(S))


def test_exact_claim_of_a_prefix_of_the_run(state):
    a = put(state)
    b = put(state)
    put(state, merge_key="payload_default")
    # max_batches = len(ids) = 1: a normal claim of one batch takes a.
    got = claim(state, batch_ids=[a.batch_id])
    assert ids_of(got) == [a.batch_id]
    # the next one is b alone (the payload_default batch does not join it)
    assert claim(state, batch_ids=[b.batch_id]) is not None


def test_exact_claim_ignores_max_batches(state):
    a = put(state)
    b = put(state)
    got = claim(state, batch_ids=[a.batch_id, b.batch_id], max_batches=1)
    assert ids_of(got) == [a.batch_id, b.batch_id]


def test_exact_claim_of_a_duplicate_id_is_invalid(state):
    a = put(state)
    with pytest.raises(InvalidInput):
        claim(state, batch_ids=[a.batch_id, a.batch_id])
    assert state.find(S, a.batch_id).lease is None


def test_exact_claim_of_an_unknown_id_gives_nothing(state):
    put(state)
    state.changed = False
    assert claim(state, batch_ids=["qwb:nope"]) is None
    assert state.changed is False


def test_exact_claim_respects_the_checkpoint_boundary(state):
    a = put(state, delivery_policy="after_current_turn_commit")
    assert claim(state, boundary="active_turn_checkpoint", batch_ids=[a.batch_id]) is None
    assert ids_of(claim(state, boundary="idle", batch_ids=[a.batch_id])) == [a.batch_id]


# --------------------------------------------------------------------------- dry run


def test_dry_run_changes_nothing_and_matches_the_real_claim(state):
    put(state)
    put(state)
    state.changed = False
    before = snapshot(state)
    dry = claim(state, owner="w", dry_run=True)
    assert dry is not None and len(dry.batches) == 2
    assert state.changed is False
    assert snapshot(state) == before
    real = claim(state, owner="w")
    assert real.to_wire() == dry.to_wire()
    assert state.changed is True


def test_dry_run_with_exact_ids(state):
    a = put(state)
    dry = claim(state, batch_ids=[a.batch_id], dry_run=True)
    assert ids_of(dry) == [a.batch_id]
    assert state.find(S, a.batch_id).lease is None
    assert claim(state, batch_ids=[a.batch_id]).lease_token == dry.lease_token


# --------------------------------------------------------------------------- renew


def test_renew_extends_all_batches_and_keeps_ids_and_tokens(state):
    put(state)
    put(state)
    got = claim(state, ttl=1000)
    renewed = engine.renew(state, ClaimRef.of(got), 5000, NOW + 500)
    assert renewed.expires_at_epoch_ms == NOW + 5500
    assert (renewed.claim_id, renewed.lease_token, renewed.fencing_token) == (
        got.claim_id, got.lease_token, got.fencing_token)
    assert renewed.owner_id == got.owner_id
    assert [b.batch_id for b in renewed.batches] == ids_of(got)
    assert all(s.lease.expires_at_ms == NOW + 5500 for s in state.session(S))
    assert all(s.fencing == 1 for s in state.session(S))


def test_renew_works_after_expiry_when_not_reclaimed(state):
    put(state)
    got = claim(state, ttl=1000)
    renewed = engine.renew(state, ClaimRef.of(got), 1000, NOW + 10_000)
    assert renewed.expires_at_epoch_ms == NOW + 11_000
    assert state.session(S)[0].held_at(NOW + 10_500)


def test_renew_of_a_reclaimed_claim_is_lost_and_changes_nothing(state):
    put(state)
    old = claim(state, ttl=1000)
    new = claim(state, owner="w2", now=NOW + 2000)
    state.changed = False
    before = snapshot(state)
    with pytest.raises(LeaseLost) as err:
        engine.renew(state, ClaimRef.of(old), 60_000, NOW + 2001)
    assert err.value.exit_status == ExitStatus.LEASE_LOST == 4
    assert state.changed is False and snapshot(state) == before
    assert state.session(S)[0].lease.lease_token == new.lease_token


def test_renew_fails_whole_when_one_batch_no_longer_carries_the_claim(state):
    a = put(state)
    b = put(state)
    got = claim(state, ttl=1000)
    # The lease runs out and someone else re-claims a alone; b still carries the claim.
    other = claim(state, owner="w2", max_batches=1, now=NOW + 1000)
    assert ids_of(other) == [a.batch_id]
    state.changed = False
    before = snapshot(state)
    with pytest.raises(LeaseLost):
        engine.renew(state, ClaimRef.of(got), 60_000, NOW + 2)
    assert state.changed is False and snapshot(state) == before
    assert state.find(S, b.batch_id).lease.expires_at_ms == NOW + 1000


def test_renew_after_complete_is_lost(state):
    put(state)
    got = claim(state)
    engine.complete(state, ClaimRef.of(got), NOW)
    with pytest.raises(LeaseLost):
        engine.renew(state, ClaimRef.of(got), 1000, NOW)


def test_renew_refuses_a_negative_ttl(state):
    put(state)
    got = claim(state)
    with pytest.raises(InvalidInput):
        engine.renew(state, ClaimRef.of(got), -5, NOW)


# --------------------------------------------------------------------------- abandon


def test_abandon_releases_and_keeps_the_fencing_counters(state):
    a = put(state)
    b = put(state)
    got = claim(state)
    released = engine.abandon(state, ClaimRef.of(got))
    assert released == [a.batch_id, b.batch_id]
    assert all(s.lease is None and s.fencing == 1 for s in state.session(S))
    assert engine.batch_state(state.find(S, a.batch_id), NOW) == "ready"
    again = claim(state)
    assert ids_of(again) == [a.batch_id, b.batch_id] and again.fencing_token == 2


def test_abandon_of_a_lost_claim_returns_nothing_and_changes_nothing(state):
    put(state)
    old = claim(state, ttl=0)
    claim(state, owner="w2")
    state.changed = False
    before = snapshot(state)
    assert engine.abandon(state, ClaimRef.of(old)) == []
    assert state.changed is False and snapshot(state) == before


def test_abandon_only_touches_batches_still_carrying_the_claim(state):
    a = put(state)
    b = put(state)
    got = claim(state, ttl=0)
    other = claim(state, owner="w2", max_batches=1)  # the lease ran out: a is claimed again, alone
    assert ids_of(other) == [a.batch_id]
    assert engine.abandon(state, ClaimRef.of(got)) == [b.batch_id]
    assert state.find(S, a.batch_id).lease.lease_token == other.lease_token


# --------------------------------------------------------------------------- complete


def test_complete_removes_exactly_the_claim(state):
    a = put(state)
    b = put(state)
    c = put(state, slot_policy="exclusive")
    got = claim(state)
    done = engine.complete(state, ClaimRef.of(got), NOW)
    assert done.session_id == S and done.claim_id == got.claim_id and done.lease_token == got.lease_token
    assert sorted(done.batch_ids) == sorted([a.batch_id, b.batch_id])
    assert engine.list_batches(state, S) == [c]


def test_complete_accepts_batch_ids_in_any_order(state):
    a = put(state)
    b = put(state)
    got = claim(state)
    ref = ClaimRef(S, got.claim_id, got.lease_token, (b.batch_id, a.batch_id))
    engine.complete(state, ref, NOW)
    assert engine.list_batches(state, S) == []


def test_complete_without_batch_ids_settles_every_carrier(state):
    put(state)
    put(state)
    got = claim(state)
    done = engine.complete(state, ClaimRef(S, got.claim_id, got.lease_token), NOW)
    assert done.batch_ids == ids_of(got)
    assert engine.list_batches(state, S) == []


@pytest.mark.parametrize("which", ["subset", "superset", "repeat", "empty", "wrong_token", "wrong_claim",
                                   "wrong_session"])
def test_complete_refuses_anything_but_the_exact_set_and_removes_nothing(state, which):
    a = put(state)
    b = put(state)
    got = claim(state)
    ids = {
        "subset": (a.batch_id,),
        "superset": (a.batch_id, b.batch_id, "qwb:other"),
        "repeat": (a.batch_id, b.batch_id, a.batch_id),
        "empty": (),
    }.get(which, (a.batch_id, b.batch_id))
    ref = ClaimRef(
        "other" if which == "wrong_session" else S,
        "qwc:9:9" if which == "wrong_claim" else got.claim_id,
        "0" * 64 if which == "wrong_token" else got.lease_token,
        ids,
    )
    state.changed = False
    before = snapshot(state)
    with pytest.raises(LeaseLost):
        engine.complete(state, ref, NOW)
    assert state.changed is False and snapshot(state) == before
    assert len(engine.list_batches(state, S)) == 2


def test_stale_token_cannot_complete_after_someone_reclaimed(state):
    a = put(state, source_key="host:k")
    old = claim(state, ttl=1000)
    new = claim(state, owner="w2", now=NOW + 1000)
    state.changed = False
    with pytest.raises(LeaseLost):
        engine.complete(state, ClaimRef.of(old), NOW + 1001)
    assert state.changed is False
    assert engine.list_batches(state, S) == [a]
    assert state.tombstones == {}
    engine.complete(state, ClaimRef.of(new), NOW + 1002)
    assert engine.list_batches(state, S) == []


def test_complete_works_after_expiry_when_not_reclaimed(state):
    put(state)
    got = claim(state, ttl=1000)
    done = engine.complete(state, ClaimRef.of(got), NOW + 50_000)
    assert done.batch_ids == ids_of(got)
    assert engine.list_batches(state, S) == []


def test_complete_twice_is_lost_the_second_time(state):
    put(state)
    got = claim(state)
    engine.complete(state, ClaimRef.of(got), NOW)
    with pytest.raises(LeaseLost):
        engine.complete(state, ClaimRef.of(got), NOW)


def test_complete_leaves_tombstones_only_for_batches_with_source_keys(state):
    keyed = put(state, source_key="host:k")
    put(state)
    got = claim(state)
    engine.complete(state, ClaimRef.of(got), NOW + 5)
    tombs = state.session_tombstones(S)
    assert len(tombs) == 1
    assert tombs[0].batch == keyed
    assert tombs[0].outcome == "completed" and tombs[0].settled_at_ms == NOW + 5
    assert tombs[0].summary().to_wire() == {"session_id": S, "source_key": "host:k", "batch_id": keyed.batch_id,
                                            "outcome": "completed", "settled_at_ms": NOW + 5}


def test_complete_of_a_claim_from_a_qwclaim_model(state):
    put(state)
    got = claim(state)
    ref = ClaimRef.of(got)
    assert ref.batch_ids == tuple(ids_of(got))
    assert (ref.session_id, ref.claim_id, ref.lease_token) == (S, got.claim_id, got.lease_token)


# --------------------------------------------------------------------------- cancel


def test_cancel_of_an_unknown_batch_is_not_found(state):
    put(state)
    with pytest.raises(NotFound) as err:
        engine.cancel(state, S, "qwb:nope", NOW)
    assert err.value.exit_status == ExitStatus.NOT_FOUND == 5


def test_cancel_in_the_wrong_session_is_not_found(state):
    a = put(state, "s1")
    with pytest.raises(NotFound):
        engine.cancel(state, "s2", a.batch_id, NOW)
    assert engine.list_batches(state, "s1") == [a]


def test_cancel_of_a_held_batch_is_refused(state):
    a = put(state, source_key="host:k")
    got = claim(state, ttl=1000)
    state.changed = False
    with pytest.raises(BatchHeld) as err:
        engine.cancel(state, S, a.batch_id, NOW + 999)
    assert isinstance(err.value, LeaseLost)
    assert err.value.exit_status == ExitStatus.LEASE_LOST
    assert state.changed is False
    assert engine.list_batches(state, S) == [a]
    # after abandon it can be cancelled
    engine.abandon(state, ClaimRef.of(got))
    assert engine.cancel(state, S, a.batch_id, NOW + 999) == a


def test_cancel_of_an_expired_lease_is_allowed(state):
    a = put(state)
    claim(state, ttl=1000)
    assert engine.cancel(state, S, a.batch_id, NOW + 1000) == a
    assert engine.list_batches(state, S) == []


def test_cancel_removes_and_leaves_a_cancelled_tombstone(state):
    a = put(state, source_key="host:k")
    b = put(state)
    removed = engine.cancel(state, S, a.batch_id, NOW + 3)
    assert removed == a
    assert engine.list_batches(state, S) == [b]
    (tomb,) = state.session_tombstones(S)
    assert (tomb.batch, tomb.outcome, tomb.settled_at_ms) == (a, "cancelled", NOW + 3)
    with pytest.raises(NotFound):
        engine.cancel(state, S, a.batch_id, NOW + 4)
    engine.cancel(state, S, b.batch_id, NOW + 4)
    assert len(state.session_tombstones(S)) == 1  # b had no source key


# --------------------------------------------------------------------------- tombstones


def test_replay_after_completion_returns_the_tombstones_batch_and_enqueues_nothing(state):
    a = put(state, "s", "original", source_key="host:k")
    got = claim(state, "s")
    engine.complete(state, ClaimRef.of(got), NOW + 10)
    state.changed = False
    seq = state.next_seq
    again = engine.enqueue(state, draft("s", "retry", source_key="host:k"), NOW + 20)
    assert again.outcome == "replayed_tombstone" and again.replayed
    assert again.batch == a
    assert again.payloads_differ is True
    assert again.tombstone.to_wire() == {"session_id": "s", "source_key": "host:k", "batch_id": a.batch_id,
                                         "outcome": "completed", "settled_at_ms": NOW + 10}
    assert state.changed is False and state.next_seq == seq
    assert engine.list_batches(state, "s") == []
    assert claim(state, "s", now=NOW + 20) is None


def test_replay_after_cancel_reports_the_cancelled_tombstone(state):
    a = put(state, source_key="host:k")
    engine.cancel(state, S, a.batch_id, NOW + 1)
    again = engine.enqueue(state, draft(S, "hi", source_key="host:k"), NOW + 2)
    assert again.outcome == "replayed_tombstone"
    assert again.tombstone.outcome == "cancelled" and again.tombstone.settled_at_ms == NOW + 1
    assert again.payloads_differ is False


def test_strict_replay_of_a_tombstone_with_different_payloads_conflicts(state):
    a = put(state, "s", "one", source_key="host:k")
    engine.cancel(state, "s", a.batch_id, NOW)
    state.changed = False
    with pytest.raises(SourceKeyConflict):
        engine.enqueue(state, draft("s", "two", source_key="host:k"), NOW, strict=True)
    assert state.changed is False


def test_tombstones_are_not_batches(state):
    a = put(state, source_key="host:k")
    engine.cancel(state, S, a.batch_id, NOW)
    assert engine.list_batches(state, S) == []
    assert engine.pending(state, S, NOW) == []
    assert claim(state) is None
    assert claim(state, batch_ids=[a.batch_id]) is None
    with pytest.raises(LeaseLost):
        engine.complete(state, ClaimRef(S, "qwc:1:1", "x", (a.batch_id,)), NOW)


def test_vacuum_without_older_than_drops_every_tombstone_and_frees_the_key(state):
    a = put(state, source_key="host:k")
    engine.cancel(state, S, a.batch_id, NOW)
    b = put(state, "other", source_key="host:z")
    engine.cancel(state, "other", b.batch_id, NOW + 100)
    state.changed = False
    removed = engine.vacuum(state, None, None, NOW + 100)
    assert [t.batch_id for t in removed] == [a.batch_id, b.batch_id]
    assert state.changed is True
    assert state.tombstones == {}
    fresh = engine.enqueue(state, draft(S, "new", source_key="host:k"), NOW + 200)
    assert fresh.outcome == "enqueued"
    assert fresh.batch.batch_id != a.batch_id
    assert fresh.batch.enqueue_seq == 3


def test_vacuum_older_than_keeps_recent_tombstones(state):
    old = put(state, source_key="host:old")
    edge = put(state, source_key="host:edge")
    new = put(state, source_key="host:new")
    engine.cancel(state, S, old.batch_id, NOW)
    engine.cancel(state, S, edge.batch_id, NOW + 1000)
    engine.cancel(state, S, new.batch_id, NOW + 1001)
    # cutoff = (NOW + 2000) - 1000 = NOW + 1000: settled at or before it go.
    removed = engine.vacuum(state, S, 1000, NOW + 2000)
    assert [t.batch_id for t in removed] == [old.batch_id, edge.batch_id]
    assert [t.batch.batch_id for t in state.session_tombstones(S)] == [new.batch_id]
    assert engine.enqueue(state, draft(S, "x", source_key="host:new"), NOW + 2000).replayed
    assert not engine.enqueue(state, draft(S, "x", source_key="host:old"), NOW + 2000).replayed


def test_vacuum_of_one_session_leaves_the_others(state):
    a = put(state, "s1", source_key="k")
    b = put(state, "s2", source_key="k")
    engine.cancel(state, "s1", a.batch_id, NOW)
    engine.cancel(state, "s2", b.batch_id, NOW)
    removed = engine.vacuum(state, "s1", None, NOW)
    assert [t.session_id for t in removed] == ["s1"]
    assert state.session_tombstones("s1") == []
    assert len(state.session_tombstones("s2")) == 1


def test_vacuum_with_nothing_to_drop_changes_nothing(state):
    a = put(state, source_key="k")
    engine.cancel(state, S, a.batch_id, NOW)
    state.changed = False
    assert engine.vacuum(state, S, 10_000, NOW + 1) == []
    assert engine.vacuum(state, "nobody", None, NOW) == []
    assert state.changed is False
    assert len(state.session_tombstones(S)) == 1


def test_vacuum_older_than_larger_than_now_drops_nothing(state):
    a = put(state, source_key="k", now=0)
    engine.cancel(state, S, a.batch_id, 0)
    assert engine.vacuum(state, None, 10, 5) == []
    assert len(engine.vacuum(state, None, 0, 5)) == 1


# --------------------------------------------------------------------------- list / pending


def test_list_and_pending(state):
    a = put(state)
    b = put(state, available_at_ms=NOW + 5000, slot_policy="exclusive")
    c = put(state, slot_policy="exclusive")
    got = claim(state, max_batches=1)
    assert ids_of(got) == [a.batch_id]
    expired = claim(state, ttl=0)  # c, lease expires at once
    assert ids_of(expired) == [c.batch_id]
    assert engine.list_batches(state, S) == [a, b, c]
    assert engine.pending(state, S, NOW) == [b, c]
    # once a's lease runs out it is pending again
    assert engine.pending(state, S, NOW + TTL) == [a, b, c]


# --------------------------------------------------------------------------- batch_state


def test_batch_state_names(state):
    ready = put(state)
    delayed = put(state, available_at_ms=NOW + 10)
    held = put(state)
    expired = put(state)
    stored = {b.batch_id: state.find(S, b.batch_id) for b in (ready, delayed, held, expired)}
    stored[held.batch_id].lease = Lease("qwc:3:1", "w", "t", NOW, NOW + 1)
    stored[expired.batch_id].lease = Lease("qwc:4:1", "w", "t", NOW - 5, NOW)
    names = {bid: engine.batch_state(s, NOW) for bid, s in stored.items()}
    assert names == {ready.batch_id: "ready", delayed.batch_id: "delayed", held.batch_id: "held",
                     expired.batch_id: "lease_expired"}
    assert engine.batch_state(stored[delayed.batch_id], NOW + 10) == "ready"
    assert engine.batch_state(stored[held.batch_id], NOW + 1) == "lease_expired"


def test_batch_state_follows_real_claims(state):
    a = put(state)
    got = claim(state, ttl=1000)
    stored = state.find(S, a.batch_id)
    assert engine.batch_state(stored, NOW + 999) == "held"
    assert engine.batch_state(stored, NOW + 1000) == "lease_expired"
    engine.abandon(state, ClaimRef.of(got))
    assert engine.batch_state(stored, NOW + 1000) == "ready"


# --------------------------------------------------------------------------- session commands


def test_session_command_draft_policies_and_source_key():
    d = engine.session_command_draft(S, ResetSession(reason="user asked"), "KEY")
    assert d.session_id == S
    assert d.source_key == "command:reset_session:KEY"
    assert (d.delivery_policy, d.slot_policy, d.merge_key, d.available_at_ms) == (
        "after_current_turn_commit", "exclusive", "never", 0)
    assert [p.to_wire() for p in d.payloads] == [
        {"type": "session_command", "command": {"kind": "reset_session", "reason": "user asked"}}]
    r = engine.session_command_draft(S, RefreshToolSurface(reason="tools", expected_generation=4), "k2")
    assert r.source_key == "command:refresh_tool_surface:k2"
    assert r.payloads[0].to_wire()["command"] == {"kind": "refresh_tool_surface", "reason": "tools",
                                                  "expected_generation": 4}


@pytest.mark.parametrize("key", ["", " ", "\t\n "])
def test_session_command_refuses_a_blank_key(key):
    with pytest.raises(InvalidInput):
        engine.session_command_draft(S, ResetSession(reason="r"), key)


def test_same_idempotency_key_gives_the_same_receipt(state):
    d = engine.session_command_draft(S, ResetSession(reason="r"), "K")
    first = engine.enqueue(state, d, NOW)
    state.changed = False
    again = engine.enqueue(state, engine.session_command_draft(S, ResetSession(reason="r"), "K"), NOW + 5)
    assert again.replayed and not again.payloads_differ
    assert again.receipt == first.receipt
    assert first.receipt.to_wire() == {"session_id": S, "batch_id": first.batch.batch_id,
                                       "source_key": "command:reset_session:K"}
    assert state.changed is False
    other = engine.enqueue(state, engine.session_command_draft(S, ResetSession(reason="r"), "K2"), NOW)
    assert other.receipt.batch_id != first.receipt.batch_id


def test_reset_and_refresh_with_the_same_key_are_different_commands(state):
    a = engine.enqueue(state, engine.session_command_draft(S, ResetSession(reason="r"), "K"), NOW)
    b = engine.enqueue(state, engine.session_command_draft(S, RefreshToolSurface(reason="r"), "K"), NOW)
    assert b.outcome == "enqueued" and a.batch.batch_id != b.batch.batch_id


# --------------------------------------------------------------------------- process wakes


def test_wake_draft_shape():
    w = wake("s1", process_id="p1", sequence=7)
    d = engine.wake_draft(w, available_at_ms=NOW + 5)
    assert d.session_id == "s1"
    assert d.source_key == "process:p1:event:7:wake"
    assert (d.delivery_policy, d.slot_policy, d.merge_key, d.available_at_ms) == (
        "earliest_safe_boundary", "exclusive", "never", NOW + 5)
    assert d.payloads[0].wake == w


def test_same_wake_twice_gives_one_batch(state):
    first = engine.enqueue(state, engine.wake_draft(wake(created_at_ms=NOW)), NOW)
    again = engine.enqueue(state, engine.wake_draft(wake(created_at_ms=NOW + 60_000)), NOW + 60_000)
    assert again.replayed and again.batch == first.batch
    assert again.payloads_differ is False
    assert again.batch.items[0].payload.wake.created_at_ms == NOW
    assert len(engine.list_batches(state, S)) == 1


def test_wake_replay_is_strict_only_about_real_differences(state):
    engine.enqueue(state, engine.wake_draft(wake(created_at_ms=NOW)), NOW)
    ok = engine.enqueue(state, engine.wake_draft(wake(created_at_ms=NOW + 1)), NOW + 1, strict=True)
    assert ok.replayed and not ok.payloads_differ
    changed = engine.enqueue(state, engine.wake_draft(wake(input="other text")), NOW + 2)
    assert changed.replayed and changed.payloads_differ
    with pytest.raises(SourceKeyConflict):
        engine.enqueue(state, engine.wake_draft(wake(input="other text")), NOW + 2, strict=True)


def test_wake_batches_are_claimed_alone_at_a_checkpoint(state):
    w = engine.enqueue(state, engine.wake_draft(wake(sequence=1)), NOW).batch
    engine.enqueue(state, engine.wake_draft(wake(sequence=2)), NOW)
    got = claim(state, boundary="active_turn_checkpoint")
    assert ids_of(got) == [w.batch_id]


# --------------------------------------------------------------------------- batch id prefixes


def _with_id(state: QueueState, batch_id: str) -> str:
    """Enqueue a batch and give it a chosen id (to make prefixes collide on purpose)."""
    batch = put(state)
    stored = state.find(S, batch.batch_id)
    stored.batch = batch.model_copy(update={"batch_id": batch_id})
    return batch_id


def test_resolve_batch_id_from_a_unique_prefix(state):
    full = put(state).batch_id
    assert engine.resolve_batch_id(state, S, full) == full
    assert engine.resolve_batch_id(state, S, full[:12]) == full
    assert engine.resolve_batch_id(state, S, full[:12] + "…") == full


def test_resolve_batch_id_leaves_short_unknown_and_foreign_ids_as_given(state):
    full = put(state).batch_id
    assert engine.resolve_batch_id(state, S, full[:7]) == full[:7]  # shorter than "qwb:" + 4
    assert engine.resolve_batch_id(state, S, "qwb:ffffffffffff") == "qwb:ffffffffffff"
    assert engine.resolve_batch_id(state, "other", full[:12]) == full[:12]


def test_resolve_batch_id_refuses_an_ambiguous_prefix(state):
    a = _with_id(state, "qwb:abcd1111")
    _with_id(state, "qwb:abcd2222")
    with pytest.raises(InvalidInput):
        engine.resolve_batch_id(state, S, "qwb:abcd")
    assert engine.resolve_batch_id(state, S, "qwb:abcd1") == a
