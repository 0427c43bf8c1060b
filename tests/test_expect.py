"""`turnq expect` and the core module `turnq.expect`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import NOW
from typer.testing import CliRunner

from turnq import Queue, expect
from turnq.cli import app

RUNNER = CliRunner()
MINUTE = 60_000


def cli(*args: Any, now: Any = NOW):
    argv = [str(a) for a in args] + (["--now", str(now)] if now is not None else [])
    return RUNNER.invoke(app, argv, catch_exceptions=False)


@pytest.fixture
def store(store_path: Path) -> Path:
    """chat: m1, m2 (join, earliest), m3 delayed 10m, a wake; ops: one held, one expired."""
    queue = Queue(store_path, now=NOW)
    queue.enqueue_text("chat", "hi", source_key="host:m1", delivery_policy="earliest_safe_boundary")
    queue.enqueue_text("chat", "there", source_key="host:m2", delivery_policy="earliest_safe_boundary")
    queue.enqueue_text("chat", "later", source_key="host:m3", available_at_ms=NOW + 10 * MINUTE)
    queue.wake("chat", "build", 1, "done")
    queue.enqueue_text("ops", "old")
    queue.claim("ops", owner="gone", ttl_ms=MINUTE)
    queue.clock.advance("2m")
    queue.enqueue_text("ops", "new", slot_policy="exclusive")
    queue.enqueue_text("ops", "third", slot_policy="exclusive")
    queue.claim("ops", owner="w", batch_ids=[queue.list("ops")[0].batch_id])  # re-claims the expired one
    queue.enqueue_text("ops", "expiring")
    return store_path


def ids(store: Path, session: str) -> list[str]:
    return [b.batch_id for b in Queue(store, now=NOW).list(session)]


def test_every_check_holds_exits_0_and_writes_nothing(store: Path) -> None:
    before = store.read_bytes()
    m1, m2 = ids(store, "chat")[:2]
    result = cli("expect", "chat", "--count", 4, "--source-keys", "host:m1,host:m2,host:m3,process:build:event:1:wake",
                 "--next-claim", f"{m1},{m2[:12]}", "--next-text", "hi\nthere")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "all 4 check(s) hold" in result.stdout
    assert store.read_bytes() == before


def test_a_failed_check_exits_1_with_expected_and_actual(store: Path) -> None:
    result = cli("expect", "chat", "--count", 3, "--source-keys", "host:m2,host:m1", "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["session_id"] == "chat" and report["now_ms"] == NOW
    assert report["checks"] == [
        {"check": "count", "ok": False, "expected": 3, "actual": 4},
        {"check": "source keys", "ok": False, "expected": ["host:m2", "host:m1"],
         "actual": ["host:m1", "host:m2", "host:m3", "process:build:event:1:wake"]},
    ]
    assert result.stderr == ""
    human = cli("expect", "chat", "--count", 3, "--count", 4)
    assert human.exit_code == 0  # the last --count wins, as with any option
    human = cli("expect", "chat", "--count", 3)
    assert human.exit_code == 1
    assert "FAILED" in human.stdout and "1 of 1 check(s) failed" in human.stdout


@pytest.mark.parametrize(("state", "count", "now"), [
    ("ready", 3, NOW), ("delayed", 1, NOW), ("ready", 4, NOW + 10 * MINUTE), ("delayed", 0, NOW + 10 * MINUTE)])
def test_count_by_state_in_chat(store: Path, state: str, count: int, now: int) -> None:
    assert cli("expect", "chat", "--count", count, "--state", state, now=now).exit_code == 0
    assert cli("expect", "chat", "--count", count + 1, "--state", state, now=now).exit_code == 1


def test_held_and_expired_states(store: Path) -> None:
    at = NOW + 2 * MINUTE
    assert cli("expect", "ops", "--count", 1, "--state", "held", now=at).exit_code == 0
    # After the second lease (15m) runs out, that batch is expired: held 0, expired 1.
    later = at + 16 * MINUTE
    assert cli("expect", "ops", "--count", 0, "--state", "held", now=later).exit_code == 0
    assert cli("expect", "ops", "--count", 1, "--state", "expired", now=later).exit_code == 0
    assert cli("expect", "ops", "--count", 4, now=later).exit_code == 0


def test_next_claim_at_each_boundary_and_by_source_key(store: Path) -> None:
    m1, m2, _, wake = ids(store, "chat")
    assert cli("expect", "chat", "--next-claim", "host:m1,host:m2").exit_code == 0
    assert cli("expect", "chat", "--next-claim", "host:m1").exit_code == 1
    assert cli("expect", "chat", "--next-claim", "host:m1,host:m2", "--boundary",
               "active_turn_checkpoint").exit_code == 0
    assert cli("expect", "chat", "--next-claim", "", "--next-text", "x").exit_code == 1
    Queue(Path(store), now=NOW).claim("chat", owner="w")
    result = cli("expect", "chat", "--next-claim", wake, "--next-text",
                 "Background process wake\nProcess: build\nEvent: process.wake #1\nWake input:\ndone", "--json")
    assert result.exit_code == 0, result.stdout
    assert json.loads(result.stdout)["checks"][0]["actual"] == [wake]
    assert m1 != m2


def test_next_text_at_a_checkpoint_and_when_nothing_is_claimable(store: Path) -> None:
    assert cli("expect", "chat", "--boundary", "active_turn_checkpoint", "--next-text", "hi\nthere").exit_code == 0
    result = cli("expect", "nobody", "--next-text", "", "--count", 0, "--json")
    assert result.exit_code == 1
    checks = json.loads(result.stdout)["checks"]
    assert checks[0]["ok"] and checks[1] == {"check": "next text (idle)", "ok": False, "expected": "", "actual": None}
    assert cli("expect", "nobody", "--next-claim", "", "--count", 0).exit_code == 0


@pytest.mark.parametrize(("args", "message"), [
    ((), "nothing to check"),
    (("--state", "ready"), "--state"),
    (("--count", "-1"), "--count"),
    (("--count", "1", "--state", "gone"), "'gone'"),
    (("--next-claim", "x", "--boundary", "soon"), "'soon'"),
])
def test_bad_options_exit_2(store: Path, args: tuple[str, ...], message: str) -> None:
    result = cli("expect", "chat", *args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_an_unreadable_store_exits_7(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert cli("expect", "chat", "--count", 0, "--store", bad).exit_code == 7


def test_core_check_and_turn_text(store: Path) -> None:
    state = Queue(store).store.read()
    report = expect.check(state, "chat", expect.Expectations(count=4, next_text="hi\nthere"), NOW)
    assert report.ok and [c.name for c in report.checks] == ["count", "next text (idle)"]
    report = expect.check(state, "chat", expect.Expectations(count=2, state="ready"), NOW)
    assert not report.ok and report.checks[0].actual == 3
    assert expect.split_list("a, b,c") == ["a", "b", "c"] and expect.split_list("") == []


@pytest.mark.parametrize("argv", [["expect", "chat", "--count", "4", "--json", "--store", "A"],
                                  ["diff", "A", "A", "--json"], ["import", "F", "--store", "B", "--json"],
                                  ["schema", "claim"]])
def test_json_output_does_not_import_rich(store: Path, tmp_path: Path, argv: list[str]) -> None:
    import subprocess
    import sys

    fixture = tmp_path / "f.toml"
    fixture.write_text('[[sessions]]\nid = "s"\ndrafts = [{ text = "a" }]\n')
    names = {"A": str(store), "F": str(fixture), "B": str(tmp_path / "b.json")}
    argv = [names.get(arg, arg) for arg in argv]
    code = ("import sys\nsys.argv = ['turnq', *sys.argv[1:]]\nfrom turnq.cli import main\n"
            "try:\n    main()\nexcept SystemExit as exit:\n    code = exit.code\n"
            "print('rich' in sys.modules, 'tomli_w' in sys.modules, 'jsonschema' in sys.modules, code, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code, *argv], check=False, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "TURNQ_NOW": str(NOW)})
    assert done.stderr.split()[-4:] == ["False", "False", "False", "0"], done.stderr
