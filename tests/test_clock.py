"""turnq.clock: times, durations and the fixed clock (spec/cli.md, *Everywhere*)."""

from __future__ import annotations

import time

import pytest
from conftest import NOW

from turnq.clock import (
    FixedClock,
    SystemClock,
    format_duration,
    format_time,
    parse_duration,
    parse_time,
)
from turnq.errors import InvalidInput

U64_MAX = 2**64 - 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1767225600000", NOW),
        ("0", 0),
        (" 1767225600000 ", NOW),
        (str(U64_MAX), U64_MAX),
        ("2026-01-01T00:00:00Z", NOW),
        ("2026-01-01T01:00:00+01:00", NOW),
        ("2025-12-31T19:00:00-05:00", NOW),
        ("2026-01-01T00:30:00+00:30", NOW),
        ("2026-01-01T00:00:00+00:00", NOW),
        ("2026-01-01T00:00:00.123Z", NOW + 123),
        ("2026-01-01T00:00:00.5Z", NOW + 500),
        ("2026-01-01T00:00:00.123456Z", NOW + 123),  # sub-millisecond digits truncated
        ("2026-01-01T00:00:01.999999+00:00", NOW + 1999),
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T00:00:00.001Z", 1),
        ("2026-01-01t00:00:00z", NOW),  # RFC 3339 allows lower-case t and z
        ("2026-01-01 00:00:00Z", NOW),  # RFC 3339 allows a space for T
    ],
)
def test_parse_time(text: str, expected: int) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "yesterday",
        "now",
        "2026-13-01T00:00:00Z",
        "2026-01-01T25:00:00Z",
        "2026-01-01T00:00:00",  # naive: no zone
        "2026-01-01",  # a date has no zone either
        "-1",
        "-1767225600000",
        "1969-12-31T23:59:59Z",  # before the epoch
        "1.5",
        "1e3",
        "0x10",
        str(2**64),  # past u64
        "²",  # a digit to str.isdigit, not to int()
        "١٢٣",  # Arabic-Indic digits are not epoch milliseconds
        "1767225600000ms",
    ],
)
def test_parse_time_refusals(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_time(text)


def test_parse_time_refusal_messages_explain() -> None:
    with pytest.raises(InvalidInput, match="needs a zone"):
        parse_time("2026-01-01T00:00:00")
    with pytest.raises(InvalidInput, match="epoch milliseconds or an RFC 3339 time"):
        parse_time("yesterday")
    with pytest.raises(InvalidInput, match="from 0 to"):
        parse_time("1969-12-31T23:59:59Z")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1500", 1500),
        ("0", 0),
        ("250ms", 250),
        ("30s", 30_000),
        ("15m", 900_000),
        ("2h", 7_200_000),
        ("1d", 86_400_000),
        ("0s", 0),
        (" 10 s ", 10_000),
        ("007s", 7_000),
        ("1h30m", 5_400_000),  # compound, largest unit first
        ("2h 5m", 7_500_000),  # as format_duration prints it
        ("1d2h3m4s5ms", 93_784_005),
        ("1.5s", 1_500),
        ("0.25m", 15_000),
    ],
)
def test_parse_duration(text: str, expected: int) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    ["-1", "-5s", "abc", "", " ", "10x", "s", "ms", "30S", "15M", "2 h m", "1e3", "+5s",
     "5s5", "99999999999999999999d", "30m1h", "1m1m", "1.5", "1.0005s", "1.s", "5 5s", "9" * 5000 + "s"],
)
def test_parse_duration_refusals(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_duration(text)


def test_parse_duration_refusals_say_why() -> None:
    with pytest.raises(InvalidInput, match="largest first"):
        parse_duration("30m1h")
    with pytest.raises(InvalidInput, match="whole number of milliseconds"):
        parse_duration("1.0005s")


def test_epoch_seconds_slip_is_spotted() -> None:
    from turnq.clock import seconds_slip

    hint = seconds_slip("1764500000")
    assert hint is not None and "epoch seconds" in hint and "1764500000000" in hint and "2025-11-30" in hint
    assert seconds_slip("1764500000000") is None  # real milliseconds
    assert seconds_slip("1500") is None and seconds_slip("2026-01-01T00:00:00Z") is None


def test_parse_duration_too_large_names_it() -> None:
    assert parse_duration(f"{U64_MAX}ms") == U64_MAX
    with pytest.raises(InvalidInput, match="too large"):
        parse_duration(f"{U64_MAX // 1000 + 1}s")


def test_fixed_clock_set_and_advance() -> None:
    clock = FixedClock(NOW)
    assert clock.fixed is True
    assert clock.now_ms() == NOW
    assert clock.now_ms() == NOW  # only moves when told to
    assert clock.advance(1500) == NOW + 1500
    assert clock.now_ms() == NOW + 1500
    assert clock.advance("30s") == NOW + 31_500
    clock.set(5)
    assert clock.now_ms() == 5
    clock.set("2026-01-01T00:00:00Z")
    assert clock.now_ms() == NOW
    clock.set("1767225600001")
    assert clock.now_ms() == NOW + 1


@pytest.mark.parametrize("bad", [-1, 2**64, True, 1.5, "x"])
def test_fixed_clock_refuses_bad_times(bad: object) -> None:
    with pytest.raises(InvalidInput):
        FixedClock(bad)  # type: ignore[arg-type]
    clock = FixedClock(NOW)
    with pytest.raises(InvalidInput):
        clock.set(bad)  # type: ignore[arg-type]
    assert clock.now_ms() == NOW  # a refused set leaves the clock as it was


def test_fixed_clock_advance_refusals_leave_it_unchanged() -> None:
    clock = FixedClock(U64_MAX - 1)
    with pytest.raises(InvalidInput):
        clock.advance(2)
    with pytest.raises(InvalidInput):
        clock.advance("soon")
    assert clock.now_ms() == U64_MAX - 1
    assert clock.advance(1) == U64_MAX


def test_system_clock_reads_real_time() -> None:
    clock = SystemClock()
    assert clock.fixed is False
    before = time.time_ns() // 1_000_000
    now = clock.now_ms()
    after = time.time_ns() // 1_000_000
    assert before <= now <= after


@pytest.mark.parametrize(
    ("ms", "expected"),
    [
        (NOW, "2026-01-01T00:00:00.000Z"),
        (NOW + 123, "2026-01-01T00:00:00.123Z"),
        (NOW + 59_999, "2026-01-01T00:00:59.999Z"),
        (0, "1970-01-01T00:00:00.000Z"),
        (1, "1970-01-01T00:00:00.001Z"),
        (253402300799999, "9999-12-31T23:59:59.999Z"),
    ],
)
def test_format_time(ms: int, expected: str) -> None:
    assert format_time(ms) == expected
    assert parse_time(expected) == ms  # and it reads back


def test_format_time_out_of_range_falls_back_to_ms() -> None:
    assert format_time(U64_MAX) == f"{U64_MAX} ms"


@pytest.mark.parametrize(
    ("ms", "expected"),
    [
        (0, "0ms"),
        (950, "950ms"),
        (999, "999ms"),
        (1000, "1s"),
        (12_000, "12s"),
        (12_999, "12s"),
        (60_000, "1m"),
        (870_000, "14m 30s"),
        (3_600_000, "1h"),
        (7_500_000, "2h 5m"),
        (86_400_000, "1d"),
        (3 * 86_400_000 + 4 * 3_600_000, "3d 4h"),
        (86_400_000 + 59_000, "1d"),  # the minor unit is whole hours
    ],
)
def test_format_duration(ms: int, expected: str) -> None:
    assert format_duration(ms) == expected
