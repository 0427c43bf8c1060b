"""`turnq work`'s line per claim, for people, on stderr (Rich; data as literal Text)."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from .clock import format_duration
from .textsafe import escape_control
from .worker import WorkResult

#: What each outcome means for the claim's batches, and its colour.
_OUTCOMES = {
    "completed": ("completed", "green"),
    "abandoned": ("failed: abandoned, claimable again at once", "yellow"),
    "kept": ("failed: kept, claimable again when the lease runs out", "yellow"),
    "lease_lost": ("lease lost: command stopped, not completed", "red"),
    "timed_out": ("timed out: command stopped, claim abandoned", "red"),
    "interrupted": ("interrupted: command stopped, claim abandoned", "red"),
}

_stderr: Console | None = None


def _console() -> Console:
    global _stderr
    if _stderr is None:
        _stderr = Console(stderr=True, highlight=False, soft_wrap=True)
    return _stderr


def work_line(result: WorkResult) -> None:
    claim = result.claim
    described, style = _OUTCOMES[result.outcome]
    line = Text("turnq: ")
    line.append(escape_control(claim.claim_id), style="bold")
    line.append(f" ({len(claim.batches)} batch(es), fencing {claim.fencing_token}): ")
    if result.exit_status is not None:
        status = result.exit_status
        line.append(f"exit {status}" if status >= 0 else f"killed by signal {-status}")
        line.append(", ")
    line.append(described, style=style)
    line.append(f", took {format_duration(result.took_ms)}")
    if result.error and result.outcome != "completed":
        line.append(f" ({escape_control(str(result.error))})")
    _console().print(line)
