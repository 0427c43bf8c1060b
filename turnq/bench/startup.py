"""Start-up: `turnq enqueue/claim/complete … --json` as subprocesses, beside the floors."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .stats import clock, median_ms, ms, ratio

#: The floor the framework sets: a Typer app with one command that prints `null`.
MINIMAL_TYPER_APP = '''\
import typer

app = typer.Typer()


@app.command()
def main() -> None:
    print("null")


if __name__ == "__main__":
    app()
'''


def _run(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = clock()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, check=False)
    elapsed = clock() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    return elapsed, done.stdout


def bench_startup(folder: str, *, runs: int, report: Callable[[str], None]) -> dict[str, Any]:
    python = sys.executable
    app_file = Path(folder) / "minimal_typer_app.py"
    app_file.write_text(MINIMAL_TYPER_APP, encoding="utf-8")
    store = Path(folder) / "startup.json"
    # As installed: the modules' bytecode cached (the warm-up round writes it when missing).
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("TURNQ_") and key != "PYTHONDONTWRITEBYTECODE"}
    env["TURNQ_STORE"] = str(store)
    turnq = [python, "-m", "turnq"]
    samples: dict[str, list[float]] = {name: [] for name in ("python -c pass", "minimal Typer app", "enqueue",
                                                            "claim", "complete")}
    # One warm-up round (fills the OS cache, writes .pyc files), then `runs` rounds, each
    # running every command once, so that the machine's load falls on all of them alike.
    for round_number in range(runs + 1):
        times = {
            "python -c pass": _run([python, "-c", "pass"], env)[0],
            "minimal Typer app": _run([python, str(app_file)], env)[0],
        }
        times["enqueue"], _ = _run(turnq + ["enqueue", "bench", "--text", "hello", "--slot", "exclusive", "--json"],
                                   env)
        times["claim"], claim = _run(turnq + ["claim", "bench", "--json"], env)
        times["complete"], _ = _run(turnq + ["complete", "--claim", claim.strip(), "--json"], env)
        if round_number:
            for name, value in times.items():
                samples[name].append(value)
    medians = {name: median_ms(values) for name, values in samples.items()}
    floor, typer_floor = medians["python -c pass"], medians["minimal Typer app"]
    report(f"start-up: medians of {runs} runs (subprocess wall time)")
    report(f"  {'command':34} {'median':>11} {'x python':>9} {'x Typer app':>12}")
    rows = {}
    for name, value in medians.items():
        label = name if name in ("python -c pass", "minimal Typer app") else f"turnq {name} --json"
        rows[label] = {"median_ms": round(value, 2), "vs_python": round(ratio(value, floor), 2),
                       "vs_typer_app": round(ratio(value, typer_floor), 2)}
        report(f"  {label:34} {ms(value):>11} {ratio(value, floor):8.2f}x {ratio(value, typer_floor):11.2f}x")
    report()
    return {"runs": runs, "commands": rows}
