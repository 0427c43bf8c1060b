"""Hostile input and leaked secrets (issue 15, items 7-10, 12, 14, 15).

Each test is a repro of the issue made small: it failed on the main of the time (a traceback,
a hang, a leaked password, a copied /etc file, a lease cleared under its holder) and passes now.
The one-option-one-value cases (deep --payload/--draft/--claim, @/dev/zero, a FIFO, huge digit
strings, malformed store URLs) are rows of tests/test_bad_input.py's matrix.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from turnq import Queue
from turnq.cli import app
from turnq.limits import MAX_DEPTH, too_deep
from turnq.redact import redact_location

from backends import new_postgres_url, sqlite_url

NOW = 1767225600000
NOW_TEXT = "2026-01-01T00:00:00Z"
DAY = 86_400_000
RUNNER = CliRunner()
pytestmark = pytest.mark.usefixtures("cli_built_once")


def run(*argv: str, env: dict[str, str] | None = None):
    argv_list = list(argv)
    if not any(a.startswith("--now") for a in argv_list):
        argv_list += ["--now", NOW_TEXT]
    return RUNNER.invoke(app, argv_list, env={"FORCE_COLOR": None, "COLUMNS": "200", **(env or {})})


def one_line_error(result, code: int, *needles: str) -> str:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    err = result.stderr
    assert "Traceback" not in err and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# --------------------------------------------------------------------------- 7: nesting


def test_the_depth_scan_counts_brackets_outside_strings_only():
    assert not too_deep(nested(MAX_DEPTH)) and too_deep(nested(MAX_DEPTH + 1))
    assert too_deep(nested(MAX_DEPTH + 1).encode())
    # brackets in strings are text: neither deeper nor shallower (an escaped quote stays in the string)
    assert not too_deep(json.dumps(["[" * 500, "\\\"[[[", [[1]]]))
    assert too_deep(json.dumps(["]" * 500])[:-1] + "," + nested(MAX_DEPTH) + "]")
    assert not too_deep(json.dumps([{"a": [1]}] * 1000))  # many brackets, all shallow


def test_a_json_store_nested_past_the_interpreter_is_unreadable_not_a_traceback(store_path):
    Queue(store_path, now=NOW).enqueue_text("s", "hi")
    text = store_path.read_text()
    store_path.write_text(text.replace('"batches": [', f'"x": {nested(5000)}, "batches": [', 1))
    for argv in (["inspect"], ["enqueue", "s", "--text", "x"], ["doctor"]):
        result = run(*argv)
        assert result.exit_code in (1, 7) and "Traceback" not in result.stderr, (argv, result.stderr)
    # Python 3.11 stops a 5,000-deep document with a RecursionError (worded as too deep); 3.13's
    # parser reads it, and the store's schema refuses the unknown field: exit 7 and one line either way
    message = one_line_error(run("inspect"), 7)
    assert "nested deeper than 128" in message or "unknown field" in message, message


def test_a_deep_row_and_a_deep_log_line_on_sqlite(tmp_path):
    url = sqlite_url(tmp_path)
    Queue(url, now=NOW).enqueue_text("s", "hi")
    db = sqlite3.connect(tmp_path / "turnq.db")
    with db:
        db.execute("INSERT INTO turnq_log (id, entry) VALUES (99, ?)", ('{"x": ' + nested(5000) + "}",))
        db.execute("INSERT INTO turnq_log (id, entry) VALUES (100, 'not json')")
    log = run("log", "--json", "--store", url)  # a hostile log row is skipped, as a torn JSON line is
    assert log.exit_code == 0 and "Traceback" not in log.stderr
    assert [json.loads(line)["op"] for line in log.stdout.splitlines()] == ["enqueue"]
    with db:
        db.execute("UPDATE turnq_batches SET batch = ?", (nested(MAX_DEPTH + 1),))
    db.close()
    one_line_error(run("inspect", "--store", url), 7, "nested deeper than 128")


def test_corrupt_rows_on_postgresql(store_path):
    import psycopg

    from backends import POSTGRES_URL

    url = new_postgres_url()
    Queue(url, now=NOW).enqueue_text("s", "hi")
    schema = url.rsplit("schema=", 1)[1]
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'INSERT INTO "{schema}".turnq_log (id, entry) VALUES (99, %s), (100, %s)',
                     ('{"x": ' + nested(5000) + "}", "[1]"))
    log = run("log", "--json", "--store", url)
    assert log.exit_code == 0 and "Traceback" not in log.stderr, log.stderr
    assert [json.loads(line)["op"] for line in log.stdout.splitlines()] == ["enqueue"]
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'UPDATE "{schema}".turnq_batches SET batch = %s', (nested(5000),))
    one_line_error(run("inspect", "s", "--store", url), 7, "nested deeper than 128")


def test_a_deep_audit_log_line_is_skipped(store_path):
    Queue(store_path, now=NOW).enqueue_text("s", "hi")
    with open(store_path.with_name("turnq.json.log"), "a") as log:
        log.write('{"id": 7, "x": ' + nested(5000) + "}\n")
    result = run("log", "--json")
    assert result.exit_code == 0 and "Traceback" not in result.stderr
    assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == [1]


@pytest.mark.parametrize("name,text", [
    ("deep.json", '{"sessions": [], "x": ' + nested(5000) + "}"),
    ("deep129.json", '{"sessions": [], "x": ' + nested(MAX_DEPTH) + "}"),
    ("deep.toml", "x = " + nested(3000)),
    ("inline.toml", "x = " + "{a = " * 200 + "1" + "}" * 200),
    ("header.toml", "[" + ".".join(["a"] * 200) + "]"),
])
def test_a_deep_fixture_is_refused_with_exit_2(tmp_path, store_path, name, text):
    (tmp_path / name).write_text(text)
    one_line_error(run("import", str(tmp_path / name)), 2, "nested deeper than 128")
    assert not store_path.exists()


# --------------------------------------------------------------------------- 8: TOML dotted keys


def test_a_long_dotted_toml_key_is_refused_before_parsing(tmp_path, store_path):
    fixture = tmp_path / "dotted.toml"
    fixture.write_text("x." + ".".join(["a"] * 20_000) + " = 1\n")  # 40 KB: 1.6 GB in tomllib
    started = time.monotonic()
    one_line_error(run("import", str(fixture)), 2, "dotted key of 20001 parts")
    assert time.monotonic() - started < 5


def test_many_dotted_key_parts_are_refused(tmp_path):
    fixture = tmp_path / "many.toml"
    fixture.write_text("".join(f"k{n}." + ".".join(["a"] * 100) + " = 1\n" for n in range(1100)))
    one_line_error(run("import", str(fixture)), 2, "dotted-key parts")


# --------------------------------------------------------------------------- 9: files and sizes


def test_a_store_that_is_not_a_regular_file_is_refused_at_once(tmp_path):
    os.mkfifo(tmp_path / "fifo.json")
    for store in ("/dev/zero", str(tmp_path / "fifo.json")):
        for argv in (["inspect"], ["enqueue", "s", "--text", "x"]):
            one_line_error(run(*argv, "--store", store), 7, "not a regular file")


@pytest.mark.parametrize("source", ["/dev/zero", "fifo.toml"])
def test_import_of_a_file_that_is_not_regular_exits_2(tmp_path, store_path, source):
    os.mkfifo(tmp_path / "fifo.toml")
    path = source if source.startswith("/") else str(tmp_path / source)
    one_line_error(run("import", path, "--format", "toml"), 2, "not a regular file")
    assert not store_path.exists()


def test_the_image_limit_is_documented_raisable_and_applies_to_fixtures(tmp_path, store_path):
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + bytes(5 * 1024 * 1024))
    one_line_error(run("enqueue", "s", "--image", f"i={big}"), 2, "--image", "TURNQ_MAX_IMAGE_BYTES")
    fixture = tmp_path / "f.toml"
    fixture.write_text('[[sessions]]\nid = "f"\n[[sessions.drafts]]\nimages = {i = "big.png"}\n')
    one_line_error(run("import", str(fixture)), 2, "images.i", "TURNQ_MAX_IMAGE_BYTES")
    os.mkfifo(tmp_path / "fifo.png")
    fixture.write_text('[[sessions]]\nid = "f"\n[[sessions.drafts]]\nimages = {i = "fifo.png"}\n')
    one_line_error(run("import", str(fixture)), 2, "not a regular file")
    assert not store_path.exists()
    raised = {"TURNQ_MAX_IMAGE_BYTES": str(6 * 1024 * 1024)}
    assert run("enqueue", "s", "--image", f"i={big}", env=raised).exit_code == 0
    one_line_error(run("enqueue", "s", "--image", f"i={big}", env={"TURNQ_MAX_IMAGE_BYTES": "lots"}), 2,
                   "TURNQ_MAX_IMAGE_BYTES")


@pytest.mark.parametrize("option", ["--payload", "--draft"])
def test_the_image_limit_applies_to_images_inline_in_json(tmp_path, store_path, option):
    """An image given as the wire's byte array, not as a file, is held to the same limit."""
    payload = {"type": "turn_input", "input": {"items": [{"type": "image_ref", "id": "i"}],
                                                "image_blobs": {"i": [7] * 2000}}}
    value = json.dumps(payload if option == "--payload" else {
        "session_id": "s", "payloads": [payload], "merge_key": "never", "available_at_ms": 0,
        "delivery_policy": "after_current_turn_commit", "slot_policy": "join"})
    args = ["enqueue", "s", option, value] if option == "--payload" else ["enqueue", option, value]
    one_line_error(run(*args, env={"TURNQ_MAX_IMAGE_BYTES": "1999"}), 2, option, "image 'i' is 2000 bytes",
                   "TURNQ_MAX_IMAGE_BYTES")
    assert not store_path.exists()
    assert run(*args, env={"TURNQ_MAX_IMAGE_BYTES": "2000"}).exit_code == 0


def test_the_input_limit_applies_to_payload_files(tmp_path, store_path):
    payload = tmp_path / "p.json"
    payload.write_text(json.dumps({"type": "turn_input", "input": {"items": [{"type": "text", "text": "x" * 2000}]}}))
    one_line_error(run("enqueue", "s", "--payload", f"@{payload}", env={"TURNQ_MAX_INPUT_BYTES": "1000"}), 2,
                   "--payload", "TURNQ_MAX_INPUT_BYTES")
    assert run("enqueue", "s", "--payload", f"@{payload}").exit_code == 0


# --------------------------------------------------------------------------- 10: no traceback


@pytest.mark.parametrize("argv,option", [
    (["enqueue", "s", "--text", "bad \udcff"], "--text"),
    (["enqueue", "s\udcff", "--text", "x"], "argument"),
    (["enqueue", "s", "--text", "x", "--source-key=k\udcff"], "--source-key"),
    (["claim", "s", "--owner", "o\udcff"], "--owner"),
    (["wake", "s", "--process-id", "p", "--input", "x\udcff", "--sequence", "1"], "--input"),
])
def test_invalid_utf8_in_an_argument_exits_2_naming_it(store_path, argv, option):
    # Python hands undecodable argv bytes over as lone surrogates (\udcff for b"\xff").
    one_line_error(run(*argv), 2, option, "\\xff", "not valid UTF-8")
    assert not store_path.exists()


def test_a_huge_log_max_entries_exits_2(store_path):
    one_line_error(run("enqueue", "s", "--text", "x", env={"TURNQ_LOG_MAX_ENTRIES": "9" * 5000}), 2,
                   "TURNQ_LOG_MAX_ENTRIES")


def test_a_number_past_f64_in_a_stored_payload_is_unreadable(store_path):
    Queue(store_path, now=NOW).enqueue_text("s", "hi")
    text = store_path.read_text()
    store_path.write_text(text.replace('"image_blobs":{}', '"image_blobs":{},"protocol_turn_options":'
                                       '{"payload":' + "1" * 400 + "}", 1))
    one_line_error(run("inspect", "s"), 7, "number out of range")


# --------------------------------------------------------------------------- 12: secrets


@pytest.mark.parametrize("location,redacted", [
    ("postgresql://u:pw@host/db", "postgresql://u:***@host/db"),
    ("postgresql://u:p%40ss@host:5/db?x=1", "postgresql://u:***@host:5/db?x=1"),
    ("postgresql://u:a@b@host/db", "postgresql://u:***@host/db"),
    ("postgresql://host/db?PassWord=pw&schema=s", "postgresql://host/db?PassWord=***&schema=s"),
    ("postgres://host/db?pass%77ord=pw#f", "postgres://host/db?pass%77ord=***#f"),
    ("postgresql://h/db?sslpassword=pw", "postgresql://h/db?sslpassword=***"),
    ("postgresql://u:pw@[::1:5432/db", "postgresql://u:***@[::1:5432/db"),
    ("postgressql://u:pw@h/db?password=pw", "postgressql://u:***@h/db?password=***"),
    ("host=h password=pw user=u", "host=h password=*** user=u"),
    ("postgresql://u@host/db", "postgresql://u@host/db"),
    ("dir/a=b/turnq.json", "dir/a=b/turnq.json"),
])
def test_redact_location(location, redacted):
    assert redact_location(location) == redacted


def secret_url() -> str:
    # trust auth: the server ignores the password, so it can be any secret
    return new_postgres_url().replace("postgresql://postgres@", "postgresql://postgres:hunter2@") + \
        "&password=hunter3"


def test_no_command_prints_or_stores_a_password(store_path):
    url = secret_url()
    Queue(store_path, now=NOW).enqueue_text("s", "hi")
    outputs = [
        run("migrate", "--from", str(store_path), "--to", url),
        run("diff", str(store_path), url), run("diff", str(store_path), url, "--json"),
        run("doctor", "--store", url), run("doctor", "--store", url, "--json"),
        run("inspect", "--store", url.replace("postgresql://", "postgressql://")),
        run("inspect", "--store", "postgresql://u:hunter2@[::1:5432/db?password=hunter3"),
    ]
    back = store_path.with_name("back.json")
    outputs.append(run("migrate", "--from", url, "--to", str(back)))
    outputs.append(run("log", "--json", "--store", str(back)))
    assert outputs[0].exit_code == 0 and outputs[-2].exit_code == 0, outputs[0].stderr + outputs[-2].stderr
    entry = json.loads(outputs[-1].stdout.splitlines()[-1])
    assert entry["op"] == "migrate" and "***" in entry["source"]
    for result in outputs:
        text = result.stdout + result.stderr
        assert "hunter" not in text and "Traceback" not in text, text


# --------------------------------------------------------------------------- 14: fixture images


@pytest.mark.parametrize("image", ["/etc/hostname", "../outside.png", "link.png"])
def test_fixture_images_stay_in_the_fixtures_folder(tmp_path, store_path, image):
    folder = tmp_path / "fixtures"
    folder.mkdir()
    (tmp_path / "outside.png").write_bytes(b"secret")
    (folder / "link.png").symlink_to(tmp_path / "outside.png")
    fixture = folder / "f.toml"
    fixture.write_text(f'[[sessions]]\nid = "f"\n[[sessions.drafts]]\nimages = {{i = "{image}"}}\n')
    one_line_error(run("import", str(fixture)), 2, "outside the fixture's folder", "--allow-outside")
    assert not store_path.exists()
    if image != "/etc/hostname":
        allowed = run("import", str(fixture), "--allow-outside", str(tmp_path))
        assert allowed.exit_code == 0, allowed.stderr
        blobs = Queue(store_path).inspect("f").batches[0].batch.items[0].payload.input.image_blobs
        assert blobs == {"i": b"secret"}


# --------------------------------------------------------------------------- 15: doctor


def test_doctor_fix_leaves_a_lease_its_holder_can_still_complete(store_path):
    queue = Queue(store_path, now=NOW)
    queue.enqueue_text("s", "hi")
    claim = queue.claim("s", owner="w", ttl_ms=1000)
    later = str(NOW + 2 * DAY)
    one_line_error(run("doctor", "--fix", "--stale-after", "0", "--now", later), 2, "--stale-after")
    result = run("doctor", "--fix", "--json", "--now", later)
    report = json.loads(result.stdout)
    assert [f["code"] for f in report["findings"]] == ["stale_claim"] and report["changes"] == []
    queue.clock.set(NOW + 2 * DAY)
    queue.complete(claim)  # the spec's promise: expired, nobody re-claimed, still completable


def test_doctor_fix_clear_stale_ends_the_lease(store_path):
    queue = Queue(store_path, now=NOW)
    queue.enqueue_text("s", "hi")
    queue.claim("s", owner="w", ttl_ms=1000)
    one_line_error(run("doctor", "--clear-stale"), 2, "--clear-stale")
    result = run("doctor", "--fix", "--clear-stale", "--json", "--now", str(NOW + 2 * DAY))
    assert json.loads(result.stdout)["fixed"] is True
    assert queue.inspect("s").batches[0].lease is None


def test_doctor_fix_on_a_read_only_store_leaves_no_backup(store_path):
    Queue(store_path, now=NOW).enqueue_text("s", "hi")
    document = json.loads(store_path.read_text())
    document["next_enqueue_seq"] = 1
    store_path.write_text(json.dumps(document))
    store_path.chmod(0o444)
    try:
        for _ in range(2):  # the plan is printed, then the write is refused
            result = run("doctor", "--fix")
            assert result.exit_code == 9 and "read-only" in result.stderr, result.stderr
    finally:
        store_path.chmod(0o644)
    assert sorted(p.name for p in store_path.parent.iterdir() if ".bak-" in p.name) == []


@pytest.mark.parametrize("argv", [["import", "-", "--format", "json"], ["enqueue", "--draft", "-"]])
def test_stdin_is_read_only_up_to_the_input_limit(store_path, argv):
    result = RUNNER.invoke(app, [*argv, "--now", NOW_TEXT], input=b"\0" * 5000,
                           env={"TURNQ_MAX_INPUT_BYTES": "1000"})
    one_line_error(result, 2, "TURNQ_MAX_INPUT_BYTES")
    assert not store_path.exists()


@pytest.mark.parametrize("kind", ["device", "fifo"])
@pytest.mark.parametrize("argv", [["inspect"], ["enqueue", "s", "--text", "x"], ["log"]])
def test_a_sqlite_store_that_is_not_a_regular_file_is_refused_at_once(tmp_path, kind, argv):
    """`sqlite:////dev/zero` read as an empty queue and a FIFO hung every command."""
    path = "/dev/zero" if kind == "device" else str(tmp_path / "fifo.db")
    if kind == "fifo":
        os.mkfifo(path)
    one_line_error(run(*argv, "--store", f"sqlite:///{path}"), 7, "not a SQLite database file")
