"""The PostgreSQL backend's own promises (the shared ones are in test_store_conformance.py and
test_backends_cli.py): schema created once under an advisory lock and versioned; a session's
lock serialises its writers while other sessions go on (enqueuers too: counters are sequences);
a version 1 store is upgraded by a write; u64 counters above 2^63 work; lock timeouts are
StoreBusy; connection failures are one line, exit 7 or 9.

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
    assert dict(sql(url, "SELECT key, value FROM turnq_meta")) == {"schema_version": 3, "enqueue_seq_offset": 0}
    # The counters live in sequences (no row every writer locks): both have given out 1.
    assert sql(url, "SELECT last_value, is_called FROM turnq_enqueue_seq") == [(1, True)]
    assert sql(url, "SELECT last_value, is_called FROM turnq_log_ids") == [(1, True)]
    assert _has_key_index(url)  # version 3: the tombstone lookup by (session, source key)
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


def test_enqueuers_of_different_sessions_never_wait_for_each_other(url):
    q = Queue(url, now=NOW)
    q.enqueue_text("a", "first")
    holder = open_store(url)
    entered, release = threading.Event(), threading.Event()

    def enqueue_and_hold():
        from turnq import engine
        from turnq.api import make_draft

        with holder.transaction("a") as state:
            draft = make_draft("a", [{"type": "turn_input", "input": {"items": [{"type": "text", "text": "x"}]}}])
            assert engine.enqueue(state, draft, NOW).batch.enqueue_seq == 2
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=enqueue_and_hold)
    thread.start()
    try:
        assert entered.wait(10)
        other = Queue(url, now=NOW, lock_timeout_ms=200)
        # Version 1 locked a counter row here until the holder committed (StoreBusy); now the
        # enqueue takes the next value of the sequence at once, and its log entry goes in too.
        assert other.enqueue_text("b", "goes on").batch.enqueue_seq == 3
        assert [e["id"] for e in other.store.read_log()] == [1, 2]  # the holder takes its log id at commit
    finally:
        release.set()
        thread.join()
    assert Queue(url, now=NOW).enqueue_text("b", "after").batch.enqueue_seq == 4
    assert [b.enqueue_seq for b in Queue(url, now=NOW).list("a")] == [1, 2]
    assert [e["id"] for e in open_store(url).read_log()] == [1, 2, 3]  # (the holder logged nothing)


def test_a_newer_schema_is_refused_exit_7(url):
    Queue(url, now=NOW).enqueue_text("s", "x")
    sql(url, "UPDATE turnq_meta SET value = 4 WHERE key = 'schema_version'")
    for args in (("inspect", "s"), ("enqueue", "s", "--text", "y")):
        code, out, err = cli(*args, store=url)
        assert code == 7 and out == "" and "newer turnq (schema version 4" in err and err.count("\n") == 1
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


def test_setting_the_counter_in_a_session_transaction(url):
    q = Queue(url, now=NOW)
    q.enqueue_text("a", "x")
    store = open_store(url)
    with store.transaction("b") as state:
        state.next_seq = 10  # as a fixture builder might (written under the store lock)
        state.changed = True
        assert state.next_seq == 10
    assert Queue(url, now=NOW).enqueue_text("c", "y").batch.enqueue_seq == 10
    assert store.read().next_seq == 11


def _has_key_index(url):
    return sql(url, "SELECT count(*) FROM pg_indexes WHERE indexname = 'turnq_tombstones_key' "
                    "AND schemaname = current_schema()") == [(1,)]


def _make_version_2(url):
    """Turn a fresh version 3 store back into the layout version 2 had (no key index)."""
    sql(url, "DROP INDEX turnq_tombstones_key")
    sql(url, "UPDATE turnq_meta SET value = 2 WHERE key = 'schema_version'")


def _make_version_1(url, next_seq, next_log_id):
    """Turn a fresh version 3 store back into the layout version 1 had."""
    _make_version_2(url)
    sql(url, "DROP FUNCTION turnq_append_log(text[], bigint)")
    sql(url, "DROP SEQUENCE turnq_enqueue_seq")
    sql(url, "DROP SEQUENCE turnq_log_ids")
    sql(url, "DELETE FROM turnq_meta WHERE key = 'enqueue_seq_offset'")
    sql(url, "INSERT INTO turnq_meta VALUES ('next_enqueue_seq', %s), ('next_log_id', %s)", next_seq, next_log_id)
    sql(url, "UPDATE turnq_meta SET value = 1 WHERE key = 'schema_version'")


def test_a_version_1_store_is_read_then_upgraded_by_its_first_write(url):
    big = 2**63 + 5  # beyond bigint: the offset carries it
    q = Queue(url, now=NOW)
    q.enqueue_text("s", "x")
    _make_version_1(url, big, 7)
    assert open_store(url).read().next_seq == big  # reads do not upgrade (they never write)
    assert Queue(url, now=NOW).enqueue_text("s", "y").batch.enqueue_seq == big
    assert dict(sql(url, "SELECT key, value FROM turnq_meta")) == {"schema_version": 3, "enqueue_seq_offset": big - 1}
    assert _has_key_index(url)
    assert Queue(url, now=NOW).enqueue_text("t", "z").batch.enqueue_seq == big + 1
    assert [e["id"] for e in open_store(url).read_log()] == [1, 7, 8]
    assert open_store(url).raw_document()["next_enqueue_seq"] == big + 2


def test_a_version_2_store_is_read_then_upgraded_by_its_first_write(url):
    q = Queue(url, now=NOW)
    q.complete(q.claim(q.enqueue_text("s", "x", source_key="k").batch.session_id))
    _make_version_2(url)
    assert [t.source_key for t in open_store(url).read("s").tombstones["s"]] == ["k"]
    assert not _has_key_index(url)  # reads do not upgrade (they never write)
    assert Queue(url, now=NOW).enqueue_text("s", "x", source_key="k").outcome == "replayed_tombstone"
    assert _has_key_index(url) and sql(url, "SELECT value FROM turnq_meta WHERE key = 'schema_version'") == [(3,)]
    assert Queue(url, now=NOW).enqueue_text("s", "y").batch.enqueue_seq == 2  # the sequences are kept


def test_counters_near_the_u64_limit_round_trip(url, tmp_path):
    source = tmp_path / "big.json"
    Queue(str(source), now=NOW).enqueue_text("s", "x")
    document = __import__("json").loads(source.read_text())
    document["batches"][0]["batch"]["enqueue_seq"] = 2**64 - 4
    document["next_enqueue_seq"] = 2**64 - 3
    store = open_store(url)
    Queue(store, now=NOW).enqueue_text("warm", "up")  # the sequence has moved: the offset makes up for it
    sql(url, "DELETE FROM turnq_batches")
    store.replace_document(document)
    assert Queue(url, now=NOW).enqueue_text("s", "y").batch.enqueue_seq == 2**64 - 3
    assert Queue(url, now=NOW).enqueue_text("t", "z").batch.enqueue_seq == 2**64 - 2
    assert open_store(url).raw_document()["next_enqueue_seq"] == 2**64 - 1


def test_the_sequence_stops_at_the_u64_limit(url):
    from turnq.store import pg_schema

    store = open_store(url)
    Queue(store, now=NOW).enqueue_text("warm", "up")
    with store.transaction(None) as state:
        state.next_seq = 2**64 - 1
        state.changed = True
    take = [int(store._conn.execute(pg_schema.TAKE_SEQ).fetchone()[0]) for _ in range(3)]
    # At the limit: the same value, nothing taken (the engine refuses an enqueue there, exit 10, and
    # a taken value would leave next_enqueue_seq at 2^64, outside u64, as nextval is not rolled back)
    assert take == [2**64 - 1, 2**64 - 1, 2**64 - 1]
    assert store.read().next_seq == 2**64 - 1
