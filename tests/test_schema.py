"""`turnq schema`: the JSON Schema of each wire shape describes the wire JSON.

Every JSON example of spec/wire.md validates against its shape's schema; the spec's
vectors agree with the schema on what is accepted and refused (but for what JSON Schema
cannot say: a key given twice); a few invalid documents are refused.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

import jsonschema
import pytest
from conftest import DATA_DIR, spec_vectors
from typer.testing import CliRunner

from turnq import schema
from turnq.cli import app

RUNNER = CliRunner()
WIRE_MD = (DATA_DIR / "wire.md").read_text(encoding="utf-8")
SHAPE_OF_TYPE = {"QueuedWorkPayload": "payload", "QueuedWorkBatchDraft": "draft", "QueuedWorkBatch": "batch",
                 "QueuedWorkClaim": "claim", "QueuedWorkCompletion": "completion",
                 "SessionCommandReceipt": "receipt"}


@functools.cache
def validator(shape: str) -> jsonschema.Draft202012Validator:
    document = schema.schema(shape)
    jsonschema.Draft202012Validator.check_schema(document)
    return jsonschema.Draft202012Validator(document)


# --------------------------------------------------------------------------- the examples of wire.md


def _section(title: str) -> str:
    """The text of a `##`/`###` section of wire.md, up to the next heading."""
    match = re.search(rf"^#+ {re.escape(title)}.*?$(.*?)(?=^#)", WIRE_MD, re.DOTALL | re.MULTILINE)
    assert match, title
    return match.group(1)


def _json_blocks(text: str) -> list[str]:
    return re.findall(r"```json\n(.*?)```", text, re.DOTALL)


def _inline_objects(text: str) -> list[str]:
    """Backticked JSON objects (a form with a placeholder, such as `{"payload": any JSON value}`, is left out)."""
    found = []
    for candidate in re.findall(r"`(\{.*?\})`", text, re.DOTALL):
        try:
            parsed = json.loads(candidate)
        except ValueError:
            continue
        if parsed:  # `{}` is a default, not an example
            found.append(candidate)
    return found


def _fill(text: str, placeholders: dict[str, str]) -> Any:
    """The example with its placeholders (TurnInput, [QueuedWorkPayload], …) replaced by examples
    of those shapes taken from wire.md itself."""
    for name, value in placeholders.items():
        text = re.sub(rf"(?<![\"\w]){re.escape(name)}(?![\"\w])", lambda _m, v=value: v, text)
    return json.loads(text)


def wire_md_examples() -> list[tuple[str, str, Any]]:
    """(shape, label, JSON) of every example in wire.md that is a whole shape or a payload part."""
    items = _inline_objects(_section("TurnInput"))  # {"type": "text", …} and {"type": "image_ref", …}
    assert len(items) == 2
    turn_input = json.dumps({"items": [json.loads(i) for i in items], "image_blobs": {"img-1": [137, 80, 78, 71]}})
    invocation_text = " ".join(re.search(r"RuntimeInvocation: `(\{.*?\})`", WIRE_MD, re.DOTALL).group(1).split())
    wake = json.dumps({"wake_id": "wake-1", "target_session_id": "root", "target_scope_id": "session:root",
                       "process_id": "p1", "sequence": 7, "event_type": "process.wake",
                       "event_invocation": json.loads(invocation_text), "dedupe_key": "wake-1",
                       "input": "tests passed", "created_at_ms": 1767225600000})
    commands = _json_blocks(_section("SessionCommand, tagged by `kind`"))[0].strip().splitlines()
    placeholders = {"TurnInput": turn_input, "ProcessWakeDelivery": wake, "SessionCommand": commands[0]}
    payload_lines = _json_blocks(_section("Payloads"))[0].strip().splitlines()
    examples = [("payload", f"Payloads line {i}", _fill(line, placeholders)) for i, line in enumerate(payload_lines)]
    examples += [("payload", f"SessionCommand line {i}", {"type": "session_command", "command": json.loads(line)})
                 for i, line in enumerate(commands)]
    placeholders["QueuedWorkPayload"] = json.dumps(_fill(payload_lines[0], placeholders))
    examples.append(("draft", "QueuedWorkBatchDraft", _fill(_json_blocks(_section("QueuedWorkBatchDraft"))[0],
                                                          placeholders)))
    batch_text = _json_blocks(_section("QueuedWorkBatch (what"))[0]
    examples.append(("batch", "QueuedWorkBatch", _fill(batch_text, placeholders)))
    placeholders["QueuedWorkBatch"] = json.dumps(_fill(batch_text, placeholders))
    examples.append(("claim", "QueuedWorkClaim", _fill(_json_blocks(_section("QueuedWorkClaim"))[0], placeholders)))
    examples += [("completion", "QueuedWorkCompletion", json.loads(t))
                 for t in _inline_objects(_section("QueuedWorkCompletion"))]
    examples += [("receipt", "SessionCommandReceipt", json.loads(t))
                 for t in _inline_objects(_section("SessionCommandReceipt"))]
    return examples


def test_wire_md_has_the_examples_we_expect() -> None:
    shapes = [shape for shape, _, _ in wire_md_examples()]
    assert shapes.count("payload") == 5
    assert {"draft", "batch", "claim", "completion", "receipt"} <= set(shapes)


@pytest.mark.parametrize(("shape", "label", "example"), wire_md_examples(), ids=lambda v: v if isinstance(v, str)
                         else None)
def test_every_wire_md_example_validates(shape: str, label: str, example: Any) -> None:
    errors = list(validator(shape).iter_errors(example))
    assert not errors, f"{label}: {errors[0].message}"


def test_merge_key_forms_of_wire_md() -> None:
    check = validator("draft")
    base = wire_md_examples()[5][2]
    assert base["session_id"] == "root"
    for merge_key in ("never", "payload_default", {"group": "chat"}, {"group": ""}, {"never": None},
                      {"payload_default": None}):
        assert check.is_valid({**base, "merge_key": merge_key}), merge_key
    for merge_key in ("group", {}, [], {"group": "a", "x": 1}, {"other": "a"}, None):
        assert not check.is_valid({**base, "merge_key": merge_key}), merge_key


# --------------------------------------------------------------------------- the spec's vectors


def test_the_vectors_agree_with_the_schema() -> None:
    """Accepted vectors validate; refused ones are refused, but for the draft keys turnq accepts on purpose
    and a key given twice (JSON Schema sees parsed JSON, where the last one wins)."""
    disagree = []
    checked = 0
    for vector in spec_vectors():
        shape = SHAPE_OF_TYPE.get(vector["type"])
        if shape is None:
            continue
        checked += 1
        valid = validator(shape).is_valid(json.loads(vector["input"]))
        if valid == vector["rejected"]:
            disagree.append((vector["type"], vector["serde_error"]))
    assert checked >= 50
    assert [why for _, why in disagree if why and why.startswith("duplicate field")] == [
        why for _, why in disagree], disagree


# --------------------------------------------------------------------------- invalid ones


INVALID = [
    ("payload", {"type": "turn_input"}),  # missing input
    ("payload", {"type": "video", "input": {"items": []}}),  # unknown tag
    ("payload", {"input": {"items": []}}),  # the tag is required
    ("payload", {"type": "turn_input", "input": {"items": [{"text": "no tag"}]}}),
    ("payload", {"type": "turn_input", "input": {"items": [], "image_blobs": {"a": [256]}}}),
    ("payload", {"type": "turn_input", "input": {"items": [], "image_blobs": {"a": "AAEC"}}}),
    ("payload", {"type": "session_command", "command": {"kind": "reboot", "reason": "x"}}),
    ("payload", {"type": "session_command", "command": {"kind": "refresh_tool_surface", "reason": "x",
                                                        "expected_generation": -1}}),
    ("batch", {"batch_id": "qwb:x", "session_id": "s", "enqueue_seq": 2**64, "delivery_policy": "earliest_safe_boundary",
               "slot_policy": "join", "merge_key": "never", "available_at_ms": 0, "enqueued_at_ms": 0, "items": []}),
    ("claim", {"session_id": "s"}),
    ("completion", {"session_id": "s", "claim_id": "c", "lease_token": "t", "batch_ids": "qwb:x"}),
    ("receipt", {"session_id": "s", "batch_id": "b", "source_key": None}),
    ("draft", {"session_id": "s", "delivery_policy": "soon", "slot_policy": "join", "merge_key": "never",
               "available_at_ms": 0, "payloads": []}),
    ("store", {"format": "other", "schema_version": 1, "next_enqueue_seq": 1, "batches": [], "tombstones": []}),
]


@pytest.mark.parametrize(("shape", "document"), INVALID)
def test_invalid_documents_are_refused(shape: str, document: Any) -> None:
    assert not validator(shape).is_valid(document)


def test_a_real_store_file_validates(tmp_path: Any) -> None:
    from conftest import NOW

    from turnq import Queue

    queue = Queue(tmp_path / "s.json", now=NOW)
    queue.enqueue_text("s", "hi", source_key="k")
    queue.wake("s", "p", 1, "woke")
    queue.complete(queue.claim("s", owner="w", max_batches=1))
    queue.claim("s", owner="w")
    document = json.loads((tmp_path / "s.json").read_text())
    assert document["tombstones"] and document["batches"][0]["claim"]
    assert validator("store").is_valid(document)
    assert not validator("store").is_valid({**document, "schema_version": 2})


# --------------------------------------------------------------------------- the command


def test_cli_prints_each_schema_and_all_of_them() -> None:
    result = RUNNER.invoke(app, ["schema", "claim"])
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert document == schema.schema("claim")
    assert document["$schema"].endswith("2020-12/schema") and document["title"] == "QueuedWorkClaim"
    assert document["properties"]["fencing_token"]["maximum"] == 2**64 - 1
    everything = json.loads(RUNNER.invoke(app, ["schema"]).stdout)
    assert list(everything) == ["draft", "batch", "claim", "completion", "receipt", "payload", "store"]
    bad = RUNNER.invoke(app, ["schema", "nope"])
    assert bad.exit_code == 2 and "nope" in bad.stderr


def test_schema_is_built_on_demand_not_at_import() -> None:
    import subprocess
    import sys

    code = "import sys, turnq.schema, turnq.cli; print('jsonschema' in sys.modules, 'rich' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
