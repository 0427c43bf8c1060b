"""`turnq work` beside the README's shell loop, and the wake-up latency of `claim --wait`.

1. drain: claims/s of `turnq work SESSION --max-batches 1 --idle-exit -- true` draining N
   batches (500; --quick 20), beside the shell loop `turnq claim … --json > f && turnq complete
   --claim @f` (one batch a claim too) on the same JSON store, in the same run. The loop pays
   two interpreter start-ups a claim, so it drains a sample (30; --quick 3) and its rate is
   claims over wall time, start-ups included, as the worker's is.
2. wake-up: `turnq claim s --wait 60s --json` is started on an empty session and given time to
   settle; then a batch is enqueued (through the API) and the time from the enqueue's return to
   the claim's JSON on the claimer's (unbuffered) stdout is measured, median per backend; the
   time to the claimer's exit is shown beside it, and the change waiter's own wake-up (in a
   thread of the benchmark: the primitive without a process's claim and output).
"""

from __future__ import annotations

import os
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .backends import location, postgres_problem
from .stats import clock

#: How long a waiting claimer is given to start and find nothing before the enqueue (without
#: /proc; with it, until its CPU time stops growing: started up, and waiting).
_SETTLE_S = 3.0


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


def wake_latency_ms(store: str, session: str) -> tuple[float, float]:
    """(ms from the enqueue's return to the claim's JSON on the waiter's stdout, ms to its exit).
    The waiter's stdout is unbuffered, so the first is the wake-up itself; the second adds the
    interpreter's shutdown."""
    from turnq import Queue

    waiter = subprocess.Popen([*_turnq(), "claim", session, "--wait", "60s", "--json"],
                              env={**_env(store), "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    assert waiter.stdout is not None
    try:
        _settle(waiter.pid)
        Queue(store).enqueue_text(session, "wake up")
        enqueued = clock()
        ready, _, _ = select.select([waiter.stdout], [], [], 60)
        printed = clock()
        out, err = waiter.communicate(timeout=60)
        exited = clock()
    finally:
        if waiter.poll() is None:
            waiter.kill()
    if waiter.returncode != 0 or not ready:
        raise RuntimeError(f"claim --wait failed ({waiter.returncode}): {err.decode(errors='replace')}")
    return (printed - enqueued) * 1000, (exited - enqueued) * 1000


def _settle(pid: int) -> None:
    """Return once process `pid` is idle: its CPU time unchanged over 0.3 s (it is waiting),
    at least 0.5 s after the start; where /proc is missing, after _SETTLE_S."""
    stat = Path(f"/proc/{pid}/stat")
    if not stat.exists():
        time.sleep(_SETTLE_S)
        return
    time.sleep(0.5)
    last, steady, deadline = None, 0, time.monotonic() + 30
    while steady < 3 and time.monotonic() < deadline:
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            return
        used = int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
        steady = steady + 1 if used == last else 0
        last = used
        time.sleep(0.1)


def notice_ms(store: str, session: str) -> float:
    """ms from an enqueue's return to a change waiter (in another thread) seeing it: the
    primitive alone, without a claimer process's claim and output."""
    from turnq import Queue

    seen: list[float] = []
    with Queue(store).store.change_waiter(session) as waiter:
        def wait() -> None:
            while not waiter.wait(10):
                pass
            seen.append(clock())

        thread = threading.Thread(target=wait)
        thread.start()
        time.sleep(0.3)  # into its backed-off polling (or LISTEN)
        Queue(store).enqueue_text(session, "wake up")
        enqueued = clock()
        thread.join(timeout=60)
    return max(0.0, seen[0] - enqueued) * 1000


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
                               "work_vs_loop": round(work / loop, 1), "wake_ms": {}, "wake_to_exit_ms": {},
                               "notice_ms": {}}
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
            noticed = statistics.median(notice_ms(store, f"notice-{n}") for n in range(max(runs, 5)))
        printed = statistics.median(sample[0] for sample in samples)
        exited = statistics.median(sample[1] for sample in samples)
        figures["wake_ms"][kind] = round(printed, 1)
        figures["wake_to_exit_ms"][kind] = round(exited, 1)
        figures["notice_ms"][kind] = round(noticed, 2)
        report(f"  {f'{kind}: enqueue -> claim --wait prints the claim':52} {printed:9.1f} ms "
               f"(process exit: {exited:.0f} ms; the waiter alone: {noticed:.1f} ms)")
    report()
    return figures
