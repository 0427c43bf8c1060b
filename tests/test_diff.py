"""`turnq diff` and `turnq.diff.diff_states`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from conftest import NOW
from typer.testing import CliRunner

from turnq import Queue, make_draft
from turnq.cli import app
from turnq.diff import diff_states
from turnq.store import MemoryStore

RUNNER = CliRunner()
MINUTE = 60_000


def cli(*args: Any):
    return RUNNER.invoke(app, [str(a) for a in args], catch_exceptions=False)


def kinds(result: Any) -> list[tuple[str, str]]:
    return [(c.kind, c.session_id) for c in result.changes]


def test_equal_states_have_no_changes() -> None:
    queue = Queue(MemoryStore(), now=NOW)
    queue.enqueue_text("s", "a", source_key="k")
    state = queue.store.read()
    result = diff_states(state, queue.store.read())
    assert result.equal and result.to_wire()["changes"] == []


def test_every_kind_of_change() -> None:
    queue = Queue(MemoryStore(), now=NOW)
    queue.enqueue_text("s", "claimed later", source_key="k1")
    queue.enqueue_text("s", "completed", source_key="k2", slot_policy="exclusive")
    queue.enqueue_text("t", "released")
    queue.enqueue_text("r", "renewed")
    queue.enqueue_text("u", "reclaimed")
    t_claim = queue.claim("t", owner="a", max_batches=1)
    queue.claim("u", owner="a", ttl_ms=MINUTE)
    before = queue.store.read()

    queue.claim("s", owner="b", max_batches=1)  # k1: claimed
    done = queue.claim("s", owner="b", batch_ids=[queue.list("s")[1].batch_id])
    queue.complete(done)  # k2: removed, settled (tombstone added)
    queue.abandon(t_claim)  # released
    renew_me = queue.claim("r", owner="c")
    after_claim = queue.store.read()
    queue.renew(renew_me, ttl_ms=30 * MINUTE)
    queue.clock.advance("2m")
    queue.claim("u", owner="d")  # the expired lease is taken by someone else
    queue.enqueue_text("v", "added", source_key="new")
    after = queue.store.read()

    result = diff_states(before, after)
    assert not result.equal
    by_kind = {(c.kind, c.session_id): c for c in result.changes}
    assert set(by_kind) == {("sequence_changed", ""), ("claimed", "s"), ("removed", "s"), ("tombstone_added", "s"),
                            ("released", "t"), ("claimed", "r"), ("reclaimed", "u"), ("added", "v")}
    assert by_kind[("removed", "s")].details["settled"] == "completed"
    assert by_kind[("released", "t")].details["fencing"] == {"a": 1, "b": 1}
    assert by_kind[("reclaimed", "u")].details["fencing"] == {"a": 1, "b": 2}
    assert by_kind[("reclaimed", "u")].details["owner"] == "d"
    assert by_kind[("added", "v")].details == {"enqueue_seq": 6, "source_key": "new"}
    renewal = diff_states(after_claim, after).changes
    renewed = [c for c in renewal if c.kind == "renewed"]
    assert len(renewed) == 1 and renewed[0].details["expires_at_ms"]["b"] == NOW + 30 * MINUTE
    # And back: the reverse diff mirrors it.
    back = {(c.kind, c.session_id) for c in diff_states(after, before).changes}
    assert ("removed", "v") in back and ("added", "s") in back and ("tombstone_removed", "s") in back


def test_policy_and_payload_changes(tmp_path: Path) -> None:
    a = tmp_path / "a.json"
    Queue(a, now=NOW).enqueue(make_draft("s", [{"type": "turn_input", "input": {"items": [
        {"type": "text", "text": "one"}]}}], delivery_policy="earliest_safe_boundary"))
    b = tmp_path / "b.json"
    doc = json.loads(a.read_text())
    batch = doc["batches"][0]["batch"]
    batch["delivery_policy"] = "after_current_turn_commit"
    batch["merge_key"] = {"group": "g"}
    batch["items"][0]["payload"]["input"]["items"][0]["text"] = "two"
    b.write_text(json.dumps(doc))
    result = cli("diff", a, b, "--json")
    assert result.exit_code == 1
    changes = json.loads(result.stdout)["changes"]
    assert [c["change"] for c in changes] == ["policy_changed", "payload_changed"]
    assert changes[0]["details"] == {"delivery_policy": {"a": "earliest_safe_boundary", "b": "after_current_turn_commit"},
                                     "merge_key": {"a": "never", "b": {"group": "g"}}}
    assert changes[1]["details"] == {"items": {"a": 1, "b": 1}, "differing_items": [0]}
    human = cli("diff", a, b)
    assert human.exit_code == 1 and "policy_changed" in human.stdout and "group:g" in human.stdout


def test_cli_equal_stores_exit_0_and_never_write(tmp_path: Path) -> None:
    a = tmp_path / "a.json"
    Queue(a, now=NOW).enqueue_text("s", "x")
    b = tmp_path / "b.json"
    shutil.copy(a, b)
    before = a.read_bytes()
    result = cli("diff", a, b)
    assert result.exit_code == 0 and "no differences" in result.stdout
    result = cli("diff", a, b, "--json")
    assert json.loads(result.stdout) == {"a": str(a), "b": str(b), "equal": True, "changes": []}
    assert a.read_bytes() == before


def test_a_store_against_a_fixture(tmp_path: Path) -> None:
    fixture = tmp_path / "f.toml"
    fixture.write_text('now = "2026-01-01T00:00:00Z"\n[[sessions]]\nid = "s"\n'
                       'drafts = [{ text = "a", source_key = "k1" }, { text = "b", source_key = "k2" }]\n')
    store = tmp_path / "s.json"
    assert cli("import", fixture, "--store", store).exit_code == 0
    assert cli("diff", store, fixture).exit_code == 0
    Queue(store, now=NOW).claim("s", owner="w")
    result = cli("diff", fixture, store, "--json")
    assert result.exit_code == 1
    assert [c["change"] for c in json.loads(result.stdout)["changes"]] == ["claimed", "claimed"]
    # A JSON fixture (not a store) is recognised by its content.
    exported = tmp_path / "e.json"
    assert cli("export", "--store", store, "--format", "json", "--output", exported).exit_code == 0
    assert cli("diff", store, exported).exit_code == 0


def test_missing_or_bad_inputs(tmp_path: Path) -> None:
    a = tmp_path / "a.json"
    Queue(a, now=NOW).enqueue_text("s", "x")
    result = cli("diff", a, tmp_path / "missing.json")
    assert result.exit_code == 5 and "no such store or fixture" in result.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2")
    assert cli("diff", a, bad).exit_code == 7
    broken_fixture = tmp_path / "bad.toml"
    broken_fixture.write_text("[[sessions]]\nid = 3\n")
    result = cli("diff", a, broken_fixture)
    assert result.exit_code == 2 and "sessions[0].id" in result.stderr


def test_store_urls_work_through_open_store(tmp_path: Path) -> None:
    import pytest

    pytest.importorskip("turnq.store.sqlite")
    fixture = Path(__file__).resolve().parents[1] / "examples" / "fixtures" / "chat.toml"
    url = f"sqlite:///{tmp_path / 'q.db'}"
    assert cli("import", fixture, "--store", url).exit_code == 0
    assert cli("import", fixture, "--store", tmp_path / "q.json").exit_code == 0
    assert cli("diff", url, tmp_path / "q.json").exit_code == 0
    assert cli("diff", url, fixture).exit_code == 0
    Queue(url, now=NOW).claim("chat", owner="w")
    result = cli("diff", fixture, url, "--json")
    assert result.exit_code == 1
    assert {c["change"] for c in json.loads(result.stdout)["changes"]} == {"claimed"}
