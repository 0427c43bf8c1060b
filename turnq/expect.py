"""Assertions on a session's queue (`turnq expect`): pure functions over a `QueueState`.

Each check compares one expected value with what the state holds at `now`; the
report says, per check, what was expected, what was found, and whether they agree.
Nothing here writes, prints or exits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import engine
from .errors import InvalidInput
from .materialize import CheckpointWork, TurnWork, materialize
from .models import BOUNDARIES, TextItem
from .state import QueueState

#: `--state` names: `expired` is a batch whose lease ran out (the views call it lease_expired).
STATES: dict[str, str] = {"ready": "ready", "delayed": "delayed", "held": "held", "expired": "lease_expired",
                          "lease_expired": "lease_expired"}


@dataclass(frozen=True)
class Check:
    name: str
    expected: Any
    actual: Any

    @property
    def ok(self) -> bool:
        return self.expected == self.actual

    def to_wire(self) -> dict[str, Any]:
        return {"check": self.name, "ok": self.ok, "expected": self.expected, "actual": self.actual}

    def expected_text(self) -> str:
        return _text(self.expected)

    def actual_text(self) -> str:
        return _text(self.actual)


@dataclass(frozen=True)
class Expectations:
    """What `turnq expect` was asked; None: not checked."""

    count: int | None = None
    state: str | None = None
    source_keys: list[str] | None = None
    next_claim: list[str] | None = None
    boundary: str = "idle"
    next_text: str | None = None

    def empty(self) -> bool:
        return self.count is None and self.source_keys is None and self.next_claim is None and self.next_text is None


@dataclass(frozen=True)
class Report:
    session_id: str
    now_ms: int
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def to_wire(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "now_ms": self.now_ms, "ok": self.ok,
                "checks": [check.to_wire() for check in self.checks]}


def check(state: QueueState, session_id: str, expected: Expectations, now_ms: int) -> Report:
    """Run every requested check against the session at `now_ms`."""
    if expected.state is not None and expected.count is None:
        raise InvalidInput("--state: counts only with --count N")
    if expected.empty():
        raise InvalidInput("nothing to check: give --count, --source-keys, --next-claim or --next-text")
    if expected.state is not None and expected.state not in STATES:
        raise InvalidInput(f"--state: unknown state {expected.state!r}: expected ready, delayed, held or expired")
    if expected.boundary not in BOUNDARIES:
        raise InvalidInput(f"--boundary: unknown boundary {expected.boundary!r}: expected idle or "
                           "active_turn_checkpoint")
    batches = state.session(session_id)
    checks: list[Check] = []
    if expected.count is not None:
        if expected.state is None:
            checks.append(Check("count", expected.count, len(batches)))
        else:
            wanted = STATES[expected.state]
            found = sum(1 for b in batches if engine.batch_state(b, now_ms) == wanted)
            checks.append(Check(f"count {expected.state}", expected.count, found))
    if expected.source_keys is not None:
        keys = [b.batch.source_key for b in batches if b.batch.source_key is not None]
        checks.append(Check("source keys", list(expected.source_keys), keys))
    run = [s.batch for s in engine.plan_claim(state, session_id, expected.boundary, engine.DEFAULT_MAX_BATCHES,
                                              now_ms)]
    if expected.next_claim is not None:
        actual_ids = [b.batch_id for b in run]
        shown = [_match(ref, run) for ref in expected.next_claim]
        # An expected entry may be a batch id, a unique prefix of one, or a source key:
        # when each names the batch at its place, report the actual ids as expected.
        exp = actual_ids if shown == actual_ids and len(shown) == len(actual_ids) else list(expected.next_claim)
        checks.append(Check(f"next claim ({expected.boundary})", exp, actual_ids))
    if expected.next_text is not None:
        checks.append(Check(f"next text ({expected.boundary})", expected.next_text,
                            turn_text(materialize(run, expected.boundary)) if run else None))
    return Report(session_id, now_ms, checks)


def _match(ref: str, run: list[Any]) -> str | None:
    prefix = ref.rstrip("…")
    for batch in run:
        if ref == batch.batch_id or ref == batch.source_key:
            return batch.batch_id
    hits = [b.batch_id for b in run if prefix and b.batch_id.startswith(prefix)]
    return hits[0] if len(hits) == 1 else None


def turn_text(work: TurnWork | CheckpointWork) -> str:
    """The text a claim materialises into: the turn input's texts (idle) or the injected messages'
    contents (checkpoint), then each process wake's turn-cause text, joined by newlines."""
    if isinstance(work, TurnWork):
        parts = [item.text for item in work.turn_input.items if isinstance(item, TextItem) and item.text]
    else:
        parts = [message.content for message in work.messages if message.content]
    parts.extend(cause.text for cause in work.turn_causes)
    return "\n".join(parts)


def split_list(text: str) -> list[str]:
    """`K1,K2,…` as a list; an empty text is the empty list."""
    return [] if text == "" else [part.strip() for part in text.split(",")]


def _text(value: Any) -> str:
    if value is None:
        return "(nothing)"
    if isinstance(value, list):
        return ", ".join(value) if value else "(none)"
    if isinstance(value, str):
        return repr(value)
    return str(value)
