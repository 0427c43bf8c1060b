"""What a session's tombstones cost an operation (issue 16): one cycle (enqueue with a new
source key → claim → complete) in a session with no tombstones and in one with N (3,000;
fewer with --quick), in one store, on every backend, measured in the same run, interleaved.

Goal: on SQLite and PostgreSQL the cycle costs at most 1.3× the cycle without tombstones;
the JSON file (which rewrites every tombstone on every write, as it rewrites every batch)
at most 2× its own floor: 3 bare `json` load + dump of the file (one per operation) plus
the cycle without tombstones.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .backends import NOW_MS, location, postgres_problem
from .stats import clock, median_ms, timed

GOALS = {"json": 2.0, "sqlite": 1.3, "postgresql": 1.3}


def _tombstoned_state(count: int) -> Any:
    """A state whose session "full" holds `count` tombstones (each batch settled with a
    source key), built by the engine in memory: filling through a store would take minutes."""
    from turnq import engine
    from turnq.api import make_draft
    from turnq.state import QueueState

    state = QueueState()
    payload = [{"type": "turn_input", "input": {"items": [{"type": "text", "text": "settled work, kept as a tombstone"}]}}]
    for n in range(count):
        draft = make_draft("full", payload, source_key=f"host:event:{n}")
        batch = engine.enqueue(state, draft, NOW_MS).batch
        claim = engine.claim(state, "full", "bench", "idle", 1000, NOW_MS, batch_ids=[batch.batch_id])
        assert claim is not None
        engine.complete(state, engine.ClaimRef.of(claim), NOW_MS)
    return state


def _fill(url: str, state: Any) -> None:
    from turnq.store import open_store

    store = open_store(url, log_enabled=False)
    with store.transaction(None) as target:
        target.next_seq, target.tombstones = state.next_seq, state.tombstones
        target.changed = True
    close = getattr(store, "close", None)
    if close is not None:
        close()


def _cycle(queue: Any, session: str, n: int) -> float:
    def run() -> None:
        queue.enqueue_text(session, f"work {n}", source_key=f"bench:{session}:{n}")
        claim = queue.claim(session, owner="bench")
        assert claim is not None
        queue.complete(claim)

    return timed(run)


def _bare_json_ms(path: Path, runs: int) -> float:
    """One bare `json` load + dump of the file, as an operation of the JSON store needs at least."""
    text = path.read_text(encoding="utf-8")
    samples = []
    for _ in range(runs):
        start = clock()
        json.dumps(json.loads(text), ensure_ascii=False)
        samples.append(clock() - start)
    return median_ms(samples)


def measure(kind: str, url: str, empty_url: str, *, cycles: int) -> dict[str, float]:
    """Median ms of the cycle without tombstones and with them. The databases run both in one
    store (a session with none beside the full one); the JSON file, whose every operation pays
    for the whole file, runs the first in a store of its own with no tombstones at all."""
    from turnq import Queue

    full_queue = Queue(url, now=NOW_MS + 1000, log_enabled=False)
    empty_queue = Queue(empty_url, now=NOW_MS + 1000, log_enabled=False) if kind == "json" else full_queue
    empty, full = [], []
    try:
        _cycle(empty_queue, "empty", -1)  # warm up: connection, modules, caches
        _cycle(full_queue, "full", -1)
        for n in range(cycles):  # interleaved, so the machine's load falls on both alike
            empty.append(_cycle(empty_queue, "empty", n))
            full.append(_cycle(full_queue, "full", n))
    finally:
        for queue in {id(full_queue): full_queue, id(empty_queue): empty_queue}.values():
            close = getattr(queue.store, "close", None)
            if close is not None:
                close()
    result = {"empty_ms": round(median_ms(empty), 2), "full_ms": round(median_ms(full), 2)}
    if kind == "json":
        bare = _bare_json_ms(Path(url), max(5, cycles))
        floor = 3 * bare + result["empty_ms"]
        result.update(bare_load_dump_ms=round(bare, 2), floor_ms=round(floor, 2),
                      ratio=round(result["full_ms"] / floor, 2))
    else:
        result["ratio"] = round(result["full_ms"] / result["empty_ms"], 2)
    result["goal"] = GOALS[kind]
    return result


def bench_tombstones(folder: str, *, count: int, cycles: int, report: Callable[[str], None]) -> dict[str, Any]:
    kinds = ["json", "sqlite"]
    problem = postgres_problem()
    if problem is None:
        kinds.append("postgresql")
    state = _tombstoned_state(count)
    results: dict[str, Any] = {"tombstones": count, "cycles": cycles}
    report(f"tombstones: one cycle (enqueue with a new source key -> claim -> complete), median ms of {cycles},")
    report(f"  in a session with no tombstones and in one with {count:,} beside it (JSON: an empty store, and the "
           "ratio is x the file's floor = 3 bare load+dump + the empty cycle)")
    report(f"  {'store':12} {'no tombstones':>14} {f'{count:,} tombstones':>18} {'ratio':>8} {'goal':>6}")
    for kind in kinds:
        with location(kind, Path(folder), f"tombstones-{count}") as url, \
                location(kind, Path(folder), "tombstones-none") as empty_url:
            _fill(url, state)
            figures = measure(kind, url, empty_url, cycles=cycles)
        results[kind] = figures
        if kind == "json":
            ratio = f"{figures['ratio']:.2f}x floor ({figures['floor_ms']:.1f} ms)"
        else:
            ratio = f"{figures['ratio']:.2f}x"
        report(f"  {kind:12} {figures['empty_ms']:>11.2f} ms {figures['full_ms']:>15.2f} ms {ratio:>8} "
               f"{'<= ' + str(figures['goal']) + 'x':>6}")
    if problem is not None:
        report(f"  postgresql   skipped: {problem}")
        results["postgresql"] = None
    report("")
    return results
