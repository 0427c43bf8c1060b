"""The command-line contract (spec/cli.md), through Typer's CliRunner.

Every command in human and `--json` mode, every exit code, the enqueue/claim details, the
determinism promise of `--now`, `inspect`'s shapes and widths, session commands and vacuum.
CliRunner keeps stdout and stderr apart (`result.stdout`, `result.stderr`), so each test can check
that stdout holds exactly one JSON document and that stderr holds exactly what it should.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import NOW
from filelock import FileLock
from typer.testing import CliRunner

from turnq.cli import app

RUNNER = CliRunner()
# The runner gets the command tree built once (tests/conftest.py: most of a call's time).
pytestmark = pytest.mark.usefixtures("cli_built_once")
NOW_TEXT = "2026-01-01T00:00:00Z"
SECOND = 1_000
MINUTE = 60_000
HOUR = 3_600_000
DEFAULT_TTL = 15 * MINUTE

CODE_NAMES = {1: "check_failed", 2: "usage", 3: "empty", 4: "lease_lost", 5: "not_found", 6: "conflict",
              7: "store_unreadable", 8: "store_busy", 9: "store_unwritable"}

BATCH_KEYS = ["batch_id", "session_id", "enqueue_seq", "source_key", "delivery_policy", "slot_policy",
              "merge_key", "available_at_ms", "enqueued_at_ms", "items"]
CLAIM_KEYS = ["session_id", "claim_id", "owner_id", "lease_token", "fencing_token", "claimed_at_epoch_ms",
              "expires_at_epoch_ms", "batches"]
COMPLETION_KEYS = ["session_id", "claim_id", "lease_token", "batch_ids"]
RECEIPT_KEYS = ["session_id", "batch_id", "source_key"]
TOMBSTONE_KEYS = ["session_id", "source_key", "batch_id", "outcome", "settled_at_ms"]
BATCH_VIEW_KEYS = {"batch", "state", "claim", "fencing_counter"}
LEASE_VIEW_KEYS = {"claim_id", "owner_id", "lease_token", "fencing_token", "claimed_at_epoch_ms",
                   "expires_at_epoch_ms"}
SESSION_ROW_KEYS = {"session_id", "ready", "delayed", "held", "lease_expired", "tombstones",
                    "oldest_enqueued_at_ms"}

# Environment that could make Rich colour its output or change its width behind a test's back.
QUIET_ENV: dict[str, str | None] = {"FORCE_COLOR": None, "TTY_COMPATIBLE": None, "TTY_INTERACTIVE": None,
                                    "COLUMNS": "100", "LINES": None}


# --------------------------------------------------------------------------- helpers


def cli(*args: Any, input: str | bytes | None = None, env: dict[str, str | None] | None = None,
        now: int | str | None = NOW_TEXT):
    """Run `turnq ARGS` in-process. `--now` is added unless the args give one or `now` is None."""
    argv = [str(arg) for arg in args]
    if now is not None and "--now" not in argv:
        argv += ["--now", str(now)]
    return RUNNER.invoke(app, argv, input=input, env={**QUIET_ENV, **(env or {})})


def at(offset_ms: int) -> str:
    """A `--now` value `offset_ms` after NOW (epoch milliseconds)."""
    return str(NOW + offset_ms)


def doc(result) -> Any:
    """The one JSON document on stdout of a successful command (json.loads refuses anything more)."""
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    assert result.stdout.endswith("\n"), result.stdout
    return json.loads(result.stdout)


def json_lines(result) -> list[Any]:
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    lines = result.stdout.splitlines()
    assert lines and all(line.strip() for line in lines), result.stdout
    assert result.stdout.endswith("\n")
    return [json.loads(line) for line in lines]


def fails(result, status: int, *needles: str, json_mode: bool = False) -> str:
    """An error: the exit status, nothing on stdout, exactly one line on stderr, no traceback.
    Returns the message; each needle must occur in it."""
    assert result.exit_code == status, (result.exit_code, result.stdout, result.stderr)
    assert result.stdout == "", result.stdout
    err = result.stderr
    assert err.endswith("\n") and err.count("\n") == 1, repr(err)
    assert "Traceback" not in err
    if json_mode:
        data = json.loads(err)
        assert list(data) == ["error", "message"], data
        assert data["error"] == CODE_NAMES[status]
        message = data["message"]
    else:
        assert err.startswith("turnq: error: "), err
        message = err[len("turnq: error: "):]
    assert message.strip()
    for needle in needles:
        assert needle in message, (needle, message)
    return message


def enqueue(session: str, *args: Any, **kw: Any) -> dict:
    return doc(cli("enqueue", session, *args, "--json", **kw))


def claim(session: str, *args: Any, **kw: Any) -> dict:
    return doc(cli("claim", session, *args, "--json", **kw))


def texts_of(batch: dict) -> list[str]:
    return [entry["text"] for item in batch["items"] if item["payload"]["type"] == "turn_input"
            for entry in item["payload"]["input"]["items"] if entry["type"] == "text"]


def text_payload(*texts: str) -> dict:
    return {"type": "turn_input", "input": {"items": [{"type": "text", "text": t} for t in texts]}}


def draft(session: str, *texts: str, **extra: Any) -> dict:
    return {"session_id": session, "delivery_policy": "earliest_safe_boundary", "slot_policy": "join",
            "merge_key": "never", "available_at_ms": 0, "payloads": [text_payload(*texts)], **extra}


def wake_payload(target: str, process_id: str = "p1", sequence: int = 7) -> dict:
    return {"type": "process_wake", "wake": {
        "wake_id": f"{process_id}:{sequence}", "target_session_id": target, "target_scope_id": f"session:{target}",
        "process_id": process_id, "sequence": sequence, "dedupe_key": f"{process_id}:{sequence}",
        "input": "done", "created_at_ms": NOW}}


def inspect_session(session: str, *args: Any, **kw: Any) -> dict:
    return doc(cli("inspect", session, *args, "--json", **kw))


def fixed_key(kind: str, session: str, reason: str, now_ms: int = NOW) -> str:
    return hashlib.sha256(f"{kind}:{session}:{reason}:{now_ms}".encode()).hexdigest()[:16]


@pytest.fixture
def lock_path(store_path: Path) -> Path:
    return store_path.with_name(store_path.name + ".lock")


@pytest.fixture(scope="module")
def seeded_bytes(tmp_path_factory) -> bytes:
    """A store with a plain batch, a keyed batch, a held claim and a tombstone (built once)."""
    path = tmp_path_factory.mktemp("seeded") / "turnq.json"
    env = {"TURNQ_STORE": str(path)}
    enqueue("s", "--text", "first", "--source-key", "host:first", env=env)
    enqueue("s", "--text", "second", env=env)
    claim("s", "--max-batches", "1", env=env)
    enqueue("t", "--text", "gone", "--source-key", "host:gone", env=env)
    gone = claim("t", env=env)
    doc(cli("complete", "--claim", json.dumps(gone), "--json", env=env))
    return path.read_bytes()


@pytest.fixture
def seeded(store_path: Path, seeded_bytes: bytes) -> bytes:
    """The seeded store at the test's store path; returns its bytes."""
    store_path.write_bytes(seeded_bytes)
    return seeded_bytes


# =========================================================================== 1. every command


class TestEnqueueCommand:
    def test_json_prints_the_batch_in_wire_shape(self, store_path):
        batch = enqueue("s", "--text", "hello")
        assert list(batch) == [k for k in BATCH_KEYS if k != "source_key"]
        assert batch["session_id"] == "s"
        assert batch["enqueue_seq"] == 1
        assert batch["batch_id"].startswith("qwb:") and len(batch["batch_id"]) == 4 + 64
        assert batch["enqueued_at_ms"] == NOW
        assert batch["items"] == [{"item_id": batch["batch_id"] + ":item:0",
                                   "payload": {"type": "turn_input", "input": {
                                       "items": [{"type": "text", "text": "hello"}], "image_blobs": {}}}}]
        assert store_path.exists()

    def test_json_with_source_key_writes_it_in_place(self):
        batch = enqueue("s", "--text", "hello", "--source-key", "host:m1")
        assert list(batch) == BATCH_KEYS
        assert batch["source_key"] == "host:m1"

    def test_defaults_are_after_commit_join_never_available_at_once(self):
        batch = enqueue("s", "--text", "hello")
        assert batch["delivery_policy"] == "after_current_turn_commit"
        assert batch["slot_policy"] == "join"
        assert batch["merge_key"] == "never"
        assert batch["available_at_ms"] == 0
        assert "source_key" not in batch

    def test_policy_options_are_kept(self):
        batch = enqueue("s", "--text", "x", "--delivery", "earliest_safe_boundary", "--slot", "exclusive",
                        "--merge", "group:chat")
        assert (batch["delivery_policy"], batch["slot_policy"], batch["merge_key"]) == (
            "earliest_safe_boundary", "exclusive", {"group": "chat"})
        assert enqueue("s", "--text", "y", "--merge", "payload_default")["merge_key"] == "payload_default"

    def test_human_output_names_session_sequence_and_text(self):
        result = cli("enqueue", "chat", "--text", "hello there", "--source-key", "host:m1")
        assert result.exit_code == 0, result.stderr
        assert result.stderr == ""
        out = result.stdout
        assert "chat" in out and "hello there" in out and "host:m1" in out
        assert "qwb:" in out
        assert not out.lstrip().startswith("{")

    def test_sequence_numbers_increase_store_wide(self):
        assert [enqueue(s, "--text", "x")["enqueue_seq"] for s in ("a", "b", "a")] == [1, 2, 3]


class TestWakeCommand:
    def test_json_prints_the_wake_batch(self):
        batch = doc(cli("wake", "s", "--process-id", "p1", "--sequence", "7", "--input", "build done", "--json"))
        assert list(batch) == BATCH_KEYS
        assert batch["source_key"] == "process:p1:event:7:wake"
        assert (batch["delivery_policy"], batch["slot_policy"], batch["merge_key"]) == (
            "earliest_safe_boundary", "exclusive", "never")
        assert batch["available_at_ms"] == 0
        payload = batch["items"][0]["payload"]
        assert payload == {"type": "process_wake", "wake": {
            "wake_id": "p1:7", "target_session_id": "s", "target_scope_id": "session:s", "process_id": "p1",
            "sequence": 7, "event_type": "process.wake",
            "event_invocation": {"scope": {"session_id": "s"}, "subject": {
                "type": "process_event", "process_id": "p1", "sequence": 7, "event_type": "process.wake"}},
            "dedupe_key": "p1:7", "input": "build done", "created_at_ms": NOW}}

    def test_wake_options(self):
        batch = doc(cli("wake", "s", "--process-id", "p1", "--sequence", "3", "--input", "x", "--wake-id", "w-1",
                        "--event-type", "process.exit", "--scope-id", "scope-9", "--dedupe-key", "d-1",
                        "--delay", "30s", "--json"))
        wake = batch["items"][0]["payload"]["wake"]
        assert (wake["wake_id"], wake["event_type"], wake["target_scope_id"], wake["dedupe_key"]) == (
            "w-1", "process.exit", "scope-9", "d-1")
        assert wake["event_invocation"]["subject"]["event_type"] == "process.exit"
        assert batch["available_at_ms"] == NOW + 30 * SECOND

    def test_wake_available_at(self):
        batch = doc(cli("wake", "s", "--process-id", "p", "--sequence", "1", "--input", "x",
                        "--available-at", "2026-01-01T01:00:00Z", "--json"))
        assert batch["available_at_ms"] == NOW + HOUR

    def test_same_wake_twice_is_one_batch_even_at_a_later_clock_and_strict(self, store_path):
        first = doc(cli("wake", "s", "--process-id", "p1", "--sequence", "7", "--input", "x", "--json"))
        before = store_path.read_bytes()
        again = cli("wake", "s", "--process-id", "p1", "--sequence", "7", "--input", "x", "--strict", "--json",
                    now=at(MINUTE))
        assert doc(again) == first  # created_at_ms is not compared: no conflict under --strict
        assert "warning" not in again.stderr and "note" in again.stderr
        assert store_path.read_bytes() == before

    def test_wake_replay_with_other_input_is_a_conflict_under_strict(self, store_path):
        doc(cli("wake", "s", "--process-id", "p1", "--sequence", "7", "--input", "x", "--json"))
        before = store_path.read_bytes()
        result = cli("wake", "s", "--process-id", "p1", "--sequence", "7", "--input", "other", "--strict", "--json")
        fails(result, 6, json_mode=True)
        assert store_path.read_bytes() == before

    def test_human_output(self):
        result = cli("wake", "s", "--process-id", "build-7", "--sequence", "3", "--input", "done")
        assert result.exit_code == 0 and result.stderr == ""
        assert "build-7" in result.stdout and "#3" in result.stdout


class TestClaimCommand:
    def test_json_prints_the_claim(self):
        batch = enqueue("s", "--text", "hello")
        made = claim("s", "--owner", "worker-a")
        assert list(made) == CLAIM_KEYS
        assert made["session_id"] == "s"
        assert made["claim_id"] == "qwc:1:1"
        assert made["owner_id"] == "worker-a"
        assert made["lease_token"] == hashlib.sha256(f"s:worker-a:qwc:1:1:{NOW}".encode()).hexdigest()
        assert made["fencing_token"] == 1
        assert made["claimed_at_epoch_ms"] == NOW
        assert made["expires_at_epoch_ms"] == NOW + DEFAULT_TTL
        assert made["batches"] == [batch]

    def test_ttl_option(self):
        enqueue("s", "--text", "hello")
        assert claim("s", "--ttl", "30s")["expires_at_epoch_ms"] == NOW + 30 * SECOND

    def test_ttl_in_plain_milliseconds(self):
        enqueue("s", "--text", "hello")
        assert claim("s", "--ttl", "1500")["expires_at_epoch_ms"] == NOW + 1500

    def test_human_output_shows_claim_and_its_turn_input(self):
        enqueue("s", "--text", "what changed?")
        result = cli("claim", "s", "--owner", "worker-a")
        assert result.exit_code == 0, result.stderr
        assert result.stderr == ""
        out = result.stdout
        assert "qwc:1:1" in out
        assert "worker-a" in out
        assert "2026-01-01T00:15:00" in out  # expiry
        assert "what changed?" in out  # the materialised turn input
        token = hashlib.sha256(f"s:worker-a:qwc:1:1:{NOW}".encode()).hexdigest()
        assert token[:20] in out
        fencing = [line for line in out.splitlines() if "fencing" in line.lower()]
        assert fencing and "1" in fencing[0].split()

    def test_human_output_at_a_checkpoint_shows_the_injected_message(self):
        enqueue("s", "--text", "inject me", "--delivery", "earliest_safe_boundary")
        result = cli("claim", "s", "--boundary", "active_turn_checkpoint")
        assert result.exit_code == 0 and "inject me" in result.stdout and "qwc:1:1" in result.stdout


class TestCompleteCommand:
    def test_json_prints_the_completion(self, store_path):
        enqueue("s", "--text", "a")
        enqueue("s", "--text", "b")
        made = claim("s")
        done = doc(cli("complete", "--claim", json.dumps(made), "--json"))
        assert list(done) == COMPLETION_KEYS
        assert done == {"session_id": "s", "claim_id": made["claim_id"], "lease_token": made["lease_token"],
                        "batch_ids": [b["batch_id"] for b in made["batches"]]}
        assert inspect_session("s")["batches"] == []

    def test_human_output(self):
        batch = enqueue("s", "--text", "a")
        made = claim("s")
        result = cli("complete", "--claim", json.dumps(made))
        assert result.exit_code == 0 and result.stderr == ""
        assert made["claim_id"] in result.stdout and batch["batch_id"] in result.stdout

    def test_a_completion_document_is_accepted_as_claim(self):
        enqueue("s", "--text", "a")
        made = claim("s")
        completion = {"session_id": "s", "claim_id": made["claim_id"], "lease_token": made["lease_token"],
                      "batch_ids": [made["batches"][0]["batch_id"]]}
        assert doc(cli("complete", "--claim", json.dumps(completion), "--json")) == completion

    def test_an_ended_lease_nobody_reclaimed_can_still_be_completed(self):
        enqueue("s", "--text", "a")
        made = claim("s", "--ttl", "1s")
        done = doc(cli("complete", "--claim", json.dumps(made), "--json", now=at(HOUR)))
        assert done["batch_ids"] == [made["batches"][0]["batch_id"]]


class TestRenewCommand:
    def test_json_prints_the_renewed_claim(self):
        enqueue("s", "--text", "a")
        made = claim("s", "--ttl", "1m")
        renewed = doc(cli("renew", "--claim", json.dumps(made), "--ttl", "1h", "--json", now=at(5 * MINUTE)))
        assert list(renewed) == CLAIM_KEYS
        assert renewed["expires_at_epoch_ms"] == NOW + 5 * MINUTE + HOUR
        for key in ("claim_id", "lease_token", "fencing_token", "claimed_at_epoch_ms", "owner_id", "batches"):
            assert renewed[key] == made[key], key
        view = inspect_session("s", now=at(5 * MINUTE))
        assert view["batches"][0]["claim"]["expires_at_epoch_ms"] == NOW + 5 * MINUTE + HOUR

    def test_default_ttl_is_fifteen_minutes(self):
        enqueue("s", "--text", "a")
        made = claim("s", "--ttl", "1m")
        renewed = doc(cli("renew", "--claim", json.dumps(made), "--json", now=at(30 * SECOND)))
        assert renewed["expires_at_epoch_ms"] == NOW + 30 * SECOND + DEFAULT_TTL

    def test_an_ended_lease_nobody_reclaimed_can_be_renewed(self):
        enqueue("s", "--text", "a")
        made = claim("s", "--ttl", "1s")
        renewed = doc(cli("renew", "--claim", json.dumps(made), "--ttl", "1m", "--json", now=at(HOUR)))
        assert renewed["expires_at_epoch_ms"] == NOW + HOUR + MINUTE

    def test_human_output_shows_new_expiry(self):
        enqueue("s", "--text", "a")
        made = claim("s")
        result = cli("renew", "--claim", json.dumps(made), "--ttl", "2h")
        assert result.exit_code == 0 and result.stderr == ""
        assert made["claim_id"] in result.stdout
        assert "2026-01-01T02:00:00" in result.stdout


class TestAbandonCommand:
    def test_json_prints_released_ids_then_empty_when_lost(self):
        first = enqueue("s", "--text", "a")
        second = enqueue("s", "--text", "b")
        made = claim("s")
        released = doc(cli("abandon", "--claim", json.dumps(made), "--json"))
        assert released == {"released": [first["batch_id"], second["batch_id"]]}
        assert doc(cli("abandon", "--claim", json.dumps(made), "--json")) == {"released": []}

    def test_abandoned_batches_are_claimable_again_with_a_larger_fencing_token(self):
        enqueue("s", "--text", "a")
        made = claim("s")
        doc(cli("abandon", "--claim", json.dumps(made), "--json"))
        view = inspect_session("s")
        assert view["batches"][0]["state"] == "ready" and view["batches"][0]["claim"] is None
        assert view["batches"][0]["fencing_counter"] == 1
        again = claim("s")
        assert again["fencing_token"] == 2 and again["claim_id"] == "qwc:1:2"

    def test_human_output(self):
        batch = enqueue("s", "--text", "a")
        made = claim("s")
        result = cli("abandon", "--claim", json.dumps(made))
        assert result.exit_code == 0 and result.stderr == ""
        assert made["claim_id"] in result.stdout and batch["batch_id"] in result.stdout
        again = cli("abandon", "--claim", json.dumps(made))
        assert again.exit_code == 0 and again.stderr == ""
        assert made["claim_id"] in again.stdout and batch["batch_id"] not in again.stdout


class TestCancelCommand:
    def test_json_prints_the_removed_batch(self):
        batch = enqueue("s", "--text", "a", "--source-key", "host:a")
        removed = doc(cli("cancel", "s", batch["batch_id"], "--json"))
        assert removed == batch
        view = inspect_session("s", "--tombstones")
        assert view["batches"] == []
        assert view["tombstone_list"][0]["outcome"] == "cancelled"

    def test_cancel_by_unique_prefix(self):
        batch = enqueue("s", "--text", "a")
        assert doc(cli("cancel", "s", batch["batch_id"][:16], "--json")) == batch

    def test_a_batch_whose_lease_ended_can_be_cancelled(self):
        batch = enqueue("s", "--text", "a")
        claim("s", "--ttl", "0")
        assert doc(cli("cancel", "s", batch["batch_id"], "--json")) == batch

    def test_human_output(self):
        batch = enqueue("s", "--text", "cancel me")
        result = cli("cancel", "s", batch["batch_id"])
        assert result.exit_code == 0 and result.stderr == ""
        assert "cancel me" in result.stdout and batch["batch_id"][:14] in result.stdout


class TestSessionCommands:
    def test_reset_session_json_prints_the_receipt(self):
        receipt = doc(cli("reset-session", "s", "--reason", "user asked", "--json"))
        assert list(receipt) == RECEIPT_KEYS
        key = fixed_key("reset_session", "s", "user asked")
        assert receipt["session_id"] == "s"
        assert receipt["source_key"] == f"command:reset_session:{key}"
        batch = doc(cli("inspect", "s", "--batch", receipt["batch_id"], "--json"))["batch"]
        assert batch["batch_id"] == receipt["batch_id"]
        assert (batch["delivery_policy"], batch["slot_policy"], batch["merge_key"]) == (
            "after_current_turn_commit", "exclusive", "never")
        assert batch["items"][0]["payload"] == {"type": "session_command",
                                                "command": {"kind": "reset_session", "reason": "user asked"}}

    def test_refresh_tools_json_prints_the_receipt(self):
        receipt = doc(cli("refresh-tools", "s", "--reason", "tools changed", "--expected-generation", "4", "--json"))
        assert list(receipt) == RECEIPT_KEYS
        key = fixed_key("refresh_tool_surface", "s", "tools changed")
        assert receipt["source_key"] == f"command:refresh_tool_surface:{key}"
        batch = doc(cli("inspect", "s", "--batch", receipt["batch_id"], "--json"))["batch"]
        assert batch["items"][0]["payload"]["command"] == {
            "kind": "refresh_tool_surface", "reason": "tools changed", "expected_generation": 4}

    def test_refresh_tools_without_expected_generation_omits_it(self):
        receipt = doc(cli("refresh-tools", "s", "--reason", "r", "--json"))
        batch = doc(cli("inspect", "s", "--batch", receipt["batch_id"], "--json"))["batch"]
        assert batch["items"][0]["payload"]["command"] == {"kind": "refresh_tool_surface", "reason": "r"}

    @pytest.mark.parametrize("command,kind", [("reset-session", "reset_session"),
                                              ("refresh-tools", "refresh_tool_surface")])
    def test_same_key_twice_gives_the_same_receipt_and_writes_nothing(self, store_path, command, kind):
        first = doc(cli(command, "s", "--reason", "why", "--json"))
        before = store_path.read_bytes()
        again = cli(command, "s", "--reason", "why", "--json")
        assert doc(again) == first
        assert "note" in again.stderr and first["batch_id"] in again.stderr
        assert store_path.read_bytes() == before
        assert len(inspect_session("s")["batches"]) == 1

    def test_the_fixed_key_depends_on_the_clock_and_the_reason(self):
        one = doc(cli("reset-session", "s", "--reason", "why", "--json"))
        later = doc(cli("reset-session", "s", "--reason", "why", "--json", now=at(1)))
        other = doc(cli("reset-session", "s", "--reason", "because", "--json"))
        assert later["source_key"] == "command:reset_session:" + fixed_key("reset_session", "s", "why", NOW + 1)
        assert other["source_key"] == "command:reset_session:" + fixed_key("reset_session", "s", "because")
        assert len({one["batch_id"], later["batch_id"], other["batch_id"]}) == 3

    def test_replay_after_completion_says_it_was_completed(self, store_path):
        receipt = doc(cli("reset-session", "s", "--reason", "why", "--json"))
        doc(cli("complete", "--claim", json.dumps(claim("s")), "--json"))
        before = store_path.read_bytes()
        again = cli("reset-session", "s", "--reason", "why", "--json")
        assert doc(again) == receipt
        assert "already completed" in again.stderr
        assert store_path.read_bytes() == before

    def test_explicit_idempotency_key(self):
        receipt = doc(cli("reset-session", "s", "--reason", "why", "--idempotency-key", "K-1", "--json"))
        assert receipt["source_key"] == "command:reset_session:K-1"
        again = doc(cli("reset-session", "s", "--reason", "why", "--idempotency-key", "K-1", "--json", now=at(HOUR)))
        assert again == receipt

    def test_without_now_the_key_is_random(self):
        one = doc(cli("reset-session", "s", "--reason", "why", "--json", now=None))
        two = doc(cli("reset-session", "s", "--reason", "why", "--json", now=None))
        assert one["source_key"] != two["source_key"]
        assert one["source_key"].startswith("command:reset_session:")

    def test_same_key_other_reason_is_a_conflict_under_strict(self, store_path):
        doc(cli("reset-session", "s", "--reason", "why", "--idempotency-key", "K", "--json"))
        before = store_path.read_bytes()
        fails(cli("reset-session", "s", "--reason", "other", "--idempotency-key", "K", "--strict"), 6)
        assert store_path.read_bytes() == before
        relaxed = cli("reset-session", "s", "--reason", "other", "--idempotency-key", "K", "--json")
        assert relaxed.exit_code == 0 and "warning" in relaxed.stderr

    @pytest.mark.parametrize("command,kind", [("reset-session", "reset_session"),
                                              ("refresh-tools", "refresh_tool_surface")])
    def test_human_output(self, command, kind):
        result = cli(command, "s", "--reason", "why")
        assert result.exit_code == 0 and result.stderr == ""
        key = fixed_key(kind, "s", "why")
        assert kind in result.stdout
        assert f"command:{kind}:{key}" in result.stdout
        assert "qwb:" in result.stdout


class TestVacuumCommand:
    def settle(self, session: str, key: str, how: str = "complete") -> dict:
        batch = enqueue(session, "--text", key, "--source-key", key)
        if how == "complete":
            made = claim(session)
            doc(cli("complete", "--claim", json.dumps(made), "--json"))
        else:
            doc(cli("cancel", session, batch["batch_id"], "--json"))
        return batch

    def test_json_prints_removed_tombstones(self):
        done = self.settle("s", "host:a")
        gone = self.settle("s", "host:b", how="cancel")
        removed = doc(cli("vacuum", "--json"))
        assert list(removed) == ["removed"]
        assert [list(t) for t in removed["removed"]] == [TOMBSTONE_KEYS, TOMBSTONE_KEYS]
        assert removed["removed"] == [
            {"session_id": "s", "source_key": "host:a", "batch_id": done["batch_id"], "outcome": "completed",
             "settled_at_ms": NOW},
            {"session_id": "s", "source_key": "host:b", "batch_id": gone["batch_id"], "outcome": "cancelled",
             "settled_at_ms": NOW},
        ]
        assert doc(cli("vacuum", "--json")) == {"removed": []}
        assert inspect_session("s")["tombstones"] == 0

    def test_a_batch_without_source_key_leaves_no_tombstone(self):
        enqueue("s", "--text", "a")
        doc(cli("complete", "--claim", json.dumps(claim("s")), "--json"))
        assert doc(cli("vacuum", "--json")) == {"removed": []}

    def test_older_than(self):
        self.settle("s", "host:a")
        assert doc(cli("vacuum", "--older-than", "1m", "--json", now=at(30 * SECOND))) == {"removed": []}
        removed = doc(cli("vacuum", "--older-than", "1m", "--json", now=at(MINUTE)))["removed"]
        assert [t["source_key"] for t in removed] == ["host:a"]  # settled exactly `older-than` ago: dropped

    def test_without_older_than_every_tombstone_goes_whatever_its_time(self):
        batch = enqueue("s", "--text", "x", "--source-key", "host:later")
        doc(cli("complete", "--claim", json.dumps(claim("s")), "--json", now=at(HOUR)))
        # settled an hour after the clock the vacuum runs at
        assert doc(cli("vacuum", "--older-than", "0", "--json"))["removed"] == []
        removed = doc(cli("vacuum", "--json"))["removed"]
        assert [(t["batch_id"], t["settled_at_ms"]) for t in removed] == [(batch["batch_id"], NOW + HOUR)]

    def test_one_session_only(self):
        self.settle("s", "host:a")
        self.settle("t", "host:b")
        removed = doc(cli("vacuum", "t", "--json"))["removed"]
        assert [(t["session_id"], t["source_key"]) for t in removed] == [("t", "host:b")]
        assert inspect_session("s")["tombstones"] == 1

    def test_after_vacuum_the_source_key_enqueues_again(self):
        old = self.settle("s", "host:a")
        replay = cli("enqueue", "s", "--text", "host:a", "--source-key", "host:a", "--json")
        assert doc(replay) == old and "already completed" in replay.stderr
        doc(cli("vacuum", "--json"))
        fresh = cli("enqueue", "s", "--text", "host:a", "--source-key", "host:a", "--json")
        batch = doc(fresh)
        assert fresh.stderr == ""
        assert batch["batch_id"] != old["batch_id"] and batch["enqueue_seq"] == old["enqueue_seq"] + 1

    def test_human_output(self):
        done = self.settle("s", "host:a")
        result = cli("vacuum")
        assert result.exit_code == 0 and result.stderr == ""
        assert "host:a" in result.stdout and done["batch_id"][:14] in result.stdout
        empty = cli("vacuum")
        assert empty.exit_code == 0 and empty.stderr == "" and empty.stdout.strip()
        assert "host:a" not in empty.stdout


class TestInspectCommand:
    def test_overview_json_shape_and_counts(self):
        enqueue("a", "--text", "held")
        enqueue("a", "--text", "ready")
        claim("a", "--max-batches", "1")
        enqueue("a", "--text", "later", "--delay", "1h")
        enqueue("b", "--text", "expired", now=at(-MINUTE))
        claim("b", "--ttl", "0")
        enqueue("c", "--text", "done", "--source-key", "host:c")
        doc(cli("complete", "--claim", json.dumps(claim("c")), "--json"))
        view = doc(cli("inspect", "--json"))
        assert list(view) == ["now_ms", "sessions"]
        assert view["now_ms"] == NOW
        assert all(set(row) == SESSION_ROW_KEYS for row in view["sessions"])
        rows = {row["session_id"]: row for row in view["sessions"]}
        assert [row["session_id"] for row in view["sessions"]] == ["a", "b", "c"]
        assert rows["a"] == {"session_id": "a", "ready": 1, "delayed": 1, "held": 1, "lease_expired": 0,
                             "tombstones": 0, "oldest_enqueued_at_ms": NOW}
        assert rows["b"] == {"session_id": "b", "ready": 0, "delayed": 0, "held": 0, "lease_expired": 1,
                             "tombstones": 0, "oldest_enqueued_at_ms": NOW - MINUTE}
        assert rows["c"] == {"session_id": "c", "ready": 0, "delayed": 0, "held": 0, "lease_expired": 0,
                             "tombstones": 1, "oldest_enqueued_at_ms": None}

    def test_overview_of_a_missing_store_is_not_found_and_of_an_emptied_one_is_empty(self, store_path):
        result = cli("inspect", "--json")
        assert result.exit_code == 5 and result.stdout == ""
        assert json.loads(result.stderr)["error"] == "not_found" and not store_path.exists()
        enqueue("s", "--text", "x")
        cli("complete", "--claim", cli("claim", "s", "--json").stdout)
        assert doc(cli("inspect", "--json")) == {"now_ms": NOW, "sessions": []}
        result = cli("inspect")
        assert result.exit_code == 0 and result.stdout.strip() and result.stderr == ""

    def test_session_json_shape(self):
        held = enqueue("s", "--text", "one", "--delivery", "earliest_safe_boundary")
        made = claim("s")
        ready = enqueue("s", "--text", "two", "--delivery", "earliest_safe_boundary", "--source-key", "host:m2")
        delayed = enqueue("s", "--text", "three", "--delay", "10m")
        view = inspect_session("s")
        assert list(view) == ["now_ms", "session_id", "batches", "tombstones", "next_claim", "materialized"]
        assert view["now_ms"] == NOW and view["session_id"] == "s" and view["tombstones"] == 0
        assert all(set(v) == BATCH_VIEW_KEYS for v in view["batches"])
        assert [v["batch"] for v in view["batches"]] == [held, ready, delayed]
        assert [v["state"] for v in view["batches"]] == ["held", "ready", "delayed"]
        assert [v["fencing_counter"] for v in view["batches"]] == [1, 0, 0]
        lease = view["batches"][0]["claim"]
        assert set(lease) == LEASE_VIEW_KEYS
        assert lease == {"claim_id": made["claim_id"], "owner_id": "turnq", "lease_token": made["lease_token"],
                         "fencing_token": 1, "claimed_at_epoch_ms": NOW, "expires_at_epoch_ms": NOW + DEFAULT_TTL}
        assert view["batches"][1]["claim"] is None
        assert view["next_claim"] == {"idle": [ready["batch_id"]], "active_turn_checkpoint": [ready["batch_id"]]}
        assert view["materialized"] == {
            "idle": {"turn_input": {"items": [{"type": "text", "text": "two"}], "image_blobs": {}},
                     "turn_causes": [], "session_command": None},
            "active_turn_checkpoint": {
                "messages": [{"role": "User", "content": "two"}], "turn_causes": [],
                "accepted_turn_inputs": [{"id": "m2", "message": {"role": "User", "content": "two"}}]},
        }

    def test_materialized_wake(self):
        doc(cli("wake", "s", "--process-id", "p1", "--sequence", "7", "--input", "tests passed", "--json"))
        view = inspect_session("s")
        cause = {"id": "p1:7", "event_type": "process.wake",
                 "origin": {"kind": "process", "process_id": "p1", "event_type": "process.wake", "sequence": 7,
                            "wake_id": "p1:7"},
                 "text": "Background process wake\nProcess: p1\nEvent: process.wake #7\nWake input:\ntests passed"}
        assert view["materialized"]["idle"] == {"turn_input": {"items": [], "image_blobs": {}},
                                                "turn_causes": [cause], "session_command": None}
        assert view["materialized"]["active_turn_checkpoint"] == {"messages": [], "turn_causes": [cause],
                                                                  "accepted_turn_inputs": []}

    def test_materialized_session_command_and_checkpoint_null(self):
        receipt = doc(cli("reset-session", "s", "--reason", "fresh start", "--json"))
        view = inspect_session("s")
        assert view["next_claim"] == {"idle": [receipt["batch_id"]], "active_turn_checkpoint": []}
        assert view["materialized"]["active_turn_checkpoint"] is None
        assert view["materialized"]["idle"]["session_command"] == {"kind": "reset_session", "reason": "fresh start"}

    def test_materialized_images(self, tmp_path):
        (tmp_path / "a.png").write_bytes(b"\x89PNG")
        enqueue("s", "--text", "look", "--image", "i1=a.png", "--text", "here", "--delivery",
                "earliest_safe_boundary", "--source-key", "injection:abc")
        work = inspect_session("s")["materialized"]["active_turn_checkpoint"]
        message = {"role": "User", "content": "look\nhere", "images": [[0x89, 0x50, 0x4E, 0x47]]}
        assert work["messages"] == [message]
        assert work["accepted_turn_inputs"] == [{"id": "abc", "message": message}]

    def test_nothing_claimable_gives_nulls(self):
        enqueue("s", "--text", "later", "--delay", "1m")
        view = inspect_session("s")
        assert view["next_claim"] == {"idle": [], "active_turn_checkpoint": []}
        assert view["materialized"] == {"idle": None, "active_turn_checkpoint": None}

    def test_an_expired_lease_shows_its_claim(self):
        enqueue("s", "--text", "one")
        made = claim("s", "--owner", "w", "--ttl", "1s")
        view = inspect_session("s", now=at(2 * SECOND))["batches"][0]
        assert view["state"] == "lease_expired"
        assert view["claim"]["claim_id"] == made["claim_id"] and view["claim"]["owner_id"] == "w"
        assert view["claim"]["expires_at_epoch_ms"] == NOW + SECOND
        assert inspect_session("s", now=at(2 * SECOND))["next_claim"]["idle"] == [made["batches"][0]["batch_id"]]

    def test_unknown_session_is_empty(self):
        enqueue("somebody", "--text", "x")  # the store exists; the session is merely unknown
        view = inspect_session("nobody")
        assert view["batches"] == [] and view["tombstones"] == 0

    def test_pending_leaves_held_batches_out(self):
        held = enqueue("s", "--text", "one")
        claim("s")
        ready = enqueue("s", "--text", "two")
        assert [v["batch"]["batch_id"] for v in inspect_session("s")["batches"]] == [held["batch_id"],
                                                                                   ready["batch_id"]]
        pending = inspect_session("s", "--pending")
        assert [v["batch"]["batch_id"] for v in pending["batches"]] == [ready["batch_id"]]
        human = cli("inspect", "s", "--pending")
        assert human.exit_code == 0
        assert ready["batch_id"][:14] in human.stdout and held["batch_id"][:14] not in human.stdout

    def test_pending_keeps_expired_leases(self):
        expired = enqueue("s", "--text", "one")
        claim("s", "--ttl", "0")
        assert [v["batch"]["batch_id"] for v in inspect_session("s", "--pending")["batches"]] == [
            expired["batch_id"]]

    def test_tombstones_flag_adds_the_list(self):
        batch = enqueue("s", "--text", "one", "--source-key", "host:1")
        doc(cli("complete", "--claim", json.dumps(claim("s")), "--json", now=at(SECOND)))
        plain = inspect_session("s")
        assert "tombstone_list" not in plain and plain["tombstones"] == 1
        view = inspect_session("s", "--tombstones")
        assert view["tombstone_list"] == [{"session_id": "s", "source_key": "host:1", "batch_id": batch["batch_id"],
                                           "outcome": "completed", "settled_at_ms": NOW + SECOND}]
        assert {k: v for k, v in view.items() if k != "tombstone_list"} == plain
        human = cli("inspect", "s", "--tombstones")
        assert human.exit_code == 0 and "host:1" in human.stdout and "completed" in human.stdout

    def test_batch_shows_one_batch_view(self):
        enqueue("s", "--text", "one")
        second = enqueue("s", "--text", "two", "--source-key", "host:2")
        view = doc(cli("inspect", "s", "--batch", second["batch_id"], "--json"))
        assert set(view) == BATCH_VIEW_KEYS
        assert view == inspect_session("s")["batches"][1]
        assert doc(cli("inspect", "s", "--batch", second["batch_id"][:16], "--json")) == view

    def test_next_claim_uses_the_default_max_batches_of_64(self):
        text = "".join(json.dumps(draft("s", f"m{i}")) + "\n" for i in range(66))
        ids = [b["batch_id"] for b in json_lines(cli("enqueue", "--draft", text, "--json"))]
        view = inspect_session("s")
        assert view["next_claim"]["idle"] == ids[:64]
        assert view["next_claim"]["active_turn_checkpoint"] == ids[:64]
        assert len(view["materialized"]["idle"]["turn_input"]["items"]) == 64

    def test_human_shows_turn_causes_in_full_and_an_exclusive_command_as_such(self):
        doc(cli("wake", "s", "--process-id", "p1", "--sequence", "7", "--input", "tests passed", "--json"))
        out = cli("inspect", "s", env={"COLUMNS": "80"}).stdout
        for line in ("Background process wake", "Process: p1", "Event: process.wake #7", "Wake input:",
                     "tests passed"):
            assert line in out, line
        doc(cli("complete", "--claim", json.dumps(claim("s")), "--json"))
        doc(cli("reset-session", "s", "--reason", "fresh start", "--json"))
        out = cli("inspect", "s", env={"COLUMNS": "100"}).stdout
        command_lines = [line for line in out.splitlines() if "reset_session" in line and "fresh start" in line]
        assert command_lines, out
        assert any("session command" in line.lower() for line in command_lines), command_lines

    def test_batch_human_output_shows_the_whole_text(self):
        long_text = "word " * 24 + "END-OF-TEXT"
        batch = enqueue("s", "--text", long_text)
        out = cli("inspect", "s", "--batch", batch["batch_id"], env={"COLUMNS": "200"}).stdout
        assert long_text in out

    def test_batch_human_output(self):
        batch = enqueue("s", "--text", "full text of the batch", "--source-key", "host:2")
        result = cli("inspect", "s", "--batch", batch["batch_id"])
        assert result.exit_code == 0 and result.stderr == ""
        assert batch["batch_id"] in result.stdout or batch["batch_id"][:40] in result.stdout
        assert "full text of the batch" in result.stdout and "host:2" in result.stdout

    @pytest.mark.parametrize("args", [[], ["s"], ["s", "--pending", "--tombstones"], ["s", "--batch", "qwb:00"],
                                      ["--json"], ["s", "--json"]])
    def test_never_creates_the_store(self, tmp_path, args):
        result = cli("inspect", *args)
        assert result.exit_code in (0, 5)
        assert sorted(p.name for p in tmp_path.iterdir()) == []

    def test_never_writes(self, store_path, seeded):
        for args in ([], ["s"], ["s", "--tombstones"], ["t", "--pending"], ["--json"], ["s", "--json"]):
            # a later clock turns the held lease into an expired one: still nothing is written
            for now in (NOW_TEXT, at(HOUR)):
                assert cli("inspect", *args, now=now).exit_code == 0
                assert store_path.read_bytes() == seeded

    def test_human_session_view_shows_batches_and_next_claims(self):
        one = enqueue("s", "--text", "first message", "--delivery", "earliest_safe_boundary")
        enqueue("s", "--text", "second message", "--delay", "5m")
        result = cli("inspect", "s")
        assert result.exit_code == 0 and result.stderr == ""
        out = result.stdout
        assert one["batch_id"][:14] in out
        assert "first message" in out and "second message" in out
        assert "ready" in out and "delayed" in out

    def test_human_overview(self, seeded):
        result = cli("inspect")
        assert result.exit_code == 0 and result.stderr == ""
        lines = result.stdout.splitlines()
        assert any(line.split()[:1] == ["s"] for line in lines)
        assert any(line.split()[:1] == ["t"] for line in lines)


# =========================================================================== 2. exit codes

# Every command × malformed values (exit 2, the option named, the store unchanged) is the
# data-driven matrix of tests/test_bad_input.py; here, one case.


@pytest.mark.parametrize("json_mode", [False, True], ids=["human", "json"])
def test_usage_error_exits_2_with_one_line_and_leaves_the_store_alone(store_path, seeded, json_mode):
    result = cli("enqueue", "s", "--text", "x", "--delivery", "bogus", *(["--json"] if json_mode else []))
    fails(result, 2, "--delivery", json_mode=json_mode)
    assert store_path.read_bytes() == seeded


def test_exit_0_for_success_and_for_a_replay(store_path):
    assert cli("enqueue", "s", "--text", "x", "--source-key", "k").exit_code == 0
    assert cli("enqueue", "s", "--text", "x", "--source-key", "k").exit_code == 0


class TestExit3Empty:
    def test_json_is_null_and_stderr_stays_empty(self):
        result = cli("claim", "s", "--json")
        assert result.exit_code == 3
        assert result.stdout == "null\n"
        assert result.stderr == ""

    def test_human_mode_says_so_on_stdout_not_as_an_error(self):
        result = cli("claim", "s")
        assert result.exit_code == 3
        assert result.stderr == ""
        assert "s" in result.stdout and result.stdout.strip()

    def test_only_delayed_or_held_work(self, store_path):
        enqueue("s", "--text", "later", "--delay", "1m")
        enqueue("s", "--text", "held")
        claim("s")
        before = store_path.read_bytes()
        result = cli("claim", "s", "--json")
        assert (result.exit_code, result.stdout, result.stderr) == (3, "null\n", "")
        assert store_path.read_bytes() == before

    def test_max_batches_zero(self):
        enqueue("s", "--text", "x")
        result = cli("claim", "s", "--max-batches", "0", "--json")
        assert (result.exit_code, result.stdout, result.stderr) == (3, "null\n", "")

    def test_other_session_is_not_claimed(self):
        enqueue("s", "--text", "x")
        result = cli("claim", "t", "--json")
        assert (result.exit_code, result.stdout) == (3, "null\n")


class TestExit4LeaseLost:
    def reclaimed(self) -> tuple[dict, dict]:
        """A claim whose lease ran out and which another owner then claimed."""
        enqueue("s", "--text", "a")
        first = claim("s", "--owner", "w1", "--ttl", "1s")
        second = claim("s", "--owner", "w2", now=at(2 * SECOND))
        assert second["fencing_token"] == first["fencing_token"] + 1
        return first, second

    @pytest.mark.parametrize("json_mode", [False, True])
    def test_complete_with_a_stale_token(self, store_path, json_mode):
        first, second = self.reclaimed()
        before = store_path.read_bytes()
        result = cli("complete", "--claim", json.dumps(first), *(["--json"] if json_mode else []),
                     now=at(3 * SECOND))
        fails(result, 4, first["claim_id"], json_mode=json_mode)
        assert store_path.read_bytes() == before
        view = inspect_session("s", now=at(3 * SECOND))
        assert view["batches"][0]["claim"]["owner_id"] == "w2"

    @pytest.mark.parametrize("json_mode", [False, True])
    def test_renew_with_a_stale_token(self, store_path, json_mode):
        first, second = self.reclaimed()
        before = store_path.read_bytes()
        result = cli("renew", "--claim", json.dumps(first), *(["--json"] if json_mode else []), now=at(3 * SECOND))
        fails(result, 4, json_mode=json_mode)
        assert store_path.read_bytes() == before

    def test_stale_explicit_form(self, store_path):
        first, _ = self.reclaimed()
        before = store_path.read_bytes()
        fails(cli("complete", "s", "--claim-id", first["claim_id"], "--lease-token", first["lease_token"],
                  now=at(3 * SECOND)), 4)
        assert store_path.read_bytes() == before

    def test_complete_twice(self, store_path):
        enqueue("s", "--text", "a")
        made = claim("s")
        doc(cli("complete", "--claim", json.dumps(made), "--json"))
        before = store_path.read_bytes()
        fails(cli("complete", "--claim", json.dumps(made)), 4)
        assert store_path.read_bytes() == before

    def test_complete_naming_only_part_of_the_claim_removes_nothing(self, store_path):
        first = enqueue("s", "--text", "a")
        enqueue("s", "--text", "b")
        made = claim("s")
        assert len(made["batches"]) == 2
        before = store_path.read_bytes()
        fails(cli("complete", "s", "--claim-id", made["claim_id"], "--lease-token", made["lease_token"],
                  "--batch", first["batch_id"]), 4)
        assert store_path.read_bytes() == before

    def test_a_wrong_token_is_lost(self, store_path):
        enqueue("s", "--text", "a")
        made = claim("s")
        before = store_path.read_bytes()
        fails(cli("complete", "s", "--claim-id", made["claim_id"], "--lease-token", "0" * 64), 4)
        fails(cli("renew", "s", "--claim-id", made["claim_id"], "--lease-token", "0" * 64), 4)
        assert store_path.read_bytes() == before

    def test_renew_after_part_of_the_claim_was_reclaimed_changes_nothing(self, store_path):
        a = enqueue("s", "--text", "a")
        enqueue("s", "--text", "b")
        made = claim("s", "--ttl", "1s")
        # The lease ran out; another worker took a alone. b still carries the old claim.
        other = claim("s", "--owner", "w2", "--max-batches", "1", now=at(2 * SECOND))
        assert [b["batch_id"] for b in other["batches"]] == [a["batch_id"]]
        before = store_path.read_bytes()
        fails(cli("renew", "--claim", json.dumps(made), "--ttl", "1h", now=at(MINUTE)), 4, a["batch_id"])
        fails(cli("complete", "--claim", json.dumps(made)), 4)
        assert store_path.read_bytes() == before

    def test_a_completion_naming_no_batches_is_lost(self, store_path, seeded):
        completion = {"session_id": "s", "claim_id": "qwc:1:1", "lease_token": "t", "batch_ids": []}
        fails(cli("complete", "--claim", json.dumps(completion), "--json"), 4, json_mode=True)
        assert store_path.read_bytes() == seeded

    def test_abandon_of_a_lost_claim_document_releases_nothing(self, store_path):
        first, second = self.reclaimed()
        before = store_path.read_bytes()
        assert doc(cli("abandon", "--claim", json.dumps(first), "--json", now=at(3 * SECOND))) == {"released": []}
        assert store_path.read_bytes() == before

    @pytest.mark.parametrize("json_mode", [False, True])
    def test_cancel_of_a_held_batch(self, store_path, json_mode):
        batch = enqueue("s", "--text", "a")
        claim("s")
        before = store_path.read_bytes()
        result = cli("cancel", "s", batch["batch_id"], *(["--json"] if json_mode else []))
        fails(result, 4, "held", json_mode=json_mode)
        assert store_path.read_bytes() == before


class TestExit5NotFound:
    @pytest.mark.parametrize("json_mode", [False, True])
    def test_cancel_of_an_unknown_id(self, store_path, seeded, json_mode):
        result = cli("cancel", "s", "qwb:" + "0" * 64, *(["--json"] if json_mode else []))
        fails(result, 5, "qwb:" + "0" * 64, json_mode=json_mode)
        assert store_path.read_bytes() == seeded

    def test_cancel_in_the_wrong_session(self, store_path):
        batch = enqueue("s", "--text", "a")
        before = store_path.read_bytes()
        fails(cli("cancel", "t", batch["batch_id"]), 5)
        assert store_path.read_bytes() == before

    def test_cancel_of_a_tombstoned_id(self, store_path):
        batch = enqueue("s", "--text", "a", "--source-key", "host:a")
        doc(cli("complete", "--claim", json.dumps(claim("s")), "--json"))
        before = store_path.read_bytes()
        fails(cli("cancel", "s", batch["batch_id"], "--json"), 5, json_mode=True)
        fails(cli("cancel", "s", batch["batch_id"]), 5)
        assert store_path.read_bytes() == before

    @pytest.mark.parametrize("json_mode", [False, True])
    def test_inspect_batch_of_an_unknown_id(self, store_path, seeded, json_mode):
        result = cli("inspect", "s", "--batch", "qwb:" + "f" * 64, *(["--json"] if json_mode else []))
        fails(result, 5, json_mode=json_mode)
        assert store_path.read_bytes() == seeded

    def test_inspect_batch_of_a_tombstoned_id(self):
        batch = enqueue("s", "--text", "a", "--source-key", "host:a")
        doc(cli("cancel", "s", batch["batch_id"], "--json"))
        fails(cli("inspect", "s", "--batch", batch["batch_id"]), 5)
        fails(cli("inspect", "s", "--batch", batch["batch_id"], "--json"), 5, json_mode=True)


class TestExit6Conflict:
    @pytest.mark.parametrize("json_mode", [False, True])
    def test_strict_replay_with_other_payloads(self, store_path, json_mode):
        enqueue("s", "--text", "one", "--source-key", "host:k")
        before = store_path.read_bytes()
        result = cli("enqueue", "s", "--text", "two", "--source-key", "host:k", "--strict",
                     *(["--json"] if json_mode else []))
        fails(result, 6, "host:k", json_mode=json_mode)
        assert store_path.read_bytes() == before

    def test_strict_replay_with_the_same_payloads_is_fine(self, store_path):
        first = enqueue("s", "--text", "one", "--source-key", "host:k")
        before = store_path.read_bytes()
        assert enqueue("s", "--text", "one", "--source-key", "host:k", "--strict") == first
        assert store_path.read_bytes() == before

    def test_strict_replay_of_a_tombstone_with_other_payloads(self, store_path):
        enqueue("s", "--text", "one", "--source-key", "host:k")
        doc(cli("complete", "--claim", json.dumps(claim("s")), "--json"))
        before = store_path.read_bytes()
        fails(cli("enqueue", "s", "--text", "two", "--source-key", "host:k", "--strict"), 6)
        assert store_path.read_bytes() == before

    def test_strict_draft_replay_with_other_payloads(self, store_path):
        enqueue("--draft", json.dumps(draft("s", "one", source_key="host:k")))
        before = store_path.read_bytes()
        fails(cli("enqueue", "--draft", json.dumps(draft("s", "two", source_key="host:k")), "--strict", "--json"),
              6, json_mode=True)
        assert store_path.read_bytes() == before


# Every command on every kind of broken store (exit 7) or unwritable one (exit 9) is in
# tests/test_hostile_store.py; here, one case of each.


class TestExit7StoreUnreadable:
    def test_json_error_line(self, store_path):
        store_path.write_bytes(b"\x00\xff garbage")
        fails(cli("claim", "s", "--json"), 7, json_mode=True)
        assert store_path.read_bytes() == b"\x00\xff garbage"


class TestExit8StoreBusy:
    @pytest.fixture
    def held_lock(self, lock_path):
        """The store's lock, held by another thread until the test ends."""
        taken, release = threading.Event(), threading.Event()

        def hold() -> None:
            lock = FileLock(str(lock_path))
            with lock:
                taken.set()
                release.wait(30)

        thread = threading.Thread(target=hold, daemon=True)
        thread.start()
        assert taken.wait(10)
        yield
        release.set()
        thread.join(10)

    @pytest.mark.parametrize("json_mode", [False, True])
    def test_writer_gives_up_after_the_lock_timeout(self, store_path, seeded, held_lock, json_mode):
        started = time.monotonic()
        result = cli("enqueue", "s", "--text", "x", "--lock-timeout", "200ms", *(["--json"] if json_mode else []))
        elapsed = time.monotonic() - started
        fails(result, 8, "--lock-timeout", json_mode=json_mode)
        assert 0.15 <= elapsed < 5
        assert store_path.read_bytes() == seeded

    @pytest.mark.parametrize("argv", [["claim", "s"], ["complete", "s", "--claim-id", "c", "--lease-token", "t"],
                                      ["cancel", "s", "qwb:00000000"], ["vacuum"],
                                      ["refresh-tools", "s", "--reason", "r"],
                                      ["wake", "s", "--process-id", "p", "--sequence", "1", "--input", "x"]])
    def test_every_writer(self, store_path, seeded, held_lock, argv):
        fails(cli(*argv, "--lock-timeout", "200ms"), 8)
        assert store_path.read_bytes() == seeded

    def test_lock_timeout_from_the_environment(self, store_path, seeded, held_lock):
        started = time.monotonic()
        fails(cli("enqueue", "s", "--text", "x", env={"TURNQ_LOCK_TIMEOUT": "200ms"}), 8)
        assert time.monotonic() - started < 5
        assert store_path.read_bytes() == seeded

    def test_readers_do_not_wait_for_the_lock(self, store_path, seeded, held_lock):
        started = time.monotonic()
        assert cli("inspect", "s", "--json").exit_code == 0
        assert cli("claim", "s", "--dry-run", "--json").exit_code in (0, 3)
        assert time.monotonic() - started < 5

    def test_the_writer_proceeds_once_the_lock_is_free(self, store_path, seeded, lock_path):
        taken = threading.Event()

        def hold_briefly() -> None:
            with FileLock(str(lock_path)):
                taken.set()
                time.sleep(0.3)

        thread = threading.Thread(target=hold_briefly, daemon=True)
        thread.start()
        assert taken.wait(10)
        result = cli("enqueue", "s", "--text", "x", "--lock-timeout", "10s", "--json")
        thread.join(10)
        assert doc(result)["enqueue_seq"] == 4


    def test_the_default_lock_timeout_waits_for_seconds(self, store_path, seeded, lock_path):
        taken = threading.Event()

        def hold_for_a_second() -> None:
            with FileLock(str(lock_path)):
                taken.set()
                time.sleep(1.0)

        thread = threading.Thread(target=hold_for_a_second, daemon=True)
        thread.start()
        assert taken.wait(10)
        started = time.monotonic()
        result = cli("enqueue", "s", "--text", "x", "--json")
        thread.join(10)
        assert doc(result)["enqueue_seq"] == 4
        assert time.monotonic() - started >= 0.5


class TestExit9StoreUnwritable:
    @pytest.mark.parametrize("json_mode", [False, True])
    @pytest.mark.parametrize("argv", [["enqueue", "s", "--text", "x"]])
    def test_read_only_store_is_left_as_it_was(self, store_path, seeded, argv, json_mode):
        store_path.chmod(0o444)
        try:
            result = cli(*argv, *(["--json"] if json_mode else []))
            fails(result, 9, json_mode=json_mode)
            assert store_path.read_bytes() == seeded
            assert store_path.stat().st_mode & 0o777 == 0o444
        finally:
            store_path.chmod(0o644)

    def test_reading_a_read_only_store_works(self, store_path, seeded):
        store_path.chmod(0o444)
        try:
            assert doc(cli("inspect", "s", "--json"))["session_id"] == "s"
            dry = cli("claim", "s", "--dry-run", "--json")
            assert dry.exit_code == 0 and json.loads(dry.stdout)["session_id"] == "s"
            assert store_path.read_bytes() == seeded
        finally:
            store_path.chmod(0o644)


class TestExit70Internal:
    """An unexpected failure is exit 70 (`internal`), never 1 (`check_failed`): CI must tell a
    crash from a failed check. One line on stderr; the traceback only with TURNQ_DEBUG=1."""

    @staticmethod
    def _break_overview(monkeypatch):
        from turnq.api import Queue

        def broken(self):  # noqa: ARG001
            raise RuntimeError("boom")

        monkeypatch.setattr(Queue, "overview", broken)
        enqueue("s", "--text", "x")  # a store to inspect

    def test_an_unexpected_failure_is_exit_70_with_one_line_and_a_hint(self, monkeypatch):
        self._break_overview(monkeypatch)
        result = cli("inspect", "--json")
        assert result.exit_code == 70
        assert result.stdout == ""
        assert "Traceback" not in result.stderr
        [line] = result.stderr.splitlines()
        last = json.loads(line)
        assert last["error"] == "internal" and "report" in last["message"] and "boom" in last["message"]
        assert "TURNQ_DEBUG=1" in last["message"]
        human = cli("inspect")
        assert human.exit_code == 70 and len(human.stderr.splitlines()) == 1
        assert human.stderr.startswith("turnq: error: internal error (RuntimeError: boom)")

    def test_turnq_debug_adds_the_traceback(self, monkeypatch):
        self._break_overview(monkeypatch)
        monkeypatch.setenv("TURNQ_DEBUG", "1")
        result = cli("inspect")
        assert result.exit_code == 70
        assert "Traceback" in result.stderr and "boom" in result.stderr
        assert "report it with the traceback above" in result.stderr.splitlines()[-1]

    def test_exit_codes_are_distinct(self):
        from turnq.errors import ExitStatus

        assert ExitStatus.INTERNAL == 70 and ExitStatus.CHECK_FAILED == 1 and ExitStatus.LIMIT == 10
        assert ExitStatus(1).code_name == "check_failed" and ExitStatus(70).code_name == "internal"
        assert len({int(s) for s in ExitStatus}) == len(list(ExitStatus))  # no aliases


# =========================================================================== 3. enqueue details


class TestEnqueueItems:
    def test_text_and_image_keep_their_order(self, tmp_path):
        (tmp_path / "f.png").write_bytes(bytes([137, 80, 78, 71, 0, 255]))
        batch = enqueue("s", "--text", "a", "--image", "i=f.png", "--text", "b")
        assert len(batch["items"]) == 1
        turn_input = batch["items"][0]["payload"]["input"]
        assert turn_input["items"] == [{"type": "text", "text": "a"}, {"type": "image_ref", "id": "i"},
                                       {"type": "text", "text": "b"}]
        assert turn_input["image_blobs"] == {"i": [137, 80, 78, 71, 0, 255]}

    def test_image_first_and_equals_forms(self, tmp_path):
        (tmp_path / "one.png").write_bytes(b"\x01")
        (tmp_path / "two.png").write_bytes(b"\x02\x03")
        batch = enqueue("s", "--image=x=one.png", "--text=mid", "--image", f"y={tmp_path / 'two.png'}",
                        "--text", "end")
        turn_input = batch["items"][0]["payload"]["input"]
        assert turn_input["items"] == [{"type": "image_ref", "id": "x"}, {"type": "text", "text": "mid"},
                                       {"type": "image_ref", "id": "y"}, {"type": "text", "text": "end"}]
        assert turn_input["image_blobs"] == {"x": [1], "y": [2, 3]}

    def test_order_survives_other_options_in_between(self, tmp_path):
        (tmp_path / "f.png").write_bytes(b"\x07")
        batch = enqueue("s", "--text", "a", "--source-key", "--text", "--image", "i=f.png", "--merge",
                        "never", "--text", "b")
        assert batch["source_key"] == "--text"
        assert [entry.get("text", entry.get("id")) for entry in batch["items"][0]["payload"]["input"]["items"]] == [
            "a", "i", "b"]

    def test_text_and_images_then_payloads_in_this_order(self):
        first = text_payload("p1")
        second = {"type": "session_command", "command": {"kind": "reset_session", "reason": "r"}}
        batch = enqueue("s", "--payload", json.dumps(first), "--text", "t", "--payload", json.dumps(second))
        payloads = [item["payload"] for item in batch["items"]]
        assert [p["type"] for p in payloads] == ["turn_input", "turn_input", "session_command"]
        assert payloads[0]["input"]["items"] == [{"type": "text", "text": "t"}]
        assert payloads[1]["input"]["items"] == [{"type": "text", "text": "p1"}]
        assert payloads[2] == second
        assert [item["item_id"] for item in batch["items"]] == [f"{batch['batch_id']}:item:{i}" for i in range(3)]

    def test_payload_from_a_file(self, tmp_path):
        (tmp_path / "p.json").write_text(json.dumps(text_payload("from a file")))
        batch = enqueue("s", "--payload", "@p.json")
        assert texts_of(batch) == ["from a file"]

    def test_payload_from_stdin(self):
        batch = enqueue("s", "--payload", "-", input=json.dumps(text_payload("from stdin")))
        assert texts_of(batch) == ["from stdin"]

    def test_process_wake_payload_for_the_same_session(self):
        batch = enqueue("s", "--payload", json.dumps(wake_payload("s")))
        assert batch["items"][0]["payload"]["wake"]["target_session_id"] == "s"

    def test_process_wake_payload_for_another_session_is_refused(self, store_path, seeded):
        fails(cli("enqueue", "s", "--payload", json.dumps(wake_payload("other"))), 2)
        assert store_path.read_bytes() == seeded

    def test_unicode_text_round_trips(self):
        batch = enqueue("s", "--text", "héllo ✓ \u200b line\nbreak")
        assert texts_of(batch) == ["héllo ✓ \u200b line\nbreak"]


class TestEnqueueDrafts:
    def test_one_object(self):
        batch = enqueue("--draft", json.dumps(draft("d1", "hi", source_key="host:1")))
        assert batch["session_id"] == "d1" and batch["source_key"] == "host:1"
        assert batch["delivery_policy"] == "earliest_safe_boundary"
        assert texts_of(batch) == ["hi"]

    def test_one_pretty_printed_object_is_one_draft(self):
        result = cli("enqueue", "--draft", json.dumps(draft("d1", "hi"), indent=2), "--json")
        assert len(json_lines(result)) == 1

    def test_json_lines_of_several_in_order(self, tmp_path):
        lines = [draft("a", "one"), draft("b", "two", slot_policy="exclusive"), draft("a", "three")]
        (tmp_path / "drafts.jsonl").write_text("".join(json.dumps(d) + "\n" for d in lines))
        result = cli("enqueue", "--draft", "@drafts.jsonl", "--json")
        batches = json_lines(result)
        assert [(b["session_id"], b["enqueue_seq"], texts_of(b)) for b in batches] == [
            ("a", 1, ["one"]), ("b", 2, ["two"]), ("a", 3, ["three"])]
        assert batches[1]["slot_policy"] == "exclusive"
        assert result.stderr == ""

    def test_json_lines_from_stdin_with_blank_lines(self):
        text = json.dumps(draft("a", "one")) + "\n\n" + json.dumps(draft("b", "two")) + "\n"
        batches = json_lines(cli("enqueue", "--draft", "-", "--json", input=text))
        assert [b["session_id"] for b in batches] == ["a", "b"]

    def test_human_output_for_several(self):
        text = json.dumps(draft("a", "alpha")) + "\n" + json.dumps(draft("b", "beta")) + "\n"
        result = cli("enqueue", "--draft", text)
        assert result.exit_code == 0 and "alpha" in result.stdout and "beta" in result.stdout

    @pytest.mark.parametrize("bad", [
        {"delivery_policy": "nope"},
        {"payloads": []},
        {"session_id": ""},
        {"payloads": [wake_payload("elsewhere")]},
    ], ids=["bad-policy", "no-payloads", "empty-session", "wake-for-another-session"])
    def test_one_transaction_if_one_is_refused_none_is_stored(self, store_path, seeded, bad):
        text = "\n".join([json.dumps(draft("a", "one")), json.dumps({**draft("b", "two"), **bad}),
                          json.dumps(draft("c", "three"))])
        fails(cli("enqueue", "--draft", text), 2)
        assert store_path.read_bytes() == seeded
        sessions = [row["session_id"] for row in doc(cli("inspect", "--json"))["sessions"]]
        assert sessions == ["s", "t"]

    def test_a_refused_line_is_named(self):
        text = json.dumps(draft("a", "one")) + "\n" + '{"session_id": "b", "oops"\n'
        fails(cli("enqueue", "--draft", text), 2, "line 2")

    def test_one_transaction_on_a_missing_store(self, store_path):
        text = json.dumps(draft("a", "one")) + "\n" + json.dumps({**draft("b", "two"), "payloads": []})
        fails(cli("enqueue", "--draft", text), 2)
        assert not store_path.exists()

    def test_without_merge_key_and_available_at_defaults_apply(self):
        bare = {"session_id": "s", "delivery_policy": "after_current_turn_commit", "slot_policy": "join",
                "payloads": [text_payload("x")]}
        result = cli("enqueue", "--draft", json.dumps(bare), "--json")
        batch = doc(result)
        assert batch["merge_key"] == "never" and batch["available_at_ms"] == 0
        assert list(batch) == [k for k in BATCH_KEYS if k != "source_key"]
        assert result.stderr == ""

    def test_draft_keeps_its_own_policies_and_time(self):
        batch = enqueue("--draft", json.dumps(draft("s", "x", merge_key={"group": "g"},
                                                    available_at_ms=NOW + 5 * SECOND)))
        assert batch["merge_key"] == {"group": "g"} and batch["available_at_ms"] == NOW + 5 * SECOND

    def test_draft_with_a_process_wake_for_its_session(self):
        batch = enqueue("--draft", json.dumps({**draft("s"), "payloads": [wake_payload("s")]}))
        assert batch["items"][0]["payload"]["type"] == "process_wake"


class TestUnknownFields:
    def test_payload_field_is_dropped_with_a_warning(self):
        payload = {"type": "turn_input", "input": {"items": [{"type": "text", "text": "z", "colour": "red"}]}}
        result = cli("enqueue", "s", "--payload", json.dumps(payload), "--json")
        batch = doc(result)
        assert batch["items"][0]["payload"]["input"]["items"] == [{"type": "text", "text": "z"}]
        warnings = result.stderr.splitlines()
        assert len(warnings) == 1 and "warning" in warnings[0] and "colour" in warnings[0]

    def test_each_dropped_field_is_named(self):
        bad = {**draft("s", "x"), "source_keys": "host:typo", "priority": 3}
        result = cli("enqueue", "--draft", json.dumps(bad), "--json")
        batch = doc(result)
        assert "source_key" not in batch
        assert "source_keys" in result.stderr and "priority" in result.stderr
        assert all("warning" in line for line in result.stderr.splitlines())

    def test_strict_refuses_them(self, store_path, seeded):
        bad = {**draft("s", "x"), "source_keys": "host:typo"}
        fails(cli("enqueue", "--draft", json.dumps(bad), "--strict"), 2, "source_keys")
        payload = {"type": "turn_input", "input": {"items": [{"type": "text", "text": "z", "colour": "red"}]}}
        fails(cli("enqueue", "s", "--payload", json.dumps(payload), "--strict", "--json"), 2, "colour",
              json_mode=True)
        assert store_path.read_bytes() == seeded

    def test_claim_document_fields(self, store_path):
        enqueue("s", "--text", "x")
        made = claim("s")
        extra = {**made, "worker_note": "hi"}
        before = store_path.read_bytes()
        fails(cli("complete", "--claim", json.dumps(extra), "--strict"), 2, "worker_note")
        assert store_path.read_bytes() == before
        result = cli("complete", "--claim", json.dumps(extra), "--json")
        assert doc(result)["claim_id"] == made["claim_id"]
        assert "worker_note" in result.stderr and "warning" in result.stderr


class TestEnqueueTimes:
    def test_delay_sets_available_at_from_now(self):
        assert enqueue("s", "--text", "x", "--delay", "30s")["available_at_ms"] == NOW + 30 * SECOND
        assert enqueue("s", "--text", "x", "--delay", "1500")["available_at_ms"] == NOW + 1500
        assert enqueue("s", "--text", "x", "--delay", "2h", now=at(SECOND))["available_at_ms"] == (
            NOW + SECOND + 2 * HOUR)

    def test_available_at(self):
        assert enqueue("s", "--text", "x", "--available-at", "2026-01-01T01:00:00Z")["available_at_ms"] == NOW + HOUR
        assert enqueue("s", "--text", "x", "--available-at", str(NOW + 7))["available_at_ms"] == NOW + 7

    def test_delayed_batch_is_claimed_only_when_due(self):
        batch = enqueue("s", "--text", "x", "--delay", "30s")
        assert cli("claim", "s", "--json", now=at(29 * SECOND)).exit_code == 3
        assert claim("s", now=at(30 * SECOND))["batches"] == [batch]

    def test_now_as_epoch_milliseconds_equals_rfc3339(self):
        one = enqueue("s", "--text", "x", now=str(NOW))
        assert one["enqueued_at_ms"] == NOW
        assert one["batch_id"] == doc(cli("enqueue", "s", "--text", "x", "--json", "--store", "other.json"))[
            "batch_id"]


class TestReplays:
    def test_same_payloads_exit_0_with_a_note(self, store_path):
        first = enqueue("s", "--text", "one", "--source-key", "host:k")
        before = store_path.read_bytes()
        result = cli("enqueue", "s", "--text", "one", "--source-key", "host:k", "--json")
        assert doc(result) == first
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and "note" in lines[0] and first["batch_id"] in lines[0]
        assert "warning" not in result.stderr
        assert store_path.read_bytes() == before

    def test_other_payloads_keep_the_stored_ones_with_a_warning(self, store_path):
        first = enqueue("s", "--text", "one", "--source-key", "host:k")
        before = store_path.read_bytes()
        result = cli("enqueue", "s", "--text", "two", "--source-key", "host:k", "--delivery",
                     "earliest_safe_boundary", "--json")
        batch = doc(result)
        assert batch == first and texts_of(batch) == ["one"]
        assert "note" in result.stderr
        assert any("warning" in line and "differ" in line for line in result.stderr.splitlines())
        assert store_path.read_bytes() == before

    def test_replay_of_completed_work_says_when(self, store_path):
        first = enqueue("s", "--text", "one", "--source-key", "host:k")
        doc(cli("complete", "--claim", json.dumps(claim("s")), "--json", now=at(MINUTE)))
        before = store_path.read_bytes()
        result = cli("enqueue", "s", "--text", "one", "--source-key", "host:k", "--json", now=at(HOUR))
        assert doc(result) == first
        assert "already completed" in result.stderr
        assert "2026-01-01T00:01:00" in result.stderr
        assert "warning" not in result.stderr
        assert store_path.read_bytes() == before
        assert inspect_session("s", now=at(HOUR))["batches"] == []

    def test_replay_of_cancelled_work_says_so(self):
        first = enqueue("s", "--text", "one", "--source-key", "host:k")
        doc(cli("cancel", "s", first["batch_id"], "--json"))
        result = cli("enqueue", "s", "--text", "one", "--source-key", "host:k", "--json")
        assert doc(result) == first and "already cancelled" in result.stderr

    def test_replay_of_a_claimed_batch(self):
        first = enqueue("s", "--text", "one", "--source-key", "host:k")
        claim("s")
        result = cli("enqueue", "s", "--text", "one", "--source-key", "host:k", "--json")
        assert doc(result) == first and "note" in result.stderr

    def test_same_key_in_another_session_is_new_work(self):
        first = enqueue("s", "--text", "one", "--source-key", "host:k")
        result = cli("enqueue", "t", "--text", "one", "--source-key", "host:k", "--json")
        assert doc(result)["batch_id"] != first["batch_id"] and result.stderr == ""

    def test_human_replay_output(self):
        first = enqueue("s", "--text", "one", "--source-key", "host:k")
        result = cli("enqueue", "s", "--text", "one", "--source-key", "host:k")
        assert result.exit_code == 0
        assert first["batch_id"][:14] in result.stdout
        assert "note" in result.stderr


# =========================================================================== 4. claim


class TestClaimRules:
    def test_checkpoint_skips_an_after_commit_head(self, store_path):
        head = enqueue("s", "--text", "after commit")
        later = enqueue("s", "--text", "earliest", "--delivery", "earliest_safe_boundary")
        before = store_path.read_bytes()
        result = cli("claim", "s", "--boundary", "active_turn_checkpoint", "--json")
        assert (result.exit_code, result.stdout, result.stderr) == (3, "null\n", "")
        assert store_path.read_bytes() == before
        idle = claim("s")  # different delivery policies never travel together
        assert [b["batch_id"] for b in idle["batches"]] == [head["batch_id"]]
        checkpoint = claim("s", "--boundary", "active_turn_checkpoint")
        assert [b["batch_id"] for b in checkpoint["batches"]] == [later["batch_id"]]

    def test_checkpoint_human_nothing(self):
        enqueue("s", "--text", "after commit")
        result = cli("claim", "s", "--boundary", "active_turn_checkpoint")
        assert result.exit_code == 3 and result.stderr == "" and result.stdout.strip()

    def test_join_run_and_max_batches(self):
        ids = [enqueue("s", "--text", str(i))["batch_id"] for i in range(3)]
        first = claim("s", "--max-batches", "2")
        assert [b["batch_id"] for b in first["batches"]] == ids[:2]
        second = claim("s")
        assert [b["batch_id"] for b in second["batches"]] == ids[2:]

    def test_default_takes_the_whole_join_run(self):
        ids = [enqueue("s", "--text", str(i))["batch_id"] for i in range(3)]
        assert [b["batch_id"] for b in claim("s")["batches"]] == ids

    def test_exclusive_head_goes_alone(self):
        head = enqueue("s", "--text", "x", "--slot", "exclusive")
        enqueue("s", "--text", "y")
        assert [b["batch_id"] for b in claim("s")["batches"]] == [head["batch_id"]]

    def test_merge_groups_split_runs(self):
        a = enqueue("s", "--text", "a", "--merge", "group:g")
        b = enqueue("s", "--text", "b", "--merge", "group:g")
        enqueue("s", "--text", "c", "--merge", "group:h")
        assert [x["batch_id"] for x in claim("s")["batches"]] == [a["batch_id"], b["batch_id"]]


class TestExactClaim:
    def setup_two(self) -> tuple[dict, dict]:
        return enqueue("s", "--text", "a"), enqueue("s", "--text", "b")

    def test_exact_head_alone_even_though_a_run_would_take_more(self):
        a, _ = self.setup_two()
        made = claim("s", "--batch", a["batch_id"])
        assert [b["batch_id"] for b in made["batches"]] == [a["batch_id"]]

    def test_exact_both_in_any_order(self):
        a, b = self.setup_two()
        made = claim("s", "--batch", b["batch_id"], "--batch", a["batch_id"])
        assert [x["batch_id"] for x in made["batches"]] == [a["batch_id"], b["batch_id"]]

    def test_exact_cannot_skip_earlier_work(self, store_path):
        _, b = self.setup_two()
        before = store_path.read_bytes()
        result = cli("claim", "s", "--batch", b["batch_id"], "--json")
        assert (result.exit_code, result.stdout, result.stderr) == (3, "null\n", "")
        assert store_path.read_bytes() == before
        human = cli("claim", "s", "--batch", b["batch_id"])
        assert human.exit_code == 3 and human.stderr == ""

    def test_exact_by_prefix(self):
        a, _ = self.setup_two()
        made = claim("s", "--batch", a["batch_id"][:16])
        assert [b["batch_id"] for b in made["batches"]] == [a["batch_id"]]

    def test_max_batches_plays_no_part(self):
        a, b = self.setup_two()
        made = claim("s", "--batch", a["batch_id"], "--batch", b["batch_id"], "--max-batches", "0")
        assert len(made["batches"]) == 2

    def test_unknown_id_claims_nothing(self):
        self.setup_two()
        result = cli("claim", "s", "--batch", "qwb:" + "0" * 64, "--json")
        assert (result.exit_code, result.stdout) == (3, "null\n")


class TestDryRun:
    @pytest.mark.parametrize("json_mode", [False, True])
    def test_shows_the_claim_that_follows_and_writes_nothing(self, store_path, json_mode):
        enqueue("s", "--text", "a")
        enqueue("s", "--text", "b", "--delivery", "earliest_safe_boundary")
        flag = ["--json"] if json_mode else []
        before = store_path.read_bytes()
        dry = cli("claim", "s", "--owner", "w", "--ttl", "1m", "--dry-run", *flag)
        assert dry.exit_code == 0 and dry.stderr == ""
        assert store_path.read_bytes() == before
        real = cli("claim", "s", "--owner", "w", "--ttl", "1m", *flag)
        assert real.exit_code == 0
        if json_mode:
            assert json.loads(dry.stdout) == json.loads(real.stdout)
            assert json.loads(real.stdout)["claim_id"] == "qwc:1:1"
        else:
            assert "qwc:1:1" in dry.stdout and "qwc:1:1" in real.stdout
        assert store_path.read_bytes() != before

    def test_a_missing_store_is_not_found_and_nothing_created(self, tmp_path):
        result = cli("claim", "s", "--dry-run", "--json")
        assert (result.exit_code, result.stdout) == (5, "")
        assert json.loads(result.stderr)["error"] == "not_found"
        assert list(tmp_path.iterdir()) == []

    def test_nothing_to_claim(self, store_path):
        enqueue("other", "--text", "x")
        before = store_path.read_bytes()
        result = cli("claim", "s", "--dry-run", "--json")
        assert (result.exit_code, result.stdout, result.stderr) == (3, "null\n", "")
        assert store_path.read_bytes() == before

    def test_dry_run_of_an_exact_claim(self, store_path):
        a = enqueue("s", "--text", "a")
        before = store_path.read_bytes()
        dry = doc(cli("claim", "s", "--batch", a["batch_id"], "--dry-run", "--json"))
        assert store_path.read_bytes() == before
        assert dry == claim("s", "--batch", a["batch_id"])


class TestOwner:
    def test_default_under_now_is_turnq(self):
        enqueue("s", "--text", "a")
        assert claim("s")["owner_id"] == "turnq"

    def test_owner_from_environment(self):
        enqueue("s", "--text", "a")
        assert claim("s", env={"TURNQ_OWNER": "env-worker"})["owner_id"] == "env-worker"

    def test_owner_option_wins_over_environment(self):
        enqueue("s", "--text", "a")
        assert claim("s", "--owner", "opt", env={"TURNQ_OWNER": "env-worker"})["owner_id"] == "opt"

    def test_default_without_now_is_host_and_pid(self):
        enqueue("s", "--text", "a")
        made = claim("s", now=None)
        assert made["owner_id"] == f"{socket.gethostname()}:{os.getpid()}"

    def test_now_from_environment(self):
        enqueue("s", "--text", "a")
        made = claim("s", now=None, env={"TURNQ_NOW": NOW_TEXT})
        assert made["owner_id"] == "turnq" and made["claimed_at_epoch_ms"] == NOW


class TestClaimHandOff:
    def test_claim_file_then_complete_from_the_file(self, tmp_path):
        enqueue("s", "--text", "a")
        result = cli("claim", "s", "--json")
        (tmp_path / "c.json").write_text(result.stdout)
        made = json.loads(result.stdout)
        done = doc(cli("complete", "--claim", "@c.json", "--json"))
        assert done["claim_id"] == made["claim_id"]
        assert inspect_session("s")["batches"] == []

    def test_complete_from_stdin(self):
        enqueue("s", "--text", "a")
        enqueue("s", "--text", "b")
        result = cli("claim", "s", "--json")
        done = doc(cli("complete", "--claim", "-", "--json", input=result.stdout))
        assert done["batch_ids"] == [b["batch_id"] for b in json.loads(result.stdout)["batches"]]
        assert inspect_session("s")["batches"] == []

    def test_renew_and_abandon_from_stdin(self):
        enqueue("s", "--text", "a")
        text = cli("claim", "s", "--json").stdout
        renewed = doc(cli("renew", "--claim", "-", "--ttl", "1h", "--json", input=text))
        assert renewed["expires_at_epoch_ms"] == NOW + HOUR
        assert doc(cli("abandon", "--claim", "-", "--json", input=text))["released"] == [
            json.loads(text)["batches"][0]["batch_id"]]

    def test_null_claim_from_an_empty_queue_is_a_usage_error(self, tmp_path):
        result = cli("claim", "s", "--json")
        assert result.exit_code == 3
        fails(cli("complete", "--claim", "-", input=result.stdout), 2, "--claim")

    def test_explicit_form(self):
        a = enqueue("s", "--text", "a")
        b = enqueue("s", "--text", "b")
        made = claim("s")
        done = doc(cli("complete", "s", "--claim-id", made["claim_id"], "--lease-token", made["lease_token"],
                       "--json"))
        assert done == {"session_id": "s", "claim_id": made["claim_id"], "lease_token": made["lease_token"],
                        "batch_ids": [a["batch_id"], b["batch_id"]]}

    def test_explicit_form_with_batches(self):
        a = enqueue("s", "--text", "a")
        b = enqueue("s", "--text", "b")
        made = claim("s")
        done = doc(cli("complete", "s", "--claim-id", made["claim_id"], "--lease-token", made["lease_token"],
                       "--batch", b["batch_id"], "--batch", a["batch_id"], "--json"))
        assert sorted(done["batch_ids"]) == sorted([a["batch_id"], b["batch_id"]])
        assert inspect_session("s")["batches"] == []

    def test_explicit_renew_and_abandon(self):
        a = enqueue("s", "--text", "a")
        made = claim("s")
        ids = ["s", "--claim-id", made["claim_id"], "--lease-token", made["lease_token"]]
        renewed = doc(cli("renew", *ids, "--ttl", "2m", "--json", now=at(MINUTE)))
        assert renewed["expires_at_epoch_ms"] == NOW + 3 * MINUTE
        assert doc(cli("abandon", *ids, "--json")) == {"released": [a["batch_id"]]}
        assert doc(cli("abandon", *ids, "--json")) == {"released": []}


# =========================================================================== 5. determinism


def _run_fixture(store: Path, image: Path, *, use_env_now: bool) -> list[tuple[int, str, str]]:
    """A fixed sequence of commands; returns every (exit code, stdout, stderr)."""
    env = {"TURNQ_STORE": str(store)}
    outputs: list[tuple[int, str, str]] = []

    def run(*args: Any, input: str | None = None, offset: int = 0):
        now = NOW + offset
        if use_env_now:
            result = cli(*args, input=input, env={**env, "TURNQ_NOW": str(now)}, now=None)
        else:
            result = cli(*args, input=input, env=env, now=now)
        outputs.append((result.exit_code, result.stdout, result.stderr))
        return result

    run("enqueue", "chat", "--text", "hi", "--image", f"img={image}", "--source-key", "host:m1",
        "--delivery", "earliest_safe_boundary", "--merge", "group:chat", "--json")
    run("enqueue", "chat", "--text", "are you there?", "--source-key", "host:m2",
        "--delivery", "earliest_safe_boundary", "--merge", "group:chat")
    run("enqueue", "chat", "--text", "later", "--delay", "10m", "--json")
    run("wake", "chat", "--process-id", "build-1", "--sequence", "1", "--input", "tests passed", "--json")
    run("reset-session", "chat", "--reason", "fresh start", "--json")
    run("refresh-tools", "chat", "--reason", "tools", "--expected-generation", "2")
    run("enqueue", "--draft", json.dumps(draft("ops", "rotate logs")) + "\n" + json.dumps(draft("ops", "x")),
        "--json")
    made = run("claim", "chat", "--json", offset=SECOND).stdout
    run("claim", "ops", "--ttl", "1m", offset=SECOND)
    run("inspect", "chat", "--tombstones", "--json", offset=2 * SECOND)
    run("inspect", "chat", offset=2 * SECOND)
    run("inspect", offset=2 * SECOND)
    run("renew", "--claim", "-", "--ttl", "5m", "--json", input=made, offset=3 * SECOND)
    run("complete", "--claim", "-", "--json", input=made, offset=4 * SECOND)
    run("enqueue", "chat", "--text", "hi", "--source-key", "host:m1", "--json", offset=5 * SECOND)
    run("claim", "chat", "--dry-run", "--json", offset=6 * SECOND)
    run("claim", "chat", "--json", offset=7 * SECOND)
    run("vacuum", "--older-than", "1s", "--json", offset=8 * SECOND)
    run("claim", "nobody", "--json", offset=9 * SECOND)
    return outputs


@pytest.mark.parametrize("use_env_now", [False, True], ids=["--now", "TURNQ_NOW"])
def test_same_sequence_twice_is_byte_identical(tmp_path, use_env_now):
    image = tmp_path / "img.png"
    image.write_bytes(bytes(range(16)))
    one, two = tmp_path / "one" / "turnq.json", tmp_path / "two" / "turnq.json"
    one.parent.mkdir()
    two.parent.mkdir()
    first = _run_fixture(one, image, use_env_now=use_env_now)
    second = _run_fixture(two, image, use_env_now=use_env_now)
    assert [code for code, _, _ in first][:18] == [0] * 18 and first[-1][0] == 3
    assert first == second
    assert one.read_bytes() == two.read_bytes()


def test_env_now_and_option_now_agree(tmp_path):
    image = tmp_path / "img.png"
    image.write_bytes(b"\x00")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert _run_fixture(tmp_path / "a" / "s.json", image, use_env_now=False) == _run_fixture(
        tmp_path / "b" / "s.json", image, use_env_now=True)
    assert (tmp_path / "a" / "s.json").read_bytes() == (tmp_path / "b" / "s.json").read_bytes()


def test_without_now_ids_follow_the_real_clock():
    first = enqueue("s", "--text", "x", now=None)
    assert abs(first["enqueued_at_ms"] - time.time() * 1000) < 60_000


# =========================================================================== 6. human output widths


def _busy_session() -> dict[str, dict]:
    """A session with every kind of batch and state, and a tombstone."""
    made = {
        "text": enqueue("s", "--text", "first message", "--source-key", "host:a-fairly-long-source-key",
                        "--delivery", "earliest_safe_boundary"),
        "group": enqueue("s", "--text", "grouped", "--merge", "group:chat", "--delay", "1m"),
        "wake": doc(cli("wake", "s", "--process-id", "p1", "--sequence", "7", "--input", "the build finished",
                        "--json")),
        "command": doc(cli("reset-session", "s", "--reason", "user asked for it", "--json")),
        "exclusive": enqueue("s", "--text", "three", "--slot", "exclusive"),
    }
    tomb = enqueue("s", "--text", "settled", "--source-key", "host:settled", now=at(-HOUR))
    doc(cli("cancel", "s", tomb["batch_id"], "--json", now=at(-HOUR)))
    claim("s", "--owner", "worker-a", "--max-batches", "1")
    return made


def _check_width(result, width: int) -> str:
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines
    too_long = [line for line in lines if len(line) > width]
    assert not too_long, too_long
    return result.stdout


@pytest.mark.parametrize("width", [80, 200])
class TestWidths:
    def test_overview(self, width):
        _busy_session()
        enqueue("other", "--text", "x")
        out = _check_width(cli("inspect", env={"COLUMNS": str(width)}), width)
        assert "2026-01-01T00:00:00" in out
        rows = [line.split() for line in out.splitlines()]
        assert any(row[:1] == ["s"] for row in rows) and any(row[:1] == ["other"] for row in rows)

    def test_session_view(self, width):
        made = _busy_session()
        out = _check_width(cli("inspect", "s", "--tombstones", env={"COLUMNS": str(width)}), width)
        for batch in made.values():
            batch_id = batch["batch_id"]
            assert batch_id[:14] in out
            if width >= 200:
                assert batch_id in out  # wide terminals show ids whole
        assert "worker-a" in out and "held" in out and "delayed" in out
        assert '"first' in out and 'message"' in out and "host:settled" in out

    def test_batch_view(self, width):
        made = _busy_session()
        out = _check_width(cli("inspect", "s", "--batch", made["wake"]["batch_id"], env={"COLUMNS": str(width)}),
                           width)
        assert "process:p1:event:7:wake" in out and "the build finished" in out

    def test_claim(self, width):
        enqueue("s", "--text", "what changed in the build since yesterday?", "--source-key", "host:m1")
        out = _check_width(cli("claim", "s", "--owner", "worker-a", env={"COLUMNS": str(width)}), width)
        assert "qwc:1:1" in out and "worker-a" in out and "2026-01-01T00:15:00" in out
        assert "what changed in the build since yesterday?" in out

    def test_enqueue_and_vacuum(self, width):
        out = _check_width(cli("enqueue", "s", "--text", "hello", "--source-key", "host:k",
                               env={"COLUMNS": str(width)}), width)
        assert "hello" in out and "host:k" in out
        doc(cli("cancel", "s", enqueue("s", "--text", "hello", "--source-key", "host:k")["batch_id"], "--json"))
        out = _check_width(cli("vacuum", env={"COLUMNS": str(width)}), width)
        assert "host:k" in out


# Regression: the narrow batch table once overflowed 80 columns and Rich cropped item text.
def test_session_view_at_80_columns_keeps_all_item_text():
    _busy_session()
    out = _check_width(cli("inspect", "s", env={"COLUMNS": "80"}), 80)
    words = " ".join(out.split())
    assert "reset_session" in out
    for word in ("user", "asked", "for", "it", "process.wake", "#7"):
        assert word in words.split(), word


# =========================================================================== everywhere: store, clock, help


class TestStoreLocation:
    def test_default_is_turnq_json_in_the_current_directory(self, tmp_path):
        batch = enqueue("s", "--text", "x", env={"TURNQ_STORE": None})
        assert (tmp_path / "turnq.json").exists()
        assert batch["batch_id"] in (tmp_path / "turnq.json").read_text()

    def test_store_option_wins_over_the_environment(self, tmp_path, store_path):
        enqueue("s", "--text", "x", "--store", "elsewhere.json")
        assert (tmp_path / "elsewhere.json").exists() and not store_path.exists()
        assert [r["session_id"] for r in doc(cli("inspect", "--store", "elsewhere.json", "--json"))["sessions"]] == [
            "s"]
        fails(cli("inspect", "--json"), 5, json_mode=True)

    def test_missing_folder_is_unwritable_and_creates_nothing(self, tmp_path):
        fails(cli("enqueue", "s", "--text", "x", "--store", "no/such/turnq.json"), 9)
        assert list(tmp_path.iterdir()) == []
        fails(cli("inspect", "--store", "no/such/turnq.json", "--json"), 5, "no/such/turnq.json", json_mode=True)

    def test_a_directory_is_not_a_store(self, tmp_path):
        (tmp_path / "dir").mkdir()
        fails(cli("enqueue", "s", "--text", "x", "--store", "dir"), 7)
        fails(cli("inspect", "--store", "dir", "--json"), 7, json_mode=True)


class TestClock:
    @pytest.mark.parametrize("value", ["18446744073709551616", "1960-01-01T00:00:00Z", "2026-01-01T00:00:00",
                                       "-5", "noon"])
    def test_bad_now(self, value, tmp_path):
        fails(cli("enqueue", "s", "--text", "x", "--now", value), 2, "--now")
        assert list(tmp_path.iterdir()) == []

    def test_empty_now_means_the_real_clock(self):
        batch = enqueue("s", "--text", "x", now=None, env={"TURNQ_NOW": ""})
        assert abs(batch["enqueued_at_ms"] - time.time() * 1000) < 60_000

    def test_rfc3339_with_offset_and_fraction(self):
        batch = enqueue("s", "--text", "x", now="2026-01-01T01:00:00.250+01:00")
        assert batch["enqueued_at_ms"] == NOW + 250

    def test_dry_run_tokens_are_not_a_claim(self, store_path):
        enqueue("s", "--text", "x")
        dry = doc(cli("claim", "s", "--dry-run", "--json"))
        before = store_path.read_bytes()
        fails(cli("complete", "--claim", json.dumps(dry)), 4)
        assert store_path.read_bytes() == before


class TestHelp:
    @pytest.mark.parametrize("command", ["enqueue", "wake", "claim", "complete", "renew", "abandon", "cancel",
                                         "reset-session", "refresh-tools", "vacuum", "inspect"])
    def test_every_command_has_help(self, command, tmp_path):
        result = cli(command, "--help", now=None)
        assert result.exit_code == 0 and result.stderr == ""
        assert "--json" in result.stdout and "--store" in result.stdout and "--now" in result.stdout
        assert list(tmp_path.iterdir()) == []

    def test_top_level_help_lists_every_command(self):
        result = cli("--help", now=None)
        assert result.exit_code == 0
        for command in ("enqueue", "wake", "claim", "complete", "renew", "abandon", "cancel", "reset-session",
                        "refresh-tools", "vacuum", "inspect"):
            assert command in result.stdout

    @pytest.mark.parametrize("command", ["enqueue", "wake", "complete", "renew", "abandon", "cancel",
                                         "reset-session", "refresh-tools", "vacuum", "claim"])
    def test_writers_take_lock_timeout(self, command):
        assert "--lock-timeout" in cli(command, "--help", now=None).stdout

    @pytest.mark.parametrize("command", ["enqueue", "wake", "reset-session", "refresh-tools", "complete", "renew",
                                         "abandon"])
    def test_json_readers_take_strict(self, command):
        assert "--strict" in cli(command, "--help", now=None).stdout
