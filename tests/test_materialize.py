"""Materialisation of a claim (spec/semantics.md, *Materialisation of a claim*) and the wire
shapes of the materialised work (spec/wire.md, *Materialised work*)."""

from __future__ import annotations

import pytest

from turnq import engine
from turnq.api import make_draft
from turnq.materialize import (
    CheckpointWork,
    TurnWork,
    accepted_input_id,
    checkpoint_work,
    exclusive_session_command,
    materialize,
    turn_cause,
    turn_work,
)
from turnq.models import (
    AcceptedInjectedTurnInput,
    MessageOrigin,
    PluginMessage,
    ProcessWakeDelivery,
    RefreshToolSurface,
    ResetSession,
    TurnCause,
    validate,
)
from turnq.state import QueueState

NOW = 1767225600000
S = "root"

PNG = [137, 80, 78, 71]


def text(t: str) -> dict:
    return {"type": "text", "text": t}


def image(i: str) -> dict:
    return {"type": "image_ref", "id": i}


def turn_input(*items: dict, blobs: dict | None = None, options=None, trace: str | None = None) -> dict:
    inp: dict = {"items": list(items), "image_blobs": blobs or {}}
    if options is not None:
        inp["protocol_turn_options"] = options
    if trace is not None:
        inp["trace_turn_id"] = trace
    return {"type": "turn_input", "input": inp}


def wake_dict(process_id: str = "p1", sequence: int = 7, input: str = "build finished", *,
              event_type: str = "process.wake", wake_id: str | None = None, caused_by: dict | None = None) -> dict:
    data = {
        "wake_id": wake_id or f"{process_id}:{sequence}", "target_session_id": S, "target_scope_id": "session:root",
        "process_id": process_id, "sequence": sequence, "event_type": event_type, "dedupe_key": "d",
        "input": input, "created_at_ms": NOW,
    }
    if caused_by is not None:
        data["process_caused_by"] = caused_by
    return data


def wake_payload(*args, **kw) -> dict:
    return {"type": "process_wake", "wake": wake_dict(*args, **kw)}


def reset_payload(reason: str = "user asked") -> dict:
    return {"type": "session_command", "command": {"kind": "reset_session", "reason": reason}}


class Batches:
    """Enqueue drafts into a scratch state and hand back the stored batches."""

    def __init__(self) -> None:
        self.state = QueueState()

    def add(self, *payloads: dict, source_key: str | None = None, slot_policy: str = "join"):
        draft = make_draft(S, list(payloads), source_key=source_key, slot_policy=slot_policy)
        return engine.enqueue(self.state, draft, NOW).batch


@pytest.fixture
def mk() -> Batches:
    return Batches()


# --------------------------------------------------------------------------- checkpoint work


def test_checkpoint_joins_non_empty_texts_with_newlines(mk):
    b = mk.add(turn_input(text("first"), text(""), text("second"), text("third")))
    work = checkpoint_work([b])
    assert [m.to_wire() for m in work.messages] == [{"role": "User", "content": "first\nsecond\nthird"}]


def test_checkpoint_keeps_whitespace_only_text(mk):
    # Only empty texts are skipped; a text of spaces is not empty.
    b = mk.add(turn_input(text(" "), text("x")))
    assert checkpoint_work([b]).messages[0].content == " \nx"


def test_checkpoint_images_only_with_a_blob_in_item_order(mk):
    b = mk.add(turn_input(image("b"), text("look"), image("missing"), image("a"),
                          blobs={"a": [1, 2], "b": [3], "unused": [9]}))
    (message,) = checkpoint_work([b]).messages
    assert message.content == "look"
    assert message.images == [bytes([3]), bytes([1, 2])]
    assert message.to_wire() == {"role": "User", "content": "look", "images": [[3], [1, 2]]}


def test_checkpoint_image_only_message_has_empty_content(mk):
    b = mk.add(turn_input(image("a"), blobs={"a": PNG}))
    (message,) = checkpoint_work([b]).messages
    assert message.to_wire() == {"role": "User", "content": "", "images": [PNG]}


def test_checkpoint_turn_input_with_nothing_gives_no_message(mk):
    b = mk.add(turn_input(text(""), image("nope")), source_key="host:abc")
    work = checkpoint_work([b])
    assert work.messages == [] and work.accepted_turn_inputs == [] and work.turn_causes == []


def test_checkpoint_one_message_per_turn_input_in_order(mk):
    b1 = mk.add(turn_input(text("a")), turn_input(text("")), turn_input(text("b")), source_key="host:one")
    b2 = mk.add(turn_input(text("c")), source_key="injection:two")
    work = checkpoint_work([b1, b2])
    assert [m.content for m in work.messages] == ["a", "b", "c"]
    assert [(a.id, a.message.content) for a in work.accepted_turn_inputs] == [("one", "a"), ("one", "b"),
                                                                              ("two", "c")]


def test_checkpoint_wakes_become_turn_causes_with_the_exact_text(mk):
    b = mk.add(wake_payload("proc-9", 42, "line one\nline two", event_type="process.exit", wake_id="w-1"))
    work = checkpoint_work([b])
    assert work.messages == []
    (cause,) = work.turn_causes
    assert cause.text == "Background process wake\nProcess: proc-9\nEvent: process.exit #42\nWake input:\nline one\nline two"
    assert cause.id == "w-1"
    assert cause.event_type == "process.exit"
    assert cause.origin.to_wire() == {"kind": "process", "process_id": "proc-9", "event_type": "process.exit",
                                      "sequence": 42, "wake_id": "w-1"}


def test_checkpoint_session_commands_give_nothing(mk):
    b = mk.add(reset_payload(), slot_policy="exclusive", source_key="command:reset_session:k")
    work = checkpoint_work([b])
    assert work.to_wire() == {"messages": [], "turn_causes": [], "accepted_turn_inputs": []}


def test_checkpoint_mixed_batch_keeps_order_of_messages_and_causes(mk):
    b = mk.add(turn_input(text("a")), wake_payload("p", 1), reset_payload(), turn_input(text("b")),
               wake_payload("p", 2))
    work = checkpoint_work([b])
    assert [m.content for m in work.messages] == ["a", "b"]
    assert [c.id for c in work.turn_causes] == ["p:1", "p:2"]


@pytest.mark.parametrize("key, expected", [
    ("host:abc", "abc"),
    ("injection:xyz", "xyz"),
    ("host:host:z", "host:z"),
    ("other:abc", "other:abc"),
    ("hostabc", "hostabc"),
    ("command:reset_session:k", "command:reset_session:k"),
    (None, None),
])
def test_accepted_input_id(key, expected):
    assert accepted_input_id(key) == expected


def test_accepted_inputs_without_source_key_omit_the_id(mk):
    b = mk.add(turn_input(text("hi")))
    (accepted,) = checkpoint_work([b]).accepted_turn_inputs
    assert accepted.id is None
    assert accepted.to_wire() == {"message": {"role": "User", "content": "hi"}}


def test_checkpoint_work_to_wire(mk):
    b = mk.add(turn_input(text("hi")), wake_payload("p1", 7, "x"), source_key="host:k")
    assert checkpoint_work([b]).to_wire() == {
        "messages": [{"role": "User", "content": "hi"}],
        "turn_causes": [{
            "id": "p1:7", "event_type": "process.wake",
            "origin": {"kind": "process", "process_id": "p1", "event_type": "process.wake", "sequence": 7,
                       "wake_id": "p1:7"},
            "text": "Background process wake\nProcess: p1\nEvent: process.wake #7\nWake input:\nx",
        }],
        "accepted_turn_inputs": [{"id": "k", "message": {"role": "User", "content": "hi"}}],
    }


# --------------------------------------------------------------------------- turn work


def test_turn_work_concatenates_items_across_batches(mk):
    b1 = mk.add(turn_input(text("a"), image("i")), turn_input(text("")))
    b2 = mk.add(turn_input(text("b")))
    work = turn_work([b1, b2])
    assert [i.to_wire() for i in work.turn_input.items] == [text("a"), image("i"), text(""), text("b")]
    assert work.turn_causes == [] and work.session_command is None


def test_turn_work_merges_blobs_with_the_later_winning(mk):
    b1 = mk.add(turn_input(image("x"), blobs={"x": [1], "y": [2]}))
    b2 = mk.add(turn_input(image("y"), blobs={"y": [3], "z": [4]}))
    blobs = turn_work([b1, b2]).turn_input.image_blobs
    assert blobs == {"x": b"\x01", "y": b"\x03", "z": b"\x04"}
    blobs_rev = turn_work([b2, b1]).turn_input.image_blobs
    assert blobs_rev["y"] == b"\x02"


def test_turn_work_takes_the_first_options_and_trace_present(mk):
    b1 = mk.add(turn_input(text("a")))
    b2 = mk.add(turn_input(text("b"), options={"payload": {"b": 1, "a": 2}}))
    b3 = mk.add(turn_input(text("c"), options={"payload": {"other": True}}, trace="t-3"))
    b4 = mk.add(turn_input(text("d"), trace="t-4"))
    work = turn_work([b1, b2, b3, b4])
    assert work.turn_input.protocol_turn_options.to_wire() == {"payload": {"a": 2, "b": 1}}
    assert work.turn_input.trace_turn_id == "t-3"


def test_turn_work_without_options_omits_them(mk):
    b = mk.add(turn_input(text("a")))
    wire = turn_work([b]).turn_input.to_wire()
    assert wire == {"items": [text("a")], "image_blobs": {}}


def test_turn_work_wakes_give_turn_causes_in_order(mk):
    b1 = mk.add(wake_payload("p", 1, "one"))
    b2 = mk.add(turn_input(text("hi")), wake_payload("q", 2, "two"))
    work = turn_work([b1, b2])
    assert [c.id for c in work.turn_causes] == ["p:1", "q:2"]
    assert work.turn_causes[1].text.endswith("Wake input:\ntwo")
    assert [i.to_wire() for i in work.turn_input.items] == [text("hi")]


def test_turn_work_of_only_a_wake_has_an_empty_turn_input(mk):
    b = mk.add(wake_payload(), slot_policy="exclusive")
    work = turn_work([b])
    assert work.turn_input.to_wire() == {"items": [], "image_blobs": {}}
    assert len(work.turn_causes) == 1
    assert work.session_command is None


def test_turn_work_carries_the_exclusive_session_command(mk):
    b = mk.add(reset_payload("because"), slot_policy="exclusive")
    work = turn_work([b])
    assert work.to_wire() == {
        "turn_input": {"items": [], "image_blobs": {}},
        "turn_causes": [],
        "session_command": {"kind": "reset_session", "reason": "because"},
    }


def test_turn_work_to_wire(mk):
    b = mk.add(turn_input(text("hi"), image("a"), blobs={"a": PNG}, trace="t"))
    assert turn_work([b]).to_wire() == {
        "turn_input": {"items": [text("hi"), image("a")], "image_blobs": {"a": PNG}, "trace_turn_id": "t"},
        "turn_causes": [],
        "session_command": None,
    }


def test_materialize_picks_the_work_by_boundary(mk):
    b = mk.add(turn_input(text("hi")))
    assert isinstance(materialize([b], "idle"), TurnWork)
    assert isinstance(materialize([b], "active_turn_checkpoint"), CheckpointWork)


# --------------------------------------------------------------------------- exclusive session command


def test_exclusive_session_command_detected(mk):
    b = mk.add(reset_payload("r"), slot_policy="exclusive")
    command = exclusive_session_command([b])
    assert isinstance(command, ResetSession) and command.reason == "r"


def test_exclusive_refresh_tools_detected(mk):
    b = mk.add({"type": "session_command", "command": {"kind": "refresh_tool_surface", "reason": "t",
                                                       "expected_generation": 3}}, slot_policy="exclusive")
    command = exclusive_session_command([b])
    assert isinstance(command, RefreshToolSurface) and command.expected_generation == 3


def test_not_exclusive_session_command_when_join(mk):
    b = mk.add(reset_payload(), slot_policy="join")
    assert exclusive_session_command([b]) is None
    assert turn_work([b]).session_command is None


def test_not_exclusive_session_command_with_two_items(mk):
    b = mk.add(reset_payload(), turn_input(text("x")), slot_policy="exclusive")
    assert exclusive_session_command([b]) is None
    b2 = mk.add(reset_payload("a"), reset_payload("b"), slot_policy="exclusive")
    assert exclusive_session_command([b2]) is None


def test_not_exclusive_session_command_with_two_batches(mk):
    b1 = mk.add(reset_payload(), slot_policy="exclusive")
    b2 = mk.add(reset_payload(), slot_policy="exclusive")
    assert exclusive_session_command([b1, b2]) is None
    assert exclusive_session_command([]) is None


def test_not_exclusive_session_command_for_other_payloads(mk):
    assert exclusive_session_command([mk.add(turn_input(text("x")), slot_policy="exclusive")]) is None
    assert exclusive_session_command([mk.add(wake_payload(), slot_policy="exclusive")]) is None


# --------------------------------------------------------------------------- wire shapes


def test_plugin_message_wire():
    assert PluginMessage(content="hi").to_wire_json() == '{"role":"User","content":"hi"}'
    msg = PluginMessage(content="x", images=[bytes(PNG), b""])
    assert msg.to_wire_json() == '{"role":"User","content":"x","images":[[137,80,78,71],[]]}'
    assert list(msg.to_wire()) == ["role", "content", "images"]


def test_message_origin_wire():
    bare = MessageOrigin(process_id="p1", event_type="process.wake", sequence=7)
    assert bare.to_wire_json() == '{"kind":"process","process_id":"p1","event_type":"process.wake","sequence":7}'
    full = validate(MessageOrigin, {"process_id": "p1", "event_type": "e", "sequence": 1, "wake_id": "w",
                                    "caused_by": {"type": "process_event", "process_id": "p0", "sequence": 3}})
    assert full.to_wire_json() == (
        '{"kind":"process","process_id":"p1","event_type":"e","sequence":1,"wake_id":"w",'
        '"caused_by":{"type":"process_event","process_id":"p0","sequence":3}}'
    )


def test_turn_cause_wire_with_caused_by():
    wake = validate(ProcessWakeDelivery, wake_dict(
        "p1", 7, "in", caused_by={"type": "turn", "session_id": "root", "turn_id": "t1"}))
    cause = turn_cause(wake)
    assert isinstance(cause, TurnCause)
    assert list(cause.to_wire()) == ["id", "event_type", "origin", "text"]
    assert cause.to_wire_json() == (
        '{"id":"p1:7","event_type":"process.wake","origin":{"kind":"process","process_id":"p1",'
        '"event_type":"process.wake","sequence":7,"wake_id":"p1:7","caused_by":{"type":"turn",'
        '"session_id":"root","turn_id":"t1"}},"text":"Background process wake\\nProcess: p1\\n'
        'Event: process.wake #7\\nWake input:\\nin"}'
    )


def test_accepted_injected_turn_input_wire():
    with_id = AcceptedInjectedTurnInput(id="abc", message=PluginMessage(content="hi"))
    assert with_id.to_wire_json() == '{"id":"abc","message":{"role":"User","content":"hi"}}'
    without = AcceptedInjectedTurnInput(message=PluginMessage(content="hi"))
    assert without.to_wire_json() == '{"message":{"role":"User","content":"hi"}}'
