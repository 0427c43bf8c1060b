"""What a claim turns into for the runtime (spec/semantics.md, *Materialisation*)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .models import (
    AcceptedInjectedTurnInput,
    ImageRefItem,
    MessageOrigin,
    PluginMessage,
    ProcessWakeDelivery,
    ProcessWakePayload,
    QueuedWorkBatch,
    SessionCommandPayload,
    TextItem,
    TurnCause,
    TurnInput,
    TurnInputPayload,
    dump,
)


@dataclass(frozen=True)
class CheckpointWork:
    """What is injected at an active-turn checkpoint."""

    messages: list[PluginMessage] = field(default_factory=list)
    turn_causes: list[TurnCause] = field(default_factory=list)
    accepted_turn_inputs: list[AcceptedInjectedTurnInput] = field(default_factory=list)

    def to_wire(self) -> dict[str, Any]:
        return {
            "messages": dump(self.messages),
            "turn_causes": dump(self.turn_causes),
            "accepted_turn_inputs": dump(self.accepted_turn_inputs),
        }


@dataclass(frozen=True)
class TurnWork:
    """What starts a new turn at the idle boundary."""

    turn_input: TurnInput
    turn_causes: list[TurnCause] = field(default_factory=list)
    session_command: Any = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "turn_input": self.turn_input.to_wire(),
            "turn_causes": dump(self.turn_causes),
            "session_command": None if self.session_command is None else self.session_command.to_wire(),
        }


def turn_cause(wake: ProcessWakeDelivery) -> TurnCause:
    return TurnCause(
        id=wake.wake_id,
        event_type=wake.event_type,
        origin=MessageOrigin(
            process_id=wake.process_id,
            event_type=wake.event_type,
            sequence=wake.sequence,
            wake_id=wake.wake_id,
            caused_by=wake.process_caused_by,
        ),
        text=(
            f"Background process wake\nProcess: {wake.process_id}\n"
            f"Event: {wake.event_type} #{wake.sequence}\nWake input:\n{wake.input}"
        ),
    )


def user_message(turn_input: TurnInput) -> PluginMessage | None:
    """One user message: non-empty texts joined by newlines, images that have a blob."""
    texts = [item.text for item in turn_input.items if isinstance(item, TextItem) and item.text]
    images = [
        turn_input.image_blobs[item.id]
        for item in turn_input.items
        if isinstance(item, ImageRefItem) and item.id in turn_input.image_blobs
    ]
    if not texts and not images:
        return None
    return PluginMessage(content="\n".join(texts), images=images)


def accepted_input_id(source_key: str | None) -> str | None:
    if source_key is None:
        return None
    for prefix in ("host:", "injection:"):
        if source_key.startswith(prefix):
            return source_key[len(prefix):]
    return source_key


def checkpoint_work(batches: list[QueuedWorkBatch]) -> CheckpointWork:
    work = CheckpointWork()
    for batch in batches:
        for item in batch.items:
            payload = item.payload
            if isinstance(payload, TurnInputPayload):
                message = user_message(payload.input)
                if message is not None:
                    work.messages.append(message)
                    work.accepted_turn_inputs.append(
                        AcceptedInjectedTurnInput(id=accepted_input_id(batch.source_key), message=message)
                    )
            elif isinstance(payload, ProcessWakePayload):
                work.turn_causes.append(turn_cause(payload.wake))
    return work


def turn_work(batches: list[QueuedWorkBatch]) -> TurnWork:
    items: list[Any] = []
    blobs: dict[str, bytes] = {}
    options = trace = None
    causes: list[TurnCause] = []
    for batch in batches:
        for item in batch.items:
            payload = item.payload
            if isinstance(payload, TurnInputPayload):
                turn_input = payload.input
                items.extend(turn_input.items)
                blobs.update(turn_input.image_blobs)  # a later turn input's bytes win
                options = options if options is not None else turn_input.protocol_turn_options
                trace = trace if trace is not None else turn_input.trace_turn_id
            elif isinstance(payload, ProcessWakePayload):
                causes.append(turn_cause(payload.wake))
    merged = TurnInput(items=items, image_blobs=blobs, protocol_turn_options=options, trace_turn_id=trace)
    return TurnWork(turn_input=merged, turn_causes=causes, session_command=exclusive_session_command(batches))


def exclusive_session_command(batches: list[QueuedWorkBatch]) -> Any:
    """The command, when the claim is exactly one exclusive batch of one session-command item."""
    if len(batches) != 1:
        return None
    batch = batches[0]
    if batch.slot_policy != "exclusive" or len(batch.items) != 1:
        return None
    payload = batch.items[0].payload
    return payload.command if isinstance(payload, SessionCommandPayload) else None


def materialize(batches: list[QueuedWorkBatch], boundary: str) -> TurnWork | CheckpointWork:
    return turn_work(batches) if boundary == "idle" else checkpoint_work(batches)
