"""The command line on every backend: the same commands give the same output and exit codes
whether `--store` is a JSON file, `sqlite:///…` or `postgresql://…` (issue 6).

Each scenario is run on the JSON store and on the backend under test, and every step's exit
code, stdout and stderr must agree (with --json, so the output is exact). Also: store URL
parsing, `turnq migrate`, and several processes claiming at once on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from backends import STORE_KINDS, fresh_store_url, postgres_url, sqlite_url
from typer.testing import CliRunner

from turnq import InvalidInput, Queue
from turnq.cli import app
from turnq.store import JsonFileStore, open_store

RUNNER = CliRunner()
NOW = 1767225600000
QUIET_ENV = {"FORCE_COLOR": None, "COLUMNS": "100", "TURNQ_STORE": None}


@pytest.fixture(params=STORE_KINDS)
def store_url(request, tmp_path):
    with fresh_store_url(request.param, tmp_path) as url:
        yield url


def run(store: str | None, *args: Any, at: int = 0, input: str | None = None) -> tuple[int, str, str]:
    """`turnq ARGS --store STORE --now …` in-process (no --store when `store` is None)."""
    argv = [str(a) for a in args] + (["--store", store] if store is not None else []) + ["--now", str(NOW + at)]
    result = RUNNER.invoke(app, argv, input=input, env=QUIET_ENV)
    return result.exit_code, result.stdout, result.stderr


def scenario(store: str) -> list[tuple[int, str, str]]:
    """enqueue, replay, claim at both boundaries, renew, abandon, complete stale and valid,
    cancel, tombstones, vacuum, inspect: every step's (exit code, stdout, stderr)."""
    steps = []

    def step(*args: Any, at: int = 0, input: str | None = None) -> tuple[int, str, str]:
        steps.append(run(store, *args, at=at, input=input))
        return steps[-1]

    step("enqueue", "s", "--text", "first", "--source-key", "host:1", "--delivery", "earliest_safe_boundary",
         "--json")
    step("enqueue", "s", "--text", "first again", "--source-key", "host:1", "--json")  # replay (warns)
    step("enqueue", "s", "--text", "second", "--merge", "group:g", "--json")
    step("enqueue", "t", "--text", "other session", "--json")
    step("wake", "s", "--process-id", "build", "--sequence", "3", "--input", "done", "--json")
    # A checkpoint claim takes the earliest head only; the idle claim takes the rest of the run.
    checkpoint = step("claim", "s", "--boundary", "active_turn_checkpoint", "--owner", "w1", "--ttl", "1s",
                      "--json")
    step("claim", "s", "--boundary", "idle", "--owner", "w2", "--json")
    step("renew", "--claim", checkpoint[1], "--ttl", "30s", "--json", at=500)
    step("abandon", "--claim", checkpoint[1], "--json", at=600)
    again = step("claim", "s", "--owner", "w3", "--ttl", "0s", "--max-batches", "1", "--json", at=700)
    newer = step("claim", "s", "--owner", "w4", "--max-batches", "1", "--json", at=800)  # ttl 0: reclaimed
    step("complete", "--claim", again[1], "--json", at=900)  # stale: exit 4
    step("complete", "--claim", newer[1], "--json", at=1000)  # valid: host:1 becomes a tombstone
    step("enqueue", "s", "--text", "late", "--source-key", "host:1", "--json", at=1100)  # replayed_tombstone
    step("claim", "s", "--json", at=1200)  # the exclusive wake, alone
    step("claim", "s", "--json", at=1250)  # everything is held now: exit 3
    victim = json.loads(step("enqueue", "t", "--text", "to cancel", "--source-key", "host:c", "--json",
                             at=1300)[1])
    step("cancel", "t", victim["batch_id"], "--json", at=1400)
    step("cancel", "t", "qwb:nope", "--json", at=1500)  # exit 5
    step("inspect", "s", "--tombstones", "--json", at=1600)
    step("inspect", "--json", at=1700)
    step("vacuum", "s", "--older-than", "1h", "--json", at=1800)  # too young: nothing dropped
    step("vacuum", "--json", at=2000)
    step("enqueue", "s", "--text", "fresh", "--source-key", "host:1", "--json", at=2100)  # key free again
    step("inspect", "s", "--json", at=2200)
    step("inspect", "t", at=2300)  # the human view too
    return steps


def test_the_cli_scenario_gives_the_same_output_on_every_backend(store_url, tmp_path):
    got = scenario(store_url)
    codes = [code for code, _out, _err in got]
    assert sorted(c for c in codes if c) == [3, 4, 5], codes
    reference = scenario(str(tmp_path / "reference.json")) if not store_url.endswith(".json") else got
    assert got == reference


def test_a_replayed_source_key_warns_identically(store_url):
    run(store_url, "enqueue", "s", "--text", "a", "--source-key", "k")
    code, _out, err = run(store_url, "enqueue", "s", "--text", "b", "--source-key", "k")
    assert code == 0 and "differ" in err


def test_python_api_on_every_backend_keeps_fencing_and_sequence(store_url):
    q = Queue(store_url, now=NOW)
    assert [q.enqueue_text(s, "x").batch.enqueue_seq for s in ("a", "b", "a")] == [1, 2, 3]
    first = q.claim("a", ttl_ms=0, max_batches=1)
    second = q.claim("a", ttl_ms=0, max_batches=1)
    assert second.fencing_token == first.fencing_token + 1
    assert Queue(store_url, now=NOW).inspect("a").to_wire() == q.inspect("a").to_wire()


def test_log_retention_when_one_transaction_logs_more_than_it_keeps(store_url):
    from turnq import make_draft

    drafts = [make_draft("s", [{"type": "turn_input", "input": {"items": [{"type": "text", "text": str(n)}]}}])
              for n in range(5)]
    store = open_store(store_url, log_max_entries=2)
    Queue(store, now=NOW).enqueue_many(drafts)
    assert [e["id"] for e in store.read_log()] == [4, 5]
    Queue(store, now=NOW).enqueue_text("s", "one more")
    assert [e["id"] for e in store.read_log()] == [5, 6]


# --------------------------------------------------------------------------- store URLs


@pytest.mark.parametrize("url, why", [
    ("mysql://u@h/db", "unknown store URL"),
    ("sqlite://host/q.db", "names a host"),
    ("sqlite:///", "names no database file"),
    ("sqlite:///q.db?mode=ro", "takes no options"),
    ("postgresql://u@h/db?schema=", "schema=NAME"),
])
def test_bad_store_urls_exit_2_with_one_line(url, why, tmp_path):
    code, out, err = run(url, "inspect")
    assert code == 2 and out == ""
    assert err.startswith("turnq: error: --store") and why in err and err.count("\n") == 1
    with pytest.raises(InvalidInput):
        open_store(url)
    assert list(tmp_path.iterdir()) == []


def test_sqlite_urls_relative_and_absolute(tmp_path):
    relative = open_store("sqlite:///rel/q.db")  # the tests run in tmp_path
    assert relative.path == Path("rel/q.db")
    absolute = open_store(sqlite_url(tmp_path, "abs.db"))
    assert absolute.path == tmp_path / "abs.db" and str(absolute.path).startswith("/")
    (tmp_path / "rel").mkdir()
    Queue("sqlite:///rel/q.db", now=NOW).enqueue_text("s", "x")
    assert (tmp_path / "rel" / "q.db").exists()


def test_a_path_is_still_a_json_store(tmp_path):
    store = open_store("plain.json")
    assert isinstance(store, JsonFileStore)
    assert isinstance(open_store(tmp_path / "x.db"), JsonFileStore)  # a path is a path, whatever its suffix


def test_database_modules_are_imported_only_for_their_urls(tmp_path):
    code = textwrap.dedent("""
        import sys
        from turnq import Queue
        Queue("q.json", now=0).enqueue_text("s", "x")
        from turnq.cli import app
        assert "sqlite3" not in sys.modules and "psycopg" not in sys.modules, "imported early"
        Queue("sqlite:///q.db", now=0).enqueue_text("s", "x")
        assert "sqlite3" in sys.modules and "psycopg" not in sys.modules
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_missing_psycopg_is_a_clear_usage_error(tmp_path):
    # A finder that refuses psycopg stands in for a machine without the extra installed.
    code = textwrap.dedent("""
        import sys
        class Refuse:
            def find_spec(self, name, path=None, target=None):
                if name == "psycopg" or name.startswith("psycopg."):
                    raise ImportError("no psycopg here")
        sys.meta_path.insert(0, Refuse())
        from turnq.cli import main
        sys.argv = ["turnq", "inspect", "--store", "postgresql://u:secret@127.0.0.1/db"]
        main()
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert result.returncode == 2, result.stderr
    assert "pip install 'turnq[postgres]'" in result.stderr and "Traceback" not in result.stderr
    assert "secret" not in result.stderr and result.stderr.count("\n") == 1


# --------------------------------------------------------------------------- migrate


def _filled(store: str) -> None:
    q = Queue(store, now=NOW)
    q.enqueue_text("s", "a", source_key="host:a", delivery_policy="earliest_safe_boundary")
    q.enqueue_text("s", "b")
    q.complete(q.claim("s", max_batches=1))  # a tombstone
    q.claim("s", owner="holder", ttl_ms=3_600_000)  # a live claim, fencing 2
    q.enqueue_text("t", "c")
    q.claim("t", ttl_ms=0)  # an expired claim: fencing counter 1 stays


@pytest.mark.parametrize("target_kind", STORE_KINDS)
def test_migrate_copies_everything_and_verifies(target_kind, tmp_path):
    source = str(tmp_path / "source.json")
    _filled(source)
    folder = tmp_path / "t"
    folder.mkdir()
    with fresh_store_url(target_kind, folder) as target:
        code, out, err = run(None, "migrate", "--from", source, "--to", target, "--json")
        assert code == 0, err
        report = json.loads(out)
        assert (report["batches"], report["claims"], report["tombstones"], report["sessions"]) == (2, 2, 1, 2)
        assert report["next_enqueue_seq"] == 4 and report["verified"] is True and report["differences"] == []
        # Back into a fresh JSON file: the very same document, byte for byte.
        back = tmp_path / "back.json"
        code, out, err = run(None, "migrate", "--from", target, "--to", back, "--json")
        assert code == 0 and json.loads(out)["verified"], err
        assert back.read_bytes() == Path(source).read_bytes()
        # The queue goes on in the target as in the source: the same ids, tokens and sequence.
        a, b = Queue(source, now=NOW + 10), Queue(target, now=NOW + 10)
        assert a.enqueue_text("t", "d").batch == b.enqueue_text("t", "d").batch
        assert a.claim("t").to_wire() == b.claim("t").to_wire()
        assert b.store.read_log()[0]["op"] == "migrate"


@pytest.mark.parametrize("source_kind", STORE_KINDS)
@pytest.mark.parametrize("target_kind", STORE_KINDS)
def test_migrate_carries_the_tombstone_retention(source_kind, target_kind, tmp_path):
    """A store's setting is part of it: a migrated store keeps dropping tombstones as the
    source did, and verifies (it used to report "documents differ", exit 1, setting lost)."""
    (tmp_path / "s").mkdir()
    (tmp_path / "t").mkdir()
    with fresh_store_url(source_kind, tmp_path / "s") as source, fresh_store_url(target_kind, tmp_path / "t") as target:
        _filled(source)
        Queue(source).store.write_setting("tombstone_retention_ms", 7 * 86_400_000)
        code, out, err = run(None, "migrate", "--from", source, "--to", target, "--json")
        assert code == 0, err
        report = json.loads(out)
        assert report["verified"] is True and report["settings"] == {"tombstone_retention_ms": 604_800_000}
        assert Queue(target).store.read_settings() == {"tombstone_retention_ms": 604_800_000}
        # --replace by a source without one: the target has none afterwards.
        Queue(source).store.write_setting("tombstone_retention_ms", None)
        code, out, err = run(None, "migrate", "--from", source, "--to", target, "--replace", "--json")
        assert code == 0 and json.loads(out)["verified"] is True, err
        assert Queue(target).store.read_settings() == {"tombstone_retention_ms": None}


def test_migrate_refuses_a_non_empty_target_unless_replace(tmp_path):
    source, target = str(tmp_path / "a.json"), sqlite_url(tmp_path, "b.db")
    _filled(source)
    Queue(target, now=NOW).enqueue_text("x", "already here")
    before = Queue(target).store.read()
    code, out, err = run(None, "migrate", "--from", source, "--to", target)
    assert code == 2 and out == "" and "not empty" in err and "--replace" in err
    assert [b.batch.session_id for b in Queue(target).store.read().all_batches()] == ["x"]
    assert Queue(target).store.read().next_seq == before.next_seq
    code, out, err = run(None, "migrate", "--from", source, "--to", target, "--replace", "--json")
    assert code == 0, err
    assert json.loads(out)["replaced"] == {"batches": 1, "tombstones": 0}
    assert Queue(target).store.read().session_ids() == ["s", "t"]


def test_migrate_human_output_and_same_store_refused(tmp_path):
    source = str(tmp_path / "a.json")
    _filled(source)
    code, out, _err = run(None, "migrate", "--from", source, "--to", sqlite_url(tmp_path, "m.db"))
    assert code == 0 and "Verified" in out and "live claims" in out
    code, out, err = run(None, "migrate", "--from", source, "--to", source)
    assert code == 2 and "is the store being copied" in err


# --------------------------------------------------------------------------- many processes

WORKER = textwrap.dedent("""
    import json, sys, time
    from turnq import Queue
    url, sessions, out = sys.argv[1], sys.argv[2].split(","), sys.argv[3]
    q = Queue(url, lock_timeout_ms=30_000)
    taken, idle_rounds = [], 0
    while idle_rounds < 3:
        got = False
        for s in sessions:
            claim = q.claim(s, owner=out, ttl_ms=600_000)
            if claim is None:
                continue
            got = True
            taken.append({"session": s, "fencing": claim.fencing_token,
                          "batches": [b.batch_id for b in claim.batches]})
            q.complete(claim)
        idle_rounds = 0 if got else idle_rounds + 1
        time.sleep(0.002)
    open(out, "w").write(json.dumps(taken))
""")


def _claim_concurrently(url: str, tmp_path: Path, workers: int = 4) -> None:
    q = Queue(url, now=NOW)
    sessions = [f"s{i}" for i in range(3)]
    expected: dict[str, list[str]] = {}
    for n in range(20):
        for s in sessions:
            # Pairs of joinable batches (same merge group), then an exclusive one: runs of 2 and 1.
            if n % 3 == 2:
                batch = q.enqueue_text(s, f"{s}-{n}", slot_policy="exclusive").batch
            else:
                batch = q.enqueue_text(s, f"{s}-{n}", merge_key={"group": f"g{n // 3}"}).batch
            expected.setdefault(s, []).append(batch.batch_id)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    outs = [tmp_path / f"w{i}.json" for i in range(workers)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [subprocess.Popen([sys.executable, str(script), url, ",".join(sessions), str(out)], env=env,
                              stderr=subprocess.PIPE, text=True) for out in outs]
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
    claims = [claim for out in outs for claim in json.loads(out.read_text())]
    taken = [b for claim in claims for b in claim["batches"]]
    assert len(taken) == len(set(taken)), "a batch was claimed twice"
    assert sorted(taken) == sorted(b for ids in expected.values() for b in ids)
    # Runs are whole: each claim is a pair of one merge group, or an exclusive batch alone — never a split pair.
    for claim in claims:
        order = expected[claim["session"]]
        first = order.index(claim["batches"][0])
        assert claim["batches"] == order[first:first + len(claim["batches"])]
        assert (first % 3, len(claim["batches"])) in ((0, 2), (2, 1)), claim
    assert Queue(url).store.read().all_batches() == []


def test_processes_claiming_at_once_on_sqlite(tmp_path):
    _claim_concurrently(sqlite_url(tmp_path), tmp_path)


def test_processes_claiming_at_once_on_postgres(tmp_path):
    with postgres_url() as url:
        _claim_concurrently(url, tmp_path)
