"""Hostile store files, at the command line (issue 3, item 3).

Every command, reading and writing, on every kind of broken store: one line on stderr, the
documented exit code, nothing on stdout, no traceback, and the file left byte for byte as it
was (no temp file left beside it). The store-level checks of the same files (the API's
exceptions) are in test_store_json.py.

- unreadable (exit 7): empty, whitespace, truncated, other JSON shapes, wrong format name,
  newer or invalid schema version, duplicated batch ids, an unknown payload type, a claim that
  points at nothing, bytes that are not UTF-8, NaN, a directory instead of a file;
- unwritable (exit 9): a read-only file (readers still work), a full disk (the write fails:
  os.replace / fsync refused in-process, and a real RLIMIT_FSIZE in a real `turnq` process).

A claim *points at nothing* when it cannot be the lease of any claim turnq made of that batch:
its id is not `qwc:{first batch's enqueue_seq}:{fencing token}` with a first batch at or before
this one and a token the batch's fencing counter has reached (a claim on a batch whose counter is
0 was never made), or it expires before it was made, or it has no owner or lease token. Such a
store would let a later claim reuse a fencing token, so turnq refuses it (exit 7).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from turnq import Queue
from turnq.cli import app

NOW = 1767225600000
NOW_TEXT = "2026-01-01T00:00:00Z"
RUNNER = CliRunner()
# The runner gets the command tree built once (tests/conftest.py: most of a call's time).
pytestmark = pytest.mark.usefixtures("cli_built_once")
QUIET_ENV: dict[str, str | None] = {"FORCE_COLOR": None, "COLUMNS": "100"}
CODE_NAMES = {7: "store_unreadable", 9: "store_unwritable"}


def seed(path: Path) -> dict[str, str]:
    """A valid store: session s holds a claimed keyed batch and a ready one, session t a
    tombstone. Returns the ids the commands need."""
    queue = Queue(path, now=NOW)
    first = queue.enqueue_text("s", "first", source_key="host:first").batch
    second = queue.enqueue_text("s", "second").batch
    held = queue.claim("s", owner="w", max_batches=1)
    queue.enqueue_text("t", "gone", source_key="host:gone")
    queue.complete(queue.claim("t", owner="w"))
    assert held is not None and held.batch_ids == [first.batch_id]
    return {"held_id": first.batch_id, "ready_id": second.batch_id, "claim_id": held.claim_id,
            "token": held.lease_token, "claim_json": held.to_wire_json()}


# (id, argv with {placeholders}, whether it writes when the store is fine)
COMMANDS: list[tuple[str, list[str], bool]] = [
    ("enqueue", ["enqueue", "s", "--text", "x"], True),
    ("enqueue-draft", ["enqueue", "--draft", json.dumps({
        "session_id": "s", "delivery_policy": "earliest_safe_boundary", "slot_policy": "join",
        "merge_key": "never", "available_at_ms": 0,
        "payloads": [{"type": "turn_input", "input": {"items": [{"type": "text", "text": "d"}]}}]})], True),
    ("wake", ["wake", "s", "--process-id", "p", "--sequence", "1", "--input", "done"], True),
    ("reset-session", ["reset-session", "s", "--reason", "r"], True),
    ("refresh-tools", ["refresh-tools", "s", "--reason", "r"], True),
    ("claim", ["claim", "s"], True),
    ("claim-exact", ["claim", "s", "--batch", "{ready_id}"], True),
    ("complete", ["complete", "--claim", "{claim_json}"], True),
    ("complete-explicit", ["complete", "s", "--claim-id", "{claim_id}", "--lease-token", "{token}"], True),
    ("renew", ["renew", "--claim", "{claim_json}"], True),
    ("abandon", ["abandon", "--claim", "{claim_json}"], True),
    ("cancel", ["cancel", "s", "{ready_id}"], True),
    ("vacuum", ["vacuum"], True),
    ("vacuum-session", ["vacuum", "t", "--older-than", "0"], True),
    ("claim-dry-run", ["claim", "s", "--dry-run"], False),
    ("inspect", ["inspect"], False),
    ("inspect-session", ["inspect", "s"], False),
    ("inspect-pending", ["inspect", "s", "--pending", "--tombstones"], False),
    ("inspect-batch", ["inspect", "s", "--batch", "{held_id}"], False),
    ("explain", ["explain", "s"], False),
    ("expect", ["expect", "s", "--count", "2"], False),
    ("export", ["export", "s"], False),
    ("diff", ["diff", "{store}", "{store}"], False),
    ("import", ["import", "{fixture}"], True),
]
FIXTURE = '[[sessions]]\nid = "f"\n[[sessions.drafts]]\ntext = "from a fixture"\n'

WRITERS = [c for c in COMMANDS if c[2]]
READERS = [c for c in COMMANDS if not c[2]]


def _edit(mutate: Callable[[dict], None]) -> Callable[[str], bytes]:
    def apply(text: str) -> bytes:
        document = json.loads(text)
        mutate(document)
        return json.dumps(document).encode()
    return apply


def _claim(document: dict, **fields: Any) -> None:
    record = next(r for r in document["batches"] if r["claim"] is not None)
    for name, value in fields.items():
        if name == "fencing_counter":
            record["fencing_counter"] = value
        else:
            record["claim"][name] = value


def _claim_on_unclaimed(document: dict) -> None:
    held = next(r for r in document["batches"] if r["claim"] is not None)
    free = next(r for r in document["batches"] if r["claim"] is None)
    assert free["fencing_counter"] == 0
    free["claim"] = dict(held["claim"])


def _duplicate_ids(document: dict) -> None:
    document["batches"][1]["batch"]["batch_id"] = document["batches"][0]["batch"]["batch_id"]


def _unknown_payload(document: dict) -> None:
    document["batches"][1]["batch"]["items"][0]["payload"]["type"] = "telepathy"


UNREADABLE: dict[str, Callable[[str], bytes]] = {
    "empty": lambda text: b"",
    "whitespace": lambda text: b" \n\t\n",
    "truncated-half": lambda text: text[: len(text) // 2].encode(),
    "truncated-last-byte": lambda text: text.rstrip()[:-1].encode(),
    "garbage": lambda text: b"this is not json {",
    "binary": lambda text: bytes(range(256)),
    "json-array": lambda text: b"[]",
    "json-string": lambda text: b'"turnq-store"',
    "json-null": lambda text: b"null",
    "other-shape": lambda text: b'{"hello": "world", "batches": []}',
    "wrong-format-name": lambda text: text.replace('"turnq-store"', '"turnq-queue"').encode(),
    "no-format-name": _edit(lambda d: d.pop("format")),
    "missing-fields": lambda text: b'{"format": "turnq-store", "schema_version": 1}',
    "newer-schema": lambda text: text.replace('"schema_version": 1', '"schema_version": 2').encode(),
    "schema-version-string": lambda text: text.replace('"schema_version": 1', '"schema_version": "1"').encode(),
    "schema-version-zero": lambda text: text.replace('"schema_version": 1', '"schema_version": 0').encode(),
    "duplicate-batch-ids": _edit(_duplicate_ids),
    "unknown-payload-type": _edit(_unknown_payload),
    "seq-out-of-order": _edit(lambda d: d["batches"].reverse()),
    "next-seq-not-above": lambda text: text.replace('"next_enqueue_seq": 4', '"next_enqueue_seq": 2').encode(),
    "tombstone-without-key": _edit(lambda d: d["tombstones"][0]["batch"].update(source_key=None)),
    "claim-on-a-never-claimed-batch": _edit(_claim_on_unclaimed),
    "claim-token-above-counter": _edit(lambda d: _claim(d, claim_id="qwc:1:7")),
    "claim-of-a-later-batch": _edit(lambda d: _claim(d, claim_id="qwc:9:1")),
    "claim-id-malformed": _edit(lambda d: _claim(d, claim_id="c-1")),
    "claim-counter-zero": _edit(lambda d: _claim(d, fencing_counter=0)),
    "claim-expires-before-made": _edit(lambda d: _claim(d, expires_at_epoch_ms=NOW - 1)),
    "claim-without-token": _edit(lambda d: _claim(d, lease_token="")),
    "claim-missing-field": _edit(lambda d: next(r for r in d["batches"] if r["claim"])["claim"].pop("owner_id")),
    "non-utf8": lambda text: text.replace('"second"', '"sec\udcffond"').encode("utf-8", "surrogateescape"),
    "utf16": lambda text: text.encode("utf-16"),
    "nan": lambda text: text.replace('"next_enqueue_seq": 4', '"next_enqueue_seq": NaN').encode(),
    # issue 15: nested past the interpreter's recursion (was a RecursionError), nested past 128 in
    # the free-form value, and a number beyond a float there (was an OverflowError)
    "nested-5000": lambda text: text.replace('"batches": [', '"x": ' + "[" * 5000 + "]" * 5000 + ', "batches": [',
                                             1).encode(),
    "free-form-nested-200": lambda text: text.replace(
        '"image_blobs":{}', '"image_blobs":{},"protocol_turn_options":{"payload":' + "[" * 200 + "]" * 200 + "}",
        1).encode(),
    "free-form-400-digits": lambda text: text.replace(
        '"image_blobs":{}', '"image_blobs":{},"protocol_turn_options":{"payload":' + "1" * 400 + "}", 1).encode(),
}


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> tuple[bytes, dict[str, str]]:
    path = tmp_path_factory.mktemp("valid") / "turnq.json"
    values = seed(path)
    return path.read_bytes(), values


def run(argv: list[str], values: dict[str, str], *extra: str):
    store = Path(os.environ["TURNQ_STORE"])  # the test's store_path (tests/conftest.py)
    fixture = store.parent / "fixture.toml"
    fixture.write_text(FIXTURE)
    values = {**values, "store": str(store), "fixture": str(fixture)}
    args = [values.get(part[1:-1], part) if part.startswith("{") and part.endswith("}") else part for part in argv]
    return RUNNER.invoke(app, [*args, *extra, "--now", NOW_TEXT], env=QUIET_ENV)


def fails(result, status: int, *needles: str, json_mode: bool = False) -> str:
    """One line on stderr, the exit status, nothing on stdout, no traceback."""
    assert result.exit_code == status, (result.exit_code, result.stdout, result.stderr)
    assert result.stdout == ""
    err = result.stderr
    assert err.endswith("\n") and err.count("\n") == 1, repr(err)
    assert "Traceback" not in err
    if json_mode:
        data = json.loads(err)
        assert data["error"] == CODE_NAMES[status]
        message = data["message"]
    else:
        assert err.startswith("turnq: error: ")
        message = err
    for needle in needles:
        assert needle in message, (needle, message)
    return message


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_every_command_works_on_the_valid_store(store_path, valid):
    # The baseline: the matrix below fails only because of the file.
    text, values = valid
    for case_id, argv, _ in COMMANDS:
        store_path.write_bytes(text)
        result = run(argv, values)
        assert result.exit_code == 0, (case_id, result.stderr)


@pytest.mark.parametrize("case", sorted(UNREADABLE))
def test_unreadable_store_every_command_exit_7_and_file_unchanged(tmp_path, store_path, valid, case):
    text, values = valid
    broken = UNREADABLE[case](text.decode())
    assert broken != text
    store_path.write_bytes(broken)
    for case_id, argv, _ in COMMANDS:
        message = fails(run(argv, values), 7, str(store_path))
        assert store_path.read_bytes() == broken, case_id
    if case == "newer-schema":
        assert "newer" in message and "upgrade" in message
    if case.startswith("claim-") and case != "claim-missing-field":
        assert "claim" in message
    fails(run(["claim", "s"], values, "--json"), 7, str(store_path), json_mode=True)
    assert store_path.read_bytes() == broken
    assert temp_files(tmp_path) == []


def test_store_path_that_is_a_directory(tmp_path, store_path, valid):
    _, values = valid
    store_path.mkdir()
    for case_id, argv, _ in COMMANDS:
        fails(run(argv, values), 7, "directory")
    assert store_path.is_dir() and list(store_path.iterdir()) == []
    assert temp_files(tmp_path) == []


@pytest.fixture
def read_only(store_path, valid):
    text, _ = valid
    store_path.write_bytes(text)
    store_path.chmod(0o444)
    yield text
    store_path.chmod(0o644)


@pytest.mark.parametrize("json_mode", [False, True], ids=["human", "json"])
def test_read_only_store_writers_exit_9_readers_work(tmp_path, store_path, valid, read_only, json_mode):
    _, values = valid
    mode = ["--json"] if json_mode else []
    for case_id, argv, _ in WRITERS:
        fails(run(argv, values, *mode), 9, "read-only", json_mode=json_mode)
        assert store_path.read_bytes() == read_only, case_id
    for case_id, argv, _ in READERS:
        result = run(argv, values, *mode)
        assert result.exit_code == 0, (case_id, result.stderr)
        assert store_path.read_bytes() == read_only
    assert store_path.stat().st_mode & 0o777 == 0o444
    assert temp_files(tmp_path) == []


@pytest.mark.parametrize("victim", ["replace", "fsync", "write"])
def test_full_disk_writers_exit_9_and_leave_the_store(tmp_path, store_path, valid, monkeypatch, victim):
    import errno

    text, values = valid

    def no_space(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOSPC, "No space left on device")

    if victim == "write":  # the temp file cannot be created at all
        from turnq.store import files

        monkeypatch.setattr(files, "create_temp", no_space)
    else:
        monkeypatch.setattr(os, victim, no_space)
    for case_id, argv, _ in WRITERS:
        store_path.write_bytes(text)
        fails(run(argv, values), 9, "No space left on device")
        assert store_path.read_bytes() == text, case_id
        assert temp_files(tmp_path) == [], case_id
    for case_id, argv, _ in READERS:
        assert run(argv, values).exit_code == 0, case_id


def _limit_file_size() -> None:
    # Writing past the limit fails with EFBIG instead of killing the process with SIGXFSZ.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))


def test_full_disk_in_a_real_process(tmp_path, store_path, valid):
    text, _ = valid
    assert len(text) > 1024  # the store cannot be rewritten under the limit
    env = {**os.environ, "TURNQ_STORE": str(store_path), "TURNQ_NOW": NOW_TEXT}
    for argv in (["enqueue", "s", "--text", "x"], ["vacuum"], ["claim", "s"]):
        store_path.write_bytes(text)
        result = subprocess.run(check=False, args=[sys.executable, "-m", "turnq", *argv], env=env, capture_output=True, text=True,
                                preexec_fn=_limit_file_size, timeout=60)
        assert result.returncode == 9, (argv, result.stderr)
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert result.stderr.startswith("turnq: error: cannot write store")
        assert store_path.read_bytes() == text
        assert temp_files(tmp_path) == []
    # Without the limit the same command works.
    ok = subprocess.run(check=False, args=[sys.executable, "-m", "turnq", "enqueue", "s", "--text", "x"], env=env,
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize("case", ["truncated-half", "newer-schema", "claim-on-a-never-claimed-batch"])
def test_migrate_from_an_unreadable_store_exits_7_and_creates_no_target(tmp_path, store_path, valid, case):
    text, values = valid
    broken = UNREADABLE[case](text.decode())
    store_path.write_bytes(broken)
    fails(run(["migrate", "--from", "{store}", "--to", "copy.json"], values), 7, str(store_path))
    fails(run(["migrate", "--from", "{store}", "--to", "sqlite:///copy.db"], values), 7, str(store_path))
    assert store_path.read_bytes() == broken
    assert not (tmp_path / "copy.json").exists() and not (tmp_path / "copy.db").exists()
