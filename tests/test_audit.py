"""The audit log: what the API records, the JSON backend's `PATH.log`, retention, turning it
off, and `turnq log` (table, JSON Lines, filters, --follow in a real process)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import NOW
from test_cli import cli, fails, json_lines

from turnq import BatchHeld, LeaseLost, NotFound, Queue
from turnq.clock import FixedClock
from turnq.store import JsonFileStore


@pytest.fixture
def clock():
    return FixedClock(NOW)


@pytest.fixture
def q(store_path, clock):
    return Queue(store_path, now=clock)


def log_of(q):
    return q.store.read_log()


def test_wake_and_refresh_tools_and_abandon_are_logged(q):
    made_wake = q.wake("s", "proc-1", 3, "ping")
    q.refresh_tools("s", "new tools")
    claim = q.claim("s", owner="w1")
    assert q.abandon(claim) == claim.batch_ids
    assert q.abandon(claim) == []
    entries = log_of(q)
    assert [(e["op"], e["outcome"]) for e in entries] == [
        ("wake", "ok"), ("refresh_tools", "ok"), ("claim", "ok"), ("abandon", "ok"), ("abandon", "nothing_held")]
    assert entries[0]["batch_ids"] == [made_wake.batch.batch_id]
    assert entries[0]["source_key"] == made_wake.batch.source_key
    assert entries[3]["owner_id"] == "w1" and entries[3]["fencing_token"] == claim.fencing_token


def test_refusals_of_renew_cancel_and_strict_replay_are_logged(q, clock):
    batch = q.enqueue_text("s", "x", source_key="k").batch
    claim = q.claim("s", owner="w1", ttl_ms=1000)
    with pytest.raises(BatchHeld):
        q.cancel("s", batch.batch_id)
    with pytest.raises(NotFound):
        q.cancel("s", "qwb:nope")
    clock.advance(2000)
    q.claim("s", owner="w2")
    with pytest.raises(LeaseLost):
        q.renew(claim)
    from turnq import SourceKeyConflict

    with pytest.raises(SourceKeyConflict):
        q.enqueue_text("s", "different", source_key="k", strict=True)
    refused = [e for e in log_of(q) if e["outcome"] == "refused"]
    assert [e["op"] for e in refused] == ["cancel", "cancel", "renew", "enqueue"]
    assert refused[0]["batch_ids"] == [batch.batch_id] and "held by 'w1'" in refused[0]["reason"]
    assert refused[2]["claim_id"] == claim.claim_id
    assert refused[3]["source_key"] == "k"


def test_bad_input_is_not_a_queue_event(q):
    from turnq import InvalidInput

    with pytest.raises(InvalidInput):
        q.claim("s", owner="")
    assert log_of(q) == []


def test_the_json_log_is_json_lines_beside_the_store(q, store_path):
    q.enqueue_text("s", "x")
    q.enqueue_text("t", "y")
    path = store_path.with_name("turnq.json.log")
    lines = path.read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [1, 2]
    assert json.loads(lines[1])["session_id"] == "t"


def test_appending_reads_only_the_tail_not_the_whole_log(q, store_path, monkeypatch):
    for n in range(5):
        q.enqueue_text("s", f"m{n}")

    def no_full_read(self, after_id=0):
        raise AssertionError("append read the whole log")

    monkeypatch.setattr(JsonFileStore, "read_log", no_full_read)
    q.enqueue_text("s", "one more")
    monkeypatch.undo()
    assert [e["id"] for e in log_of(q)] == [1, 2, 3, 4, 5, 6]


def test_a_torn_last_line_is_skipped_and_ids_go_on(q, store_path):
    q.enqueue_text("s", "a")
    path = store_path.with_name("turnq.json.log")
    with open(path, "ab") as handle:
        handle.write(b'{"id":2,"at_ms":1,"op":"enq')  # a crash mid-write
    assert [e["id"] for e in log_of(q)] == [1]
    q.enqueue_text("s", "b")
    assert [e["id"] for e in log_of(q)] == [1, 2]
    assert path.read_bytes().count(b"\n") == 3


def test_retention_rewrites_the_file_once_it_outgrows_the_limit(store_path):
    q = Queue(store_path, now=NOW, log_max_entries=20)
    path = store_path.with_name("turnq.json.log")
    for n in range(36):
        q.enqueue_text("s", f"m{n}")
    assert len(path.read_text().splitlines()) == 36  # 20 + slack (16): not trimmed yet
    assert [e["id"] for e in log_of(q)] == list(range(17, 37))
    q.enqueue_text("s", "trim now")
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == list(range(18, 38))


def test_log_disabled_by_the_api_writes_no_file(store_path):
    q = Queue(store_path, now=NOW, log_enabled=False)
    q.enqueue_text("s", "x")
    assert not store_path.with_name("turnq.json.log").exists()
    assert q.store.read_log() == []


# --------------------------------------------------------------------------- CLI


def test_turnq_log_off_and_max_entries_from_the_environment(store_path):
    cli("enqueue", "s", "--text", "a", env={"TURNQ_LOG": "off"})
    assert not store_path.with_name("turnq.json.log").exists()
    for n in range(3):
        cli("enqueue", "s", "--text", f"m{n}", env={"TURNQ_LOG_MAX_ENTRIES": "2"})
    entries = json_lines(cli("log", "--json", env={"TURNQ_LOG_MAX_ENTRIES": "2"}))
    assert [e["id"] for e in entries] == [2, 3]
    fails(cli("enqueue", "s", "--text", "x", env={"TURNQ_LOG": "maybe"}), 2, "TURNQ_LOG")
    fails(cli("log", env={"TURNQ_LOG_MAX_ENTRIES": "lots"}), 2, "TURNQ_LOG_MAX_ENTRIES")


def test_turnq_log_json_lines_and_filters():
    first = json.loads(cli("enqueue", "a", "--text", "x", "--json").stdout)["batch_id"]
    cli("enqueue", "b", "--text", "y", "--now", str(NOW + 60_000))
    cli("claim", "a", "--owner", "w1", "--now", str(NOW + 120_000))
    every = json_lines(cli("log", "--json"))
    assert [e["op"] for e in every] == ["enqueue", "enqueue", "claim"]
    assert [e["op"] for e in json_lines(cli("log", "a", "--json"))] == ["enqueue", "claim"]
    assert [e["id"] for e in json_lines(cli("log", "--batch", first[:12], "--json"))] == [1, 3]
    assert [e["id"] for e in json_lines(cli("log", "--since", str(NOW + 60_000), "--json"))] == [2, 3]
    assert cli("log", "--since", "2030-01-01T00:00:00Z", "--json").stdout == ""
    recent = json_lines(cli("log", "--since", "90s", "--json", "--now", str(NOW + 150_000)))
    assert [e["id"] for e in recent] == [2, 3]  # at or after NOW + 60s
    fails(cli("log", "--since", "yesterday-ish"), 2, "--since")


def test_turnq_log_table():
    cli("enqueue", "s", "--text", "x")
    cli("claim", "s", "--owner", "w1")
    result = cli("log")
    assert result.exit_code == 0, result.stderr
    assert "enqueue" in result.stdout and "claim" in result.stdout and "owner w1" in result.stdout
    assert "Audit log" in result.stdout
    empty = cli("log", "nobody")
    assert empty.exit_code == 0 and "No log entries." in empty.stdout


def _wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_log_follow_prints_entries_from_another_process_and_stops_on_ctrl_c(tmp_path):
    store = tmp_path / "q.json"
    env = {**os.environ, "TURNQ_STORE": str(store)}
    env.pop("TURNQ_NOW", None)
    turnq = [sys.executable, "-m", "turnq"]
    subprocess.run([*turnq, "enqueue", "s", "--text", "before"], env=env, check=True, capture_output=True)
    out_path = tmp_path / "follow.out"
    with open(out_path, "wb") as out:
        follower = subprocess.Popen([*turnq, "log", "--follow", "--json", "--interval", "50ms"], env=env,
                                    stdout=out, stderr=subprocess.PIPE)
        try:
            assert _wait_for(lambda: out_path.read_bytes().count(b"\n") >= 1)
            subprocess.run([*turnq, "enqueue", "s", "--text", "during"], env=env, check=True, capture_output=True)
            subprocess.run([*turnq, "claim", "s", "--owner", "w9"], env=env, check=True, capture_output=True)
            assert _wait_for(lambda: out_path.read_bytes().count(b"\n") >= 3)
            follower.send_signal(signal.SIGINT)
            _, err = follower.communicate(timeout=10)
        finally:
            if follower.poll() is None:
                follower.kill()
    assert follower.returncode == 130
    assert b"Traceback" not in err
    entries = [json.loads(line) for line in out_path.read_text().splitlines()]
    assert [(e["id"], e["op"]) for e in entries] == [(1, "enqueue"), (2, "enqueue"), (3, "claim")]
    assert entries[2]["owner_id"] == "w9"


def test_entries_longer_than_the_tail_read_still_number_on(q):
    for n in range(3):
        q.enqueue_text("s", "x", source_key="k" * 9000 + str(n))
    assert [e["id"] for e in log_of(q)] == [1, 2, 3]


def test_a_refusal_that_cannot_be_logged_still_reports_the_refusal(q, store_path, clock):
    q.enqueue_text("s", "x")
    stale = q.claim("s", ttl_ms=0)
    fresh = q.claim("s")
    log_path = store_path.with_name("turnq.json.log")
    log_path.unlink()
    log_path.mkdir()  # unwritable, even for root
    with pytest.raises(LeaseLost):
        q.complete(stale)
    assert "nothing was changed, but its audit-log entry was lost" in q.store.take_warnings()[0]
    # A change that happened is reported as done (a retry would do it twice), with a warning.
    done = q.complete(fresh)
    assert done.batch_ids == fresh.batch_ids and q.list("s") == []
    (warning,) = q.store.take_warnings()
    assert warning.startswith("the change was saved, but its audit-log entry was lost: cannot write audit log")
    assert q.store.take_warnings() == []
