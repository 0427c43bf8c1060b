"""`turnq work SESSION -- COMMAND`: real worker processes on every backend, and `Queue.work`.

The handler is a small Python script: it reads the claim from stdin, checks it against
TURNQ_CLAIM_FILE and the TURNQ_* variables, logs `start`/`done` lines with the claim, and
sleeps or fails as its arguments say. TTLs are ~1 s so leases run out (or are renewed) fast.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from backends import STORE_KINDS, fresh_store_url

from turnq import Queue
from turnq.errors import InvalidInput
from turnq.worker import Ran

HANDLER = textwrap.dedent("""
    import json, os, sys, time
    claim_text = sys.stdin.read()
    claim = json.loads(claim_text)
    with open(os.environ["TURNQ_CLAIM_FILE"]) as f:
        assert json.load(f) == claim
    assert os.environ["TURNQ_CLAIM_ID"] == claim["claim_id"]
    assert os.environ["TURNQ_LEASE_TOKEN"] == claim["lease_token"]
    assert os.environ["TURNQ_FENCING_TOKEN"] == str(claim["fencing_token"])
    assert os.environ["TURNQ_SESSION"] == claim["session_id"]
    log, sleep_s, fail_below = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    ids = ",".join(b["batch_id"] for b in claim["batches"])
    def note(what):
        with open(log, "a") as f:
            f.write(f"{what} {claim['claim_id']} {claim['fencing_token']} {ids} {os.getpid()}\\n")
    if len(sys.argv) > 4:  # keep the claim where the test can find it (to steal the lease)
        with open(sys.argv[4], "w") as f:
            f.write(claim_text)
    note("start")
    time.sleep(sleep_s)
    note("done")
    sys.exit(1 if claim["fencing_token"] < fail_below else 0)
""")


@pytest.fixture(params=STORE_KINDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path):
    with fresh_store_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def handler(tmp_path: Path) -> Path:
    path = tmp_path / "handler.py"
    path.write_text(HANDLER)
    return path


def _env(store: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TURNQ_")}
    env["TURNQ_STORE"] = store
    return env


def _work(store: str, handler: Path, log: Path, *options: str, sleep_s: float = 0, fail_below: int = 0,
          keep_claim: Path | None = None) -> list[str]:
    command = [sys.executable, str(handler), str(log), str(sleep_s), str(fail_below)]
    if keep_claim is not None:
        command.append(str(keep_claim))
    return [sys.executable, "-m", "turnq", "work", "s", "--json", *options, "--", *command]


def _records(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def _log_lines(log: Path) -> list[list[str]]:
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


def _audit(store: str, op: str) -> list[dict]:
    entries, _ = Queue(store).history()
    return [e for e in entries if e["op"] == op and e.get("outcome") == "ok"]


@contextmanager
def _running(args: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen]:
    """`turnq work` (or any command) started with its output piped; killed if a test leaves it running."""
    worker = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield worker
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()


def _wait_for(predicate, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


# ----------------------------------------------------------------- every backend, real processes


def test_a_handler_running_3x_the_ttl_keeps_its_lease_and_completes(store_url: str, handler: Path,
                                                                     tmp_path: Path) -> None:
    batch = Queue(store_url).enqueue_text("s", "long job").batch
    log = tmp_path / "log"
    done = subprocess.run(_work(store_url, handler, log, "--ttl", "1s", "--idle-exit", sleep_s=3),
                          env=_env(store_url), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (record,) = _records(done.stdout)
    assert record["outcome"] == "completed" and record["exit_status"] == 0 and record["ok"] is True
    assert record["batch_ids"] == [batch.batch_id] and record["took_ms"] >= 3000
    assert record["renewals"] >= 5  # every TTL/3 for 3 TTLs (generous: a loaded machine renews late)
    assert [line[0] for line in _log_lines(log)] == ["start", "done"]
    assert Queue(store_url).list("s") == []
    assert [e["claim_id"] for e in _audit(store_url, "complete")] == [record["claim_id"]]
    assert "completed" in done.stderr and record["claim_id"] in done.stderr  # the line for people


def test_two_workers_never_run_the_same_batch_and_complete_each_once(store_url: str, handler: Path,
                                                                     tmp_path: Path) -> None:
    queue = Queue(store_url)
    ids = [queue.enqueue_text("s", f"job {n}").batch.batch_id for n in range(16)]
    log = tmp_path / "log"
    workers = [subprocess.Popen(_work(store_url, handler, log, "--max-batches", "1", "--idle-exit", "--wait", "1s",
                                      sleep_s=0.05), env=_env(store_url), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [w.communicate(timeout=300) for w in workers]
    assert all(w.returncode == 0 for w in workers), [err for _, err in outputs]
    records = [r for out, _ in outputs for r in _records(out)]
    assert sorted(b for r in records for b in r["batch_ids"]) == sorted(ids)
    assert all(r["outcome"] == "completed" for r in records)
    started = [line[3] for line in _log_lines(log) if line[0] == "start"]
    assert sorted(started) == sorted(ids)  # each batch ran once: never twice, never in both workers
    completed = [b for e in _audit(store_url, "complete") for b in e["batch_ids"]]
    assert sorted(completed) == sorted(ids)
    print(f"\nclaims per worker: {[len(_records(out)) for out, _ in outputs]}")


def test_sigterm_during_a_handler_abandons_the_claim(store_url: str, handler: Path, tmp_path: Path) -> None:
    batch = Queue(store_url).enqueue_text("s", "interrupted").batch
    log = tmp_path / "log"
    with _running(_work(store_url, handler, log, "--grace", "5s", sleep_s=60), _env(store_url)) as worker:
        _wait_for(lambda: log.exists() and "start" in log.read_text())
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=60)
    assert worker.returncode == 143, err
    (record,) = _records(out)
    assert record["outcome"] == "interrupted" and record["exit_status"] != 0
    assert [line[0] for line in _log_lines(log)] == ["start"]  # the handler was stopped, not left running
    again = Queue(store_url).claim("s", owner="next")  # claimable at once
    assert again is not None and again.batch_ids == [batch.batch_id]
    assert again.fencing_token == record["fencing_token"] + 1
    assert _audit(store_url, "complete") == []


def test_a_handler_whose_lease_is_lost_is_stopped_and_never_completes(store_url: str, handler: Path,
                                                                       tmp_path: Path) -> None:
    batch = Queue(store_url).enqueue_text("s", "stolen").batch
    log, kept = tmp_path / "log", tmp_path / "claim.json"
    with _running(_work(store_url, handler, log, "--ttl", "1s", "--grace", "2s", "--max-claims", "1",
                        sleep_s=30, keep_claim=kept), _env(store_url)) as worker:
        _wait_for(lambda: log.exists() and "start" in log.read_text() and kept.exists() and kept.stat().st_size)
        queue = Queue(store_url)
        from turnq.models import QueuedWorkClaim, parse

        original = parse(QueuedWorkClaim, kept.read_text())
        queue.abandon(original)  # ...as if it had expired: another worker takes it over
        thief = queue.claim("s", owner="thief", ttl_ms=600_000)
        assert thief is not None and thief.batch_ids == [batch.batch_id]
        out, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    (record,) = _records(out)
    assert record["outcome"] == "lease_lost" and record["ok"] is False
    assert record["took_ms"] < 20_000  # stopped at the next renewal, not after its 30 s
    assert [line[0] for line in _log_lines(log)] == ["start"]
    assert _audit(store_url, "complete") == []
    assert Queue(store_url).batch("s", batch.batch_id).lease.owner_id == "thief"  # the thief's claim stands


def test_a_failing_handler_gets_the_batch_again_with_a_larger_fencing_token(store_url: str, handler: Path,
                                                                           tmp_path: Path) -> None:
    batch = Queue(store_url).enqueue_text("s", "flaky").batch
    log = tmp_path / "log"
    done = subprocess.run(_work(store_url, handler, log, "--on-failure", "abandon", "--idle-exit", fail_below=2),
                          env=_env(store_url), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    first, second = _records(done.stdout)
    assert (first["outcome"], first["exit_status"], first["fencing_token"]) == ("abandoned", 1, 1)
    assert (second["outcome"], second["exit_status"], second["fencing_token"]) == ("completed", 0, 2)
    assert first["batch_ids"] == second["batch_ids"] == [batch.batch_id]
    assert "exit 1" in done.stderr and "abandoned" in done.stderr


# ----------------------------------------------------------------- the other options (JSON store)


def test_on_failure_keep_leaves_the_lease_to_run_out(tmp_path: Path, handler: Path) -> None:
    store = str(tmp_path / "q.json")
    Queue(store).enqueue_text("s", "back off")
    done = subprocess.run(_work(store, handler, tmp_path / "log", "--on-failure", "keep", "--ttl", "2s",
                                "--max-claims", "1", fail_below=9), env=_env(store), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (record,) = _records(done.stdout)
    assert record["outcome"] == "kept"
    assert Queue(store).claim("s") is None  # still held...
    time.sleep(2.1)
    assert Queue(store).claim("s") is not None  # ...until the lease runs out


def test_timeout_stops_the_command_and_abandons_the_claim(tmp_path: Path, handler: Path) -> None:
    store = str(tmp_path / "q.json")
    Queue(store).enqueue_text("s", "slow")
    log = tmp_path / "log"
    done = subprocess.run(_work(store, handler, log, "--timeout", "500ms", "--max-claims", "1", sleep_s=60),
                          env=_env(store), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (record,) = _records(done.stdout)
    assert record["outcome"] == "timed_out" and record["took_ms"] < 15_000
    assert [line[0] for line in _log_lines(log)] == ["start"]
    assert Queue(store).claim("s") is not None  # abandoned: claimable at once


def test_a_waiting_worker_takes_work_as_it_comes(tmp_path: Path, handler: Path) -> None:
    store = str(tmp_path / "q.json")
    Queue(store).enqueue_text("other", "x")
    with _running(_work(store, handler, tmp_path / "log", "--max-claims", "2", "--max-batches", "1"),
                  _env(store)) as worker:
        for n in range(2):
            time.sleep(0.5)
            Queue(store).enqueue_text("s", f"job {n}")
        out, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert [r["outcome"] for r in _records(out)] == ["completed", "completed"]


def test_sigint_while_waiting_for_work_exits_130(tmp_path: Path, handler: Path) -> None:
    store = str(tmp_path / "q.json")
    Queue(store).enqueue_text("other", "x")
    with _running(_work(store, handler, tmp_path / "log"), _env(store)) as worker:
        time.sleep(2)  # started, and waiting
        assert worker.poll() is None
        worker.send_signal(signal.SIGINT)
        signalled = time.monotonic()
        out, err = worker.communicate(timeout=30)
    assert worker.returncode == 130, err
    assert out == "" and time.monotonic() - signalled < 10


def test_usage_errors_exit_2_with_one_line(tmp_path: Path) -> None:
    env = _env(str(tmp_path / "q.json"))
    for args in (["s"], ["s", "--wait", "0", "--", "true"], ["s", "--on-failure", "retry", "--", "true"],
                 ["s", "--ttl", "0", "--", "true"]):
        done = subprocess.run([sys.executable, "-m", "turnq", "work", *args], env=env, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.startswith("turnq: error:") and "Traceback" not in done.stderr


def test_a_command_that_cannot_run_stops_the_worker_and_releases_the_claim(tmp_path: Path) -> None:
    store = str(tmp_path / "q.json")
    Queue(store).enqueue_text("s", "x")
    done = subprocess.run([sys.executable, "-m", "turnq", "work", "s", "--idle-exit", "--", "/no/such/command"],
                          env=_env(store), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "/no/such/command" in done.stderr and "Traceback" not in done.stderr
    assert Queue(store).claim("s") is not None


# ----------------------------------------------------------------- the Python API


def test_queue_work_with_a_python_handler(tmp_path: Path) -> None:
    queue = Queue(tmp_path / "q.json")
    for text in ("ok", "boom", "no"):
        queue.enqueue_text("s", text, slot_policy="exclusive")
    seen = []

    def handle(job):
        text = job.claim.batches[0].items[0].payload.input.items[0].text
        seen.append((text, job.claim.fencing_token))
        if text == "boom" and job.claim.fencing_token == 1:
            raise RuntimeError("boom")
        return text != "no" or job.claim.fencing_token > 1

    results = list(queue.work("s", handle, idle_exit=True, ttl_ms=5_000))
    assert [(r.outcome, r.claim.fencing_token) for r in results] == [
        ("completed", 1), ("abandoned", 1), ("completed", 2), ("abandoned", 1), ("completed", 2)]
    assert results[1].error == "RuntimeError: boom"
    assert queue.list("s") == []


def test_queue_work_stops_and_abandons_when_asked(tmp_path: Path) -> None:
    import threading

    queue = Queue(tmp_path / "q.json")
    queue.enqueue_text("s", "x")
    stop = threading.Event()

    def handle(job):
        stop.set()  # as a signal handler would, mid-work
        return Ran(0)

    (result,) = list(queue.work("s", handle, stop=stop))
    assert result.outcome == "interrupted"
    assert queue.claim("s").fencing_token == 2


def test_queue_work_counts_an_odd_return_value_as_a_failure(tmp_path: Path) -> None:
    queue = Queue(tmp_path / "q.json")
    queue.enqueue_text("s", "x")
    (result,) = list(queue.work("s", lambda job: "yes", idle_exit=True, max_claims=1))
    assert result.outcome == "abandoned" and "returned str" in result.error


def test_queue_work_refuses_a_wait_of_zero_without_idle_exit(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        next(Queue(tmp_path / "q.json").work("s", lambda job: None, wait_ms=0))


def test_a_claim_made_as_the_stop_comes_is_given_back_unrun(tmp_path: Path) -> None:
    import threading

    from turnq.worker import handle_claim

    queue = Queue(tmp_path / "q.json")
    queue.enqueue_text("s", "x")
    claim = queue.claim("s")
    stop = threading.Event()
    stop.set()
    ran = []
    result = handle_claim(queue, claim, ran.append, ttl_ms=1_000, on_failure="abandon", stop=stop)
    assert result.outcome == "interrupted" and ran == []
    assert queue.claim("s").fencing_token == claim.fencing_token + 1


def test_a_busy_store_is_tried_again_not_the_end_of_the_worker(tmp_path: Path, monkeypatch) -> None:
    """StoreBusy (another process held the lock past the lock timeout) on a claim and on a
    complete: the worker tries again with a back-off and the work completes once."""
    from turnq.errors import StoreBusy

    queue = Queue(tmp_path / "q.json")
    queue.enqueue_text("s", "x")
    calls = {"claim": 0, "complete": 0}
    real_claim, real_complete = queue.claim, queue.complete

    def busy_first(name, real):
        def call(*args, **kwargs):
            calls[name] += 1
            if calls[name] <= 2:
                raise StoreBusy("store q.json is busy: another worker holds the lock")
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(queue, "claim", busy_first("claim", real_claim))
    monkeypatch.setattr(queue, "complete", busy_first("complete", real_complete))
    told: list[str] = []
    results = list(queue.work("s", lambda job: None, idle_exit=True, ttl_ms=5_000, on_busy=told.append))
    assert [r.outcome for r in results] == ["completed"]
    assert calls["complete"] == 3 and calls["claim"] >= 3
    assert len(told) == 2 and all(m.endswith("busy: another worker holds the lock; trying again") for m in told)
    assert queue.list("s") == []


def test_a_store_busy_past_the_lease_ends_the_worker_with_store_busy(tmp_path: Path, monkeypatch) -> None:
    """Completing is tried only while the lease lasts: then StoreBusy is the worker's (exit 8)."""
    from turnq.errors import StoreBusy

    queue = Queue(tmp_path / "q.json")
    queue.enqueue_text("s", "x")
    tries = []

    def always_busy(*args, **kwargs):
        tries.append(time.monotonic())
        raise StoreBusy("store q.json is busy")

    monkeypatch.setattr(queue, "complete", always_busy)
    with pytest.raises(StoreBusy):
        list(queue.work("s", lambda job: None, idle_exit=True, ttl_ms=600))
    assert 2 <= len(tries) and tries[-1] - tries[0] < 1.0  # tried again, and gave up as the lease ran out


def test_a_second_sigint_cuts_the_grace_period_short(tmp_path: Path) -> None:
    """Ctrl-C once: the command gets SIGINT and the grace period; Ctrl-C again: it is killed at
    once (as a person pressing it twice means), and the claim is still abandoned, exit 130."""
    store = str(tmp_path / "q.json")
    batch = Queue(store).enqueue_text("s", "stubborn").batch
    started = tmp_path / "started"
    stubborn = tmp_path / "stubborn.py"
    stubborn.write_text(textwrap.dedent(f"""
        import signal, sys, time
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        sys.stdin.read()
        open({str(started)!r}, "w").close()
        time.sleep(120)
    """))
    with _running([sys.executable, "-m", "turnq", "work", "s", "--json", "--grace", "60s", "--",
                   sys.executable, str(stubborn)], _env(store)) as worker:
        _wait_for(started.exists)
        worker.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert worker.poll() is None  # in the grace period: the command ignores SIGINT
        worker.send_signal(signal.SIGINT)
        signalled = time.monotonic()
        out, err = worker.communicate(timeout=30)
    assert worker.returncode == 130, err
    assert time.monotonic() - signalled < 10  # not the 60 s grace
    (record,) = _records(out)
    assert record["outcome"] == "interrupted" and record["exit_status"] == -signal.SIGKILL
    again = Queue(store).claim("s", owner="next")
    assert again is not None and again.batch_ids == [batch.batch_id]
