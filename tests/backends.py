"""Fresh store locations of every kind, for tests that run on every backend.

    from backends import STORE_KINDS, fresh_store_url

    @pytest.fixture(params=STORE_KINDS)
    def store_url(request, tmp_path):
        with fresh_store_url(request.param, tmp_path) as url:
            yield url

- json:       a path in tmp_path (`…/turnq.json`)
- sqlite:     `sqlite:////abs/tmp_path/turnq.db` (four slashes: an absolute path)
- postgresql: `postgresql://postgres@127.0.0.1:5432/test?schema=turnq_test_<random>`, a schema of
  its own, dropped afterwards (`postgres_url()`, a context manager; or `new_postgres_url()`, a
  plain function whose schemas are dropped when the test run ends). The server is `TURNQ_TEST_POSTGRES` (that default otherwise). When
  no server answers the test is skipped with the reason — but fails when CI=true: never silently
  in CI (.ci/run starts the server).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

STORE_KINDS = ["json", "sqlite", "postgresql"]
POSTGRES_URL = os.environ.get("TURNQ_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")

_postgres_problem: list[str | None] = []


def postgres_problem() -> str | None:
    """Why PostgreSQL tests cannot run here (None: they can). Asked once per test run."""
    if not _postgres_problem:
        try:
            import psycopg
        except ImportError:
            _postgres_problem.append("psycopg is not installed (pip install -e '.[dev]')")
        else:
            try:
                with psycopg.connect(POSTGRES_URL, connect_timeout=3) as conn:
                    conn.execute("SELECT 1")
                _postgres_problem.append(None)
            except psycopg.Error as err:
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                _postgres_problem.append(f"no PostgreSQL server at {POSTGRES_URL} ({first}); "
                                         ".ci/run starts one")
    return _postgres_problem[0]


def require_postgres() -> None:
    """Skip the test when no server answers; fail it instead under CI=true."""
    problem = postgres_problem()
    if problem is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"PostgreSQL tests cannot run in CI: {problem}")
    pytest.skip(problem)


def sqlite_url(folder: Path, name: str = "turnq.db") -> str:
    """`sqlite:///` + the absolute path (so four slashes in all)."""
    return f"sqlite:///{(folder / name).absolute()}"


def _admin(statement: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(statement)


_leftover_schemas: list[str] = []


def new_postgres_url() -> str:
    """A URL with a fresh schema of its own, for a plain function (no `with`), e.g. a
    tests/test_stress.py STORE_LOCATIONS entry: `pytest.param(lambda tmp: new_postgres_url(),
    id="postgresql")`. Skips (fails under CI=true) without a server; the schemas are dropped
    when the test run ends."""
    require_postgres()
    if not _leftover_schemas:
        atexit.register(_drop_leftovers)
    schema = f"turnq_test_{uuid.uuid4().hex[:12]}"
    _leftover_schemas.append(schema)
    separator = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{separator}schema={schema}"


def _drop_leftovers() -> None:
    for schema in _leftover_schemas:
        with contextlib.suppress(Exception):  # the run is over; a leftover schema is harmless
            _admin(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextmanager
def postgres_url() -> Iterator[str]:
    """A URL whose tables live in a fresh schema of their own, dropped at the end."""
    require_postgres()
    schema = f"turnq_test_{uuid.uuid4().hex[:12]}"
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}schema={schema}"
    finally:
        _admin(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextmanager
def fresh_store_url(kind: str, folder: Path) -> Iterator[str]:
    """A location for a new, empty store of `kind` (one of STORE_KINDS)."""
    if kind == "json":
        yield str(folder / "turnq.json")
    elif kind == "sqlite":
        yield sqlite_url(folder)
    elif kind == "postgresql":
        with postgres_url() as url:
            yield url
    else:
        raise ValueError(f"unknown store kind {kind!r}")
