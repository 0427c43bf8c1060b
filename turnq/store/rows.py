"""What the database backends (SQLite, PostgreSQL) share: one row per batch and per
tombstone, and the diff that writes back only the rows a transaction changed.

A batch row holds the batch's wire JSON exactly as the JSON store's document holds it
(`codec.encode_batch_record`), its fencing counter and its claim in columns:

    turnq_batches(batch_id PK, session_id, enqueue_seq UNIQUE, batch JSON text,
                  fencing_counter, claim_id, owner_id, lease_token, claimed_at_ms, expires_at_ms)
    turnq_tombstones(batch_id PK, session_id, source_key, enqueue_seq, outcome, settled_at_ms, batch JSON text)
        indexes (session_id, settled_at_ms, enqueue_seq) and (session_id, source_key)
    turnq_meta(key PK, value)   schema_version, next_enqueue_seq, next_log_id, [tombstone_retention_ms]
                                (SQLite; PostgreSQL keeps its counters in sequences instead:
                                see pg_schema.py)
    turnq_log(id PK, entry JSON text)   the audit log

A transaction loads one session's batch rows (`Snapshot` remembers them), lets the engine
change the state, then `diff` says which rows to insert, update and delete. Tombstones are
not loaded (`RowState`): an enqueue with a source key looks one up by (session, key), a
settle inserts, vacuum and retention delete by range; only what needs every tombstone
(inspect, export, migrate, …) reads `state.tombstones`, which loads them then.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import StoreBusy, StoreUnreadable, StoreUnwritable
from ..limits import loads_json
from ..state import LazyTombstoneState, Lease, QueueState, StoredBatch, StoredTombstone, TombstoneSource
from . import codec

#: The version of the SQL schema (tables, columns, indexes), kept in turnq_meta. 2: the index
#: on turnq_tombstones (session_id, source_key); a version 1 store is upgraded by its next write.
#: SQLite's; PostgreSQL's schema has a version of its own (pg_schema.SCHEMA_VERSION, 3).
SCHEMA_VERSION = 2
#: The turnq_meta row of the tombstone retention (absent: kept until vacuum).
RETENTION_KEY = "tombstone_retention_ms"

BATCH_COLUMNS = ("batch_id", "session_id", "enqueue_seq", "batch", "fencing_counter",
                 "claim_id", "owner_id", "lease_token", "claimed_at_ms", "expires_at_ms")
TOMBSTONE_COLUMNS = ("batch_id", "session_id", "source_key", "enqueue_seq", "outcome", "settled_at_ms", "batch")


def dumps(value: Any) -> str:
    """JSON text as the JSON store writes its lines."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def claim_columns(lease: Lease | None) -> tuple[Any, ...]:
    if lease is None:
        return (None, None, None, None, None)
    return (lease.claim_id, lease.owner_id, lease.lease_token, lease.claimed_at_ms, lease.expires_at_ms)


def batch_row(stored: StoredBatch, batch_json: str | None = None) -> tuple[Any, ...]:
    """The row's values in BATCH_COLUMNS order (`batch_json`: the batch's JSON when already known)."""
    if batch_json is None:
        batch_json = dumps(codec.encode_batch_record(stored)["batch"])
    batch = stored.batch
    return (batch.batch_id, batch.session_id, batch.enqueue_seq, batch_json, stored.fencing,
            *claim_columns(stored.lease))


class BatchCache:
    """Rows already decoded by this store: a row read again unchanged (batch JSON, fencing
    counter and claim columns all equal) gives the same, already validated, batch and lease,
    so a long-lived process (a worker) validates each row once per change, not on every
    operation. Bounded: cleared when full."""

    def __init__(self, size: int = 50_000) -> None:
        self.size = size
        self._rows: dict[str, tuple[tuple[Any, ...], Any, Lease | None]] = {}

    def get(self, row: tuple[Any, ...]) -> StoredBatch | None:
        found = self._rows.get(row[0])
        if found is None or found[0] != row:
            return None
        return StoredBatch(found[1], row[4], found[2])

    def put(self, row: tuple[Any, ...], stored: StoredBatch) -> None:
        if len(self._rows) >= self.size:
            self._rows.clear()
        self._rows[row[0]] = (row, stored.batch, stored.lease)


def stored_from_row(row: tuple[Any, ...] | list[Any], location: str, cache: BatchCache | None = None) -> StoredBatch:
    """A batch row (BATCH_COLUMNS order) back into a StoredBatch; StoreUnreadable when broken."""
    row = tuple(row)
    if cache is not None:
        hit = cache.get(row)
        if hit is not None:
            return hit
    stored = _decode_row(row, location)
    if cache is not None:
        cache.put(row, stored)
    return stored


def _decode_row(row: tuple[Any, ...] | list[Any], location: str) -> StoredBatch:
    batch_id, session_id, seq, batch_json, fencing, claim_id, owner_id, token, claimed, expires = row
    claim = None
    if claim_id is not None:
        claim = {"claim_id": claim_id, "owner_id": owner_id, "lease_token": token,
                 "claimed_at_epoch_ms": claimed, "expires_at_epoch_ms": expires}
    record = {"batch": _loads(batch_json, batch_id, location), "fencing_counter": fencing, "claim": claim}
    stored = codec.decode_batch_record(record, location)
    batch = stored.batch
    if (batch.batch_id, batch.session_id, batch.enqueue_seq) != (batch_id, session_id, seq):
        raise StoreUnreadable(f"store {location} is unreadable: the row of batch {batch_id} does not match "
                              "its batch JSON (id, session or enqueue_seq); it was left as it is")
    return stored


def tombstone_row(tomb: StoredTombstone) -> tuple[Any, ...]:
    record = codec.encode_tombstone_record(tomb)
    batch = tomb.batch
    return (batch.batch_id, batch.session_id, tomb.source_key, batch.enqueue_seq, record["outcome"],
            record["settled_at_ms"], dumps(record["batch"]))


def tombstone_from_row(row: tuple[Any, ...] | list[Any], location: str) -> StoredTombstone:
    """A tombstone row (columns batch_id, outcome, settled_at_ms, batch) back into a StoredTombstone."""
    batch_id, outcome, settled, batch_json = row
    record = {"batch": _loads(batch_json, batch_id, location), "outcome": outcome, "settled_at_ms": settled}
    return codec.decode_tombstone_record(record, location)


def _loads(text: Any, batch_id: str, location: str) -> Any:
    try:
        return loads_json(text)
    except (TypeError, ValueError) as err:
        raise StoreUnreadable(f"store {location} is unreadable: the JSON of batch {batch_id} is broken "
                              f"({err}); it was left as it is") from None


def raw_batch(row: tuple[Any, ...] | list[Any]) -> dict[str, Any]:
    """A batch row as the JSON document's record, unvalidated (for `turnq doctor`)."""
    _batch_id, _session, _seq, batch_json, fencing, claim_id, owner_id, token, claimed, expires = row
    claim = None
    if claim_id is not None:
        claim = {"claim_id": claim_id, "owner_id": owner_id, "lease_token": token,
                 "claimed_at_epoch_ms": claimed, "expires_at_epoch_ms": expires}
    return {"batch": _loads_raw(batch_json), "fencing_counter": fencing, "claim": claim}


def raw_tombstone(row: tuple[Any, ...] | list[Any]) -> dict[str, Any]:
    _batch_id, outcome, settled, batch_json = row
    return {"batch": _loads_raw(batch_json), "outcome": outcome, "settled_at_ms": settled}


def _loads_raw(text: Any) -> Any:
    try:
        return loads_json(text)
    except (TypeError, ValueError):
        return text  # doctor reports it


def raw_document(next_seq: Any, batch_rows: list[Any], tombstone_rows: list[Any]) -> dict[str, Any]:
    return {"format": codec.FORMAT, "schema_version": codec.SCHEMA_VERSION, "next_enqueue_seq": next_seq,
            "batches": [raw_batch(row) for row in batch_rows],
            "tombstones": [raw_tombstone(row) for row in tombstone_rows]}


# ----------------------------------------------------------------- what changed


@dataclass
class Snapshot:
    """The rows a transaction loaded, to tell afterwards which ones it changed."""

    next_seq: int
    batches: dict[str, tuple[StoredBatch, Any, int, Lease | None, str]] = field(default_factory=dict)
    tombstones: set[str] = field(default_factory=set)
    #: The store's tombstone retention as loaded: a transaction that changes
    #: `state.tombstone_retention_ms` (migrate, `Store.write_setting`) writes it back.
    retention_ms: int | None = None

    def add_batch(self, stored: StoredBatch, batch_json: str) -> None:
        self.batches[stored.batch_id] = (stored, stored.batch, stored.fencing, stored.lease, batch_json)

    def add_tombstone(self, tomb: StoredTombstone) -> None:
        self.tombstones.add(tomb.batch.batch_id)


@dataclass
class Changes:
    insert_batches: list[tuple[Any, ...]] = field(default_factory=list)
    #: Rows in BATCH_COLUMNS order, for UPDATE … WHERE batch_id = (the first value).
    update_batches: list[tuple[Any, ...]] = field(default_factory=list)
    delete_batches: list[str] = field(default_factory=list)
    insert_tombstones: list[tuple[Any, ...]] = field(default_factory=list)
    delete_tombstones: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.insert_batches or self.update_batches or self.delete_batches
                    or self.insert_tombstones or self.delete_tombstones)


def diff(snapshot: Snapshot, state: QueueState) -> Changes:
    """The rows to write so the tables hold `state` where they held `snapshot`. Costs the
    size of the loaded scope (one session), not of the store."""
    changes = Changes()
    seen: set[str] = set()
    for batches in state.sessions.values():
        for stored in batches:
            batch_id = stored.batch_id
            seen.add(batch_id)
            old = snapshot.batches.get(batch_id)
            if old is None:
                changes.insert_batches.append(batch_row(stored))
                continue
            _old_stored, old_batch, old_fencing, old_lease, old_json = old
            same_batch = stored.batch is old_batch or stored.batch == old_batch
            if same_batch and stored.fencing == old_fencing and stored.lease == old_lease:
                continue
            changes.update_batches.append(batch_row(stored, old_json if same_batch else None))
    changes.delete_batches = [batch_id for batch_id in snapshot.batches if batch_id not in seen]
    tomb_ids: set[str] = set()
    # Only the tombstones in memory (never loads them): the snapshot knows just the ones loaded.
    for tombs in state.held_tombstones().values():
        for tomb in tombs:
            tomb_ids.add(tomb.batch.batch_id)
            if tomb.batch.batch_id not in snapshot.tombstones:
                changes.insert_tombstones.append(tombstone_row(tomb))
    changes.delete_tombstones = [batch_id for batch_id in snapshot.tombstones if batch_id not in tomb_ids]
    return changes


def load_batches(rows: list[Any], state: QueueState, snapshot: Snapshot | None, location: str,
                 cache: BatchCache | None = None) -> None:
    """Batch rows (in enqueue_seq order) into the state (and the snapshot)."""
    for row in rows:
        stored = stored_from_row(row, location, cache)
        state.sessions.setdefault(stored.batch.session_id, []).append(stored)
        if snapshot is not None:
            snapshot.add_batch(stored, row[3])


def load_tombstones(rows: list[Any], state: QueueState, snapshot: Snapshot | None, location: str) -> None:
    for row in rows:
        tomb = tombstone_from_row(row, location)
        state.tombstones.setdefault(tomb.batch.session_id, []).append(tomb)
        if snapshot is not None:
            snapshot.add_tombstone(tomb)


# ----------------------------------------------------------------- tombstones left in the tables


#: The tombstones of a database transaction stay in their table (see state.LazyTombstoneState).
RowState = LazyTombstoneState
TombstoneRows = TombstoneSource


def log_entry(row_id: int, text: str) -> dict[str, Any] | None:
    """A log row as an entry; None for a torn or hostile row (not JSON, nested too deep, not an
    object): skipped, as the JSON store skips such a line — the log is a record, never a reason
    for a command to fail."""
    try:
        entry = loads_json(text)
    except (TypeError, ValueError, RecursionError):
        return None
    return {"id": row_id, **entry} if isinstance(entry, dict) else None


def log_entries(found: Any) -> list[dict[str, Any]]:
    """The well-formed entries of turnq_log rows (id, entry text)."""
    return [entry for entry in (log_entry(row_id, text) for row_id, text in found) if entry is not None]


def check_version(version: Any, location: str, supported: int = SCHEMA_VERSION) -> None:
    """Refuse a store of a version this turnq does not read (`supported`: the newest it reads)."""
    if version is None or not isinstance(version, int) or version < 1:
        raise StoreUnreadable(f"store {location} is unreadable: invalid schema_version {version!r} in turnq_meta; "
                              "it was left as it is")
    if version > supported:
        raise StoreUnreadable(
            f"store {location} was written by a newer turnq (schema version {version}; this turnq reads "
            f"{supported}): upgrade turnq to use it; it was left as it is"
        )


def replace_document(store: Any, document: dict[str, Any], *, backup_path: Any = None,
                     expected: dict[str, Any] | None = None) -> str | None:
    """`Store.replace_document` for a database: the whole content replaced by `document` (which
    must be a store document turnq reads) in one transaction; the old raw document is saved as
    JSON at `backup_path` first, when given. `expected`: the raw document the caller checked;
    StoreBusy when the store no longer holds it."""
    try:
        new = codec.decode(document, store.location)
    except StoreUnreadable as err:
        raise StoreUnwritable(f"cannot put this document into store {store.location}: {err.message}") from None
    old_raw = store.raw_document()
    if expected is not None and old_raw != expected:
        raise StoreBusy(f"store {store.location} changed while it was checked; nothing was changed: "
                        "run the command again")
    try:
        old_text = codec.encode(codec.decode(old_raw, store.location)) if old_raw else None
    except StoreUnreadable:
        old_text = None
    written = None
    if backup_path is not None and old_raw:  # backup_path: the stem; the backup is STEM[-N].json
        from . import files

        text = json.dumps(old_raw, ensure_ascii=False) + "\n"
        written = files.write_backup(backup_path, ".json", text.encode("utf-8"), store.path, store.location)
    with store.transaction(None) as state:
        if old_text is not None and codec.encode(state) != old_text:
            raise StoreBusy(f"store {store.location} changed while it was checked; nothing was changed: "
                            "run the command again")
        state.next_seq, state.sessions, state.tombstones = new.next_seq, new.sessions, new.tombstones
        state.changed = True
    return written
