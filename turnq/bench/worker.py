"""`turnq work` beside the README's shell loop, and the wake-up latency of `claim --wait`.

1. drain: claims/s of `turnq work SESSION --max-batches 1 --idle-exit -- true` draining N
   batches (500; --quick 20), beside the shell loop `turnq claim … --json > f && turnq complete
   --claim @f` (one batch a claim too) on the same JSON store, in the same run. The loop pays
   two interpreter start-ups a claim, so it drains a sample (30; --quick 3) and its rate is
   claims over wall time, start-ups included, as the worker's is.
2. wake-up: `turnq claim s --wait 60s --json` is started on an empty session and given time to
   settle; then a batch is enqueued (through the API) and the time from the enqueue's return to
   the claim's output is measured (the claimer's exit included), median per backend.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .backends import location, postgres_problem
from .stats import clock

#: How long a waiting claimer is given to start and find nothing before the enqueue.
_SETTLE_S = 1.5


def _turnq() -> list[str]:
    """The installed console script (as users run it), else `python -m turnq`."""
    beside = Path(sys.executable).parent / "turnq"
    found = str(beside) if beside.exists() else shutil.which("turnq")
    return [found] if found else [sys.executable, "-m", "turnq"]


def _env(store: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TURNQ_")}
    env["TURNQ_STORE"] = store
    return env


def _fill(store: str, batches: int) -> None:
    from turnq import Queue, make_draft

    drafts = [make_draft("s", [{"type": "turn_input", "input": {"items": [{"type": "text", "text": f"job {n}"}]}}])
              for n in range(batches)]
    Queue(store).enqueue_many(drafts)


def worker_rate(store: str, batches: int) -> float:
    _fill(store, batches)
    start = clock()
    subprocess.run([*_turnq(), "work", "s", "--max-batches", "1", "--idle-exit", "--", "true"], env=_env(store),
                   check=True, capture_output=True, timeout=3600)
    elapsed = clock() - start
    from turnq import Queue

    assert Queue(store).list("s") == [], "turnq work left batches behind"
    return batches / elapsed


def loop_rate(store: str, batches: int) -> float:
    _fill(store, batches)
    turnq = " ".join(f"'{part}'" for part in _turnq())
    script = (f"for i in $(seq {batches}); do {turnq} claim s --max-batches 1 --json > \"$CLAIM\" "
              f"&& {turnq} complete --claim @\"$CLAIM\" > /dev/null || exit 1; done")
    with tempfile.TemporaryDirectory() as folder:
        env = {**_env(store), "CLAIM": str(Path(folder) / "claim.json")}
        start = clock()
        subprocess.run(["bash", "-c", script], env=env, check=True, timeout=3600)
        elapsed = clock() - start
    return batches / elapsed


def wake_latency_ms(store: str, session: str) -> float:
    from turnq import Queue

    waiter = subprocess.Popen([*_turnq(), "claim", session, "--wait", "60s", "--json"], env=_env(store),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(_SETTLE_S)
        Queue(store).enqueue_text(session, "wake up")
        enqueued = clock()
        out, err = waiter.communicate(timeout=60)
        latency = clock() - enqueued
    finally:
        if waiter.poll() is None:
            waiter.kill()
    if waiter.returncode != 0:
        raise RuntimeError(f"claim --wait failed ({waiter.returncode}): {err.decode(errors='replace')}")
    return latency * 1000


def bench_worker(folder: str, *, batches: int, loop_batches: int, runs: int,
                 report: Callable[[str], None]) -> dict[str, Any]:
    base = Path(folder)
    worker_rates, loop_rates = [], []
    for n in range(runs):  # alternate, so that the machine's load falls on both alike
        worker_rates.append(worker_rate(str(base / f"work-{n}.json"), batches))
        loop_rates.append(loop_rate(str(base / f"loop-{n}.json"), loop_batches))
    work, loop = statistics.median(worker_rates), statistics.median(loop_rates)
    report(f"worker: one batch a claim, JSON file store (median of {runs} runs)")
    report(f"  {f'turnq work -- true, draining {batches} batches':52} {work:9.1f} claims/s")
    report(f"  {f'shell loop claim && complete ({loop_batches} batches)':52} {loop:9.1f} claims/s")
    report(f"  turnq work / shell loop: {work / loop:.1f}x")
    figures: dict[str, Any] = {"batches": batches, "loop_batches": loop_batches, "runs": runs,
                               "work_claims_per_s": round(work, 1), "loop_claims_per_s": round(loop, 2),
                               "work_vs_loop": round(work / loop, 1), "wake_ms": {}}
    from turnq import Queue

    report(f"  claim --wait: wake-up after an enqueue from another process (median of {runs})")
    for kind in ("json", "sqlite", "postgresql"):
        problem = postgres_problem() if kind == "postgresql" else None
        if problem:
            report(f"  {kind:52} skipped: {problem}")
            continue
        with location(kind, base, f"wake-{kind}") as store:
            Queue(store).enqueue_text("other", "a store with something in it")
            samples = [wake_latency_ms(store, f"wake-{n}") for n in range(runs)]
        figures["wake_ms"][kind] = round(statistics.median(samples), 1)
        report(f"  {f'{kind}: enqueue -> claim --wait returns':52} {statistics.median(samples):9.1f} ms")
    report()
    return figures
