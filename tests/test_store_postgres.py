"""The PostgreSQL backend's own promises (the shared ones are in test_store_conformance.py and
test_backends_cli.py): schema created once under an advisory lock and versioned; a session's
lock serialises its writers while other sessions go on; the enqueue counter is locked only by
an enqueue; lock timeouts are StoreBusy; connection failures are one line, exit 7 or 9.

Each test has a schema of its own (tests/backends.py), dropped afterwards. Without a server the
tests skip, saying why — and fail when CI=true.
"""

from __future__ import annotations

import threading

import pytest
from backends import POSTGRES_URL, postgres_url
from typer.testing import CliRunner

from turnq import Queue, StoreBusy, StoreUnreadable, StoreUnwritable
from turnq.cli import app
from turnq.store import open_store
from turnq.store.postgres import PostgresStore

NOW = 1767225600000
RUNNER = CliRunner()


@pytest.fixture
def url():
    with postgres_url() as location:
        yield location


def cli(*args, store):
    result = RUNNER.invoke(app, [*map(str, args), "--store", store, "--now", str(NOW)],
                           env={"FORCE_COLOR": None, "COLUMNS": "100"})
    return result.exit_code, result.stdout, result.stderr


def sql(url, query, *params):
    import psycopg

    store = open_store(url)
    with psycopg.connect(store.conninfo, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{store.schema}"')
        cursor = conn.execute(query, params)
        return cursor.fetchall() if cursor.description else None


def _schema_exists(name):
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (name,)).fetchone()[0] == 1


def test_reading_creates_nothing(url):
    store = open_store(url)
    assert isinstance(store, PostgresStore)
    assert store.read().session_ids() == [] and store.read_log() == []
    assert store.exists() is False
    assert cli("inspect", "--json", store=url)[0] == 5  # not there: refused, not read as empty
    assert not _schema_exists(store.schema)


def test_first_write_creates_a_versioned_schema(url):
    Queue(url, now=NOW).enqueue_text("s", "x")
    assert dict(sql(url, "SELECT key, value FROM turnq_meta")) == {
        "schema_version": 1, "next_enqueue_seq": 2, "next_log_id": 2}
    plan = " ".join(r[0] for r in sql(url, "EXPLAIN SELECT * FROM turnq_batches WHERE session_id = 's' "
                                           "ORDER BY enqueue_seq"))
    assert "turnq_batches" in plan


def test_postgres_scheme_alias_and_redacted_location(url):
    alias = "postgres://" + url.split("://", 1)[1]
    Queue(alias, now=NOW).enqueue_text("s", "x")
    assert len(Queue(url, now=NOW).list("s")) == 1
    assert open_store("postgresql://u:secret@127.0.0.1:1/db").location == "postgresql://u:***@127.0.0.1:1/db"


def test_concurrent_first_use_creates_the_schema_once(url):
    errors, seqs = [], []

    def first_use(n):
        try:
            seqs.append(Queue(url, now=NOW).enqueue_text(f"s{n}", "x").batch.enqueue_seq)
        except Exception as err:  # noqa: BLE001 - collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=first_use, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and sorted(seqs) == [1, 2, 3, 4, 5, 6]


def test_a_session_lock_serialises_one_session_and_lets_others_go_on(url):
    holder = open_store(url)
    q = Queue(url, now=NOW)
    q.enqueue_text("s", "x")
    q.enqueue_text("t", "y")
    entered, release = threading.Event(), threading.Event()

    def hold():
        with holder.transaction("s") as state:
            assert state.session_ids() == ["s"]  # only its own session's rows are loaded
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert entered.wait(10)
        other = Queue(url, now=NOW, lock_timeout_ms=200)
        with pytest.raises(StoreBusy, match="busy"):
            other.claim("s")
        code, out, err = cli("claim", "s", "--lock-timeout", "200ms", store=url)
        assert code == 8 and out == "" and err.count("\n") == 1
        # Another session is not held up: a claim, and an enqueue (which locks the counter).
        assert other.claim("t") is not None
        assert other.enqueue_text("t", "z").batch.enqueue_seq == 3
        assert len(other.list("s")) == 1  # readers never wait
    finally:
        release.set()
        thread.join()
    assert Queue(url, now=NOW).claim("s") is not None


def test_an_enqueue_holds_the_counter_until_it_commits(url):
    q = Queue(url, now=NOW)
    q.enqueue_text("a", "first")
    q.enqueue_text("c", "claimable")
    holder = open_store(url)
    entered, release = threading.Event(), threading.Event()

    def enqueue_and_hold():
        from turnq import engine
        from turnq.api import make_draft

        with holder.transaction("a") as state:
            draft = make_draft("a", [{"type": "turn_input", "input": {"items": [{"type": "text", "text": "x"}]}}])
            assert engine.enqueue(state, draft, NOW).batch.enqueue_seq == 3
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=enqueue_and_hold)
    thread.start()
    try:
        assert entered.wait(10)
        other = Queue(url, now=NOW, lock_timeout_ms=200)
        with pytest.raises(StoreBusy):
            other.enqueue_text("b", "waits for the counter")
        assert other.claim("c") is not None  # a claim elsewhere does not touch the counter
    finally:
        release.set()
        thread.join()
    assert Queue(url, now=NOW).enqueue_text("b", "after").batch.enqueue_seq == 4


def test_a_newer_schema_is_refused_exit_7(url):
    Queue(url, now=NOW).enqueue_text("s", "x")
    sql(url, "UPDATE turnq_meta SET value = 2 WHERE key = 'schema_version'")
    for args in (("inspect", "s"), ("enqueue", "s", "--text", "y")):
        code, out, err = cli(*args, store=url)
        assert code == 7 and out == "" and "newer turnq (schema version 2" in err and err.count("\n") == 1
    assert sql(url, "SELECT count(*) FROM turnq_batches") == [(1,)]


def test_no_server_is_one_line_exit_7_for_reads_and_9_for_writes():
    pytest.importorskip("psycopg")  # (the dev extra installs it) no server needed: this one has none
    dead = "postgresql://postgres:pw@127.0.0.1:1/test?connect_timeout=2"
    code, out, err = cli("inspect", store=dead)
    assert code == 7 and out == "" and err.count("\n") == 1 and "cannot connect to store" in err
    assert "pw" not in err and "Traceback" not in err
    code, out, err = cli("enqueue", "s", "--text", "x", store=dead)
    assert code == 9 and err.count("\n") == 1 and "cannot connect" in err
    with pytest.raises(StoreUnreadable):
        open_store(dead).read()
    with pytest.raises(StoreUnwritable):
        Queue(dead, now=NOW).enqueue_text("s", "x")


def test_a_lost_connection_is_reopened(url):
    store = open_store(url)
    q = Queue(store, now=NOW)
    q.enqueue_text("s", "x")
    pid = store._conn.info.backend_pid
    sql(url, "SELECT pg_terminate_backend(%s)", pid)
    with pytest.raises((StoreUnreadable, StoreUnwritable)):
        q.list("s")
    assert len(q.list("s")) == 1  # the next operation connects again


def test_rows_and_raw_document_match_the_json_store(url, tmp_path):
    twin = tmp_path / "twin.json"
    for location in (url, str(twin)):
        q = Queue(location, now=NOW)
        q.enqueue_text("s", "héllo", source_key="host:1")
        q.complete(q.claim("s"))
        q.enqueue_text("s", "live", merge_key={"group": "g"})
        q.claim("s", owner="w")
    import json

    assert open_store(url).raw_document() == json.loads(twin.read_text())


def test_u64_values_above_i64_survive(url):
    q = Queue(url, now=NOW)
    q.enqueue_text("s", "x", source_key="host:big")
    claim = q.claim("s", ttl_ms=2**64 - 1 - NOW - 5)
    assert Queue(url, now=NOW).inspect("s").to_wire()["batches"][0]["claim"]["expires_at_epoch_ms"] == 2**64 - 6
    assert Queue(url, now=NOW).complete(claim).batch_ids == claim.batch_ids


def test_replace_document_for_doctor(url):
    store = open_store(url)
    assert store.raw_document() == {}
    q = Queue(store, now=NOW)
    q.enqueue_text("s", "x")
    q.claim("s", owner="w")
    document = store.raw_document()
    fixed = {**document, "batches": [{**document["batches"][0], "claim": None}]}
    with pytest.raises(StoreBusy):
        store.replace_document(fixed, expected={**document, "next_enqueue_seq": 9})
    assert store.replace_document(fixed, expected=document) is None  # no file to back up beside
    assert store.raw_document() == fixed


def test_setting_the_counter_in_a_session_transaction_locks_it_first(url):
    q = Queue(url, now=NOW)
    q.enqueue_text("a", "x")
    store = open_store(url)
    with store.transaction("b") as state:
        state.next_seq = 10  # as a fixture builder might
        state.changed = True
        assert state.loaded_seq == 2
    assert Queue(url, now=NOW).enqueue_text("c", "y").batch.enqueue_seq == 10
    with store.transaction("b") as state:
        assert state.seen_seq is None and state.session_ids() == []  # a claim-like scope: counter untouched
