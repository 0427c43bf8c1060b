"""Options shared by the commands, and the parsing of option values.

Every parse error names its option (`--ttl: invalid duration 'x' …`) and is an
`InvalidInput`, so it exits 2 with one line like any other bad input.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .. import limits, models
from ..api import Queue
from ..clock import U64_MAX, parse_duration, parse_time, seconds_slip
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

#: `--strict` where only one of its two refusals can happen.
ClaimStrictOpt = Annotated[bool, typer.Option(
    "--strict", help="Refuse unknown JSON fields in --claim (exit 2).")]
ReplayStrictOpt = Annotated[bool, typer.Option(
    "--strict", help="Refuse a replay of the same key with a different payload (exit 6).")]

DEFAULT_STORE = "turnq.json"
DEFAULT_LOCK_TIMEOUT = "10s"

#: The queues this command opened: their stores' warnings are shown when it ends (cli.app).
OPENED: list[Queue] = []


def open_queue(store: str, now: str | None, lock_timeout: str = DEFAULT_LOCK_TIMEOUT, *,
               option: str = "--store") -> Queue:
    """The Queue over the store that `option` names (a malformed store URL is that option's error)."""
    now_ms = None if now is None or now == "" else option_time(now, "--now")
    lock_timeout_ms = option_duration(lock_timeout, "--lock-timeout")
    logging = log_options()
    try:
        queue = Queue(store or DEFAULT_STORE, now=now_ms, lock_timeout_ms=lock_timeout_ms, **logging)
    except InvalidInput as err:
        raise _named(option, err) from None
    OPENED.append(queue)
    if type(queue.store).__name__ == "PostgresStore":
        _quiet_driver_log()
    return queue


def _quiet_driver_log() -> None:
    """psycopg logs a warning when it cannot roll back a connection that dropped ("error
    ignored in rollback …"); with no logging set up, Python prints it to stderr, a second
    line beside turnq's own error about the same drop. The command's error says it all."""
    import logging

    driver = logging.getLogger("psycopg")
    if not driver.handlers:
        driver.addHandler(logging.NullHandler())
        driver.propagate = False

def show_store_warnings() -> None:
    """One `turnq: warning:` line per warning the opened stores kept (e.g. a lost log entry)."""
    while OPENED:
        for message in OPENED.pop(0).store.take_warnings():
            output.warn(message)


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
        if not (limit.isascii() and limit.isdigit()) or len(limit.lstrip("0")) > 20:  # int() refuses 4,300+ digits
            raise InvalidInput(f"TURNQ_LOG_MAX_ENTRIES: expected a whole number of entries, got {limit[:40]!r}")
        options["log_max_entries"] = int(limit)
    return options


def _named(option: str, err: InvalidInput) -> InvalidInput:
    message = err.message
    return InvalidInput(message if message.startswith(option) else f"{option}: {message}")


def option_time(value: str, option: str) -> int:
    """A time option; a value that is far more plausible as epoch seconds is refused with a hint."""
    slip = seconds_slip(value)
    if slip is not None:
        raise InvalidInput(f"{option}: {slip}")
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
        limit = limits.max_input_bytes()
        text = sys.stdin.read(limit + 1)  # stdin may be /dev/zero
        if len(text) > limit:
            raise InvalidInput(f"{option}: stdin holds more than the limit of {limit} bytes "
                               f"(raise it with {limits.INPUT_BYTES_ENV})")
        return text
    if value.startswith("@"):
        path = Path(value[1:])
        try:  # a regular file of bounded size: /dev/zero or a FIFO must not hang the command
            return limits.read_regular_file(path, f"{option}: ", limit=limits.max_input_bytes(),
                                            env=limits.INPUT_BYTES_ENV).decode("utf-8")
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
