"""Pydantic models of every wire shape in spec/wire.md.

Validation follows the reference's serde types exactly (strict types, u64 ranges,
tagged unions, defaults only for missing keys, duplicate keys refused, unknown
keys dropped); serialisation gives the reference's JSON text (`to_wire_json`):
keys in the reference's order, omitted-when-absent fields left out.

Unknown keys are dropped as the reference drops them, but never silently: each
one is reported to the `WireContext` passed to validation, which either records
it (the CLI warns) or refuses it (`strict`).
(No `from __future__ import annotations` here: pydantic would have to evaluate every
field's annotation from a string, which is a good part of this module's import time.)
"""

from typing import Annotated, Any, ClassVar, Literal, TypeVar, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_serializer,
    model_serializer,
    model_validator,
)

from . import wirejson
from .clock import U64_MAX
from .errors import InvalidInput

I64_MIN = -(2**63)

U64 = Annotated[int, Field(ge=0, le=U64_MAX)]


# --------------------------------------------------------------------------- context


class WireContext:
    """Collects (or, when strict, refuses) the unknown keys met while validating."""

    def __init__(self, *, strict: bool = False) -> None:
        self.strict = strict
        self.dropped: list[str] = []

    def unknown(self, shape: str, keys: list[str]) -> None:
        if self.strict:
            raise ValueError(f"unknown field {_quote(keys[0])} in {shape} (refused by --strict)")
        self.dropped.extend(f"{shape}.{key}" for key in keys)


def _quote(key: str) -> str:
    return f"`{key}`"


# --------------------------------------------------------------------------- base

WireModelT = TypeVar("WireModelT", bound="WireModel")


class WireModel(BaseModel):
    """Base of all wire shapes: strict types, serde's key rules, omit-when-absent output."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True, defer_build=True)

    # Fields whose default is None are "omitted when absent": never written as null.
    _omit_if_none: ClassVar[frozenset[str]] = frozenset()
    _known_keys: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._known_keys = frozenset(cls.model_fields)
        cls._omit_if_none = frozenset(
            name for name, field in cls.model_fields.items() if field.default is None and not field.is_required()
        )

    @model_validator(mode="before")
    @classmethod
    def _serde_keys(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        # serde refuses a known field given twice; an ignored field may repeat.
        duplicates = [key for key in getattr(data, "duplicates", ()) if key in cls._known_keys]
        if duplicates:
            raise ValueError(f"duplicate field {_quote(duplicates[0])}")
        unknown = [key for key in data if key not in cls._known_keys]
        if not unknown:
            return data
        context = info.context
        if isinstance(context, WireContext):
            context.unknown(cls.wire_name(), unknown)
        return {key: value for key, value in data.items() if key in cls._known_keys}

    @model_serializer(mode="wrap")
    def _omit_absent(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        for name in self._omit_if_none:
            if data.get(name, 0) is None:
                del data[name]
        return data

    @classmethod
    def wire_name(cls) -> str:
        """The spec's name of this shape: a union variant says `Union(tag)`, e.g. `InputItem(text)`."""
        union = _UNION_OF.get(cls.__name__)
        if union is None:
            return cls.__name__
        tag = cls.model_fields[union[1]].default
        return f"{union[0]}({tag})"

    def to_wire(self) -> dict[str, Any]:
        """The reference's JSON shape as Python data.

        Written by hand (the same result as `model_dump(mode="python")` with the serialisers
        above, which tests/test_fastpath.py checks on every spec vector), so that writing a
        model never builds its pydantic serialiser: that costs more than a CLI command's work."""
        data: dict[str, Any] = {}
        values = self.__dict__
        omit = self._omit_if_none
        for name in type(self).__pydantic_fields__:
            value = values[name]
            if value is None:
                if name not in omit:
                    data[name] = None
            else:
                data[name] = _wire(value)
        return data

    def to_wire_json(self) -> str:
        """The reference's JSON text (compact)."""
        return wirejson.dumps(self.to_wire())


def _wire(value: Any) -> Any:
    """Wire data of a field's value (see `WireModel.to_wire`)."""
    if isinstance(value, WireModel):
        return value.to_wire()
    kind = type(value)
    if kind is str or kind is int or kind is bool or kind is float:
        return value
    if isinstance(value, list):
        return [_wire(item) for item in value]
    if isinstance(value, dict):
        return {key: _wire(item) for key, item in value.items()}
    if isinstance(value, (bytes, bytearray)):  # Bytes: a list of integers
        return list(value)
    return value


def construct(cls: type[WireModelT], values: dict[str, Any], fields_set: Any = None) -> WireModelT:
    """A model from values that are already valid (every field given, in order), without
    pydantic's validation: what `model_construct` does, minus its per-field work."""
    model = _new(cls)
    _set(model, "__dict__", values)
    _set(model, "__pydantic_fields_set__", set(values) if fields_set is None else set(fields_set))
    _set(model, "__pydantic_extra__", None)
    _set(model, "__pydantic_private__", None)
    return model


_new = object.__new__
_set = object.__setattr__


# Variant class -> (the spec's union name, its tag key), for messages.
_UNION_OF: dict[str, tuple[str, str]] = {
    **{name: ("InputItem", "type") for name in ("TextItem", "ImageRefItem")},
    **{name: ("CausalRef", "type") for name in ("CausalTurn", "CausalEffect", "CausalToolCall", "CausalProcess",
                                                 "CausalProcessEvent", "CausalHostEvent", "CausalSessionNode")},
    **{name: ("RuntimeSubject", "type") for name in ("SubjectEffect", "SubjectProcess", "SubjectProcessEvent",
                                                      "SubjectHostEvent", "SubjectSessionNode")},
    **{name: ("SessionCommand", "kind") for name in ("RefreshToolSurface", "ResetSession")},
    **{name: ("QueuedWorkPayload", "type") for name in ("TurnInputPayload", "ProcessWakePayload",
                                                         "SessionCommandPayload")},
}


# --------------------------------------------------------------------------- scalars


def _bytes_from_wire(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if not isinstance(value, list):
        raise ValueError(f"invalid type: expected a sequence of bytes (integers 0-255), got {type(value).__name__}")
    for index, byte in enumerate(value):
        if type(byte) is not int or not 0 <= byte <= 255:
            raise ValueError(f"invalid byte at index {index}: {byte!r}, expected an integer 0-255")
    return bytes(value)


Bytes = Annotated[
    bytes,
    PlainValidator(_bytes_from_wire),
    PlainSerializer(list, return_type=list),
    WithJsonSchema({"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 255}}),
]


def _canonical_json_value(value: Any, depth: int = 0) -> Any:
    """A free-form JSON value as serde_json's `Value` holds it: maps sorted by key."""
    if depth > 128:
        raise ValueError("JSON value nested too deeply")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        # serde_json keeps i64/u64; anything wider becomes an f64.
        if I64_MIN <= value <= U64_MAX:
            return value
        try:
            return float(value)
        except OverflowError:  # as serde_json refuses it
            raise ValueError("number out of range") from None
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("NaN and infinities are not JSON")
        return value
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise ValueError("JSON object keys must be strings")
        return {key: _canonical_json_value(value[key], depth + 1) for key in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [_canonical_json_value(item, depth + 1) for item in value]
    raise ValueError(f"{type(value).__name__} is not a JSON value")


JsonValue = Annotated[Any, PlainValidator(_canonical_json_value), WithJsonSchema({})]

DeliveryPolicy = Literal["earliest_safe_boundary", "after_current_turn_commit"]
SlotPolicy = Literal["join", "exclusive"]
QueuedWorkClaimBoundary = Literal["active_turn_checkpoint", "idle"]
DELIVERY_POLICIES: tuple[str, ...] = ("earliest_safe_boundary", "after_current_turn_commit")
SLOT_POLICIES: tuple[str, ...] = ("join", "exclusive")
BOUNDARIES: tuple[str, ...] = ("idle", "active_turn_checkpoint")


# --------------------------------------------------------------------------- merge key


class MergeGroup(WireModel):
    """`{"group": NAME}`: joins only batches of the same group."""

    group: str


def _merge_key_from_wire(value: Any) -> str | MergeGroup:
    if isinstance(value, MergeGroup):
        return value
    if value in ("never", "payload_default") and isinstance(value, str):
        return value
    if isinstance(value, str):
        if value == "group":
            raise ValueError('invalid merge key "group": expected {"group": NAME}')
        raise ValueError(f"unknown merge key {value!r}, expected one of `never`, `payload_default`, `group`")
    if isinstance(value, dict):
        if len(value) != 1 or getattr(value, "duplicates", ()):
            raise ValueError('a merge key object must have exactly one key, as {"group": NAME}')
        ((key, inner),) = value.items()
        if key in ("never", "payload_default"):
            if inner is not None:
                raise ValueError(f"invalid merge key: `{key}` takes no value")
            return key
        if key != "group":
            raise ValueError(f"unknown merge key {key!r}, expected one of `never`, `payload_default`, `group`")
        if not isinstance(inner, str):
            raise ValueError("invalid merge key: the group name must be a string")
        return MergeGroup(group=inner)
    raise ValueError('invalid merge key: expected "never", "payload_default" or {"group": NAME}')


MergeKey = Annotated[
    Union[Literal["never", "payload_default"], MergeGroup],
    PlainValidator(_merge_key_from_wire),
    PlainSerializer(lambda key: key if isinstance(key, str) else {"group": key.group}),
    WithJsonSchema(
        {
            "oneOf": [
                {"enum": ["never", "payload_default"]},
                {"type": "object", "properties": {"group": {"type": "string"}}, "required": ["group"],
                 "additionalProperties": False},
            ]
        }
    ),
]


# --------------------------------------------------------------------------- turn input


class TextItem(WireModel):
    type: Literal["text"] = "text"
    text: str


class ImageRefItem(WireModel):
    type: Literal["image_ref"] = "image_ref"
    id: str


InputItem = Annotated[Union[TextItem, ImageRefItem], Field(discriminator="type")]


class ProtocolTurnOptions(WireModel):
    payload: JsonValue = Field(default_factory=dict)


class TurnInput(WireModel):
    items: list[InputItem]
    image_blobs: dict[str, Bytes] = Field(default_factory=dict)
    protocol_turn_options: ProtocolTurnOptions | None = None
    trace_turn_id: str | None = None

    @field_serializer("image_blobs")
    def _sorted_blobs(self, blobs: dict[str, bytes]) -> dict[str, list[int]]:
        # A hash map in the reference (arbitrary order): turnq writes it sorted.
        return {key: list(blobs[key]) for key in sorted(blobs)}

    def to_wire(self) -> dict[str, Any]:
        data = super().to_wire()
        blobs = self.image_blobs
        data["image_blobs"] = {key: list(blobs[key]) for key in sorted(blobs)}
        return data


# --------------------------------------------------------------------------- causality


class CausalTurn(WireModel):
    type: Literal["turn"] = "turn"
    session_id: str
    turn_id: str


class CausalEffect(WireModel):
    type: Literal["effect"] = "effect"
    session_id: str
    turn_id: str | None = None
    effect_id: str


class CausalToolCall(WireModel):
    type: Literal["tool_call"] = "tool_call"
    session_id: str
    call_id: str


class CausalProcess(WireModel):
    type: Literal["process"] = "process"
    process_id: str


class CausalProcessEvent(WireModel):
    type: Literal["process_event"] = "process_event"
    process_id: str
    sequence: U64


class CausalHostEvent(WireModel):
    type: Literal["host_event"] = "host_event"
    occurrence_id: str


class CausalSessionNode(WireModel):
    type: Literal["session_node"] = "session_node"
    session_id: str
    node_id: str


CausalRef = Annotated[
    Union[CausalTurn, CausalEffect, CausalToolCall, CausalProcess, CausalProcessEvent, CausalHostEvent,
          CausalSessionNode],
    Field(discriminator="type"),
]

EffectKind = Literal[
    "llm_call", "direct", "tool_call", "process", "exec_code", "checkpoint", "sync_execution_surface", "sleep"
]


class SubjectEffect(WireModel):
    type: Literal["effect"] = "effect"
    effect_id: str
    kind: EffectKind


class SubjectProcess(WireModel):
    type: Literal["process"] = "process"
    process_id: str


class SubjectProcessEvent(WireModel):
    type: Literal["process_event"] = "process_event"
    process_id: str
    sequence: U64
    event_type: str


class SubjectHostEvent(WireModel):
    type: Literal["host_event"] = "host_event"
    occurrence_id: str


class SubjectSessionNode(WireModel):
    type: Literal["session_node"] = "session_node"
    node_id: str


RuntimeSubject = Annotated[
    Union[SubjectEffect, SubjectProcess, SubjectProcessEvent, SubjectHostEvent, SubjectSessionNode],
    Field(discriminator="type"),
]


class RuntimeScope(WireModel):
    session_id: str
    turn_id: str | None = None
    turn_index: U64 | None = None
    protocol_iteration: U64 | None = None


class RuntimeReplay(WireModel):
    key: str


class RuntimeInvocation(WireModel):
    scope: RuntimeScope
    subject: RuntimeSubject
    caused_by: CausalRef | None = None
    replay: RuntimeReplay | None = None


def _default_invocation() -> RuntimeInvocation:
    # The reference's Default: an empty scope and an empty process_event subject,
    # whose event type is "process.wake" whatever the wake's own event type is.
    return RuntimeInvocation(
        scope=RuntimeScope(session_id=""),
        subject=SubjectProcessEvent(process_id="", sequence=0, event_type="process.wake"),
    )


class ProcessWakeDelivery(WireModel):
    wake_id: str
    target_session_id: str
    target_scope_id: str
    process_id: str
    sequence: U64
    event_type: str = "process.wake"
    event_invocation: RuntimeInvocation = Field(default_factory=_default_invocation)
    process_caused_by: CausalRef | None = None
    dedupe_key: str
    input: str
    created_at_ms: U64


# --------------------------------------------------------------------------- session commands


class RefreshToolSurface(WireModel):
    kind: Literal["refresh_tool_surface"] = "refresh_tool_surface"
    reason: str
    expected_generation: U64 | None = None


class ResetSession(WireModel):
    kind: Literal["reset_session"] = "reset_session"
    reason: str


SessionCommand = Annotated[Union[RefreshToolSurface, ResetSession], Field(discriminator="kind")]


# --------------------------------------------------------------------------- payloads


class TurnInputPayload(WireModel):
    type: Literal["turn_input"] = "turn_input"
    input: TurnInput


class ProcessWakePayload(WireModel):
    type: Literal["process_wake"] = "process_wake"
    wake: ProcessWakeDelivery


class SessionCommandPayload(WireModel):
    type: Literal["session_command"] = "session_command"
    command: SessionCommand


QueuedWorkPayload = Annotated[
    Union[TurnInputPayload, ProcessWakePayload, SessionCommandPayload], Field(discriminator="type")
]


# --------------------------------------------------------------------------- queue shapes


class QueuedWorkBatchDraft(WireModel):
    session_id: str
    source_key: str | None = None
    delivery_policy: DeliveryPolicy
    slot_policy: SlotPolicy
    # Required by the reference's serde; turnq accepts a draft without them and
    # uses the reference's draft-constructor defaults (spec/wire.md).
    merge_key: MergeKey = "never"
    available_at_ms: U64 = 0
    payloads: list[QueuedWorkPayload]


class QueuedWorkItem(WireModel):
    item_id: str
    payload: QueuedWorkPayload


class QueuedWorkBatch(WireModel):
    batch_id: str
    session_id: str
    enqueue_seq: U64
    source_key: str | None = None
    delivery_policy: DeliveryPolicy
    slot_policy: SlotPolicy
    merge_key: MergeKey
    available_at_ms: U64
    enqueued_at_ms: U64
    items: list[QueuedWorkItem]


class QueuedWorkClaim(WireModel):
    session_id: str
    claim_id: str
    owner_id: str
    lease_token: str
    fencing_token: U64
    claimed_at_epoch_ms: U64
    expires_at_epoch_ms: U64
    batches: list[QueuedWorkBatch]

    @property
    def batch_ids(self) -> list[str]:
        return [batch.batch_id for batch in self.batches]


class QueuedWorkCompletion(WireModel):
    session_id: str
    claim_id: str
    lease_token: str
    batch_ids: list[str]


class SessionCommandReceipt(WireModel):
    session_id: str
    batch_id: str
    source_key: str


class Tombstone(WireModel):
    """turnq's record of a settled batch that had a source key (spec/semantics.md)."""

    session_id: str
    source_key: str
    batch_id: str
    outcome: Literal["completed", "cancelled"]
    settled_at_ms: U64


# --------------------------------------------------------------------------- materialised work


class PluginMessage(WireModel):
    role: Literal["User"] = "User"
    content: str
    images: list[Bytes] = Field(default_factory=list)

    @model_serializer(mode="wrap")
    def _omit_absent(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        if not data["images"]:
            del data["images"]
        return data

    def to_wire(self) -> dict[str, Any]:
        data = super().to_wire()
        if not data["images"]:
            del data["images"]
        return data


class MessageOrigin(WireModel):
    kind: Literal["process"] = "process"
    process_id: str
    event_type: str
    sequence: U64
    wake_id: str | None = None
    caused_by: CausalRef | None = None


class TurnCause(WireModel):
    id: str
    event_type: str
    origin: MessageOrigin
    text: str


class AcceptedInjectedTurnInput(WireModel):
    id: str | None = None
    message: PluginMessage


# --------------------------------------------------------------------------- parsing

#: The wire types by the names spec/vectors.jsonl uses.
WIRE_TYPES: dict[str, Any] = {
    "DeliveryPolicy": DeliveryPolicy,
    "SlotPolicy": SlotPolicy,
    "MergeKey": MergeKey,
    "QueuedWorkClaimBoundary": QueuedWorkClaimBoundary,
    "InputItem": InputItem,
    "TurnInput": TurnInput,
    "SessionCommand": SessionCommand,
    "CausalRef": CausalRef,
    "RuntimeInvocation": RuntimeInvocation,
    "ProcessWakeDelivery": ProcessWakeDelivery,
    "QueuedWorkPayload": QueuedWorkPayload,
    "QueuedWorkItem": QueuedWorkItem,
    "QueuedWorkBatchDraft": QueuedWorkBatchDraft,
    "QueuedWorkBatch": QueuedWorkBatch,
    "QueuedWorkClaim": QueuedWorkClaim,
    "QueuedWorkCompletion": QueuedWorkCompletion,
    "SessionCommandReceipt": SessionCommandReceipt,
}

_ADAPTERS: dict[Any, Any] = {}


def adapter(wire_type: Any) -> Any:
    """A cached pydantic TypeAdapter for a wire type (model, union or literal)."""
    from pydantic import TypeAdapter

    found = _ADAPTERS.get(wire_type)
    if found is None:
        found = _ADAPTERS[wire_type] = TypeAdapter(wire_type)
    return found


def validate(wire_type: Any, data: Any, context: WireContext | None = None, *, what: str = "input") -> Any:
    """Validate parsed JSON data as `wire_type`; raise `InvalidInput` with a one-line reason."""
    fast = _fast_validator(wire_type)
    if fast is not None:
        from .fastwire import Bail

        try:
            return fast(data)
        except Bail:
            pass  # pydantic decides, and words the error
    try:
        return adapter(wire_type).validate_python(data, context=context or WireContext())
    except ValidationError as err:
        raise InvalidInput(f"{what}: {describe_validation_error(err)}") from None


def _fast_validator(wire_type: Any) -> Any:
    if not isinstance(wire_type, type) or not issubclass(wire_type, WireModel):
        return None
    from .fastwire import VALIDATORS

    return VALIDATORS.get(wire_type)


def parse(wire_type: Any, text: str | bytes, context: WireContext | None = None, *, what: str = "input") -> Any:
    """Parse JSON text as `wire_type` (see `validate`)."""
    try:
        data = wirejson.loads(text)
    except ValueError as err:
        raise InvalidInput(f"{what}: invalid JSON: {err}") from None
    return validate(wire_type, data, context, what=what)


def dump(value: Any) -> Any:
    """Wire data (Python) of a model, a union member or a plain literal."""
    if isinstance(value, BaseModel):
        return value.to_wire() if isinstance(value, WireModel) else value.model_dump()
    if isinstance(value, list):
        return [dump(item) for item in value]
    return value


def describe_validation_error(err: ValidationError) -> str:
    first = err.errors(include_url=False)[0]
    location = _location(first["loc"])
    message = first["msg"]
    if first["type"] == "missing":
        message = f"missing field `{first['loc'][-1]}`" if first["loc"] else "missing field"
        location = _location(first["loc"][:-1])
    elif message.startswith("Value error, "):
        message = message[len("Value error, "):]
    more = f" (and {err.error_count() - 1} more problem(s))" if err.error_count() > 1 else ""
    return f"{message} at {location}{more}" if location else f"{message}{more}"


def _location(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for step in loc:
        if isinstance(step, int):
            parts.append(f"[{step}]")
        elif str(step).startswith(("function-", "union[", "tagged-union[", "literal[")):
            continue
        else:
            parts.append(f".{step}" if parts else str(step))
    return "".join(parts)
