"""`turnq doctor`: check a store's invariants on its raw document, and plan safe repairs.

Works on the parsed JSON document (`Store.raw_document()`), never through the codec,
which refuses a broken store outright: doctor's job is to say *what* is broken. Pure:
a document and `now` in; findings, and a repaired copy of the document, out.

Each finding has a code, a severity (`error`: the store breaks an invariant; `notice`:
healthy, but something can be tidied), the batch it concerns (when one does), a
message, and the repair `--fix` would make (None: no safe repair; a person must decide).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from . import ids
from .clock import format_duration, format_time
from .models import QueuedWorkBatch, WireContext, describe_validation_error

FORMAT = "turnq-store"
SCHEMA_VERSION = 1
#: A claim that expired this long ago is safe to clear: its holder has long given up.
DEFAULT_STALE_CLAIM_MS = 24 * 3600 * 1000

_BATCH_ID = re.compile(r"^qwb:[0-9a-f]{64}$")
_CLAIM_ID = re.compile(r"^qwc:([0-9]+):([0-9]+)$")
_CLAIM_FIELDS = ("claim_id", "owner_id", "lease_token", "claimed_at_epoch_ms", "expires_at_epoch_ms")


@dataclass(frozen=True)
class Finding:
    code: str
    severity: str  # "error" | "notice"
    message: str
    batch_id: str | None = None
    fix: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return {"code": self.code, "severity": self.severity, "batch_id": self.batch_id, "message": self.message,
                "fix": self.fix}


@dataclass
class Report:
    location: str
    findings: list[Finding]
    #: The repairs --fix makes (or, with --dry-run, would make), in words.
    changes: list[str] = field(default_factory=list)
    fixed: bool = False
    backup: str | None = None
    dry_run: bool = False
    #: After a fix: what is still wrong (None: nothing was fixed).
    remaining: list[Finding] | None = None
    #: With --fix: the document as read, and as repaired (not part of the output).
    document: dict[str, Any] | None = field(default=None, repr=False)
    repaired: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def healthy(self) -> bool:
        """No error left (after the fix, when one was made)."""
        current = self.findings if self.remaining is None else self.remaining
        return not any(f.severity == "error" for f in current)

    def to_wire(self) -> dict[str, Any]:
        data = {"store": self.location, "healthy": self.healthy,
                "findings": [f.to_wire() for f in self.findings], "changes": self.changes,
                "fixed": self.fixed, "dry_run": self.dry_run, "backup": self.backup}
        if self.remaining is not None:
            data["remaining"] = [f.to_wire() for f in self.remaining]
        return data


def _is_u64(value: Any) -> bool:
    return type(value) is int and 0 <= value < 2**64


# --------------------------------------------------------------------------- checks


def check(doc: Any, now_ms: int, *, stale_claim_ms: int = DEFAULT_STALE_CLAIM_MS,
          clear_stale: bool = False) -> list[Finding]:
    """Every problem of the store document `doc` (a parsed store file; {} = no store yet).
    A stale claim is fixable (cleared by `repair`) only with `clear_stale`: its holder can still
    complete or renew it (spec/semantics.md, complete), so ending it is the user's call."""
    if doc == {}:
        return []
    out: list[Finding] = []
    if not isinstance(doc, dict):
        return [Finding("format", "error", "the document is not a JSON object")]
    if doc.get("format") != FORMAT:
        out.append(Finding("format", "error", f"\"format\" is {doc.get('format')!r}, not {FORMAT!r}"))
    version = doc.get("schema_version")
    if version != SCHEMA_VERSION:
        out.append(Finding("schema_version", "error",
                           f"schema_version is {version!r}; this turnq reads {SCHEMA_VERSION}"))
    batches, tombstones = doc.get("batches"), doc.get("tombstones")
    if not isinstance(batches, list):
        out.append(Finding("format", "error", "\"batches\" is missing or not a list"))
        batches = []
    if not isinstance(tombstones, list):
        out.append(Finding("format", "error", "\"tombstones\" is missing or not a list"))
        tombstones = []
    extra = sorted(set(doc) - {"format", "schema_version", "next_enqueue_seq", "settings", "batches", "tombstones"})
    settings = doc.get("settings")
    retention = settings.get("tombstone_retention_ms") if isinstance(settings, dict) else None
    if (settings is not None and not isinstance(settings, dict)) or (
            retention is not None and (type(retention) is not int or not 0 <= retention < 2**64)):
        out.append(Finding("format", "error", "\"settings\" is not an object of unsigned integers "
                           "(turnq config set tombstone-retention … writes it)"))
    if extra:
        out.append(Finding("format", "error", f"unknown top-level field(s): {', '.join(extra)}"))

    live = _check_batches(batches, out)
    _check_sequence(doc, live, out)
    _check_claims(live, now_ms, stale_claim_ms, out, clear_stale)
    _check_tombstones(tombstones, live, out)
    return out


@dataclass
class _Live:
    """A batch record that parsed well enough to check the cross-record invariants."""

    index: int
    batch_id: str
    session_id: str
    seq: int
    source_key: str | None
    fencing: Any
    claim: Any


def _check_batches(records: list[Any], out: list[Finding]) -> list[_Live]:
    live: list[_Live] = []
    seen: dict[str, int] = {}
    for index, record in enumerate(records):
        where = f"batches[{index}]"
        if not isinstance(record, dict) or not isinstance(record.get("batch"), dict):
            out.append(Finding("record", "error", f"{where} is not a batch record ({{\"batch\": …}})"))
            continue
        raw = record["batch"]
        batch_id = raw.get("batch_id") if isinstance(raw.get("batch_id"), str) else None
        extra = sorted(set(record) - {"batch", "fencing_counter", "claim"})
        if extra:
            out.append(Finding("record", "error", f"{where} has unknown field(s): {', '.join(extra)}", batch_id))
        try:
            batch = QueuedWorkBatch.model_validate(raw, context=WireContext(strict=True))
        except ValidationError as err:
            out.append(Finding("payload", "error", f"{where} is not a valid QueuedWorkBatch: "
                               f"{describe_validation_error(err)}", batch_id))
            if batch_id is None or not _is_u64(raw.get("enqueue_seq")) or not isinstance(raw.get("session_id"), str):
                continue
            live.append(_Live(index, batch_id, raw["session_id"], raw["enqueue_seq"], raw.get("source_key"),
                              record.get("fencing_counter"), record.get("claim")))
            continue
        batch_id = batch.batch_id
        if not _BATCH_ID.match(batch_id):
            out.append(Finding("batch_id", "error", f"{where}: batch id {batch_id!r} is not qwb: + 64 hex digits",
                               batch_id))
        if batch_id in seen:
            out.append(Finding("duplicate_id", "error",
                               f"batch id {batch_id} appears twice (batches[{seen[batch_id]}] and {where})",
                               batch_id))
        seen.setdefault(batch_id, index)
        for position, item in enumerate(batch.items):
            expected = ids.item_id(batch_id, position)
            if item.item_id != expected:
                out.append(Finding("item_id", "error",
                                   f"item {position} has id {item.item_id!r}, expected {expected!r}", batch_id))
        live.append(_Live(index, batch_id, batch.session_id, batch.enqueue_seq, batch.source_key,
                          record.get("fencing_counter"), record.get("claim")))
    return live


def _check_sequence(doc: dict[str, Any], live: list[_Live], out: list[Finding]) -> None:
    last: _Live | None = None
    seqs: dict[int, str] = {}
    for entry in live:
        if entry.seq in seqs and seqs[entry.seq] != entry.batch_id:
            out.append(Finding("duplicate_seq", "error",
                               f"enqueue_seq {entry.seq} is used by {seqs[entry.seq]} too", entry.batch_id))
        seqs.setdefault(entry.seq, entry.batch_id)
        if last is not None and entry.seq < last.seq:
            out.append(Finding("seq_order", "error", f"enqueue_seq {entry.seq} comes after {last.seq} "
                               f"({last.batch_id}): batches must be in strictly increasing enqueue_seq order",
                               entry.batch_id, fix="sort the batches by enqueue_seq"))
        last = entry
    top = max((entry.seq for entry in live), default=0)
    next_seq = doc.get("next_enqueue_seq")
    if not _is_u64(next_seq):
        out.append(Finding("next_enqueue_seq", "error", f"next_enqueue_seq is {next_seq!r}, not an integer",
                           fix=f"set next_enqueue_seq to {top + 1}"))
    elif next_seq <= top:
        holder = next(entry.batch_id for entry in live if entry.seq == top)
        out.append(Finding("next_enqueue_seq", "error", f"next_enqueue_seq {next_seq} is not above enqueue_seq "
                           f"{top} of this batch: the next enqueue would reuse a sequence number", holder,
                           fix=f"set next_enqueue_seq to {top + 1}"))


def _claim_problem(claim: Any) -> str | None:
    if not isinstance(claim, dict):
        return "is not an object"
    missing = [name for name in _CLAIM_FIELDS if name not in claim]
    if missing:
        return f"lacks {', '.join(missing)}"
    extra = sorted(set(claim) - set(_CLAIM_FIELDS))
    if extra:
        return f"has unknown field(s) {', '.join(extra)}"
    if not all(isinstance(claim[name], str) and claim[name] for name in _CLAIM_FIELDS[:3]):
        return "has an empty or non-text id, owner or token"
    if not _is_u64(claim["claimed_at_epoch_ms"]) or not _is_u64(claim["expires_at_epoch_ms"]):
        return "has times that are not unsigned integers"
    if not _CLAIM_ID.match(claim["claim_id"]):
        return f"has a malformed claim id {claim['claim_id']!r} (expected qwc:SEQ:TOKEN)"
    return None


def _check_claims(live: list[_Live], now_ms: int, stale_claim_ms: int, out: list[Finding],
                  clear_stale: bool = False) -> None:
    groups: dict[str, list[_Live]] = {}
    for entry in live:
        if not _is_u64(entry.fencing):
            out.append(Finding("fencing", "error", f"fencing_counter is {entry.fencing!r}, not an integer",
                               entry.batch_id))
            continue
        if entry.claim is None:
            continue
        problem = _claim_problem(entry.claim)
        if problem is not None:
            out.append(Finding("claim", "error", f"its claim {problem}", entry.batch_id,
                               fix="clear the claim" if _expired_claim(entry.claim, now_ms) else None))
            continue
        groups.setdefault(entry.claim["claim_id"], []).append(entry)
        token = int(_CLAIM_ID.match(entry.claim["claim_id"]).group(2))  # type: ignore[union-attr]
        live_claim = entry.claim["expires_at_epoch_ms"] > now_ms
        if entry.fencing < token:
            out.append(Finding("fencing", "error", f"fencing_counter {entry.fencing} is below the token {token} of "
                               f"its {'live ' if live_claim else ''}claim {entry.claim['claim_id']}: a later claim "
                               "could reuse a fencing token", entry.batch_id, fix=f"raise fencing_counter to {token}"))
        expires = entry.claim["expires_at_epoch_ms"]
        if now_ms - expires >= stale_claim_ms:
            out.append(Finding("stale_claim", "notice", f"claim {entry.claim['claim_id']} of "
                               f"{entry.claim['owner_id']} expired at {format_time(expires)}, "
                               f"{format_duration(now_ms - expires)} ago; its holder can still complete or "
                               "renew it until someone claims the batch (--fix --clear-stale ends it)",
                               entry.batch_id, fix="clear the claim" if clear_stale else None))
    for claim_id, members in groups.items():
        first = members[0]
        for other in members[1:]:
            differing = [name for name in _CLAIM_FIELDS if other.claim[name] != first.claim[name]]
            if other.session_id != first.session_id:
                differing.append("session")
            if other.fencing != first.fencing:
                differing.append("fencing_counter")
            if differing:
                expired = all(not _live_claim(m.claim, now_ms) for m in members)
                out.append(Finding("claim_mismatch", "error", f"claim {claim_id} differs from its other batch "
                                   f"{first.batch_id} in {', '.join(differing)}", other.batch_id,
                                   fix="clear the claim on all its batches" if expired else None))
    # One live claim per batch: a batch id recorded twice must not be held twice.
    holders: dict[str, set[str]] = {}
    for entry in live:
        if entry.claim is not None and _claim_problem(entry.claim) is None and _live_claim(entry.claim, now_ms):
            holders.setdefault(entry.batch_id, set()).add(entry.claim["claim_id"])
    for batch_id, claim_ids in holders.items():
        if len(claim_ids) > 1:
            out.append(Finding("double_claim", "error",
                               f"held by {len(claim_ids)} claims at once: {', '.join(sorted(claim_ids))}", batch_id))


def _live_claim(claim: dict[str, Any], now_ms: int) -> bool:
    return claim["expires_at_epoch_ms"] > now_ms


def _expired_claim(claim: Any, now_ms: int) -> bool:
    return (isinstance(claim, dict) and _is_u64(claim.get("expires_at_epoch_ms"))
            and claim["expires_at_epoch_ms"] <= now_ms)


def _check_tombstones(records: list[Any], live: list[_Live], out: list[Finding]) -> None:
    live_keys = {(e.session_id, e.source_key): e.batch_id for e in live if e.source_key is not None}
    for index, record in enumerate(records):
        where = f"tombstones[{index}]"
        raw = record.get("batch") if isinstance(record, dict) else None
        batch_id = raw.get("batch_id") if isinstance(raw, dict) and isinstance(raw.get("batch_id"), str) else None
        if raw is None:
            out.append(Finding("tombstone", "error", f"{where} is not a tombstone record", fix="drop it"))
            continue
        try:
            batch = QueuedWorkBatch.model_validate(raw, context=WireContext(strict=True))
        except ValidationError as err:
            out.append(Finding("tombstone", "error", f"{where} holds no valid QueuedWorkBatch: "
                               f"{describe_validation_error(err)}", batch_id))
            continue
        if record.get("outcome") not in ("completed", "cancelled") or not _is_u64(record.get("settled_at_ms")):
            out.append(Finding("tombstone", "error", f"{where} has a bad outcome or settled_at_ms", batch_id))
        if batch.source_key is None:
            out.append(Finding("tombstone", "error", f"{where} has no source key (a tombstone keeps one)",
                               batch_id, fix="drop the tombstone"))
            continue
        shadowed = live_keys.get((batch.session_id, batch.source_key))
        if shadowed is not None:
            out.append(Finding("tombstone_key", "error", f"{where} shares source key {batch.source_key!r} with live "
                               f"batch {shadowed} of session {batch.session_id!r}", batch_id,
                               fix="drop the tombstone (the live batch answers replays of the key)"))


# --------------------------------------------------------------------------- repairs


def repair(doc: dict[str, Any], findings: list[Finding], now_ms: int,
           *, stale_claim_ms: int = DEFAULT_STALE_CLAIM_MS) -> tuple[dict[str, Any], list[str]]:
    """A copy of `doc` with the safe repairs made, and what was changed (in words).
    Only findings with a `fix` are repaired; everything else is left for a person."""
    fixable = [f for f in findings if f.fix is not None]
    if not fixable or not isinstance(doc.get("batches"), list):
        return doc, []
    new = copy.deepcopy(doc)
    changes: list[str] = []
    codes = {f.code for f in fixable}
    batches: list[Any] = new["batches"]
    good = [r for r in batches if isinstance(r, dict) and isinstance(r.get("batch"), dict)]

    def bid(record: dict[str, Any]) -> str:
        return str(record["batch"].get("batch_id"))

    clear_claims = {f.batch_id for f in fixable if f.code in ("claim", "stale_claim")}
    mismatched = {f.batch_id for f in fixable if f.code == "claim_mismatch"}
    if mismatched:
        ids_of_claims = {r["claim"]["claim_id"] for r in good
                         if bid(r) in mismatched and isinstance(r.get("claim"), dict)}
        clear_claims |= {bid(r) for r in good
                         if isinstance(r.get("claim"), dict) and r["claim"].get("claim_id") in ids_of_claims}
    for record in good:
        if bid(record) in clear_claims and record.get("claim") is not None and _expired_claim(record["claim"], now_ms):
            changes.append(f"{bid(record)}: clear expired claim {record['claim'].get('claim_id')}")
            record["claim"] = None
    for finding in fixable:
        if finding.code == "fencing":
            token = int(finding.fix.rsplit(" ", 1)[1])  # "raise fencing_counter to N"
            for record in good:
                if bid(record) == finding.batch_id and _is_u64(record.get("fencing_counter")) \
                        and record["fencing_counter"] < token:
                    changes.append(f"{bid(record)}: raise fencing_counter {record['fencing_counter']} → {token}")
                    record["fencing_counter"] = token
    if "seq_order" in codes:
        seqs = [r["batch"].get("enqueue_seq") for r in good]
        if len(good) == len(batches) and all(_is_u64(s) for s in seqs) and len(set(seqs)) == len(seqs):
            new["batches"] = sorted(good, key=lambda r: r["batch"]["enqueue_seq"])
            changes.append("sort the batches by enqueue_seq")
    if "next_enqueue_seq" in codes:
        top = max((r["batch"]["enqueue_seq"] for r in good if _is_u64(r["batch"].get("enqueue_seq"))), default=0)
        changes.append(f"next_enqueue_seq {new.get('next_enqueue_seq')!r} → {top + 1}")
        new["next_enqueue_seq"] = top + 1
    drop = {f.message.split(" ", 1)[0] for f in fixable if f.code in ("tombstone", "tombstone_key")}
    if drop and isinstance(new.get("tombstones"), list):
        kept = []
        for index, record in enumerate(new["tombstones"]):
            if f"tombstones[{index}]" in drop:
                name = record.get("batch", {}).get("batch_id") if isinstance(record, dict) else None
                changes.append(f"drop tombstones[{index}] ({name})")
            else:
                kept.append(record)
        new["tombstones"] = kept
    return new, changes
