"""`python -m turnq.bench --quick` runs (so the benchmark cannot rot) and prints every figure.

No timing is asserted: the figures depend on the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TURNQ_")}
    return subprocess.run([sys.executable, "-m", "turnq.bench", *args], capture_output=True, text=True, env=env,
                          check=False, timeout=600)


def test_quick_benchmark_prints_every_figure():
    done = _bench("--quick")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for label in ("python -c pass", "minimal Typer app", "turnq enqueue --json", "turnq claim --json",
                  "turnq complete --json", "x python", "x Typer app",
                  "load+dump", "x bare", "peak mem",
                  "cycles/s", "plain sqlite3 put -> get -> ack", "turnq / sqlite3",
                  "tombstones: one cycle", "500 tombstones", "x floor",
                  "turnq work -- true, draining 20 batches", "shell loop claim && complete",
                  "turnq work / shell loop", "json: enqueue -> claim --wait prints the claim",
                  "sqlite: enqueue -> claim --wait prints the claim", "postgresql"):
        assert label in out, f"missing {label!r} in:\n{out}"
    table = out.split("tombstones: one cycle", 1)[1]
    kinds = [line.split()[0] for line in table.splitlines()[3:] if line.strip()]
    assert kinds[:2] == ["json", "sqlite"]  # every backend in one table (postgresql: a row, or why it is skipped)
    rows = [line.split() for line in out.splitlines() if line.strip().split(" ")[0] in ("100", "1000")]
    assert [row[0] for row in rows] == ["100", "1000"]  # one row per store size


def test_json_output_has_the_figures():
    done = _bench("--json", "--only", "store,cycle", "--sizes", "20", "--runs", "1")
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    (row,) = figures["store"]["sizes"]
    assert row["batches"] == 20 and row["file_bytes"] > 0
    for key in ("bare_ms", "enqueue_ms", "claim_ms", "complete_ms", "enqueue_vs_bare", "peak_memory_vs_file"):
        assert row[key] > 0
    assert figures["cycle"]["turnq_cycles_per_s"] > 0 and figures["cycle"]["sqlite3_cycles_per_s"] > 0
    assert "startup" not in figures
    assert "cycles/s" in done.stderr  # the table went to stderr, the JSON alone to stdout


def test_worker_figures_in_json():
    done = _bench("--json", "--only", "worker", "--quick", "--runs", "1")
    assert done.returncode == 0, done.stderr
    worker = json.loads(done.stdout)["worker"]
    assert worker["batches"] == 20 and worker["work_claims_per_s"] > 0 and worker["loop_claims_per_s"] > 0
    assert worker["wake_ms"]["json"] > 0 and worker["wake_ms"]["sqlite"] > 0


def test_unknown_part_is_a_usage_error():
    done = _bench("--only", "nope")
    assert done.returncode == 2 and "nope" in done.stderr


def test_tombstone_figures_in_json():
    done = _bench("--json", "--only", "tombstones", "--tombstones", "50")
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)["tombstones"]
    assert figures["tombstones"] == 50
    for kind in ("json", "sqlite"):
        row = figures[kind]
        assert row["empty_ms"] > 0 and row["full_ms"] > 0 and row["ratio"] > 0
    assert figures["json"]["floor_ms"] > figures["json"]["empty_ms"]  # 3 bare load+dump + the empty cycle
    assert figures["sqlite"]["goal"] == 1.3 and figures["json"]["goal"] == 2.0
