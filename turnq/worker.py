"""A worker: claim, run a handler with the lease kept alive, settle; again, as work comes.

`work(queue, session, handler, …)` (also `Queue.work`) yields a `WorkResult` per claim:

- claim at the boundary, waiting up to `wait_ms` for work (`Queue.claim(wait_ms=…)`);
- `handler(job)` runs while a `LeaseKeeper` thread renews the lease every TTL/3; when a
  renewal finds the lease lost, `job.lease_lost` is set (the handler should stop) and the
  claim is never completed;
- the handler's verdict: None, True or 0 → complete; False or another int → a failure:
  `on_failure="abandon"` releases the batches at once (a retry gets a larger fencing token),
  `"keep"` leaves the lease to run out (a back-off); an exception is a failure too (its
  text is in the result, and the loop goes on);
- `stop` (a threading.Event, e.g. set by a signal handler) ends the loop: a claim being
  handled is abandoned, never completed;
- a busy store (StoreBusy: another process held its lock past the lock timeout) does not end
  the loop at once: a claim is tried again, with a back-off, for up to BUSY_RETRY_MS; a
  complete or abandon for as long as the lease lasts (after that, the work is another
  worker's to take). Only then is StoreBusy raised (`turnq work`: exit 8).

`CommandHandler` is the handler `turnq work` uses: it runs a command per claim (claim JSON
on its stdin and in TURNQ_CLAIM_FILE), and stops it (SIGTERM, SIGKILL after a grace
period) on lease loss, timeout or stop. No printing here: the CLI reports the results.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from .errors import InvalidInput, LeaseLost, StoreBusy, TurnqError

if TYPE_CHECKING:
    from .api import Queue
    from .models import QueuedWorkClaim

Outcome = Literal["completed", "abandoned", "kept", "lease_lost", "timed_out", "interrupted"]
ON_FAILURE = ("abandon", "keep")
#: The default lease of a worker's claims: it is renewed every TTL/3 while the handler runs,
#: so it only bounds how long a crashed worker's claim stays held.
DEFAULT_WORK_TTL_MS = 60_000
#: `wait_ms=None` waits for ever, in slices of this length.
_FOREVER_SLICE_MS = 3_600_000
#: How long a claim is tried again while the store is busy, before the worker gives up.
BUSY_RETRY_MS = 60_000
_T = TypeVar("_T")


@dataclass
class Job:
    """What a handler gets: the claim, and the events that ask it to stop."""

    claim: QueuedWorkClaim
    lease_lost: threading.Event
    stop: threading.Event
    #: The signal that set `stop` (SIGINT/SIGTERM), for a handler that forwards it.
    stop_signal: Callable[[], int | None] = lambda: None

    def should_stop(self) -> bool:
        return self.lease_lost.is_set() or self.stop.is_set()

    def forced(self) -> bool:
        """A second SIGINT/SIGTERM came: the person means it, so no grace period."""
        count = getattr(self.stop_signal, "count", None)
        return count is not None and count() > 1


@dataclass
class Ran:
    """A command handler's verdict: its exit status (negative: killed by that signal)."""

    exit_status: int
    timed_out: bool = False


@dataclass
class WorkResult:
    claim: QueuedWorkClaim
    outcome: Outcome
    ok: bool
    exit_status: int | None = None
    error: str | None = None
    started_at_ms: int = 0
    finished_at_ms: int = 0
    took_ms: int = 0
    renewals: int = 0

    def to_wire(self) -> dict[str, Any]:
        """One JSON Lines record of `turnq work --json`."""
        return {"claim": self.claim.to_wire(), "claim_id": self.claim.claim_id,
                "batch_ids": self.claim.batch_ids, "fencing_token": self.claim.fencing_token,
                "outcome": self.outcome, "ok": self.ok, "exit_status": self.exit_status, "error": self.error,
                "started_at_ms": self.started_at_ms, "finished_at_ms": self.finished_at_ms,
                "took_ms": self.took_ms, "renewals": self.renewals}


# ----------------------------------------------------------------- the loop


def work(queue: Queue, session_id: str, handler: Callable[[Job], Any], *, owner: str | None = None,
         boundary: str = "idle", ttl_ms: int = DEFAULT_WORK_TTL_MS, max_batches: int = 64,
         wait_ms: int | None = None, idle_exit: bool = False, max_claims: int | None = None,
         on_failure: str = "abandon", stop: threading.Event | None = None,
         stop_signal: Callable[[], int | None] = lambda: None,
         on_busy: Callable[[str], None] = lambda message: None) -> Iterator[WorkResult]:
    """Claim and handle until `max_claims` claims were handled, the queue is empty after a
    wait (`idle_exit`), or `stop` is set. `wait_ms=None`: wait for work for ever (with
    `idle_exit`: not at all). `on_busy(message)`: told once each time the store turns out busy
    and is tried again (the CLI says so on stderr)."""
    if on_failure not in ON_FAILURE:
        raise InvalidInput(f"unknown on-failure action {on_failure!r}: expected abandon or keep")
    if ttl_ms <= 0:
        raise InvalidInput("a worker's lease TTL must be more than 0")
    if max_claims is not None and max_claims < 0:
        raise InvalidInput("max claims must be 0 or more")
    if wait_ms is None:
        wait_ms = 0 if idle_exit else _FOREVER_SLICE_MS
    elif wait_ms == 0 and not idle_exit:
        raise InvalidInput("a wait of 0 without idle-exit would poll without pause: give a wait, or idle-exit")
    stop = stop if stop is not None else threading.Event()
    owner = owner if owner is not None else queue.default_owner()
    # One waiter for the whole loop (PostgreSQL: one LISTEN connection), made before the first look.
    with contextlib.ExitStack() as resources:
        waiter = resources.enter_context(queue.store.change_waiter(session_id)) if wait_ms else None
        handled = 0
        while (max_claims is None or handled < max_claims) and not stop.is_set():
            claim = _patiently(lambda: queue.claim(
                session_id, owner=owner, boundary=boundary, ttl_ms=ttl_ms, max_batches=max_batches,
                wait_ms=wait_ms, stop=stop.is_set, waiter=waiter), stop, time.monotonic() + BUSY_RETRY_MS / 1000,
                on_busy)
            if claim is None:
                if idle_exit:
                    return
                continue
            handled += 1
            yield handle_claim(queue, claim, handler, ttl_ms=ttl_ms, on_failure=on_failure, stop=stop,
                               stop_signal=stop_signal, on_busy=on_busy)


def handle_claim(queue: Queue, claim: QueuedWorkClaim, handler: Callable[[Job], Any], *, ttl_ms: int,
                 on_failure: str, stop: threading.Event,
                 stop_signal: Callable[[], int | None] = lambda: None,
                 on_busy: Callable[[str], None] = lambda message: None) -> WorkResult:
    """Run the handler on one claim with its lease kept alive, then settle the claim."""
    job = Job(claim, threading.Event(), stop, stop_signal)
    started_ms, started = queue.clock.now_ms(), time.monotonic()
    if stop.is_set():  # stopped while the claim was being made: give it back unrun
        _release(queue, claim)
        return WorkResult(claim, "interrupted", False, None, None, started_ms, started_ms, 0)
    keeper = LeaseKeeper(queue, claim, ttl_ms, job.lease_lost)
    keeper.start()
    error = None
    try:
        verdict = handler(job)
    except TurnqError:  # the worker's own trouble (a failing store, a command that cannot run): stop
        keeper.finish()
        _release(queue, claim)
        raise
    except Exception as err:  # the handler's failure is the claim's, not the worker's
        verdict, error = False, f"{type(err).__name__}: {err}"
    except BaseException:  # KeyboardInterrupt, SystemExit: give the work back, never complete it
        keeper.finish()
        _release(queue, claim)
        raise
    finally:
        keeper.finish()
    ok, status = _judge(verdict)
    if not ok and error is None and status is None and verdict is not False:
        error = f"the handler returned {type(verdict).__name__}: expected None, a bool or an int"
    outcome = _settle(queue, claim, job, verdict, ok, on_failure, keeper.expires_at, on_busy)
    if outcome == "lease_lost" and error is None:
        error = keeper.error or "the lease was lost: another worker may hold the batches now"
    return WorkResult(claim, outcome, ok, status, error, started_ms, queue.clock.now_ms(),
                      int((time.monotonic() - started) * 1000), keeper.renewals)


def _judge(verdict: Any) -> tuple[bool, int | None]:
    """(success, exit status) of a handler's return value."""
    if isinstance(verdict, Ran):
        return verdict.exit_status == 0 and not verdict.timed_out, verdict.exit_status
    if verdict is None or verdict is True:
        return True, None
    if verdict is False:
        return False, None
    if isinstance(verdict, int):
        return verdict == 0, verdict
    return False, None  # anything else is a failure (the claim must be settled either way)


def _settle(queue: Queue, claim: QueuedWorkClaim, job: Job, verdict: Any, ok: bool, on_failure: str,
            lease_ends: float, on_busy: Callable[[str], None] = lambda message: None) -> Outcome:
    """Complete, abandon or keep the claim. Never completes after a stop or a lost lease. A
    busy store is tried again until `lease_ends` (monotonic), except after a stop."""
    if job.stop.is_set():
        _release(queue, claim)
        return "interrupted"
    if job.lease_lost.is_set():
        _release(queue, claim)  # what still carries it (an expired lease nobody took yet) goes back
        return "lease_lost"
    if isinstance(verdict, Ran) and verdict.timed_out:
        _release(queue, claim)
        return "timed_out"
    if ok:
        try:
            _patiently(lambda: queue.complete(claim), job.stop, lease_ends, on_busy)
        except LeaseLost:
            return "lease_lost"
        return "completed"
    if on_failure == "keep":
        return "kept"
    _patiently(lambda: queue.abandon(claim), job.stop, lease_ends, on_busy)
    return "abandoned"


def _release(queue: Queue, claim: QueuedWorkClaim) -> None:
    with contextlib.suppress(LeaseLost):
        queue.abandon(claim)


def _patiently(operation: Callable[[], _T], stop: threading.Event, until: float,
               on_busy: Callable[[str], None] = lambda message: None) -> _T:
    """`operation()`, tried again while the store is busy, with a back-off (50 ms, doubling to
    2 s), until the monotonic time `until` or a stop: then the StoreBusy is raised. `on_busy`
    hears of the first busy try only."""
    pause, told = 0.05, False
    while True:
        try:
            return operation()
        except StoreBusy as err:
            if stop.is_set() or time.monotonic() + pause > until:
                raise
            if not told:
                on_busy(f"{err.message}; trying again")
                told = True
            stop.wait(pause)
            pause = min(pause * 2, 2.0)


# ----------------------------------------------------------------- the lease keeper


class LeaseKeeper(threading.Thread):
    """Renews a claim every TTL/3 until `finish()`. A renewal refused as LeaseLost sets
    `lost` and ends it; a failing store is retried (every TTL/10) until the lease would
    have run out, and then counts as lost too: the handler can no longer be sure of it."""

    def __init__(self, queue: Queue, claim: QueuedWorkClaim, ttl_ms: int, lost: threading.Event) -> None:
        super().__init__(name=f"turnq-lease-{claim.claim_id}", daemon=True)
        self.queue, self.claim, self.ttl_ms, self.lost = queue, claim, ttl_ms, lost
        self.expires_at = time.monotonic() + ttl_ms / 1000
        self.renewals = 0
        self.error: str | None = None
        self._done = threading.Event()

    def run(self) -> None:
        interval = self.ttl_ms / 3000
        while not self._done.wait(interval):
            try:
                self.queue.renew(self.claim, ttl_ms=self.ttl_ms)
            except LeaseLost as err:
                self.error = err.message
                self.lost.set()
                return
            except TurnqError as err:
                if time.monotonic() >= self.expires_at:
                    self.error = f"the lease could not be renewed before it ran out: {err.message}"
                    self.lost.set()
                    return
                interval = self.ttl_ms / 10_000
                continue
            self.renewals += 1
            self.expires_at = time.monotonic() + self.ttl_ms / 1000
            interval = self.ttl_ms / 3000

    def finish(self) -> None:
        self._done.set()
        if self.is_alive():
            self.join()


# ----------------------------------------------------------------- a command per claim


@dataclass
class CommandHandler:
    """Runs `argv` per claim: the claim's JSON on stdin and in the file TURNQ_CLAIM_FILE, and
    TURNQ_SESSION, TURNQ_CLAIM_ID, TURNQ_LEASE_TOKEN, TURNQ_FENCING_TOKEN in its environment
    (plus TURNQ_STORE when `store` is given). The command runs in a process group of its own,
    so that stopping it stops its children too; turnq forwards SIGINT/SIGTERM to it."""

    argv: list[str]
    grace_s: float = 10.0
    timeout_s: float | None = None
    store: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    #: Where the command's stdout goes (a file descriptor); None: turnq's own stdout.
    stdout: int | None = None
    poll_s: float = 0.02

    def __call__(self, job: Job) -> Ran:
        text = job.claim.to_wire_json()
        fd, claim_file = tempfile.mkstemp(prefix="turnq-claim-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text + "\n")
            return self._run(job, text, claim_file)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(claim_file)

    def _env(self, job: Job, claim_file: str) -> dict[str, str]:
        env = {**os.environ, **self.extra_env, "TURNQ_CLAIM_FILE": claim_file,
               "TURNQ_SESSION": job.claim.session_id, "TURNQ_CLAIM_ID": job.claim.claim_id,
               "TURNQ_LEASE_TOKEN": job.claim.lease_token, "TURNQ_FENCING_TOKEN": str(job.claim.fencing_token)}
        if self.store is not None:
            env["TURNQ_STORE"] = self.store
        return env

    def _run(self, job: Job, text: str, claim_file: str) -> Ran:
        try:
            proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=self.stdout,
                                    env=self._env(job, claim_file), process_group=0)
        except OSError as err:
            raise InvalidInput(f"cannot run {self.argv[0]!r}: {err.strerror or err}") from None
        feeder = threading.Thread(target=_feed, args=(proc, text), daemon=True)
        feeder.start()  # a thread: a large claim must not block us on a command that never reads stdin
        deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s
        timed_out = False
        while True:
            try:
                status = proc.wait(timeout=self.poll_s)
                break
            except subprocess.TimeoutExpired:
                pass
            if job.stop.is_set():
                status = self._stop(proc, job.stop_signal() or signal.SIGTERM, job.forced)
                break
            if job.lease_lost.is_set():
                status = self._stop(proc, signal.SIGTERM)
                break
            if deadline is not None and time.monotonic() >= deadline:
                timed_out = True
                status = self._stop(proc, signal.SIGTERM)
                break
        feeder.join(timeout=1)
        return Ran(status, timed_out)

    def _stop(self, proc: subprocess.Popen[bytes], signum: int, forced: Callable[[], bool] = lambda: False) -> int:
        """Send `signum` to the command's group; SIGKILL it after the grace period, or at once
        when `forced()` becomes true (a second Ctrl-C) during it."""
        _signal_group(proc, signum)
        deadline = time.monotonic() + self.grace_s
        while True:
            try:
                return proc.wait(timeout=max(0.0, min(0.05, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                pass
            if forced() or time.monotonic() >= deadline:
                _signal_group(proc, signal.SIGKILL)
                return proc.wait()


def _feed(proc: subprocess.Popen[bytes], text: str) -> None:
    assert proc.stdin is not None
    with contextlib.suppress(OSError):  # the command may exit (or close stdin) without reading it
        proc.stdin.write(text.encode() + b"\n")
    with contextlib.suppress(OSError):
        proc.stdin.close()


def _signal_group(proc: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signum)


# ----------------------------------------------------------------- signals


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)
                    ) -> Iterator[Callable[[], int | None]]:
    """While inside: SIGINT/SIGTERM set `stop` instead of ending the process (main thread only).
    Yields a function giving the first signal received (None: none yet), whose `count()` says
    how many came (a second one cuts a command's grace period short); old handlers come back after."""
    received = _Received()

    def on_signal(signum: int, frame: Any) -> None:
        received.signals.append(signum)
        stop.set()

    previous = {signum: signal.signal(signum, on_signal) for signum in signals}
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class _Received:
    """The signals `stop_on_signals` caught: called, the first (None: none yet)."""

    def __init__(self) -> None:
        self.signals: list[int] = []

    def __call__(self) -> int | None:
        return self.signals[0] if self.signals else None

    def count(self) -> int:
        return len(self.signals)
