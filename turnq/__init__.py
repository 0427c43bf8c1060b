"""turnq: a durable turn queue for LLM agent runtimes.

The public Python API: `Queue` (open a store, call every operation), the wire
models, and the errors.
"""

from .api import Queue, make_draft
from .clock import FixedClock, SystemClock
from .engine import ClaimRef, EnqueueResult
from .errors import (
    BatchHeld,
    ExitStatus,
    InvalidInput,
    LeaseLost,
    NotFound,
    SourceKeyConflict,
    StoreBusy,
    StoreUnreadable,
    StoreUnwritable,
    TurnqError,
)
from .models import (
    ProcessWakeDelivery,
    QueuedWorkBatch,
    QueuedWorkBatchDraft,
    QueuedWorkClaim,
    QueuedWorkCompletion,
    SessionCommandReceipt,
    Tombstone,
    TurnInput,
)

__version__ = "1.0.0"

__all__ = [
    "Queue", "make_draft", "FixedClock", "SystemClock", "ClaimRef", "EnqueueResult",
    "TurnqError", "ExitStatus", "InvalidInput", "LeaseLost", "BatchHeld", "NotFound", "SourceKeyConflict",
    "StoreBusy", "StoreUnreadable", "StoreUnwritable",
    "ProcessWakeDelivery", "QueuedWorkBatch", "QueuedWorkBatchDraft", "QueuedWorkClaim", "QueuedWorkCompletion",
    "SessionCommandReceipt", "Tombstone", "TurnInput",
]
