"""The SQLite backend's own promises (the shared ones are in test_store_conformance.py and
test_backends_cli.py): WAL, a versioned schema, BEGIN IMMEDIATE with a lock timeout, reads
that never create the file, one session's rows loaded and only changed rows written."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from backends import sqlite_url
from typer.testing import CliRunner

from turnq import Queue, StoreBusy, StoreUnreadable, StoreUnwritable
from turnq.cli import app
from turnq.store import JsonFileStore, open_store
from turnq.store.sqlite import SqliteStore

NOW = 1767225600000
RUNNER = CliRunner()


@pytest.fixture
def url(tmp_path):
    return sqlite_url(tmp_path)


@pytest.fixture
def db(tmp_path):
    return tmp_path / "turnq.db"


def cli(*args, store):
    result = RUNNER.invoke(app, [*map(str, args), "--store", store, "--now", str(NOW)],
                           env={"FORCE_COLOR": None, "COLUMNS": "100"})
    return result.exit_code, result.stdout, result.stderr


def raw(db, query, *params):
    with sqlite3.connect(db) as conn:
        return conn.execute(query, params).fetchall()


def test_reading_never_creates_the_file(url, db):
    store = open_store(url)
    assert store.read().session_ids() == [] and store.read_log() == []
    assert store.exists() is False
    assert cli("inspect", "--json", store=url)[0] == 5  # not there: refused, not read as empty
    assert not db.exists()


def test_first_write_creates_a_versioned_wal_schema(url, db):
    Queue(url, now=NOW).enqueue_text("s", "x")
    assert raw(db, "PRAGMA journal_mode") == [("wal",)]
    meta = dict(raw(db, "SELECT key, value FROM turnq_meta"))
    assert meta == {"schema_version": 2, "next_enqueue_seq": 2, "next_log_id": 2}
    tables = {name for (name,) in raw(db, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"turnq_meta", "turnq_batches", "turnq_tombstones", "turnq_log"}
    plan = " ".join(str(row) for row in raw(db, "EXPLAIN QUERY PLAN SELECT * FROM turnq_batches "
                                                "WHERE session_id = 's' ORDER BY enqueue_seq"))
    assert "turnq_batches_session" in plan  # the per-session index, no table scan


def test_rows_hold_the_same_json_as_the_json_store(url, db, tmp_path):
    for location in (url, str(tmp_path / "twin.json")):
        q = Queue(location, now=NOW)
        q.enqueue_text("s", "héllo", source_key="host:1", merge_key={"group": "g"})
        q.claim("s", owner="w")
    ((batch_json, fencing, owner),) = raw(db, "SELECT batch, fencing_counter, owner_id FROM turnq_batches")
    document = json.loads((tmp_path / "twin.json").read_text())
    assert json.loads(batch_json) == document["batches"][0]["batch"]
    line = next(ln for ln in (tmp_path / "twin.json").read_text().splitlines() if '"batch"' in ln)
    assert batch_json in line  # byte for byte, as the JSON store writes it
    assert (fencing, owner) == (1, "w")
    assert open_store(url).raw_document() == document


def test_a_transaction_loads_one_session_and_writes_only_changed_rows(url, db):
    store = open_store(url, log_enabled=False)
    q = Queue(store, now=NOW)
    q.enqueue_many([_draft("other", n) for n in range(300)])
    q.enqueue_text("s", "mine")
    q.enqueue_text("s", "mine too", slot_policy="exclusive")
    with store.transaction("s") as state:
        assert state.session_ids() == ["s"] and len(state.session("s")) == 2
    conn = store._conn
    before = conn.total_changes
    claim = q.claim("s", max_batches=1)
    assert conn.total_changes - before == 1  # one batch row updated, nothing else
    before = conn.total_changes
    q.complete(claim)
    assert conn.total_changes - before == 1  # one row deleted (no source key: no tombstone)
    before = conn.total_changes
    q.enqueue_text("s", "new")
    assert conn.total_changes - before == 2  # the new row and the enqueue counter


def _draft(session, n):
    from turnq.api import make_draft

    return make_draft(session, [{"type": "turn_input", "input": {"items": [{"type": "text", "text": str(n)}]}}])


def test_a_failed_operation_writes_nothing(url, db):
    store = open_store(url)
    Queue(store, now=NOW).enqueue_text("s", "x")
    before = raw(db, "SELECT * FROM turnq_batches"), raw(db, "SELECT * FROM turnq_meta")
    with pytest.raises(RuntimeError), store.transaction("s") as state:
        state.remove("s", {state.session("s")[0].batch_id})
        state.next_seq = 99
        raise RuntimeError("boom")
    assert (raw(db, "SELECT * FROM turnq_batches"), raw(db, "SELECT * FROM turnq_meta")) == before


def test_a_held_write_lock_is_store_busy_exit_8(url, db):
    Queue(url, now=NOW).enqueue_text("s", "x")
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreBusy, match="busy"):
            Queue(url, now=NOW, lock_timeout_ms=50).claim("s")
        code, out, err = cli("claim", "s", "--lock-timeout", "50ms", store=url)
        assert code == 8 and out == "" and err.count("\n") == 1 and "busy" in err
        # Readers do not wait for the writer (WAL).
        assert len(Queue(url, now=NOW, lock_timeout_ms=50).list("s")) == 1
    finally:
        holder.rollback()
        holder.close()
    assert Queue(url, now=NOW).claim("s") is not None


def test_a_writer_killed_holding_the_lock_leaves_the_store_as_it_was(url, db, tmp_path):
    Queue(url, now=NOW).enqueue_text("s", "kept")
    code = textwrap.dedent(f"""
        import os
        from turnq.store import open_store
        store = open_store({url!r})
        with store.transaction("s") as state:
            state.remove("s", {{b.batch_id for b in state.session("s")}})
            state.next_seq = 50
            store._conn.execute("DELETE FROM turnq_batches")  # half-written, uncommitted
            os._exit(9)  # killed inside BEGIN IMMEDIATE
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert result.returncode == 9, result.stderr
    q = Queue(url, now=NOW, lock_timeout_ms=1000)
    assert [b.items[0].payload.input.items[0].text for b in q.list("s")] == ["kept"]
    assert q.enqueue_text("s", "next").batch.enqueue_seq == 2


def test_a_newer_schema_is_refused_exit_7(url, db):
    Queue(url, now=NOW).enqueue_text("s", "x")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE turnq_meta SET value = 3 WHERE key = 'schema_version'")
    before = db.read_bytes()
    for args in (("inspect",), ("enqueue", "s", "--text", "y")):
        code, out, err = cli(*args, store=url)
        assert code == 7 and out == "" and "newer turnq (schema version 3" in err and err.count("\n") == 1
    assert db.read_bytes() == before


@pytest.mark.parametrize("content, why", [
    (b'{"format": "turnq-store"}', "file is not a database"),
    (None, "without turnq's tables"),
])
def test_foreign_files_are_unreadable_exit_7(url, db, content, why):
    if content is None:
        with sqlite3.connect(db) as conn:
            conn.execute("CREATE TABLE other (x)")
    else:
        db.write_bytes(content)
    before = db.read_bytes()
    for args in (("inspect",), ("enqueue", "s", "--text", "y")):
        code, out, err = cli(*args, store=url)
        assert code == 7 and out == "" and why in err and "Traceback" not in err, err
    assert db.read_bytes() == before


def test_corrupt_batch_json_is_unreadable(url, db):
    Queue(url, now=NOW).enqueue_text("s", "x")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE turnq_batches SET batch = '{\"batch_id\": 1'")
    with pytest.raises(StoreUnreadable, match="JSON of batch"):
        open_store(url).read()
    assert isinstance(open_store(url).raw_document()["batches"][0]["batch"], str)  # doctor sees it raw


def test_a_missing_folder_is_unwritable_exit_9(tmp_path):
    url = sqlite_url(tmp_path / "nope", "q.db")
    with pytest.raises(StoreUnwritable, match="does not exist"):
        Queue(url, now=NOW).enqueue_text("s", "x")
    assert cli("enqueue", "s", "--text", "x", store=url)[0] == 9
    assert not (tmp_path / "nope").exists()


def test_a_directory_is_not_a_database(tmp_path):
    (tmp_path / "d.db").mkdir()
    code, _out, err = cli("inspect", store=sqlite_url(tmp_path, "d.db"))
    assert code == 7 and "directory" in err


def test_store_classes(url, tmp_path):
    assert isinstance(open_store(url), SqliteStore)
    assert isinstance(open_store(tmp_path / "q.json"), JsonFileStore)
    assert open_store(url).location == url


def test_u64_values_above_i64_survive(url, db):
    q = Queue(url, now=NOW)
    q.enqueue_text("s", "x", source_key="host:big")
    huge_ttl = 2**64 - 1 - NOW - 5  # expires just below u64 max: beyond SQLite's signed INTEGER
    claim = q.claim("s", ttl_ms=huge_ttl)
    assert claim.expires_at_epoch_ms == 2**64 - 6
    assert Queue(url, now=NOW).inspect("s").to_wire()["batches"][0]["claim"]["expires_at_epoch_ms"] == 2**64 - 6
    assert raw(db, "SELECT expires_at_ms FROM turnq_batches")[0][0] < 0  # two's complement in the column
    assert Queue(url, now=NOW).complete(claim).batch_ids == claim.batch_ids


def test_replace_document_for_doctor(url, db):
    store = open_store(url)
    assert store.raw_document() == {}  # as the JSON store says of a missing file
    q = Queue(store, now=NOW)
    q.enqueue_text("s", "x")
    q.claim("s", owner="w")
    document = store.raw_document()
    fixed = json.loads(json.dumps(document))
    fixed["batches"][0]["claim"] = None
    with pytest.raises(StoreBusy, match="changed while it was checked"):
        store.replace_document(fixed, expected={**document, "next_enqueue_seq": 9})
    backup = store.replace_document(fixed, backup_suffix="1", expected=document)
    assert backup == f"{db}.bak-1.json" and json.loads(Path(backup).read_text()) == document
    assert store.raw_document() == fixed
    assert Queue(url, now=NOW).claim("s").fencing_token == 2  # fencing counter kept
    with pytest.raises(StoreUnwritable, match="cannot put this document"):
        store.replace_document({"format": "nope"})


def test_a_forked_child_opens_its_own_connection(url):
    import multiprocessing

    q = Queue(url, now=NOW)
    q.enqueue_text("s", "x")
    parent_conn = q.store._conn

    def child():
        assert Queue(q.store, now=NOW).claim("s") is not None
        assert q.store._conn is not parent_conn

    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    process.join(30)
    assert process.exitcode == 0
    assert q.list("s")[0].batch_id and q.store._conn is parent_conn  # the parent's still works
    assert Queue(url, now=NOW).claim("s") is None  # the child's claim was committed


def test_decoded_batches_are_cached_but_broken_columns_still_refused(url, db):
    store = open_store(url)
    q = Queue(store, now=NOW)
    batch = q.enqueue_text("s", "x").batch
    q.claim("s", owner="w")
    first = store.read("s").session("s")[0]
    again = store.read("s").session("s")[0]
    assert again.batch is first.batch and again.lease == first.lease and again.lease.owner_id == "w"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE turnq_batches SET expires_at_ms = 'soon'")
    with pytest.raises(StoreUnreadable):
        store.read("s")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE turnq_batches SET expires_at_ms = ?, batch = replace(batch, '\"x\"', '\"y\"')",
                     (NOW + 1,))
    changed = store.read("s").session("s")[0]  # new JSON text: decoded afresh
    assert changed.batch.items[0].payload.input.items[0].text == "y" and changed.batch.batch_id == batch.batch_id


def test_a_claim_pointing_at_nothing_is_refused_as_in_the_json_store(url, db):
    q = Queue(url, now=NOW)
    q.enqueue_text("s", "x")
    q.claim("s")
    q.list("s")  # decoded once (and cached)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE turnq_batches SET claim_id = 'qwc:1:7'")  # a token above the fencing counter
    with pytest.raises(StoreUnreadable, match="matches no claim"):
        q.list("s")


def test_a_new_file_opened_while_another_process_holds_it_waits_for_the_wal_switch(tmp_path):
    """Several workers starting at once on a new store: the one that makes the file WAL needs it
    to itself, and SQLite refuses that at once (SQLITE_BUSY, no busy handler). It is tried again
    until the lock timeout instead of failing with exit 8 (the stress test met it 1 time in 30)."""
    import sqlite3
    import threading

    path = tmp_path / "q.db"
    path.touch()  # a new, empty store file, as another starting worker has just made it
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    threading.Timer(0.3, holder.rollback).start()
    queue = Queue(f"sqlite:///{path}", lock_timeout_ms=10_000)
    assert queue.enqueue_text("s", "first").batch.enqueue_seq == 1
    holder.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
