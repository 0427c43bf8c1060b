"""The JSON store's tombstones kept as the lines of text they were read as (issue 16).

turnq writes its document with one line per tombstone at the end (see codec.py). `split`
cuts that tail off the text, so a read parses only the header and the live batches; the
tombstone lines stay text (`TombstoneLines`) until something needs one:

- an enqueue with a source key parses them once and builds a (session, key) index;
- inspect, export, vacuum, … parse them all (`state.tombstones`), then they are records as
  the fast codec reads them (still written back as read);
- retention drops by settled time, and looks at the first (oldest) line first: turnq writes
  them oldest first, so when that one is inside the window nothing else can be outside it;
- a write that touched no tombstone writes the lines back as they were, plus the new ones.

So a claim or a completion costs the same whatever the number of tombstones beside it,
apart from copying their text. A tombstone line is checked when it is first parsed: a
document not in turnq's layout is parsed whole, as before (`split` returns None).
"""

from __future__ import annotations

import json
from typing import Any

from ..state import StoredTombstone

_MARK = '\n"tombstones": ['
_END = "]}\n"
_LINE_START = '{"batch":{'


def split(text: str) -> tuple[str, list[str]] | None:
    """(the document with an empty tombstone list, the tombstone lines), or None when the
    text is not laid out as turnq writes it (the caller then parses it whole)."""
    at = text.rfind(_MARK)
    if at < 0 or not text.endswith(_END):
        return None
    body = text[at + len(_MARK):-len(_END)]
    head = text[:at] + '\n"tombstones": []}'
    if not body:
        return head, []
    if len(body) < 2 or body[0] != "\n" or body[-1] != "\n":
        return None
    lines = body[1:-1].split(",\n")
    for line in lines:
        if not (line.startswith(_LINE_START) and line.endswith("}")):
            return None
    return head, lines


class TombstoneLines:
    """state.TombstoneSource over the tombstone lines of one read of the file."""

    def __init__(self, lines: list[str], location: str) -> None:
        self.lines = lines
        self.location = location
        self._parsed: list[StoredTombstone] | None = None
        self._index: dict[tuple[str, str], StoredTombstone] | None = None

    def _all(self) -> list[StoredTombstone]:
        if self._parsed is None:
            from . import codec, fastcodec

            records = _loads("[" + ",".join(self.lines) + "]", self.location)
            parsed = []
            for record in records:
                try:
                    parsed.append(fastcodec.tombstone(record, self.location))
                except fastcodec._Unsure:  # the pydantic path words what is wrong (or accepts it)
                    try:
                        parsed.append(codec.decode_tombstone_record(record, self.location))
                    except RecursionError:  # hostile nesting in a payload
                        raise codec._unreadable(self.location, "a tombstone is nested too deeply") from None
            self._parsed = parsed
        return self._parsed

    def find(self, session_id: str, source_key: str) -> StoredTombstone | None:
        if self._index is None:
            index: dict[tuple[str, str], StoredTombstone] = {}
            for tomb in self._all():
                key = (tomb.session_id, tomb.source_key)
                older = index.get(key)
                if older is None or older.settled_at_ms <= tomb.settled_at_ms:
                    index[key] = tomb
            self._index = index
        return self._index.get((session_id, source_key))

    def drop(self, session_id: str | None, cutoff_ms: int | None) -> list[StoredTombstone]:
        if not self.lines:
            return []
        if cutoff_ms is not None and self._parsed is None and _first_settled(self.lines[0]) > cutoff_ms:
            return []  # the oldest is inside the window (the file is oldest first, as turnq writes it)
        kept_lines, kept, removed = [], [], []
        for line, tomb in zip(self.lines, self._all()):
            if (session_id is None or tomb.session_id == session_id) and tomb.expired_at(cutoff_ms):
                removed.append(tomb)
            else:
                kept_lines.append(line)
                kept.append(tomb)
        if removed:
            self.lines, self._parsed, self._index = kept_lines, kept, None
        return removed

    def load(self) -> list[StoredTombstone]:
        return list(self._all())

    def count(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for tomb in self._all():  # the file is parsed whole anyway; no cheaper count here
            counts[tomb.session_id] = counts.get(tomb.session_id, 0) + 1
        return counts

    def lines_with(self, added: list[StoredTombstone], encode: Any) -> list[str] | None:
        """The lines to write: these, then the added ones (`encode`: a tombstone's line), when
        that keeps them oldest first; None when it would not (the caller sorts them all)."""
        if not added:
            return self.lines
        added = sorted(added, key=lambda t: (t.settled_at_ms, t.seq))
        if self.lines:
            last = _loads(self.lines[-1], self.location)
            try:
                last_key = (last["settled_at_ms"], last["batch"]["enqueue_seq"])
                if not last_key <= (added[0].settled_at_ms, added[0].seq):
                    return None
            except (KeyError, TypeError):
                return None
        return self.lines + [encode(tomb) for tomb in added]


def _first_settled(line: str) -> float:
    """The settled time of a line, or -inf when it has none (then the caller parses them all)."""
    try:
        value = json.loads(line).get("settled_at_ms")
    except (ValueError, AttributeError, RecursionError):
        return float("-inf")
    return value if type(value) is int else float("-inf")


def _loads(text: str, location: str) -> Any:
    from . import codec

    try:
        return json.loads(text)
    except ValueError as err:
        raise codec._unreadable(location, f"a tombstone line is not valid JSON ({err})") from None
    except RecursionError:  # hostile nesting: words as any other unreadable store
        raise codec._unreadable(location, "a tombstone line is nested too deeply") from None
