"""Shared fixtures. Every test runs with TURNQ_* pointed away from real stores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

# The spec lives in ../shared/spec beside the repository; tests/data holds a copy of the
# files the tests read (test_models checks the copy is current when the spec is there).
SHARED_SPEC_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "spec"
DATA_DIR = Path(__file__).resolve().parent / "data"
NOW = 1767225600000  # 2026-01-01T00:00:00Z


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TURNQ_STORE", "TURNQ_NOW", "TURNQ_OWNER", "TURNQ_LOCK_TIMEOUT", "TURNQ_LOG", "TURNQ_LOG_MAX_ENTRIES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TURNQ_STORE", str(tmp_path / "turnq.json"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def _cli_command():
    import typer

    from turnq.cli import app

    return app, typer.main.get_command(app)


@pytest.fixture
def cli_built_once(_cli_command, monkeypatch: pytest.MonkeyPatch) -> None:
    """Typer's CliRunner rebuilds the whole command tree on every invoke (most of a call's
    time): hand it one built once. Use with `pytestmark = pytest.mark.usefixtures(...)`."""
    import typer.testing

    app, command = _cli_command
    build = typer.testing._get_command
    monkeypatch.setattr(typer.testing, "_get_command",
                        lambda typer_app: command if typer_app is app else build(typer_app))


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "turnq.json"


@pytest.fixture
def queue(store_path: Path):
    from turnq import Queue

    return Queue(store_path, now=NOW)


def spec_vectors() -> list[dict]:
    path = DATA_DIR / "vectors.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(params=["json", "memory", "sqlite", "postgresql"])
def any_store(request, tmp_path: Path):
    """An opened store of each backend kind (closed afterwards, before a PostgreSQL schema is
    dropped); PostgreSQL skips, saying why, without a server (fails under CI=true)."""
    from backends import fresh_store_url

    from turnq.store import MemoryStore, open_store

    if request.param == "memory":
        yield MemoryStore()
        return
    with fresh_store_url(request.param, tmp_path) as location:
        opened = open_store(location)
        yield opened
        if hasattr(opened, "close"):
            opened.close()
