"""`python -m turnq.bench [--quick] [--json] [--only startup,store,cycle]`: turnq's benchmark.

Prints, as medians over repeated runs measured in the same run as their baselines:

1. start-up: wall time of `turnq enqueue/claim/complete … --json` as subprocesses,
   beside `python -c pass` and a minimal Typer app (one command printing `null`);
2. store: per-operation time of enqueue / claim / complete through the Python API on
   stores of 100, 1,000, 10,000 and 100,000 batches, beside a bare `json` load + dump
   of the same file, and the peak memory (tracemalloc) of one operation against the
   file's size;
3. cycle: enqueue → claim → complete through the library on a small store, in
   cycles/s, beside a plain `sqlite3` queue doing put → get → ack with a commit each;
4. tombstones: that cycle (with a new source key) in a session with no tombstones and in
   one with 3,000, on every backend (JSON, SQLite, PostgreSQL when a server answers), in
   one store and one run (turnq/bench/tombstones.py).
5. worker: claims/s of `turnq work SESSION -- true` draining 500 batches beside the shell
   loop `turnq claim && turnq complete` on the same store, and the wake-up latency of
   `claim --wait` after an enqueue, per backend (`turnq.bench.worker`).

`--quick` (what CI runs) uses fewer runs, the two smaller stores and 500 tombstones; `--json` prints
the figures as one JSON document instead of the table. `--backends` also runs
`turnq.bench.backends` (the store backends' benchmark) when it is there.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import Any

from .cycle import bench_cycle
from .startup import bench_startup
from .store import bench_store
from .tombstones import bench_tombstones
from .worker import bench_worker

PARTS = ("startup", "store", "cycle", "tombstones", "worker")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m turnq.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few runs, small stores (for CI; a few seconds)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON document")
    parser.add_argument("--only", default=",".join(PARTS),
                        help="comma-separated parts to run: startup, store, cycle, tombstones, worker (default: all)")
    parser.add_argument("--tombstones", type=int, default=None,
                        help="tombstones in the full session (default 3000; --quick: 500)")
    parser.add_argument("--sizes", default=None, help="store sizes in batches, e.g. 100,1000 (default: "
                        "100,1000,10000,100000; --quick: 100,1000)")
    parser.add_argument("--runs", type=int, default=None,
                        help="repetitions per figure (default: 11 start-up, 7 store, 5 cycle; --quick: 2)")
    parser.add_argument("--backends", action="store_true", help="also run turnq.bench.backends, if present")
    args = parser.parse_args(argv)
    parts = {part.strip() for part in args.only.split(",") if part.strip()}
    unknown = parts - set(PARTS)
    if unknown:
        parser.error(f"--only: unknown part(s): {', '.join(sorted(unknown))}")

    def runs(default: int) -> int:
        return args.runs or (2 if args.quick else default)

    sizes = [int(size) for size in args.sizes.split(",")] if args.sizes else (
        [100, 1000] if args.quick else [100, 1000, 10_000, 100_000])
    out = _Printer(json_mode=args.json)
    figures: dict[str, Any] = {"python": sys.version.split()[0], "cpus": os.cpu_count(), "quick": args.quick}
    with tempfile.TemporaryDirectory(prefix="turnq-bench-") as folder:
        if "startup" in parts:
            figures["startup"] = bench_startup(folder, runs=runs(11), report=out)
        if "store" in parts:
            figures["store"] = bench_store(folder, sizes, runs=runs(7), report=out)
        if "cycle" in parts:
            figures["cycle"] = bench_cycle(folder, cycles=20 if args.quick else 300,
                                           runs=runs(5), report=out)
        if "tombstones" in parts:
            count = args.tombstones if args.tombstones is not None else (500 if args.quick else 3000)
            figures["tombstones"] = bench_tombstones(folder, count=count, cycles=3 if args.quick else 15,
                                                     report=out)
        if "worker" in parts:
            figures["worker"] = bench_worker(folder, batches=20 if args.quick else 500,
                                             loop_batches=3 if args.quick else 30, runs=runs(3), report=out)
    if args.backends:
        figures["backends"] = _run_backends(args.quick, out)
    if args.json:
        sys.stdout.write(json.dumps(figures, indent=2) + "\n")
    return 0


class _Printer:
    """Table lines on stdout, or (with --json) progress on stderr only."""

    def __init__(self, *, json_mode: bool) -> None:
        self.json_mode = json_mode

    def __call__(self, line: str = "") -> None:
        stream = sys.stderr if self.json_mode else sys.stdout
        stream.write(line + "\n")
        stream.flush()


def _run_backends(quick: bool, out: _Printer) -> Any:
    try:
        from . import (
            backends,  # written by the store backends' work (issue 6); optional here
        )
    except ImportError:
        out("backends: turnq.bench.backends is not there; skipped")
        return None
    run = getattr(backends, "main", None) or getattr(backends, "run", None)
    if run is None:
        out("backends: turnq.bench.backends has no main(); skipped")
        return None
    import contextlib

    # Its own table goes where ours goes: stderr with --json, so stdout keeps one JSON document.
    target = sys.stderr if out.json_mode else sys.stdout
    try:
        with contextlib.redirect_stdout(target):
            return run(["--quick"] if quick else [])
    except SystemExit as done:  # a main() that exits
        return done.code


if __name__ == "__main__":
    sys.exit(main())
