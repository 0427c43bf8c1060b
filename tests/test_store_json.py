"""The JSON-file store: reading, the versioned document, atomic writes, the lock, and
every way a store can be unreadable or unwritable without being damaged."""

from __future__ import annotations

import errno
import json
import os
import stat
import threading
from pathlib import Path

import pytest
from filelock import FileLock

from turnq import Queue, engine
from turnq.clock import FixedClock
from turnq.errors import ExitStatus, StoreBusy, StoreUnreadable, StoreUnwritable
from turnq.state import QueueState
from turnq.store import JsonFileStore, codec, open_store

NOW = 1767225600000


def populate(queue: Queue) -> dict:
    """A store with a held claim, an expired claim, a delayed batch and both kinds of tombstone."""
    clock = queue.clock
    a = queue.enqueue_text("s1", "first", source_key="host:a").batch
    queue.enqueue_text("s1", "second", merge_key={"group": "g"})
    queue.enqueue_text("s2", "later", available_at_ms=NOW + 60_000, slot_policy="exclusive")
    c = queue.enqueue_text("s3", "cancel me", source_key="host:c").batch
    queue.reset_session("s1", "again", idempotency_key="K")
    held = queue.claim("s1", owner="w1", max_batches=1)
    assert [b.batch_id for b in held.batches] == [a.batch_id]
    clock.advance(10)
    expired = queue.claim("s1", owner="w2", ttl_ms=0)
    assert expired is not None
    queue.cancel("s3", c.batch_id)
    done = queue.enqueue_text("s3", "done", source_key="host:d").batch
    queue.complete(queue.claim("s3", owner="w3"))
    return {"held": held, "expired": expired, "cancelled": c, "done": done}


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------- missing file


def test_missing_file_is_an_empty_state_and_reading_creates_nothing(tmp_path, store_path):
    store = JsonFileStore(store_path)
    state = store.read()
    assert isinstance(state, QueueState)
    assert state.next_seq == 1 and state.sessions == {} and state.tombstones == {}
    assert not store_path.exists()
    assert not Path(str(store_path) + ".lock").exists()
    assert files_in(tmp_path) == []


def test_queue_reads_of_a_missing_store_create_nothing(tmp_path, store_path):
    q = Queue(store_path, now=NOW)
    assert q.list("s") == [] and q.pending("s") == [] and q.tombstones("s") == []
    assert q.overview().sessions == []
    assert q.inspect("s").batches == []
    assert q.claim("s", dry_run=True) is None
    assert files_in(tmp_path) == []


def test_transaction_that_changes_nothing_on_a_missing_store_does_not_create_it(store_path):
    q = Queue(store_path, now=NOW)
    assert q.claim("s") is None
    assert q.vacuum() == []
    assert not store_path.exists()


def test_open_store_from_a_path_or_a_store(store_path):
    store = open_store(store_path, lock_timeout_ms=5)
    assert isinstance(store, JsonFileStore) and store.path == store_path and store.lock_timeout_ms == 5
    assert open_store(store) is store
    assert str(store.lock_path) == str(store_path) + ".lock"


# --------------------------------------------------------------------------- round trip and document


def test_round_trip_keeps_claims_fencing_and_tombstones(store_path):
    q = Queue(store_path, now=FixedClock(NOW))
    made = populate(q)
    text = store_path.read_text()
    state = JsonFileStore(store_path).read()
    assert codec.encode(state) == text  # decode then encode is the identity

    assert state.next_seq == 7
    held = made["held"]
    (s1_a, s1_b, s1_cmd) = state.session("s1")
    assert s1_a.fencing == 1 and s1_a.lease is not None
    assert (s1_a.lease.claim_id, s1_a.lease.owner_id, s1_a.lease.lease_token) == (
        held.claim_id, "w1", held.lease_token)
    assert (s1_a.lease.claimed_at_ms, s1_a.lease.expires_at_ms) == (NOW, NOW + 900_000)
    assert s1_b.lease.owner_id == "w2" and s1_b.lease.expires_at_ms == NOW + 10 and s1_b.fencing == 1
    assert s1_b.batch.merge_key.group == "g"
    assert s1_cmd.lease is None and s1_cmd.fencing == 0
    assert state.session("s2")[0].batch.available_at_ms == NOW + 60_000
    assert state.session("s3") == []
    tombs = state.session_tombstones("s3")
    assert [(t.batch, t.outcome, t.settled_at_ms) for t in tombs] == [
        (made["cancelled"], "cancelled", NOW + 10), (made["done"], "completed", NOW + 10)]


def test_document_has_the_documented_shape(store_path):
    q = Queue(store_path, now=FixedClock(NOW))
    populate(q)
    doc = json.loads(store_path.read_text())
    assert list(doc) == ["format", "schema_version", "next_enqueue_seq", "batches", "tombstones"]
    assert doc["format"] == "turnq-store"
    assert doc["schema_version"] == 1
    assert doc["next_enqueue_seq"] == 7
    seqs = [r["batch"]["enqueue_seq"] for r in doc["batches"]]
    assert seqs == sorted(seqs) and len(seqs) == 4
    for record in doc["batches"]:
        assert list(record) == ["batch", "fencing_counter", "claim"]
        assert record["batch"]["batch_id"].startswith("qwb:")
    claimed = [r for r in doc["batches"] if r["claim"] is not None]
    assert len(claimed) == 2
    assert list(claimed[0]["claim"]) == ["claim_id", "owner_id", "lease_token", "claimed_at_epoch_ms",
                                         "expires_at_epoch_ms"]
    for record in doc["tombstones"]:
        assert list(record) == ["batch", "outcome", "settled_at_ms"]
    assert [r["outcome"] for r in doc["tombstones"]] == ["cancelled", "completed"]
    # a header line, then one line per batch and per tombstone between their brackets
    lines = store_path.read_text().splitlines()
    assert lines[1] == '"batches": [' and lines[6] == "]," and lines[7] == '"tombstones": ['
    assert lines[-1] == "]}"
    assert len(lines) == 1 + (1 + 4 + 1) + (1 + 2 + 1)


def test_batches_are_stored_in_their_wire_shape(store_path, queue):
    batch = queue.enqueue_text("s", "hi", source_key="host:k").batch
    doc = json.loads(store_path.read_text())
    assert doc["batches"][0]["batch"] == batch.to_wire()
    assert doc["batches"][0]["fencing_counter"] == 0 and doc["batches"][0]["claim"] is None


def test_empty_store_after_everything_settled_is_still_a_store(store_path, queue):
    b = queue.enqueue_text("s", "hi").batch
    queue.cancel("s", b.batch_id)
    doc = json.loads(store_path.read_text())
    assert doc == {"format": "turnq-store", "schema_version": 1, "next_enqueue_seq": 2, "batches": [],
                   "tombstones": []}
    assert queue.enqueue_text("s", "again").batch.enqueue_seq == 2


# --------------------------------------------------------------------------- unreadable stores


def _valid_document(store_path: Path) -> str:
    q = Queue(store_path, now=NOW)
    q.enqueue_text("s", "one", source_key="host:1")
    q.enqueue_text("s", "two")
    text = store_path.read_text()
    store_path.unlink()
    return text


def _duplicate_ids(text: str) -> str:
    doc = json.loads(text)
    doc["batches"][1]["batch"]["batch_id"] = doc["batches"][0]["batch"]["batch_id"]
    return json.dumps(doc)


def _unknown_payload(text: str) -> str:
    assert text.count('"type":"turn_input"') == 2
    return text.replace('"type":"turn_input"', '"type":"telepathy"', 1)


def _claim(text: str, fencing_counter: int, **fields) -> str:
    """A claim that points at nothing (see test_hostile_store.py): on a batch it cannot belong to."""
    doc = json.loads(text)
    doc["batches"][0]["fencing_counter"] = fencing_counter
    doc["batches"][0]["claim"] = {"claim_id": "qwc:1:1", "owner_id": "w", "lease_token": "ab" * 32,
                                  "claimed_at_epoch_ms": NOW, "expires_at_epoch_ms": NOW + 1, **fields}
    return json.dumps(doc)


def _non_utf8(text: str) -> bytes:
    return text.replace('"one"', '"on\udcffe"').encode("utf-8", "surrogateescape")


UNREADABLE = {
    "empty": lambda text: b"",
    "whitespace": lambda text: b"  \n",
    "truncated": lambda text: text[: len(text) // 2].encode(),
    "json_array": lambda text: b"[]",
    "other_shape": lambda text: b'{"batches": [], "tombstones": []}',
    "wrong_format": lambda text: text.replace('"turnq-store"', '"other-store"').encode(),
    "missing_fields": lambda text: b'{"format": "turnq-store", "schema_version": 1}',
    "bad_schema_version": lambda text: text.replace('"schema_version": 1', '"schema_version": "1"').encode(),
    "duplicate_batch_ids": lambda text: _duplicate_ids(text).encode(),
    "unknown_payload_type": lambda text: _unknown_payload(text).encode(),
    "unknown_field": lambda text: text.replace('"fencing_counter":0', '"fencing_counter":0,"extra":1', 1).encode(),
    "seq_not_above": lambda text: text.replace('"next_enqueue_seq": 3', '"next_enqueue_seq": 2').encode(),
    "non_utf8": _non_utf8,
    "claim_on_a_never_claimed_batch": lambda text: _claim(text, 0).encode(),
    "claim_token_above_the_counter": lambda text: _claim(text, 1, claim_id="qwc:1:2").encode(),
    "claim_of_a_later_first_batch": lambda text: _claim(text, 1, claim_id="qwc:2:1").encode(),
    "claim_id_malformed": lambda text: _claim(text, 1, claim_id="claim-1").encode(),
    "claim_expires_before_it_was_made": lambda text: _claim(text, 1, expires_at_epoch_ms=NOW - 1).encode(),
    "nan": lambda text: text.replace('"next_enqueue_seq": 3', '"next_enqueue_seq": NaN').encode(),
}


@pytest.mark.parametrize("case", sorted(UNREADABLE))
def test_unreadable_store_raises_and_is_left_byte_for_byte(tmp_path, store_path, case):
    original = _valid_document(store_path)
    content = UNREADABLE[case](original)
    assert content != original.encode()
    store_path.write_bytes(content)
    q = Queue(store_path, now=NOW, lock_timeout_ms=1000)

    with pytest.raises(StoreUnreadable) as err:
        JsonFileStore(store_path).read()
    assert err.value.exit_status == ExitStatus.STORE_UNREADABLE == 7
    assert str(store_path) in str(err.value)

    for attempt in (lambda: q.enqueue_text("s", "new"), lambda: q.claim("s"), lambda: q.vacuum(),
                    lambda: q.list("s"), lambda: q.inspect("s"), lambda: q.overview()):
        with pytest.raises(StoreUnreadable):
            attempt()
    with pytest.raises(StoreUnreadable):
        with JsonFileStore(store_path).transaction():
            pytest.fail("the transaction body must not run")  # pragma: no cover

    assert store_path.read_bytes() == content
    assert not [n for n in files_in(tmp_path) if n.endswith(".tmp")]


def test_newer_schema_version_is_refused_with_an_upgrade_hint(store_path):
    original = _valid_document(store_path)
    content = original.replace('"schema_version": 1', '"schema_version": 2').encode()
    store_path.write_bytes(content)
    with pytest.raises(StoreUnreadable) as err:
        Queue(store_path, now=NOW).enqueue_text("s", "x")
    message = str(err.value)
    assert "newer" in message and "upgrade" in message
    assert store_path.read_bytes() == content


def test_store_path_that_is_a_directory_is_unreadable(store_path):
    store_path.mkdir()
    with pytest.raises(StoreUnreadable):
        JsonFileStore(store_path).read()
    with pytest.raises(StoreUnreadable) as err:
        Queue(store_path, now=NOW).enqueue_text("s", "x")
    assert err.value.exit_status == 7
    assert store_path.is_dir() and list(store_path.iterdir()) == []


# --------------------------------------------------------------------------- unwritable stores


def test_read_only_store_is_unwritable_and_unchanged(tmp_path, store_path, queue):
    queue.enqueue_text("s", "hi")
    before = store_path.read_bytes()
    store_path.chmod(0o444)
    try:
        with pytest.raises(StoreUnwritable) as err:
            queue.enqueue_text("s", "more")
        assert err.value.exit_status == ExitStatus.STORE_UNWRITABLE
        assert store_path.read_bytes() == before
        assert stat.S_IMODE(store_path.stat().st_mode) == 0o444
        # reading, and a transaction that changes nothing, still work
        assert len(queue.list("s")) == 1
        assert queue.claim("other") is None
        assert not [n for n in files_in(tmp_path) if n.endswith(".tmp")]
    finally:
        store_path.chmod(0o644)


def test_write_keeps_the_files_mode(store_path, queue):
    queue.enqueue_text("s", "hi")
    store_path.chmod(0o600)
    queue.enqueue_text("s", "more")
    assert stat.S_IMODE(store_path.stat().st_mode) == 0o600


@pytest.mark.parametrize("victim", ["replace", "fsync"])
def test_write_failure_is_unwritable_and_leaves_the_store_and_no_temp_files(tmp_path, store_path, queue,
                                                                          monkeypatch, victim):
    queue.enqueue_text("s", "hi")
    before = store_path.read_bytes()
    before_files = files_in(tmp_path)

    def boom(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, victim, boom)
    with pytest.raises(StoreUnwritable) as err:
        queue.enqueue_text("s", "more")
    monkeypatch.undo()
    assert "No space left on device" in str(err.value)
    assert store_path.read_bytes() == before
    assert files_in(tmp_path) == before_files
    assert len(queue.list("s")) == 1


def test_folder_fsync_failure_after_the_rename_does_not_report_a_committed_write_as_failed(
        tmp_path, store_path, queue, monkeypatch):
    # Some file systems refuse fsync on a directory (EINVAL). Once the temp file has been
    # renamed over the store, the new state is what every reader sees: an error saying
    # "the store was left as it was" would be false, and a retried keyless enqueue would
    # store the work twice.
    queue.enqueue_text("s", "hi")
    real_fsync = os.fsync

    def fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    result = queue.enqueue_text("s", "more")
    monkeypatch.undo()
    assert [b.batch_id for b in queue.list("s")][-1] == result.batch.batch_id
    assert len(queue.list("s")) == 2
    assert not [n for n in files_in(tmp_path) if n.endswith(".tmp")]


def test_write_failure_on_a_new_store_creates_no_store(tmp_path, store_path, queue, monkeypatch):
    monkeypatch.setattr(os, "replace", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with pytest.raises(StoreUnwritable):
        queue.enqueue_text("s", "hi")
    monkeypatch.undo()
    assert not store_path.exists()
    assert not [n for n in files_in(tmp_path) if n.endswith(".tmp")]


# --------------------------------------------------------------------------- the lock


@pytest.fixture
def held_lock(store_path):
    """The store's lock file held by another FileLock, in another thread, for the test's duration."""
    taken, release = threading.Event(), threading.Event()

    def hold():
        lock = FileLock(str(store_path) + ".lock")
        with lock:
            taken.set()
            release.wait(30)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert taken.wait(10)
    yield
    release.set()
    thread.join(10)


def test_busy_store_raises_store_busy_and_changes_nothing(store_path, held_lock):
    store_path.write_text(codec.encode(QueueState()))
    before = store_path.read_bytes()
    q = Queue(store_path, now=NOW, lock_timeout_ms=50)
    with pytest.raises(StoreBusy) as err:
        q.enqueue_text("s", "hi")
    assert err.value.exit_status == ExitStatus.STORE_BUSY == 8
    assert store_path.read_bytes() == before
    # readers never lock
    assert q.list("s") == []
    assert q.claim("s", dry_run=True) is None


def test_lock_is_taken_again_once_released(store_path):
    q = Queue(store_path, now=NOW, lock_timeout_ms=50)
    lock = FileLock(str(store_path) + ".lock")
    with lock:
        with pytest.raises(StoreBusy):
            q.enqueue_text("s", "hi")
    assert q.enqueue_text("s", "hi").batch.enqueue_seq == 1


# --------------------------------------------------------------------------- transactions


def test_a_transaction_that_raises_writes_nothing(store_path, queue):
    queue.enqueue_text("s", "hi")
    before = store_path.read_bytes()
    store = JsonFileStore(store_path)
    with pytest.raises(RuntimeError):
        with store.transaction() as state:
            engine.enqueue(state, engine.session_command_draft("s", _reset(), "k"), NOW)
            assert state.changed
            raise RuntimeError("boom")
    assert store_path.read_bytes() == before


def test_a_transaction_that_raises_on_a_new_store_creates_nothing(store_path):
    with pytest.raises(RuntimeError):
        with JsonFileStore(store_path).transaction() as state:
            engine.enqueue(state, engine.session_command_draft("s", _reset(), "k"), NOW)
            raise RuntimeError("boom")
    assert not store_path.exists()


def test_a_transaction_that_changes_state_writes_it(store_path):
    store = JsonFileStore(store_path)
    with store.transaction() as state:
        engine.enqueue(state, engine.session_command_draft("s", _reset(), "k"), NOW)
    assert len(store.read().session("s")) == 1


def _reset():
    from turnq.models import ResetSession

    return ResetSession(reason="r")


def test_a_transaction_that_changes_nothing_does_not_rewrite_the_file(store_path, queue):
    queue.enqueue_text("s", "hi", source_key="host:k")
    lost = queue.claim("s", ttl_ms=0)
    queue.claim("s", owner="other")  # now `lost` no longer holds its batch
    before = store_path.read_bytes()
    st = store_path.stat()
    # each of these is a transaction that ends without a change
    assert queue.enqueue_text("s", "other", source_key="host:k").replayed
    assert queue.claim("s") is None
    assert queue.claim("s", max_batches=0) is None
    assert queue.abandon(lost) == []
    assert queue.vacuum() == []
    assert store_path.read_bytes() == before
    after = store_path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (st.st_ino, st.st_mtime_ns)


def test_a_replay_alone_does_not_rewrite_the_file(store_path, queue):
    queue.enqueue_text("s", "hi", source_key="host:k")
    st = store_path.stat()
    assert queue.enqueue_text("s", "hi", source_key="host:k").replayed
    after = store_path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (st.st_ino, st.st_mtime_ns)


def test_a_write_replaces_the_file_atomically(store_path, queue):
    queue.enqueue_text("s", "one")
    ino = store_path.stat().st_ino
    queue.enqueue_text("s", "two")
    assert store_path.stat().st_ino != ino  # a new file renamed over the old one
    assert [b.enqueue_seq for b in queue.list("s")] == [1, 2]


# --------------------------------------------------------------------------- determinism


def test_same_operations_at_the_same_clock_give_byte_identical_stores(tmp_path):
    paths = [tmp_path / "a" / "turnq.json", tmp_path / "b" / "turnq.json"]
    outputs = []
    for path in paths:
        path.parent.mkdir()
        q = Queue(path, now=FixedClock(NOW))
        populate(q)
        q.wake("s1", "proc", 3, "woke")
        q.refresh_tools("s2", "tools changed", expected_generation=2)
        outputs.append(path.read_bytes())
    assert outputs[0] == outputs[1]
    assert b'"format": "turnq-store"' in outputs[0]


def test_different_clocks_give_different_stores(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    Queue(a, now=NOW).enqueue_text("s", "x")
    Queue(b, now=NOW + 1).enqueue_text("s", "x")
    assert a.read_bytes() != b.read_bytes()


def test_store_in_a_missing_folder_is_unwritable_and_creates_nothing(tmp_path):
    store = tmp_path / "no-such-folder" / "turnq.json"
    queue = Queue(store, now=1767225600000)
    with pytest.raises(StoreUnwritable, match="does not exist"):
        queue.enqueue_text("s", "hi")
    assert not (tmp_path / "no-such-folder").exists()
    assert queue.list("s") == []  # reading a missing store is an empty store


def test_a_write_sweeps_temp_files_left_by_killed_writers_and_nothing_else(tmp_path):
    store = JsonFileStore(tmp_path / "turnq.json")
    ours = [".turnq.json.k3x9ab_c.tmp", ".turnq.json.log.a1b2c3d4.tmp"]
    others = [".turnq.json.bak.a1b2c3d4.tmp", ".other.json.a1b2c3d4.tmp", "turnq.json.a1b2c3d4.tmp",
              ".turnq.json.toolongname.tmp"]
    for name in ours + others:
        (tmp_path / name).write_text("half a store")
    Queue(store, now=NOW).enqueue_text("s1", "hello")
    left = sorted(path.name for path in tmp_path.iterdir())
    assert not any(name in left for name in ours)
    assert all(name in left for name in others)
    assert "turnq.json" in left
