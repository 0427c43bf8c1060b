"""PostgreSQL that scales out (issue 13): few round trips per operation, no store-wide lock
taken by every write, an audit log that `turnq log --follow` reads without missing or repeating
an entry under concurrent commits, and many processes on many sessions losing nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
from backends import postgres_url

from turnq import Queue
from turnq.store import open_store

NOW = 1767225600000


@pytest.fixture
def url():
    with postgres_url() as location:
        yield location


class RoundTrips:
    """A TCP proxy between turnq and the server that counts round trips: each time the server
    answers after the client has sent something (the direction of traffic turns), one more.
    So a pipeline of statements is one round trip, as on the wire."""

    def __init__(self, url: str) -> None:
        import socket
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        self.target = (parts.hostname, parts.port or 5432)
        self.listener = socket.create_server(("127.0.0.1", 0))
        port = self.listener.getsockname()[1]
        self.url = url.replace(parts.netloc, f"{parts.username}@127.0.0.1:{port}", 1)
        self.count, self._last = 0, "server"
        self._guard = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            threading.Thread(target=self._pump, args=(client, server, "client"), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, "server"), daemon=True).start()

    def _pump(self, source, sink, side: str) -> None:
        try:
            while data := source.recv(65536):
                with self._guard:
                    if side == "server" and self._last == "client":
                        self.count += 1
                    self._last = side
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(2)
                except OSError:
                    pass

    def take(self) -> int:
        with self._guard:
            count, self.count = self.count, 0
        return count


def test_enqueue_claim_and_complete_take_at_most_three_round_trips_each(url):
    trips = RoundTrips(url)
    q = Queue(trips.url, now=NOW)
    q.enqueue_text("warm", "up")  # connection and schema made once per process: not counted
    trips.take()
    counts: dict[str, list[int]] = {"enqueue": [], "claim": [], "complete": [], "replay": [], "empty claim": [],
                                    "enqueue, no key": []}
    claimed: list[int] = []
    for n in range(3):
        q.enqueue_text("s", f"m{n}", source_key=f"k{n}")
        counts["enqueue"].append(trips.take())
        q.enqueue_text("s", f"plain {n}")  # its enqueue_seq is taken in the round trip that opens it
        counts["enqueue, no key"].append(trips.take())
        q.enqueue_text("s", f"m{n}", source_key=f"k{n}")
        counts["replay"].append(trips.take())
        claim = q.claim("s", max_batches=2)
        counts["claim"].append(trips.take())
        assert len(claim.batches) == 2
        claimed += [batch.enqueue_seq for batch in claim.batches]
        q.complete(claim)
        counts["complete"].append(trips.take())
        assert q.claim("s") is None
        counts["empty claim"].append(trips.take())
    assert counts == {"enqueue": [3, 3, 3], "enqueue, no key": [2, 2, 2], "replay": [2, 2, 2], "claim": [2, 2, 2],
                      "complete": [2, 2, 2], "empty claim": [2, 2, 2]}
    # Nothing taken ahead went unused: the six batches hold six consecutive values.
    assert claimed == list(range(claimed[0], claimed[0] + 6))


def test_the_round_trip_counter_counts_turns_not_statements(url):
    trips = RoundTrips(url)
    store = open_store(trips.url)
    Queue(store, now=NOW).enqueue_text("warm", "up")
    trips.take()
    conn = store._conn
    for _ in range(4):
        conn.execute("SELECT 1")
    assert trips.take() == 4
    with conn.pipeline():
        for _ in range(4):
            conn.execute("SELECT 1")
    assert trips.take() == 1


def test_a_writer_in_flight_holds_no_other_session_up(url):
    """Two transactions on different sessions, both enqueuing and logging, overlap in time:
    the second commits while the first is still open (version 1 made it wait for the first)."""
    Queue(url, now=NOW).enqueue_text("warm", "up")
    first, second = open_store(url, lock_timeout_ms=500), open_store(url, lock_timeout_ms=500)
    from turnq import engine, make_draft

    def draft(session):
        return make_draft(session, [{"type": "turn_input", "input": {"items": [{"type": "text", "text": "x"}]}}])

    with first.transaction("a") as state_a:
        engine.enqueue(state_a, draft("a"), NOW)
        state_a.record("enqueue", NOW, "a", ["x"])
        with second.transaction("b") as state_b:
            engine.enqueue(state_b, draft("b"), NOW)
            state_b.record("enqueue", NOW, "b", ["y"])
        assert [b.enqueue_seq for b in Queue(url, now=NOW).list("b")] == [3]
    assert [b.enqueue_seq for b in Queue(url, now=NOW).list("a")] == [2]
    log = open_store(url).read_log()
    assert [e["id"] for e in log] == [1, 2, 3] and [e["session_id"] for e in log[1:]] == ["b", "a"]


def test_read_log_never_returns_an_entry_past_one_still_in_flight(url):
    """Writer A takes log id 2 and stays open; B takes 3 and commits. A reader sees a hole at 2:
    it must not hand out 3 before 2 (a follower would then never see 2)."""
    import psycopg

    store = open_store(url)
    Queue(store, now=NOW).enqueue_text("warm", "up")  # id 1
    holder = psycopg.connect(store.conninfo)
    holder.execute(f'SET search_path TO "{store.schema}"')
    holder.execute("SELECT turnq_append_log(ARRAY['{\"op\":\"first\"}'], 1000)")  # id 2, open
    Queue(store, now=NOW).enqueue_text("other", "x")  # id 3, committed
    reader = open_store(url, lock_timeout_ms=300)
    started = time.monotonic()
    assert [e["id"] for e in reader.read_log()] == [1]  # waited (for A) up to the lock timeout
    assert [e["id"] for e in reader.read_log(1)] == []
    assert time.monotonic() - started >= 0.5

    threading.Timer(0.3, holder.commit).start()
    patient = open_store(url, lock_timeout_ms=5000)
    assert [e["id"] for e in patient.read_log(1)] == [2, 3]  # A ended during the wait: both, in order
    holder.close()


def test_read_log_waits_for_a_writer_whose_transaction_id_is_newer_than_any_that_ended(url):
    """The case CI caught: B got its transaction id first (it wrote a batch), A got a newer one,
    A takes log id 2 and stays open, B takes id 3 and commits. No transaction newer than B has
    ended, so a snapshot's xmax is B + 1 <= A: waiting for xmin to reach xmax does not wait for A.
    The reader must still not hand out 3 before 2."""
    import psycopg

    store = open_store(url)
    Queue(store, now=NOW).enqueue_text("warm", "up")  # id 1
    older = psycopg.connect(store.conninfo)
    older.execute(f'SET search_path TO "{store.schema}"')
    older_xid = int(older.execute("SELECT pg_current_xact_id()::text").fetchone()[0])
    holder = psycopg.connect(store.conninfo)
    holder.execute(f'SET search_path TO "{store.schema}"')
    holder.execute("SELECT turnq_append_log(ARRAY['{\"op\":\"held\"}'], 1000)")  # id 2, open
    holder_xid = int(holder.execute("SELECT pg_current_xact_id()::text").fetchone()[0])
    try:
        older.execute("SELECT turnq_append_log(ARRAY['{\"op\":\"older\"}'], 1000)")  # id 3
        older.commit()
        assert older_xid < holder_xid
        reader = open_store(url, lock_timeout_ms=300)
        assert [e["id"] for e in reader.read_log(1)] == []  # 3 must wait for 2

        threading.Timer(0.3, holder.commit).start()
        patient = open_store(url, lock_timeout_ms=5000)
        assert [e["id"] for e in patient.read_log(1)] == [2, 3]
    finally:  # an open transaction would hold the schema's drop up
        holder.close()
        older.close()


def test_read_log_steps_over_the_id_of_a_rolled_back_writer(url):
    import psycopg

    store = open_store(url)
    Queue(store, now=NOW).enqueue_text("warm", "up")  # id 1
    with psycopg.connect(store.conninfo) as conn:
        conn.execute(f'SET search_path TO "{store.schema}"')
        conn.execute("SELECT turnq_append_log(ARRAY['{\"op\":\"lost\"}'], 1000)")  # id 2
        conn.rollback()
    Queue(store, now=NOW).enqueue_text("s", "x")  # id 3
    assert [e["id"] for e in store.read_log()] == [1, 3]
    assert [e["id"] for e in store.read_log(1)] == [3]


# --------------------------------------------------------------------------- many processes


def _worker(url: str, session: str, cycles: int, out_path: str) -> None:
    q = Queue(url, lock_timeout_ms=60_000)
    claimed = []
    for n in range(cycles):
        q.enqueue_text(session, f"{session} {os.getpid()} {n}")
        claim = q.claim(session, owner=f"w{os.getpid()}", max_batches=1)
        if claim is not None:
            claimed.extend(b.batch_id for b in claim.batches)
            q.complete(claim)
    with open(out_path, "w") as out:
        json.dump(claimed, out)


def test_ten_processes_with_log_follow_lose_and_repeat_nothing(url, tmp_path):
    """8 processes on 8 sessions, 2 more on one shared session, `turnq log --follow` running:
    every log entry is seen once, in id order; no batch is lost or claimed twice."""
    cycles = 10
    open_store(url).write_setting("tombstone_retention_ms", None)  # the store exists: `log` refuses a missing one
    follower = subprocess.Popen([sys.executable, "-m", "turnq", "log", "--follow", "--json", "--interval", "50ms",
                                 "--store", url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    jobs = [(f"own-{n}", tmp_path / f"out-{n}.json") for n in range(8)]
    jobs += [("shared", tmp_path / f"out-shared-{n}.json") for n in range(2)]
    code = ("import sys; sys.path.insert(0, {tests!r}); from test_store_postgres_scale import _worker; "
            "_worker(*sys.argv[1:3], int(sys.argv[3]), sys.argv[4])").format(tests=os.path.dirname(__file__))
    seen: list[dict] = []

    def read_lines():  # a thread: the pipe's buffered lines are never left unread
        for line in follower.stdout:
            if line.strip():
                seen.append(json.loads(line))

    reader = threading.Thread(target=read_lines, daemon=True)
    reader.start()
    procs = [subprocess.Popen([sys.executable, "-c", code, url, session, str(cycles), str(out)])
             for session, out in jobs]
    try:
        assert [p.wait(timeout=300) for p in procs] == [0] * len(procs)
        final = open_store(url).read_log()
        expected = {e["id"] for e in final}
        deadline = time.monotonic() + 30
        while {e["id"] for e in seen} != expected and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        follower.terminate()
        follower.wait(timeout=10)
        reader.join(timeout=10)
    ids = [e["id"] for e in seen]
    assert sum(e["op"] == "enqueue" for e in final) == cycles * len(jobs) and len(final) > cycles * len(jobs) * 2
    assert ids == sorted(ids) and len(ids) == len(set(ids)), "an entry repeated or out of order"
    assert set(ids) == expected, "the follower missed entries"
    claimed = [b for _, out in jobs for b in json.loads(out.read_text())]
    enqueued = [e["batch_ids"][0] for e in final if e["op"] == "enqueue"]
    assert len(claimed) == len(set(claimed)), "a batch was claimed twice"
    leftover = [b.batch_id for s in {s for s, _ in jobs} for b in Queue(url).list(s)]
    assert sorted(claimed + leftover) == sorted(enqueued), "a batch was lost"


def test_tombstone_lookups_add_no_round_trip_and_a_replay_takes_no_value(url):
    """Tombstones are not loaded (issue 16): an enqueue with a new source key sends its lookup by
    key in the pipeline that takes the enqueue_seq, so it stays at 3; replaying settled work is 3
    (the lookup, then the audit entry) and takes no value from the sequence."""
    trips = RoundTrips(url)
    q = Queue(trips.url, now=NOW)
    for n in range(20):  # settled work in the session: not read by anything below but the lookups
        q.complete(q.claim(q.enqueue_text("s", f"m{n}", source_key=f"old{n}").batch.session_id))
    trips.take()
    counts: dict[str, list[int]] = {"enqueue": [], "claim": [], "complete": [], "replay settled": []}
    for n in range(3):
        q.enqueue_text("s", f"m{n}", source_key=f"k{n}")
        counts["enqueue"].append(trips.take())
        claim = q.claim("s", max_batches=1)
        counts["claim"].append(trips.take())
        q.complete(claim)
        counts["complete"].append(trips.take())
        replay = q.enqueue_text("s", f"m{n}", source_key=f"old{n}")
        counts["replay settled"].append(trips.take())
        assert replay.outcome == "replayed_tombstone"
    assert counts == {"enqueue": [3, 3, 3], "claim": [2, 2, 2], "complete": [2, 2, 2],
                      "replay settled": [3, 3, 3]}
    # Only the enqueues took values: 20 + 3, no gap left by the 3 replays.
    assert open_store(url).read().next_seq == 24


def test_with_a_retention_set_the_range_delete_costs_one_round_trip(url):
    """The retention's DELETE of outlived tombstones (it returns them, for the audit entry) is one
    round trip more on the writes that apply it (an enqueue of a new batch, a complete); a claim
    and a replay are unchanged. The retention itself is read in the first statement."""
    trips = RoundTrips(url)
    q = Queue(trips.url, now=NOW)
    q.enqueue_text("warm", "up")
    q.set_setting("tombstone_retention_ms", 60_000)
    trips.take()
    q.enqueue_text("s", "x", source_key="k")
    enqueue = trips.take()
    claim = q.claim("s")
    claim_trips = trips.take()
    q.complete(claim)
    complete = trips.take()
    assert q.enqueue_text("s", "x", source_key="k").outcome == "replayed_tombstone"
    replay = trips.take()
    assert (enqueue, claim_trips, complete, replay) == (4, 2, 3, 3)


def test_the_benchmarks_replay_of_turnqs_statements_runs_the_cycle_on_turnqs_tables(url):
    """`python -m turnq.bench.backends --only-scale` quotes a ceiling from this replay: it must do
    what turnq does to the tables (a batch in, claimed, gone; three audit entries per cycle)."""
    from turnq.bench.scale import _shape_pg_cycler

    store = open_store(url)
    Queue(store, now=NOW).enqueue_text("warm", "up")
    before = len(store.read_log())
    cycle, close = _shape_pg_cycler(url, "shape")
    try:
        for n in range(3):
            cycle(n)
    finally:
        close()
    assert len(store.read_log()) == before + 9
    assert Queue(store, now=NOW).inspect("shape").batches == []


def test_a_refused_draft_takes_no_enqueue_seq_ahead(url):
    """A draft without a source key gets its value in the opening round trip only when it is
    valid: a refused one leaves no gap (the next batch takes the very next value)."""
    from turnq.api import make_draft
    from turnq.errors import InvalidInput

    q = Queue(open_store(url), now=NOW)
    first = q.enqueue_text("s", "one").batch.enqueue_seq
    with pytest.raises(InvalidInput, match="at least one payload"):
        q.enqueue(make_draft("s", []))
    with pytest.raises(InvalidInput, match="out of range"):
        q.enqueue(make_draft("s", [{"type": "turn_input", "input": {"items": [{"type": "text", "text": "x"}]}}]),
                  delay_ms=-1)
    assert q.enqueue_text("s", "two").batch.enqueue_seq == first + 1
