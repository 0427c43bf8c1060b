"""Tombstones on every backend (spec/semantics.md, "Tombstones"): replay, vacuum and the store's
retention behave the same everywhere, and only an enqueue with a source key looks at them
(issue 16): claim, renew, abandon and complete never read one, on any backend."""

from __future__ import annotations

import json
import sqlite3

import pytest
from backends import fresh_store_url

from turnq import Queue, SourceKeyConflict
from turnq.clock import FixedClock
from turnq.store import MemoryStore, open_store
from turnq.store import fastcodec, rows

NOW = 1767225600000
HOUR = 3_600_000


@pytest.fixture
def store(any_store):
    """Every backend (conftest.any_store)."""
    return any_store


@pytest.fixture
def clock():
    return FixedClock(NOW)


@pytest.fixture
def q(store, clock):
    return Queue(store, now=clock)


def settle(q, session, key, text="x", *, cancel=False):
    batch = q.enqueue_text(session, text, source_key=key).batch
    if cancel:
        q.cancel(session, batch.batch_id)
    else:
        q.complete(q.claim(session))
    return batch


# ----------------------------------------------------------------- replay semantics, unchanged


def test_completed_and_cancelled_keys_replay_with_their_tombstone(q):
    done = settle(q, "s", "k:done")
    gone = settle(q, "s", "k:gone", cancel=True)
    settle(q, "other", "k:done")  # the same key in another session is another tombstone
    first = q.enqueue_text("s", "x", source_key="k:done")
    assert first.outcome == "replayed_tombstone" and first.batch == done and not first.payloads_differ
    assert first.tombstone.outcome == "completed" and first.tombstone.settled_at_ms == NOW
    second = q.enqueue_text("s", "y", source_key="k:gone")
    assert second.outcome == "replayed_tombstone" and second.batch == gone and second.payloads_differ
    assert second.tombstone.outcome == "cancelled"
    with pytest.raises(SourceKeyConflict):
        q.enqueue_text("s", "y", source_key="k:done", strict=True)
    assert q.list("s") == [] and q.claim("s") is None  # tombstones are not batches
    assert sorted(t.source_key for t in q.tombstones("s")) == ["k:done", "k:gone"]
    assert q.inspect("s").tombstone_count == 2 and q.inspect("other").tombstone_count == 1


def test_a_key_without_a_tombstone_is_new_and_a_live_one_replays_first(q):
    settle(q, "s", "k:1")
    live = q.enqueue_text("s", "live", source_key="k:2").batch
    assert q.enqueue_text("s", "again", source_key="k:2").outcome == "replayed"
    assert q.enqueue_text("s", "again", source_key="k:2").batch == live
    assert q.enqueue_text("s", "new", source_key="k:3").outcome == "enqueued"


def test_vacuum_frees_keys_by_age_per_session_or_everywhere(q, clock):
    old = settle(q, "s", "k:old")
    clock.advance("2h")
    settle(q, "s", "k:new")
    settle(q, "t", "k:t")
    removed = q.vacuum("s", older_than_ms=HOUR)
    assert [t.batch_id for t in removed] == [old.batch_id]
    assert q.enqueue_text("s", "x", source_key="k:old").outcome == "enqueued"
    assert q.enqueue_text("s", "x", source_key="k:new").outcome == "replayed_tombstone"
    assert sorted(t.source_key for t in q.vacuum()) == ["k:new", "k:t"]
    assert q.enqueue_text("t", "x", source_key="k:t").outcome == "enqueued"
    assert q.vacuum() == []


def test_a_vacuum_in_the_same_transaction_as_a_settle_drops_both():
    # The engine's own view of one transaction: a tombstone added, then vacuumed at once.
    from turnq import engine
    from turnq.state import QueueState

    state = QueueState()
    draft = Queue(MemoryStore()).enqueue_text("s", "x", source_key="k").batch  # any valid batch
    state.add_tombstone(engine.StoredTombstone(draft, "completed", NOW))
    assert state.find_tombstone("s", "k", NOW) is not None
    assert [t.source_key for t in engine.vacuum(state, "s", None, NOW)] == ["k"]
    assert state.find_tombstone("s", "k", NOW) is None and state.tombstones == {}


# ----------------------------------------------------------------- retention


def test_retention_is_a_store_setting_that_frees_keys_when_the_window_ends(q, store, clock):
    assert q.settings() == {"tombstone_retention_ms": None}
    assert q.set_setting("tombstone_retention_ms", HOUR) == {"tombstone_retention_ms": HOUR}
    first = settle(q, "s", "k")
    settle(q, "s", "k:later")  # ... settled at the same time
    clock.advance(HOUR - 1)
    assert q.enqueue_text("s", "x", source_key="k").outcome == "replayed_tombstone"  # inside the window
    clock.advance(1)  # settled at `now - retention`: outlived, as vacuum(session, retention) would drop it
    fresh = q.enqueue_text("s", "x", source_key="k")
    assert fresh.outcome == "enqueued" and fresh.batch.batch_id != first.batch_id
    # That write applied the retention to the session: both old tombstones are gone, and logged.
    assert q.tombstones("s") == []
    dropped = [e for e in store.read_log() if e["op"] == "vacuum"]
    assert len(dropped) == 1 and dropped[0]["retention_ms"] == HOUR
    assert sorted(dropped[0]["source_keys"]) == ["k", "k:later"]
    assert q.inspect("s").tombstone_retention_ms == HOUR
    assert q.overview().to_wire()["tombstone_retention_ms"] == HOUR


def test_an_outlived_tombstone_never_replays_even_before_a_write_drops_it(q, clock):
    q.set_setting("tombstone_retention_ms", HOUR)
    settle(q, "s", "k")
    clock.advance("2h")
    # A strict enqueue with other payloads is no conflict: the key is free again.
    assert q.enqueue_text("s", "other", source_key="k", strict=True).outcome == "enqueued"


def test_retention_off_keeps_tombstones_until_vacuum(q, store, clock):
    q.set_setting("tombstone_retention_ms", HOUR)
    assert q.set_setting("tombstone_retention_ms", None) == {"tombstone_retention_ms": None}
    settle(q, "s", "k")
    clock.advance("3650d")
    settle(q, "s", "k:2")
    assert q.enqueue_text("s", "x", source_key="k").outcome == "replayed_tombstone"
    assert len(q.tombstones("s")) == 2
    assert q.inspect("s").to_wire().get("tombstone_retention_ms", "absent") == "absent"


def test_retention_applies_only_to_the_session_written(q, clock):
    q.set_setting("tombstone_retention_ms", HOUR)
    settle(q, "a", "k")
    settle(q, "b", "k")
    clock.advance("2h")
    settle(q, "a", "k:2")  # a write of session a
    assert [t.source_key for t in q.tombstones("a")] == ["k:2"]
    assert [t.source_key for t in q.tombstones("b")] == ["k"]  # untouched until b is written
    assert q.enqueue_text("b", "x", source_key="k").outcome == "enqueued"  # ... yet outlived


def test_the_setting_survives_reopening_the_store(store, clock):
    if isinstance(store, MemoryStore):
        pytest.skip("nothing survives a memory store")
    Queue(store, now=clock).set_setting("tombstone_retention_ms", 7 * 24 * HOUR)
    again = Queue(open_store(store.location), now=clock)
    assert again.settings() == {"tombstone_retention_ms": 7 * 24 * HOUR}


def test_unknown_settings_and_bad_values_are_refused(q):
    from turnq import InvalidInput

    with pytest.raises(InvalidInput):
        q.set_setting("nope", 1)
    with pytest.raises(InvalidInput):
        q.set_setting("tombstone_retention_ms", -1)


# ----------------------------------------------------------------- nobody else reads tombstones


class _Spy:
    """Counts what a database RowState asks of its tombstone rows (rows.TombstoneRows)."""

    def __init__(self, monkeypatch):
        self.calls: list[str] = []
        original = rows.RowState.__init__
        spy = self

        def init(state, next_seq=1, tombstone_rows=None):
            if tombstone_rows is not None:
                tombstone_rows = _Recording(tombstone_rows, spy.calls)
            original(state, next_seq, tombstone_rows)

        monkeypatch.setattr(rows.RowState, "__init__", init)


class _Recording:
    def __init__(self, inner, calls):
        self.inner, self.calls = inner, calls

    def __getattr__(self, name):
        method = getattr(self.inner, name)

        def call(*args):
            self.calls.append(name)
            return method(*args)

        return call


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_claim_renew_abandon_complete_never_read_tombstones(kind, tmp_path, monkeypatch, clock):
    with fresh_store_url(kind, tmp_path) as url:
        q = Queue(url, now=clock)
        for n in range(20):
            settle(q, "s", f"k:{n}")
        q.set_setting("tombstone_retention_ms", 1000 * HOUR)  # retention on: a write may drop by range
        spy = _Spy(monkeypatch)
        q.enqueue_text("s", "no key")
        claim = q.claim("s")
        q.renew(claim)
        q.abandon(claim)
        q.complete(q.claim("s"))
        assert q.list("s") == []
        assert "find" not in spy.calls and "load" not in spy.calls
        assert set(spy.calls) == {"drop"}  # only retention's range delete, by enqueue and complete
        spy.calls.clear()
        assert q.enqueue_text("s", "again", source_key="k:3").outcome == "replayed_tombstone"
        assert spy.calls == ["find"]  # by key, once; a replay writes nothing
        q.store.close()


def test_sqlite_statements_of_a_cycle_touch_tombstones_only_to_insert(tmp_path, clock):
    url = f"sqlite:///{tmp_path / 'q.db'}"
    q = Queue(url, now=clock)
    for n in range(5):
        settle(q, "s", f"k:{n}")
    seen: list[str] = []
    q.store._connection(create=True).set_trace_callback(seen.append)
    batch = q.enqueue_text("s", "x", source_key="k:new").batch
    lookups = [s for s in seen if "turnq_tombstones" in s]
    assert len(lookups) == 1 and "source_key = " in lookups[0] and lookups[0].startswith("SELECT")
    seen.clear()
    claim = q.claim("s")
    q.renew(claim)
    assert not [s for s in seen if "turnq_tombstones" in s]
    q.complete(claim)
    touched = [s for s in seen if "turnq_tombstones" in s]
    assert len(touched) == 1 and touched[0].startswith("INSERT INTO turnq_tombstones")
    assert batch.batch_id in touched[0]
    plan = sqlite3.connect(tmp_path / "q.db").execute(f"EXPLAIN QUERY PLAN {lookups[0]}").fetchall()
    assert "turnq_tombstones_key" in str(plan)  # the lookup the store runs uses the key's index


def test_json_store_keeps_unread_tombstones_as_records(tmp_path, clock, monkeypatch):
    path = tmp_path / "turnq.json"
    q = Queue(path, now=clock)
    for n in range(30):
        settle(q, "s", f"k:{n}")
    before = [line for line in path.read_text().splitlines() if line.startswith('{"batch"')]
    built: list[object] = []
    original = fastcodec.fastwire.batch

    def counting(raw):
        built.append(raw)
        return original(raw)

    monkeypatch.setattr(fastcodec.fastwire, "batch", counting)
    q.enqueue_text("s", "x")  # no source key: no tombstone is looked at
    q.complete(q.claim("s"))
    assert not [raw for raw in built if raw.get("source_key", "").startswith("k:")]
    after = path.read_text().splitlines()
    assert all(line in after for line in before)  # written back exactly as read
    assert q.enqueue_text("s", "x", source_key="k:7").outcome == "replayed_tombstone"
    assert [raw["source_key"] for raw in built if raw.get("source_key", "").startswith("k:")] == ["k:7"]


def test_json_settings_round_trip_and_a_bad_one_is_unreadable(tmp_path, clock):
    path = tmp_path / "turnq.json"
    q = Queue(path, now=clock)
    settle(q, "s", "k")
    q.set_setting("tombstone_retention_ms", HOUR)
    text = path.read_text()
    assert '"settings": {"tombstone_retention_ms": 3600000},\n' in text
    assert json.loads(text)["schema_version"] == 1  # readers without settings drop the field (spec)
    assert Queue(path, now=clock).settings() == {"tombstone_retention_ms": HOUR}
    path.write_text(text.replace("3600000", '"1h"'))
    from turnq import StoreUnreadable

    with pytest.raises(StoreUnreadable, match="tombstone_retention_ms"):
        Queue(path, now=clock).list("s")


def test_a_version_1_sqlite_store_is_upgraded_by_its_next_write(tmp_path, clock):
    db = tmp_path / "q.db"
    q = Queue(f"sqlite:///{db}", now=clock)
    settle(q, "s", "k")
    q.store.close()
    with sqlite3.connect(db) as conn:
        conn.execute("DROP INDEX turnq_tombstones_key")
        conn.execute("UPDATE turnq_meta SET value = 1 WHERE key = 'schema_version'")
    assert q.enqueue_text("s", "x", source_key="k").outcome == "replayed_tombstone"
    q.store.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT value FROM turnq_meta WHERE key = 'schema_version'").fetchone() == (2,)
        names = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")]
    assert "turnq_tombstones_key" in names


# ----------------------------------------------------------------- turnq config


def _cli(*args):
    from typer.testing import CliRunner

    from turnq.cli import app

    result = CliRunner().invoke(app, [*args, "--now", str(NOW)])
    return result.exit_code, result.stdout, result.stderr


def test_config_command_sets_gets_and_lists_the_retention(store_path):
    assert _cli("config", "--json")[0] == 5  # no store yet: a mistyped path is not an empty store
    _cli("enqueue", "s", "--text", "first")
    assert _cli("config", "--json")[:2] == (0, '{"tombstone_retention_ms":null}\n')
    assert _cli("config", "set", "tombstone-retention", "7d", "--json")[:2] == (
        0, '{"tombstone_retention_ms":604800000}\n')
    assert _cli("config", "get", "tombstone-retention", "--json")[1] == '{"tombstone_retention_ms":604800000}\n'
    code, out, _ = _cli("config")
    assert code == 0 and "tombstone-retention" in out and "7d" in out
    _cli("enqueue", "s", "--text", "x")
    code, out, _ = _cli("inspect", "s", "--json")
    assert code == 0 and json.loads(out)["tombstone_retention_ms"] == 604800000
    code, out, _ = _cli("inspect")
    assert code == 0 and "Tombstone retention: 7d" in out
    assert _cli("config", "set", "tombstone-retention", "off", "--json")[1] == '{"tombstone_retention_ms":null}\n'
    assert '"settings"' not in store_path.read_text()


@pytest.mark.parametrize("args, message", [
    (("config", "set", "nope", "1d"), "unknown setting 'nope'"),
    (("config", "set", "tombstone-retention", "soon"), "invalid duration"),
    (("config", "set", "tombstone-retention"), "give a duration"),
    (("config", "frobnicate", "tombstone-retention"), "unknown action"),
    (("config", "get"), "name a setting"),
])
def test_config_refuses_bad_input_with_exit_2(args, message, store_path):
    code, out, err = _cli(*args)
    assert code == 2 and out == "" and message in err and err.count("\n") == 1
    assert not store_path.exists()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_inspect_and_the_overview_count_tombstones_without_reading_one(kind, tmp_path, monkeypatch, clock):
    """A session's tombstones are counted where they are stored: `turnq inspect` of a session
    with many tombstones (and the overview of every session) loads none of them."""
    from turnq.store import pg_tombstones
    from turnq.store import sqlite as sqlite_store

    with fresh_store_url(kind, tmp_path) as url:
        q = Queue(url, now=clock)
        for n in range(5):
            settle(q, "s", f"k:{n}")
        settle(q, "only-tombstones", "k:x")
        q.enqueue_text("s", "live")

        def never(self):
            raise AssertionError("a tombstone was read to be counted")

        monkeypatch.setattr(sqlite_store._Tombstones, "load", never)
        monkeypatch.setattr(pg_tombstones.PgTombstones, "load", never)
        assert q.inspect("s").tombstone_count == 5
        summaries = {s.session_id: s.tombstones for s in q.overview().sessions}
        assert summaries == {"s": 5, "only-tombstones": 1}
        monkeypatch.undo()
        assert len(q.inspect("s", tombstones=True).tombstone_list) == 5  # asked for: read
        q.store.close()
