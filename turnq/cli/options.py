"""Options shared by the commands, and the parsing of option values.

Every parse error names its option (`--ttl: invalid duration 'x' …`) and is an
`InvalidInput`, so it exits 2 with one line like any other bad input.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .. import models
from ..api import Queue
from ..clock import U64_MAX, parse_duration, parse_time
from ..errors import InvalidInput, NotFound
from . import output

STORE_HELP = ("Store: a JSON file path, sqlite:///PATH.db (sqlite:////ABS/PATH.db) or postgresql://USER@HOST/DB. "
              "Default: turnq.json in the current directory.")

StoreOpt = Annotated[str, typer.Option("--store", envvar="TURNQ_STORE", help=STORE_HELP, show_default=False)]
NowOpt = Annotated[Optional[str], typer.Option(
    "--now", envvar="TURNQ_NOW",
    help="Fix the clock: epoch ms or RFC 3339. Makes ids, tokens and output reproducible.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
LockTimeoutOpt = Annotated[str, typer.Option(
    "--lock-timeout", envvar="TURNQ_LOCK_TIMEOUT", help="How long to wait for the store lock (exit 8 after).")]
StrictOpt = Annotated[bool, typer.Option(
    "--strict", help="Refuse unknown JSON fields (exit 2) and replays with different payloads (exit 6).")]

DEFAULT_STORE = "turnq.json"
DEFAULT_LOCK_TIMEOUT = "10s"


def open_queue(store: str, now: str | None, lock_timeout: str = DEFAULT_LOCK_TIMEOUT, *,
               option: str = "--store") -> Queue:
    """The Queue over the store that `option` names (a malformed store URL is that option's error)."""
    now_ms = None if now is None or now == "" else option_time(now, "--now")
    lock_timeout_ms = option_duration(lock_timeout, "--lock-timeout")
    logging = log_options()
    try:
        return Queue(store or DEFAULT_STORE, now=now_ms, lock_timeout_ms=lock_timeout_ms, **logging)
    except InvalidInput as err:
        raise _named(option, err) from None


def open_existing(store: str, now: str | None, lock_timeout: str = DEFAULT_LOCK_TIMEOUT, *,
                  option: str = "--store") -> Queue:
    """`open_queue` for a command that only reads: a store that is not there is refused (exit 5),
    not read as an empty queue (a mistyped --store must not pass a check)."""
    queue = open_queue(store, now, lock_timeout, option=option)
    require_store(queue)
    return queue


def require_store(queue: Queue) -> None:
    if not queue.store.exists():
        raise NotFound(f"there is no store at {queue.store.location} (nothing was read; check --store or "
                       "TURNQ_STORE: the first `turnq enqueue` or `turnq import` creates a store)")


def log_options() -> dict[str, Any]:
    """The audit log's options from the environment: TURNQ_LOG=off turns it off,
    TURNQ_LOG_MAX_ENTRIES=N keeps the newest N entries (default 10000)."""
    import os

    options: dict[str, Any] = {}
    switch = os.environ.get("TURNQ_LOG", "").strip().lower()
    if switch in ("off", "0", "false", "no"):
        options["log_enabled"] = False
    elif switch not in ("", "on", "1", "true", "yes"):
        raise InvalidInput(f"TURNQ_LOG: expected on or off, got {switch!r}")
    limit = os.environ.get("TURNQ_LOG_MAX_ENTRIES", "").strip()
    if limit:
        if not limit.isdigit():
            raise InvalidInput(f"TURNQ_LOG_MAX_ENTRIES: expected a whole number of entries, got {limit!r}")
        options["log_max_entries"] = int(limit)
    return options


def _named(option: str, err: InvalidInput) -> InvalidInput:
    message = err.message
    return InvalidInput(message if message.startswith(option) else f"{option}: {message}")


def option_time(value: str, option: str) -> int:
    try:
        return parse_time(value)
    except InvalidInput as err:
        raise _named(option, err) from None


def option_duration(value: str, option: str) -> int:
    try:
        return parse_duration(value)
    except InvalidInput as err:
        raise _named(option, err) from None


def option_u64(value: int | None, option: str) -> None:
    """Integers on the wire are unsigned 64-bit."""
    if value is not None and not 0 <= value <= U64_MAX:
        raise InvalidInput(f"{option}: must be from 0 to {U64_MAX}, got {value}")


def read_arg_text(value: str, option: str) -> str:
    """An option's text: as given, `@FILE` for a file's content, `-` for stdin."""
    if value == "-":
        return sys.stdin.read()
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            reason = getattr(err, "strerror", None) or str(err)
            raise InvalidInput(f"{option}: cannot read {path}: {reason}") from None
    return value


def check_single_stdin(values: dict[str, list[str | None]]) -> None:
    readers = [option for option, items in values.items() for item in items if item == "-"]
    if len(readers) > 1:
        raise InvalidInput(f"{readers[1]}: only one option can read stdin ('-')")


def parse_wire(wire_type: Any, text: str, option: str, *, strict: bool) -> Any:
    """Parse JSON text as a wire shape; warn about each unknown field (refused when strict)."""
    context = models.WireContext(strict=strict)
    value = models.parse(wire_type, text, context, what=option)
    warn_dropped(option, context)
    return value


def validate_wire(wire_type: Any, data: Any, option: str, *, strict: bool) -> Any:
    context = models.WireContext(strict=strict)
    value = models.validate(wire_type, data, context, what=option)
    warn_dropped(option, context)
    return value


def warn_dropped(option: str, context: models.WireContext) -> None:
    for field in context.dropped:
        shape, _, key = field.rpartition(".")
        output.warn(f"{option}: ignored unknown field `{key}` in {shape} (--strict refuses it)")


def parse_merge(value: str) -> Any:
    """`never`, `payload_default` or `group:NAME`."""
    if value in ("never", "payload_default"):
        return value
    if value.startswith("group:"):
        name = value[len("group:"):]
        if not name:
            raise InvalidInput("--merge: `group:` needs a name, as group:NAME")
        return {"group": name}
    raise InvalidInput(f"--merge: unknown merge key {value!r}: expected never, payload_default or group:NAME")
