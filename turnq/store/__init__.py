"""Storage backends: the only code that touches files or databases."""

from __future__ import annotations

from pathlib import Path

from .base import Store
from .jsonfile import JsonFileStore
from .memory import MemoryStore

__all__ = ["Store", "JsonFileStore", "MemoryStore", "open_store"]


def open_store(location: "str | Path | Store", *, lock_timeout_ms: int = 10_000) -> Store:
    """A store from a location: a `Store` as it is, or a path to a JSON store file."""
    if isinstance(location, Store):
        return location
    return JsonFileStore(Path(location), lock_timeout_ms=lock_timeout_ms)
