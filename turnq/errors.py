"""One exception hierarchy for everything turnq refuses, and the exit status of each.

The core raises these; only the CLI turns them into exit codes and stderr lines
(in one place, `turnq.cli.app`). Constructors never print.
"""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    """The process exit codes of the `turnq` command (spec/cli.md, *Exit codes*)."""

    OK = 0
    # A check found problems (`turnq doctor`; `expect`, `diff`): the exit code of a failed
    # test, as `test`, `cmp` and `diff` use it.
    CHECK_FAILED = 1
    USAGE = 2
    EMPTY = 3
    LEASE_LOST = 4
    NOT_FOUND = 5
    CONFLICT = 6
    STORE_UNREADABLE = 7
    STORE_BUSY = 8
    # turnq addition: the store could not be written (read-only file, full disk,
    # missing folder). The store is left as it was.
    STORE_UNWRITABLE = 9
    # An operation would take a store counter (enqueue sequence, fencing counter, audit id) past its limit.
    LIMIT = 10
    # A bug: an unexpected failure. sysexits' EX_SOFTWARE, so CI tells a crash from a failed check.
    INTERNAL = 70

    @property
    def code_name(self) -> str:
        return self.name.lower()


class TurnqError(Exception):
    """Base of every error turnq raises on purpose. `str(err)` is a one-line message."""

    exit_status: ExitStatus = ExitStatus.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def code_name(self) -> str:
        return self.exit_status.code_name


class InvalidInput(TurnqError):
    """A malformed value, draft, payload, claim or option (exit 2)."""

    exit_status = ExitStatus.USAGE


class LeaseLost(TurnqError):
    """*claim expired*: the claim no longer holds (all of) its batches (exit 4)."""

    exit_status = ExitStatus.LEASE_LOST


class BatchHeld(LeaseLost):
    """A held batch cannot be cancelled until its claim ends (exit 4, as lease lost)."""


class NotFound(TurnqError):
    """No live batch with that id in that session (exit 5)."""

    exit_status = ExitStatus.NOT_FOUND


class SourceKeyConflict(TurnqError):
    """Strict mode: a replayed source key came with different payloads (exit 6)."""

    exit_status = ExitStatus.CONFLICT


class StoreUnreadable(TurnqError):
    """The store is corrupt, truncated, foreign, or of a newer schema (exit 7)."""

    exit_status = ExitStatus.STORE_UNREADABLE


class StoreBusy(TurnqError):
    """The store lock could not be taken within the lock timeout (exit 8)."""

    exit_status = ExitStatus.STORE_BUSY


class StoreUnwritable(TurnqError):
    """Writing the store failed; the old store is untouched (exit 9)."""

    exit_status = ExitStatus.STORE_UNWRITABLE


class CounterLimit(TurnqError):
    """A store counter would pass 2^64-1 (the wire's u64); nothing changed (exit 10)."""

    exit_status = ExitStatus.LIMIT


def audit_ids_at_limit(location: str, last_id: int, limit: str) -> CounterLimit:
    """The refusal of an operation whose audit-log entries would take an id past the store's
    limit (nothing was changed). Another write could never be logged either: say the way out."""
    return CounterLimit(f"store {location}: its audit-log ids are at their limit ({last_id}; {limit}): the "
                        "operation was refused and nothing was changed; run with TURNQ_LOG=off, or move the queue "
                        "to a new store (turnq migrate), whose log starts again at 1")
