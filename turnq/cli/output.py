"""Writing results: plain JSON text for `--json` (no Rich imported), notes on stderr."""

from __future__ import annotations

import sys
from typing import Any, Iterable

from .. import wirejson


def emit_json(data: Any) -> None:
    """Exactly one JSON document on stdout."""
    sys.stdout.write(wirejson.dumps(data) + "\n")


def emit_json_lines(documents: Iterable[Any]) -> None:
    sys.stdout.write("".join(wirejson.dumps(doc) + "\n" for doc in documents))


def warn(message: str) -> None:
    sys.stderr.write(f"turnq: warning: {message}\n")


def note(message: str) -> None:
    sys.stderr.write(f"turnq: note: {message}\n")
