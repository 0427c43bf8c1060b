"""`claim --wait` / `Queue.claim(wait_ms=…)`: block until work is claimable, wake promptly.

Real processes on every backend for the wake-up after another process's enqueue (the
latency is printed: run with -s to see it); the API for the deadline hints (a delay that
ends, a lease that runs out), the stop callback, and the PostgreSQL NOTIFY rules.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from backends import STORE_KINDS, fresh_store_url

from turnq import Queue, engine
from turnq.state import QueueState
from turnq.store import pgwait

#: Bounds are generous: 2 shared cores run many things at once. The measured figures are printed.
WAKE_BOUND_S = 5.0


@pytest.fixture(params=STORE_KINDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path):
    with fresh_store_url(request.param, tmp_path) as url:
        yield url


def _env(store: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TURNQ_")}
    env["TURNQ_STORE"] = store
    return env


def _turnq(*args: str) -> list[str]:
    return [sys.executable, "-m", "turnq", *args]


# ----------------------------------------------------------------- real processes, every backend


def test_claim_wait_wakes_promptly_after_an_enqueue_from_another_process(store_url: str) -> None:
    kind = "json" if "://" not in store_url else store_url.split(":")[0]
    Queue(store_url).enqueue_text("other", "not this session")  # the store exists; another session's work
    waiter = subprocess.Popen(_turnq("claim", "s", "--wait", "60s", "--json"), env=_env(store_url),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2.0)  # let it start and find nothing
        assert waiter.poll() is None, waiter.communicate()
        Queue(store_url).enqueue_text("s", "wake up")
        enqueued = time.monotonic()
        out, err = waiter.communicate(timeout=30)
        latency = time.monotonic() - enqueued
    finally:
        if waiter.poll() is None:
            waiter.kill()
    print(f"\nclaim --wait woke {latency * 1000:.0f} ms after the enqueue returned ({kind}; "
          "to the waiting process's exit)")
    assert waiter.returncode == 0, err
    assert '"text":"wake up"' in out
    assert latency < WAKE_BOUND_S


def test_claim_wait_times_out_with_exit_3_and_null(store_url: str) -> None:
    Queue(store_url).enqueue_text("other", "x")
    started = time.monotonic()
    done = subprocess.run(_turnq("claim", "s", "--wait", "700ms", "--json"), env=_env(store_url),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert done.stdout == "null\n" and done.stderr == ""
    assert time.monotonic() - started >= 0.7


def test_an_abandon_wakes_a_waiting_claimer(store_url: str) -> None:
    queue = Queue(store_url)
    queue.enqueue_text("s", "held")
    held = queue.claim("s", owner="a", ttl_ms=600_000)
    assert held is not None
    got: list = []
    thread = threading.Thread(target=lambda: got.append(Queue(store_url).claim("s", owner="b", wait_ms=30_000)))
    thread.start()
    time.sleep(0.5)
    assert thread.is_alive()  # the lease is 10 minutes long: only the abandon can wake it
    queue.abandon(held)
    released = time.monotonic()
    thread.join(timeout=30)
    assert got and got[0] is not None and got[0].fencing_token == 2
    assert time.monotonic() - released < WAKE_BOUND_S


# ----------------------------------------------------------------- deadline hints (no write wakes these)


def test_a_delay_that_ends_wakes_the_claimer_at_its_time(tmp_path: Path) -> None:
    queue = Queue(tmp_path / "q.json")
    queue.enqueue(queue_draft("s", "later"), delay_ms=800)
    started = time.monotonic()
    claim = queue.claim("s", wait_ms=20_000)
    took = time.monotonic() - started
    assert claim is not None and claim.batches[0].available_at_ms <= queue.clock.now_ms()
    assert 0.7 <= took < WAKE_BOUND_S


def test_a_lease_that_runs_out_wakes_the_claimer(tmp_path: Path) -> None:
    queue = Queue(tmp_path / "q.json")
    queue.enqueue_text("s", "x")
    first = queue.claim("s", owner="a", ttl_ms=800)
    started = time.monotonic()
    second = queue.claim("s", owner="b", wait_ms=20_000)
    assert second is not None and second.fencing_token == first.fencing_token + 1
    assert 0.7 <= time.monotonic() - started < WAKE_BOUND_S


def test_stop_ends_the_wait_early(tmp_path: Path) -> None:
    queue = Queue(tmp_path / "q.json")
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    assert queue.claim("s", wait_ms=30_000, stop=stop.is_set) is None
    assert time.monotonic() - started < 3


def test_next_change_is_the_earliest_delay_end_or_lease_expiry(tmp_path: Path) -> None:
    queue = Queue(tmp_path / "q.json", now=1_000)
    queue.enqueue(queue_draft("s", "a"), delay_ms=5_000)      # available at 6000
    queue.enqueue_text("s", "b")
    queue.claim("s", ttl_ms=2_000, max_batches=1)             # b held until 3000
    state = queue.store.read("s")
    assert engine.next_change_ms(state, "s", 1_000) == 3_000
    assert engine.next_change_ms(state, "s", 3_000) == 6_000  # at 3000 the lease is out: it is no hint
    assert engine.next_change_ms(state, "s", 6_000) is None
    assert engine.next_change_ms(state, "nobody", 1_000) is None


def test_wait_refuses_dry_run_and_bad_values(tmp_path: Path) -> None:
    env = _env(str(tmp_path / "q.json"))
    for args in (["--wait", "1s", "--dry-run"], ["--wait", "soon"]):
        done = subprocess.run(_turnq("claim", "s", *args), env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and done.stderr.startswith("turnq: error:") and "--wait" in done.stderr


def queue_draft(session: str, text: str):
    from turnq import make_draft

    return make_draft(session, [{"type": "turn_input", "input": {"items": [{"type": "text", "text": text}]}}])


# ----------------------------------------------------------------- PostgreSQL: NOTIFY only when needed


def _state_with(*entries: dict, changed: bool = True) -> QueueState:
    state = QueueState()
    state.changed = changed
    state.audit.extend(entries)
    return state


def test_claims_and_renewals_send_no_notification() -> None:
    claim = {"op": "claim", "session_id": "s", "outcome": "ok"}
    renew = {"op": "renew", "session_id": "s", "outcome": "ok"}
    assert pgwait.sessions_to_wake(_state_with(claim)) == []
    assert pgwait.sessions_to_wake(_state_with(claim, renew)) == []
    assert pgwait.sessions_to_wake(_state_with({"op": "enqueue", "session_id": "s"}, changed=False)) == []


def test_writes_that_may_free_work_notify_their_sessions() -> None:
    assert pgwait.sessions_to_wake(_state_with({"op": "enqueue", "session_id": "s"})) == ["s"]
    assert pgwait.sessions_to_wake(_state_with({"op": "abandon", "session_id": "b"},
                                               {"op": "enqueue", "session_id": "a"})) == ["a", "b"]
    assert pgwait.sessions_to_wake(_state_with({"op": "vacuum", "session_id": None})) == [""]
    assert pgwait.sessions_to_wake(_state_with()) == [""]  # changed, but nothing says where: wake all
    assert pgwait.sessions_to_wake(_state_with({"op": "enqueue", "session_id": "x" * 8000})) == [""]


def test_postgres_notifies_on_enqueue_and_not_on_claim() -> None:
    from backends import postgres_url

    with postgres_url() as url:
        queue = Queue(url)
        queue.enqueue_text("s", "first")  # creates the schema
        waiter = queue.store.change_waiter("s")
        try:
            assert waiter.wait(0.2) is False
            claim = Queue(url).claim("s")
            assert claim is not None
            assert waiter.wait(0.5) is False  # a claim frees nothing: no notification
            Queue(url).enqueue_text("other", "not mine")
            assert waiter.wait(0.5) is False  # another session's work: not for this waiter
            Queue(url).abandon(claim)
            assert waiter.wait(5) is True
        finally:
            waiter.close()


def _transactions_opened(queue: Queue, monkeypatch) -> list[str | None]:
    """The scope of every write transaction `queue` opens from now on, in order."""
    opened: list[str | None] = []
    real = queue.store.transaction

    def counting(session_id=None, **kwargs):
        opened.append(session_id)
        return real(session_id, **kwargs)

    monkeypatch.setattr(queue.store, "transaction", counting)
    return opened


def _close(*queues: Queue) -> None:
    for queue in queues:
        close = getattr(queue.store, "close", None)
        if close is not None:
            close()


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_a_waiting_claimer_woken_by_other_sessions_writes_looks_without_a_write_transaction(
        kind: str, tmp_path: Path, monkeypatch) -> None:
    """On the JSON file and SQLite, writes to other sessions wake every waiter (one change marker
    per store; PostgreSQL wakes only the session's). A woken waiter first looks read-only: it
    opens a claim transaction only when work is claimable for it, so idle workers do not take the
    store's write lock in turn at every write elsewhere."""
    with fresh_store_url(kind, tmp_path) as url:
        writer = Queue(url)
        writer.enqueue_text("b", "exists")  # the store exists; session a is empty
        waiter_queue = Queue(url)
        opened = _transactions_opened(waiter_queue, monkeypatch)
        got: list = []
        thread = threading.Thread(target=lambda: got.append(waiter_queue.claim("a", wait_ms=20_000)))
        thread.start()
        try:
            deadline = time.monotonic() + 10
            while not opened and time.monotonic() < deadline:
                time.sleep(0.01)
            for n in range(5):  # writes elsewhere: each wakes the waiter
                time.sleep(0.15)
                writer.enqueue_text("b", f"elsewhere {n}")
            time.sleep(0.3)
            assert opened == ["a"]  # only the first try; every wake since was a read
            writer.enqueue_text("a", "for the waiter")
            thread.join(timeout=15)
        finally:
            if thread.is_alive():
                writer.enqueue_text("a", "let it go")
                thread.join(timeout=15)
        assert got and got[0] is not None and got[0].session_id == "a"
        assert opened == ["a", "a"]  # and one transaction to claim it
        _close(writer, waiter_queue)


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_an_idle_waiter_sleeps_instead_of_polling_with_transactions(kind: str, tmp_path: Path, monkeypatch) -> None:
    """Nothing is written for a second: the waiter opens its first claim transaction and no
    other. (On SQLite it used to run one every 5 ms: its own empty COMMIT changed the store's
    change marker, which woke it at once.)"""
    with fresh_store_url(kind, tmp_path) as url:
        queue = Queue(url)
        queue.enqueue_text("b", "exists")
        opened = _transactions_opened(queue, monkeypatch)
        started = time.monotonic()
        assert queue.claim("a", wait_ms=1000) is None
        assert time.monotonic() - started >= 0.9
        assert opened == ["a"]
        assert queue.store.change_marker() == queue.store.change_marker()
        _close(queue)
