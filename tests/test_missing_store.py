"""A store that is not there is not an empty store (cli.md, exit 5).

Commands that only read refuse a missing store with one line naming its location and exit 5,
and create nothing; an empty store that exists (a file or PostgreSQL tables turnq created and
emptied) is fine; writing commands still create the store.
"""

from __future__ import annotations

import json

import pytest
from backends import fresh_store_url
from typer.testing import CliRunner

from turnq.cli import app
from turnq.store import MemoryStore, open_store

pytestmark = pytest.mark.usefixtures("cli_built_once")

NOW = 1767225600000

READERS = [
    ("inspect",), ("inspect", "s"), ("inspect", "s", "--tombstones"), ("explain", "s"), ("log",),
    ("doctor",), ("expect", "s", "--count", "0"), ("claim", "s", "--dry-run"), ("export",),
]


@pytest.fixture(params=["json", "sqlite", "postgresql"])
def store_url(request, tmp_path):
    with fresh_store_url(request.param, tmp_path) as url:
        yield url


def run(url, *args, json_out=True):
    extra = ["--json"] if json_out else []
    return CliRunner().invoke(app, [*args, *extra, "--store", url, "--now", str(NOW)])


def location_named(url, message):
    # The location as the store names it (a PostgreSQL URL keeps its schema option).
    return url.split("?")[0].rsplit("/", 1)[-1] in message


@pytest.mark.parametrize("args", READERS, ids=lambda a: " ".join(a))
def test_a_reader_refuses_a_store_that_is_not_there(store_url, tmp_path, args):
    result = run(store_url, *args)
    assert result.exit_code == 5, (result.exit_code, result.stdout, result.stderr)
    assert result.stdout == ""
    error = json.loads(result.stderr)
    assert error["error"] == "not_found" and location_named(store_url, error["message"])
    assert not open_store(store_url).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_human_form_is_one_line(store_url):
    result = run(store_url, "expect", "s", "--count", "0", json_out=False)
    assert result.exit_code == 5 and result.stdout == ""
    assert result.stderr.startswith("turnq: error: there is no store at ") and result.stderr.count("\n") == 1


def test_watch_refuses_it_too(store_url):
    result = run(store_url, "watch", json_out=False)
    assert result.exit_code == 5 and "no store at" in result.stderr


def test_diff_refuses_it(store_url, tmp_path):
    other = tmp_path / "other.json"
    assert run(str(other), "enqueue", "s", "--text", "x").exit_code == 0
    result = CliRunner().invoke(app, ["diff", str(other), store_url, "--json"])
    assert result.exit_code == 5 and json.loads(result.stderr)["error"] == "not_found"


def test_an_emptied_store_is_fine_and_writers_create_one(store_url):
    assert run(store_url, "enqueue", "s", "--text", "x").exit_code == 0
    assert open_store(store_url).exists()
    made = json.loads(run(store_url, "claim", "s").stdout)
    assert run(store_url, "complete", "--claim", json.dumps(made)).exit_code == 0
    for args in READERS:
        result = run(store_url, *args)
        assert result.exit_code in (0, 3), (args, result.exit_code, result.stderr)  # 3: dry run, nothing to claim
    assert json.loads(run(store_url, "expect", "s", "--count", "0").stdout)["ok"] is True


def test_memory_store_always_exists():
    assert MemoryStore().exists() is True
