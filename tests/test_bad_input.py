"""The bad-input matrix (issue 3, item 4): every command × malformed values.

Each case must exit 2, print nothing on stdout and one line on stderr (no traceback) that names
the option (or the argument) at fault, and leave the store byte for byte as it was (a missing
store is not created).

The matrix is data: `COMMANDS` says, per command, a valid command line and which kind of value
each of its options takes; `BAD_VALUES` lists malformed values per kind. A new command is one
line in `COMMANDS`; a new kind of mistake is one line in `BAD_VALUES`. `SPECIFIC` holds the
cases that are not "one option, one bad value" (conflicting options, whole documents …).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from turnq import Queue
from turnq.cli import app

NOW = 1767225600000
NOW_TEXT = "2026-01-01T00:00:00Z"
RUNNER = CliRunner()
QUIET_ENV: dict[str, str | None] = {"FORCE_COLOR": None, "COLUMNS": "100"}
# The runner gets the command tree built once (tests/conftest.py: most of a call's time).
pytestmark = pytest.mark.usefixtures("cli_built_once")


def text_payload(*texts: str) -> dict:
    return {"type": "turn_input", "input": {"items": [{"type": "text", "text": t} for t in texts]}}


def draft(session: str, *texts: str, **extra: Any) -> dict:
    return {"session_id": session, "delivery_policy": "earliest_safe_boundary", "slot_policy": "join",
            "merge_key": "never", "available_at_ms": 0, "payloads": [text_payload(*texts)], **extra}


def wake_payload(target: str) -> dict:
    return {"type": "process_wake", "wake": {
        "wake_id": "p1:7", "target_session_id": target, "target_scope_id": f"session:{target}",
        "process_id": "p1", "sequence": 7, "dedupe_key": "p1:7", "input": "done", "created_at_ms": NOW}}


A_DRAFT = json.dumps(draft("d", "from a draft"))
A_CLAIM = json.dumps({"session_id": "s", "claim_id": "qwc:1:1", "owner_id": "w", "lease_token": "t",
                      "fencing_token": 1, "claimed_at_epoch_ms": NOW, "expires_at_epoch_ms": NOW + 1,
                      "batches": []})

# --------------------------------------------------------------------------- the matrix

#: command id → (a valid command line, {option: kind of value})
COMMON = {"--now": "time", "--lock-timeout": "duration"}
COMMANDS: dict[str, tuple[list[str], dict[str, str]]] = {
    "enqueue": (["enqueue", "s", "--text", "x"], {
        **COMMON, "--delivery": "delivery", "--slot": "slot", "--merge": "merge", "--delay": "duration",
        "--available-at": "time", "--payload": "payload", "--image": "image", "--source-key": "key"}),
    "enqueue-draft": (["enqueue", "--draft", A_DRAFT], {**COMMON, "--draft": "draft"}),
    "wake": (["wake", "s", "--process-id", "p", "--input", "x", "--sequence", "1"], {
        **COMMON, "--sequence": "u64", "--delay": "duration", "--available-at": "time"}),
    "reset-session": (["reset-session", "s", "--reason", "r"], {**COMMON, "--idempotency-key": "key"}),
    "refresh-tools": (["refresh-tools", "s", "--reason", "r"], {
        **COMMON, "--idempotency-key": "key", "--expected-generation": "u64"}),
    "claim": (["claim", "s"], {
        **COMMON, "--ttl": "duration", "--boundary": "boundary", "--max-batches": "count", "--owner": "name"}),
    "claim-dry-run": (["claim", "s", "--dry-run"], {"--now": "time", "--ttl": "duration", "--boundary": "boundary",
                                                    "--max-batches": "count"}),
    "complete": (["complete", "--claim", A_CLAIM], {**COMMON, "--claim": "claim"}),
    "renew": (["renew", "--claim", A_CLAIM], {**COMMON, "--claim": "claim", "--ttl": "duration"}),
    "abandon": (["abandon", "--claim", A_CLAIM], {**COMMON, "--claim": "claim"}),
    "complete-explicit": (["complete", "s", "--claim-id", "qwc:1:1", "--lease-token", "t"], COMMON),
    "cancel": (["cancel", "s", "qwb:" + "0" * 64], COMMON),
    "vacuum": (["vacuum"], {**COMMON, "--older-than": "duration"}),
    "inspect": (["inspect"], {"--now": "time"}),
    "inspect-session": (["inspect", "s"], {"--now": "time"}),
    "explain": (["explain", "s"], {"--now": "time", "--max-batches": "count"}),
    "log": (["log", "s"], {"--now": "time", "--since": "time", "--interval": "duration"}),
    "doctor": (["doctor"], COMMON | {"--stale-after": "duration"}),
    "doctor-fix": (["doctor", "--fix", "--dry-run"], COMMON | {"--stale-after": "duration"}),
    "expect": (["expect", "s", "--count", "1", "--state", "held", "--boundary", "idle"], {
        "--now": "time", "--count": "count", "--state": "state", "--boundary": "boundary"}),
    "import": (["import", "fixture.toml"], COMMON | {"--format": "format"}),
    "export": (["export", "s"], {"--now": "time", "--format": "format"}),
    "diff": (["diff", "turnq.json", "turnq.json"], {"--now": "time"}),
    "migrate": (["migrate", "--from", "turnq.json", "--to", "copy.json"], COMMON | {"--to": "store"}),
}

#: JSON nested one level deeper than serde_json's limit of 128, and far deeper (issue 15, item 7)
DEEP = "[" * 129 + "]" * 129
VERY_DEEP = "[" * 5000 + "]" * 5000
#: more digits than int() converts (4,300): a ValueError of its own, not ours (issue 15, item 10)
HUGE = "9" * 5000

#: kind of value → malformed values
BAD_VALUES: dict[str, list[str]] = {
    "time": ["yesterday", "-5", "2026-13-01T00:00:00Z", "2026-01-01T00:00:00", "1e3", str(2**64), "1764500000", HUGE],  # the last: epoch seconds
    "duration": ["-1", "abc", "1.5ms", "10y", "", "-5m", str(2**64), HUGE, HUGE + "s"],
    "delivery": ["bogus", "", "EARLIEST_SAFE_BOUNDARY"],
    "slot": ["wide", ""],
    "boundary": ["noon", "", "IDLE"],
    "merge": ["group:", "sometimes", "", "group"],
    "key": ["", "   "],
    "u64": ["-1", "x", "1.5", str(2**64)],
    "count": ["-1", "many", "1.5"],
    "name": [""],
    "state": ["asleep", "", "READY"],
    "format": ["yaml", "", "TOML"],
    "store": ["ftp://host/q", "sqlite://host/q.db", "postgresql+psycopg://x/y", "postgresql://u:pw@[::1:5432/db",
              "a" * 300 + ".json", "sqlite:///" + "a" * 300 + ".db"],
    "payload": [
        "{", "[1]", "null", "42", '"text"', '{"type": "bogus"}',
        '{"type": "turn_input", "input": {"items": "nope"}}',
        '{"type": "turn_input", "input": {"items": [{"type": "text", "text": 5}]}}',
        '{"type": "turn_input", "input": {"items": [{"type": "image_ref", "id": "i"}], "image_blobs": {"i": [256]}}}',
        '{"type": "turn_input", "input": {"items": [], "image_blobs": {"i": "iVBORw0KGgo="}}}',
        '{"type": "session_command", "command": {"kind": "reset_session"}}',
        json.dumps(wake_payload("other")),
        "@missing.json",
        # issue 15: nesting (item 7), a number past f64 (item 10), files that are not regular (item 9)
        json.dumps(text_payload("x"))[:-1] + f', "extra": {DEEP}}}',
        json.dumps(text_payload("x"))[:-1] + f', "extra": {VERY_DEEP}}}',
        '{"type": "turn_input", "input": {"items": [{"type": "text", "text": "x"}], '
        '"protocol_turn_options": {"payload": ' + "1" * 400 + "}}}",
        "@/dev/zero", "@fifo",
    ],
    "image": ["i=missing.png", "missing.png", "=x.png", "i=", "i=/dev/zero", "i=fifo", "i=big.png"],
    "draft": ["{", "[]", "null", '{"session_id": "s"}', json.dumps(draft("")),
              json.dumps(draft("d", "x", merge_key={"group": "a", "x": 1})), json.dumps(draft("d", "x", merge_key=None)),
              json.dumps(draft("d", "x", delivery_policy="soon")), json.dumps(draft("d", "x", available_at_ms=-1)),
              json.dumps(draft("d", "x", payloads=[])), A_DRAFT[:-1] + ', "session_id": "e"}', "@missing.json",
              A_DRAFT[:-1] + f', "x": {DEEP}}}', A_DRAFT[:-1] + f', "x": {VERY_DEEP}}}', "@/dev/zero", "@fifo"],
    "claim": ["{", "null", "[]", '{"foo": 1}', "@missing.json", "@not-a-claim.json", "@claim-not-utf8.json",
              json.dumps({**json.loads(A_CLAIM), "lease_token": 5}),
              json.dumps({k: v for k, v in json.loads(A_CLAIM).items() if k != "claim_id"}),
              json.dumps(draft("s", "a batch draft is not a claim")),
              A_CLAIM[:-1] + f', "x": {DEEP}}}', A_CLAIM[:-1] + f', "x": {VERY_DEEP}}}', "@/dev/zero"],
}
# A source key may be any string, even blank: it is not in the "key" kind that refuses blanks.
KIND_EXCEPTIONS = {("enqueue", "--source-key")}


def matrix() -> list[Any]:
    cases = []
    for command, (argv, options) in COMMANDS.items():
        for option, kind in options.items():
            if (command, option) in KIND_EXCEPTIONS:
                continue
            for n, value in enumerate(BAD_VALUES[kind]):
                cases.append(pytest.param(argv, option, value, id=f"{command}{option}[{n}]"))
    return cases


# --------------------------------------------------------------------------- cases that are not one value

# (id, argv, what the one-line message must contain)
SPECIFIC: list[tuple[str, list[str], str]] = [
    ("claim-with-session", ["complete", "s", "--claim", '{"batch_ids": []}'], "SESSION"),
    ("claim-missing-token", ["complete", "s", "--claim-id", "qwc:1:1"], "--lease-token"),
    ("draft-with-session", ["enqueue", "s", "--draft", A_DRAFT], "SESSION"),
    ("draft-with-text", ["enqueue", "--draft", A_DRAFT, "--text", "y"], "--text"),
    ("draft-with-payload", ["enqueue", "--draft", A_DRAFT, "--payload", json.dumps(text_payload("y"))], "--payload"),
    ("draft-with-delivery", ["enqueue", "--draft", A_DRAFT, "--delivery", "earliest_safe_boundary"], "--delivery"),
    ("draft-with-source-key", ["enqueue", "--draft", A_DRAFT, "--source-key", "k"], "--source-key"),
    ("draft-with-delay", ["enqueue", "--draft", A_DRAFT, "--delay", "1s"], "--delay"),
    ("draft-with-available-at", ["enqueue", "--draft", A_DRAFT, "--available-at", "1"], "--available-at"),
    ("draft-with-slot", ["enqueue", "--draft", A_DRAFT, "--slot", "join"], "--slot"),
    ("draft-with-merge", ["enqueue", "--draft", A_DRAFT, "--merge", "never"], "--merge"),
    ("draft-with-image", ["enqueue", "--draft", A_DRAFT, "--image", "i=missing.png"], "--image"),
    ("payload-duplicate-field",
     ["enqueue", "s", "--payload", ('{"type": "turn_input", "input": {"items": [{"type": "text", "text": "a", '
                                    '"text": "b"}]}}')], "--payload"),
    ("two-readers-of-stdin", ["enqueue", "--draft", "-", "--payload", "-"], "stdin"),
    ("unknown-option", ["enqueue", "s", "--text", "x", "--frobnicate"], "--frobnicate"),
    ("sequence-missing", ["wake", "s", "--process-id", "p", "--input", "x"], "--sequence"),
    ("delay-and-available-at", ["enqueue", "s", "--text", "x", "--delay", "1s", "--available-at", "1"], "--delay"),
    ("nothing-to-enqueue", ["enqueue", "s"], "--text"),
    ("inspect-pending-without-session", ["inspect", "--pending"], "--pending"),
    ("unknown-command", ["frobnicate"], "frobnicate"),
    ("exact-claim-twice", ["claim", "s", "--batch", "qwb:1234abcd", "--batch", "qwb:1234abcd"], "twice"),
    ("strict-unknown-field", ["enqueue", "--strict", "--draft", json.dumps({**draft("d", "x"), "extra": 1})],
     "--draft"),
]


# --------------------------------------------------------------------------- running them


@pytest.fixture(scope="module")
def seeded_bytes(tmp_path_factory) -> bytes:
    """A store with a ready batch, a keyed batch, a held claim and a tombstone."""
    path = tmp_path_factory.mktemp("seeded") / "turnq.json"
    queue = Queue(path, now=NOW)
    queue.enqueue_text("s", "first", source_key="host:first")
    queue.enqueue_text("s", "second")
    queue.claim("s", owner="w", max_batches=1)
    queue.enqueue_text("t", "gone", source_key="host:gone")
    queue.complete(queue.claim("t", owner="w"))
    return path.read_bytes()


@pytest.fixture
def seeded(store_path: Path, seeded_bytes: bytes) -> bytes:
    store_path.write_bytes(seeded_bytes)
    # --claim files that are not claims: a batch draft, and bytes that are not text
    (store_path.parent / "not-a-claim.json").write_text(json.dumps(draft("s", "a draft, not a claim")))
    (store_path.parent / "claim-not-utf8.json").write_bytes(b'{"session_id": "\xff"}')
    (store_path.parent / "fixture.toml").write_text('[[sessions]]\nid = "f"\n[[sessions.drafts]]\ntext = "hi"\n')
    # not regular files (a FIFO must not hang), and an image over the default limit (4 MiB)
    os.mkfifo(store_path.parent / "fifo")
    with open(store_path.parent / "big.png", "wb") as handle:
        handle.truncate(4 * 1024 * 1024 + 1)
    return seeded_bytes


def with_option(argv: list[str], option: str, value: str) -> list[str]:
    """The command line with `option value` instead of the option's valid value (if it had one)."""
    out, skip = [], False
    for i, part in enumerate(argv):
        if skip:
            skip = False
            continue
        if part == option:
            skip = True
            continue
        out.append(part)
    return [*out, option, value] if option != "--now" else [*out, f"--now={value}"]


def invoke(argv: list[str]):
    if not any(a == "--now" or a.startswith("--now=") for a in argv):
        argv = [*argv, "--now", NOW_TEXT]
    return RUNNER.invoke(app, argv, env=QUIET_ENV)


def usage_error(result, *needles: str, json_mode: bool = False) -> str:
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert result.stdout == ""
    err = result.stderr
    assert err.endswith("\n") and err.count("\n") == 1, repr(err)
    assert "Traceback" not in err
    if json_mode:
        data = json.loads(err)
        assert list(data) == ["error", "message"] and data["error"] == "usage"
        message = data["message"]
    else:
        assert err.startswith("turnq: error: ")
        message = err
    for needle in needles:
        assert needle in message, (needle, message)
    return message


def test_every_base_command_line_is_valid(store_path, seeded):
    # So that each case below fails because of its one bad value.
    for command, (argv, _) in COMMANDS.items():
        store_path.write_bytes(seeded)
        result = invoke(argv)
        assert result.exit_code in (0, 3, 4, 5), (command, result.exit_code, result.stderr)


@pytest.mark.parametrize("argv,option,value", matrix())
def test_bad_value_exits_2_naming_the_option_and_leaves_the_store(store_path, seeded, argv, option, value):
    usage_error(invoke(with_option(argv, option, value)), option)
    assert store_path.read_bytes() == seeded


@pytest.mark.parametrize("json_mode", [False, True], ids=["human", "json"])
@pytest.mark.parametrize("case_id,argv,needle", SPECIFIC, ids=[case[0] for case in SPECIFIC])
def test_specific_usage_errors(store_path, seeded, case_id, argv, needle, json_mode):
    usage_error(invoke([*argv, *(["--json"] if json_mode else [])]), needle, json_mode=json_mode)
    assert store_path.read_bytes() == seeded


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_bad_input_on_a_missing_store_creates_nothing(tmp_path, command):
    argv, options = COMMANDS[command]
    option, kind = next(iter(options.items()))
    usage_error(invoke(with_option(argv, option, BAD_VALUES[kind][0])), option)
    usage_error(invoke(with_option(argv, option, BAD_VALUES[kind][0]) + ["--json"]), option, json_mode=True)
    assert list(tmp_path.iterdir()) == []
