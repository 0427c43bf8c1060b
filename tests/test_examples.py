"""The shipped examples run, and do what they say."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from turnq import Queue

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TURNQ_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def _bash(script: str, *args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(EXAMPLES / script), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_quickstart_enqueues_claims_and_completes(tmp_path: Path) -> None:
    result = _bash("quickstart.sh", cwd=tmp_path, env=_env(tmp_path))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Next claim at the idle boundary: 2 batch(es)" in out
    assert "Completed claim qwc:1:1: 2 batch(es) removed" in out
    assert '"claim_id":"qwc:3:1"' in out  # the wake, claimed and completed through a pipe
    assert "exit code 3 (nothing to claim)" in out
    assert not list(tmp_path.iterdir()), "the quick start works in a temporary folder of its own"


def test_fixture_script_is_byte_identical_across_runs(tmp_path: Path) -> None:
    first = _bash("fixture.sh", "a.json", cwd=tmp_path, env=_env(tmp_path))
    second = _bash("fixture.sh", "b.json", cwd=tmp_path, env=_env(tmp_path))
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    queue = Queue(tmp_path / "a.json", now="2026-01-01T00:00:00Z")
    chat = queue.inspect("chat")
    assert [v.state for v in chat.batches] == ["ready", "ready", "delayed", "ready", "ready"]
    assert len(chat.next_claim["idle"]) == 2  # the two group:chat messages travel together
    assert [v.state for v in queue.inspect("ops").batches] == ["held"]


def _fixture_store(tmp_path: Path) -> dict[str, str]:
    assert _bash("fixture.sh", "q.json", cwd=tmp_path, env=_env(tmp_path)).returncode == 0
    # At 00:20 the delayed batch is due and the ops lease has run out.
    return _env(tmp_path, TURNQ_STORE=str(tmp_path / "q.json"), TURNQ_NOW="2026-01-01T00:20:00Z")


def _assert_drained(tmp_path: Path, chat: subprocess.CompletedProcess[str],
                    ops: subprocess.CompletedProcess[str]) -> None:
    assert chat.returncode == 0 and ops.returncode == 0, chat.stderr + ops.stderr
    assert "user: hi" in chat.stdout and "wake: tests passed" in chat.stdout
    assert "command: reset_session" in chat.stdout
    assert "fencing 2" in ops.stdout  # re-claimed after worker-a's lease expired
    overview = Queue(tmp_path / "q.json", now="2026-01-01T00:20:00Z").overview()
    assert all(s.ready + s.delayed + s.held + s.lease_expired == 0 for s in overview.sessions)


def test_worker_runs_turnq_work_until_the_queue_is_drained(tmp_path: Path) -> None:
    env = _fixture_store(tmp_path)
    chat = _bash("worker.sh", "chat", "w1", cwd=tmp_path, env=env)
    ops = _bash("worker.sh", "ops", "w2", cwd=tmp_path, env=env)
    _assert_drained(tmp_path, chat, ops)
    assert "worker w1: queue drained" in chat.stdout
    assert chat.stderr.count("completed") == 4  # turnq work's line per claim, on stderr


def test_worker_loop_drains_the_queue_and_stops_on_exit_3(tmp_path: Path) -> None:
    env = _fixture_store(tmp_path)
    chat = _bash("worker_loop.sh", "chat", "w1", cwd=tmp_path, env=env)
    ops = _bash("worker_loop.sh", "ops", "w2", cwd=tmp_path, env=env)
    _assert_drained(tmp_path, chat, ops)
    assert "queue drained after 4 claim(s)" in chat.stdout


def test_python_api_example(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(EXAMPLES / "python_api.py"), str(tmp_path / "s.json")],
                            capture_output=True, text=True, timeout=60, env=_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "re-claimed qwc:1:2 fencing 2" in result.stdout
    assert "stale completion refused" in result.stdout
    assert "replay: replayed_tombstone" in result.stdout
    stored = json.loads((tmp_path / "s.json").read_text())
    assert stored["batches"] == [] and len(stored["tombstones"]) == 1


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("*.sh")))
def test_example_scripts_are_valid_bash(script: str) -> None:
    assert subprocess.run(["bash", "-n", str(EXAMPLES / script)]).returncode == 0
