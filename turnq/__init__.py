"""turnq: a durable turn queue for LLM agent runtimes.

The public Python API: `Queue` (open a store, call every operation), the wire
models, and the errors.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names below, imported when first used (`turnq` starts quickly)
    from .api import Queue, make_draft
    from .clock import FixedClock, SystemClock
    from .engine import ClaimRef, EnqueueResult
    from .errors import (
        BatchHeld,
        CounterLimit,
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

#: Where each public name lives: `import turnq` imports none of them, so that a CLI
#: command (which imports `turnq.cli`, hence this package) loads only the modules it uses.
_EXPORTS = {
    "Queue": "api", "make_draft": "api", "FixedClock": "clock", "SystemClock": "clock",
    "ClaimRef": "engine", "EnqueueResult": "engine",
    **dict.fromkeys(("BatchHeld", "CounterLimit", "ExitStatus", "InvalidInput", "LeaseLost", "NotFound", "SourceKeyConflict",
                     "StoreBusy", "StoreUnreadable", "StoreUnwritable", "TurnqError"), "errors"),
    **dict.fromkeys(("ProcessWakeDelivery", "QueuedWorkBatch", "QueuedWorkBatchDraft", "QueuedWorkClaim",
                     "QueuedWorkCompletion", "SessionCommandReceipt", "Tombstone", "TurnInput"), "models"),
}


def __getattr__(name: str) -> Any:
    from importlib import import_module

    module = _EXPORTS.get(name)
    if module is None:
        if not name.startswith("_"):  # `turnq.engine` after a bare `import turnq`, as when it imported all
            try:
                return import_module(f".{name}", __name__)
            except ModuleNotFoundError:
                pass
        raise AttributeError(f"module 'turnq' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__version__ = "1.0.0"

__all__ = [
    "Queue", "make_draft", "FixedClock", "SystemClock", "ClaimRef", "EnqueueResult",
    "TurnqError", "ExitStatus", "InvalidInput", "LeaseLost", "BatchHeld", "NotFound", "SourceKeyConflict",
    "StoreBusy", "StoreUnreadable", "StoreUnwritable", "CounterLimit",
    "ProcessWakeDelivery", "QueuedWorkBatch", "QueuedWorkBatchDraft", "QueuedWorkClaim", "QueuedWorkCompletion",
    "SessionCommandReceipt", "Tombstone", "TurnInput",
]
