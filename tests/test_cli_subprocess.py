"""The installed `turnq` console script and `python -m turnq` in real processes.

What CliRunner cannot show: the exit status a shell sees, pipes between two turnq processes,
the lock held by another process, and that a user mistake prints one line and no traceback when
nothing is in-process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

NOW_TEXT = "2026-01-01T00:00:00Z"
NOW = 1767225600000
BOX_CHARS = set("╭╮╰╯│─━┃")


def _script() -> Path | None:
    beside = Path(sys.executable).parent / "turnq"
    if beside.exists():
        return beside
    found = shutil.which("turnq")
    return Path(found) if found else None


SCRIPT = _script()
BASH = shutil.which("bash")
needs_script = pytest.mark.skipif(SCRIPT is None, reason="the turnq console script is not installed")
needs_bash = pytest.mark.skipif(BASH is None, reason="bash is not available")


@pytest.fixture
def env(store_path: Path) -> dict[str, str]:
    """The environment of every child: our venv first on PATH, the test's store, a fixed clock."""
    child = {k: v for k, v in os.environ.items()
             if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "TURNQ_OWNER", "TURNQ_LOCK_TIMEOUT")}
    bin_dir = str(SCRIPT.parent) if SCRIPT is not None else str(Path(sys.executable).parent)
    child["PATH"] = bin_dir + os.pathsep + child.get("PATH", "")
    child["TURNQ_STORE"] = str(store_path)
    child["TURNQ_NOW"] = NOW_TEXT
    child["COLUMNS"] = "100"
    return child


def turnq(env: dict[str, str], *args: str, input: str | None = None, module: bool = False,
          timeout: float = 60) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "turnq", *args] if module else [str(SCRIPT), *args]
    return subprocess.run(command, env=env, input=input, capture_output=True, text=True, timeout=timeout)


def shell(env: dict[str, str], script: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([BASH, "-c", script], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


def one_error_line(result: subprocess.CompletedProcess, status: int) -> str:
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert not BOX_CHARS & set(result.stderr), result.stderr
    return lines[0]


# --------------------------------------------------------------------------- help


@needs_script
def test_help_works(env):
    result = turnq(env, "--help")
    assert result.returncode == 0, result.stderr
    for command in ("enqueue", "wake", "claim", "complete", "renew", "abandon", "cancel", "reset-session",
                    "refresh-tools", "vacuum", "inspect"):
        assert command in result.stdout
    assert "Traceback" not in result.stderr


def test_module_help_works(env):
    result = turnq(env, "--help", module=True)
    assert result.returncode == 0, result.stderr
    assert "enqueue" in result.stdout and "claim" in result.stdout


@needs_script
def test_command_help_works(env, tmp_path):
    result = turnq(env, "claim", "--help")
    assert result.returncode == 0
    assert "--boundary" in result.stdout and "--dry-run" in result.stdout
    assert not (tmp_path / "turnq.json").exists()


# --------------------------------------------------------------------------- claim → complete through pipes


@needs_script
@needs_bash
def test_claim_piped_into_complete(env, tmp_path, store_path):
    assert turnq(env, "enqueue", "s", "--text", "a", "--json").returncode == 0
    assert turnq(env, "enqueue", "s", "--text", "b", "--json").returncode == 0
    result = shell(env, "set -o pipefail; turnq claim s --json | turnq complete --claim - --json", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    done = json.loads(result.stdout)
    assert list(done) == ["session_id", "claim_id", "lease_token", "batch_ids"]
    assert done["claim_id"] == "qwc:1:1" and len(done["batch_ids"]) == 2
    view = json.loads(turnq(env, "inspect", "s", "--json").stdout)
    assert view["batches"] == []


@needs_script
@needs_bash
def test_claim_file_then_complete(env, tmp_path):
    assert turnq(env, "enqueue", "s", "--text", "a", "--json").returncode == 0
    result = shell(env, "turnq claim s --json > c.json && turnq complete --claim @c.json --json", tmp_path)
    assert result.returncode == 0, result.stderr
    claim = json.loads((tmp_path / "c.json").read_text())
    assert json.loads(result.stdout)["batch_ids"] == [claim["batches"][0]["batch_id"]]


@needs_script
@needs_bash
def test_a_worker_loop_drains_the_queue(env, tmp_path):
    for text in ("one", "two", "three"):
        assert turnq(env, "enqueue", "s", "--text", text, "--slot", "exclusive", "--json").returncode == 0
    script = """
    n=0
    while true; do
        turnq claim s --json > c.json; status=$?
        if [ "$status" -eq 3 ]; then echo "drained after $n"; exit 0; fi
        [ "$status" -eq 0 ] || exit "$status"
        turnq complete --claim @c.json --json > /dev/null || exit $?
        n=$((n+1))
    done
    """
    result = shell(env, script, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "drained after 3"


# --------------------------------------------------------------------------- exit codes seen by the shell


@needs_script
@needs_bash
def test_exit_3_seen_by_the_shell(env, tmp_path):
    result = shell(env, 'turnq claim s --json; echo "status=$?"', tmp_path)
    assert result.stdout == "null\nstatus=3\n"
    assert result.stderr == ""


@needs_script
@needs_bash
def test_empty_claim_piped_into_complete(env, tmp_path):
    result = shell(env, 'turnq claim s --json | turnq complete --claim -; echo "status=${PIPESTATUS[*]}"', tmp_path)
    assert result.stdout == "status=3 2\n"
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "--claim" in lines[0] and "Traceback" not in result.stderr


@needs_script
@needs_bash
def test_exit_2_seen_by_the_shell(env, tmp_path):
    result = shell(env, 'turnq enqueue s --text x --delivery bogus; echo "status=$?"', tmp_path)
    assert result.stdout == "status=2\n"
    assert len(result.stderr.splitlines()) == 1 and "--delivery" in result.stderr


@needs_script
@pytest.mark.parametrize("args,needle", [
    (["enqueue", "s", "--text", "x", "--delivery", "bogus"], "--delivery"),
    (["enqueue", "s", "--text", "x", "--frobnicate"], "--frobnicate"),
    (["claim", "s", "--ttl", "abc"], "--ttl"),
    (["enqueue", "s", "--payload", "{"], "--payload"),
    (["wake", "s", "--process-id", "p", "--input", "x"], "--sequence"),
    (["frobnicate"], "frobnicate"),
])
def test_a_usage_error_is_one_stderr_line(env, tmp_path, args, needle):
    line = one_error_line(turnq(env, *args), 2)
    assert line.startswith("turnq: error: ") and needle in line
    assert not (tmp_path / "turnq.json").exists()


@needs_script
def test_a_usage_error_with_json_is_one_json_line(env):
    line = one_error_line(turnq(env, "claim", "s", "--ttl", "abc", "--json"), 2)
    data = json.loads(line)
    assert data["error"] == "usage" and "--ttl" in data["message"]


def test_module_usage_error_is_one_stderr_line(env):
    line = one_error_line(turnq(env, "enqueue", "s", "--text", "x", "--delivery", "bogus", module=True), 2)
    assert "--delivery" in line


@needs_script
def test_runtime_errors_are_one_line_too(env, store_path):
    batch = json.loads(turnq(env, "enqueue", "s", "--text", "x", "--json").stdout)
    assert turnq(env, "claim", "s", "--json").returncode == 0
    one_error_line(turnq(env, "cancel", "s", batch["batch_id"]), 4)
    one_error_line(turnq(env, "cancel", "s", "qwb:" + "0" * 64), 5)
    store_path.write_text("{broken")
    one_error_line(turnq(env, "inspect"), 7)
    assert store_path.read_text() == "{broken"


@needs_script
def test_store_busy_while_another_process_holds_the_lock(env, store_path):
    assert turnq(env, "enqueue", "s", "--text", "x", "--json").returncode == 0
    before = store_path.read_bytes()
    lock_path = store_path.with_name(store_path.name + ".lock")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from filelock import FileLock\n"
         f"lock = FileLock({str(lock_path)!r}); lock.acquire()\n"
         "print('locked', flush=True); sys.stdin.read(); lock.release()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        result = turnq(env, "enqueue", "s", "--text", "y", "--lock-timeout", "200ms", "--json")
        line = one_error_line(result, 8)
        assert json.loads(line)["error"] == "store_busy"
        assert store_path.read_bytes() == before
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(10)
    # once the holder is gone the store is free again
    assert turnq(env, "enqueue", "s", "--text", "y", "--lock-timeout", "200ms", "--json").returncode == 0


@needs_script
def test_script_and_module_give_the_same_bytes(env, tmp_path):
    outputs = []
    for module, name in ((False, "a.json"), (True, "b.json")):
        child = {**env, "TURNQ_STORE": str(tmp_path / name)}
        enq = turnq(child, "enqueue", "s", "--text", "x", "--source-key", "host:1", "--json", module=module)
        clm = turnq(child, "claim", "s", "--json", module=module)
        outputs.append((enq.stdout, clm.stdout))
        assert json.loads(clm.stdout)["owner_id"] == "turnq"
    assert outputs[0] == outputs[1]
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


@needs_script
@needs_bash
def test_concurrent_writers_each_get_their_own_sequence_number(env, tmp_path):
    script = """
    writer() { for i in 1 2 3 4; do turnq enqueue s --text "$1-$i" --json >> "out-$1.jsonl" || exit 1; done; }
    writer a & writer b & writer c &
    wait
    """
    result = shell(env, script, tmp_path)
    assert result.returncode == 0, result.stderr
    printed = [json.loads(line) for name in ("a", "b", "c")
               for line in (tmp_path / f"out-{name}.jsonl").read_text().splitlines()]
    assert sorted(batch["enqueue_seq"] for batch in printed) == list(range(1, 13))
    view = json.loads(turnq(env, "inspect", "s", "--json").stdout)
    assert sorted(v["batch"]["batch_id"] for v in view["batches"]) == sorted(b["batch_id"] for b in printed)


@needs_script
@needs_bash
def test_a_reader_leaving_early_ends_turnq_quietly_with_141(env, tmp_path, store_path):
    from turnq import Queue

    queue = Queue(store_path, now=NOW)
    for i in range(40):  # enough output that `head` leaves before turnq has written it all
        queue.enqueue_text("s", f"message {i}")
    result = shell(env, "set -o pipefail; turnq inspect s | head -n 1 >/dev/null; echo ${PIPESTATUS[0]}", tmp_path)
    assert result.stdout.strip() == "141"
    assert result.stderr == ""  # no traceback, no "Exception ignored" from the last flush
