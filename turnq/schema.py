"""JSON Schema of each wire shape (`turnq schema`), from the Pydantic models.

Pydantic's generated schema describes the Python models; a few of their rules are
custom (serde-exact validators and serializers in `turnq.models`), so the generated
schema is fixed up by hand to describe the wire JSON that producers send:

- the tag key of a tagged union (`type`, `kind`) is required, as serde requires it
  (the models give it a default only so Python code need not repeat it);
- a merge key also takes serde's object forms `{"never": null}` / `{"payload_default": null}`;
- a draft requires `merge_key` and `available_at_ms`, as the reference does (turnq also
  accepts a draft without them);
- the store document's `format` and `schema_version` are constants;
- u64 fields carry `minimum: 0` and `maximum: 2**64-1`; bytes are integers 0–255.

Built on demand (models may be built lazily): nothing happens at import time.
"""

from __future__ import annotations

import copy
from typing import Any

from .errors import InvalidInput

DIALECT = "https://json-schema.org/draft/2020-12/schema"

#: `turnq schema NAME` → (the model's module attribute, the spec's name of the shape).
SHAPES: dict[str, tuple[str, str]] = {
    "draft": ("QueuedWorkBatchDraft", "QueuedWorkBatchDraft"),
    "batch": ("QueuedWorkBatch", "QueuedWorkBatch"),
    "claim": ("QueuedWorkClaim", "QueuedWorkClaim"),
    "completion": ("QueuedWorkCompletion", "QueuedWorkCompletion"),
    "receipt": ("SessionCommandReceipt", "SessionCommandReceipt"),
    "payload": ("QueuedWorkPayload", "QueuedWorkPayload"),
    "store": ("StoreDocument", "turnq store document"),
}

_MERGE_KEY = {
    "oneOf": [
        {"enum": ["never", "payload_default"]},
        {"type": "object", "properties": {"group": {"type": "string"}}, "required": ["group"],
         "additionalProperties": False},
        {"type": "object", "properties": {"never": {"type": "null"}}, "required": ["never"],
         "additionalProperties": False},
        {"type": "object", "properties": {"payload_default": {"type": "null"}}, "required": ["payload_default"],
         "additionalProperties": False},
    ],
    "description": 'MergeKey: "never", "payload_default" or {"group": NAME}',
}


def names() -> list[str]:
    return list(SHAPES)


def schema(name: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one wire shape, by its `turnq schema` name."""
    if name not in SHAPES:
        raise InvalidInput(f"unknown shape {name!r}: expected one of {', '.join(SHAPES)}")
    attribute, title = SHAPES[name]
    from . import models

    if name == "store":
        from .store import codec

        wire_type: Any = codec.StoreDocument
    else:
        wire_type = getattr(models, attribute)
    generated = models.adapter(wire_type).json_schema(mode="validation")
    fixed = _fix(copy.deepcopy(generated))
    if name == "draft":
        # The reference's serde requires both (turnq also takes a draft without them and uses
        # "never" and 0): a producer that sends them is understood by both.
        fixed["required"] = [key for key in fixed["properties"] if key != "source_key"]
    if name == "store":
        from .store import codec

        props = fixed["properties"]
        props["format"] = {"const": codec.FORMAT}
        props["schema_version"] = {"const": codec.SCHEMA_VERSION}
    document = {"$schema": DIALECT, "title": title}
    document.update((key, value) for key, value in fixed.items() if key != "title")
    return document


def all_schemas() -> dict[str, dict[str, Any]]:
    return {name: schema(name) for name in SHAPES}


def _fix(node: Any) -> Any:
    """Walk a generated schema and fix what pydantic gets wrong about the wire."""
    if isinstance(node, list):
        return [_fix(item) for item in node]
    if not isinstance(node, dict):
        return node
    if _is_merge_key(node):
        return copy.deepcopy(_MERGE_KEY)
    fixed = {key: _fix(value) for key, value in node.items()}
    properties = fixed.get("properties")
    if isinstance(properties, dict):
        required = list(fixed.get("required", []))
        for key, prop in properties.items():
            # A union tag: a constant with a default. serde requires the tag.
            if isinstance(prop, dict) and "const" in prop and "default" in prop:
                del prop["default"]
                if key not in required:
                    required.insert(0, key)
            if isinstance(prop, dict):
                prop.pop("title", None)
        fixed["required"] = required
    return fixed


def _is_merge_key(node: dict[str, Any]) -> bool:
    one_of = node.get("oneOf")
    return isinstance(one_of, list) and bool(one_of) and one_of[0] == {"enum": ["never", "payload_default"]}
