"""turnq.wirejson: JSON text as serde_json reads and writes it."""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from turnq.wirejson import JsonObject, dumps, loads, ryu_float

# Known outputs of serde_json (ryu) for f64 values.
RYU_TABLE = [
    (0.2, "0.2"),
    (1.0, "1.0"),
    (1e-5, "0.00001"),
    (1e-6, "1e-6"),
    (1e-7, "1e-7"),
    (1e16, "1e16"),
    (1e15, "1000000000000000.0"),
    (1.5e300, "1.5e300"),
    (-0.0, "-0.0"),
    (0.0, "0.0"),
    (123456.0, "123456.0"),
    (1.234e33, "1.234e33"),
    (5e-324, "5e-324"),
    (0.1 + 0.2, "0.30000000000000004"),
    (-1.5, "-1.5"),
    (100.0, "100.0"),
    (0.001234, "0.001234"),
    (1.23e-5, "0.0000123"),
    (1.23e-6, "1.23e-6"),
    (12.34, "12.34"),
    (1e21, "1e21"),
    (1.2345678901234568e17, "1.2345678901234568e17"),
    (9007199254740992.0, "9007199254740992.0"),
    (1.7976931348623157e308, "1.7976931348623157e308"),
    (2.2250738585072014e-308, "2.2250738585072014e-308"),
    (-2.5e-10, "-2.5e-10"),
    (float(2**64), "1.8446744073709552e19"),
]


@pytest.mark.parametrize(("value", "expected"), RYU_TABLE, ids=[text for _, text in RYU_TABLE])
def test_ryu_float_table(value: float, expected: str) -> None:
    assert ryu_float(value) == expected


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_ryu_float_refuses_non_finite(value: float) -> None:
    with pytest.raises(ValueError):
        ryu_float(value)


_SERDE_FLOAT = re.compile(r"^-?(?:\d+\.\d+|\d(?:\.\d+)?e-?[1-9]\d*)$")


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_ryu_float_round_trips(value: float) -> None:
    text = ryu_float(value)
    back = float(text)
    assert back == value
    assert math.copysign(1.0, back) == math.copysign(1.0, value)
    assert _SERDE_FLOAT.match(text), text


@given(st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: x != 0))
def test_ryu_float_shortest_digits_and_notation(value: float) -> None:
    text = ryu_float(value)
    shortest = Decimal(repr(value))  # Python's repr is the shortest round-tripping form too
    written = Decimal(text)
    assert written == shortest
    # Notation as ryu chooses it: plain decimals for 1e-5 <= |x| < 1e16, else scientific.
    point = shortest.adjusted() + 1
    assert ("e" in text) == (not -5 < point <= 16)
    if "e" in text:
        mantissa = text.split("e")[0].lstrip("-")
        assert not mantissa.endswith("0")  # 1e16 and 1.5e300, never 1.0e16 or 1.50e300


def test_dumps_compact_and_ordered() -> None:
    assert dumps({"b": 1, "a": [True, False, None, "x"], "c": {}}) == '{"b":1,"a":[true,false,null,"x"],"c":{}}'


def test_dumps_non_ascii_unescaped() -> None:
    assert dumps({"k": "é日本😀\u2028\x7f"}) == '{"k":"é日本😀\u2028\x7f"}'


@pytest.mark.parametrize("with_float", [False, True], ids=["plain", "float-path"])
def test_dumps_control_characters_as_serde_json(with_float: bool) -> None:
    value: list = ["\x00\x01\x1b\x1f\x0b", '"\\/', "\n\r\t\b\f"]
    if with_float:
        value.append(1.0)
    out = dumps(value)
    expected = '["\\u0000\\u0001\\u001b\\u001f\\u000b","\\"\\\\/","\\n\\r\\t\\b\\f"'
    assert out == expected + (",1.0]" if with_float else "]")


def test_dumps_floats_formatted_by_ryu_at_any_depth() -> None:
    assert dumps({"a": [1e-7, {"b": 1e16}], "c": 2, "d": -0.0, "e": 1.0}) == (
        '{"a":[1e-7,{"b":1e16}],"c":2,"d":-0.0,"e":1.0}'
    )


def test_dumps_large_ints_stay_ints() -> None:
    assert dumps([2**64 - 1, -(2**63)]) == "[18446744073709551615,-9223372036854775808]"


@pytest.mark.parametrize("bad", [math.nan, [math.inf], {"x": -math.inf}])
def test_dumps_refuses_non_finite(bad: object) -> None:
    with pytest.raises(ValueError):
        dumps(bad)


def test_loads_records_duplicates_last_wins() -> None:
    value = loads('{"a": 1, "b": {"c": 1, "c": 2, "d": 0}, "a": 3, "a": 4}')
    assert isinstance(value, JsonObject)
    assert value == {"a": 4, "b": {"c": 2, "d": 0}}
    assert value.duplicates == ("a", "a")
    assert value["b"].duplicates == ("c",)


def test_loads_without_duplicates_records_none() -> None:
    value = loads('{"a": 1, "b": [{"c": 2}]}')
    assert value.duplicates == ()
    assert value["b"][0].duplicates == ()
    assert list(value) == ["a", "b"]


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", '{"x": -Infinity}'])
def test_loads_refuses_nan_and_infinity(text: str) -> None:
    with pytest.raises(ValueError, match="not valid JSON"):
        loads(text)


@pytest.mark.parametrize("text", ["{", "", "[1,]", "{'a': 1}", "01"])
def test_loads_refuses_invalid_json(text: str) -> None:
    with pytest.raises(ValueError):
        loads(text)


def test_loads_bytes() -> None:
    assert loads('{"k": "é"}'.encode()) == {"k": "é"}
    with pytest.raises(ValueError):
        loads(b'{"k": "\xff"}')


def test_loads_negative_zero_integer_is_a_float_as_in_serde_json() -> None:
    value = loads("[-0, 0, -1, -0.0]")
    assert type(value[0]) is float and math.copysign(1.0, value[0]) == -1.0
    assert type(value[1]) is int and type(value[2]) is int
    assert dumps(value) == "[-0.0,0,-1,-0.0]"


def test_loads_refuses_lone_surrogates_accepts_pairs() -> None:
    with pytest.raises(ValueError, match="surrogate"):
        loads('["\\ud800"]')
    with pytest.raises(ValueError, match="surrogate"):
        loads('{"\\uDC00": 1}')
    with pytest.raises(ValueError, match="surrogate"):
        loads(b'{"a": "x\\udbff"}')
    assert loads('"\\ud83d\\ude00"') == "😀"
    # An escaped backslash followed by "ud800" is no surrogate.
    assert loads('"\\\\ud800"') == "\\ud800"


def test_round_trip_text_stable() -> None:
    text = '{"b":[1.5,"é\\u0001",null],"a":{"x":1e-7}}'
    assert dumps(loads(text)) == text
    assert json.loads(dumps(loads(text))) == json.loads(text)

