"""Multi-process stress on one store (issue 3, item 1).

Producers and workers run in separate processes (the Python API, forked), plus one worker that
drives real `turnq` CLI subprocesses; all use the real clock, which is the store's clock. Each
process appends what it did to its own JSON Lines log; at the end the test checks, from the logs
and the store:

- every enqueued batch was completed exactly once, by the last claim that took it;
- no batch was ever held by two live leases at once (per batch, in fencing order, each claim
  starts after the previous one ended: it ran out, or was abandoned);
- every completion with a token known to be stale was refused (LeaseLost, exit 4);
- producers that replayed one source key got one batch, and the store-wide sequence was used
  exactly once per distinct batch;
- the store loads, and holds no live batch.

`TURNQ_STRESS=heavy` runs a bigger fleet for longer.

The store is a parameter (`STORE_LOCATIONS`): each entry turns the test's tmp_path into a store
location that `turnq.Queue(...)` and `turnq --store ...` accept.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import random
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from backends import new_postgres_url, sqlite_url

from turnq import LeaseLost, Queue

HEAVY = os.environ.get("TURNQ_STRESS") == "heavy"

#: Store locations the stress runs on: each makes one from the test's tmp_path, as a string or as
#: a context manager that yields one (and cleans up after). Backends that take a URL
#: (sqlite:///…, postgresql://…) are added here, e.g. with tests/backends.py's fresh_store_url.
STORE_LOCATIONS: list[Any] = [
    pytest.param(lambda tmp: str(tmp / "turnq.json"), id="json"),
    pytest.param(lambda tmp: sqlite_url(tmp), id="sqlite"),
    pytest.param(lambda tmp: new_postgres_url(), id="postgresql"),
]


@pytest.fixture(params=STORE_LOCATIONS)
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    made = request.param(tmp_path)
    if isinstance(made, str):
        yield made
    else:
        with made as url:
            yield url

SESSIONS = ["s0", "s1"]
CLI_SESSION = "cli"
PRODUCERS = 8 if HEAVY else 4
PER_PRODUCER = 250 if HEAVY else 30
API_WORKERS = 8 if HEAVY else 4
CLI_CYCLES = 12 if HEAVY else 3
LOCK_TIMEOUT_MS = 60_000
TURNQ = [sys.executable, "-m", "turnq"]

_FORK = multiprocessing.get_context("fork")


# --------------------------------------------------------------------------- the processes


class Log:
    def __init__(self, path: Path) -> None:
        self.handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the process's life

    def __call__(self, **record: Any) -> None:
        self.handle.write(json.dumps(record) + "\n")
        self.handle.flush()


def _run(target: Callable[..., None], log_path: str, *args: Any) -> None:
    """A child's body: any exception is logged (and fails the test), never lost."""
    log = Log(Path(log_path))
    try:
        target(log, *args)
    except BaseException:
        log(op="crash", error=traceback.format_exc())
        raise


def producer(log: Log, location: str, index: int, seed: int) -> None:
    rng = random.Random(seed)
    queue = Queue(location, lock_timeout_ms=LOCK_TIMEOUT_MS)
    for j in range(PER_PRODUCER):
        session = SESSIONS[j % len(SESSIONS)]
        if j % 3 == 0:
            key = f"host:shared-{j}"  # every producer enqueues this one: one batch
            text = f"shared {j}"
        elif j % 3 == 1:
            key = f"host:p{index}-{j}"
            text = f"own {index}/{j}"
        else:
            key, text = None, f"keyless {index}/{j}"
        result = queue.enqueue_text(
            session, text, source_key=key,
            delivery_policy=rng.choice(["after_current_turn_commit", "earliest_safe_boundary"]),
            slot_policy=rng.choice(["join", "join", "exclusive"]),
            merge_key=rng.choice(["never", {"group": "g"}]))
        log(op="enqueue", session=session, key=key, batch_id=result.batch.batch_id,
            seq=result.batch.enqueue_seq, outcome=result.outcome)
        time.sleep(rng.random() * 0.004)


def _claim_record(log: Log, worker: str, claim: Any, mode: str) -> None:
    log(op="claim", worker=worker, mode=mode, session=claim.session_id, claim_id=claim.claim_id,
        lease_token=claim.lease_token, fencing=claim.fencing_token, claimed_at=claim.claimed_at_epoch_ms,
        expires_at=claim.expires_at_epoch_ms, batch_ids=list(claim.batch_ids))


def _complete(log: Log, queue: Queue, claim: Any, *, stale: bool) -> bool:
    try:
        queue.complete(claim)
    except LeaseLost as err:
        log(op="complete", claim_id=claim.claim_id, lease_token=claim.lease_token, ok=False, stale=stale,
            exit_status=int(err.exit_status), batch_ids=list(claim.batch_ids))
        return False
    log(op="complete", claim_id=claim.claim_id, lease_token=claim.lease_token, ok=True, stale=stale,
        exit_status=0, batch_ids=list(claim.batch_ids))
    return True


def _store_empty(queue: Queue) -> bool:
    return all(row.ready + row.delayed + row.held + row.lease_expired == 0 for row in queue.overview().sessions)


def worker(log: Log, location: str, index: int, seed: int, producers_done: Any) -> None:
    rng = random.Random(seed)
    queue = Queue(location, lock_timeout_ms=LOCK_TIMEOUT_MS)
    name = f"w{index}"
    idle_rounds = 0
    while True:
        session = rng.choice(SESSIONS)
        mode = rng.choices(["complete", "abandon", "expire", "stale", "renew"], [5, 2, 2, 2, 2])[0]
        ttl = 40 if mode in ("expire", "stale") else 5_000
        claim = queue.claim(session, owner=name, ttl_ms=ttl, max_batches=rng.randint(1, 4),
                            boundary=rng.choice(["idle", "idle", "active_turn_checkpoint"]))
        if claim is None:
            if producers_done.is_set() and _store_empty(queue):
                log(op="exit", worker=name)
                return
            idle_rounds += 1
            time.sleep(0.003)
            continue
        _claim_record(log, name, claim, mode)
        if mode == "complete":
            _complete(log, queue, claim, stale=False)
        elif mode == "abandon":
            log(op="abandon_start", claim_id=claim.claim_id, lease_token=claim.lease_token,
                at=time.time_ns() // 1_000_000)
            released = queue.abandon(claim)
            log(op="abandon", claim_id=claim.claim_id, lease_token=claim.lease_token, released=released)
        elif mode == "expire":
            time.sleep(0.08)  # the lease runs out; someone else may take the work meanwhile
            _complete(log, queue, claim, stale=False)
        elif mode == "renew":
            try:
                renewed = queue.renew(claim, ttl_ms=5_000)
            except LeaseLost:  # pragma: no cover - a 5 s lease cannot be lost this fast
                log(op="renew", claim_id=claim.claim_id, lease_token=claim.lease_token, ok=False)
            else:
                log(op="renew", claim_id=claim.claim_id, lease_token=claim.lease_token, ok=True,
                    expires_at=renewed.expires_at_epoch_ms)
            _complete(log, queue, claim, stale=False)
        else:  # stale: let the lease run out, take the same batches again, then complete the old claim
            time.sleep(0.06)
            again = queue.claim(session, owner=name + "-again", ttl_ms=5_000, batch_ids=list(claim.batch_ids),
                                boundary="idle")
            if again is None:  # someone else took (some of) the work: the old claim is stale or not
                _complete(log, queue, claim, stale=False)
                continue
            _claim_record(log, name + "-again", again, "again")
            _complete(log, queue, claim, stale=True)  # must be refused
            _complete(log, queue, again, stale=False)


def cli_worker(log: Log, location: str, cycles: int, producers_done: Any) -> None:
    """Stale completions through the real command: claim with a 1 ms lease, claim the same batches
    again, then `turnq complete --claim @old.json` must exit 4."""
    folder = Path(log.handle.name).parent
    env = {**os.environ, "TURNQ_STORE": location, "TURNQ_LOCK_TIMEOUT": "60s"}
    env.pop("TURNQ_NOW", None)

    def turnq(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(check=False, args=[*TURNQ, *args], env=env, capture_output=True, text=True, timeout=120)

    # Its own session, so that the API workers do not take all the work first; its enqueues are
    # real `turnq enqueue` processes writing while the others write.
    session = CLI_SESSION
    done = 0
    while done < cycles:
        for n in range(2):
            made = turnq("enqueue", session, "--text", f"cli {done}/{n}", "--delivery", "earliest_safe_boundary",
                         "--json")
            assert made.returncode == 0, made.stderr
            batch = json.loads(made.stdout)
            log(op="enqueue", session=session, key=None, batch_id=batch["batch_id"], seq=batch["enqueue_seq"],
                outcome="enqueued")
        first = turnq("claim", session, "--owner", "cli", "--ttl", "1", "--max-batches", "2", "--json")
        assert first.returncode == 0, first.stderr
        old = json.loads(first.stdout)
        _log_cli_claim(log, old, "cli-stale")
        ids = [b["batch_id"] for b in old["batches"]]
        time.sleep(0.01)
        second = turnq("claim", session, "--owner", "cli-again", "--ttl", "10s",
                       *[a for i in ids for a in ("--batch", i)], "--json")
        old_file = folder / f"old-{done}.json"
        old_file.write_text(first.stdout)
        if second.returncode != 0:  # an API worker took the work first
            log(op="cli_note", returncode=second.returncode, stderr=second.stderr)
            result = turnq("complete", "--claim", f"@{old_file}", "--json")
            log(op="complete", claim_id=old["claim_id"], lease_token=old["lease_token"], ok=result.returncode == 0,
                stale=False, exit_status=result.returncode, batch_ids=ids, cli=True)
            continue
        new = json.loads(second.stdout)
        _log_cli_claim(log, new, "cli-again")
        stale = turnq("complete", "--claim", f"@{old_file}", "--json")
        log(op="complete", claim_id=old["claim_id"], lease_token=old["lease_token"], ok=stale.returncode == 0,
            stale=True, exit_status=stale.returncode, batch_ids=ids, cli=True, stderr=stale.stderr)
        fresh = turnq("complete", "--claim", second.stdout, "--json")
        log(op="complete", claim_id=new["claim_id"], lease_token=new["lease_token"], ok=fresh.returncode == 0,
            stale=False, exit_status=fresh.returncode, batch_ids=ids, cli=True)
        done += 1


def _log_cli_claim(log: Log, claim: dict, mode: str) -> None:
    log(op="claim", worker=claim["owner_id"], mode=mode, session=claim["session_id"], claim_id=claim["claim_id"],
        lease_token=claim["lease_token"], fencing=claim["fencing_token"], claimed_at=claim["claimed_at_epoch_ms"],
        expires_at=claim["expires_at_epoch_ms"], batch_ids=[b["batch_id"] for b in claim["batches"]])


# --------------------------------------------------------------------------- the test


def read_logs(folder: Path) -> list[dict]:
    records = []
    for path in sorted(folder.glob("*.log")):
        records += [json.loads(line) for line in path.read_text().splitlines()]
    return records


def test_many_producers_and_workers_lose_nothing(tmp_path, location):
    logs = tmp_path / "logs"
    logs.mkdir()
    producers_done = _FORK.Event()
    seed = int(os.environ.get("TURNQ_STRESS_SEED", "20260101"))
    started = time.monotonic()

    workers = [_FORK.Process(target=_run, args=(worker, str(logs / f"worker{i}.log"), location, i, seed + 100 + i,
                                                producers_done)) for i in range(API_WORKERS)]
    workers.append(_FORK.Process(target=_run, args=(cli_worker, str(logs / "cli.log"), location, CLI_CYCLES,
                                                    producers_done)))
    producers = [_FORK.Process(target=_run, args=(producer, str(logs / f"producer{i}.log"), location, i, seed + i))
                 for i in range(PRODUCERS)]
    for process in workers + producers:
        process.start()
    deadline = time.monotonic() + (1200 if HEAVY else 240)
    for process in producers:
        process.join(max(1, deadline - time.monotonic()))
    producers_done.set()
    for process in workers:
        process.join(max(1, deadline - time.monotonic()))
    hung = [p for p in workers + producers if p.is_alive()]
    for process in hung:  # pragma: no cover - only on failure
        process.kill()
    records = read_logs(logs)
    crashes = [r["error"] for r in records if r["op"] == "crash"]
    assert not crashes, crashes[0]
    assert not hung, "a process did not finish"
    assert all(p.exitcode == 0 for p in workers + producers), [p.exitcode for p in workers + producers]

    figures = check_history(records)
    check_store(location, figures)
    figures["seconds"] = round(time.monotonic() - started, 1)
    figures["processes"] = len(workers) + len(producers)
    print(f"\nstress figures: {figures}")


def check_history(records: list[dict]) -> dict:
    enqueues = [r for r in records if r["op"] == "enqueue"]
    claims = [r for r in records if r["op"] == "claim"]
    completes = [r for r in records if r["op"] == "complete"]

    # Replayed source keys made one batch; distinct batches each took one sequence number.
    by_key: dict[tuple[str, str], set[str]] = {}
    seq_of: dict[str, int] = {}
    for r in enqueues:
        if r["key"] is not None:
            by_key.setdefault((r["session"], r["key"]), set()).add(r["batch_id"])
        assert seq_of.setdefault(r["batch_id"], r["seq"]) == r["seq"]
    assert all(len(ids) == 1 for ids in by_key.values()), {k: v for k, v in by_key.items() if len(v) > 1}
    replays = sum(1 for r in enqueues if r["outcome"] != "enqueued")
    assert replays >= (PRODUCERS - 1) * (PER_PRODUCER // 3)
    assert sorted(seq_of.values()) == list(range(1, len(seq_of) + 1))
    enqueued = set(seq_of)

    # Every enqueued batch completed exactly once, by the last claim of it.
    done_by: dict[str, list[dict]] = {}
    for r in completes:
        if r["ok"]:
            for batch_id in r["batch_ids"]:
                done_by.setdefault(batch_id, []).append(r)
    assert set(done_by) == enqueued, (len(done_by), len(enqueued))
    twice = {b: len(rs) for b, rs in done_by.items() if len(rs) != 1}
    assert not twice, twice

    # Every stale completion was refused with exit 4.
    stale = [r for r in completes if r["stale"]]
    assert stale, "no stale completion was attempted"
    assert any(r.get("cli") for r in stale), "no stale completion through the CLI"
    assert all(not r["ok"] and r["exit_status"] == 4 for r in stale), [r for r in stale if r["ok"]]

    # No two live leases on one batch at once.
    renewed: dict[tuple[str, str], int] = {}
    for r in records:
        if r["op"] == "renew" and r["ok"]:
            key = (r["claim_id"], r["lease_token"])
            renewed[key] = max(renewed.get(key, 0), r["expires_at"])
    abandon_start = {(r["claim_id"], r["lease_token"]): r["at"] for r in records if r["op"] == "abandon_start"}
    released = {(r["claim_id"], r["lease_token"]): set(r["released"]) for r in records if r["op"] == "abandon"}
    per_batch: dict[str, list[dict]] = {}
    for r in claims:
        for batch_id in r["batch_ids"]:
            per_batch.setdefault(batch_id, []).append(r)
    reclaimed = 0
    for batch_id, history in per_batch.items():
        assert batch_id in enqueued
        history.sort(key=lambda r: r["fencing"])
        fencings = [r["fencing"] for r in history]
        assert len(set(fencings)) == len(fencings), (batch_id, fencings)
        for before, after in itertools.pairwise(history):
            reclaimed += 1
            key = (before["claim_id"], before["lease_token"])
            lease_end = max(before["expires_at"], renewed.get(key, 0))
            released_at = abandon_start.get(key) if batch_id in released.get(key, set()) else None
            assert after["claimed_at"] >= before["claimed_at"]
            assert after["claimed_at"] >= lease_end or (released_at is not None and after["claimed_at"] >= released_at), (
                f"batch {batch_id}: claim {after['claim_id']} at {after['claimed_at']} while "
                f"{before['claim_id']} was live until {lease_end}")
        last = history[-1]
        (completion,) = done_by[batch_id]
        assert (completion["claim_id"], completion["lease_token"]) == (last["claim_id"], last["lease_token"])
    return {"enqueue_calls": len(enqueues), "batches": len(enqueued), "replays": replays, "claims": len(claims),
            "reclaims": reclaimed, "completions_ok": sum(r["ok"] for r in completes),
            "completions_refused": sum(not r["ok"] for r in completes), "stale_refused": len(stale),
            "stale_refused_cli": sum(1 for r in stale if r.get("cli")),
            "abandons": len(released), "renews": len(renewed)}


def check_store(location: str, figures: dict) -> None:
    queue = Queue(location)
    assert _store_empty(queue)
    for session in [*SESSIONS, CLI_SESSION]:
        assert queue.list(session) == []
    state = queue.store.read()  # loads and validates every record the store holds
    assert state.next_seq == figures["batches"] + 1
    assert state.all_batches() == []
    figures["tombstones"] = len(state.all_tombstones())
