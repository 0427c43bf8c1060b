"""Issue 15 (items 1-6, 11, 13) and issue 11's file modes: nothing lost on the failure paths.

migrate from a missing source, export over a store or onto a full disk, a SQLite file
removed under a running process, a symlinked store, an audit log that cannot be appended
to after a saved change, NUL in identifiers, sidecar files planted as symbolic links, and
the modes of the files turnq creates. Each test is the issue's repro, made small.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from backends import STORE_KINDS, fresh_store_url, sqlite_url
from typer.testing import CliRunner

from turnq import InvalidInput, Queue
from turnq.cli import app
from turnq.errors import StoreUnwritable

RUNNER = CliRunner()
NOW = 1767225600000
QUIET_ENV = {"FORCE_COLOR": None, "COLUMNS": "100", "TURNQ_STORE": None}

pytestmark = pytest.mark.usefixtures("cli_built_once")


def run(*args: Any, input: str | None = None) -> tuple[int, str, str]:
    result = RUNNER.invoke(app, [str(a) for a in args] + ["--now", str(NOW)], input=input, env=QUIET_ENV)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(params=STORE_KINDS)
def store_url(request, tmp_path):
    with fresh_store_url(request.param, tmp_path) as url:
        yield url


def _filled(location: str) -> None:
    q = Queue(location, now=NOW)
    q.enqueue_text("s", "a", source_key="host:a")
    q.complete(q.claim("s"))  # a tombstone
    q.enqueue_text("s", "b")


def _content(location: str) -> tuple[list[str], int, int]:
    state = Queue(location).store.read()
    return [b.batch_id for b in state.all_batches()], len(state.all_tombstones()), state.next_seq


# --------------------------------------------------------------------------- 1. migrate


def test_migrate_from_a_missing_source_is_refused_on_every_backend(store_url, tmp_path):
    _filled(store_url)
    before = _content(store_url)
    code, out, err = run("migrate", "--from", tmp_path / "prdo.json", "--to", store_url, "--replace")
    assert code == 5 and out == "" and "there is no store at" in err and "prdo.json" in err
    assert _content(store_url) == before
    code, _out, err = run("migrate", "--from", sqlite_url(tmp_path, "typo.db"), "--to", store_url, "--replace")
    assert code == 5 and "typo.db" in err and not (tmp_path / "typo.db").exists()
    assert _content(store_url) == before


def test_migrate_replace_by_an_empty_source_needs_allow_empty(store_url, tmp_path):
    _filled(store_url)
    before = _content(store_url)
    empty = tmp_path / "empty.json"
    q = Queue(empty, now=NOW)
    q.cancel("s", q.enqueue_text("s", "gone").batch.batch_id)  # a store that exists and holds nothing
    assert empty.exists() and _content(str(empty)) == ([], 0, 2)
    code, _out, err = run("migrate", "--from", empty, "--to", store_url, "--replace")
    assert code == 2 and "--allow-empty" in err
    assert _content(store_url) == before
    code, out, err = run("migrate", "--from", empty, "--to", store_url, "--replace", "--allow-empty", "--json")
    assert code == 0, err
    assert _content(store_url) == ([], 0, 2)
    backup = json.loads(out)["backup"]
    if store_url.startswith("postgresql"):
        assert backup is None  # a server has no folder to keep one in
    else:  # the replaced content is kept, and is a store holding exactly what was there
        assert Path(backup).exists() and Path(backup).parent == tmp_path
        assert _content(backup) == before


def test_migrate_replace_keeps_a_backup_each_time(tmp_path):
    source, target = str(tmp_path / "a.json"), tmp_path / "b.json"
    _filled(source)
    Queue(target, now=NOW).enqueue_text("x", "old")
    old = target.read_bytes()
    for expected_name in ("b.json.bak-" + str(NOW), "b.json.bak-" + str(NOW) + "-1"):
        code, out, err = run("migrate", "--from", source, "--to", target, "--replace")
        assert code == 0, err
        assert "old content was kept in" in out
        assert (tmp_path / expected_name).exists()
    assert (tmp_path / f"b.json.bak-{NOW}").read_bytes() == old


def test_migrate_refuses_a_source_holding_nul_before_writing(tmp_path):
    source = tmp_path / "a.json"
    Queue(source, now=NOW).enqueue_text("s", "x", source_key="key")
    # A store written by an older turnq, which accepted NUL in a source key.
    source.write_text(source.read_text().replace('"source_key":"key"', '"source_key":"k\\u0000ey"'))
    assert Queue(source).store.read().all_batches()[0].batch.source_key == "k\x00ey"
    target = sqlite_url(tmp_path, "t.db")
    code, _out, err = run("migrate", "--from", source, "--to", target)
    assert code == 2 and "NUL" in err and 'source_key "k\\0ey"' in err
    assert not (tmp_path / "t.db").exists()


# --------------------------------------------------------------------------- 2. export


def test_export_refuses_to_overwrite_a_store_unless_force(tmp_path):
    store = tmp_path / "turnq.json"
    Queue(store, now=NOW).enqueue_text("s", "x")
    before = store.read_bytes()
    code, _out, err = run("export", "--store", store, "--output", store)
    assert code == 2 and "is the store being exported" in err
    assert store.read_bytes() == before
    other = tmp_path / "other.json"
    Queue(other, now=NOW).enqueue_text("t", "y")
    db = tmp_path / "q.db"
    Queue(sqlite_url(tmp_path, "q.db"), now=NOW).enqueue_text("t", "y")
    for victim in (other, db):
        kept = victim.read_bytes()
        code, _out, err = run("export", "--store", store, "--output", victim)
        assert code == 2 and "is a turnq store" in err and "--force" in err
        assert victim.read_bytes() == kept
    code, _out, err = run("export", "--store", store, "--output", other, "--force")
    assert code == 0, err
    # a .json output is a JSON fixture (the format follows the extension), no longer a store
    assert json.loads(other.read_text())["format"] == "turnq-fixture"
    assert Queue(store).list("s")  # the store itself is untouched throughout


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))


def test_export_on_a_full_disk_exits_9_and_leaves_the_old_file_whole(tmp_path):
    store = tmp_path / "turnq.json"
    Queue(store, now=NOW).enqueue_text("s", "x" * 10_000)
    old = tmp_path / "fixture.toml"
    old.write_text("# the previous export\n")
    env = {**os.environ, "TURNQ_STORE": str(store)}
    result = subprocess.run([sys.executable, "-m", "turnq", "export", "--output", str(old)], env=env,
                            capture_output=True, text=True, preexec_fn=_limit_file_size, timeout=60, check=False)
    assert result.returncode == 9, result.stderr
    assert result.stderr.count("\n") == 1 and "cannot write" in result.stderr and "Traceback" not in result.stderr
    assert old.read_text() == "# the previous export\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []


def test_export_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    Queue("turnq.json", now=NOW).enqueue_text("s", "x")
    out = tmp_path / "private.toml"
    out.write_text("")
    out.chmod(0o600)
    assert run("export", "--output", out)[0] == 0
    assert out.stat().st_mode & 0o777 == 0o600 and "turnq-fixture" in out.read_text()


# --------------------------------------------------------------------------- 5. audit log


def test_a_saved_change_whose_log_entry_is_lost_exits_with_the_operation_code(tmp_path):
    store = tmp_path / "turnq.json"
    Queue(store, now=NOW).enqueue_text("s", "first")
    log = tmp_path / "turnq.json.log"
    log.unlink()
    log.mkdir()  # cannot be appended to, even by root
    code, out, err = run("enqueue", "s", "--text", "second", "--store", store, "--json")
    assert code == 0, err
    assert json.loads(out)["enqueue_seq"] == 2  # the result is printed
    assert err.count("\n") == 1 and err.startswith("turnq: warning: the change was saved, but its audit-log "
                                                   "entry was lost")
    assert [b.enqueue_seq for b in Queue(store).list("s")] == [1, 2]
    code, out, err = run("claim", "s", "--store", store, "--json")
    assert code == 0 and json.loads(out)["lease_token"] and "audit-log entry was lost" in err


def test_hostile_log_lines_are_skipped_on_every_backend(store_url):
    q = Queue(store_url, now=NOW)
    q.enqueue_text("s", "x")
    hostile = ["{\"id\": 99, \"op\": " + "[" * 100_000 + "]" * 100_000 + "}", "not json", "[1, 2]", "{\"id\": \"7\"}"]
    if store_url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(store_url[len("sqlite:///"):])
        conn.executemany("INSERT INTO turnq_log (id, entry) VALUES (?, ?)", [(i + 10, t) for i, t in enumerate(hostile)])
        conn.commit()
        conn.close()
    elif store_url.startswith("postgresql"):
        import psycopg

        from turnq.store.postgres import _split_url

        conninfo, schema = _split_url(store_url)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{schema}"')
            for i, text in enumerate(hostile):
                conn.execute("INSERT INTO turnq_log (id, entry) VALUES (%s, %s)", (i + 10, text))
    else:
        with open(store_url + ".log", "a", encoding="utf-8") as handle:
            handle.write("".join(line + "\n" for line in hostile) + '{"id": 12, "op": "torn')
    code, out, err = run("log", "--store", store_url, "--json")
    assert code == 0, err
    # (A database row that is a JSON object stays an entry: its id is the row's.)
    assert [json.loads(line).get("op") for line in out.splitlines()] in (["enqueue"], ["enqueue", None])
    code, out, err = run("log", "--store", store_url)
    assert code == 0 and "enqueue" in out and "Traceback" not in err
    q.enqueue_text("s", "y")  # appending after them works too
    assert [e.get("op") for e in q.store.read_log()].count("enqueue") == 2


# --------------------------------------------------------------------------- 6. NUL in identifiers

NUL_DRAFT = {"session_id": "s", "source_key": "k\u0000", "delivery_policy": "after_current_turn_commit",
             "slot_policy": "join", "payloads": [{"type": "turn_input", "input": {"items": [
                 {"type": "text", "text": "free text may hold \u0000"}]}}]}


def test_nul_in_identifiers_is_refused_on_every_backend(store_url):
    q = Queue(store_url, now=NOW)
    refused = {
        "session": lambda: q.enqueue_text("s\x00", "x"),
        "source key": lambda: q.enqueue_text("s", "x", source_key="k\x00"),
        "merge key": lambda: q.enqueue_text("s", "x", merge_key={"group": "g\x00"}),
        "owner": lambda: q.claim("s", owner="w\x00"),
        "reason": lambda: q.reset_session("s", "why\x00"),
        "idempotency key": lambda: q.refresh_tools("s", "why", idempotency_key="i\x00"),
        "process id": lambda: q.wake("s", "p\x00", 1, "hi"),
        "cancel batch": lambda: q.cancel("s", "qwb:\x00"),
        "inspect": lambda: q.inspect("s\x00"),
    }
    for name, call in refused.items():
        with pytest.raises(InvalidInput, match="NUL"):
            call()
        assert Queue(store_url).store.read().all_batches() == [], name
    # Free text is data, not an identifier: it is kept (escaped inside the JSON) and settles.
    q.enqueue_text("s", "a \x00 b")
    claim = q.claim("s")
    assert claim.batches[0].items[0].payload.input.items[0].text == "a \x00 b"
    for settle in (q.renew, q.complete):
        forged = claim.model_copy(update={"lease_token": claim.lease_token + "\x00"})
        with pytest.raises(InvalidInput, match="the lease token"):
            settle(forged)
    q.complete(claim)
    assert q.list("s") == []


def test_nul_in_a_draft_or_claim_on_the_command_line_exits_2(store_url):
    code, out, err = run("enqueue", "--draft", json.dumps(NUL_DRAFT), "--store", store_url)
    assert code == 2 and out == "" and "NUL" in err and "source_key" in err
    code, out, err = run("enqueue", "s", "--text", "x", "--store", store_url, "--json")
    claim = json.loads(run("claim", "s", "--store", store_url, "--json")[1])
    claim["claim_id"] += "\u0000"
    code, out, err = run("complete", "--claim", json.dumps(claim), "--store", store_url)
    assert code == 2 and "the claim id" in err and "NUL" in err
    assert len(Queue(store_url).list("s")) == 1


# --------------------------------------------------------------------------- 13. sidecars


def test_a_symlinked_audit_log_is_refused_and_the_victim_untouched(tmp_path):
    store = tmp_path / "turnq.json"
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (tmp_path / "turnq.json.log").symlink_to(victim)
    code, out, err = run("enqueue", "s", "--text", "x", "--store", store)
    assert code == 9 and out == "" and "symbolic link" in err and "turnq.json.log" in err
    assert victim.read_text() == "precious\n"
    assert not store.exists()  # refused before the state was written
    Queue(store, now=NOW, log_enabled=False).enqueue_text("s", "x")  # a store there, its log never opened
    code, _out, err = run("log", "--store", store)
    assert code == 9 and "symbolic link" in err
    assert victim.read_text() == "precious\n"


def test_a_dangling_symlinked_lock_file_is_refused_and_nothing_created(tmp_path):
    store = tmp_path / "turnq.json"
    target = tmp_path / "elsewhere" / "created-by-turnq"
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "turnq.json.lock").symlink_to(target)
    code, _out, err = run("enqueue", "s", "--text", "x", "--store", store)
    assert code == 9 and "symbolic link" in err and "lock file" in err
    assert not target.exists() and not store.exists()


@pytest.mark.parametrize("kind", ["json", "sqlite"])
def test_doctor_fix_never_writes_its_backup_through_a_symlink(tmp_path, kind):
    location = str(tmp_path / "turnq.json") if kind == "json" else sqlite_url(tmp_path)
    q = Queue(location, now=NOW)
    q.enqueue_text("s", "x")
    Queue(location, now=NOW - 1000).claim("s", ttl_ms=0)  # expired 1 s before NOW: stale after 1ms
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    name = "turnq.json" if kind == "json" else "turnq.db"
    suffix = "" if kind == "json" else ".json"
    (tmp_path / f"{name}.bak-{NOW}{suffix}").symlink_to(victim)
    dangling = tmp_path / "created-through-a-link"
    (tmp_path / f"{name}.bak-{NOW}-1{suffix}").symlink_to(dangling)
    code, out, err = run("doctor", "--fix", "--clear-stale", "--stale-after", "1ms", "--store", location, "--json")
    assert code in (0, 1), err
    report = json.loads(out)
    assert report["backup"] == str(tmp_path / f"{name}.bak-{NOW}-2{suffix}")  # the next free name
    assert victim.read_text() == "precious\n" and not dangling.exists()


# --------------------------------------------------------------------------- file modes (issue 11, item 5)


def _under_umask(mask: int, *argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "turnq", *argv, "--now", str(NOW)], cwd=cwd, check=False,
                          env={**os.environ, "TURNQ_STORE": str(cwd / "turnq.json")}, capture_output=True,
                          text=True, preexec_fn=lambda: os.umask(mask), timeout=60)


def test_new_files_honour_the_umask_and_a_rewrite_keeps_the_mode(tmp_path):
    assert _under_umask(0o077, "enqueue", "s", "--text", "secret", cwd=tmp_path).returncode == 0
    for name in ("turnq.json", "turnq.json.log", "turnq.json.lock"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600, name
    (tmp_path / "turnq.json").chmod(0o640)
    assert _under_umask(0o002, "enqueue", "s", "--text", "more", cwd=tmp_path).returncode == 0
    assert (tmp_path / "turnq.json").stat().st_mode & 0o777 == 0o640
    other = tmp_path / "other"
    other.mkdir()
    assert _under_umask(0o002, "enqueue", "s", "--text", "x", cwd=other).returncode == 0
    assert (other / "turnq.json").stat().st_mode & 0o777 == 0o664  # not a fixed 0644
    result = _under_umask(0o002, "doctor", "--fix", cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_a_backup_is_as_private_as_its_store(tmp_path):
    source, target = tmp_path / "a.json", tmp_path / "b.json"
    _filled(str(source))
    Queue(target, now=NOW).enqueue_text("x", "old")
    target.chmod(0o600)
    assert run("migrate", "--from", source, "--to", target, "--replace")[0] == 0
    assert (tmp_path / f"b.json.bak-{NOW}").stat().st_mode & 0o777 == 0o600
    assert target.stat().st_mode & 0o777 == 0o600


# --------------------------------------------------------------------------- 3. SQLite file removed


def test_sqlite_never_acknowledges_a_write_into_a_removed_file(tmp_path):
    folder = tmp_path / "store"
    folder.mkdir()
    url = sqlite_url(folder, "q.db")
    q = Queue(url, now=NOW)  # a long-running process
    q.enqueue_text("s", "before")
    shutil.rmtree(folder)
    folder.mkdir()
    acknowledged, refused = [], []
    for n in range(5):
        try:
            acknowledged.append(q.enqueue_text("s", f"after {n}").batch.batch_id)
        except StoreUnwritable as err:
            refused.append(err.message)
    assert refused and "removed or replaced since it was opened" in refused[0]
    # Every acknowledged write is in the file at the store's path.
    assert [b.batch_id for b in Queue(url).list("s")] == acknowledged
    assert len(acknowledged) == 4  # the next operation opened the new file


def test_sqlite_write_refused_when_the_file_is_replaced(tmp_path):
    url = sqlite_url(tmp_path, "q.db")
    q = Queue(url, now=NOW)
    q.enqueue_text("s", "mine")
    Queue(sqlite_url(tmp_path, "other.db"), now=NOW).enqueue_text("t", "theirs")
    os.replace(tmp_path / "other.db", tmp_path / "q.db")
    with pytest.raises(StoreUnwritable, match="removed or replaced"):
        q.enqueue_text("s", "lost?")  # (what a reader sees then is SQLite's: its WAL was the old file's)


# --------------------------------------------------------------------------- 4. symlinked store


@pytest.mark.parametrize("kind", ["json", "sqlite"])
def test_a_symlinked_store_is_written_through_to_its_target(tmp_path, kind):
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    name = "q.json" if kind == "json" else "q.db"
    target = real_dir / name
    Queue(str(target) if kind == "json" else sqlite_url(real_dir, name), now=NOW).enqueue_text("s", "one")
    link = tmp_path / name
    link.symlink_to(target)
    location = str(link) if kind == "json" else sqlite_url(tmp_path, name)
    for text in ("two", "three"):
        code, _out, err = run("enqueue", "s", "--text", text, "--store", location)
        assert code == 0, err
    assert link.is_symlink()  # still a link: the two never diverge
    direct = Queue(str(target) if kind == "json" else sqlite_url(real_dir, name))
    assert len(direct.list("s")) == 3
    if kind == "json":  # the sidecars sit beside the file they guard
        assert (real_dir / "q.json.lock").exists() and (real_dir / "q.json.log").exists()
        assert not (tmp_path / "q.json.lock").exists()


# --------------------------------------------------------------------------- 11. read-only SQLite


@pytest.fixture
def read_only_mount(tmp_path):
    """`tmp_path/src` seen read-only at `tmp_path/mnt` (a bind mount: needs root)."""
    src, mnt = tmp_path / "src", tmp_path / "mnt"
    src.mkdir()
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a read-only bind mount needs root")
    if subprocess.run(["mount", "--bind", str(src), str(mnt)], capture_output=True, check=False).returncode:
        pytest.skip("mount --bind is not allowed here")
    try:
        if subprocess.run(["mount", "-o", "remount,bind,ro", str(mnt)], capture_output=True,
                          check=False).returncode:
            pytest.skip("a read-only remount is not allowed here")
        yield src, mnt
    finally:
        # Lazily: a connection the test left open would make a plain umount fail (EBUSY).
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)


def test_sqlite_reads_work_on_a_read_only_file_system(read_only_mount):
    src, mnt = read_only_mount
    writer = Queue(sqlite_url(src, "q.db"), now=NOW)
    writer.enqueue_text("s", "readable")
    writer.store.close()  # the last connection: SQLite removes the -wal and -shm files
    assert sorted(p.name for p in src.iterdir()) == ["q.db"]
    url = sqlite_url(mnt, "q.db")
    for argv in (["inspect"], ["inspect", "s"], ["log"], ["export"], ["explain", "s"], ["doctor"]):
        code, out, err = run(*argv, "--store", url)
        assert code == 0, (argv, err)
    code, _out, err = run("enqueue", "s", "--text", "x", "--store", url)
    assert code == 9 and err.startswith("turnq: error: cannot write store")


# --------------------------------------------------------------------------- 11. PostgreSQL


def test_postgres_lock_timeout_beyond_its_range_is_clamped(tmp_path):
    from backends import postgres_url

    with postgres_url() as url:
        for timeout in ("30d", "0"):
            code, out, err = run("enqueue", "s", "--text", "x", "--store", url, "--lock-timeout", timeout, "--json")
            assert code == 0, (timeout, err)
        assert len(Queue(url).list("s")) == 2
        assert Queue(url, lock_timeout_ms=30 * 86_400_000).store.lock_timeout_ms == 2**31 - 1


@pytest.mark.parametrize("argv", [["enqueue", "s", "--text", "x"], ["inspect", "s"]])
def test_a_dropped_postgres_connection_is_one_line(monkeypatch, argv):
    import psycopg
    from backends import POSTGRES_URL, postgres_url

    from turnq.store import postgres

    def dropping(original):
        def dropped(self, conn, *args, **kwargs):  # the server ends the session mid-operation
            with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
            return original(self, conn, *args, **kwargs)
        return dropped

    with postgres_url() as url:
        Queue(url, now=NOW).enqueue_text("s", "x")
        # reads load through `_load`; a write's first pipeline is `_begin`
        for name in ("_load", "_begin"):
            monkeypatch.setattr(postgres.PostgresStore, name, dropping(getattr(postgres.PostgresStore, name)))
        code, out, err = run(*argv, "--store", url)
    assert code == (9 if argv[0] == "enqueue" else 7)
    assert out == "" and err.count("\n") == 1 and "lost the connection to store" in err, err


def test_import_of_exact_batches_holding_nul_is_refused(tmp_path):
    source = tmp_path / "a.json"
    Queue(source, now=NOW).enqueue_text("s", "x", source_key="key")
    code, fixture, err = run("export", "--store", source, "--format", "json")
    assert code == 0, err
    hostile = tmp_path / "f.json"
    hostile.write_text(fixture.replace('"source_key": "key"', '"source_key": "k\\u0000ey"'))
    assert "\\u0000" in hostile.read_text()
    code, _out, err = run("import", hostile, "--store", tmp_path / "b.json")
    assert code == 2 and "NUL" in err
    assert not (tmp_path / "b.json").exists()


def test_a_new_sqlite_store_honours_the_umask(tmp_path):
    result = subprocess.run([sys.executable, "-m", "turnq", "enqueue", "s", "--text", "x", "--store",
                             sqlite_url(tmp_path, "q.db")], check=False, capture_output=True, text=True,
                            preexec_fn=lambda: os.umask(0o002), timeout=60)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "q.db").stat().st_mode & 0o777 == 0o664
    result = subprocess.run([sys.executable, "-m", "turnq", "enqueue", "s", "--text", "x", "--store",
                             sqlite_url(tmp_path, "private.db")], check=False, capture_output=True, text=True,
                            preexec_fn=lambda: os.umask(0o077), timeout=60)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "private.db").stat().st_mode & 0o777 == 0o600


DROP_SCRIPT = """
import logging, sys
from turnq.cli import main
from turnq.store import postgres

def dropped(self, conn, *args, **kwargs):  # psycopg's words when its rollback of a dead connection fails
    logging.getLogger("psycopg").warning("error ignored in rollback on %s: %s", conn, "server closed")
    raise postgres.psycopg.OperationalError("server closed the connection unexpectedly")

postgres.PostgresStore._load = dropped  # reads
postgres.PostgresStore._begin = dropped  # writes (the first pipeline of a transaction)
sys.argv = ["turnq", *sys.argv[1:]]
main()
"""


def test_the_drivers_own_warning_about_a_drop_adds_no_second_line():
    from backends import postgres_url

    with postgres_url() as url:
        Queue(url, now=NOW).enqueue_text("s", "x")
        result = subprocess.run([sys.executable, "-c", DROP_SCRIPT, "enqueue", "s", "--text", "y", "--store", url],
                                capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 9, result.stderr
    assert result.stderr.count("\n") == 1 and "lost the connection to store" in result.stderr, result.stderr
