"""JSON text as the reference's serde_json reads and writes it.

Reading: duplicate keys are remembered (a struct refuses them, a map keeps the
last, as serde does), and `NaN`/`Infinity` are refused (they are not JSON).
Writing: compact separators, non-ASCII left as it is, and floats formatted the
way serde_json's `ryu` does (`1e-7`, `1e16`, `0.00001`) rather than Python's
`repr` (`1e-07`, `1e+16`, `1e-05`), so wire output is the reference's text.
"""

from __future__ import annotations

import json
import math
import re
from json import encoder as _encoder
from typing import Any

from .limits import nesting_error, too_deep


class JsonObject(dict):
    """A parsed JSON object that remembers which keys it saw more than once."""

    __slots__ = ("duplicates",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        self.duplicates: tuple[str, ...] = ()
        if len(self) != len(pairs):
            seen: set[str] = set()
            self.duplicates = tuple(k for k, _ in pairs if k in seen or seen.add(k))


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_int(text: str) -> Any:
    # serde_json reads `-0` as the float -0.0 (so a u64 refuses it, and a free-form
    # value writes it back as `-0.0`); every other integer stays an integer.
    return -0.0 if text == "-0" else int(text)


# A `\uD800`-`\uDFFF` escape, or a surrogate code point given as such in a str.
_SURROGATE_STR = re.compile(r"\\u[dD][89a-fA-F]|[\ud800-\udfff]")
_SURROGATE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]")


def _refuse_lone_surrogates(value: Any) -> None:
    # serde_json refuses a lone surrogate in a string (Python's json accepts it, and
    # the text could then never be written as UTF-8).
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("lone surrogate in a string (not valid Unicode)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_lone_surrogates(key)
            _refuse_lone_surrogates(item)
    elif isinstance(value, list):
        for item in value:
            _refuse_lone_surrogates(item)


def loads(text: str | bytes) -> Any:
    """Parse JSON text; raise `ValueError` (with json's position) when it is not JSON, or
    when it nests deeper than serde_json's 128 levels (turnq.limits)."""
    if too_deep(text):
        raise ValueError(nesting_error())
    try:
        value = json.loads(text, object_pairs_hook=JsonObject, parse_constant=_refuse_constant,
                           parse_int=_parse_int)
    except RecursionError:  # unbalanced text the scan left to the parser
        raise ValueError(nesting_error()) from None
    pattern = _SURROGATE_STR if isinstance(text, str) else _SURROGATE_BYTES
    if pattern.search(text):
        _refuse_lone_surrogates(value)
    return value


def ryu_float(value: float) -> str:
    """Format a finite float as serde_json (ryu) does."""
    if not math.isfinite(value):
        raise ValueError("NaN and infinities cannot be written as JSON")
    text = repr(value)
    sign = ""
    if text.startswith("-"):
        sign, text = "-", text[1:]
    mantissa, _, exp_text = text.partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    digits = (int_part + frac_part).lstrip("0")
    # Decimal exponent such that value = 0.DIGITS * 10**point.
    point = len(int_part) + (int(exp_text) if exp_text else 0)
    if not digits:  # zero
        return sign + "0.0"
    leading_zeros = len(int_part + frac_part) - len((int_part + frac_part).lstrip("0"))
    point -= leading_zeros
    digits = digits.rstrip("0")
    length = len(digits)
    if 0 <= point - length and point <= 16:  # 1234e7 -> 12340000000.0
        return f"{sign}{digits}{'0' * (point - length)}.0"
    if 0 < point <= 16:  # 1234e-2 -> 12.34
        return f"{sign}{digits[:point]}.{digits[point:]}"
    if -5 < point <= 0:  # 1234e-6 -> 0.001234
        return f"{sign}0.{'0' * -point}{digits}"
    exponent = point - 1
    if length == 1:  # 1e30
        return f"{sign}{digits}e{exponent}"
    return f"{sign}{digits[0]}.{digits[1:]}e{exponent}"  # 1234e30 -> 1.234e33


def dumps(obj: Any) -> str:
    """Compact JSON text, keys in the order given, floats as serde_json writes them."""
    if not _has_float(obj):
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    iterencode = _encoder._make_iterencode(
        {}, _no_default, _encoder.encode_basestring, None, ryu_float, ":", ",", False, False, True
    )
    return "".join(iterencode(obj, 0))


def _no_default(obj: Any) -> Any:
    raise TypeError(f"{type(obj).__name__} is not JSON")


def _has_float(obj: Any) -> bool:
    if isinstance(obj, float):
        return True
    if isinstance(obj, dict):
        return any(_has_float(v) for v in obj.values())
    if isinstance(obj, list):
        return any(_has_float(v) for v in obj)
    return False
