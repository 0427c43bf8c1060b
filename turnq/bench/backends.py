"""Each storage backend measured the same way: `python -m turnq.bench.backends [--quick] [--json]`.

1. cycle: enqueue → claim → complete through the Python API on an empty store, cycles/s;
2. cost at size: one operation on a store already holding N batches (10k and 100k; 1k and
   10k with --quick). Layout: the N batches are spread over 100 sessions (N/100 each); the
   measured enqueue/claim/complete run in a session of their own ("bench", one batch at a
   time), and "claim big" claims in one of the 100 sessions (N/100 batches: a database
   backend loads that session's rows, so its cost follows the session's size, not the store's);
3. scaling (`scale.py`): 1 and 8 processes, one session each, turnq beside a plain queue on the
   same database (PostgreSQL: a SKIP LOCKED queue on the same server; SQLite: plain sqlite3, WAL),
   interleaved in one run, with the ratios;
4. PostgreSQL with 8 worker processes at once: each runs the cycle on 4 shared sessions
   (so they contend for the same batches); cycles/s over all, and a check that no batch was
   claimed twice and every batch was claimed once.

PostgreSQL is `TURNQ_BENCH_POSTGRES` (default postgresql://postgres@127.0.0.1:5432/test), in a
schema of its own that is dropped afterwards; it is left out, saying why, when no server answers.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .stats import clock, median_ms, timed

NOW_MS = 1_767_225_600_000
SESSIONS = 100
POSTGRES = os.environ.get("TURNQ_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


# ----------------------------------------------------------------- store locations


def postgres_problem() -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'turnq[postgres]')"
    try:
        with psycopg.connect(POSTGRES, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as err:
        return f"no PostgreSQL server at {POSTGRES}: {str(err).strip().splitlines()[0]}"
    return None


@contextmanager
def location(kind: str, folder: Path, name: str) -> Iterator[str]:
    """A fresh, empty store of `kind`; a PostgreSQL schema is dropped at the end."""
    if kind == "json":
        yield str(folder / f"{name}.json")
    elif kind == "sqlite":
        yield f"sqlite:///{(folder / f'{name}.db').absolute()}"
    else:
        import psycopg

        schema = f"turnq_bench_{uuid.uuid4().hex[:10]}"
        separator = "&" if "?" in POSTGRES else "?"
        try:
            yield f"{POSTGRES}{separator}schema={schema}"
        finally:
            with psycopg.connect(POSTGRES, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _close(queue: Any) -> None:
    close = getattr(queue.store, "close", None)
    if close is not None:
        close()


# ----------------------------------------------------------------- 1. the cycle


def cycles_per_s(url: str, cycles: int) -> float:
    from turnq import Queue

    queue = Queue(url)
    try:
        start = clock()
        for n in range(cycles):
            queue.enqueue_text("cycle", f"work {n}")
            claim = queue.claim("cycle", owner="bench")
            assert claim is not None
            queue.complete(claim)
        return cycles / (clock() - start)
    finally:
        _close(queue)


def bench_cycle(kinds: list[str], folder: Path, *, cycles: int, runs: int,
                report: Callable[[str], None]) -> dict[str, float]:
    rates: dict[str, list[float]] = {kind: [] for kind in kinds}
    for run in range(runs):  # alternate the backends, so the machine's load falls on all alike
        for kind in kinds:
            with location(kind, folder, f"cycle-{run}") as url:
                rates[kind].append(cycles_per_s(url, cycles))
    report(f"cycle: enqueue -> claim -> complete, {cycles} cycles on an empty store (median of {runs} runs)")
    result = {kind: round(statistics.median(values), 1) for kind, values in rates.items()}
    for kind, rate in result.items():
        report(f"  {kind:12} {rate:9.1f} cycles/s")
    report("")
    return result


# ----------------------------------------------------------------- 2. cost at size


def _filled_state(batches: int) -> Any:
    """The state of a store holding `batches` one-item batches over SESSIONS sessions."""
    from turnq import Queue, make_draft
    from turnq.store import MemoryStore

    store = MemoryStore(log_enabled=False)
    drafts = [make_draft(f"session-{n % SESSIONS:03}", [{"type": "turn_input", "input": {
        "items": [{"type": "text", "text": f"work item {n}: please look at this"}]}}]) for n in range(batches)]
    Queue(store, now=NOW_MS).enqueue_many(drafts)
    return store.read()


def _fill(url: str, state: Any) -> None:
    """Write `state` into the empty store at `url` in one transaction."""
    from turnq.store import open_store

    store = open_store(url, log_enabled=False)
    with store.transaction(None) as target:
        target.next_seq, target.sessions, target.tombstones = state.next_seq, state.sessions, state.tombstones
        target.changed = True
    close = getattr(store, "close", None)
    if close is not None:
        close()


def op_costs(url: str, *, runs: int) -> dict[str, float]:
    """Median ms of enqueue, claim and complete in a small session, and a claim in a big one."""
    from turnq import Queue

    queue = Queue(url, now=NOW_MS + 1000)
    samples: dict[str, list[float]] = {"enqueue": [], "claim": [], "complete": [], "claim big": []}
    try:
        for round_number in range(runs + 1):  # the first round warms up
            times = _one_round(queue)
            if round_number:
                for name, value in times.items():
                    samples[name].append(value)
    finally:
        _close(queue)
    return {name: round(median_ms(values), 2) for name, values in samples.items()}


def _one_round(queue: Any) -> dict[str, float]:
    got: dict[str, Any] = {}
    times = {
        "enqueue": timed(lambda: queue.enqueue_text("bench", "hello")),
        "claim": timed(lambda: got.update(claim=queue.claim("bench"))),
        "complete": timed(lambda: queue.complete(got["claim"])),
        "claim big": timed(lambda: got.update(big=queue.claim("session-000", max_batches=1))),
    }
    queue.abandon(got["big"])  # the big session keeps its size
    return times


def bench_sizes(kinds: list[str], folder: Path, sizes: list[int], *, runs: int,
                report: Callable[[str], None]) -> dict[str, dict[str, dict[str, float]]]:
    report(f"cost at size: one operation (median ms of {runs}; of 3 for json at 100k) on a store of N batches "
           f"over {SESSIONS} sessions (N/100 each);")
    report("  enqueue/claim/complete in a session of their own; 'claim big' in a session of N/100 batches")
    report(f"  {'backend':12} {'batches':>8} {'enqueue':>9} {'claim':>9} {'complete':>9} {'claim big':>10}")
    results: dict[str, dict[str, dict[str, float]]] = {kind: {} for kind in kinds}
    for size in sizes:
        state = _filled_state(size)
        for kind in kinds:
            with location(kind, folder, f"size-{size}") as url:
                _fill(url, state)
                # The JSON store rewrites its whole file per operation: fewer rounds at 100k.
                costs = op_costs(url, runs=3 if kind == "json" and size >= 100_000 else runs)
            results[kind][str(size)] = costs
            report(f"  {kind:12} {size:>8} {costs['enqueue']:>9.2f} {costs['claim']:>9.2f} "
                   f"{costs['complete']:>9.2f} {costs['claim big']:>10.2f}")
    report("")
    return results


# ----------------------------------------------------------------- 3. concurrent workers


def _worker(url: str, worker: int, sessions: int, cycles: int, ready: Any, go: Any, out: Any) -> None:
    from turnq import Queue

    queue = Queue(url, lock_timeout_ms=60_000)
    queue.list("shared-0")  # connected, modules imported: only the cycles are timed
    ready.put(worker)
    go.wait()
    claimed = []
    for n in range(cycles):
        session = f"shared-{(worker + n) % sessions}"
        queue.enqueue_text(session, f"w{worker} n{n}")
        claim = queue.claim(session, owner=f"worker-{worker}", max_batches=1)
        if claim is not None:
            claimed.extend(b.batch_id for b in claim.batches)
            queue.complete(claim)
    out.put(claimed)


def bench_workers(folder: Path, *, workers: int, cycles: int, sessions: int = 4,
                  report: Callable[[str], None]) -> dict[str, Any]:
    from turnq import Queue

    with location("postgresql", folder, "workers") as url:
        Queue(url).list("shared-0")  # nothing: but the schema is made once, before the race
        Queue(url).enqueue_text("warm", "schema")
        context = multiprocessing.get_context("spawn")
        out, ready, go = context.Queue(), context.Queue(), context.Event()
        procs = [context.Process(target=_worker, args=(url, w, sessions, cycles, ready, go, out))
                 for w in range(workers)]
        for proc in procs:
            proc.start()
        for _ in procs:
            ready.get(timeout=300)
        start = clock()
        go.set()
        claimed = [batch for _ in procs for batch in out.get(timeout=600)]
        elapsed = clock() - start
        for proc in procs:
            proc.join()
        queue = Queue(url)
        leftover = [b.batch_id for s in range(sessions) for b in queue.list(f"shared-{s}")]
        _close(queue)
    total = workers * cycles
    twice = len(claimed) - len(set(claimed))
    every_once = twice == 0 and len(claimed) + len(leftover) == total
    rate = total / elapsed
    report(f"postgresql, {workers} worker processes at once, each {cycles} cycles over {sessions} shared sessions")
    report(f"  {rate:9.1f} cycles/s in all ({elapsed:.1f} s); claimed {len(claimed)} batches, "
           f"{twice} claimed twice, {len(leftover)} left for a later claim: "
           f"{'OK' if every_once else 'FAILED'}")
    report("")
    return {"workers": workers, "cycles_per_worker": cycles, "sessions": sessions,
            "cycles_per_s": round(rate, 1), "claimed": len(claimed), "claimed_twice": twice,
            "left": len(leftover), "ok": every_once}


# ----------------------------------------------------------------- main


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m turnq.bench.backends", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and few runs (a smoke test)")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON document at the end")
    parser.add_argument("--only-scale", action="store_true", help="only the scaling table (turnq beside plain queues)")
    args = parser.parse_args(argv)
    quick = args.quick
    report = (lambda line="": sys.stderr.write(line + "\n")) if args.json else print
    problem = postgres_problem()
    kinds = ["json", "sqlite"] + ([] if problem else ["postgresql"])
    if problem:
        report(f"postgresql left out: {problem}\n")
    results: dict[str, Any] = {"quick": quick, "cpus": os.cpu_count(), "load_before": _load()}
    report(f"{os.cpu_count()} CPUs, load average {results['load_before']} (other work on the machine skews "
           "every figure)\n")
    with tempfile.TemporaryDirectory(prefix="turnq-bench-") as tmp:
        folder = Path(tmp)
        from .scale import bench_scale

        results["scale"] = bench_scale([k for k in kinds if k != "json"], location, folder, runs=2 if quick else 3,
                                       seconds=1.0 if quick else 4.0, report=report)
        if args.only_scale:
            results["load_after"] = _load()
            report(f"load average after: {results['load_after']}")
            if args.json:
                print(json.dumps(results))
            return 0
        results["cycle_per_s"] = bench_cycle(kinds, folder, cycles=50 if quick else 300, runs=1 if quick else 3,
                                             report=report)
        results["cost_ms"] = bench_sizes(kinds, folder, [1_000, 10_000] if quick else [10_000, 100_000],
                                         runs=3 if quick else 7, report=report)
        if not problem:
            results["postgresql_workers"] = bench_workers(folder, workers=8, cycles=20 if quick else 150,
                                                          report=report)
    results["load_after"] = _load()
    report(f"load average after: {results['load_after']}")
    if args.json:
        print(json.dumps(results))
    workers = results.get("postgresql_workers")
    return 1 if workers is not None and not workers["ok"] else 0


if __name__ == "__main__":
    sys.exit(main())
