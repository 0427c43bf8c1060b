"""NUL (U+0000) is refused in every identifier, on every backend, before anything is written.

PostgreSQL cannot keep NUL in a text column: a batch whose source key (or owner, claim id,
lease token, …) held one could be enqueued into a file store, but not settled on PostgreSQL
nor migrated to it. So identifiers — everything but free text — are checked at input: a
session id, source key, owner, reason, claim id, lease token, merge key, process id,
idempotency key, item or image id. Free text (a text item, a wake's input) may hold NUL:
every store keeps it inside JSON, escaped as \\u0000.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from .errors import InvalidInput
from .ids import rust_debug_str

NUL = "\x00"
#: Fields of free text, not identifiers.
FREE_TEXT = frozenset({"text", "input", "content"})


def refusal(what: str, value: str) -> InvalidInput:
    return InvalidInput(f"{what} {rust_debug_str(value)} holds a NUL character (U+0000), which no "
                        "identifier may hold (PostgreSQL cannot store it); nothing was changed")


def check(what: str, value: Any) -> None:
    """Refuse `value` (a string, or strings) when it holds NUL; `what` names it."""
    if isinstance(value, str):
        if NUL in value:
            raise refusal(what, value)
    elif isinstance(value, (list, tuple)):
        for item in value:
            check(what, item)


def check_model(value: Any, what: str) -> None:
    """Refuse a wire model (a draft, a batch) when any identifier in it holds NUL."""
    found = find(value, what)
    if found is not None:
        raise refusal(*found)


def find(value: Any, where: str) -> tuple[str, str] | None:
    """(where, the string) of the first identifier holding NUL in a model, list or string."""
    if isinstance(value, str):
        return (where, value) if NUL in value else None
    if isinstance(value, BaseModel):
        for key, inner in value.__dict__.items():
            if key in FREE_TEXT and isinstance(inner, str):
                continue
            found = find(inner, f"{where}.{key}")
            if found is not None:
                return found
    elif isinstance(value, (list, tuple)):
        for index, inner in enumerate(value):
            found = find(inner, f"{where}[{index}]")
            if found is not None:
                return found
    elif isinstance(value, dict):  # image blobs by id; options' values are data, not identifiers
        for key, inner in value.items():
            if isinstance(key, str) and NUL in key:
                return f"{where} key", key
            if isinstance(inner, BaseModel):
                found = find(inner, f"{where}.{key}")
                if found is not None:
                    return found
    return None


def find_in_state(state: Any) -> str | None:
    """A description of the first identifier holding NUL in a queue state (None: none does),
    for refusing to migrate such a store before writing anything."""
    for session_id in [*state.sessions, *state.tombstones]:
        if NUL in session_id:
            return f"session {rust_debug_str(session_id)}"
    for stored in state.all_batches():
        found = find(stored.batch, "batch") or _lease(stored.lease)
        if found is not None:
            return f"{found[0]} {rust_debug_str(found[1])} of batch {stored.batch.batch_id}"
    for tomb in state.all_tombstones():
        found = find(tomb.batch, "tombstone")
        if found is not None:
            return f"{found[0]} {rust_debug_str(found[1])} of tombstone {tomb.batch.batch_id}"
    return None


def _lease(lease: Any) -> tuple[str, str] | None:
    if lease is None:
        return None
    fields: Iterable[tuple[str, str]] = (("claim.claim_id", lease.claim_id), ("claim.owner_id", lease.owner_id),
                                         ("claim.lease_token", lease.lease_token))
    return next(((where, value) for where, value in fields if NUL in value), None)
