"""`turnq explain`: every reason code, checked against what a claim really takes
(spec/semantics.md, *claim*), through the API and the CLI."""

from __future__ import annotations

import json

import pytest
from conftest import NOW
from test_cli import cli, doc, fails

from turnq import Queue
from turnq.clock import FixedClock
from turnq.explain import explain
from turnq.models import BOUNDARIES

IDLE, CHECKPOINT = BOUNDARIES
EARLY = "earliest_safe_boundary"


@pytest.fixture
def clock():
    return FixedClock(NOW)


@pytest.fixture
def q(store_path, clock):
    return Queue(store_path, now=clock)


def reasons(q, session="s", boundary=IDLE, **kw):
    """{batch id: reason} at a boundary."""
    shown = q.explain(session, **kw)
    return {b.batch_id: b.reasons[boundary] for b in shown.batches}


def add(q, text, session="s", **kw):
    return q.enqueue_text(session, text, **kw).batch.batch_id


def claimed_now(q, boundary, max_batches=64):
    """What a real claim takes now (dry run: nothing changes)."""
    made = q.claim("s", boundary=boundary, max_batches=max_batches, dry_run=True)
    return [] if made is None else made.batch_ids


def check_agrees_with_claim(q, max_batches=64):
    shown = q.explain("s", max_batches=max_batches)
    for boundary in BOUNDARIES:
        run = claimed_now(q, boundary, max_batches)
        assert shown.runs[boundary] == run
        claimable = [b.batch_id for b in shown.batches if b.reasons[boundary].code == "claimable"]
        assert claimable == run


def test_claimable_run_names_its_members_and_agrees_with_claim(q):
    a, b = add(q, "a", delivery_policy=EARLY), add(q, "b", delivery_policy=EARLY)
    idle = reasons(q)
    assert idle[a].code == idle[b].code == "claimable"
    assert idle[a].fields["run"] == [a, b] and idle[b].fields["position"] == 1
    assert "claimable now as the head of the run" in idle[a].text
    check_agrees_with_claim(q)


def test_held_names_owner_claim_token_and_expiry(q, clock):
    a = add(q, "a")
    made = q.claim("s", owner="worker-7", ttl_ms=60_000)
    for boundary in BOUNDARIES:
        reason = reasons(q, boundary=boundary)[a]
        assert reason.code == "held"
        assert reason.fields == {"owner_id": "worker-7", "claim_id": made.claim_id,
                                 "fencing_token": made.fencing_token, "expires_at_ms": NOW + 60_000}
        assert "held by worker-7" in reason.text and "2026-01-01T00:01:00.000Z" in reason.text
    check_agrees_with_claim(q)


def test_delayed_until_its_time_then_claimable(q, clock):
    a = add(q, "a", available_at_ms=NOW + 5_000)
    reason = reasons(q)[a]
    assert (reason.code, reason.fields) == ("delayed", {"available_at_ms": NOW + 5_000})
    assert "delayed until 2026-01-01T00:00:05.000Z" in reason.text
    assert q.explain("s").runs[IDLE] == [] and "held or delayed" in q.explain("s").summary[IDLE]
    clock.advance(5_000)
    assert reasons(q)[a].code == "claimable"
    check_agrees_with_claim(q)


def test_expired_lease_is_claimable_again_and_says_so(q, clock):
    a = add(q, "a")
    made = q.claim("s", owner="w1", ttl_ms=1_000)
    clock.advance(2_000)
    reason = reasons(q)[a]
    assert reason.code == "claimable"
    assert reason.fields["lease_expired_at_ms"] == NOW + 1_000
    assert reason.fields["expired_claim_id"] == made.claim_id
    assert "expired at 2026-01-01T00:00:01.000Z (claimable again)" in reason.text
    check_agrees_with_claim(q)


def test_after_commit_head_blocks_the_checkpoint_and_everything_behind_it(q):
    head = add(q, "head")  # after_current_turn_commit by default
    behind = add(q, "behind", delivery_policy=EARLY)
    at_checkpoint = reasons(q, boundary=CHECKPOINT)
    assert at_checkpoint[head].code == "after_commit_at_checkpoint"
    assert at_checkpoint[behind].code == "behind_after_commit_head"
    assert at_checkpoint[behind].fields == {"head_batch_id": head}
    assert "waits for the idle boundary" in q.explain("s").summary[CHECKPOINT]
    assert reasons(q)[head].code == "claimable"
    check_agrees_with_claim(q)


def test_exclusive_head_travels_alone(q):
    head = add(q, "head", slot_policy="exclusive")
    other = add(q, "other")
    idle = reasons(q)
    assert idle[head].fields["run"] == [head]
    assert (idle[other].code, idle[other].fields) == ("head_exclusive", {"head_batch_id": head})
    check_agrees_with_claim(q)


def test_exclusive_follower_does_not_join(q):
    head, excl = add(q, "head"), add(q, "excl", slot_policy="exclusive")
    idle = reasons(q)
    assert idle[head].code == "claimable"
    assert (idle[excl].code, idle[excl].fields) == ("slot_policy", {"slot_policy": "exclusive"})
    check_agrees_with_claim(q)


def test_a_different_delivery_policy_ends_the_run_and_later_batches_say_where(q):
    head, other, later = add(q, "head"), add(q, "other", delivery_policy=EARLY), add(q, "later")
    idle = reasons(q)
    assert idle[other].code == "delivery_policy"
    assert idle[other].fields == {"delivery_policy": EARLY, "head_delivery_policy": "after_current_turn_commit"}
    assert idle[later].code == "run_ended"
    assert idle[later].fields == {"ended_at": other, "ended_because": "delivery_policy"}
    assert idle[head].fields["run"] == [head]
    check_agrees_with_claim(q)


def test_a_different_merge_key_ends_the_run(q):
    add(q, "head", merge_key={"group": "a"})
    other = add(q, "other", merge_key={"group": "b"})
    reason = reasons(q)[other]
    assert reason.code == "merge_key"
    assert reason.fields == {"merge_key": {"group": "b"}, "head_merge_key": {"group": "a"}}
    assert "group:b" in reason.text and "group:a" in reason.text
    check_agrees_with_claim(q)


def test_max_batches_caps_the_run(q):
    a, b, c = add(q, "a"), add(q, "b"), add(q, "c")
    idle = reasons(q, max_batches=2)
    assert [idle[x].code for x in (a, b)] == ["claimable", "claimable"]
    assert (idle[c].code, idle[c].fields) == ("max_batches", {"max_batches": 2})
    check_agrees_with_claim(q, max_batches=2)
    assert {r.code for r in reasons(q, max_batches=0).values()} == {"no_claims"}


def test_held_batch_after_the_head_ends_the_run(q, clock):
    # Hold `middle` alone: the head is delayed while a claim takes the middle, then becomes ready.
    head = add(q, "head", delivery_policy=EARLY, available_at_ms=NOW + 1000)
    middle = add(q, "middle", delivery_policy=EARLY)
    assert q.claim("s", owner="w1", ttl_ms=60_000).batch_ids == [middle]
    clock.advance(1000)
    last = add(q, "last", delivery_policy=EARLY)
    idle = reasons(q)
    assert idle[head].fields["run"] == [head]
    assert idle[middle].code == "held"
    assert idle[last].fields == {"ended_at": middle, "ended_because": "held"}
    check_agrees_with_claim(q)


def test_one_batch_by_prefix_and_a_settled_one_is_not_found(q):
    a, b = add(q, "a", source_key="k"), add(q, "b")
    shown = q.explain("s", a[:12])
    assert [x.batch_id for x in shown.batches] == [a]
    assert shown.runs[IDLE] == [a, b]  # the run is still the whole session's
    q.complete(q.claim("s"))
    from turnq import NotFound

    with pytest.raises(NotFound, match="completed"):
        q.explain("s", a)


def test_explain_is_pure_and_never_writes(q, store_path):
    add(q, "a")
    before = store_path.read_bytes()
    log_before = store_path.with_name(store_path.name + ".log").read_bytes()
    state = q.store.read("s")
    first = explain(state, "s", NOW).to_wire()
    assert explain(state, "s", NOW).to_wire() == first
    q.explain("s")
    assert store_path.read_bytes() == before
    assert store_path.with_name(store_path.name + ".log").read_bytes() == log_before


# --------------------------------------------------------------------------- CLI


def test_cli_json_gives_codes_fields_and_text():
    a = doc(cli("enqueue", "s", "--text", "a", "--json"))["batch_id"]
    b = doc(cli("enqueue", "s", "--text", "b", "--delivery", EARLY, "--json"))["batch_id"]
    data = doc(cli("explain", "s", "--json"))
    assert data["boundaries"][IDLE]["run"] == [a]
    assert data["boundaries"][CHECKPOINT]["run"] == []
    rows = {row["batch_id"]: row for row in data["batches"]}
    assert rows[b]["boundaries"][IDLE]["code"] == "delivery_policy"
    assert rows[b]["boundaries"][CHECKPOINT] == {
        "code": "behind_after_commit_head", "head_batch_id": a,
        "text": rows[b]["boundaries"][CHECKPOINT]["text"]}
    assert rows[a]["state"] == "ready" and rows[a]["enqueue_seq"] == 1
    one = doc(cli("explain", "s", b[:14], "--json"))
    assert [row["batch_id"] for row in one["batches"]] == [b]


def test_cli_human_output_names_each_reason():
    cli("enqueue", "s", "--text", "a")
    cli("claim", "s", "--owner", "w9", "--ttl", "5m")
    cli("enqueue", "s", "--text", "b", "--delay", "1m")
    result = cli("explain", "s")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "held by w9" in out and "delayed until" in out
    assert "takes nothing" in out
    assert "Session s" in out


def test_cli_errors():
    cli("enqueue", "s", "--text", "a")
    fails(cli("explain", "s", "qwb:ffffffffffff"), 5, "no batch")
    fails(cli("explain", "s", "--max-batches", "-1"), 2, "--max-batches")
    result = cli("explain", "nobody", "--json")
    data = doc(result)
    assert data["batches"] == [] and json.dumps(data)


def test_random_queues_explain_exactly_what_a_claim_takes(tmp_path):
    """Across random mixes of policies, delays and claims, the batches explain calls claimable
    are exactly the claim's, and every other batch gets one of the documented reasons."""
    import random

    from turnq.store import MemoryStore

    known = {"claimable", "held", "delayed", "after_commit_at_checkpoint", "behind_after_commit_head",
             "head_exclusive", "slot_policy", "delivery_policy", "merge_key", "max_batches", "run_ended"}
    rng = random.Random(5)
    for _ in range(60):
        clock = FixedClock(NOW)
        q = Queue(MemoryStore(), now=clock)
        for n in range(rng.randint(1, 7)):
            q.enqueue_text("s", f"m{n}", delivery_policy=rng.choice([EARLY, "after_current_turn_commit"]),
                           slot_policy=rng.choice(["join", "join", "exclusive"]),
                           merge_key=rng.choice(["never", "payload_default", {"group": "g"}]),
                           available_at_ms=rng.choice([0, 0, NOW + 10_000]))
            if rng.random() < 0.3:
                q.claim("s", owner="w", ttl_ms=rng.choice([0, 60_000]), max_batches=rng.randint(1, 3))
        cap = rng.randint(1, 4)
        check_agrees_with_claim(q, max_batches=cap)
        for entry in q.explain("s", max_batches=cap).batches:
            assert {r.code for r in entry.reasons.values()} <= known
