"""renew and abandon act on the whole claim, on every backend (spec/semantics.md, renew, abandon).

A claim JSON listing fewer batches, or `--batch`, never narrows them: renew extends every batch
carrying the claim id and lease token (or fails changing nothing when a listed batch no longer
carries it); abandon releases every such batch.
"""

from __future__ import annotations

import json

import pytest
from backends import fresh_store_url
from typer.testing import CliRunner

from turnq import LeaseLost, Queue
from turnq.clock import FixedClock
from turnq.cli import app
from turnq.engine import ClaimRef
from turnq.store import MemoryStore, open_store

pytestmark = pytest.mark.usefixtures("cli_built_once")

NOW = 1767225600000
MINUTE = 60_000


@pytest.fixture(params=["json", "sqlite", "postgresql"])
def store_url(request, tmp_path):
    with fresh_store_url(request.param, tmp_path) as url:
        yield url


def run(url, *args, now=NOW):
    result = CliRunner().invoke(app, [*map(str, args), "--store", url, "--now", str(now)])
    return result


def ok_json(url, *args, now=NOW):
    result = run(url, *args, "--json", now=now)
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    return json.loads(result.stdout)


def two_batch_claim(url):
    """A claim of two joined batches [X, Y], made at NOW with a 1-minute lease."""
    for text in ("x", "y"):
        ok_json(url, "enqueue", "s", "--text", text)
    made = ok_json(url, "claim", "s", "--ttl", "1m")
    assert len(made["batches"]) == 2
    return made


def expiries(url, now):
    view = ok_json(url, "inspect", "s", now=now)
    return [v["claim"]["expires_at_epoch_ms"] if v["claim"] else None for v in view["batches"]]


def narrowed(made):
    """The claim JSON cut down to its first batch (what a caller may hold)."""
    return json.dumps({**made, "batches": made["batches"][:1]})


def by_ids(made, *batch_ids):
    return ["s", "--claim-id", made["claim_id"], "--lease-token", made["lease_token"],
            *[arg for b in batch_ids for arg in ("--batch", b)]]


@pytest.mark.parametrize("form", ["claim_json", "ids"])
def test_renew_of_one_listed_batch_renews_the_whole_claim(store_url, form):
    made = two_batch_claim(store_url)
    x = made["batches"][0]["batch_id"]
    which = ["--claim", narrowed(made)] if form == "claim_json" else by_ids(made, x)
    renewed = ok_json(store_url, "renew", *which, "--ttl", "10m", now=NOW + 30_000)
    assert [b["batch_id"] for b in renewed["batches"]] == [b["batch_id"] for b in made["batches"]]
    assert expiries(store_url, NOW + 30_000) == [NOW + 30_000 + 10 * MINUTE] * 2
    # After the first lease would have run out, nobody else can take Y.
    other = run(store_url, "claim", "s", "--owner", "w2", "--json", now=NOW + 2 * MINUTE)
    assert other.exit_code == 3 and other.stdout == "null\n"


@pytest.mark.parametrize("form", ["claim_json", "ids"])
def test_renew_fails_changing_nothing_when_a_listed_batch_was_lost(store_url, form):
    made = two_batch_claim(store_url)
    x = made["batches"][0]["batch_id"]
    # The lease runs out and w2 takes X alone; Y still carries the first claim.
    other = ok_json(store_url, "claim", "s", "--owner", "w2", "--max-batches", "1", now=NOW + 2 * MINUTE)
    assert [b["batch_id"] for b in other["batches"]] == [x]
    before = expiries(store_url, NOW + 2 * MINUTE)
    which = ["--claim", narrowed(made)] if form == "claim_json" else by_ids(made, x)
    result = run(store_url, "renew", *which, "--ttl", "10m", now=NOW + 2 * MINUTE)
    assert result.exit_code == 4 and x in result.stderr
    assert expiries(store_url, NOW + 2 * MINUTE) == before


@pytest.mark.parametrize("form", ["claim_json", "ids", "completion_of_none", "ids_no_batch"])
def test_abandon_releases_the_whole_claim_whatever_is_listed(store_url, form):
    made = two_batch_claim(store_url)
    all_ids = [b["batch_id"] for b in made["batches"]]
    which = {
        "claim_json": ["--claim", narrowed(made)],
        "ids": by_ids(made, all_ids[0]),
        "completion_of_none": ["--claim", json.dumps({"session_id": "s", "claim_id": made["claim_id"],
                                                      "lease_token": made["lease_token"], "batch_ids": []})],
        "ids_no_batch": by_ids(made),
    }[form]
    assert ok_json(store_url, "abandon", *which) == {"released": all_ids}
    assert expiries(store_url, NOW) == [None, None]
    again = ok_json(store_url, "claim", "s", "--owner", "w2")
    assert [b["batch_id"] for b in again["batches"]] == all_ids
    assert again["fencing_token"] == made["fencing_token"] + 1


def test_abandon_of_a_lost_claim_releases_nothing(store_url):
    made = two_batch_claim(store_url)
    ok_json(store_url, "claim", "s", "--owner", "w2", now=NOW + 2 * MINUTE)  # takes both
    assert ok_json(store_url, "abandon", "--claim", narrowed(made), now=NOW + 2 * MINUTE) == {"released": []}


def test_renew_and_abandon_help_say_the_claim_is_whole():
    for command in ("renew", "abandon"):
        text = " ".join(CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"}).stdout.split())
        assert "never narrows" in text.lower() and "every batch" in text


# ----------------------------------------------------------------- the API, memory backend included


@pytest.fixture(params=["json", "memory", "sqlite", "postgresql"])
def q(request, tmp_path):
    clock = FixedClock(NOW)
    if request.param == "memory":
        yield Queue(MemoryStore(), now=clock), clock
        return
    with fresh_store_url(request.param, tmp_path) as location:
        store = open_store(location)
        yield Queue(store, now=clock), clock
        if hasattr(store, "close"):
            store.close()


def test_api_renew_and_abandon_act_on_the_whole_claim(q):
    queue, clock = q
    x = queue.enqueue_text("s", "x").batch.batch_id
    y = queue.enqueue_text("s", "y").batch.batch_id
    made = queue.claim("s", ttl_ms=MINUTE)
    only_x = ClaimRef("s", made.claim_id, made.lease_token, (x,))
    clock.advance(30_000)
    renewed = queue.renew(only_x, ttl_ms=10 * MINUTE)
    assert renewed.batch_ids == [x, y] and renewed.expires_at_epoch_ms == NOW + 30_000 + 10 * MINUTE
    assert queue.abandon(ClaimRef("s", made.claim_id, made.lease_token, ())) == [x, y]
    with pytest.raises(LeaseLost):
        queue.renew(only_x)
