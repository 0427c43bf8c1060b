"""The PostgreSQL write path in a store that has been busy for a while: the audit log at its
retention, a session's rows churned by claims and completes, no vacuum since (autovacuum may
be off, and is a minute apart at best). Each operation must cost what it cost on a new store:
no statement may walk the rows deleted since the last vacuum.

Also the statements sent through libpq directly (`turnq/store/pgpipe.py`): parameters and
results of every type the write path uses, and a server error mid-pipeline.
"""

from __future__ import annotations

import pytest
from backends import postgres_url

from turnq import Queue
from turnq.store import open_store, pg_schema, pgpipe

NOW = 1767225600000


@pytest.fixture
def url():
    with postgres_url() as location:
        yield location


def _connect(url):
    import psycopg

    store = open_store(url)
    conn = psycopg.connect(store.conninfo, autocommit=True)
    conn.execute(f'SET search_path TO "{store.schema}"')
    return conn


#: turnq_append_log as revision 1 had it: one range delete, "id <= last - keep".
_REVISION_1 = """CREATE OR REPLACE FUNCTION turnq_append_log(entries text[], keep bigint) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    n integer := coalesce(cardinality(entries), 0);
    last_id bigint;
BEGIN
    PERFORM pg_current_xact_id();
    FOR i IN 1..n LOOP
        last_id := nextval('turnq_log_ids');
        IF i > n - keep THEN
            INSERT INTO turnq_log (id, entry) VALUES (last_id, entries[i]);
        END IF;
    END LOOP;
    IF last_id IS NOT NULL THEN
        DELETE FROM turnq_log WHERE id IN
            (SELECT id FROM turnq_log WHERE id <= last_id - keep FOR UPDATE SKIP LOCKED);
    END IF;
END
$fn$"""


def _scans_of_the_log_by_appends(conn, appends, keep):
    """Sequential scans and rows fetched by index from turnq_log by `appends` calls of
    turnq_append_log (PostgreSQL's per-transaction counters)."""
    counters = ("SELECT seq_scan, coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables "
                "WHERE relname = 'turnq_log' AND schemaname = current_schema()")
    with conn.transaction():  # (the counters also hold earlier transactions' not yet flushed)
        before = conn.execute(counters).fetchone()
        for n in range(appends):
            conn.execute("SELECT turnq_append_log(ARRAY[%s], %s)", (f'{{"op":"x{n}"}}', keep))
        after = conn.execute(counters).fetchone()
    return after[0] - before[0], after[1] - before[1]


def test_the_log_at_its_retention_is_trimmed_through_the_index_one_row_an_entry(url):
    Queue(url, now=NOW).enqueue_text("s", "x")  # creates the store
    with _connect(url) as conn:
        keep = 200
        with conn.transaction():  # the log at its retention, then 2,000 rows deleted, no vacuum
            for n in range(keep + 2_000):
                conn.execute("SELECT turnq_append_log(ARRAY['{}'], %s)", (keep,))
        seq_scans, fetched = _scans_of_the_log_by_appends(conn, 50, keep)
        assert seq_scans == 0
        assert fetched <= 50 * 2  # each append: the row it pushes out (not the 2,000 dead ones)
        assert conn.execute("SELECT count(*) FROM turnq_log").fetchone()[0] == keep


def test_the_first_revision_of_the_log_function_walked_the_whole_table(url):
    """What the test above guards against, shown on revision 1's body."""
    Queue(url, now=NOW).enqueue_text("s", "x")
    with _connect(url) as conn:
        conn.execute(_REVISION_1)
        with conn.transaction():
            for n in range(2_200):
                conn.execute("SELECT turnq_append_log(ARRAY['{}'], 200)")
        seq_scans, fetched = _scans_of_the_log_by_appends(conn, 50, 200)
        assert seq_scans > 0 or fetched > 50 * 2


def test_a_store_with_an_older_log_function_gets_the_new_one_from_its_next_writer(url):
    Queue(url, now=NOW).enqueue_text("s", "x")
    with _connect(url) as conn:
        conn.execute(_REVISION_1)  # as a store written by turnq 1.0 has it: no comment
        conn.execute("COMMENT ON FUNCTION turnq_append_log(text[], bigint) IS NULL")
        assert conn.execute(pg_schema.LOG_FUNCTION_IN_STORE).fetchone()[0] is None
        assert open_store(url).read().next_seq == 2  # a reader changes nothing
        assert conn.execute(pg_schema.LOG_FUNCTION_IN_STORE).fetchone()[0] is None
        Queue(url, now=NOW).enqueue_text("s", "y")
        assert conn.execute(pg_schema.LOG_FUNCTION_IN_STORE).fetchone()[0] == "turnq_append_log r2"
        assert "new_id - keep" in conn.execute("SELECT prosrc FROM pg_proc WHERE proname = 'turnq_append_log' "
                                            "AND pronamespace = current_schema()::regnamespace").fetchone()[0]
    assert [e["op"] for e in open_store(url).read_log()] == ["enqueue", "enqueue"]


def test_rows_the_exact_trim_missed_are_swept_at_the_next_1024_boundary(url):
    """A row still in flight when its id + keep was taken stays behind the exact delete (and so
    do rows kept under a larger keep): the sweep every 1024 ids takes them."""
    Queue(url, now=NOW).enqueue_text("s", "x")
    with _connect(url) as conn:
        conn.execute("INSERT INTO turnq_log (id, entry) VALUES (3, '{\"op\":\"late\"}')")  # left behind
        conn.execute("SELECT setval('turnq_log_ids', 1000)")
        for _ in range(10):  # ids 1001..1010, keep 5: each deletes id - 5 (none of them is 3)
            conn.execute("SELECT turnq_append_log(ARRAY['{}'], 5)")
        assert conn.execute("SELECT min(id) FROM turnq_log").fetchone()[0] == 1
        for _ in range(20):  # crosses 1024: the sweep
            conn.execute("SELECT turnq_append_log(ARRAY['{}'], 5)")
        ids = [row[0] for row in conn.execute("SELECT id FROM turnq_log ORDER BY id")]
        assert ids == list(range(1026, 1031))


def test_several_entries_in_one_append_each_push_one_out(url):
    Queue(url, now=NOW).enqueue_text("s", "x")
    with _connect(url) as conn:
        for _ in range(4):
            conn.execute("SELECT turnq_append_log(ARRAY['{}', '{}', '{}'], 5)")
        ids = [row[0] for row in conn.execute("SELECT id FROM turnq_log ORDER BY id")]
        assert ids == list(range(9, 14))  # ids 1 (the enqueue) to 13; the newest 5 kept


def test_a_churned_sessions_rows_are_read_without_a_bitmap_scan(url):
    """Every claim and complete leaves a dead row version; a bitmap scan of the session's index
    entries visits all of them until a vacuum. The write transaction reads through an index scan."""
    queue = Queue(url, now=NOW)
    queue.enqueue_text("s", "x")
    with _connect(url) as conn:
        conn.execute("INSERT INTO turnq_batches SELECT 'dead-' || n, 's', 1000 + n, '{}', 0 "
                     "FROM generate_series(1, 3000) AS n")
        conn.execute("DELETE FROM turnq_batches WHERE batch_id LIKE 'dead-%'")
    store = open_store(url)
    with store.transaction("s") as state:
        assert [len(batches) for batches in state.sessions.values()] == [1]  # the live one
        plan = "\n".join(row[0] for row in store._conn.execute(
            "EXPLAIN SELECT batch_id FROM turnq_batches WHERE session_id = 's' ORDER BY enqueue_seq FOR UPDATE"))
    assert "Bitmap" not in plan, plan
    assert "Index Scan" in plan, plan


@pytest.mark.parametrize("value", ["plain", "quote ' and \" and \\ back", "ünïcödé ✓", "", "{braces,}", "NULL"])
def test_pgpipe_sends_and_reads_text_arrays_and_numbers_as_they_are(url, value):
    Queue(url, now=NOW).enqueue_text("s", "x")
    with _connect(url) as conn:
        pipe = pgpipe.Pipeline(conn, pgpipe.Prepared())
        pipe.add("SELECT %s::text, %s::numeric(20), %s::bigint, %s::boolean, NULL::text", (value, 2**64 - 1, -7, False))
        pipe.add("SELECT s FROM unnest(%s::text[]) WITH ORDINALITY AS t(s, n) ORDER BY n", ([value, None, "z"],))
        first, second = pipe.run()
        assert first == [(value, 2**64 - 1, -7, False, None)]
        assert second == [(value,), (None,), ("z",)]


def test_pgpipe_refuses_nul_and_raises_the_first_server_error_after_reading_all(url):
    import psycopg

    Queue(url, now=NOW).enqueue_text("s", "x")
    with _connect(url) as conn:
        prepared = pgpipe.Prepared()
        pipe = pgpipe.Pipeline(conn, prepared)
        with pytest.raises(psycopg.DataError):
            pipe.add("SELECT %s::text", ("a\x00b",))
        pipe = pgpipe.Pipeline(conn, prepared)
        pipe.add("BEGIN")
        pipe.add("SELECT 1 / %s::int", (0,))
        pipe.add("SELECT 2")
        with pytest.raises(psycopg.errors.DivisionByZero):
            pipe.run()
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        conn.execute("ROLLBACK")
        pipe = pgpipe.Pipeline(conn, prepared)  # the connection and its prepared statements go on
        pipe.add("SELECT 2")
        pipe.add("SELECT 1 / %s::int", (1,))
        assert pipe.run() == [[(2,)], [(1,)]]


HOSTILE_SESSIONS = ['quote " back \\ slash', "{a,b}", "NULL", "it's", "ünï ✓ \x1b[31m", "x" * 2000]


@pytest.mark.parametrize("session", HOSTILE_SESSIONS)
def test_hostile_session_ids_go_through_the_write_path_and_the_notify_payload_exactly(url, session):
    queue = Queue(url, now=NOW)
    queue.enqueue_text("warm", "x")  # the tables exist before the listener starts
    with _connect(url) as listener:
        channel = listener.execute("SELECT 'turnq_' || left(md5(current_schema()), 16)").fetchone()[0]
        listener.execute(f'LISTEN "{channel}"')
        batch = queue.enqueue_text(session, "hello", source_key=session).batch
        claim = queue.claim(session, owner=session)
        assert claim is not None and [b.batch_id for b in claim.batches] == [batch.batch_id]
        queue.complete(claim)
        assert queue.enqueue_text(session, "hello", source_key=session).outcome == "replayed_tombstone"
        payloads = [n.payload for n in listener.notifies(timeout=1.0, stop_after=2)]
    assert payloads == [session, session]  # the enqueue's and the complete's
    state = open_store(url).read(session)
    assert state.sessions.get(session, []) == []
    assert [t.source_key for t in state.tombstones[session]] == [session]


def test_a_connection_lost_mid_transaction_is_one_write_error_and_changes_nothing(url):
    from turnq import StoreUnwritable

    store = open_store(url)
    queue = Queue(store, now=NOW)
    queue.enqueue_text("s", "x")
    with _connect(url) as other:
        with pytest.raises(StoreUnwritable, match="lost the connection"):
            with store.transaction("s") as state:  # the first pipeline went through
                state.sessions["s"].clear()
                state.changed = True
                other.execute("SELECT pg_terminate_backend(%s)", (store._conn.info.backend_pid,))
    assert len(queue.list("s")) == 1  # nothing was written, and the next operation connects again
    assert queue.claim("s", owner="w") is not None


def test_an_interrupted_pipeline_leaves_no_half_read_connection_behind(url, monkeypatch):
    """Ctrl-C while results are still being read: the connection (in pipeline mode, results
    unread) is closed, so the next operation starts on a new one instead of failing on it."""
    store = open_store(url)
    queue = Queue(store, now=NOW)
    queue.enqueue_text("s", "x")
    calls = []

    def interrupted(*args):
        calls.append(args)
        raise KeyboardInterrupt

    monkeypatch.setattr(pgpipe.select, "select", interrupted)
    with pytest.raises(KeyboardInterrupt):
        queue.enqueue_text("s", "y")
    monkeypatch.undo()
    assert calls
    assert store._conn is None or store._conn.closed
    assert queue.claim("s", owner="w") is not None  # a new connection
    assert len(queue.list("s")) in (1, 2)  # the server may have committed the cut-short enqueue


def test_a_newer_log_function_is_left_to_the_newer_turnq_that_wrote_it(url):
    Queue(url, now=NOW).enqueue_text("s", "x")
    with _connect(url) as conn:
        conn.execute(_REVISION_1)  # stands in for a newer body
        conn.execute("COMMENT ON FUNCTION turnq_append_log(text[], bigint) IS 'turnq_append_log r9'")
        Queue(url, now=NOW).enqueue_text("s", "y")
        assert conn.execute(pg_schema.LOG_FUNCTION_IN_STORE).fetchone()[0] == "turnq_append_log r9"
        assert "last_id - keep" in conn.execute("SELECT prosrc FROM pg_proc WHERE proname = 'turnq_append_log' "
                                                "AND pronamespace = current_schema()::regnamespace").fetchone()[0]


@pytest.mark.parametrize(("comment", "older"), [(None, True), ("", True), ("someone's note", True),
                                                ("turnq_append_log r1", True), ("turnq_append_log r2", False),
                                                ("turnq_append_log r10", False)])
def test_which_log_function_revisions_are_older(comment, older):
    assert pg_schema.log_function_is_older(comment) is older


def test_a_writer_that_does_not_own_the_log_function_keeps_the_old_body_and_writes(url):
    """The store's owner made it; another role with rights on the tables writes with this turnq."""
    import psycopg

    Queue(url, now=NOW).enqueue_text("s", "x")
    store = open_store(url)
    role = f"turnq_writer_{store.schema[-12:]}"
    with _connect(url) as conn:
        conn.execute(_REVISION_1)
        conn.execute("COMMENT ON FUNCTION turnq_append_log(text[], bigint) IS NULL")
        conn.execute(f"CREATE ROLE {role} LOGIN")
        try:
            conn.execute(f'GRANT USAGE ON SCHEMA "{store.schema}" TO {role}')
            conn.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "{store.schema}" TO {role}')
            conn.execute(f'GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA "{store.schema}" TO {role}')
            if "://postgres@" not in url:
                pytest.skip("needs the test server's URL with user postgres, to swap the user in it")
            other = url.replace("://postgres@", f"://{role}@", 1)
            batch = Queue(other, now=NOW).enqueue_text("s", "y").batch
            assert batch.enqueue_seq == 2
            assert conn.execute(pg_schema.LOG_FUNCTION_IN_STORE).fetchone()[0] is None  # not replaced
            assert [e["op"] for e in open_store(url).read_log()] == ["enqueue", "enqueue"]
        finally:
            with psycopg.connect(store.conninfo, autocommit=True) as admin:
                admin.execute(f"DROP OWNED BY {role}")
                admin.execute(f"DROP ROLE {role}")
