"""Messages on the wire: bus messages to and from RocketMQ messages, and the
batch send the forwarder makes below the SDK's public API.

The SDK sends one message per call through three thread hops (our executor,
its I/O loop, its callback pool), and refuses the proxy's one-receipt answer
to a call of several messages. The forwarder instead builds a batch's calls,
several messages each, in our executor and starts them together on the SDK's
own I/O loop, where its channels live: one hop in and one out per batch, one
gRPC call per chunk of messages, and the answer judged here (``check_stored``).
That needs the SDK's request builder and channel, which are private: they are
used here only, so an SDK upgrade is checked in one file."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from rocketmq import Message as RocketMessage
from rocketmq import Producer
from rocketmq.grpc_protocol import Encoding, MessageType, SendMessageRequest
from rocketmq.grpc_protocol.definition_pb2 import Code
from rocketmq.grpc_protocol.definition_pb2 import Message as WireMessage
from rocketmq.v5.client.balancer import QueueSelector
from rocketmq.v5.util import MessageIdCodec, MessagingResultChecker, Misc

from mesh.bus.messages import Message, decode_envelope

log = logging.getLogger(__name__)

# The broker bounds the encoded size of a multi-message call as a whole by its
# maxMessageSize (4 MiB by default) and refuses a larger one whole: a call stops
# taking messages at a quarter of that (bodies and properties, as protobuf).
CALL_BYTES = 1024 * 1024


@dataclass
class Call:
    """One SendMessage: the stream messages it carries, in stream order, with its
    request and signed metadata; or, for one message, why it could not be built
    (it fails again, alone, with the same error)."""

    messages: list[Message]
    request: SendMessageRequest | None = None
    metadata: Any = None
    error: Exception | None = None


def to_rocket(topic: str, message: Message) -> RocketMessage:
    rocket = RocketMessage()
    rocket.topic = topic
    rocket.body = message.payload
    rocket.tag = message.type or "Event"
    if message.order_id:
        rocket.keys = message.order_id
    # "topic" survives a move to %DLQ%, so a dead letter can be replayed to where it came from.
    properties = {"stream_id": message.id, "order_id": message.order_id, "event_type": message.type, "topic": topic}
    try:
        properties.update(decode_envelope(message.payload).trace_context)
    except Exception:  # noqa: BLE001 - an undecodable payload still travels; the consumer rejects it
        log.debug("no trace context on %s", message.id)
    for key, value in properties.items():
        if value:  # the client rejects blank property values
            rocket.add_property(key, value)
    return rocket


def from_rocket(rocket: RocketMessage) -> Message:
    return Message(
        id=str(rocket.message_id),
        stream=str(rocket.topic),
        type=str(rocket.tag or rocket.properties.get("event_type", "")),
        order_id=str(rocket.properties.get("order_id", "")),
        payload=bytes(rocket.body),
        attempt=int(rocket.delivery_attempt or 1),
        headers={str(k): str(v) for k, v in rocket.properties.items()},
    )


def origin_ms(rocket: RocketMessage) -> int:
    """When the message's event entered its stream (the forwarder keeps the entry
    id, whose first part is milliseconds), else when it was sent; 0 if unknown."""
    stream_id = str(rocket.properties.get("stream_id", ""))
    head = stream_id.partition("-")[0]
    if head.isdigit():
        return int(head)
    return int(rocket.born_timestamp or 0)


def build_calls(producer: Producer, topic: str, batch: list[Message], per_call: int) -> tuple[Any, list[Call]]:
    """The endpoints to send to, and the batch cut into SendMessage calls of up to
    ``per_call`` messages in stream order (fewer where ``CALL_BYTES`` would be
    passed). A message that cannot be built is a call of its own, with the error."""
    route = producer.route_manager.retrieve_topic_route_data(topic)
    endpoints = QueueSelector.producer_queue_selector(route).select_next_queue().endpoints
    calls: list[Call] = []
    current: Call | None = None
    size = 0
    for message in batch:
        try:
            wire = wire_message(producer, to_rocket(topic, message))
        except Exception as error:  # noqa: BLE001 - kept as this message's result
            calls.append(Call([message], error=error))
            current = None  # the next message starts a call after it: the calls keep stream order
            continue
        weight = wire.ByteSize()
        if current is None or len(current.messages) >= per_call or (current.messages and size + weight > CALL_BYTES):
            current = Call([], SendMessageRequest(), producer.sign())
            calls.append(current)
            size = 0
        assert current.request is not None
        current.request.messages.append(wire)
        current.messages.append(message)
        size += weight
    return endpoints, calls


def wire_message(producer: Producer, rocket: RocketMessage) -> Any:
    """What ``Producer.send_async`` puts on the wire for a normal message (its builder is
    private), with a message id of its own: each message of a multi-message call keeps
    its id, key, tag and properties (RocketMQ 5.5.0 on; 5.3.3 stored all of them with
    the first one's, apache/rocketmq#9416)."""
    wire = WireMessage()
    wire.topic.name = rocket.topic
    wire.topic.resource_namespace = producer.client_configuration.namespace
    wire.body = rocket.body
    wire.user_properties.update(rocket.properties)
    system = wire.system_properties
    system.tag = rocket.tag
    system.keys.extend(rocket.keys)
    system.message_id = MessageIdCodec().next_message_id()
    system.message_type = MessageType.NORMAL
    system.born_timestamp.seconds = int(time.time())
    system.born_host = Misc.get_local_ip()
    system.body_encoding = Encoding.IDENTITY
    return wire


class NotStored(Exception):
    """The proxy's answer does not say that every message of the call was stored."""


def check_stored(reply: Any, count: int) -> None:
    """Return only if ``reply`` says all ``count`` messages of a SendMessage are stored.

    Accepted: status OK with one OK entry per message, as the protocol says, or
    with a single OK entry for all of them, which is what the proxy answers a
    multi-message call (apache/rocketmq#11049: it hands the messages to the broker
    as one batch, which the broker appends whole or refuses whole; that entry's
    message id is the batch's own, no stored message's). Anything else raises:
    MULTIPLE_RESULTS (some stored, some not, which the client's checker lets
    pass), a failing entry, or a count of entries that is neither."""
    MessagingResultChecker.check(reply.status)  # the client's exception for a failing code
    entries = reply.entries
    if reply.status.code != Code.OK or len(entries) not in (1, count):
        raise NotStored(
            f"SendMessage of {count}: {Code.Name(reply.status.code)} {reply.status.message!r}, {len(entries)} entries"
        )
    for entry in entries:
        if entry.status.code != Code.OK:
            raise NotStored(f"SendMessage of {count}: entry {Code.Name(entry.status.code)} {entry.status.message!r}")


async def send_all(producer: Producer, endpoints: Any, calls: list[Call]) -> list[BaseException | None]:
    """On the client's I/O loop, where its channels live: every call at once;
    per call None once the proxy stored all its messages, else the error."""
    stub = producer.rpc_client.retrieve_or_create_channel(endpoints).async_stub
    timeout = producer.client_configuration.request_timeout

    async def send(call: Call) -> None:
        if call.error is not None:
            raise call.error
        reply = await stub.SendMessage(call.request, metadata=call.metadata, timeout=timeout)
        check_stored(reply, len(call.messages))

    return await asyncio.gather(*(send(call) for call in calls), return_exceptions=True)
