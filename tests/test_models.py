"""The wire models against the reference: spec/vectors.jsonl, the examples of spec/wire.md,
and the rules of wire.md (unknown fields, duplicate keys, u64, omitted-when-absent)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from conftest import DATA_DIR, SHARED_SPEC_DIR, spec_vectors
from pydantic import ValidationError

from turnq import models as m
from turnq import wirejson
from turnq.errors import InvalidInput

U64_MAX = 2**64 - 1
VECTORS = spec_vectors()
WIRE_MD = (DATA_DIR / "wire.md").read_text()
WIRE_MD_FLAT = " ".join(WIRE_MD.split())


def compact(text: str) -> str:
    """JSON text as serde_json writes it (compact, non-ASCII as is), keys in the given order.

    Only for texts without floats (Python would write those differently)."""
    return json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)


def write(wire_type: Any, text: str, context: m.WireContext | None = None) -> str:
    """Parse `text` as `wire_type` and write it back as turnq's wire text."""
    return wirejson.dumps(m.dump(m.parse(wire_type, text, context)))


_BLOBS = re.compile(r'"image_blobs":\{[^{}]*\}')


def _sorted_blobs(match: re.Match[str]) -> str:
    blobs = json.loads(match.group(0)[len('"image_blobs":'):])
    return '"image_blobs":' + json.dumps(dict(sorted(blobs.items())), separators=(",", ":"))


def blobs_as_map(text: str) -> str:
    """The text with every image_blobs object's keys sorted (image_blobs is a HashMap in the reference)."""
    return _BLOBS.sub(_sorted_blobs, text)


def blob_key_orders(text: str) -> list[list[str]]:
    return [list(json.loads(found[len('"image_blobs":'):])) for found in _BLOBS.findall(text)]


# --------------------------------------------------------------------------- vectors


def _is_deliberate_difference(vector: dict) -> bool:
    """spec/wire.md: a draft missing merge_key and/or available_at_ms is accepted by turnq."""
    return (
        vector["type"] == "QueuedWorkBatchDraft"
        and vector["rejected"]
        and re.match(r"missing field `(merge_key|available_at_ms)`", vector["serde_error"] or "") is not None
    )


def _draft_with_defaults(text: str) -> dict:
    data = json.loads(text)
    known = m.QueuedWorkBatchDraft.model_fields
    data = {key: value for key, value in data.items() if key in known}
    data.setdefault("merge_key", "never")
    data.setdefault("available_at_ms", 0)
    return data


def test_vectors_file_is_complete() -> None:
    assert len(VECTORS) == 200
    assert {vector["type"] for vector in VECTORS} == set(m.WIRE_TYPES)
    # The deliberate difference covers exactly these four reference rejections.
    assert [v["label"] for v in VECTORS if _is_deliberate_difference(v)] == [
        "QueuedWorkBatchDraft missing merge_key",
        "QueuedWorkBatchDraft missing available_at_ms",
        "QueuedWorkBatchDraft missing merge_key+available_at_ms",
        "QueuedWorkBatchDraft typo field (merge_keys)",
    ]


@pytest.mark.parametrize("vector", VECTORS, ids=[f"{i:03d} {v['label']}" for i, v in enumerate(VECTORS)])
def test_vector(vector: dict) -> None:
    wire_type = m.WIRE_TYPES[vector["type"]]
    if _is_deliberate_difference(vector):
        # Accepted, with "never" / 0 written: the output is the reference's output for the same
        # draft given with those defaults spelt out.
        filled = _draft_with_defaults(vector["input"])
        twins = [
            v for v in VECTORS
            if v["type"] == "QueuedWorkBatchDraft" and not v["rejected"] and json.loads(v["input"]) == filled
        ]
        assert twins, "no reference vector holds this draft with the defaults filled in"
        out = write(wire_type, vector["input"])
        assert out == twins[0]["output"]
        assert '"merge_key":"never"' in out and '"available_at_ms":0' in out
        return
    if vector["rejected"]:
        with pytest.raises(InvalidInput):
            m.parse(wire_type, vector["input"])
        return
    out = write(wire_type, vector["input"])
    expected = vector["output"]
    if '"image_blobs"' in expected:
        # A HashMap in the reference: compare as a map; everything else as text.
        assert blobs_as_map(out) == blobs_as_map(expected)
        assert json.loads(out) == json.loads(expected)
        for keys in blob_key_orders(out):
            assert keys == sorted(keys), "turnq writes image_blobs keys sorted"
    else:
        assert out == expected
    # Writing is stable: turnq's output reads back to the same value and text.
    assert write(wire_type, out) == out


def test_image_blobs_hashmap_vector_really_differs_in_order() -> None:
    # The map comparison above is needed: the reference wrote this one out of order.
    (vector,) = [v for v in VECTORS if v["label"] == "TurnInput two image blobs (HashMap order)"]
    out = write(m.TurnInput, vector["input"])
    assert out != vector["output"]
    assert blob_key_orders(out) == [["a", "b", "c", "d"]]
    assert blobs_as_map(out) == blobs_as_map(vector["output"])


def test_spec_copy_is_current() -> None:
    if not SHARED_SPEC_DIR.is_dir():
        pytest.skip(f"the shared spec folder {SHARED_SPEC_DIR} is not present; cannot compare the copy")
    for name in ("vectors.jsonl", "wire.md"):
        assert (DATA_DIR / name).read_bytes() == (SHARED_SPEC_DIR / name).read_bytes(), f"tests/data/{name} is stale"


# --------------------------------------------------------------------------- wire.md examples

TURN_INPUT = (
    '{"items": [{"type": "text", "text": "look"}, {"type": "image_ref", "id": "img-1"}], '
    '"image_blobs": {"img-1": [137, 80, 78, 71]}}'
)
WAKE = (
    '{"wake_id": "wake-1", "target_session_id": "root", "target_scope_id": "session:root", '
    '"process_id": "p1", "sequence": 7, "event_type": "process.wake", '
    '"event_invocation": {"scope": {"session_id": "root"}, "subject": {"type": "process_event", '
    '"process_id": "p1", "sequence": 7, "event_type": "process.wake"}}, '
    '"process_caused_by": {"type": "process", "process_id": "p0"}, "dedupe_key": "wake-1", '
    '"input": "process p1 woke", "created_at_ms": 1767225600000}'
)
SESSION_COMMAND = '{"kind": "reset_session", "reason": "user asked"}'
PAYLOAD = '{"type": "turn_input", "input": ' + TURN_INPUT + "}"
CAUSAL_REF = '{"type": "process", "process_id": "p1"}'
PLUGIN_MESSAGE = '{"role": "User", "content": "text", "images": [[137, 80, 78, 71]]}'
MESSAGE_ORIGIN = (
    '{"kind": "process", "process_id": "p1", "event_type": "process.wake", "sequence": 7, '
    '"wake_id": "wake-1", "caused_by": ' + CAUSAL_REF + "}"
)

PLACEHOLDERS = {
    "TurnInput": TURN_INPUT,
    "ProcessWakeDelivery": WAKE,
    "SessionCommand": SESSION_COMMAND,
    "QueuedWorkPayload": PAYLOAD,
    "CausalRef": CAUSAL_REF,
    "PluginMessage": PLUGIN_MESSAGE,
    "MessageOrigin": MESSAGE_ORIGIN,
}
_PLACEHOLDER = re.compile(r"(?<![\"\w])(" + "|".join(PLACEHOLDERS) + r"|QueuedWorkBatch)(?![\"\w])")


def _substitute(text: str, batch: str | None = None) -> str:
    def repl(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "QueuedWorkBatch":
            assert batch is not None
            return batch
        return PLACEHOLDERS[name]

    return _PLACEHOLDER.sub(repl, text)


def _fenced_examples() -> list[tuple[str, str]]:
    """(wire type name, JSON text) for every ```json block of wire.md, placeholders substituted."""
    blocks: list[tuple[str, list[str]]] = []
    heading = ""
    current: list[str] | None = None
    for line in WIRE_MD.splitlines():
        if current is not None:
            if line.startswith("```"):
                blocks.append((heading, current))
                current = None
            else:
                current.append(line)
        elif line.startswith("```json"):
            current = []
        elif line.startswith("#"):
            heading = line
    examples: list[tuple[str, str]] = []
    batch_text: str | None = None
    for heading, lines in blocks:
        names = [name for name in sorted(m.WIRE_TYPES, key=len, reverse=True) if name in heading]
        assert names, f"no wire type named in heading {heading!r}"
        name = names[0]
        whole = _substitute("\n".join(lines), batch_text)
        try:
            json.loads(whole)
            docs = [whole]
        except json.JSONDecodeError:  # one document per line
            docs = [_substitute(line, batch_text) for line in lines if line.strip()]
        for doc in docs:
            json.loads(doc)  # every block is complete JSON once substituted
            examples.append((name, doc))
            if name == "QueuedWorkBatch":
                batch_text = doc
    return examples


FENCED = _fenced_examples()

# (shape, text as wire.md gives it, placeholders/elisions to fill in, expected output or None = compact input)
INLINE: list[tuple[Any, str, dict[str, str], str | None]] = [
    (m.MergeKey, '{"group": "NAME"}', {}, None),
    (m.MergeKey, '{"never": null}', {}, '"never"'),
    (m.MergeKey, '{"payload_default": null}', {}, '"payload_default"'),
    (m.MergeKey, '"never"', {}, None),
    (m.MergeKey, '"payload_default"', {}, None),
    (m.InputItem, '{"type": "text", "text": "hi"}', {}, None),
    (m.InputItem, '{"type": "image_ref", "id": "img-1"}', {}, None),
    (m.RuntimeInvocation, '{"scope": {"session_id": "root"}, "subject": {"type": "process_event", '
                          '"process_id": "p1", "sequence": 7, "event_type": "process.wake"}}', {}, None),
    (m.RuntimeScope, '{"session_id": ""}', {}, None),
    (m.RuntimeReplay, '{"key": "…"}', {}, None),
    (m.QueuedWorkCompletion,
     '{"session_id": "root", "claim_id": "qwc:3:1", "lease_token": "…", "batch_ids": ["qwb:…"]}', {}, None),
    (m.SessionCommandReceipt,
     '{"session_id": "root", "batch_id": "qwb:…", "source_key": "command:reset_session:KEY"}', {}, None),
    (m.PluginMessage, '{"role": "User", "content": "text", "images": [[137, 80, …], …]}',
     {"[[137, 80, …], …]": "[[137, 80, 78, 71], [1, 2]]"}, None),
    (m.TurnCause, '{"id": "wake-1", "event_type": "process.wake", "origin": MessageOrigin, "text": "…"}', {}, None),
    (m.MessageOrigin, '{"kind": "process", "process_id": "p1", "event_type": "process.wake", "sequence": 7, '
                      '"wake_id": "wake-1", "caused_by": CausalRef}', {}, None),
    (m.AcceptedInjectedTurnInput, '{"id": "abc", "message": PluginMessage}', {}, None),
    # The bytes example: `"img-1": [137, 80, 78, 71]`, inside a TurnInput.
    (m.TurnInput, '"img-1": [137, 80, 78, 71]',
     {'"img-1": [137, 80, 78, 71]':
      '{"items": [{"type": "image_ref", "id": "img-1"}], "image_blobs": {"img-1": [137, 80, 78, 71]}}'}, None),
]


def _causal_and_subject_examples() -> list[tuple[Any, str]]:
    """A concrete value of every CausalRef and RuntimeSubject variant as wire.md lists them."""
    out: list[tuple[Any, str]] = []
    sections = [
        (m.CausalRef, WIRE_MD_FLAT.split("CausalRef, tagged by `type`")[1].split("Fields are written")[0]),
        (m.RuntimeSubject, WIRE_MD_FLAT.split("(RuntimeSubject), tagged by `type`")[1].split("CausalRef,")[0]),
    ]
    values = {"sequence": 7, "kind": "tool_call"}
    for shape, section in sections:
        for tag, rest in re.findall(r'\{"type": "(\w+)"(.*?)\}', section):
            fields = re.findall(r'"(\w+)"', rest)
            doc = {"type": tag} | {field: values.get(field, f"{field}-1") for field in fields}
            out.append((shape, json.dumps(doc)))
    return out


CAUSAL_AND_SUBJECT = _causal_and_subject_examples()


def _round_trip(shape: Any, text: str) -> str:
    first = m.parse(shape, text)
    out = wirejson.dumps(m.dump(first))
    second = m.parse(shape, out)
    assert second == first
    assert wirejson.dumps(m.dump(second)) == out
    return out


def test_wire_md_fenced_blocks_found() -> None:
    names = [name for name, _ in FENCED]
    assert names == ["QueuedWorkPayload"] * 3 + ["SessionCommand"] * 2 + [
        "QueuedWorkBatchDraft", "QueuedWorkBatch", "QueuedWorkClaim"
    ]


@pytest.mark.parametrize(("name", "text"), FENCED, ids=[f"{i} {name}" for i, (name, _) in enumerate(FENCED)])
def test_wire_md_fenced_example_round_trips(name: str, text: str) -> None:
    out = _round_trip(m.WIRE_TYPES[name], text)
    # Every example is written in the reference's order already: turnq writes it back unchanged.
    assert out == compact(text)


@pytest.mark.parametrize(
    ("shape", "snippet", "fill", "expected"), INLINE, ids=[f"{i} {row[1][:40]}" for i, row in enumerate(INLINE)]
)
def test_wire_md_inline_example_round_trips(shape: Any, snippet: str, fill: dict[str, str], expected: str | None) -> None:
    assert " ".join(snippet.split()) in WIRE_MD_FLAT, "the example is not (any more) in wire.md"
    text = snippet
    for old, new in fill.items():
        text = text.replace(old, new)
    text = _substitute(text)
    out = _round_trip(shape, text)
    assert out == (expected if expected is not None else compact(text))


def test_wire_md_causal_and_subject_lists_found() -> None:
    tags = [(shape, json.loads(text)["type"]) for shape, text in CAUSAL_AND_SUBJECT]
    assert [t for s, t in tags if s is m.CausalRef] == [
        "turn", "effect", "tool_call", "process", "process_event", "host_event", "session_node"
    ]
    assert [t for s, t in tags if s is m.RuntimeSubject] == [
        "effect", "process", "process_event", "host_event", "session_node"
    ]


@pytest.mark.parametrize(("shape", "text"), CAUSAL_AND_SUBJECT, ids=[text for _, text in CAUSAL_AND_SUBJECT])
def test_wire_md_causal_and_subject_variants_round_trip_in_listed_order(shape: Any, text: str) -> None:
    assert _round_trip(shape, text) == compact(text)


def test_every_effect_kind_accepted_and_others_refused() -> None:
    for kind in ("llm_call", "direct", "tool_call", "process", "exec_code", "checkpoint",
                 "sync_execution_surface", "sleep"):
        text = json.dumps({"type": "effect", "effect_id": "e", "kind": kind})
        assert write(m.RuntimeSubject, text) == compact(text)
    with pytest.raises(InvalidInput):
        m.parse(m.RuntimeSubject, '{"type": "effect", "effect_id": "e", "kind": "LlmCall"}')


def test_causal_effect_without_turn_id_omits_it() -> None:
    assert write(m.CausalRef, '{"type": "effect", "session_id": "s", "turn_id": null, "effect_id": "e"}') == (
        '{"type":"effect","session_id":"s","effect_id":"e"}'
    )


# --------------------------------------------------------------------------- unknown fields

DRAFT = {
    "session_id": "root",
    "delivery_policy": "earliest_safe_boundary",
    "slot_policy": "join",
    "merge_key": "never",
    "available_at_ms": 0,
    "payloads": [{"type": "turn_input", "input": {"items": [{"type": "text", "text": "hi"}]}}],
}


def test_unknown_top_level_field_is_collected_with_shape_and_key() -> None:
    context = m.WireContext()
    draft = m.parse(m.QueuedWorkBatchDraft, json.dumps(DRAFT | {"source_keys": "host:abc"}), context)
    assert context.dropped == ["QueuedWorkBatchDraft.source_keys"]
    assert draft.source_key is None
    assert "source_keys" not in draft.to_wire_json()


def test_unknown_nested_field_is_collected_with_its_own_shape() -> None:
    context = m.WireContext()
    payload = {"type": "turn_input", "input": {"items": [{"type": "text", "text": "hi"}], "x": 1}}
    m.parse(m.QueuedWorkBatchDraft, json.dumps(DRAFT | {"payloads": [payload]}), context)
    assert context.dropped == ["TurnInput.x"]


def test_unknown_fields_at_several_depths_all_collected_in_order() -> None:
    context = m.WireContext()
    text = (
        '{"scope": {"session_id": "s", "scope_extra": 1}, '
        '"subject": {"type": "process", "process_id": "p", "subject_extra": 2}, '
        '"replay": {"key": "k", "replay_extra": 3}, "top_a": 4, "top_b": 5}'
    )
    out = write(m.RuntimeInvocation, text, context)
    assert out == '{"scope":{"session_id":"s"},"subject":{"type":"process","process_id":"p"},"replay":{"key":"k"}}'
    assert sorted(context.dropped) == sorted([
        "RuntimeScope.scope_extra", "RuntimeSubject(process).subject_extra", "RuntimeReplay.replay_extra",
        "RuntimeInvocation.top_a", "RuntimeInvocation.top_b",
    ])
    assert context.dropped.index("RuntimeInvocation.top_a") < context.dropped.index("RuntimeInvocation.top_b")


def test_unknown_field_deep_in_claim_is_collected() -> None:
    batch = {
        "batch_id": "qwb:1", "session_id": "root", "enqueue_seq": 1, "delivery_policy": "earliest_safe_boundary",
        "slot_policy": "join", "merge_key": "never", "available_at_ms": 0, "enqueued_at_ms": 5,
        "items": [{"item_id": "qwb:1:item:0",
                   "payload": {"type": "session_command",
                               "command": {"kind": "reset_session", "reason": "r", "why": "?"}}}],
    }
    claim = {
        "session_id": "root", "claim_id": "qwc:1:1", "owner_id": "o", "lease_token": "t", "fencing_token": 1,
        "claimed_at_epoch_ms": 5, "expires_at_epoch_ms": 6, "batches": [batch],
    }
    context = m.WireContext()
    m.parse(m.QueuedWorkClaim, json.dumps(claim), context)
    assert context.dropped == ["SessionCommand(reset_session).why"]


def test_free_form_maps_are_not_unknown_fields() -> None:
    context = m.WireContext(strict=True)
    text = (
        '{"items": [], "image_blobs": {"any-key": [1]}, '
        '"protocol_turn_options": {"payload": {"whatever": {"nested": true}}}}'
    )
    write(m.TurnInput, text, context)
    assert context.dropped == []


def test_no_context_drops_unknown_fields_quietly() -> None:
    value = m.validate(m.QueuedWorkBatchDraft, DRAFT | {"source_keys": "x"})
    assert value.source_key is None


@pytest.mark.parametrize(
    ("shape", "data", "field", "owner"),
    [
        (m.QueuedWorkBatchDraft, DRAFT | {"source_keys": "host:abc"}, "source_keys", "QueuedWorkBatchDraft"),
        (m.QueuedWorkPayload, {"type": "turn_input", "input": {"items": [], "x": 1}}, "x", "TurnInput"),
        (m.TurnInput, {"items": [], "trace_turn_ids": "t"}, "trace_turn_ids", "TurnInput"),
        (m.SessionCommand, {"kind": "reset_session", "reason": "r", "expected_generation": 1},
         "expected_generation", "SessionCommand(reset_session)"),
    ],
)
def test_strict_context_refuses_unknown_field_naming_it(shape: Any, data: dict, field: str, owner: str) -> None:
    context = m.WireContext(strict=True)
    with pytest.raises(InvalidInput) as caught:
        m.parse(shape, json.dumps(data), context)
    assert f"`{field}`" in str(caught.value)
    assert owner in str(caught.value)
    # Without strict the same input is accepted.
    lenient = m.WireContext()
    m.parse(shape, json.dumps(data), lenient)
    assert lenient.dropped == [f"{owner}.{field}"]


def test_strict_context_accepts_input_without_unknown_fields() -> None:
    context = m.WireContext(strict=True)
    assert write(m.QueuedWorkBatchDraft, json.dumps(DRAFT), context).startswith('{"session_id":"root"')


# --------------------------------------------------------------------------- duplicate keys


@pytest.mark.parametrize(
    ("shape", "text", "field"),
    [
        (m.QueuedWorkBatchDraft,
         '{"session_id": "a", "session_id": "b", "delivery_policy": "join", "slot_policy": "join", "payloads": []}',
         "session_id"),
        (m.TurnInput, '{"items": [], "items": []}', "items"),
        (m.InputItem, '{"type": "text", "text": "a", "text": "b"}', "text"),
        (m.QueuedWorkPayload, '{"type": "turn_input", "type": "turn_input", "input": {"items": []}}', "type"),
        (m.QueuedWorkPayload, '{"type": "turn_input", "input": {"items": [], "trace_turn_id": "a", '
                              '"trace_turn_id": "b"}}', "trace_turn_id"),
        (m.SessionCommand, '{"kind": "reset_session", "reason": "a", "reason": "a"}', "reason"),
        (m.TurnInput, '{"items": [], "protocol_turn_options": {"payload": 1, "payload": 2}}', "payload"),
    ],
)
def test_duplicate_key_in_struct_refused(shape: Any, text: str, field: str) -> None:
    with pytest.raises(InvalidInput, match=f"duplicate field `{field}`"):
        m.parse(shape, text)


def test_duplicate_key_in_merge_key_refused() -> None:
    with pytest.raises(InvalidInput):
        m.parse(m.MergeKey, '{"group": "a", "group": "b"}')


def test_duplicate_key_in_protocol_payload_last_wins() -> None:
    text = '{"items": [], "protocol_turn_options": {"payload": {"a": 1, "b": {"c": 1, "c": 2}, "a": 3}}}'
    assert write(m.TurnInput, text) == (
        '{"items":[],"image_blobs":{},"protocol_turn_options":{"payload":{"a":3,"b":{"c":2}}}}'
    )


def test_image_blobs_written_sorted_whatever_the_input_order() -> None:
    text = '{"items": [], "image_blobs": {"z": [1], "img-10": [2], "img-2": [3], "A": []}}'
    assert write(m.TurnInput, text) == '{"items":[],"image_blobs":{"A":[],"img-10":[2],"img-2":[3],"z":[1]}}'


def test_duplicate_key_in_image_blobs_last_wins() -> None:
    text = '{"items": [], "image_blobs": {"img": [1], "other": [9], "img": [2, 3]}}'
    assert write(m.TurnInput, text) == '{"items":[],"image_blobs":{"img":[2,3],"other":[9]}}'


# --------------------------------------------------------------------------- protocol_turn_options.payload


def test_protocol_payload_keys_sorted_at_every_depth() -> None:
    text = (
        '{"items": [], "protocol_turn_options": {"payload": '
        '{"z": [{"y": 1, "b": {"q": 0, "p": [ {"n": 1, "m": 2} ]}}], "a": {"d": 4, "c": 3}, "m": null}}}'
    )
    assert write(m.TurnInput, text) == (
        '{"items":[],"image_blobs":{},"protocol_turn_options":{"payload":'
        '{"a":{"c":3,"d":4},"m":null,"z":[{"b":{"p":[{"m":2,"n":1}],"q":0},"y":1}]}}}'
    )


def test_protocol_payload_sorted_by_code_point_not_locale() -> None:
    text = '{"items": [], "protocol_turn_options": {"payload": {"b": 1, "B": 2, "é": 3, "a": 4, "_": 5}}}'
    out = write(m.TurnInput, text)
    assert out.endswith('"payload":{"B":2,"_":5,"a":4,"b":1,"é":3}}}')


def test_protocol_payload_null_kept_and_missing_payload_defaults_to_empty_object() -> None:
    assert write(m.TurnInput, '{"items": [], "protocol_turn_options": {"payload": null}}') == (
        '{"items":[],"image_blobs":{},"protocol_turn_options":{"payload":null}}'
    )
    assert write(m.TurnInput, '{"items": [], "protocol_turn_options": {}}') == (
        '{"items":[],"image_blobs":{},"protocol_turn_options":{"payload":{}}}'
    )


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity", "[NaN]", '{"x": Infinity}'])
def test_protocol_payload_nan_and_infinity_refused(bad: str) -> None:
    with pytest.raises(InvalidInput):
        m.parse(m.TurnInput, '{"items": [], "protocol_turn_options": {"payload": ' + bad + "}}")


def test_protocol_payload_out_of_range_float_refused() -> None:
    # serde_json refuses 1e400 ("number out of range"); Python reads it as inf.
    with pytest.raises(InvalidInput):
        m.parse(m.TurnInput, '{"items": [], "protocol_turn_options": {"payload": 1e400}}')


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), {"x": [float("-inf")]}])
def test_protocol_payload_nan_refused_from_python(bad: Any) -> None:
    with pytest.raises(ValidationError):
        m.ProtocolTurnOptions(payload=bad)


def test_protocol_payload_numbers_written_as_serde_json() -> None:
    text = (
        '{"items": [], "protocol_turn_options": {"payload": '
        "[1.0, 1e-7, 1E16, 0.1, -0.0, 18446744073709551615, 18446744073709551616, "
        "-9223372036854775808, -9223372036854775809, 100]}}"
    )
    assert write(m.TurnInput, text).endswith(
        '"payload":[1.0,1e-7,1e16,0.1,-0.0,18446744073709551615,1.8446744073709552e19,'
        "-9223372036854775808,-9.223372036854776e18,100]}}"
    )


def test_protocol_payload_negative_zero_integer_is_a_float_as_in_serde_json() -> None:
    # serde_json reads `-0` as the f64 -0.0 and writes it back as `-0.0`.
    text = '{"items": [], "protocol_turn_options": {"payload": [-0, 0]}}'
    assert write(m.TurnInput, text).endswith('"payload":[-0.0,0]}}')


def test_protocol_payload_keeps_scalars_and_strings() -> None:
    text = '{"items": [], "protocol_turn_options": {"payload": ["é\\u0001", true, false, null, "😀"]}}'
    assert write(m.TurnInput, text).endswith('"payload":["é\\u0001",true,false,null,"😀"]}}')


# --------------------------------------------------------------------------- u64 fields

WAKE_FIELDS = json.loads(WAKE)


def _u64_cases() -> list[tuple[Any, str, str]]:
    def wake(field: str) -> tuple[Any, str, str]:
        return m.ProcessWakeDelivery, json.dumps(WAKE_FIELDS | {field: "@"}), field

    return [
        wake("sequence"),
        wake("created_at_ms"),
        (m.QueuedWorkBatchDraft, json.dumps(DRAFT | {"available_at_ms": "@"}), "available_at_ms"),
        (m.SessionCommand, json.dumps({"kind": "refresh_tool_surface", "reason": "r", "expected_generation": "@"}),
         "expected_generation"),
        (m.RuntimeScope, json.dumps({"session_id": "s", "turn_index": "@"}), "turn_index"),
        (m.CausalRef, json.dumps({"type": "process_event", "process_id": "p", "sequence": "@"}), "sequence"),
    ]


U64_CASES = _u64_cases()


@pytest.mark.parametrize(("shape", "template", "field"), U64_CASES, ids=[c[2] + f"-{i}" for i, c in enumerate(U64_CASES)])
@pytest.mark.parametrize("value", ["0", "7", str(U64_MAX)])
def test_u64_accepted(shape: Any, template: str, field: str, value: str) -> None:
    out = write(shape, template.replace('"@"', value))
    assert f'"{field}":{value}' in out


@pytest.mark.parametrize(("shape", "template", "field"), U64_CASES, ids=[c[2] + f"-{i}" for i, c in enumerate(U64_CASES)])
@pytest.mark.parametrize(
    "value", ["true", "false", "-1", str(2**64), "-0", "1.0", "1e3", '"7"', "[]", "{}"]
)
def test_u64_refused(shape: Any, template: str, field: str, value: str) -> None:
    with pytest.raises(InvalidInput):
        m.parse(shape, template.replace('"@"', value))


def test_u64_field_refuses_bool_from_python() -> None:
    with pytest.raises(ValidationError):
        m.RefreshToolSurface(reason="r", expected_generation=True)


# --------------------------------------------------------------------------- strings


def test_lone_surrogate_escape_refused_as_serde_json_refuses_it() -> None:
    with pytest.raises(InvalidInput):
        m.parse(m.InputItem, '{"type": "text", "text": "a\\ud800b"}')
    with pytest.raises(InvalidInput):
        m.parse(m.TurnInput, b'{"items": [], "image_blobs": {"\\udfff": []}}')


def test_surrogate_pair_escape_accepted() -> None:
    assert write(m.InputItem, '{"type": "text", "text": "\\ud83d\\ude00"}') == '{"type":"text","text":"😀"}'


def test_invalid_json_text_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="invalid JSON"):
        m.parse(m.TurnInput, '{"items": [}')


# --------------------------------------------------------------------------- omitted when absent


@pytest.mark.parametrize(
    ("shape", "text", "expected"),
    [
        (m.QueuedWorkBatchDraft, json.dumps(DRAFT | {"source_key": None}),
         '{"session_id":"root","delivery_policy":"earliest_safe_boundary","slot_policy":"join",'
         '"merge_key":"never","available_at_ms":0,"payloads":[{"type":"turn_input","input":'
         '{"items":[{"type":"text","text":"hi"}],"image_blobs":{}}}]}'),
        (m.TurnInput, '{"items": [], "protocol_turn_options": null, "trace_turn_id": null}',
         '{"items":[],"image_blobs":{}}'),
        (m.ProcessWakeDelivery, json.dumps(WAKE_FIELDS | {"process_caused_by": None}),
         compact(json.dumps({k: v for k, v in WAKE_FIELDS.items() if k != "process_caused_by"}))),
        (m.SessionCommand, '{"kind": "refresh_tool_surface", "reason": "r", "expected_generation": null}',
         '{"kind":"refresh_tool_surface","reason":"r"}'),
        (m.RuntimeInvocation,
         '{"scope": {"session_id": "s", "turn_id": null, "turn_index": null, "protocol_iteration": null}, '
         '"subject": {"type": "session_node", "node_id": "n"}, "caused_by": null, "replay": null}',
         '{"scope":{"session_id":"s"},"subject":{"type":"session_node","node_id":"n"}}'),
        (m.MessageOrigin, '{"kind": "process", "process_id": "p", "event_type": "e", "sequence": 1, '
                          '"wake_id": null, "caused_by": null}',
         '{"kind":"process","process_id":"p","event_type":"e","sequence":1}'),
        (m.AcceptedInjectedTurnInput, '{"id": null, "message": {"role": "User", "content": "c"}}',
         '{"message":{"role":"User","content":"c"}}'),
    ],
)
def test_omitted_when_absent_never_written_as_null(shape: Any, text: str, expected: str) -> None:
    out = write(shape, text)
    assert out == expected
    assert "null" not in out


def test_present_optional_fields_written_in_order() -> None:
    text = (
        '{"scope": {"session_id": "s", "turn_id": "t", "turn_index": 2, "protocol_iteration": 3}, '
        '"subject": {"type": "host_event", "occurrence_id": "o"}, '
        '"caused_by": {"type": "turn", "session_id": "s", "turn_id": "t0"}, "replay": {"key": "k"}}'
    )
    assert write(m.RuntimeInvocation, text) == compact(text)


def test_omitted_when_absent_from_python_construction() -> None:
    scope = m.RuntimeScope(session_id="s")
    assert scope.to_wire() == {"session_id": "s"}
    draft = m.QueuedWorkBatchDraft(session_id="s", delivery_policy="earliest_safe_boundary",
                                   slot_policy="join", payloads=[])
    assert "source_key" not in draft.to_wire()
    assert draft.to_wire_json() == (
        '{"session_id":"s","delivery_policy":"earliest_safe_boundary","slot_policy":"join",'
        '"merge_key":"never","available_at_ms":0,"payloads":[]}'
    )
    batch = m.QueuedWorkBatch(batch_id="b", session_id="s", enqueue_seq=1, delivery_policy="earliest_safe_boundary",
                              slot_policy="exclusive", merge_key=m.MergeGroup(group="g"), available_at_ms=0,
                              enqueued_at_ms=1, items=[])
    assert batch.to_wire_json() == (
        '{"batch_id":"b","session_id":"s","enqueue_seq":1,"delivery_policy":"earliest_safe_boundary",'
        '"slot_policy":"exclusive","merge_key":{"group":"g"},"available_at_ms":0,"enqueued_at_ms":1,"items":[]}'
    )


def test_plugin_message_images_omitted_when_empty_else_byte_arrays() -> None:
    assert m.PluginMessage(content="hi").to_wire_json() == '{"role":"User","content":"hi"}'
    with_images = m.PluginMessage(content="hi", images=[b"\x89PNG", b""])
    assert with_images.to_wire_json() == '{"role":"User","content":"hi","images":[[137,80,78,71],[]]}'
    assert with_images.to_wire()["images"] == [[137, 80, 78, 71], []]


def test_accepted_injected_turn_input_id_omitted_when_none() -> None:
    message = m.PluginMessage(content="x")
    assert m.AcceptedInjectedTurnInput(message=message).to_wire_json() == '{"message":{"role":"User","content":"x"}}'
    assert m.AcceptedInjectedTurnInput(id="abc", message=message).to_wire_json() == (
        '{"id":"abc","message":{"role":"User","content":"x"}}'
    )


def test_turn_cause_written_in_order() -> None:
    cause = m.TurnCause(
        id="wake-1", event_type="process.wake", text="woke",
        origin=m.MessageOrigin(process_id="p1", event_type="process.wake", sequence=7, wake_id="wake-1",
                               caused_by=m.CausalHostEvent(occurrence_id="o")),
    )
    assert cause.to_wire_json() == (
        '{"id":"wake-1","event_type":"process.wake","origin":{"kind":"process","process_id":"p1",'
        '"event_type":"process.wake","sequence":7,"wake_id":"wake-1",'
        '"caused_by":{"type":"host_event","occurrence_id":"o"}},"text":"woke"}'
    )


# --------------------------------------------------------------------------- Python construction


def test_turn_input_from_python_values_writes_bytes_as_ints() -> None:
    turn = m.TurnInput(
        items=[m.TextItem(text="look"), m.ImageRefItem(id="a")],
        image_blobs={"b": bytearray(b"\x00\xff"), "a": b"\x89PNG"},
        trace_turn_id="t",
    )
    assert turn.image_blobs == {"a": b"\x89PNG", "b": b"\x00\xff"}
    assert turn.to_wire()["image_blobs"] == {"a": [137, 80, 78, 71], "b": [0, 255]}
    assert turn.to_wire_json() == (
        '{"items":[{"type":"text","text":"look"},{"type":"image_ref","id":"a"}],'
        '"image_blobs":{"a":[137,80,78,71],"b":[0,255]},"trace_turn_id":"t"}'
    )
    # And the text reads back to an equal model.
    assert m.parse(m.TurnInput, turn.to_wire_json()) == turn


def test_turn_input_from_python_dicts() -> None:
    turn = m.TurnInput.model_validate(
        {"items": [{"type": "image_ref", "id": "a"}], "image_blobs": {"a": [1, 2]},
         "protocol_turn_options": {"payload": {"b": 1, "a": 2}}}
    )
    assert isinstance(turn.items[0], m.ImageRefItem)
    assert turn.image_blobs == {"a": b"\x01\x02"}
    assert turn.to_wire_json() == (
        '{"items":[{"type":"image_ref","id":"a"}],"image_blobs":{"a":[1,2]},'
        '"protocol_turn_options":{"payload":{"a":2,"b":1}}}'
    )


@pytest.mark.parametrize("bad", [[256], [-1], [1.0], "iVBORw==", [True], None])
def test_bad_bytes_refused_from_python(bad: Any) -> None:
    with pytest.raises(ValidationError):
        m.TurnInput(items=[], image_blobs={"a": bad})


def test_payload_models_built_from_python() -> None:
    payload = m.SessionCommandPayload(command=m.RefreshToolSurface(reason="tools changed", expected_generation=4))
    assert payload.to_wire_json() == (
        '{"type":"session_command","command":{"kind":"refresh_tool_surface","reason":"tools changed",'
        '"expected_generation":4}}'
    )
    wake = m.ProcessWakeDelivery(
        wake_id="w", target_session_id="root", target_scope_id="session:root", process_id="p1", sequence=7,
        event_type="custom.event", dedupe_key="w", input="woke", created_at_ms=5,
    )
    wire = wake.to_wire()
    assert list(wire) == ["wake_id", "target_session_id", "target_scope_id", "process_id", "sequence", "event_type",
                          "event_invocation", "dedupe_key", "input", "created_at_ms"]
    # The default invocation says "process.wake" whatever the wake's own event type.
    assert wire["event_invocation"] == {
        "scope": {"session_id": ""},
        "subject": {"type": "process_event", "process_id": "", "sequence": 0, "event_type": "process.wake"},
    }


def test_dump_of_plain_values_and_lists() -> None:
    assert m.dump("never") == "never"
    assert m.dump([m.MergeGroup(group="g"), "never"]) == [{"group": "g"}, "never"]
    assert m.dump(m.parse(m.MergeKey, '{"group": "g"}')) == {"group": "g"}


def test_claim_batch_ids_property() -> None:
    claim = m.QueuedWorkClaim(
        session_id="s", claim_id="qwc:1:1", owner_id="o", lease_token="t", fencing_token=1,
        claimed_at_epoch_ms=0, expires_at_epoch_ms=1,
        batches=[
            m.QueuedWorkBatch(batch_id=b, session_id="s", enqueue_seq=i, delivery_policy="earliest_safe_boundary",
                              slot_policy="join", merge_key="never", available_at_ms=0, enqueued_at_ms=0, items=[])
            for i, b in enumerate(["qwb:a", "qwb:b"])
        ],
    )
    assert claim.batch_ids == ["qwb:a", "qwb:b"]


def test_validation_error_message_names_location() -> None:
    with pytest.raises(InvalidInput) as caught:
        m.parse(m.QueuedWorkBatchDraft, json.dumps(DRAFT | {"payloads": [{"type": "turn_input", "input": {}}]}),
                what="draft")
    message = str(caught.value)
    assert message.startswith("draft: ")
    assert "missing field `items`" in message
    assert "payloads[0]" in message
