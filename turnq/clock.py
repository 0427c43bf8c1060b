"""Clocks and the parsing of times and durations.

Every operation reads the clock once (`now_ms()`) and uses that one value
throughout, so a `FixedClock` makes a whole command sequence reproducible.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone
from typing import Protocol

from .errors import InvalidInput

U64_MAX = 2**64 - 1


class Clock(Protocol):
    #: True when the time was fixed by the caller; random defaults are then fixed too.
    fixed: bool

    def now_ms(self) -> int: ...


class SystemClock:
    fixed = False

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class FixedClock:
    """A clock that only moves when told to (`--now`, `TURNQ_NOW`, tests)."""

    fixed = True

    def __init__(self, now_ms: int) -> None:
        self._now = _check_ms(now_ms)

    def now_ms(self) -> int:
        return self._now

    def set(self, now_ms: int | str) -> None:
        self._now = parse_time(now_ms) if isinstance(now_ms, str) else _check_ms(now_ms)

    def advance(self, duration_ms: int | str) -> int:
        step = parse_duration(duration_ms) if isinstance(duration_ms, str) else duration_ms
        self._now = _check_ms(self._now + step)
        return self._now


def _check_ms(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= U64_MAX:
        raise InvalidInput(f"time must be epoch milliseconds from 0 to {U64_MAX}, got {value!r}")
    return value


def parse_time(text: str) -> int:
    """Epoch milliseconds (`1767225600000`) or an RFC 3339 time (`2026-01-01T00:00:00Z`)."""
    text = text.strip()
    if text.isascii() and text.isdigit():
        return _check_ms(_whole(text, "time"))
    try:
        moment = datetime.fromisoformat(text.upper())  # RFC 3339 allows a lower-case `t` and `z`
    except ValueError:
        raise InvalidInput(
            f"invalid time {text!r}: give epoch milliseconds or an RFC 3339 time such as 2026-01-01T00:00:00Z"
        ) from None
    if moment.tzinfo is None:
        raise InvalidInput(f"invalid time {text!r}: an RFC 3339 time needs a zone (Z or +HH:MM)")
    delta = moment - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return _check_ms(delta // _MS)


_MS = timedelta(milliseconds=1)
_TERM = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*")
_UNIT_MS = {None: 1, "ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_UNIT_ORDER = ("d", "h", "m", "s", "ms")


def _whole(digits: str, what: str) -> int:
    """int() of ASCII digits, refusing more than a u64 holds before int() would refuse 4,300+ digits
    with a ValueError of its own."""
    if len(digits.lstrip("0")) > 20:
        raise InvalidInput(f"{what} {digits[:24]}… ({len(digits)} digits) is too large: the limit is {U64_MAX}")
    return int(digits)


def parse_duration(text: str) -> int:
    """Milliseconds (`1500`), or numbers with units, largest first: `250ms`, `30s`, `1.5s`, `1h30m`,
    `2h 5m` (as `format_duration` prints them). The total must be whole milliseconds."""
    terms, pos = [], 0
    while pos < len(text) or not terms:
        match = _TERM.match(text, pos)
        if not match or match.end() == pos:
            raise InvalidInput(f"invalid duration {text!r}: give milliseconds or numbers with units "
                               "(250ms, 1.5s, 15m, 1h30m)")
        terms.append((match.group(1), match.group(2)))
        pos = match.end()
    units = [unit for _, unit in terms]
    ranks = [_UNIT_ORDER.index(unit) for unit in units if unit is not None]
    if (len(terms) > 1 and None in units) or ranks != sorted(set(ranks)):
        raise InvalidInput(f"invalid duration {text!r}: give each unit once, largest first (1h30m, 2m30s)")
    if any(len(number) > 40 for number, _ in terms):  # beyond u64 anyway; int() refuses 4300+ digits
        raise InvalidInput(f"duration {text!r} is too large")
    from fractions import Fraction

    total = sum(Fraction(number) * _UNIT_MS[unit] for number, unit in terms)
    if total.denominator != 1:
        raise InvalidInput(f"invalid duration {text!r}: it is not a whole number of milliseconds")
    if total > U64_MAX:
        raise InvalidInput(f"duration {text!r} is too large")
    return int(total)


#: Epoch values that read as 1970-01-12..1973-03-03 in milliseconds but 2001..5138 in seconds.
_SECONDS_SLIP = range(10**9, 10**11)


def seconds_slip(text: str) -> str | None:
    """A hint when an epoch-milliseconds value is far more plausible as epoch seconds, else None."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 12 or int(text) not in _SECONDS_SLIP:
        return None
    ms = int(text) * 1000
    return (f"{text} is epoch milliseconds {format_time(int(text))}, which looks like epoch seconds; "
            f"for {format_time(ms)} give {ms} (milliseconds) or an RFC 3339 time")


def format_time(ms: int) -> str:
    """RFC 3339 in UTC with milliseconds, for people."""
    try:
        moment = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    except (OverflowError, ValueError, OSError):
        return f"{ms} ms"
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def format_duration(ms: int) -> str:
    """A short human duration: 950ms, 12s, 14m 30s, 2h 5m, 3d 4h."""
    if ms < 1000:
        return f"{ms}ms"
    seconds = ms // 1000
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if seconds >= size:
            major, rest = divmod(seconds, size)
            minor = rest // sub_size
            return f"{major}{unit} {minor}{sub}" if minor else f"{major}{unit}"
    return f"{seconds}s"
