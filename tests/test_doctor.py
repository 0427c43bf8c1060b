"""`turnq doctor`: each invariant checked on the raw store file, each finding naming its
batch, exit codes, and `--fix` (plan, dry run, backup, atomic write, only safe repairs)."""

from __future__ import annotations

import json

import pytest
from conftest import NOW
from test_cli import cli, doc, fails

from turnq import Queue
from turnq.doctor import check, repair
from turnq.store import MemoryStore

DAY = 24 * 3600 * 1000


@pytest.fixture
def healthy(store_path):
    """A store with a held claim of two batches, a free batch, and a tombstone."""
    q = Queue(store_path, now=NOW)
    q.enqueue_text("s", "done", source_key="k-done")
    q.complete(q.claim("s"))
    q.enqueue_text("s", "a")
    q.enqueue_text("s", "b")
    q.claim("s", owner="w1", ttl_ms=60_000)
    q.enqueue_text("s", "c", delivery_policy="earliest_safe_boundary")
    return store_path


def load(path):
    return json.loads(path.read_text())


def save(path, document):
    path.write_text(json.dumps(document))


def codes(document, now=NOW):
    return [(f.code, f.severity) for f in check(document, now)]


def test_a_healthy_store_has_no_findings(healthy):
    assert codes(load(healthy)) == []
    result = cli("doctor")
    assert result.exit_code == 0 and "healthy" in result.stdout
    data = doc(cli("doctor", "--json"))
    assert data["healthy"] is True and data["findings"] == []


def test_a_missing_store_is_not_found(tmp_path):
    result = cli("doctor", "--json", "--store", str(tmp_path / "none.json"))
    assert result.exit_code == 5 and json.loads(result.stderr)["error"] == "not_found"
    assert "none.json" in result.stderr and not (tmp_path / "none.json").exists()


def test_format_and_schema_and_unreadable_json(healthy):
    document = load(healthy)
    assert ("format", "error") in codes({**document, "format": "other"})
    assert ("schema_version", "error") in codes({**document, "schema_version": 2})
    assert ("format", "error") in codes({**document, "surprise": 1})
    healthy.write_text('{"format": "turnq-store", "batches": [')
    data = json.loads(cli("doctor", "--json").stdout)
    assert data["healthy"] is False and data["findings"][0]["code"] == "unreadable"
    assert cli("doctor").exit_code == 1


def test_ids_must_be_well_formed_and_unique_and_items_match(healthy):
    document = load(healthy)
    first = document["batches"][0]["batch"]
    broken = json.loads(json.dumps(document))
    broken["batches"][0]["batch"]["batch_id"] = "qwb:XYZ"
    found = check(broken, NOW)
    assert ("batch_id", "qwb:XYZ") in [(f.code, f.batch_id) for f in found]
    twice = json.loads(json.dumps(document))
    twice["batches"].append(json.loads(json.dumps(document["batches"][0])))
    twice["batches"][-1]["batch"]["enqueue_seq"] = 99
    twice["next_enqueue_seq"] = 100
    assert [(f.code, f.batch_id) for f in check(twice, NOW) if f.code == "duplicate_id"] == [
        ("duplicate_id", first["batch_id"])]
    items = json.loads(json.dumps(document))
    items["batches"][1]["batch"]["items"][0]["item_id"] = "wrong"
    found = [f for f in check(items, NOW) if f.code == "item_id"]
    assert [f.batch_id for f in found] == [items["batches"][1]["batch"]["batch_id"]]
    assert ":item:0" in found[0].message


def test_sequence_order_and_next_enqueue_seq(healthy):
    document = load(healthy)
    swapped = json.loads(json.dumps(document))
    swapped["batches"][0], swapped["batches"][1] = swapped["batches"][1], swapped["batches"][0]
    assert [f.code for f in check(swapped, NOW)] == ["seq_order"]
    low = {**document, "next_enqueue_seq": 2}
    (finding,) = check(low, NOW)
    assert finding.code == "next_enqueue_seq" and finding.batch_id == document["batches"][-1]["batch"]["batch_id"]
    repaired, _changes = repair(low, [finding], NOW)
    assert repaired["next_enqueue_seq"] == 5 and check(repaired, NOW) == []
    fixed, _ = repair(swapped, check(swapped, NOW), NOW)
    assert check(fixed, NOW) == []
    dup = json.loads(json.dumps(document))
    dup["batches"][1]["batch"]["enqueue_seq"] = dup["batches"][0]["batch"]["enqueue_seq"]
    assert "duplicate_seq" in [f.code for f in check(dup, NOW)]


def test_claims_of_one_claim_must_agree(healthy):
    document = load(healthy)
    held = [r for r in document["batches"] if r["claim"]]
    assert len(held) == 2
    bad = json.loads(json.dumps(document))
    bad_held = [r for r in bad["batches"] if r["claim"]]
    bad_held[1]["claim"]["owner_id"] = "someone else"
    found = [f for f in check(bad, NOW) if f.code == "claim_mismatch"]
    assert [f.batch_id for f in found] == [bad_held[1]["batch"]["batch_id"]]
    assert "owner_id" in found[0].message and found[0].fix is None  # live: a person decides
    later = NOW + DAY  # once expired, clearing the claim on all its batches is safe
    found = [f for f in check(bad, later) if f.code == "claim_mismatch"]
    assert found[0].fix is not None
    repaired, changes = repair(bad, check(bad, later), later)
    assert all(r["claim"] is None for r in repaired["batches"]) and len(changes) == 2


def test_fencing_counter_not_below_the_claims_token(healthy):
    bad = load(healthy)
    record = next(r for r in bad["batches"] if r["claim"])
    record["fencing_counter"] = 0
    found = [f for f in check(bad, NOW) if f.code == "fencing"]
    assert [f.batch_id for f in found] == [record["batch"]["batch_id"]]
    repaired, changes = repair(bad, found, NOW)
    assert "raise fencing_counter 0 → 1" in changes[0]
    assert check(repaired, NOW) == []


def test_no_batch_held_by_two_claims(healthy):
    bad = load(healthy)
    record = next(r for r in bad["batches"] if r["claim"])
    copy = json.loads(json.dumps(record))
    copy["claim"]["claim_id"] = "qwc:9:9"
    copy["fencing_counter"] = 9
    bad["batches"].append(copy)
    found = [f for f in check(bad, NOW) if f.code == "double_claim"]
    assert [f.batch_id for f in found] == [record["batch"]["batch_id"]]


def test_payloads_are_validated_with_the_models(healthy):
    bad = load(healthy)
    bad["batches"][0]["batch"]["items"][0]["payload"] = {"type": "turn_input", "input": {"items": 7}}
    found = [f for f in check(bad, NOW) if f.code == "payload"]
    assert found and found[0].batch_id == bad["batches"][0]["batch"]["batch_id"]


def test_tombstone_sharing_a_source_key_with_a_live_batch(healthy):
    bad = load(healthy)
    bad["batches"][0]["batch"]["source_key"] = bad["tombstones"][0]["batch"]["source_key"]
    found = [f for f in check(bad, NOW) if f.code == "tombstone_key"]
    assert [f.batch_id for f in found] == [bad["tombstones"][0]["batch"]["batch_id"]]
    repaired, _changes = repair(bad, found, NOW)
    assert repaired["tombstones"] == [] and check(repaired, NOW) == []


def test_a_claim_expired_long_ago_is_a_notice_that_fix_clears(healthy):
    later = NOW + 2 * DAY
    found = check(load(healthy), later)
    assert {(f.code, f.severity) for f in found} == {("stale_claim", "notice")}
    assert check(load(healthy), NOW + 120_000) == []  # expired, but not long ago


def test_cli_reports_each_finding_and_exits_1(healthy):
    save(healthy, {**load(healthy), "next_enqueue_seq": 1})
    result = cli("doctor")
    assert result.exit_code == 1
    assert "next_enqueue_seq" in result.stdout and "set next_enqueue_seq to 5" in result.stdout
    data = json.loads(cli("doctor", "--json").stdout)
    assert data["healthy"] is False and [f["code"] for f in data["findings"]] == ["next_enqueue_seq"]
    assert data["findings"][0]["batch_id"].startswith("qwb:")


def test_fix_dry_run_shows_the_plan_and_writes_nothing(healthy):
    save(healthy, {**load(healthy), "next_enqueue_seq": 1})
    before = healthy.read_bytes()
    result = cli("doctor", "--fix", "--dry-run")
    assert result.exit_code == 1
    assert "Planned changes" in result.stdout and "next_enqueue_seq 1 → 5" in result.stdout
    assert healthy.read_bytes() == before
    assert not list(healthy.parent.glob("turnq.json.bak-*"))
    fails(cli("doctor", "--dry-run"), 2, "--dry-run")


def test_fix_backs_up_writes_atomically_and_the_store_works_again(healthy):
    save(healthy, {**load(healthy), "next_enqueue_seq": 1})
    broken = healthy.read_bytes()
    fails(cli("enqueue", "s", "--text", "x"), 7)  # the codec refuses the broken store
    result = cli("doctor", "--fix")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert result.stdout.index("Planned changes") < result.stdout.index("Repaired")
    backup = healthy.with_name(f"turnq.json.bak-{NOW}")
    assert backup.read_bytes() == broken and str(backup) in result.stdout.replace("\n", "")
    assert load(healthy)["next_enqueue_seq"] == 5
    assert cli("enqueue", "s", "--text", "x").exit_code == 0
    assert doc(cli("doctor", "--json"))["healthy"] is True
    repair_entry = Queue(healthy).store.read_log()[-2]
    assert repair_entry["op"] == "repair" and repair_entry["changes"] == ["next_enqueue_seq 1 → 5"]
    assert repair_entry["backup"] == str(backup)


def test_fix_json_reports_changes_backup_and_what_remains(healthy):
    bad = load(healthy)
    bad["next_enqueue_seq"] = 1
    bad["batches"][0]["batch"]["items"][0]["item_id"] = "wrong"  # not safely fixable
    save(healthy, bad)
    result = cli("doctor", "--fix", "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["fixed"] is True and data["backup"].endswith(f".bak-{NOW}")
    assert [f["code"] for f in data["remaining"]] == ["item_id"]
    assert load(healthy)["next_enqueue_seq"] == 5


def test_fix_leaves_live_claims_alone(healthy):
    result = doc(cli("doctor", "--fix", "--json"))
    assert result["changes"] == [] and result["fixed"] is False
    assert not list(healthy.parent.glob("turnq.json.bak-*"))


def test_doctor_on_the_memory_backend():
    q = Queue(MemoryStore(), now=NOW)
    q.enqueue_text("s", "x")
    q.claim("s", owner="w", ttl_ms=1000)
    q.clock.set(NOW + 2 * DAY)
    report = q.doctor(fix=True)  # a stale claim is a notice: its holder can still settle it
    assert [f.code for f in report.findings] == ["stale_claim"] and not report.fixed
    assert q.inspect("s").batches[0].lease is not None
    report = q.doctor(fix=True, clear_stale=True)
    assert [f.code for f in report.findings] == ["stale_claim"] and report.fixed
    assert q.inspect("s").batches[0].lease is None


def test_the_readme_debugging_section_is_real_output(tmp_path):
    """Each command of README "Debugging a queue", run in order, prints what the README shows."""
    import os
    import re
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    if shutil.which("jq") is None:
        pytest.skip("jq is not installed (the README example pipes into it)")
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Debugging a queue", 1)[1].split("\n## ", 1)[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TURNQ_")}
    env.update(COLUMNS="90", PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    steps: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```text\n(.*?)\n```", section, re.DOTALL):
        for line in block.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            else:
                steps[-1][1].append(line)
    assert len(steps) > 10
    for command, shown in steps:
        if command.startswith("export "):
            name, value = command[len("export "):].split("=", 1)
            env[name] = value
            continue
        result = subprocess.run(["bash", "-c", command], check=False, cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=60)
        printed = result.stderr + result.stdout
        assert [line.rstrip() for line in printed.splitlines()] == [line.rstrip() for line in shown], command


def test_a_second_fix_under_the_same_clock_keeps_the_first_backup(healthy):
    save(healthy, {**load(healthy), "next_enqueue_seq": 1})
    first = healthy.read_bytes()
    assert cli("doctor", "--fix").exit_code == 0
    save(healthy, {**load(healthy), "next_enqueue_seq": 2})
    second = healthy.read_bytes()
    assert cli("doctor", "--fix").exit_code == 0
    assert healthy.with_name(f"turnq.json.bak-{NOW}").read_bytes() == first
    assert healthy.with_name(f"turnq.json.bak-{NOW}-1").read_bytes() == second
