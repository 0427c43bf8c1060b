"""turnq's pytest plugin: the `turnq_store` fixture (registered by installing turnq).

```python
def test_runtime_takes_the_queued_turn(turnq_store):
    turnq_store.enqueue_text("root", "hello", source_key="host:1")
    turnq_store.advance("5m")
    my_runtime.run_once(store=turnq_store.path, now=turnq_store.now_ms)
    turnq_store.expect("root", count=0)
```

Each test gets an isolated JSON store in its `tmp_path`, a fixed clock it controls
(`set`, `advance`), and the Python API (`.queue`, a `turnq.Queue` on that store and
clock). The clock starts at 2026-01-01T00:00:00Z, or where `@pytest.mark.turnq_now(TIME)`
says. This module imports only pytest when pytest starts; turnq is imported when a
test first asks for the fixture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

DEFAULT_NOW = "2026-01-01T00:00:00Z"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "turnq_now(time): start the turnq_store clock at TIME "
                            "(epoch ms or RFC 3339)")


class TurnqStore:
    """An isolated turnq store with a fixed clock, for one test."""

    def __init__(self, path: Path, now: int | str = DEFAULT_NOW) -> None:
        from turnq import FixedClock, Queue
        from turnq.clock import parse_time

        self.path = Path(path)
        self.clock = FixedClock(parse_time(now) if isinstance(now, str) else now)
        self.queue = Queue(self.path, now=self.clock)

    # ----------------------------------------------------------------- the clock

    @property
    def now_ms(self) -> int:
        return self.clock.now_ms()

    def set(self, when: int | str) -> int:
        """Set the clock (epoch ms or RFC 3339); returns the new time in ms."""
        self.clock.set(when)
        return self.clock.now_ms()

    def advance(self, duration: int | str) -> int:
        """Move the clock on (ms or `30s`, `15m`, `2h`); returns the new time in ms."""
        return self.clock.advance(duration)

    # ----------------------------------------------------------------- shortcuts

    def enqueue_text(self, session_id: str, *texts: str, **options: Any) -> Any:
        """`Queue.enqueue_text`: one batch of text items; returns the EnqueueResult."""
        return self.queue.enqueue_text(session_id, *texts, **options)

    def claim(self, session_id: str, **options: Any) -> Any:
        """`Queue.claim` at the current clock (owner `turnq` unless given); None when nothing is claimable."""
        return self.queue.claim(session_id, **options)

    def load(self, fixture: str | Path | dict, *, base_dir: str | Path | None = None) -> Any:
        """Build a fixture (a TOML/JSON file, or a fixture document as a dict) into this store,
        at the fixture's own clock or, without one, at this store's clock."""
        from turnq import fixtures

        if isinstance(fixture, dict):
            parsed = fixtures.parse(fixture, base_dir=Path(base_dir) if base_dir else self.path.parent)
        else:
            parsed = fixtures.parse_file(fixture)
        return fixtures.build(parsed, self.queue.store,
                              now_ms=None if parsed.now_ms is not None else self.clock.now_ms())

    def expect(self, session_id: str, *, count: int | None = None, state: str | None = None,
               source_keys: list[str] | None = None, next_claim: list[str] | None = None,
               boundary: str = "idle", next_text: str | None = None) -> Any:
        """Check the session as `turnq expect` does; raises AssertionError naming every failed check."""
        from turnq import expect

        wanted = expect.Expectations(count=count, state=state, source_keys=source_keys, next_claim=next_claim,
                                     boundary=boundary, next_text=next_text)
        report = expect.check(self.queue.store.read(session_id), session_id, wanted, self.clock.now_ms())
        if not report.ok:
            lines = [f"{c.name}: expected {c.expected_text()}, got {c.actual_text()}"
                     for c in report.checks if not c.ok]
            raise AssertionError(f"turnq session {session_id!r}: " + "; ".join(lines))
        return report

    def state(self) -> Any:
        """The whole queue state (turnq.state.QueueState)."""
        return self.queue.store.read()

    def export(self, fmt: str = "toml", *sessions: str) -> str:
        """The store as fixture text (`turnq export`)."""
        from turnq import fixtures

        return fixtures.dumps(fixtures.export_document(self.state(), list(sessions) or None,
                                                       now_ms=self.clock.now_ms()), fmt)

    def env(self) -> dict[str, str]:
        """TURNQ_STORE and TURNQ_NOW for running the `turnq` command on this store at this clock."""
        return {"TURNQ_STORE": str(self.path), "TURNQ_NOW": str(self.clock.now_ms())}

    def __repr__(self) -> str:
        return f"<TurnqStore {self.path} at {self.clock.now_ms()} ms>"


@pytest.fixture
def turnq_store(request: pytest.FixtureRequest, tmp_path: Path) -> TurnqStore:
    """An isolated turnq store (in tmp_path) with a fixed, controllable clock and the Python API."""
    marker = request.node.get_closest_marker("turnq_now")
    now = marker.args[0] if marker is not None and marker.args else DEFAULT_NOW
    return TurnqStore(tmp_path / "turnq.json", now)
