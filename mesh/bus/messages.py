"""What handlers see: transport-neutral messages and the outcome of a batch."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ordermesh.events.v1 import events_pb2


@dataclass(frozen=True)
class Message:
    id: str  # the transport's id (a stream entry id)
    stream: str
    type: str  # the event type, e.g. "OrderPlaced"
    order_id: str
    payload: bytes  # a serialized events.v1.Envelope
    attempt: int = 1  # 1 on first delivery; counts handler failures of this message
    # Transport properties (RocketMQ user properties); empty on Redis Streams.
    headers: dict[str, str] = field(default_factory=dict, compare=False)

    def envelope(self) -> events_pb2.Envelope:
        return decode_envelope(self.payload)


@dataclass
class BatchOutcome:
    """What the handler made durable. Messages not named in ``failed`` are
    acknowledged; each failed one is retried later (with its reason) and
    dead-lettered after the maximum number of attempts."""

    failed: dict[str, str] = field(default_factory=dict)
    # Not handled *yet* (e.g. a status event before its order exists): retried
    # later without spending attempts; dead-lettered only when it has waited
    # longer than the consumer's ``max_defer_seconds``.
    deferred: dict[str, str] = field(default_factory=dict)
    # Deferred because a dependency is down, not because of the message: these
    # wait for as long as the outage lasts and are never dead-lettered for it.
    patient: set[str] = field(default_factory=set)

    def fail(self, message: Message, reason: str) -> None:
        self.failed[message.id] = reason

    def defer(self, message: Message, reason: str, *, until_it_can: bool = False) -> None:
        """Not handled yet; ``until_it_can``: a dependency is down, so the
        message waits for it however long that takes."""
        self.deferred[message.id] = reason
        if until_it_can:
            self.patient.add(message.id)


Handler = Callable[[list[Message]], Awaitable[BatchOutcome]]


def decode_envelope(payload: bytes) -> events_pb2.Envelope:
    return events_pb2.Envelope.FromString(payload)


def encode_fields(envelope: events_pb2.Envelope) -> dict[str, str | bytes]:
    """Stream fields for an envelope: the type and order id readable without parsing."""
    return {
        "type": _type_name(envelope),
        "order_id": envelope.order_id,
        "event": envelope.SerializeToString(),
    }


def _type_name(envelope: events_pb2.Envelope) -> str:
    kind = envelope.WhichOneof("payload")
    if kind is None:
        raise ValueError("an envelope needs a payload")
    return "".join(part.capitalize() for part in kind.split("_"))
