"""The fast paths of issue 7 agree with pydantic, byte for byte.

- `WireModel.to_wire` (hand-written) gives what pydantic's serialiser gives;
- turnq/fastwire.py accepts only what pydantic accepts, and builds equal models;
- turnq/store/fastcodec.py decodes a store document as the pydantic path does, refuses
  what it refuses with the same message, and writes unchanged records back as read;
- turnq/store/lockfile.py excludes (and is excluded by) filelock on the same file.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import NOW
from filelock import FileLock

from turnq import Queue, fastwire, make_draft, models, wirejson
from turnq.errors import StoreUnreadable
from turnq.store import JsonFileStore, codec, fastcodec
from turnq.store.lockfile import FlockLock, Timeout

VECTORS = [json.loads(line) for line in (Path(__file__).parent / "data" / "vectors.jsonl").read_text().splitlines()]


def _pydantic(wire_type: Any, data: Any, strict: bool) -> Any:
    return models.adapter(wire_type).validate_python(data, context=models.WireContext(strict=strict))


# --------------------------------------------------------------------------- models


@pytest.mark.parametrize("vector", [v for v in VECTORS if not v["rejected"]], ids=lambda v: v["label"])
def test_to_wire_is_pydantics_dump(vector):
    wire_type = models.WIRE_TYPES[vector["type"]]
    value = _pydantic(wire_type, wirejson.loads(vector["input"]), False)
    if not isinstance(value, models.WireModel):
        return
    assert value.to_wire() == value.model_dump(mode="python")
    assert wirejson.dumps(value.to_wire()) == wirejson.dumps(value.model_dump(mode="python"))


FAST_TYPES = [v for v in VECTORS if models.WIRE_TYPES[v["type"]] in fastwire.VALIDATORS]


def test_the_fast_validators_meet_the_vectors():
    assert {v["type"] for v in FAST_TYPES} >= {"QueuedWorkBatchDraft", "QueuedWorkBatch", "QueuedWorkClaim",
                                               "QueuedWorkCompletion", "TurnInput", "QueuedWorkItem"}
    accepted = 0
    for vector in FAST_TYPES:
        try:
            fastwire.VALIDATORS[models.WIRE_TYPES[vector["type"]]](wirejson.loads(vector["input"]))
            accepted += 1
        except (fastwire.Bail, ValueError):
            pass
    assert accepted >= 20  # the fast path handles the common shapes, not only bails


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("vector", FAST_TYPES, ids=lambda v: v["label"])
def test_fast_validation_accepts_only_what_pydantic_accepts_and_builds_the_same(vector, strict):
    wire_type = models.WIRE_TYPES[vector["type"]]
    try:
        data = wirejson.loads(vector["input"])
    except ValueError:
        return
    try:
        fast = fastwire.VALIDATORS[wire_type](copy.deepcopy(data))
    except fastwire.Bail:
        return  # pydantic decides
    slow = _pydantic(wire_type, data, strict)  # must not raise: the fast path accepted it
    assert fast == slow
    assert fast.model_fields_set == slow.model_fields_set
    assert wirejson.dumps(fast.to_wire()) == wirejson.dumps(slow.model_dump(mode="python"))


def test_validate_gives_pydantics_messages_and_warnings():
    draft = {"session_id": "s", "delivery_policy": "after_current_turn_commit", "slot_policy": "join",
             "payloads": [{"type": "turn_input", "input": {"items": [{"type": "text", "text": "x"}]}}], "extra": 1}
    context = models.WireContext()
    value = models.validate(models.QueuedWorkBatchDraft, wirejson.loads(json.dumps(draft)), context)
    assert context.dropped == ["QueuedWorkBatchDraft.extra"] and value.session_id == "s"
    draft.pop("extra")
    draft["available_at_ms"] = -1
    with pytest.raises(models.InvalidInput) as err:
        models.validate(models.QueuedWorkBatchDraft, draft, what="draft")
    assert "available_at_ms" in str(err.value)


# --------------------------------------------------------------------------- store documents


def _store_text(path: Path) -> str:
    q = Queue(path, now=NOW)
    q.enqueue_text("a", "one", source_key="host:1")
    q.enqueue_text("a", "two", merge_key={"group": "g"})
    q.enqueue(make_draft("b", [
        {"type": "turn_input", "input": {"items": [{"type": "text", "text": "é ☃"}, {"type": "image_ref", "id": "i"}],
                                         "image_blobs": {"z": [1, 2], "i": [255, 0]},
                                         "protocol_turn_options": {"payload": {"b": 1.5, "a": [True, None]}},
                                         "trace_turn_id": "t"}}]))
    q.wake("b", "proc", 7, "wake up")
    q.reset_session("c", "because", idempotency_key="k1")
    q.complete(q.claim("a", owner="w", max_batches=1))  # a tombstone
    q.claim("b", owner="w", max_batches=1)  # a live claim
    text = path.read_text()
    path.unlink()
    return text


def _mutations(text: str) -> dict[str, Any]:
    doc = json.loads(text)
    cases: dict[str, Any] = {"valid": doc}

    def mutate(name: str, change: Any) -> None:
        copy_ = copy.deepcopy(doc)
        change(copy_)
        cases[name] = copy_

    first = lambda d: d["batches"][0]
    mutate("reordered_keys", lambda d: d["batches"][0].update(batch=dict(reversed(first(d)["batch"].items()))))
    mutate("explicit_null_source_key", lambda d: first(d)["batch"].__setitem__("source_key", None))
    mutate("no_image_blobs", lambda d: first(d)["batch"]["items"][0]["payload"]["input"].pop("image_blobs"))
    mutate("text_not_str", lambda d: first(d)["batch"]["items"][0]["payload"]["input"]["items"][0]
           .__setitem__("text", 5))
    mutate("seq_negative", lambda d: first(d)["batch"].__setitem__("enqueue_seq", -1))
    mutate("seq_float", lambda d: first(d)["batch"].__setitem__("enqueue_seq", 1.0))
    mutate("seq_bool", lambda d: first(d)["batch"].__setitem__("enqueue_seq", True))
    mutate("fencing_huge", lambda d: first(d).__setitem__("fencing_counter", 2**64))
    mutate("bad_delivery", lambda d: first(d)["batch"].__setitem__("delivery_policy", "soon"))
    mutate("merge_group_extra", lambda d: first(d)["batch"].__setitem__("merge_key", {"group": "g", "x": 1}))
    mutate("merge_never_object", lambda d: first(d)["batch"].__setitem__("merge_key", {"never": None}))
    mutate("unknown_item_field", lambda d: first(d)["batch"]["items"][0].__setitem__("x", 1))
    mutate("unknown_record_field", lambda d: first(d).__setitem__("x", 1))
    mutate("unknown_document_field", lambda d: d.__setitem__("x", 1))
    mutate("items_not_a_list", lambda d: first(d)["batch"].__setitem__("items", {}))
    mutate("batch_not_an_object", lambda d: first(d).__setitem__("batch", []))
    mutate("claim_not_an_object", lambda d: first(d).__setitem__("claim", "x"))
    mutate("duplicate_ids", lambda d: d["batches"][1]["batch"].__setitem__("batch_id", first(d)["batch"]["batch_id"]))
    mutate("out_of_order", lambda d: d["batches"].reverse())
    mutate("next_seq_low", lambda d: d.__setitem__("next_enqueue_seq", 1))
    mutate("tombstone_without_key", lambda d: d["tombstones"][0]["batch"].pop("source_key"))
    mutate("tombstone_bad_outcome", lambda d: d["tombstones"][0].__setitem__("outcome", "lost"))
    def payload_of(d: Any, kind: str) -> Any:
        return next(p for b in d["batches"] for p in [b["batch"]["items"][0]["payload"]] if p["type"] == kind)

    mutate("bad_blob", lambda d: payload_of(d, "turn_input")["input"]["image_blobs"].__setitem__("z", [256]))
    mutate("wake_unknown_field", lambda d: payload_of(d, "process_wake")["wake"].__setitem__("x", 1))
    return cases


def _outcome(data: Any, *, fast: bool, monkeypatch: pytest.MonkeyPatch) -> Any:
    with monkeypatch.context() as patch:
        if not fast:
            patch.setattr(fastcodec, "decode", lambda data, location: None)
        try:
            state = codec.decode(copy.deepcopy(data), "store.json")
        except StoreUnreadable as err:
            return ("refused", str(err))
        return ("read", codec.encode(state), {s: [b.batch for b in bs] for s, bs in state.sessions.items()})


@pytest.fixture(scope="module")
def documents(tmp_path_factory) -> dict[str, Any]:
    return _mutations(_store_text(tmp_path_factory.mktemp("docs") / "turnq.json"))


def test_the_fast_decoder_reads_turnqs_own_documents(documents):
    assert fastcodec.decode(copy.deepcopy(documents["valid"]), "store.json") is not None


@pytest.mark.parametrize("case", [
    "valid", "reordered_keys", "explicit_null_source_key", "no_image_blobs", "text_not_str", "seq_negative", "seq_float",
    "seq_bool", "fencing_huge", "bad_delivery", "merge_group_extra", "merge_never_object", "unknown_item_field",
    "unknown_record_field", "unknown_document_field", "items_not_a_list", "batch_not_an_object",
    "claim_not_an_object", "duplicate_ids", "out_of_order", "next_seq_low", "tombstone_without_key",
    "tombstone_bad_outcome", "bad_blob", "wake_unknown_field"])
def test_fast_decoding_agrees_with_pydantic(documents, case, monkeypatch):
    data = documents[case]
    fast, slow = _outcome(data, fast=True, monkeypatch=monkeypatch), _outcome(data, fast=False,
                                                                                monkeypatch=monkeypatch)
    assert fast == slow


def test_hostile_store_tests_run_on_the_fast_path(documents):
    # The codec's own checks (ids, order, claims) are reached through the fast decoder too.
    for case in ("duplicate_ids", "out_of_order", "next_seq_low", "tombstone_without_key"):
        with pytest.raises(StoreUnreadable):
            fastcodec.decode(copy.deepcopy(documents[case]), "store.json")


def test_unchanged_batches_are_written_as_read_and_not_built(tmp_path):
    path = tmp_path / "turnq.json"
    q = Queue(path, now=NOW)
    q.enqueue_many([make_draft(f"s{n % 3}", [{"type": "turn_input", "input": {"items": [
        {"type": "text", "text": f"t{n}"}]}}], slot_policy="exclusive") for n in range(30)])
    store = JsonFileStore(path)
    claim = Queue(store, now=NOW + 1).claim("s0", owner="w")
    assert claim is not None and len(claim.batches) == 1
    state = store.read()
    assert state.session("s0")[0].batch.batch_id == claim.batches[0].batch_id  # builds s0's first batch only
    built = {sid: [b._batch is not None for b in batches] for sid, batches in state.sessions.items()}
    assert built["s0"] == [True] + [False] * 9
    assert not any(built["s1"]) and not any(built["s2"])  # lazy: nothing in other sessions was built
    before = path.read_text()
    with monkeypatch_free_decode():
        slow_state = store.read()
    assert codec.encode(state) == codec.encode(slow_state) == before


class monkeypatch_free_decode:
    """Decode with the pydantic path only (fastcodec switched off)."""

    def __enter__(self) -> None:
        self.saved = fastcodec.decode
        fastcodec.decode = lambda data, location: None  # type: ignore[assignment]

    def __exit__(self, *exc: object) -> None:
        fastcodec.decode = self.saved  # type: ignore[assignment]


def test_a_changed_batch_is_encoded_anew(tmp_path):
    path = tmp_path / "turnq.json"
    q = Queue(path, now=NOW)
    q.enqueue_text("s", "x")
    store = JsonFileStore(path)
    state = store.read()
    stored = state.sessions["s"][0]
    assert fastcodec.batch_line(stored) is not None
    stored.fencing = 5
    assert fastcodec.batch_line(stored) is None
    stored.fencing = 0
    stored.batch = stored.batch.model_copy(update={"available_at_ms": 9})
    assert fastcodec.batch_line(stored) is None
    assert '"available_at_ms":9' in codec.encode(state)


# --------------------------------------------------------------------------- the lock


def test_flock_and_filelock_exclude_each_other(tmp_path):
    path = str(tmp_path / "x.lock")
    held = FileLock(path)
    held.acquire()
    try:
        start = time.monotonic()
        with pytest.raises(Timeout):
            FlockLock(path, timeout=0.2).acquire()
        assert time.monotonic() - start >= 0.15
    finally:
        held.release()
    ours = FlockLock(path, timeout=1)
    ours.acquire()
    try:
        with pytest.raises(Exception) as err:
            FileLock(path, timeout=0.1).acquire()
        assert "could not be acquired" in str(err.value) or type(err.value).__name__ == "Timeout"
    finally:
        ours.release()
    again = FlockLock(path, timeout=0)
    again.acquire()
    again.release()


def test_flock_waits_for_the_holder(tmp_path):
    path = str(tmp_path / "x.lock")
    first = FlockLock(path, timeout=1)
    first.acquire()
    threading.Timer(0.2, first.release).start()
    second = FlockLock(path, timeout=5)
    start = time.monotonic()
    second.acquire()
    assert time.monotonic() - start >= 0.1
    second.release()


def test_a_lazily_read_batch_equals_the_same_batch_read_by_pydantic(tmp_path):
    path = tmp_path / "turnq.json"
    Queue(path, now=NOW).enqueue_text("s", "x")
    store = JsonFileStore(path)
    fast = store.read().sessions["s"][0]
    with monkeypatch_free_decode():
        slow = store.read().sessions["s"][0]
    assert type(fast) is fastcodec.LazyStoredBatch and type(slow) is not fastcodec.LazyStoredBatch
    assert fast == slow and slow == fast
    slow.fencing = 3
    assert fast != slow
