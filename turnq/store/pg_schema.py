"""The PostgreSQL backend's SQL schema (version 3) and the upgrade of a version 1 or 2 store.

Version 3 = version 2 plus the index on turnq_tombstones (session_id, source_key) by which an
enqueue with a source key looks its tombstone up (`pg_tombstones.KEY_INDEX`; tombstones are no
longer loaded by every write). Version 2 takes the store-wide counters out of every write's path (version 1 kept them in
`turnq_meta` rows that every writer updated, so all sessions' writers ran one after another):

- enqueue sequence: `turnq_enqueue_seq` (a PostgreSQL sequence, bigint) plus the offset in the
  `turnq_meta` row `enqueue_seq_offset` (numeric: any u64). The next enqueue_seq is
  offset + nextval(sequence). Only a store-wide transaction (which holds the store lock
  exclusively, so no nextval runs beside it) sets the counter: it rewrites the offset so that the
  next nextval gives the wanted value. So a store whose counter is above 2^63 (imported, migrated)
  works like any other, and the sequence itself never leaves bigint in practice (2^63 enqueues).
  The spec's order is "store-wide, strictly increasing, never reused": nextval gives each enqueue
  a value above every value taken before it; a transaction that rolls back after taking one leaves
  a gap (never reused). A session's batches are claimed in enqueue_seq order: one session's
  writers are serialised by its advisory lock, so its batches' values increase in commit order.
- audit ids: `turnq_log_ids` (a sequence), taken by `turnq_append_log` only after the writing
  transaction has its transaction id; `PostgresStore.read_log` relies on that (see there).
"""

from __future__ import annotations

import re

from . import pg_tombstones

SCHEMA_VERSION = 3

TABLES = f"""
CREATE TABLE IF NOT EXISTS turnq_meta (key text PRIMARY KEY, value numeric(20) NOT NULL);
CREATE TABLE IF NOT EXISTS turnq_batches (
    batch_id text PRIMARY KEY,
    session_id text NOT NULL,
    enqueue_seq numeric(20) NOT NULL UNIQUE,
    batch text NOT NULL,
    fencing_counter numeric(20) NOT NULL,
    claim_id text, owner_id text, lease_token text, claimed_at_ms numeric(20), expires_at_ms numeric(20)
);
CREATE INDEX IF NOT EXISTS turnq_batches_session ON turnq_batches (session_id, enqueue_seq);
CREATE TABLE IF NOT EXISTS turnq_tombstones (
    batch_id text PRIMARY KEY,
    session_id text NOT NULL,
    source_key text NOT NULL,
    enqueue_seq numeric(20) NOT NULL,
    outcome text NOT NULL,
    settled_at_ms numeric(20) NOT NULL,
    batch text NOT NULL
);
CREATE INDEX IF NOT EXISTS turnq_tombstones_session ON turnq_tombstones (session_id, settled_at_ms, enqueue_seq);
{pg_tombstones.KEY_INDEX};
CREATE TABLE IF NOT EXISTS turnq_log (id bigint PRIMARY KEY, entry text NOT NULL);
INSERT INTO turnq_meta (key, value) VALUES ('schema_version', {SCHEMA_VERSION}), ('enqueue_seq_offset', 0)
    ON CONFLICT (key) DO NOTHING
"""

#: The revision of `turnq_append_log` that this turnq writes, named in the function's comment. The
#: function can change without a new schema version (same arguments, same meaning; turnq of an
#: older revision go on working with the newer body): the first write of a process replaces an
#: older one, never a newer one (`postgres.PostgresStore._ensure_schema`). r1 trimmed the log with one range delete
#: that grew with every row deleted since the table's last vacuum.
LOG_FUNCTION_REVISION = 2


def log_function_is_older(comment: str | None) -> bool:
    """Is the store's `turnq_append_log` (its comment, None: revision 1) older than this turnq's?
    A newer one (written by a newer turnq) is left as it is."""
    found = re.fullmatch(r"turnq_append_log r(\d+)", comment or "")
    return found is None or int(found.group(1)) < LOG_FUNCTION_REVISION

#: The audit log's append, its revision in its comment.
LOG_FUNCTION = f"""
CREATE OR REPLACE FUNCTION turnq_append_log(entries text[], keep bigint) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    n integer := coalesce(cardinality(entries), 0);
    first_id bigint;
    new_id bigint;
BEGIN
    -- The transaction id first, the entries' ids after it: an id that a reader cannot see yet
    -- then always belongs to a transaction whose id was handed out before the reader looked.
    PERFORM pg_current_xact_id();
    FOR i IN 1..n LOOP
        new_id := nextval('turnq_log_ids');
        first_id := coalesce(first_id, new_id);
        IF i > n - keep THEN  -- only the newest `keep` are stored; every entry uses up its id
            INSERT INTO turnq_log (id, entry) VALUES (new_id, entries[i]);
        END IF;
        -- Retention: id i pushes id i - keep out, one row found by its key. (A range
        -- "id <= last - keep" walks every row deleted since the table's last vacuum, on every
        -- write.) A row another writer is deleting right now is skipped, never waited for.
        DELETE FROM turnq_log WHERE id = (
            SELECT l.id FROM turnq_log l WHERE l.id = new_id - keep FOR UPDATE SKIP LOCKED);
    END LOOP;
    -- What that misses (a row still in flight as its successor was taken; rows kept under a
    -- larger `keep` than this one): swept by the whole range once every 1024 ids.
    IF new_id / 1024 <> (first_id - 1) / 1024 THEN
        DELETE FROM turnq_log WHERE id = ANY(ARRAY(
            SELECT l.id FROM turnq_log l WHERE l.id <= new_id - keep FOR UPDATE SKIP LOCKED));
    END IF;
END
$fn$;
COMMENT ON FUNCTION turnq_append_log(text[], bigint) IS 'turnq_append_log r{LOG_FUNCTION_REVISION}'
"""

#: Sequences and functions of version 2 (also what an upgrade from version 1 adds).
OBJECTS = f"""
CREATE SEQUENCE IF NOT EXISTS turnq_enqueue_seq AS bigint MINVALUE 1 START 1 NO CYCLE;
CREATE SEQUENCE IF NOT EXISTS turnq_log_ids AS bigint MINVALUE 1 START 1 NO CYCLE;
{LOG_FUNCTION}"""

#: The revision of `turnq_append_log` in a store (None: no comment, revision 1).
LOG_FUNCTION_IN_STORE = "SELECT obj_description(to_regprocedure('turnq_append_log(text[], bigint)'), 'pg_proc')"

U64_MAX = 2**64 - 1

#: What nextval would give next, without taking it (no offset added).
_PEEK_RAW = "(SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM turnq_enqueue_seq)"

#: The next enqueue_seq, taken (one round trip; no row locked). At 2^64-1, the last value a store
#: can hold as its next one, it is returned without taking it: the engine refuses that enqueue
#: (exit 10), and nextval, which no rollback undoes, would leave the counter past u64.
TAKE_SEQ = (f"SELECT CASE WHEN value + {_PEEK_RAW} >= {U64_MAX} THEN value + {_PEEK_RAW} "
            "ELSE value + nextval('turnq_enqueue_seq') END FROM turnq_meta WHERE key = 'enqueue_seq_offset'")

#: TAKE_SEQ only if no tombstone of session %s holds source key %s (no row returned then): sent in
#: one pipeline with that tombstone lookup (postgres._KeyLookup), so an enqueue that replays a
#: tombstone takes no value and one that does not gets its value without a round trip of its own.
TAKE_SEQ_UNLESS_HELD = (f"{TAKE_SEQ} AND NOT EXISTS "
                        "(SELECT 1 FROM turnq_tombstones WHERE session_id = %s AND source_key = %s)")

#: The next enqueue_seq, not taken (for reads and store-wide transactions).
PEEK_SEQ = f"SELECT value + {_PEEK_RAW} FROM turnq_meta WHERE key = 'enqueue_seq_offset'"

#: Make the next enqueue_seq be %s. Only under the store lock held exclusively.
SET_SEQ = f"UPDATE turnq_meta SET value = %s::numeric - {_PEEK_RAW} WHERE key = 'enqueue_seq_offset'"

LOG_MAX_ID = 2**63 - 1

#: Are the audit ids used up (the sequence, bigint, handed out 2^63-1)? Read as a transaction
#: opens, so that such a store refuses an operation before it takes anything (a nextval of the
#: enqueue sequence is never undone).
LOG_IDS_USED_UP = f"(SELECT is_called AND last_value >= {LOG_MAX_ID} FROM turnq_log_ids)"

#: TAKE_SEQ, unless the audit ids are used up (no row then: the operation is refused).
TAKE_SEQ_IF_LOGGABLE = f"{TAKE_SEQ} AND NOT {LOG_IDS_USED_UP}"


def statements(script: str) -> list[str]:
    """The script's statements; a function body ($fn$ … $fn$) stays whole."""
    out, current, in_body = [], [], False
    for line in script.splitlines():
        in_body ^= line.count("$fn$") % 2 == 1
        current.append(line)
        if not in_body and line.rstrip().endswith(";"):
            out.append("\n".join(current).rstrip().rstrip(";"))
            current = []
    if "\n".join(current).strip():
        out.append("\n".join(current))
    return [s for s in out if s.strip()]


def upgrade(conn: object, version: int, location: str) -> None:
    """A version 1 or 2 store becomes version 3 (caller: in a transaction holding the store lock
    exclusively, so no older writer is half-way)."""
    if version == 1:
        upgrade_from_1(conn, location)
    conn.execute(pg_tombstones.KEY_INDEX)  # type: ignore[attr-defined]
    conn.execute("UPDATE turnq_meta SET value = %s WHERE key = 'schema_version'",  # type: ignore[attr-defined]
                 (SCHEMA_VERSION,))


def upgrade_from_1(conn: object, location: str) -> None:
    """Version 1's counters become version 2's sequences (caller: `upgrade`): sequences created
    from the meta rows."""
    from ..errors import StoreUnreadable

    execute = conn.execute  # type: ignore[attr-defined]
    meta = dict(execute("SELECT key, value FROM turnq_meta WHERE key IN ('next_enqueue_seq', 'next_log_id')"))
    if set(meta) != {"next_enqueue_seq", "next_log_id"}:
        raise StoreUnreadable(f"store {location} is unreadable: turnq_meta of schema version 1 lacks "
                              f"{sorted({'next_enqueue_seq', 'next_log_id'} - set(meta))}; it was left as it is")
    next_log_id = int(meta["next_log_id"])
    if not 1 <= next_log_id <= LOG_MAX_ID:
        raise StoreUnreadable(f"store {location} cannot be upgraded to schema version {SCHEMA_VERSION}: its "
                              f"next audit id {next_log_id} is beyond what a PostgreSQL sequence holds; "
                              "it was left as it is")
    for statement in statements(OBJECTS):
        execute(statement)
    execute("SELECT setval('turnq_log_ids', %s, false)", (next_log_id,))
    execute("INSERT INTO turnq_meta (key, value) VALUES ('enqueue_seq_offset', %s - 1)", (meta["next_enqueue_seq"],))
    execute("DELETE FROM turnq_meta WHERE key IN ('next_enqueue_seq', 'next_log_id')")
