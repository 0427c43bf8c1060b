"""Fixture files: `turnq import` / `turnq export` and the core module `turnq.fixtures`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import NOW
from typer.testing import CliRunner

from turnq import Queue, fixtures
from turnq.cli import app

RUNNER = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
MINUTE = 60_000
PNG = bytes([137, 80, 78, 71, 13, 10, 26, 10, 0, 1, 2, 255])


def cli(*args: Any, input: str | None = None):
    return RUNNER.invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


FULL_TOML = """
now = "2026-01-01T00:00:00Z"

[[sessions]]
id = "chat"
drafts = [
  { text = "hi", source_key = "host:m1", delivery = "earliest_safe_boundary", merge = "group:chat" },
  { text = ["are you", "there?"], images = { logo = "img/logo.png" }, source_key = "host:m2", delivery = "earliest_safe_boundary", merge = "group:chat" },
  { text = "later", delay = "10m", merge = "payload_default" },
  { text = "at noon", available_at = "2026-01-01T12:00:00Z", slot = "exclusive" },
  { wake = { process_id = "build-1", sequence = 1, input = "tests passed" } },
  { wake = { process_id = "build-2", sequence = 2, input = "slow", event_type = "process.done" }, delay = "1m" },
  { command = { kind = "reset_session", reason = "fresh start", idempotency_key = "r1" } },
  { command = { kind = "refresh_tool_surface", reason = "tools", expected_generation = 3 } },
]

[[sessions]]
id = "ops"

[[sessions.drafts]]
source_key = "ops:1"
delivery = "after_current_turn_commit"
slot = "join"
merge = "never"
payloads = [
  { type = "turn_input", input = { items = [{ type = "text", text = "rotate" }, { type = "image_ref", id = "b" }], image_blobs = { b = { base64 = "AAEC" } }, protocol_turn_options = { payload = { n = 1.5 } }, trace_turn_id = "t-1" } },
  { type = "session_command", command = { kind = "reset_session", reason = "raw" } },
]

[[sessions.drafts]]
source_key = "ops:2"
payloads = [{ text = "second" }]

[[sessions.drafts]]
source_key = "ops:3"
payloads = [{ type = "process_wake", wake = { wake_id = "w", target_session_id = "ops", target_scope_id = "s", process_id = "p", sequence = 9, dedupe_key = "d", input = "raw wake", created_at_ms = 5 } }]

[[sessions.claims]]
owner = "worker-a"
batches = ["ops:1"]
complete = true

[[sessions.claims]]
owner = "worker-b"
ttl = "5m"
max_batches = 1
"""


@pytest.fixture
def full_fixture(tmp_path: Path) -> Path:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "logo.png").write_bytes(PNG)
    return write(tmp_path / "full.toml", FULL_TOML)


# --------------------------------------------------------------------------- import


def test_import_builds_every_kind_of_draft_and_claim(full_fixture: Path, tmp_path: Path) -> None:
    result = cli("import", full_fixture, "--store", tmp_path / "s.json", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert [e["outcome"] for e in report["enqueued"]] == ["enqueued"] * 11
    assert [e["enqueue_seq"] for e in report["enqueued"]] == list(range(1, 12))
    assert [c["completed"] for c in report["claims"]] == [True, False]

    queue = Queue(tmp_path / "s.json", now=NOW)
    chat = {b.batch.source_key or b.batch.items[0].payload.type: b for b in queue.inspect("chat").batches}
    m2 = chat["host:m2"].batch
    assert m2.merge_key.group == "chat" and m2.delivery_policy == "earliest_safe_boundary"
    turn_input = m2.items[0].payload.input
    assert [i.type for i in turn_input.items] == ["text", "text", "image_ref"]
    assert turn_input.image_blobs == {"logo": PNG}  # read from the path relative to the fixture
    batches = queue.inspect("chat").batches
    assert batches[2].batch.available_at_ms == NOW + 10 * MINUTE and batches[2].state == "delayed"
    assert batches[2].batch.merge_key == "payload_default"
    assert batches[3].batch.available_at_ms == NOW + 12 * 60 * MINUTE and batches[3].batch.slot_policy == "exclusive"
    wake = batches[4].batch
    assert wake.source_key == "process:build-1:event:1:wake" and wake.items[0].payload.wake.created_at_ms == NOW
    assert batches[5].batch.available_at_ms == NOW + MINUTE
    assert batches[5].batch.items[0].payload.wake.event_type == "process.done"
    assert batches[6].batch.source_key == "command:reset_session:r1"
    assert batches[7].batch.items[0].payload.command.expected_generation == 3

    ops = queue.inspect("ops", tombstones=True)
    assert [t.source_key for t in ops.tombstone_list] == ["ops:1"]  # claimed and completed
    assert [(v.batch.source_key, v.state) for v in ops.batches] == [("ops:2", "held"), ("ops:3", "ready")]
    assert ops.batches[0].lease.owner_id == "worker-b"
    assert ops.batches[0].lease.expires_at_ms == NOW + 5 * MINUTE


def test_import_is_byte_identical_and_now_overrides_the_file_clock(full_fixture: Path, tmp_path: Path) -> None:
    for name in ("a.json", "b.json"):
        assert cli("import", full_fixture, "--store", tmp_path / name).exit_code == 0
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert cli("import", full_fixture, "--store", tmp_path / "c.json", "--now", "2026-02-01T00:00:00Z",
               "--json").exit_code == 0
    later = json.loads((tmp_path / "c.json").read_text())
    assert {r["batch"]["enqueued_at_ms"] for r in later["batches"]} == {NOW + 31 * 24 * 60 * MINUTE}


def test_import_of_drafts_into_a_store_that_has_work_appends_and_replays(tmp_path: Path) -> None:
    store = tmp_path / "s.json"
    Queue(store, now=NOW).enqueue_text("chat", "already there", source_key="host:m1")
    fixture = write(tmp_path / "f.json", json.dumps({"now": NOW, "sessions": [{"id": "chat", "drafts": [
        {"text": "hi", "source_key": "host:m1"}, {"text": "new", "source_key": "host:m9"}]}]}))
    before = store.read_bytes()
    result = cli("import", fixture, "--store", store, "--json")
    assert result.exit_code == 6, result.stderr  # the same source key with other payloads: refused
    assert "sessions[0].drafts[0]: source key 'host:m1'" in result.stderr
    assert store.read_bytes() == before
    write(fixture, json.dumps({"now": NOW, "sessions": [{"id": "chat", "drafts": [
        {"text": "already there", "source_key": "host:m1"}, {"text": "new", "source_key": "host:m9"}]}]}))
    result = cli("import", fixture, "--store", store, "--json")
    assert result.exit_code == 0, result.stderr
    assert [e["outcome"] for e in json.loads(result.stdout)["enqueued"]] == ["replayed", "enqueued"]
    assert len(Queue(store, now=NOW).list("chat")) == 2


def test_import_reads_stdin_with_format(tmp_path: Path) -> None:
    doc = 'now = 1767225600000\n[[sessions]]\nid = "s"\ndrafts = [{ text = "from stdin" }]\n'
    assert cli("import", "-", "--store", tmp_path / "s.json").exit_code == 2  # empty stdin is no fixture
    result = cli("import", "-", "--format", "toml", "--store", tmp_path / "s.json", input=doc)
    assert result.exit_code == 0, result.stderr
    assert "1 draft(s)" in result.stdout
    assert Queue(tmp_path / "s.json", now=NOW).list("s")[0].items[0].payload.input.items[0].text == "from stdin"


BAD_FIXTURES = [
    ({"sessions": [{"id": "s", "drafts": [{"text": "a"}, {"text": "b"}, {"text": "c", "policy": "x"}]}]},
     "sessions[0].drafts[2].policy: unknown key"),
    ({"sessions": [{"id": "s", "drafts": [{"text": "a", "delivery": "soon"}]}]},
     "sessions[0].drafts[0].delivery: unknown value 'soon'"),
    ({"sessions": [{"id": "s", "drafts": [{"text": "a", "delay": "ten minutes"}]}]},
     "sessions[0].drafts[0].delay: invalid duration"),
    ({"sessions": [{"id": "s", "drafts": [{"text": "a", "merge": "group:"}]}]}, "sessions[0].drafts[0].merge"),
    ({"sessions": [{"id": "s", "drafts": [{"text": "a", "wake": {"process_id": "p", "sequence": 1, "input": "i"}}]}]},
     "sessions[0].drafts[0]: a draft needs exactly one of"),
    ({"sessions": [{"id": "s", "drafts": [{}]}]}, "sessions[0].drafts[0]: a draft needs exactly one of"),
    ({"sessions": [{"id": "s", "drafts": [{"text": "a", "images": {"x": "missing.png"}}]}]},
     "sessions[0].drafts[0].images.x: cannot read image"),
    ({"sessions": [{"id": "s", "drafts": [{"payloads": [{"type": "turn_input", "input": {"itemz": []}}]}]}]},
     "sessions[0].drafts[0]"),
    ({"sessions": [{"id": "s", "drafts": [{"wake": {"process_id": "p", "sequence": -1, "input": "i"}}]}]},
     "sessions[0].drafts[0].wake.sequence"),
    ({"sessions": [{"id": "s", "drafts": [{"command": {"kind": "reboot", "reason": "r"}}]}]},
     "sessions[0].drafts[0].command.kind"),
    ({"sessions": [{"id": "s", "drafts": [{"text": "a"}], "claims": [{"boundary": "later"}]}]},
     "sessions[0].claims[0].boundary"),
    ({"sessions": [{"id": "s", "drafts": [{"text": "a", "delay": "1h"}], "claims": [{"owner": "w"}]}]},
     "sessions[0].claims[0]: nothing to claim"),
    ({"sessions": [{"id": "s"}, {"id": "s"}]}, "sessions[1].id: session 's' is described twice"),
    ({"sessions": [{"drafts": []}]}, "sessions[0]: missing key `id`"),
    ({"format": "turnq-store", "sessions": []}, "format: expected 'turnq-fixture'"),
    ({"now": "yesterday", "sessions": []}, "now: invalid time"),
    ({"sesions": []}, "sesions: unknown key"),
]


@pytest.mark.parametrize(("document", "message"), BAD_FIXTURES)
def test_a_bad_fixture_names_the_place_exits_2_and_writes_nothing(tmp_path: Path, document: dict,
                                                                 message: str) -> None:
    store = tmp_path / "s.json"
    Queue(store, now=NOW).enqueue_text("other", "keep me")
    before = store.read_bytes()
    fixture = write(tmp_path / "bad.json", json.dumps(document))
    result = cli("import", fixture, "--store", store)
    assert result.exit_code == 2, result.stdout + result.stderr
    assert message in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert store.read_bytes() == before


def test_toml_syntax_errors_and_unknown_formats_exit_2(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.toml", "sessions = [\n")
    result = cli("import", bad)
    assert result.exit_code == 2 and "not valid TOML" in result.stderr
    other = write(tmp_path / "f.yaml", "{}")
    result = cli("import", other)
    assert result.exit_code == 2 and "--format" in result.stderr
    assert cli("import", other, "--format", "json").exit_code == 0


# --------------------------------------------------------------------------- export → import


def _busy_store(path: Path) -> Path:
    """A store with every kind of state: live and expired claims, renewals, gaps in the
    sequence, both tombstone outcomes, images and floats."""
    queue = Queue(path, now=NOW)
    queue.enqueue_text("chat", "hi", source_key="host:1", delivery_policy="earliest_safe_boundary",
                       merge_key={"group": "g"})
    queue.enqueue_text("chat", "there", source_key="host:2", delivery_policy="earliest_safe_boundary",
                       merge_key={"group": "g"})
    from turnq import make_draft

    queue.enqueue(make_draft("chat", [{"type": "turn_input", "input": {
        "items": [{"type": "image_ref", "id": "i"}], "image_blobs": {"i": list(PNG)},
        "protocol_turn_options": {"payload": {"t": 0.1, "z": [1, "x", True]}}}}], source_key="host:3"))
    queue.wake("chat", "p", 1, "woke", delay_ms=5 * MINUTE)
    queue.reset_session("chat", "again")
    queue.enqueue_text("ops", "one", source_key="ops:1")
    queue.enqueue_text("ops", "two", source_key="ops:2")
    queue.enqueue_text("ops", "three")
    first = queue.claim("ops", owner="a", ttl_ms=MINUTE, max_batches=1)
    queue.complete(first)
    queue.cancel("ops", queue.list("ops")[0].batch_id)  # ops:2 cancelled
    claim = queue.claim("chat", owner="b", ttl_ms=MINUTE)
    queue.clock.advance("2m")  # b's lease runs out but stays recorded
    queue.claim("ops", owner="c", ttl_ms=MINUTE)
    renewed = queue.claim("chat", owner="d", boundary="active_turn_checkpoint")
    queue.renew(renewed, ttl_ms=10 * MINUTE)
    assert claim is not None
    return path


@pytest.mark.parametrize("fmt", ["toml", "json"])
def test_export_then_import_rebuilds_the_store_byte_for_byte(tmp_path: Path, fmt: str) -> None:
    store = _busy_store(tmp_path / "s.json")
    out = tmp_path / f"export.{fmt}"
    result = cli("export", "--store", store, "--format", fmt, "--output", out, "--now", NOW)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    copy = tmp_path / "copy.json"
    result = cli("import", out, "--store", copy, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["tombstones"] == 2
    assert copy.read_bytes() == store.read_bytes()
    # The export of the copy is the same text again.
    again = cli("export", "--store", copy, "--format", fmt, "--now", NOW)
    assert again.stdout == out.read_text()


def test_export_of_some_sessions_and_to_stdout(tmp_path: Path) -> None:
    store = _busy_store(tmp_path / "s.json")
    result = cli("export", "ops", "--store", store, "--format", "json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert [s["id"] for s in doc["sessions"]] == ["ops"]
    assert doc["next_enqueue_seq"] == 9  # the store-wide sequence, gaps and all
    assert {t["source_key"] for t in doc["sessions"][0]["tombstones"]} == {"ops:1", "ops:2"}
    assert [b["payloads"] for b in doc["sessions"][0]["batches"]] == [[{"text": "three"}]]
    copy = tmp_path / "ops.json"
    write(tmp_path / "ops.fixture.json", result.stdout)
    assert cli("import", tmp_path / "ops.fixture.json", "--store", copy).exit_code == 0
    assert Queue(copy, now=NOW).overview().sessions[0].session_id == "ops"
    assert [s.session_id for s in Queue(copy, now=NOW).overview().sessions] == ["ops"]


def test_exact_records_need_an_empty_store(tmp_path: Path) -> None:
    store = _busy_store(tmp_path / "s.json")
    exported = write(tmp_path / "e.toml", cli("export", "--store", store).stdout)
    before = store.read_bytes()
    result = cli("import", exported, "--store", store)
    assert result.exit_code == 2 and "empty store" in result.stderr
    assert store.read_bytes() == before


def test_exact_records_are_checked_as_a_store_would_be(tmp_path: Path) -> None:
    store = _busy_store(tmp_path / "s.json")
    doc = json.loads(cli("export", "--store", store, "--format", "json").stdout)
    doc["sessions"][0]["batches"][1]["enqueue_seq"] = doc["sessions"][0]["batches"][0]["enqueue_seq"]
    result = cli("import", write(tmp_path / "e.json", json.dumps(doc)), "--store", tmp_path / "n.json")
    assert result.exit_code == 2 and "exact records" in result.stderr
    doc = json.loads(cli("export", "--store", store, "--format", "json").stdout)
    doc["sessions"][0]["batches"][0]["delivery_policy"] = "whenever"
    result = cli("import", write(tmp_path / "e.json", json.dumps(doc)), "--store", tmp_path / "n.json")
    assert result.exit_code == 2 and "sessions[0].batches[0]" in result.stderr
    assert not (tmp_path / "n.json").exists()


def test_toml_export_refuses_what_toml_cannot_hold(tmp_path: Path) -> None:
    queue = Queue(tmp_path / "s.json", now=NOW)
    from turnq import make_draft

    queue.enqueue(make_draft("s", [{"type": "turn_input", "input": {
        "items": [], "protocol_turn_options": {"payload": {"k": None}}}}]))
    result = cli("export", "--store", tmp_path / "s.json")
    assert result.exit_code == 2
    assert "TOML cannot hold null" in result.stderr and "--format json" in result.stderr
    assert "sessions[0].batches[0].payloads[0].input.protocol_turn_options.payload.k" in result.stderr
    exported = cli("export", "--store", tmp_path / "s.json", "--format", "json").stdout
    write(tmp_path / "e.json", exported)
    assert cli("import", tmp_path / "e.json", "--store", tmp_path / "c.json").exit_code == 0
    assert (tmp_path / "c.json").read_bytes() == (tmp_path / "s.json").read_bytes()


def test_core_parse_and_build_without_the_cli(tmp_path: Path) -> None:
    from turnq.store import MemoryStore

    fixture = fixtures.parse({"now": NOW, "sessions": [{"id": "s", "drafts": [{"text": "a"}, {"text": "b"}],
                                                        "claims": [{"owner": "w"}]}]})
    memory = MemoryStore()
    result = fixtures.build(fixture, memory)
    assert [c.batch_ids for _, c, _ in result.claims] == [[r.batch.batch_id for _, r in result.results]]
    assert fixtures.build_state(fixture).session("s")[0].lease.owner_id == "w"
    with pytest.raises(fixtures.InvalidInput, match=r"sessions\[0\]\.drafts\[0\]\.slot"):
        fixtures.parse({"sessions": [{"id": "s", "drafts": [{"text": "a", "slot": "all"}]}]})


# --------------------------------------------------------------------------- shipped examples


@pytest.mark.parametrize("name", ["chat.toml", "ops.json"])
def test_shipped_fixtures_import(tmp_path: Path, name: str) -> None:
    result = cli("import", EXAMPLES / "fixtures" / name, "--store", tmp_path / "s.json", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["enqueued"]


def test_ci_checks_example_script(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TURNQ_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(["bash", str(EXAMPLES / "ci_checks.sh")], check=False, cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "expect: exit 1 as planned" in result.stdout
    assert "diff: exit 1" in result.stdout and "claimed" in result.stdout
    assert "export → import: byte-identical" in result.stdout
    assert "no differences" in result.stdout


def test_the_readme_example_fixture_imports(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Fixtures\n", 1)[1].split("\n## ", 1)[0]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "pixel.png").write_bytes((EXAMPLES / "fixtures" / "pixel.png").read_bytes())
    fixture = write(tmp_path / "readme.toml", example)
    result = cli("import", fixture, "--store", tmp_path / "s.json", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert len(report["enqueued"]) == 7 and [c["completed"] for c in report["claims"]] == [True, False]
    queue = Queue(tmp_path / "s.json", now=NOW)
    assert [t.source_key for t in queue.tombstones("ops")] == ["ops:rotate"]
    assert [v.state for v in queue.inspect("chat").batches] == ["ready", "ready", "delayed", "ready", "ready"]


def test_export_of_a_missing_store_exits_5_and_bad_options_exit_2(tmp_path: Path) -> None:
    result = cli("export", "--store", tmp_path / "missing.json")
    assert result.exit_code == 5 and "no store at" in result.stderr
    assert not (tmp_path / "missing.json").exists()
    fixture = write(tmp_path / "f.toml", '[[sessions]]\nid = "s"\ndrafts = [{ text = "a" }]\n')
    result = cli("import", fixture, "--store", tmp_path / "s.json", "--now", "soon")
    assert result.exit_code == 2 and "--now" in result.stderr
    result = cli("import", fixture, "--store", tmp_path / "s.json", "--lock-timeout", "x")
    assert result.exit_code == 2 and "--lock-timeout" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.toml"]


def test_the_core_modules_need_neither_typer_nor_rich(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "sys.modules['typer'] = None\n"
        "sys.modules['rich'] = None\n"
        "from turnq import fixtures, expect, diff, schema\n"
        "fx = fixtures.parse({'now': 0, 'sessions': [{'id': 's', 'drafts': [{'text': 'hi'}]}]})\n"
        "state = fixtures.build_state(fx)\n"
        "assert expect.check(state, 's', expect.Expectations(count=1, next_text='hi'), 0).ok\n"
        "assert diff.diff_states(state, fixtures.build_state(fx)).equal\n"
        "assert schema.schema('receipt')['title'] == 'SessionCommandReceipt'\n"
        "assert fixtures.dumps(fixtures.export_document(state), 'toml').startswith('format')\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], check=False, cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
