"""Fixture documents: a queue described by hand (or exported), built into a store.

A fixture is TOML or JSON (README, *Fixtures*):

```
format = "turnq-fixture"          # optional
version = 1                       # optional
now = "2026-01-01T00:00:00Z"      # the fixture's clock (epoch ms or RFC 3339)
next_enqueue_seq = 9              # exact: the store-wide sequence (export writes it)

[[sessions]]
id = "chat"
drafts = [...]       # enqueued in order at the fixture's clock (text/images/wake/command/payloads)
claims = [...]       # then taken in order (owner, boundary, ttl, max_batches, batches, complete)
batches = [...]      # exact live batches with their claim state (what export writes)
tombstones = [...]   # exact tombstones (what export writes)
```

Parsing checks everything and names the place of a problem (`sessions[0].drafts[2].delivery`);
building happens in one store transaction, so a bad fixture writes nothing.
No I/O but reading the fixture's image files; no printing.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import engine, identifiers, ids, limits, models, wirejson
from .clock import (
    U64_MAX,
    Clock,
    FixedClock,
    SystemClock,
    format_time,
    parse_duration,
    parse_time,
)
from .errors import InvalidInput, StoreUnreadable, StoreUnwritable, TurnqError
from .models import BOUNDARIES, DELIVERY_POLICIES, SLOT_POLICIES, QueuedWorkClaim
from .state import QueueState
from .store.base import Store

FORMAT = "turnq-fixture"
VERSION = 1
FORMATS = ("toml", "json")
I64_MAX = 2**63 - 1

_TOP_KEYS = {"format", "version", "now", "next_enqueue_seq", "sessions"}
_SESSION_KEYS = {"id", "drafts", "claims", "batches", "tombstones"}
_POLICY_KEYS = {"source_key", "delivery", "slot", "merge", "delay", "available_at"}
_SOURCE_KEYS = {"text", "images", "wake", "command", "payloads"}
_WAKE_KEYS = {"process_id", "sequence", "input", "wake_id", "event_type", "scope_id", "dedupe_key"}
_COMMAND_KEYS = {"kind", "reason", "expected_generation", "idempotency_key"}
_CLAIM_KEYS = {"owner", "boundary", "ttl", "max_batches", "batches", "complete"}
_BATCH_KEYS = {"batch_id", "enqueue_seq", "source_key", "delivery_policy", "slot_policy", "merge_key",
               "available_at_ms", "enqueued_at_ms", "payloads", "items", "fencing_counter", "claim"}
_TOMBSTONE_KEYS = (_BATCH_KEYS - {"fencing_counter", "claim"}) | {"outcome", "settled_at_ms"}


# --------------------------------------------------------------------------- parsed form


@dataclass
class DraftSpec:
    where: str
    session_id: str
    kind: str  # "draft" | "wake" | "command"
    draft: models.QueuedWorkBatchDraft | None = None
    delay_ms: int | None = None
    wake: dict[str, Any] = field(default_factory=dict)
    command: dict[str, Any] = field(default_factory=dict)


@dataclass
class ClaimSpec:
    where: str
    owner: str | None
    boundary: str
    ttl_ms: int
    max_batches: int
    batches: list[str] | None
    complete: bool


@dataclass
class SessionSpec:
    session_id: str
    drafts: list[DraftSpec]
    claims: list[ClaimSpec]
    batches: list[dict[str, Any]]      # store-document batch records (wire)
    tombstones: list[dict[str, Any]]   # store-document tombstone records (wire)


@dataclass
class Fixture:
    now_ms: int | None
    next_enqueue_seq: int | None
    sessions: list[SessionSpec]

    @property
    def exact(self) -> bool:
        return self.next_enqueue_seq is not None or any(s.batches or s.tombstones for s in self.sessions)


@dataclass
class ImportResult:
    location: str
    now_ms: int
    results: list[tuple[str, engine.EnqueueResult]]
    claims: list[tuple[str, QueuedWorkClaim, bool]]  # (where, claim, completed)
    batches: int  # exact batches put in
    tombstones: int

    def to_wire(self) -> dict[str, Any]:
        return {
            "store": self.location,
            "now_ms": self.now_ms,
            "enqueued": [{"at": where, "outcome": r.outcome, "batch_id": r.batch.batch_id,
                          "session_id": r.batch.session_id, "enqueue_seq": r.batch.enqueue_seq}
                         for where, r in self.results],
            "claims": [{"at": where, "completed": done, "claim": claim.to_wire()}
                       for where, claim, done in self.claims],
            "batches": self.batches,
            "tombstones": self.tombstones,
        }


# --------------------------------------------------------------------------- reading


def format_of(path: str | Path, given: str | None = None) -> str:
    if given is not None:
        if given not in FORMATS:
            raise InvalidInput(f"--format: unknown format {given!r}: expected toml or json")
        return given
    suffix = Path(path).suffix.lower()
    if suffix in (".toml", ".json"):
        return suffix[1:]
    raise InvalidInput(f"{path}: cannot tell the fixture's format from its name: give --format toml|json")


def sniff_format(raw: bytes) -> str:
    """JSON or TOML, for input without a name (stdin): a fixture in JSON is one object, so its
    first non-blank character is `{`; a TOML document never starts with one."""
    head = raw.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    return "json" if head == b"{" else "toml"


def load_document(path: str | Path, fmt: str | None = None) -> Any:
    """The parsed fixture document (dicts and lists)."""
    fmt = format_of(path, fmt)
    try:  # a regular file of bounded size: /dev/zero or a FIFO must not hang the import
        raw = limits.read_regular_file(path, "fixture ", limit=limits.max_input_bytes(),
                                       env=limits.INPUT_BYTES_ENV)
    except FileNotFoundError:
        raise InvalidInput(f"{path}: cannot read the fixture: no such file") from None
    return loads_document(raw, fmt, str(path))


def loads_document(raw: str | bytes, fmt: str, name: str = "fixture") -> Any:
    limit = limits.max_input_bytes()
    if len(raw) > limit:
        raise InvalidInput(f"{name}: more than the limit of {limit} bytes (raise it with {limits.INPUT_BYTES_ENV})")
    if fmt == "toml":
        import tomllib

        try:
            text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
            limits.check_toml(text, name)  # before tomllib, whose cost grows with a dotted key's square
            return tomllib.loads(text)
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
            raise InvalidInput(f"{name}: not valid TOML: {err}") from None
        except RecursionError:
            raise InvalidInput(f"{name}: {limits.nesting_error()}") from None
    try:
        return wirejson.loads(raw)
    except ValueError as err:
        raise InvalidInput(f"{name}: not valid JSON: {err}") from None


def parse_file(path: str | Path, fmt: str | None = None, *, allow_outside: tuple[str | Path, ...] = ()) -> Fixture:
    return parse(load_document(path, fmt), base_dir=Path(path).resolve().parent, allow_outside=allow_outside)


def parse(document: Any, *, base_dir: Path | None = None, allow_outside: tuple[str | Path, ...] = ()) -> Fixture:
    """Check a fixture document and turn it into drafts, claims and exact records.
    Every error names the place in the document (`sessions[0].drafts[2].policy`).
    Image paths must stay inside `base_dir` (or a folder of `allow_outside`)."""
    base = ImageFolder(base_dir or Path.cwd(), allow_outside)
    doc = _table(document, "the fixture", _TOP_KEYS)
    if "format" in doc and doc["format"] != FORMAT:
        raise _bad("format", f"expected {FORMAT!r}, got {doc['format']!r}")
    if "version" in doc and (type(doc["version"]) is not int or doc["version"] != VERSION):
        raise _bad("version", f"this turnq reads fixture version {VERSION}, got {doc['version']!r}")
    now_ms = _time(doc["now"], "now") if "now" in doc else None
    next_seq = _u64(doc["next_enqueue_seq"], "next_enqueue_seq") if "next_enqueue_seq" in doc else None
    sessions = []
    seen: set[str] = set()
    for i, data in enumerate(_list(doc.get("sessions", []), "sessions")):
        spec = _session(data, f"sessions[{i}]", base)
        if spec.session_id in seen:
            raise _bad(f"sessions[{i}].id", f"session {spec.session_id!r} is described twice")
        seen.add(spec.session_id)
        sessions.append(spec)
    return Fixture(now_ms, next_seq, sessions)


def _session(data: Any, where: str, base: ImageFolder) -> SessionSpec:
    table = _table(data, where, _SESSION_KEYS)
    if "id" not in table:
        raise _bad(where, "missing key `id` (the session id)")
    session_id = _str(table["id"], f"{where}.id")
    if not session_id:
        raise _bad(f"{where}.id", "the session id is empty")
    drafts = [_draft(d, f"{where}.drafts[{j}]", session_id, base)
              for j, d in enumerate(_list(table.get("drafts", []), f"{where}.drafts"))]
    claims = [_claim(c, f"{where}.claims[{j}]") for j, c in enumerate(_list(table.get("claims", []), f"{where}.claims"))]
    batches = [_batch_record(b, f"{where}.batches[{j}]", session_id, base)
               for j, b in enumerate(_list(table.get("batches", []), f"{where}.batches"))]
    tombs = [_tombstone_record(t, f"{where}.tombstones[{j}]", session_id, base)
             for j, t in enumerate(_list(table.get("tombstones", []), f"{where}.tombstones"))]
    return SessionSpec(session_id, drafts, claims, batches, tombs)


def _draft(data: Any, where: str, session_id: str, base: ImageFolder) -> DraftSpec:
    table = _table(data, where, _POLICY_KEYS | _SOURCE_KEYS)
    sources = [key for key in ("wake", "command", "payloads") if key in table]
    if "text" in table or "images" in table:
        sources.insert(0, "text/images")
    if len(sources) != 1:
        what = "nothing" if not sources else " and ".join(sources)
        raise _bad(where, f"a draft needs exactly one of text/images, wake, command or payloads (got {what})")
    if "delay" in table and "available_at" in table:
        raise _bad(f"{where}.delay", "give delay or available_at, not both")
    delay = _duration(table["delay"], f"{where}.delay") if "delay" in table else None
    available = _time(table["available_at"], f"{where}.available_at") if "available_at" in table else None
    if sources[0] in ("wake", "command"):
        fixed = sorted(set(table) & {"source_key", "delivery", "slot", "merge"})
        if fixed:
            raise _bad(f"{where}.{fixed[0]}", f"a {sources[0]} draft has fixed policies and source key "
                       "(use `payloads` for a draft of your own)")
        if sources[0] == "command":
            if delay is not None or available is not None:
                raise _bad(f"{where}.{'delay' if delay is not None else 'available_at'}",
                           "a session command is available at once")
            return DraftSpec(where, session_id, "command", command=_command(table["command"], f"{where}.command"))
        wake = _wake(table["wake"], f"{where}.wake")
        if available is not None:
            wake["available_at_ms"] = available
        return DraftSpec(where, session_id, "wake", delay_ms=delay, wake=wake)
    if sources[0] == "text/images":
        payloads = [_turn_input_shortcut(table, where, base)]
    else:
        payloads = [_payload(p, f"{where}.payloads[{k}]", base)
                    for k, p in enumerate(_list(table["payloads"], f"{where}.payloads"))]
        if not payloads:
            raise _bad(f"{where}.payloads", "a draft needs at least one payload")
    delivery = _choice(table.get("delivery", "after_current_turn_commit"), f"{where}.delivery", DELIVERY_POLICIES)
    slot = _choice(table.get("slot", "join"), f"{where}.slot", SLOT_POLICIES)
    merge = _merge(table.get("merge", "never"), f"{where}.merge")
    source_key = _str(table["source_key"], f"{where}.source_key") if "source_key" in table else None
    draft = _validate(models.QueuedWorkBatchDraft, {
        "session_id": session_id, "source_key": source_key, "delivery_policy": delivery, "slot_policy": slot,
        "merge_key": merge, "available_at_ms": available or 0, "payloads": payloads}, where)
    try:
        engine.check_draft(draft)
    except InvalidInput as err:
        raise _bad(where, err.message.removeprefix("draft: ")) from None
    return DraftSpec(where, session_id, "draft", draft=draft, delay_ms=delay)


def _turn_input_shortcut(table: dict[str, Any], where: str, base: ImageFolder) -> dict[str, Any]:
    texts = table.get("text", [])
    if isinstance(texts, str):
        texts = [texts]
    texts = [_str(t, f"{where}.text") for t in _list(texts, f"{where}.text")]
    images = _table(table.get("images", {}), f"{where}.images", None)
    items: list[dict[str, Any]] = [{"type": "text", "text": t} for t in texts]
    blobs = {}
    for image_id, value in images.items():
        items.append({"type": "image_ref", "id": image_id})
        blobs[image_id] = _blob(value, f"{where}.images.{image_id}", base)
    if not items:
        raise _bad(where, "a text/images draft needs at least one text or image")
    return {"type": "turn_input", "input": {"items": items, "image_blobs": blobs}}


def _payload(data: Any, where: str, base: ImageFolder) -> Any:
    table = _table(data, where, None)
    if "type" not in table and set(table) <= {"text", "images"}:
        return _turn_input_shortcut(table, where, base)
    return _with_blobs(table, where, base)


def _with_blobs(payload: dict[str, Any], where: str, base: ImageFolder) -> dict[str, Any]:
    """A wire payload whose image blobs may be given as a path or `{base64 = "…"}`."""
    inner = payload.get("input")
    if payload.get("type") != "turn_input" or not isinstance(inner, dict) or not isinstance(
            inner.get("image_blobs"), dict):
        return payload
    blobs = {key: _blob(value, f"{where}.input.image_blobs.{key}", base) for key, value in inner["image_blobs"].items()}
    return {**payload, "input": {**inner, "image_blobs": blobs}}


class ImageFolder:
    """Where a fixture's image paths may point: inside its folder (symlinks resolved), or inside
    a folder the user allowed (`import --allow-outside`). Otherwise a fixture could copy any
    readable file (`/etc/passwd`, `../../secret`) into the store."""

    def __init__(self, base: Path, allowed: tuple[str | Path, ...] = ()) -> None:
        self.base = base
        self.roots = [Path(os.path.realpath(base))] + [Path(os.path.realpath(folder)) for folder in allowed]

    def read(self, value: str, where: str) -> list[int]:
        path = Path(os.path.realpath(self.base / value))
        if not any(path == root or path.is_relative_to(root) for root in self.roots):
            raise _bad(where, f"image {value!r} is outside the fixture's folder {self.roots[0]} "
                       "(import --allow-outside PATH allows a folder)")
        try:
            data = limits.read_regular_file(path, "", limit=limits.max_image_bytes(), env=limits.IMAGE_BYTES_ENV)
        except FileNotFoundError:
            raise _bad(where, f"cannot read image {value!r} ({path}): no such file") from None
        except InvalidInput as err:
            raise _bad(where, f"image {value!r}: {err.message}") from None
        return list(data)


def _blob(value: Any, where: str, base: ImageFolder) -> Any:
    if isinstance(value, str):
        return base.read(value, where)
    if isinstance(value, dict) and set(value) == {"base64"} and isinstance(value["base64"], str):
        try:
            return list(base64.b64decode(value["base64"], validate=True))
        except ValueError:
            raise _bad(where, "invalid base64") from None
    if isinstance(value, dict) and set(value) == {"path"} and isinstance(value["path"], str):
        return _blob(value["path"], where, base)
    return value  # a list of byte values: the wire model checks it


def _wake(data: Any, where: str) -> dict[str, Any]:
    table = _table(data, where, _WAKE_KEYS)
    for key in ("process_id", "sequence", "input"):
        if key not in table:
            raise _bad(where, f"missing key `{key}`")
    wake = {"process_id": _str(table["process_id"], f"{where}.process_id"),
            "sequence": _u64(table["sequence"], f"{where}.sequence"),
            "input": _str(table["input"], f"{where}.input")}
    for key in ("wake_id", "event_type", "scope_id", "dedupe_key"):
        if key in table:
            wake[key] = _str(table[key], f"{where}.{key}")
    return wake


def _command(data: Any, where: str) -> dict[str, Any]:
    table = _table(data, where, _COMMAND_KEYS)
    for key in ("kind", "reason"):
        if key not in table:
            raise _bad(where, f"missing key `{key}`")
    command = {"kind": _choice(table["kind"], f"{where}.kind", ("reset_session", "refresh_tool_surface")),
               "reason": _str(table["reason"], f"{where}.reason")}
    if "expected_generation" in table:
        if command["kind"] != "refresh_tool_surface":
            raise _bad(f"{where}.expected_generation", "only a refresh_tool_surface command takes it")
        command["expected_generation"] = _u64(table["expected_generation"], f"{where}.expected_generation")
    if "idempotency_key" in table:
        key = _str(table["idempotency_key"], f"{where}.idempotency_key")
        if not key.strip():
            raise _bad(f"{where}.idempotency_key", "the key is blank")
        command["idempotency_key"] = key
    return command


def _claim(data: Any, where: str) -> ClaimSpec:
    table = _table(data, where, _CLAIM_KEYS)
    owner = _str(table["owner"], f"{where}.owner") if "owner" in table else None
    if owner == "":
        raise _bad(f"{where}.owner", "the owner id is empty")
    boundary = _choice(table.get("boundary", "idle"), f"{where}.boundary", BOUNDARIES)
    ttl = _duration(table.get("ttl", "15m"), f"{where}.ttl")
    max_batches = _u64(table.get("max_batches", engine.DEFAULT_MAX_BATCHES), f"{where}.max_batches")
    refs = None
    if "batches" in table:
        refs = [_str(r, f"{where}.batches[{k}]") for k, r in enumerate(_list(table["batches"], f"{where}.batches"))]
        if not refs:
            raise _bad(f"{where}.batches", "name at least one batch (by source key or batch id)")
    complete = table.get("complete", False)
    if not isinstance(complete, bool):
        raise _bad(f"{where}.complete", f"expected true or false, got {complete!r}")
    return ClaimSpec(where, owner, boundary, ttl, max_batches, refs, complete)


def _batch_fields(table: dict[str, Any], where: str, session_id: str, base: ImageFolder) -> dict[str, Any]:
    """A QueuedWorkBatch (wire data) from an exported batch entry: the batch's wire fields without
    `session_id`, with `payloads` (item ids derived) or `items`."""
    if ("payloads" in table) == ("items" in table):
        raise _bad(where, "give exactly one of `payloads` or `items`")
    batch = {key: table[key] for key in ("batch_id", "enqueue_seq", "source_key", "delivery_policy",
                                          "slot_policy", "merge_key", "available_at_ms", "enqueued_at_ms")
             if key in table}
    batch_id = batch.get("batch_id")
    if not isinstance(batch_id, str):
        raise _bad(f"{where}.batch_id", "missing or not a string")
    batch = {"batch_id": batch_id, "session_id": session_id, **batch}
    if "payloads" in table:
        payloads = _list(table["payloads"], f"{where}.payloads")
        batch["items"] = [{"item_id": ids.item_id(batch_id, k), "payload": _payload(p, f"{where}.payloads[{k}]", base)}
                          for k, p in enumerate(payloads)]
    else:
        items = _list(table["items"], f"{where}.items")
        batch["items"] = [{**item, "payload": _payload(item.get("payload"), f"{where}.items[{k}].payload", base)}
                          if isinstance(item, dict) else item for k, item in enumerate(items)]
    return batch


def _batch_record(data: Any, where: str, session_id: str, base: ImageFolder) -> dict[str, Any]:
    table = _table(data, where, _BATCH_KEYS)
    record = {"batch": _batch_fields(table, where, session_id, base),
              "fencing_counter": table.get("fencing_counter", 0), "claim": table.get("claim")}
    from .store.codec import BatchRecord

    return _validate(BatchRecord, record, where).to_wire()


def _tombstone_record(data: Any, where: str, session_id: str, base: ImageFolder) -> dict[str, Any]:
    table = _table(data, where, _TOMBSTONE_KEYS)
    record = {"batch": _batch_fields(table, where, session_id, base), "outcome": table.get("outcome"),
              "settled_at_ms": table.get("settled_at_ms")}
    from .store.codec import TombstoneRecord

    checked = _validate(TombstoneRecord, record, where)
    if checked.batch.source_key is None:
        raise _bad(where, "a tombstone's batch needs a source key")
    return checked.to_wire()


# --------------------------------------------------------------------------- small checks


def _bad(where: str, why: str) -> InvalidInput:
    return InvalidInput(f"{where}: {why}")


def _table(value: Any, where: str, keys: set[str] | None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(where, f"expected a table/object, got {_kind(value)}")
    if keys is not None:
        unknown = [key for key in value if key not in keys]
        if unknown:
            raise _bad(f"{where}.{unknown[0]}" if where != "the fixture" else unknown[0],
                       f"unknown key (expected one of {', '.join(sorted(keys))})")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise _bad(where, f"expected a list, got {_kind(value)}")
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _bad(where, f"expected a string, got {_kind(value)}")
    return value


def _u64(value: Any, where: str) -> int:
    if type(value) is not int or not 0 <= value <= U64_MAX:
        raise _bad(where, f"expected an integer from 0 to {U64_MAX}, got {value!r}")
    return value


def _choice(value: Any, where: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise _bad(where, f"unknown value {value!r}: expected one of {', '.join(choices)}")
    return value


def _time(value: Any, where: str) -> int:
    if type(value) is int:
        return _u64(value, where)
    if not isinstance(value, str):
        raise _bad(where, f"expected epoch milliseconds or an RFC 3339 time, got {_kind(value)}")
    try:
        return parse_time(value)
    except InvalidInput as err:
        raise _bad(where, err.message) from None


def _duration(value: Any, where: str) -> int:
    if type(value) is int:
        return _u64(value, where)
    if not isinstance(value, str):
        raise _bad(where, f"expected a duration (250ms, 30s, 15m, 2h) or milliseconds, got {_kind(value)}")
    try:
        return parse_duration(value)
    except InvalidInput as err:
        raise _bad(where, err.message) from None


def _merge(value: Any, where: str) -> Any:
    if value in ("never", "payload_default"):
        return value
    if isinstance(value, str) and value.startswith("group:") and len(value) > len("group:"):
        return {"group": value[len("group:"):]}
    if isinstance(value, dict) and set(value) == {"group"} and isinstance(value["group"], str):
        return dict(value)
    raise _bad(where, f"unknown merge key {value!r}: expected never, payload_default or group:NAME")


def _validate(wire_type: Any, data: Any, where: str) -> Any:
    context = models.WireContext(strict=True)
    try:
        return models.validate(wire_type, data, context, what=where)
    except ValueError as err:  # raised by the strict context outside pydantic's wrapping
        raise _bad(where, str(err)) from None


def _kind(value: Any) -> str:
    return {dict: "a table", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a float", type(None): "null"}.get(type(value), type(value).__name__)


# --------------------------------------------------------------------------- building


class _StateStore(Store):
    """The state of an open transaction, as a store: every Queue operation on it changes that
    one state in place, and the outer transaction saves it (or nothing) at the end."""

    def __init__(self, state: QueueState, location: str) -> None:
        self.state = state
        self.location = location

    def read(self, session_id: str | None = None) -> QueueState:
        return self.state

    def transaction(self, session_id: str | None = None, *,  # type: ignore[override]
                    takes_seq: bool = False) -> Iterator[QueueState]:
        from contextlib import nullcontext

        return nullcontext(self.state)  # type: ignore[return-value]


class _FrozenClock:
    """The real time, read once: a fixture without a clock still builds at one instant."""

    fixed = False

    def __init__(self) -> None:
        self._now = SystemClock().now_ms()

    def now_ms(self) -> int:
        return self._now


def build(fixture: Fixture, store: Store, *, now_ms: int | None = None,
          progress: Callable[[int, int], None] | None = None) -> ImportResult:
    """Build a parsed fixture into a store, in one transaction: all of it, or nothing.

    The clock is `now_ms` (e.g. `--now`), else the fixture's `now`, else the real time read once.
    `progress(done, total)` is called as drafts and claims are built (the CLI's progress bar)."""
    with store.transaction(None) as state:
        result = _build_into(fixture, state, _clock(fixture, now_ms), store.location, progress)
        state.changed = True
    return result


def build_state(fixture: Fixture, *, now_ms: int | None = None) -> QueueState:
    """The state a fixture builds into an empty store (for `diff` against a fixture)."""
    state = QueueState()
    _build_into(fixture, state, _clock(fixture, now_ms), "fixture")
    state.changed = False
    return state


def _clock(fixture: Fixture, now_ms: int | None) -> Clock:
    when = now_ms if now_ms is not None else fixture.now_ms
    return FixedClock(when) if when is not None else _FrozenClock()


def _build_into(fixture: Fixture, state: QueueState, clock: Clock, location: str,
                progress: Callable[[int, int], None] | None = None) -> ImportResult:
    from .api import Queue

    total = sum(len(session.drafts) + len(session.claims) for session in fixture.sessions)
    report = progress or (lambda done, total: None)

    now = clock.now_ms()
    batches = tombstones = 0
    if fixture.exact:
        if state.sessions or state.tombstones:
            raise InvalidInput(f"the fixture holds exact batches or tombstones (as export writes them): import it "
                               f"into an empty store, not {location}")
        _put_exact(fixture, state)
        holding_nul = identifiers.find_in_state(state)
        if holding_nul is not None:
            raise InvalidInput(f"the fixture holds a NUL character (U+0000) in {holding_nul}, which no identifier "
                               "may hold (PostgreSQL cannot store it); nothing was imported")
        batches = sum(len(s.batches) for s in fixture.sessions)
        tombstones = sum(len(s.tombstones) for s in fixture.sessions)
    queue = Queue(_StateStore(state, location), now=clock)
    results: list[tuple[str, engine.EnqueueResult]] = []
    claims: list[tuple[str, QueuedWorkClaim, bool]] = []
    for session in fixture.sessions:
        for spec in session.drafts:
            results.append((spec.where, _located(spec.where, lambda s=spec: _enqueue(queue, s, now))))
            report(len(results) + len(claims), total)
        for claim_spec in session.claims:
            claims.append(_located(claim_spec.where, lambda c=claim_spec, sid=session.session_id: _take(queue, sid, c)))
            report(len(results) + len(claims), total)
    return ImportResult(location, now, results, claims, batches, tombstones)


def _located(where: str, operation: Any) -> Any:
    try:
        return operation()
    except InvalidInput as err:
        raise _bad(where, err.message) from None
    except TurnqError as err:
        raise type(err)(f"{where}: {err.message}") from None


def _enqueue(queue: Any, spec: DraftSpec, now: int) -> engine.EnqueueResult:
    if spec.kind == "wake":
        wake = dict(spec.wake)
        return queue.wake(spec.session_id, wake.pop("process_id"), wake.pop("sequence"), wake.pop("input"),
                          delay_ms=spec.delay_ms or 0, strict=True, **wake)
    if spec.kind == "command":
        command = dict(spec.command)
        kind = command.pop("kind")
        if kind == "reset_session":
            return queue.reset_session(spec.session_id, command["reason"],
                                       idempotency_key=command.get("idempotency_key"), strict=True)
        return queue.refresh_tools(spec.session_id, command["reason"],
                                   expected_generation=command.get("expected_generation"),
                                   idempotency_key=command.get("idempotency_key"), strict=True)
    assert spec.draft is not None
    draft = spec.draft
    if spec.delay_ms is not None:  # now + delay saturates at 2^64-1 (spec: counters at their limit)
        draft = draft.model_copy(update={"available_at_ms": engine.expiry(now, spec.delay_ms)})
    return queue.enqueue(draft, strict=True)


def _take(queue: Any, session_id: str, spec: ClaimSpec) -> tuple[str, QueuedWorkClaim, bool]:
    exact = None
    if spec.batches is not None:
        exact = [_resolve(queue, session_id, ref) for ref in spec.batches]
    claim = queue.claim(session_id, owner=spec.owner, boundary=spec.boundary, ttl_ms=spec.ttl_ms,
                        max_batches=spec.max_batches, batch_ids=exact)
    if claim is None:
        raise InvalidInput("nothing to claim at the fixture's clock" + (" (not exactly those batches)" if exact else ""))
    if spec.complete:
        queue.complete(claim)
    return spec.where, claim, spec.complete


def _resolve(queue: Any, session_id: str, ref: str) -> str:
    for batch in queue.list(session_id):
        if batch.source_key == ref:
            return batch.batch_id
    return queue.resolve_batch_id(session_id, ref)


def _put_exact(fixture: Fixture, state: QueueState) -> None:
    """Put exported records in through the store codec's own checks (ids, order, sequence)."""
    from .store import codec

    records = sorted((r for s in fixture.sessions for r in s.batches), key=lambda r: r["batch"]["enqueue_seq"])
    last = records[-1]["batch"]["enqueue_seq"] if records else 0
    next_seq = fixture.next_enqueue_seq if fixture.next_enqueue_seq is not None else last + 1
    document = {"format": codec.FORMAT, "schema_version": codec.SCHEMA_VERSION, "next_enqueue_seq": next_seq,
                "batches": records, "tombstones": [r for s in fixture.sessions for r in s.tombstones]}
    try:
        built = codec.decode(json.loads(json.dumps(document)), "fixture")
    except StoreUnreadable as err:
        message = err.message.removeprefix("store fixture is unreadable: ").removesuffix(
            "; the file was left as it is")
        raise InvalidInput(f"the fixture's exact records: {message}") from None
    state.next_seq, state.sessions, state.tombstones = built.next_seq, built.sessions, built.tombstones
    state.changed = True


# --------------------------------------------------------------------------- export


def export_document(state: QueueState, sessions: list[str] | None = None, *, now_ms: int | None = None) -> dict:
    """A fixture document that rebuilds exactly `state` (or its `sessions`)."""
    wanted = state.session_ids() if not sessions else list(dict.fromkeys(sessions))
    doc: dict[str, Any] = {"format": FORMAT, "version": VERSION}
    if now_ms is not None:
        doc["now"] = format_time(now_ms)
    doc["next_enqueue_seq"] = state.next_seq
    doc["sessions"] = []
    for session_id in wanted:
        entry: dict[str, Any] = {"id": session_id}
        batches = [_export_batch(s.batch) | _export_claim(s.fencing, s.lease) for s in state.session(session_id)]
        tombs = [_export_batch(t.batch) | {"outcome": t.outcome, "settled_at_ms": t.settled_at_ms}
                 for t in state.session_tombstones(session_id)]
        if batches:
            entry["batches"] = batches
        if tombs:
            entry["tombstones"] = tombs
        doc["sessions"].append(entry)
    return doc


def _export_batch(batch: models.QueuedWorkBatch) -> dict[str, Any]:
    wire = batch.to_wire()
    del wire["session_id"]
    items = wire.pop("items")
    if all(item["item_id"] == ids.item_id(batch.batch_id, k) for k, item in enumerate(items)):
        wire["payloads"] = [_short_payload(item["payload"]) for item in items]
    else:
        wire["items"] = items
    return wire


def _short_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """A turn input of text items only, as `{text = …}` (read back to the same payload)."""
    inner = payload.get("input")
    if payload["type"] != "turn_input" or set(inner) != {"items", "image_blobs"} or inner["image_blobs"]:
        return payload
    items = inner["items"]
    if not items or any(item["type"] != "text" for item in items):
        return payload
    texts = [item["text"] for item in items]
    return {"text": texts[0] if len(texts) == 1 else texts}


def _export_claim(fencing: int, lease: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"fencing_counter": fencing}
    if lease is not None:
        data["claim"] = lease.to_wire()
    return data


def write_output(path: str | Path, text: str, store: Store, *, force: bool = False) -> None:
    """Write an exported fixture to `path` atomically (temp file beside it, fsync, rename): a
    failure leaves the old file whole (StoreUnwritable, exit 9). A file that is a turnq store
    — the one exported, or any other — is not overwritten unless `force`."""
    from .store import files

    target = Path(path)
    if not force:
        store_path = getattr(store, "path", None)
        if store_path is not None and files.same_file(target, Path(store_path)):
            raise InvalidInput(f"--output: {path} is the store being exported ({store.location}); "
                               "nothing was written (give another file)")
        if files.is_store_file(target):
            raise InvalidInput(f"--output: {path} is a turnq store; nothing was written "
                               "(give --force to overwrite it with the fixture)")
    try:
        files.write_atomically(target, text.encode("utf-8"))
    except OSError as err:
        raise StoreUnwritable(f"--output: cannot write {path}: {err.strerror or err}; "
                              "it was left as it was") from None


def dumps(document: dict, fmt: str) -> str:
    """A fixture document's text. TOML has no null and no integer above 2**63-1: such a
    value is refused with its place named (use JSON for it)."""
    if fmt == "json":
        return json.dumps(document, ensure_ascii=False, indent=2, allow_nan=False) + "\n"
    _check_toml(document, "")
    import tomli_w

    return tomli_w.dumps(document)


def _check_toml(value: Any, where: str) -> None:
    if value is None:
        raise InvalidInput(f"{where or 'the fixture'}: TOML cannot hold null: export with --format json")
    if type(value) is int and value > I64_MAX:
        raise InvalidInput(f"{where}: TOML cannot hold the integer {value}: export with --format json")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_toml(item, f"{where}.{key}" if where else key)
    elif isinstance(value, list):
        for k, item in enumerate(value):
            _check_toml(item, f"{where}[{k}]")


# --------------------------------------------------------------------------- reading a state


def is_fixture_file(location: str) -> bool:
    """A `.toml` file, or a `.json` file that is a fixture document rather than a store."""
    path = Path(location)
    if path.suffix.lower() == ".toml":
        return True
    if path.suffix.lower() != ".json" or not path.is_file():
        return False
    try:
        document = wirejson.loads(limits.read_regular_file(path, "", limit=limits.max_input_bytes()))
    except (OSError, ValueError, TurnqError):
        return False  # the store reader says what is wrong with it
    return isinstance(document, dict) and document.get("format") != "turnq-store" and (
        document.get("format") == FORMAT or "sessions" in document)


def read_state(location: str, *, now_ms: int | None = None, lock_timeout_ms: int = 10_000) -> QueueState:
    """The queue state held by a store (any location `turnq.store.open_store` takes) or built by a
    fixture file into an empty store. A store file that does not exist is an error here."""
    from .errors import NotFound
    from .store import open_store

    if is_fixture_file(location):
        return build_state(parse_file(location), now_ms=now_ms)
    store = open_store(location, lock_timeout_ms=lock_timeout_ms)
    if not store.exists():  # a file, or a database without turnq's tables: not an empty queue
        raise NotFound(f"{store.location}: no such store or fixture file")
    return store.read()
