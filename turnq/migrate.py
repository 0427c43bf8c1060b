"""Copy a whole queue from one store to another (`turnq migrate --from A --to B`).

Everything the engine keeps moves: every live batch with its claim (lease, fencing
counter), every tombstone, the store-wide enqueue counter and the store's settings (the
tombstone retention) — so ids, fencing tokens and replays go on in the new store exactly as
in the old one. The copy is one
transaction on the target. Afterwards both stores are read back and compared (by
`turnq.diff.diff_states`, and the two store documents byte for byte): the result says
whether they hold the same queue. The audit log is not copied: the target's log gets
one `migrate` entry.

Refused before anything is written: a source that does not exist (a typo must not read as
an empty queue and wipe the target: NotFound), a source holding an identifier with NUL
(which PostgreSQL cannot store), a target that holds anything (unless `replace`), and the
replacement of a non-empty target by an empty source (unless `allow_empty` too). A replaced
JSON or SQLite target keeps a backup of what it held (`STORE.bak-NOW`, as `doctor --fix`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from .diff import diff_states
from . import identifiers
from .errors import InvalidInput, NotFound
from .state import QueueState
from .store import Store, codec


@dataclass(frozen=True)
class Migration:
    source: str
    target: str
    sessions: int
    batches: int
    claims: int
    tombstones: int
    next_enqueue_seq: int
    #: Batches and tombstones the target held before (only with `replace`).
    replaced_batches: int
    replaced_tombstones: int
    verified: bool
    #: The differences found by the verification (empty when verified).
    differences: list[dict[str, Any]] = field(default_factory=list)
    #: Where the replaced target's old content was kept (None: nothing replaced, or no file).
    backup: str | None = None
    #: The tombstone retention the target now has, as the source had it (None: kept until vacuum).
    tombstone_retention_ms: int | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "from": self.source, "to": self.target, "sessions": self.sessions, "batches": self.batches,
            "claims": self.claims, "tombstones": self.tombstones, "next_enqueue_seq": self.next_enqueue_seq,
            "replaced": {"batches": self.replaced_batches, "tombstones": self.replaced_tombstones},
            "verified": self.verified, "differences": self.differences, "backup": self.backup,
            "settings": {"tombstone_retention_ms": self.tombstone_retention_ms},
        }


def _counts(state: QueueState) -> tuple[int, int, int]:
    batches = state.all_batches()
    return len(batches), sum(1 for b in batches if b.lease is not None), len(state.all_tombstones())


def _is_empty(state: QueueState) -> bool:
    return not state.sessions and not state.tombstones and state.next_seq <= 1


#: The steps `migrate` reports to its `progress` callback: read, write, verify.
STEPS = 3


def migrate(source: Store, target: Store, *, now_ms: int, replace: bool = False, allow_empty: bool = False,
            progress: Callable[[int, int], None] | None = None) -> Migration:
    """Copy `source` into `target` (refused, InvalidInput, when the target holds anything and
    `replace` is false, or when it would be emptied and `allow_empty` is false), then read
    both back and compare them. `progress(step, STEPS)` is called after each step."""
    report = progress or (lambda done, total: None)
    if source.location == target.location:
        raise InvalidInput(f"--to: {target.location} is the store being copied (--from)")
    if not source.exists():
        raise NotFound(f"--from: there is no store at {source.location}; nothing was changed")
    report(0, STEPS)
    copied = source.read()
    report(1, STEPS)
    holding_nul = identifiers.find_in_state(copied)
    if holding_nul is not None:
        raise InvalidInput(f"--from: store {source.location} holds a NUL character (U+0000) in {holding_nul}, "
                           "which no identifier may hold (PostgreSQL cannot store it); nothing was changed")
    batches, claims, tombstones = _counts(copied)
    backup = None
    with target.transaction(None) as state:
        old_batches, _old_claims, old_tombstones = _counts(state)
        if not _is_empty(state):
            _check_replace(target, state, replace, allow_empty, not batches and not tombstones)
            backup = target.keep_backup(state, str(now_ms))
        state.next_seq = copied.next_seq
        state.sessions = copied.sessions
        state.tombstones = copied.tombstones
        state.tombstone_retention_ms = copied.tombstone_retention_ms
        state.changed = True
        state.record("migrate", now_ms, None, [], source=source.location, batches=batches, claims=claims,
                     tombstones=tombstones, replaced=old_batches + old_tombstones if replace else None)
    report(2, STEPS)
    differences = verify(source, target)
    report(3, STEPS)
    return Migration(
        source=source.location, target=target.location, sessions=len(copied.session_ids()), batches=batches,
        claims=claims, tombstones=tombstones, next_enqueue_seq=copied.next_seq,
        replaced_batches=old_batches if replace else 0, replaced_tombstones=old_tombstones if replace else 0,
        verified=not differences, differences=differences, backup=backup,
        tombstone_retention_ms=copied.tombstone_retention_ms,
    )


def _check_replace(target: Store, state: QueueState, replace: bool, allow_empty: bool, source_empty: bool) -> None:
    batches, _claims, tombstones = _counts(state)
    held = f"{batches} batch(es), {tombstones} tombstone(s), next enqueue_seq {state.next_seq}"
    if not replace:
        raise InvalidInput(f"--to: store {target.location} is not empty ({held}); give --replace to overwrite it")
    if source_empty and not allow_empty:
        raise InvalidInput(f"--from: the source is empty, and --replace would empty store {target.location} "
                           f"({held}); give --allow-empty as well if that is what you want")


def verify(source: Store, target: Store) -> list[dict[str, Any]]:
    """Read both stores back: their differences (none when they hold the same queue)."""
    a, b = source.read(), target.read()
    found = [change.to_wire() for change in diff_states(a, b, a_name=source.location,
                                                         b_name=target.location).changes]
    if not found and codec.encode(a) != codec.encode(b):
        found.append({"session_id": "", "batch_id": "", "change": "document_differs",
                      "details": {"why": "the two stores' documents differ byte for byte"}})
    return found
