"""The pytest plugin (`turnq_store`), as a user's own test suite sees it: run through `pytester`."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

import pytest

pytest_plugins = ["pytester"]

USER_TESTS = '''
import json
import subprocess
import sys

import pytest


def test_build_state_in_a_few_lines(turnq_store):
    turnq_store.enqueue_text("root", "hello", source_key="host:1", delivery_policy="earliest_safe_boundary")
    turnq_store.enqueue_text("root", "later", available_at_ms=turnq_store.now_ms + 60_000)
    turnq_store.expect("root", count=2, next_claim=["host:1"], next_text="hello")
    turnq_store.expect("root", count=1, state="delayed")
    turnq_store.advance("1m")
    turnq_store.expect("root", count=0, state="delayed")
    claim = turnq_store.claim("root", owner="worker-a", ttl_ms=30_000)
    assert claim.claimed_at_epoch_ms == 1767225600000 + 60_000
    assert turnq_store.path.exists() and turnq_store.path.name == "turnq.json"


def test_each_test_has_its_own_store(turnq_store):
    turnq_store.expect("root", count=0)
    assert turnq_store.queue.overview().sessions == []


def test_the_clock_can_be_set_and_leases_expire(turnq_store):
    turnq_store.enqueue_text("s", "x")
    first = turnq_store.claim("s", owner="a", ttl_ms=1000)
    turnq_store.expect("s", count=1, state="held")
    turnq_store.set("2026-01-01T00:00:05Z")
    turnq_store.expect("s", count=1, state="expired")
    again = turnq_store.queue.claim("s", owner="b")
    assert again.fencing_token == first.fencing_token + 1


@pytest.mark.turnq_now("2030-06-01T00:00:00Z")
def test_the_clock_starts_where_the_marker_says(turnq_store):
    assert turnq_store.now_ms == 1906502400000


def test_fixtures_load_and_export(turnq_store, tmp_path):
    turnq_store.load({"sessions": [{"id": "chat", "drafts": [{"text": "hi", "source_key": "m1"},
                                                              {"wake": {"process_id": "p", "sequence": 1,
                                                                        "input": "done"}}]}]})
    turnq_store.expect("chat", source_keys=["m1", "process:p:event:1:wake"])
    assert json.loads(turnq_store.export("json"))["sessions"][0]["id"] == "chat"


def test_the_cli_runs_on_the_same_store(turnq_store):
    turnq_store.enqueue_text("root", "from the api")
    env = {**turnq_store.env(), "PATH": ""}
    done = subprocess.run([sys.executable, "-m", "turnq", "inspect", "root", "--json"], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["now_ms"] == turnq_store.now_ms


def test_a_failed_expectation_says_what_differs(turnq_store):
    turnq_store.enqueue_text("root", "one")
    turnq_store.expect("root", count=3)
'''


def test_the_plugin_is_registered_by_installing_turnq() -> None:
    names = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert names.get("turnq") == "turnq.pytest_plugin"


def test_a_user_suite_uses_turnq_store(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=6, failed=1)
    result.stdout.fnmatch_lines(["*AssertionError: turnq session 'root': count: expected 3, got 1*"])


def test_the_fixture_is_listed_with_its_help(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--fixtures", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["turnq_store*", "*isolated turnq store*"])


def test_starting_pytest_does_not_import_turnq_core() -> None:
    """Loading the plugin (as pytest does at start-up) imports neither the models nor pydantic."""
    code = ("import sys, turnq.pytest_plugin; "
            "print(sorted(m for m in ('pydantic', 'turnq.api', 'turnq.models', 'rich', 'typer') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
