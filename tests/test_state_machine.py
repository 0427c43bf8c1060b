"""A model-based property test (issue 3, item 5).

A Hypothesis state machine drives random sequences of enqueue (policies, merge keys, source keys,
delays), claim (both boundaries, random max_batches and TTL, and exact claims), renew, abandon,
complete (valid and stale), cancel, vacuum and clock advances against the real store: a
`JsonFileStore` in a temporary folder, through `turnq.Queue` with a `FixedClock`. Every result
is checked against `Model`, a small reference written here from spec/semantics.md alone (it
does not use turnq.engine), and after every step the whole store, as loaded from its file, must
equal the model's state.

CI runs a fixed, derandomized budget; `TURNQ_PROPERTY=heavy` runs a bigger random one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from turnq import FixedClock, LeaseLost, NotFound, Queue
from turnq.errors import BatchHeld
from turnq.store import JsonFileStore

NOW = 1767225600000
HEAVY = os.environ.get("TURNQ_PROPERTY") == "heavy"
SESSIONS = ["a", "b"]
DELIVERIES = ["after_current_turn_commit", "earliest_safe_boundary"]
SLOTS = ["join", "exclusive"]
MERGE_KEYS: list[Any] = ["never", "payload_default", {"group": "x"}, {"group": "y"}]
BOUNDARIES = ["idle", "active_turn_checkpoint"]

# --------------------------------------------------------------------------- the reference model


@dataclass
class MLease:
    claim_id: str
    token: str
    claimed_at: int
    expires_at: int


@dataclass
class MBatch:
    seq: int
    session: str
    key: str | None
    delivery: str
    slot: str
    merge: Any
    available_at: int
    fencing: int = 0
    lease: MLease | None = None

    def held(self, now: int) -> bool:
        return self.lease is not None and self.lease.expires_at > now

    def claimable(self, now: int) -> bool:
        return self.available_at <= now and not self.held(now)

    def carries(self, claim_id: str, token: str) -> bool:
        return self.lease is not None and (self.lease.claim_id, self.lease.token) == (claim_id, token)


@dataclass
class MTomb:
    seq: int
    key: str
    outcome: str
    settled_at: int


@dataclass
class Model:
    """spec/semantics.md, transcribed: batches are known by their enqueue_seq."""

    next_seq: int = 1
    batches: list[MBatch] = field(default_factory=list)  # store-wide, in seq order
    tombs: list[MTomb] = field(default_factory=list)
    tomb_batch: dict[int, MBatch] = field(default_factory=dict)

    def session(self, session: str) -> list[MBatch]:
        return [b for b in self.batches if b.session == session]

    # enqueue rules 1-2, and tombstones
    def enqueue(self, session: str, key: str | None, delivery: str, slot: str, merge: Any,
                available_at: int) -> tuple[int, str]:
        if key is not None:
            for b in self.session(session):
                if b.key == key:
                    return b.seq, "replayed"
            for t in self.tombs:
                if self.tomb_batch[t.seq].session == session and t.key == key:
                    return t.seq, "replayed_tombstone"
        seq = self.next_seq
        self.next_seq += 1
        self.batches.append(MBatch(seq, session, key, delivery, slot, merge, available_at))
        return seq, "enqueued"

    # claim rules 1-5
    def plan(self, session: str, boundary: str, max_batches: int, now: int) -> list[MBatch]:
        if max_batches == 0:
            return []
        batches = self.session(session)
        heads = [i for i, b in enumerate(batches) if b.claimable(now)]
        if not heads:
            return []
        head = batches[heads[0]]
        if boundary == "active_turn_checkpoint" and head.delivery == "after_current_turn_commit":
            return []
        run = [head]
        if head.slot == "exclusive":
            return run
        for b in batches[heads[0] + 1:]:
            if len(run) >= max_batches:
                break
            if not (b.claimable(now) and b.slot == "join" and b.delivery == head.delivery and b.merge == head.merge):
                break
            run.append(b)
        return run

    # claim rules 6-7 (the token is the store's: the model keeps whatever it was given)
    def take(self, run: list[MBatch], now: int, ttl: int, claim_id: str, token: str) -> int:
        fencing = 1 + max(b.fencing for b in run)
        for b in run:
            b.fencing = fencing
            b.lease = MLease(claim_id, token, now, now + ttl)
        return fencing

    def carriers(self, session: str, claim_id: str, token: str) -> list[MBatch]:
        return [b for b in self.session(session) if b.carries(claim_id, token)]

    def renew(self, claim: Held, ttl: int, now: int) -> bool:
        carriers = self.carriers(claim.session, claim.claim_id, claim.token)
        if not carriers or {b.seq for b in carriers} != set(claim.seqs):
            return False
        for b in carriers:
            assert b.lease is not None
            b.lease = MLease(b.lease.claim_id, b.lease.token, b.lease.claimed_at, now + ttl)
        return True

    def abandon(self, claim: Held) -> list[int]:
        released = self.carriers(claim.session, claim.claim_id, claim.token)
        for b in released:
            b.lease = None
        return [b.seq for b in released]

    def complete(self, claim: Held, now: int) -> bool:
        carriers = self.carriers(claim.session, claim.claim_id, claim.token)
        if not claim.seqs or {b.seq for b in carriers} != set(claim.seqs):
            return False
        self.settle(carriers, "completed", now)
        return True

    def cancel(self, session: str, seq: int, now: int) -> str:
        found = [b for b in self.session(session) if b.seq == seq]
        if not found:
            return "not_found"
        if found[0].held(now):
            return "held"
        self.settle(found, "cancelled", now)
        return "ok"

    def settle(self, batches: list[MBatch], outcome: str, now: int) -> None:
        gone = {b.seq for b in batches}
        self.batches = [b for b in self.batches if b.seq not in gone]
        for b in batches:
            if b.key is not None:
                self.tombs.append(MTomb(b.seq, b.key, outcome, now))
                self.tomb_batch[b.seq] = b

    def vacuum(self, older_than: int | None, now: int) -> list[int]:
        dropped = [t for t in self.tombs if older_than is None or t.settled_at <= now - older_than]
        self.tombs = [t for t in self.tombs if t not in dropped]
        return sorted(t.seq for t in dropped)


@dataclass(frozen=True)
class Held:
    """A claim the test was given (maybe stale by now)."""

    session: str
    claim_id: str
    token: str
    seqs: tuple[int, ...]
    real: Any


# --------------------------------------------------------------------------- the machine


class QueueMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="turnq-sm-"))
        self.path = self.folder / "turnq.json"
        self.clock = FixedClock(NOW)
        self.queue = Queue(self.path, now=self.clock, lock_timeout_ms=5_000)
        self.model = Model()
        self.ids: dict[int, str] = {}  # enqueue_seq -> batch id, as the store made it
        self.claims: list[Held] = []
        self.stale_refused = 0

    def teardown(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        STATS["examples"] += 1

    @property
    def now(self) -> int:
        return self.clock.now_ms()

    def seqs_of(self, batch_ids: list[str]) -> list[int]:
        by_id = {v: k for k, v in self.ids.items()}
        return [by_id[i] for i in batch_ids]

    def step(self, name: str) -> None:
        STATS["steps"] += 1
        STATS[name] = STATS.get(name, 0) + 1

    @rule(session=st.sampled_from(SESSIONS), key=st.one_of(st.none(), st.sampled_from(["k1", "k2", "k3", "k4"])),
          delivery=st.sampled_from(DELIVERIES), slot=st.sampled_from(SLOTS), merge=st.sampled_from(MERGE_KEYS),
          delay=st.sampled_from([0, 0, 0, 500, 5_000]))
    def enqueue(self, session, key, delivery, slot, merge, delay):
        self.step("enqueue")
        available = self.now + delay if delay else 0
        result = self.queue.enqueue_text(session, f"text {self.model.next_seq}", source_key=key,
                                         delivery_policy=delivery, slot_policy=slot, merge_key=merge,
                                         available_at_ms=available)
        seq, outcome = self.model.enqueue(session, key, delivery, slot, merge, available)
        assert result.outcome == outcome
        assert result.batch.enqueue_seq == seq
        if outcome == "enqueued":
            assert result.batch.enqueued_at_ms == self.now and result.batch.available_at_ms == available
            self.ids[seq] = result.batch.batch_id
        else:
            assert result.batch.batch_id == self.ids[seq]

    def _record_claim(self, claim: Any, run: list[MBatch], ttl: int) -> None:
        assert claim is not None, "the model claims, the store does not"
        assert self.seqs_of(claim.batch_ids) == [b.seq for b in run]
        expected_fencing = 1 + max(b.fencing for b in run)
        fencing = self.model.take(run, self.now, ttl, claim.claim_id, claim.lease_token)
        assert fencing == expected_fencing == claim.fencing_token
        assert claim.claim_id == f"qwc:{run[0].seq}:{fencing}"
        assert claim.claimed_at_epoch_ms == self.now and claim.expires_at_epoch_ms == self.now + ttl
        self.claims.append(Held(claim.session_id, claim.claim_id, claim.lease_token,
                                tuple(b.seq for b in run), claim))

    @rule(session=st.sampled_from(SESSIONS), boundary=st.sampled_from(BOUNDARIES),
          max_batches=st.integers(0, 4), ttl=st.sampled_from([0, 1, 1_000, 60_000, 900_000]),
          owner=st.sampled_from(["w1", "w2"]), dry_run=st.booleans())
    def claim(self, session, boundary, max_batches, ttl, owner, dry_run):
        self.step("claim")
        run = self.model.plan(session, boundary, max_batches, self.now)
        claim = self.queue.claim(session, owner=owner, boundary=boundary, ttl_ms=ttl, max_batches=max_batches,
                                 dry_run=dry_run)
        if not run:
            assert claim is None
            return
        if dry_run:
            assert claim is not None and self.seqs_of(claim.batch_ids) == [b.seq for b in run]
            return
        self._record_claim(claim, run, ttl)

    @rule(session=st.sampled_from(SESSIONS), boundary=st.sampled_from(BOUNDARIES),
          picks=st.lists(st.integers(0, 50), min_size=1, max_size=3, unique=True),
          ttl=st.sampled_from([0, 1_000, 60_000]))
    def exact_claim(self, session, boundary, picks, ttl):
        self.step("exact_claim")
        batches = self.model.session(session)
        if not batches:
            return
        chosen = list({b.seq: b for b in (batches[p % len(batches)] for p in picks)}.values())
        run = self.model.plan(session, boundary, len(chosen), self.now)
        claim = self.queue.claim(session, owner="exact", boundary=boundary, ttl_ms=ttl,
                                 batch_ids=[self.ids[b.seq] for b in chosen])
        if {b.seq for b in run} != {b.seq for b in chosen}:
            assert claim is None
            return
        self._record_claim(claim, run, ttl)

    def _pick(self, index: int) -> Held | None:
        return self.claims[index % len(self.claims)] if self.claims else None

    @rule(index=st.integers(0, 100), ttl=st.sampled_from([0, 1_000, 60_000]))
    def renew(self, index, ttl):
        self.step("renew")
        held = self._pick(index)
        if held is None:
            return
        if self.model.renew(held, ttl, self.now):
            renewed = self.queue.renew(held.real, ttl_ms=ttl)
            assert (renewed.claim_id, renewed.lease_token) == (held.claim_id, held.token)
            assert renewed.expires_at_epoch_ms == self.now + ttl
            assert self.seqs_of(renewed.batch_ids) == sorted(held.seqs)
        else:
            try:
                self.queue.renew(held.real, ttl_ms=ttl)
            except LeaseLost as err:
                assert err.exit_status == 4
            else:
                raise AssertionError("a lost claim was renewed")

    @rule(index=st.integers(0, 100))
    def abandon(self, index):
        self.step("abandon")
        held = self._pick(index)
        if held is None:
            return
        expected = self.model.abandon(held)
        assert sorted(self.seqs_of(self.queue.abandon(held.real))) == sorted(expected)

    @rule(index=st.integers(0, 100))
    def complete(self, index):
        self.step("complete")
        held = self._pick(index)
        if held is None:
            return
        if self.model.complete(held, self.now):
            done = self.queue.complete(held.real)
            assert sorted(self.seqs_of(done.batch_ids)) == sorted(held.seqs)
        else:
            try:
                self.queue.complete(held.real)
            except LeaseLost as err:
                assert err.exit_status == 4
                STATS["stale_refused"] = STATS.get("stale_refused", 0) + 1
            else:
                raise AssertionError("a stale completion was accepted")

    @rule(session=st.sampled_from(SESSIONS), pick=st.integers(0, 100))
    def cancel(self, session, pick):
        self.step("cancel")
        if not self.ids:
            return
        seq = sorted(self.ids)[pick % len(self.ids)]  # maybe gone, maybe in the other session
        expected = self.model.cancel(session, seq, self.now)
        try:
            removed = self.queue.cancel(session, self.ids[seq])
        except BatchHeld:
            assert expected == "held"
        except NotFound:
            assert expected == "not_found"
        else:
            assert expected == "ok" and removed.enqueue_seq == seq

    @rule(older_than=st.one_of(st.none(), st.sampled_from([0, 1_000, 10_000])))
    def vacuum(self, older_than):
        self.step("vacuum")
        expected = self.model.vacuum(older_than, self.now)
        removed = self.queue.vacuum(older_than_ms=older_than)
        assert sorted(self.seqs_of([t.batch_id for t in removed])) == expected

    @rule(ms=st.sampled_from([1, 499, 500, 1_000, 5_000, 60_000]))
    def advance(self, ms):
        self.step("advance")
        self.clock.advance(ms)

    @invariant()
    def store_equals_the_model(self):
        state = JsonFileStore(self.path).read()
        model = self.model
        if self.path.exists():
            assert state.next_seq == model.next_seq
        stored = [(b.seq, b.batch.session_id, b.batch.source_key, b.batch.delivery_policy, b.batch.slot_policy,
                   _merge(b.batch.merge_key), b.batch.available_at_ms, b.fencing,
                   None if b.lease is None else (b.lease.claim_id, b.lease.lease_token, b.lease.claimed_at_ms,
                                                 b.lease.expires_at_ms))
                  for b in state.all_batches()]
        expected = [(b.seq, b.session, b.key, b.delivery, b.slot, b.merge, b.available_at, b.fencing,
                     None if b.lease is None else (b.lease.claim_id, b.lease.token, b.lease.claimed_at,
                                                   b.lease.expires_at))
                    for b in model.batches]
        assert stored == expected
        tombs = sorted((t.batch.enqueue_seq, t.source_key, t.outcome, t.settled_at_ms) for t in state.all_tombstones())
        assert tombs == sorted((t.seq, t.key, t.outcome, t.settled_at) for t in model.tombs)


def _merge(value: Any) -> Any:
    return value if isinstance(value, str) else {"group": value.group}


STATS: dict[str, int] = {"examples": 0, "steps": 0}

QueueMachine.TestCase.settings = settings(
    max_examples=400 if HEAVY else 100,
    stateful_step_count=80 if HEAVY else 50,
    deadline=None,
    derandomize=not HEAVY,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class TestQueueMachine(QueueMachine.TestCase):
    @classmethod
    def tearDownClass(cls) -> None:
        print(f"\nstate machine figures: {STATS}")
