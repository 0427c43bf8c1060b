"""A progress bar on stderr for long operations (`import`, `migrate`).

Only when stderr is a terminal and the output is not `--json`: a pipe or a log file
gets nothing. The core reports progress through a plain callback, `(done, total)`.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Callable, Iterator

Advance = Callable[[int, int], None]


def wanted(json_out: bool) -> bool:
    return not json_out and sys.stderr.isatty()


@contextmanager
def progress_bar(label: str, enabled: bool) -> Iterator[Advance | None]:
    """Yields the callback to report progress with (None when no bar is shown)."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=Console(stderr=True), transient=True)
    task = bar.add_task(label, total=None)

    def advance(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    with bar:
        yield advance
