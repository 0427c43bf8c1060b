"""Counters at their limit (spec/semantics.md): on every backend, an operation that would take the
enqueue sequence or a fencing counter past 2^64-1 is refused whole (exit 10, `limit`) and changes
nothing; a value of 2^64-1 is stored and read back as it is; times saturate at 2^64-1.

The stores at the limit are built the way a user gets one: `turnq import` of a fixture.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from backends import fresh_store_url
from typer.testing import CliRunner

from turnq import CounterLimit, Queue
from turnq.cli import app
from turnq.clock import FixedClock

pytestmark = pytest.mark.usefixtures("cli_built_once")

NOW = 1767225600000
U64_MAX = 2**64 - 1


def run(url, *args, now=NOW):
    return CliRunner().invoke(app, [*map(str, args), "--store", str(url), "--now", str(now)])


def ok_json(url, *args, now=NOW):
    result = run(url, *args, "--json", now=now)
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    return json.loads(result.stdout)


def fixture_at(tmp_path: Path, *, next_seq: int, fencing: int) -> Path:
    """A fixture of one ready batch (seq 1) with this fencing counter, and this next sequence."""
    seed = tmp_path / "seed.json"
    ok_json(seed, "enqueue", "s", "--text", "at the limit", "--delivery", "earliest_safe_boundary")
    document = json.loads(run(seed, "export", "--json").stdout)
    document["next_enqueue_seq"] = next_seq
    document["sessions"][0]["batches"][0]["fencing_counter"] = fencing
    path = tmp_path / f"limit-{next_seq}-{fencing}.json"
    path.write_text(json.dumps(document))
    return path


@pytest.fixture(params=["json", "sqlite", "postgresql"])
def store_url(request, tmp_path):
    with fresh_store_url(request.param, tmp_path) as url:
        yield url


def snapshot(url):
    """Everything a reader sees: the export (sequence, counters, claims) of the store."""
    result = run(url, "export", "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def refused_at_limit(result):
    assert result.exit_code == 10, (result.exit_code, result.stdout, result.stderr)
    assert result.stdout == ""
    error = json.loads(result.stderr)
    assert error["error"] == "limit" and "2^64-1" in error["message"]


def test_a_store_at_the_limit_refuses_claim_and_enqueue_and_stays_readable(store_url, tmp_path):
    ok_json(store_url, "import", fixture_at(tmp_path, next_seq=U64_MAX, fencing=U64_MAX))
    before = snapshot(store_url)
    assert before["next_enqueue_seq"] == U64_MAX
    assert before["sessions"][0]["batches"][0]["fencing_counter"] == U64_MAX
    refused_at_limit(run(store_url, "claim", "s", "--json"))
    refused_at_limit(run(store_url, "claim", "s", "--dry-run", "--json"))
    refused_at_limit(run(store_url, "enqueue", "s", "--text", "one more", "--json"))
    refused_at_limit(run(store_url, "wake", "s", "--process-id", "p", "--sequence", "1", "--input", "w", "--json"))
    assert snapshot(store_url) == before
    human = run(store_url, "claim", "s")
    assert human.exit_code == 10 and human.stderr.startswith("turnq: error: ") and human.stderr.count("\n") == 1
    view = ok_json(store_url, "inspect", "s")
    assert [b["fencing_counter"] for b in view["batches"]] == [U64_MAX]


def test_the_last_sequence_and_the_last_fencing_token_are_used_and_read_back(store_url, tmp_path):
    ok_json(store_url, "import", fixture_at(tmp_path, next_seq=U64_MAX - 1, fencing=U64_MAX - 1))
    last = ok_json(store_url, "enqueue", "s", "--text", "last", "--delivery", "earliest_safe_boundary")
    assert last["enqueue_seq"] == U64_MAX - 1
    assert snapshot(store_url)["next_enqueue_seq"] == U64_MAX
    refused_at_limit(run(store_url, "enqueue", "s", "--text", "past the end", "--json"))
    # The run takes both batches: token = 1 + the largest counter = 2^64-1, stored as it is.
    made = ok_json(store_url, "claim", "s")
    assert made["fencing_token"] == U64_MAX and len(made["batches"]) == 2
    view = ok_json(store_url, "inspect", "s")
    assert [b["batch"]["enqueue_seq"] for b in view["batches"]] == [1, U64_MAX - 1]  # u64 order, not i64
    assert [b["fencing_counter"] for b in view["batches"]] == [U64_MAX, U64_MAX]
    released = ok_json(store_url, "abandon", "--claim", json.dumps(made))["released"]
    assert released == [b["batch_id"] for b in made["batches"]]
    before = snapshot(store_url)
    refused_at_limit(run(store_url, "claim", "s", "--json"))
    assert snapshot(store_url) == before


def test_expiry_and_delay_saturate_at_the_largest_time(store_url):
    now = U64_MAX - 1000
    batch = ok_json(store_url, "enqueue", "s", "--text", "x", "--delay", "1h", now=now)
    assert batch["available_at_ms"] == U64_MAX
    ok_json(store_url, "enqueue", "t", "--text", "y", now=now)
    made = ok_json(store_url, "claim", "t", "--ttl", "15m", now=now)
    assert made["expires_at_epoch_ms"] == U64_MAX
    renewed = ok_json(store_url, "renew", "--claim", json.dumps(made), "--ttl", "2h", now=now)
    assert renewed["expires_at_epoch_ms"] == U64_MAX
    wake = ok_json(store_url, "wake", "t", "--process-id", "p", "--sequence", "1", "--input", "w", "--delay", "1h",
                   now=now)
    assert wake["available_at_ms"] == U64_MAX


# ----------------------------------------------------------------- the API, memory backend included


@pytest.fixture
def store(any_store):
    """Every backend (conftest.any_store)."""
    return any_store


def test_api_refuses_past_the_limit_on_every_backend(store, tmp_path):
    from turnq import fixtures

    fixture = fixtures.parse_file(str(fixture_at(tmp_path, next_seq=U64_MAX, fencing=U64_MAX)), None)
    fixtures.build(fixture, store, now_ms=NOW)
    queue = Queue(store, now=FixedClock(NOW))
    before = store.read()
    with pytest.raises(CounterLimit):
        queue.claim("s")
    with pytest.raises(CounterLimit):
        queue.enqueue_text("s", "more")
    after = store.read()
    assert after.next_seq == before.next_seq == U64_MAX
    assert [(b.fencing, b.lease) for b in after.session("s")] == [(U64_MAX, None)]


def _audit_ids_at_their_limit(url: str) -> None:
    """The store's next audit id put past its limit, as only an edit of the store can."""
    Queue(url, now=NOW).enqueue_text("s", "first")  # audit id 1
    if url.startswith("sqlite:"):
        import sqlite3

        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:  # the log's ids are INTEGER PRIMARY KEY
            conn.execute("UPDATE turnq_meta SET value = ? WHERE key = 'next_log_id'", (2**63 - 1,))
        Queue(url, now=NOW).enqueue_text("s", "takes the last id, 2^63-1")
    elif url.startswith("postgresql:"):
        import psycopg

        store = Queue(url).store
        with psycopg.connect(store.conninfo, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{store.schema}"')
            conn.execute("SELECT setval('turnq_log_ids', 9223372036854775807, true)")  # bigint: 2^63-1 used
    else:
        log = Path(url + ".log")
        log.write_text(log.read_text().replace('{"id":1,', '{"id":18446744073709551615,', 1))


def test_audit_ids_at_their_limit_refuse_the_operation_whole_and_say_the_way_out(store_url):
    """Audit ids are store counters too: an operation whose entry would take one past the limit
    (2^64-1; 2^63-1 where the database keeps them as signed 64-bit) is refused (exit 10) and
    changes nothing (it used to write id 2^64 in the JSON log, or fail with exit 70 or 9)."""
    _audit_ids_at_their_limit(store_url)
    before = snapshot(store_url)
    for args in (("enqueue", "s", "--text", "one more"), ("claim", "s")):
        result = run(store_url, *args, "--json")
        assert result.exit_code == 10, (result.exit_code, result.stderr)
        error = json.loads(result.stderr)
        assert error["error"] == "limit" and "audit-log ids" in error["message"] and "TURNQ_LOG=off" in error["message"]
    assert snapshot(store_url) == before
    logged = [e["id"] for e in Queue(store_url).store.read_log()]
    assert max(logged) <= U64_MAX
    result = CliRunner(env={"TURNQ_LOG": "off"}).invoke(
        app, ["enqueue", "s", "--text", "unlogged", "--store", str(store_url), "--now", str(NOW)])
    assert result.exit_code == 0, result.stderr  # the way out the message gives
