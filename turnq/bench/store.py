"""Store cost: one API operation on stores of N batches, beside a bare JSON load + dump."""

from __future__ import annotations

import json
import os
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .stats import median_ms, ms, ratio, timed

SESSIONS = 10
NOW_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: a fixed clock, so every run writes the same store


def build_store(path: Path, batches: int) -> None:
    """A store of `batches` one-item text batches over SESSIONS sessions, written in one transaction."""
    from turnq import Queue, make_draft

    if path.exists():
        path.unlink()
    queue = Queue(path, now=NOW_MS)
    drafts = [make_draft(f"session-{n % SESSIONS}", [{"type": "turn_input", "input": {
        "items": [{"type": "text", "text": f"work item {n}: please look at this"}]}}], slot_policy="exclusive")
        for n in range(batches)]
    queue.enqueue_many(drafts)


def bare_load_dump(path: Path) -> None:
    """What any JSON file store pays at least: read and parse the file, serialise it again."""
    data = json.loads(path.read_bytes().decode("utf-8"))
    json.dumps(data, ensure_ascii=False)


def bench_store(folder: str, sizes: list[int], *, runs: int, report: Callable[[str], None]) -> dict[str, Any]:
    report(f"store: one operation through the Python API (medians of {runs} runs), beside a bare "
           "json load + dump of the same file")
    report(f"  {'batches':>8} {'file':>9} {'load+dump':>11} {'enqueue':>11} {'claim':>11} {'complete':>11} "
           f"{'x bare (e/c/c)':>17} {'peak mem':>9}")
    results = []
    for size in sizes:
        path = Path(folder) / f"store-{size}.json"
        row = _bench_size(path, size, runs)
        results.append(row)
        ratios = "/".join(f"{row[f'{op}_vs_bare']:.2f}" for op in ("enqueue", "claim", "complete"))
        report(f"  {size:>8} {_size(row['file_bytes']):>9} {ms(row['bare_ms']):>11} {ms(row['enqueue_ms']):>11} "
               f"{ms(row['claim_ms']):>11} {ms(row['complete_ms']):>11} {ratios:>17} "
               f"{row['peak_memory_vs_file']:>8.1f}x")
        os.unlink(path)
    report("  (x bare: operation time / bare load+dump time; peak mem: tracemalloc peak of one enqueue / file size)")
    report()
    return {"runs": runs, "sizes": results}


def _bench_size(path: Path, size: int, runs: int) -> dict[str, Any]:
    from turnq import Queue

    build_store(path, size)
    file_bytes = path.stat().st_size
    queue = Queue(path, now=NOW_MS + 1000)
    samples: dict[str, list[float]] = {"bare": [], "enqueue": [], "claim": [], "complete": []}
    # A session of its own, so the store keeps its size: each round adds one batch,
    # claims it and completes it (that batch has no source key: no tombstone stays).
    for round_number in range(runs + 1):
        times = {"bare": timed(lambda: bare_load_dump(path))}
        times["enqueue"] = timed(lambda: queue.enqueue_text("bench", "hello", slot_policy="exclusive"))
        claimed: list[Any] = []
        times["claim"] = timed(lambda: claimed.append(queue.claim("bench")))  # noqa: B023 (called at once)
        times["complete"] = timed(lambda: queue.complete(claimed[0]))  # noqa: B023 (called at once)
        if round_number:  # the first round warms up
            for name, value in times.items():
                samples[name].append(value)
    med = {name: median_ms(values) for name, values in samples.items()}
    peak = _peak_memory(lambda: queue.enqueue_text("bench", "memory", slot_policy="exclusive"))
    claim = queue.claim("bench")
    assert claim is not None
    queue.complete(claim)
    return {
        "batches": size, "file_bytes": file_bytes, "bare_ms": round(med["bare"], 3),
        **{f"{op}_ms": round(med[op], 3) for op in ("enqueue", "claim", "complete")},
        **{f"{op}_vs_bare": round(ratio(med[op], med["bare"]), 2) for op in ("enqueue", "claim", "complete")},
        "peak_memory_bytes": peak, "peak_memory_vs_file": round(ratio(peak, file_bytes), 2),
    }


def _peak_memory(action: Callable[[], Any]) -> int:
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _size(count: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024  # type: ignore[assignment]
    return str(count)
