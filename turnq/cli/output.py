"""Writing results: plain JSON text for `--json` (no Rich imported), notes on stderr.

Notes and warnings carry data (source keys, batch ids, file names): their control
characters are escaped, so one note stays one line and cannot drive the terminal."""

from __future__ import annotations

import sys
from typing import Any, Callable, Iterable

from .. import wirejson
from ..textsafe import escape_control


def emit_json(data: Any) -> None:
    """Exactly one JSON document on stdout."""
    sys.stdout.write(wirejson.dumps(data) + "\n")


def emit_json_lines(documents: Iterable[Any]) -> None:
    sys.stdout.write("".join(wirejson.dumps(doc) + "\n" for doc in documents))


def warn(message: str) -> None:
    sys.stderr.write(f"turnq: warning: {escape_control(message)}\n")


def note(message: str) -> None:
    sys.stderr.write(f"turnq: note: {escape_control(message)}\n")


def render_or_json(render: Callable[[], None], document: Callable[[], Any]) -> None:
    """Human output of a command that has written the store: `render()`, and should it fail
    anyway (a bug in a renderer), the result as JSON (`document()`: the batch, the whole claim
    with its lease token...) and a one-line warning. The write happened: the caller must
    learn what it was, and the command keeps the exit code of the operation."""
    try:
        render()
    except (BrokenPipeError, KeyboardInterrupt):
        raise
    except Exception as err:  # noqa: BLE001 - any renderer bug; the data must still come out
        sys.stdout.write("\n")
        emit_json(document())
        warn(f"could not show the result as a table ({type(err).__name__}); it is printed as JSON instead")
