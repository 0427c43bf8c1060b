"""`claim --wait`: claim now, or block until work becomes claimable and claim it then.

The loop: make the store's change waiter (before the first look, so nothing is missed),
try to claim; when nothing is claimable, sleep until the first of
- the store changed (an enqueue, abandon, cancel, ... by anyone: see store/wait.py),
- the session's next delay end or lease expiry (`engine.next_change_ms`, from the same
  transaction as the empty claim), when the clock is the real one,
- the overall wait ends (then None), or `stop()` says so (checked every 250 ms),
then try again. A try after a wake first looks without taking the write lock (`peek`): a
store that changes often elsewhere (other sessions' writes wake every waiter) is then not
locked by each idle waiter in turn; only when work is claimable does the claim transaction run.
(An empty claim changes nothing and logs nothing, so seeing "nothing" in a read snapshot is the
same answer the transaction would give at that instant.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .api import Queue
    from .models import QueuedWorkClaim
    from .store.wait import ChangeWaiter

#: How often a wait looks at `stop()` (seconds): the longest a stop request goes unseen.
STOP_CHECK_S = 0.25
#: A hint is a time in ms; wake just after it, so that the claim sees it as past.
_HINT_SLACK_S = 0.002


def claim_waiting(queue: Queue, session_id: str,
                  attempt: Callable[[], tuple[QueuedWorkClaim | None, int | None]],
                  wait_ms: int, stop: Callable[[], bool] | None,
                  waiter: ChangeWaiter | None = None,
                  peek: Callable[[], tuple[bool, int | None]] | None = None) -> QueuedWorkClaim | None:
    """`waiter`: one made by the caller, kept across claims (a worker: one PostgreSQL LISTEN
    connection for its life); None: one for this claim only. `peek`: a read-only look, used
    before every try but the first (None: always try)."""
    if waiter is None:
        with queue.store.change_waiter(session_id) as own:
            return claim_waiting(queue, session_id, attempt, wait_ms, stop, own, peek)
    deadline = time.monotonic() + wait_ms / 1000
    first = True
    while True:
        claimable, hint_ms = (True, None) if first or peek is None else peek()
        first = False
        claim = None
        if claimable:
            claim, hint_ms = attempt()
        if claim is not None:
            return claim
        if time.monotonic() >= deadline or (stop is not None and stop()):
            return None
        until = deadline
        if hint_ms is not None and not queue.clock.fixed:
            # A fixed clock (--now) never reaches the hint: only a change or the deadline wakes.
            until = min(until, time.monotonic() + max(0, hint_ms - queue.clock.now_ms()) / 1000 + _HINT_SLACK_S)
        _sleep_until_change(waiter, until, stop)


def _sleep_until_change(waiter: ChangeWaiter, until: float, stop: Callable[[], bool] | None) -> None:
    """Block until the waiter sees a change, `until` (monotonic) passes, or stop() holds."""
    while (left := until - time.monotonic()) > 0:
        if stop is not None and stop():
            return
        if waiter.wait(min(left, STOP_CHECK_S)):
            return
