"""Messages on the wire: bus messages to and from RocketMQ messages, and the
batch send the forwarder makes below the SDK's public API.

The SDK sends one message per call through three thread hops (our executor,
its I/O loop, its callback pool). The forwarder instead builds every request
of a batch in our executor and starts them together on the SDK's own I/O
loop, where its channels live: one hop in and one out per batch. That needs
the SDK's request builder and channel, which are private: they are used here
only, so an SDK upgrade is checked in one file."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from rocketmq import Message as RocketMessage
from rocketmq import Producer
from rocketmq.grpc_protocol import Encoding, MessageType, SendMessageRequest
from rocketmq.v5.client.balancer import QueueSelector
from rocketmq.v5.util import MessageIdCodec, MessagingResultChecker, Misc

from mesh.bus.messages import Message, decode_envelope

log = logging.getLogger(__name__)

# Per message: its request and signed metadata, or why it could not be built.
Call = tuple[Any, Any] | Exception


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


def build_calls(producer: Producer, topic: str, batch: list[Message]) -> tuple[Any, list[Call]]:
    """The endpoints to send to, and per message its request and signed metadata
    (or why it could not be built: it fails again, alone, with the same error)."""
    route = producer.route_manager.retrieve_topic_route_data(topic)
    endpoints = QueueSelector.producer_queue_selector(route).select_next_queue().endpoints
    calls: list[Call] = []
    for message in batch:
        try:
            calls.append((send_request(producer, to_rocket(topic, message)), producer.sign()))
        except Exception as error:  # noqa: BLE001 - kept as this message's result
            calls.append(error)
    return endpoints, calls


def send_request(producer: Producer, rocket: RocketMessage) -> Any:
    """What ``Producer.send_async`` puts on the wire for a normal message (its builder is private)."""
    request = SendMessageRequest()
    wire = request.messages.add()
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
    return request


async def send_all(producer: Producer, endpoints: Any, calls: list[Call]) -> list[BaseException | None]:
    """On the client's I/O loop, where its channels live: every call at once;
    per message None once the proxy stored it, else the error."""
    stub = producer.rpc_client.retrieve_or_create_channel(endpoints).async_stub
    timeout = producer.client_configuration.request_timeout

    async def send(call: tuple[Any, Any] | Exception) -> None:
        if isinstance(call, Exception):
            raise call
        request, metadata = call
        reply = await stub.SendMessage(request, metadata=metadata, timeout=timeout)
        MessagingResultChecker.check(reply.status)  # raises the client's exception for the code

    return await asyncio.gather(*(send(call) for call in calls), return_exceptions=True)
