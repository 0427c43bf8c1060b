"""kill -9 at random moments (issue 3, item 2).

A forked child applies a fixed list of operations to a JSON store through the Python API (with a
fixed clock per operation, so the run is reproducible) and reports each operation after it
returns; the parent SIGKILLs it after a random short delay. The same list replayed on a
`MemoryStore` gives the state after every prefix of the operations. After each kill the store
must load and be exactly (byte for byte, as turnq writes it) the state after the reported
operations, or after one more: the one that was running. The next child carries on from there,
so the kills land all along the list, in every kind of operation.

Then real `turnq` processes are killed the same way, and a process is killed while it holds the
store lock: the next command must not wait for a dead holder.

`TURNQ_CRASH_KILLS=N` sets the number of kills of the API child (default 300).
"""

from __future__ import annotations

import json
import os
import random
import select
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

from conftest import NOW

from turnq import FixedClock, Queue, TurnqError
from turnq.engine import ClaimRef
from turnq.state import QueueState
from turnq.store import JsonFileStore, MemoryStore, codec

KILLS = int(os.environ.get("TURNQ_CRASH_KILLS", "300"))
CLI_KILLS = int(os.environ.get("TURNQ_CRASH_CLI_KILLS", "16"))
TURNQ = [sys.executable, "-m", "turnq"]
SESSIONS = ["a", "b"]


# --------------------------------------------------------------------------- the operations


def apply(queue: Queue, clock: FixedClock, op: tuple) -> None:
    """One operation; a refusal (lease lost, not found …) is a completed operation too."""
    kind, now, *args = op
    clock.set(now)
    try:
        if kind == "enqueue":
            session, text, key, delivery, slot = args
            queue.enqueue_text(session, text, source_key=key, delivery_policy=delivery, slot_policy=slot)
        elif kind == "claim":
            session, owner, ttl, most = args
            queue.claim(session, owner=owner, ttl_ms=ttl, max_batches=most)
        elif kind == "complete":
            queue.complete(ClaimRef(*args[0]))
        elif kind == "abandon":
            queue.abandon(ClaimRef(*args[0]))
        elif kind == "renew":
            queue.renew(ClaimRef(*args[0]), ttl_ms=args[1])
        elif kind == "cancel":
            queue.cancel(*args)
        elif kind == "vacuum":
            queue.vacuum()
        else:  # pragma: no cover
            raise AssertionError(kind)
    except TurnqError:
        pass


def make_ops(seed: int, count: int) -> tuple[list[tuple], list[bytes]]:
    """A random list of operations, and the store's text after each prefix of it (index 0: empty)."""
    rng = random.Random(seed)
    clock = FixedClock(NOW)
    queue = Queue(MemoryStore(), now=clock)
    ops: list[tuple] = []
    states = [encode(QueueState())]
    claims: list[tuple] = []
    now = NOW
    for i in range(count):
        now += rng.choice([0, 0, 1, 250, 1_000, 5_000])
        session = rng.choice(SESSIONS)
        roll = rng.random()
        if roll < 0.35 or not queue.list(session) and not claims:
            key = rng.choice([None, f"host:{rng.randrange(12)}"])
            op = ("enqueue", now, session, f"text {i}", key,
                  rng.choice(["after_current_turn_commit", "earliest_safe_boundary"]), rng.choice(["join", "exclusive"]))
        elif roll < 0.6:
            op = ("claim", now, session, rng.choice(["w1", "w2"]), rng.choice([0, 1_000, 60_000]), rng.randint(1, 3))
        elif roll < 0.75 and claims:
            op = ("complete", now, rng.choice(claims))
        elif roll < 0.82 and claims:
            op = ("abandon", now, rng.choice(claims))
        elif roll < 0.88 and claims:
            op = ("renew", now, rng.choice(claims), rng.choice([1_000, 60_000]))
        elif roll < 0.95 and queue.list(session):
            op = ("cancel", now, session, rng.choice(queue.list(session)).batch_id)
        else:
            op = ("vacuum", now)
        if op[0] == "claim":
            clock.set(now)
            made = queue.claim(op[2], owner=op[3], ttl_ms=op[4], max_batches=op[5])
            if made is not None:
                claims.append((made.session_id, made.claim_id, made.lease_token, tuple(made.batch_ids)))
        else:
            apply(queue, clock, op)
        ops.append(op)
        states.append(encode(queue.store.read()))
    return ops, states


def encode(state: QueueState) -> bytes:
    return codec.encode(state).encode("utf-8")


def store_bytes(path: Path) -> bytes:
    """The store's text as a state: a missing file is the empty store."""
    if not path.exists():
        return encode(QueueState())
    JsonFileStore(path).read()  # it loads
    return path.read_bytes()


# --------------------------------------------------------------------------- the forked child


def run_child(path: Path, ops: list[tuple], start: int) -> tuple[int, int]:
    """Fork a child that applies ops[start:], writing one byte after each; returns (pid, read end)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            os.close(read_end)
            clock = FixedClock(NOW)
            queue = Queue(path, now=clock, lock_timeout_ms=10_000)
            for op in ops[start:]:
                apply(queue, clock, op)
                os.write(write_end, b".")
        except BaseException:  # noqa: BLE001 - whatever it is, the child must not return into pytest
            traceback.print_exc()
            code = 70
        finally:
            os._exit(code)
    os.close(write_end)
    return pid, read_end


def reported(read_end: int) -> int:
    count = 0
    while True:
        chunk = os.read(read_end, 4096)
        if not chunk:
            break
        count += len(chunk)
    os.close(read_end)
    return count


def test_sigkill_at_random_moments_leaves_a_prefix_of_the_operations(tmp_path):
    started = time.monotonic()
    path = tmp_path / "turnq.json"
    ops, states = make_ops(seed=3, count=120)
    assert len(set(states)) > 60  # most operations change the store
    rng = random.Random(11)
    start, kills, completed_runs, landed_mid_op, positions = 0, 0, 0, 0, set()
    # The longest wait before a kill adapts to the machine's speed: longer while kills land
    # before the child got anywhere, shorter when it runs to the end.
    longest = 0.012
    while kills < KILLS:
        pid, read_end = run_child(path, ops, start)
        time.sleep(rng.random() * longest)
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        before_start = start
        done = start + reported(read_end)
        if os.WIFEXITED(status):  # it finished every operation before the kill
            assert os.WEXITSTATUS(status) == 0, "the child failed (see its traceback above)"
            assert done == len(ops)
            assert store_bytes(path) == states[-1]
            completed_runs += 1
            longest /= 2
            path.unlink()
            start = 0
            continue
        assert os.WTERMSIG(status) == signal.SIGKILL
        kills += 1
        now = store_bytes(path)
        # Every operation reported done is there; at most the one that was running is there too.
        allowed = states[done:done + 2]
        assert now in allowed, f"kill {kills}: the store is not the state after op {done} or {done + 1}"
        if now != states[done]:
            landed_mid_op += 1
            start = done + 1
        else:
            start = done
        if start == before_start:
            longest = min(longest * 1.2, 0.06)
        positions.add(start)
        if start == len(ops):
            path.unlink()
            start = 0
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    print(f"\ncrash figures: kills={kills} ops={len(ops)} distinct_positions={len(positions)} "
          f"store_ahead_of_report={landed_mid_op} full_runs={completed_runs} temp_files_left={len(leftovers)} "
          f"seconds={time.monotonic() - started:.1f}")
    assert len(positions) > min(20, KILLS // 10)  # the kills were spread along the list
    # The next write sweeps every temp file a killed writer left behind.
    Queue(path, now=NOW).enqueue_text("sweep", "after the kills")
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


# --------------------------------------------------------------------------- real turnq processes


def turnq_env(path: Path) -> dict[str, str]:
    env = {**os.environ, "TURNQ_STORE": str(path)}
    env.pop("TURNQ_NOW", None)
    return env


def cli_argv(i: int) -> list[str]:
    if i % 4 == 3:
        return ["claim", "s", "--owner", "w", "--ttl", "0", "--max-batches", "2"]
    return ["enqueue", "s", "--text", f"t{i}", "--source-key", f"host:{i % 6}"]


def replayed(commands: list[int]) -> bytes:
    """The store after the given commands (by index, see cli_argv), replayed through the API."""
    clock = FixedClock(NOW)
    queue = Queue(MemoryStore(), now=clock)
    for i in commands:
        clock.set(NOW + i * 1_000)
        if i % 4 == 3:
            queue.claim("s", owner="w", ttl_ms=0, max_batches=2)
        else:
            queue.enqueue_text("s", f"t{i}", source_key=f"host:{i % 6}")
    return encode(queue.store.read())


def test_sigkill_of_turnq_commands_leaves_before_or_after(tmp_path):
    path = tmp_path / "turnq.json"
    env = turnq_env(path)
    rng = random.Random(5)
    applied: list[int] = []  # the commands whose effect is in the store
    kinds = {"finished": 0, "killed_before": 0, "killed_after": 0}
    for i in range(CLI_KILLS):
        without, with_it = replayed(applied), replayed([*applied, i])
        assert store_bytes(path) == without
        process = subprocess.Popen([*TURNQ, *cli_argv(i), "--now", str(NOW + i * 1_000), "--json"], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.random() * 0.6)
        process.send_signal(signal.SIGKILL)
        code = process.wait(30)
        assert process.stderr is not None
        err = process.stderr.read().decode()
        process.stderr.close()
        now = store_bytes(path)
        if code == 0:  # it exited 0 before the kill: its work must be there
            kinds["finished"] += 1
            assert now == with_it, err
        else:
            assert code == -signal.SIGKILL, (code, err)
            assert now in (without, with_it)
            kinds["killed_after" if now == with_it != without else "killed_before"] += 1
        if now == with_it:
            applied.append(i)
    print(f"\ncli crash figures: commands={CLI_KILLS} {kinds}")
    assert kinds["killed_before"] + kinds["killed_after"] > 0


HOLD_THE_LOCK = """
import sys, time
from turnq.store import JsonFileStore
store = JsonFileStore(sys.argv[1])
with store.transaction() as state:
    state.changed = True
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_killed_lock_holder_does_not_block_the_next_command(tmp_path):
    path = tmp_path / "turnq.json"
    env = turnq_env(path)
    assert subprocess.run(check=False, args=[*TURNQ, "enqueue", "s", "--text", "before", "--json"], env=env,
                          capture_output=True).returncode == 0
    before = path.read_bytes()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, str(path)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None
        ready, _, _ = select.select([holder.stdout], [], [], 30)
        assert ready and holder.stdout.readline() == b"held\n"
        # While it lives, the lock is really held: a writer gives up (exit 8).
        busy = subprocess.run(check=False, args=[*TURNQ, "enqueue", "s", "--text", "x", "--lock-timeout", "300ms"], env=env,
                              capture_output=True, text=True)
        assert busy.returncode == 8, busy.stderr
    finally:
        holder.kill()
        holder.wait(30)
        holder.stdout and holder.stdout.close()
    assert path.read_bytes() == before  # the holder's transaction never committed
    started = time.monotonic()
    after = subprocess.run(check=False, args=[*TURNQ, "enqueue", "s", "--text", "after", "--lock-timeout", "5s", "--json"], env=env,
                           capture_output=True, text=True, timeout=60)
    assert after.returncode == 0, after.stderr
    assert time.monotonic() - started < 4  # it did not wait out the timeout
    assert json.loads(after.stdout)["enqueue_seq"] == 2


def test_a_killed_writer_in_the_middle_of_a_transaction_leaves_the_lock_free(tmp_path):
    # The same through the API, many times: each child is killed inside its transaction
    # (after reading, before writing), and the next one gets the lock at once.
    path = tmp_path / "turnq.json"
    queue = Queue(path, now=NOW, lock_timeout_ms=2_000)
    queue.enqueue_text("s", "seed")
    before = path.read_bytes()
    for _ in range(20):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                with JsonFileStore(path).transaction() as state:
                    state.changed = True
                    os.write(write_end, b"!")
                    time.sleep(60)
            finally:
                os._exit(0)
        os.close(write_end)
        assert os.read(read_end, 1) == b"!"
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(read_end)
        started = time.monotonic()
        with JsonFileStore(path, lock_timeout_ms=2_000).transaction() as state:
            assert len(state.all_batches()) == 1
        assert time.monotonic() - started < 1
    assert path.read_bytes() == before
    assert Queue(path, now=NOW).enqueue_text("s", "after").batch.enqueue_seq == 2
