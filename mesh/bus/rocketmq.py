"""The RocketMQ 5 transport, over the official ``rocketmq-python-client`` (gRPC).

Why this client: the design card's ``rocketmq-client-python`` wraps a native
C++ library that cannot be installed here and speaks the 4.x remoting
protocol; ``rocketmq-python-client`` 5.x is the official gRPC client for the
5.x proxy.

The client is thread-based: ``startup``/``shutdown`` and route lookups block,
and sends and receives return ``concurrent.futures.Future``s. Blocking calls
run in a small dedicated executor and futures are awaited with
``asyncio.wrap_future``, so the event loop never blocks.

Pieces:
- ``Forwarder``: a bus handler that relays a Redis stream (the outbox) to a
  topic. Key = order id, tag = event type, user properties = the trace
  context. A batch is sent concurrently; what failed is retried one by one; a
  transient failure (timeout, unavailable, throttled) raises, so nothing of
  the batch is acknowledged and the stream consumer retries later; a
  permanent one fails the message (dead-lettered after the maximum).
- ``RocketConsumer``: a SimpleConsumer delivering batches to the same
  handlers the embedded transport uses; a message is acknowledged only after
  the handler made it durable; the rest become visible again after a backoff
  (RocketMQ counts the attempts and moves a message to ``%DLQ%<group>``
  after the group's retry maximum).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from opentelemetry import trace
from prometheus_client import CollectorRegistry, Gauge
from rocketmq import (
    ClientConfiguration,
    Credentials,
    FilterExpression,
    Producer,
    SimpleConsumer,
)
from rocketmq import (
    Message as RocketMessage,
)
from rocketmq.grpc_protocol import Address, AddressScheme, Endpoints, MessagingServiceStub, QueryRouteRequest, Resource
from rocketmq.grpc_protocol.definition_pb2 import Code
from rocketmq.v5.exception import (
    BadRequestException,
    ForbiddenException,
    IllegalArgumentException,
    NotFoundException,
    PayloadEmptyException,
    PayloadTooLargeException,
)

from mesh.bus.messages import BatchOutcome, Handler, Message, decode_envelope
from mesh.telemetry import span_link
from mesh.worker import LoopWorker

log = logging.getLogger(__name__)
T = TypeVar("T")

# Failures that a retry cannot fix: the message itself is wrong for the topic.
PERMANENT = (
    BadRequestException,
    ForbiddenException,
    IllegalArgumentException,
    NotFoundException,
    PayloadEmptyException,
    PayloadTooLargeException,
)


# What the proxy expects of a client on every call.
_CLIENT_HEADERS = (
    ("x-mq-language", "PYTHON"),
    ("x-mq-protocol", "v2"),
    ("x-mq-client-version", "5.1.2"),
    ("x-mq-client-id", "ordermesh-route-check"),
)


class MissingTopic(RuntimeError):
    """A topic the process needs does not exist: refuse to start, naming it."""


class RocketClient:
    """Shared configuration and the executor for the client's blocking calls."""

    def __init__(self, endpoint: str, request_timeout: int = 10) -> None:
        # An int: given a float, the client fails deep inside ("cannot be interpreted as an integer").
        self.config = ClientConfiguration(endpoint, Credentials(), request_timeout=request_timeout)
        self.endpoint = endpoint
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="rocketmq")

    async def blocking(self, call: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, call, *args)

    async def producer(self, topics: list[str]) -> Producer:
        await self.require_topics(topics)
        producer = Producer(self.config, tuple(topics))
        await self.blocking(producer.startup)
        return producer

    async def consumer(self, group: str, topics: list[str], await_seconds: int) -> SimpleConsumer:
        await self.require_topics(topics)
        subscription = {topic: FilterExpression("*") for topic in topics}
        consumer = SimpleConsumer(self.config, group, subscription, await_duration=await_seconds)
        await self.blocking(consumer.startup)
        # A simple consumer's startup does not wait for the proxy's settings, and a
        # receive before they arrive fails on the proxy; wait for them here.
        if not await self.blocking(consumer._init_settings_event.wait, 10):
            raise RuntimeError(f"RocketMQ consumer {group!r} got no settings from {self.endpoint} in 10 s")
        return consumer

    async def require_topics(self, topics: list[str]) -> None:
        """Ask the proxy for each topic's route; 5.x never creates topics for gRPC
        clients, so a missing one must stop start-up, by name.

        A blocking channel in the client's executor: the client runs grpc.aio
        on its own event loop in a thread, and grpc.aio serves one loop per
        process, so this process's loop must not touch grpc.aio for RocketMQ.
        """
        await self.blocking(self._require_topics, topics)

    def _require_topics(self, topics: list[str]) -> None:
        host, _, port = self.endpoint.rpartition(":")
        endpoints = Endpoints(scheme=AddressScheme.IPv4, addresses=[Address(host=host, port=int(port))])
        with grpc.insecure_channel(self.endpoint) as channel:
            stub = MessagingServiceStub(channel)
            for topic in topics:
                reply = stub.QueryRoute(
                    QueryRouteRequest(topic=Resource(name=topic), endpoints=endpoints),
                    metadata=_CLIENT_HEADERS,
                    timeout=10,
                )
                if reply.status.code != Code.OK or not reply.message_queues:
                    raise MissingTopic(
                        f"RocketMQ topic {topic!r} is not usable at {self.endpoint}: "
                        f"{Code.Name(reply.status.code)} {reply.status.message}"
                    )

    async def close(self, *clients: Any) -> None:
        for client in clients:
            await self.blocking(client.shutdown)
        self._executor.shutdown(wait=False)


def _to_rocket(topic: str, message: Message) -> RocketMessage:
    rocket = RocketMessage()
    rocket.topic = topic
    rocket.body = message.payload
    rocket.tag = message.type or "Event"
    if message.order_id:
        rocket.keys = message.order_id
    properties = {"stream_id": message.id, "order_id": message.order_id, "event_type": message.type}
    try:
        properties.update(decode_envelope(message.payload).trace_context)
    except Exception:  # noqa: BLE001 - an undecodable payload still travels; the consumer rejects it
        log.debug("no trace context on %s", message.id)
    for key, value in properties.items():
        if value:  # the client rejects blank property values
            rocket.add_property(key, value)
    return rocket


class Forwarder:
    """Handler for a StreamConsumer on an outbox stream: relay each message to ``topic``."""

    def __init__(self, client: RocketClient, producer: Producer, topic: str, lag: Gauge | None = None) -> None:
        self._client = client
        self._producer = producer
        self._topic = topic
        self._lag = lag

    async def _send(self, message: Message) -> str:
        future = await self._client.blocking(self._producer.send_async, _to_rocket(self._topic, message))
        receipt = await asyncio.wrap_future(future)
        return str(receipt.message_id)

    async def __call__(self, batch: list[Message]) -> BatchOutcome:
        outcome = BatchOutcome()
        if self._lag is not None and batch:
            oldest_ms = min(int(m.id.split("-", 1)[0]) for m in batch)
            self._lag.set(max(0.0, time.time() - oldest_ms / 1000))
        results = await asyncio.gather(*(self._send(m) for m in batch), return_exceptions=True)
        for message, result in zip(batch, results, strict=True):
            if not isinstance(result, BaseException):
                continue
            try:  # the batch failed for this one: alone, once more
                await self._send(message)
            except PERMANENT as error:
                outcome.fail(message, f"rejected by RocketMQ: {error}")
            # Anything else (timeout, unavailable, throttled) propagates: nothing
            # of this batch is acknowledged, and it is retried after a backoff.
        return outcome


def lag_gauge(registry: CollectorRegistry) -> Gauge:
    return Gauge(
        "ordermesh_forwarder_lag_seconds",
        "Age of the oldest stream entry in the forwarder's last batch.",
        registry=registry,
    )


@dataclass(frozen=True)
class RocketConsumerConfig:
    batch_size: int = 32
    invisible_seconds: int = 30
    # Long polling; the proxy wants the call's remaining deadline above its
    # minimum polling time, so the request timeout (10 s) is added to this.
    await_seconds: int = 5
    retry_backoff_seconds: int = 10


class RocketConsumer(LoopWorker):
    """SimpleConsumer batches into a bus handler; ack after the effect is durable."""

    def __init__(
        self,
        client: RocketClient,
        group: str,
        topic: str,
        handler: Handler,
        config: RocketConsumerConfig,
        tracer: trace.Tracer,
    ) -> None:
        super().__init__(f"rocketmq:{group}:{topic}")
        self._tracer = tracer
        self._client = client
        self.group = group
        self.topic = topic
        self._handler = handler
        self._config = config
        self._consumer: SimpleConsumer | None = None

    async def open(self) -> None:
        """Connect the SimpleConsumer (``start`` also runs the loop; tests poll instead)."""
        if self._consumer is None:
            self._consumer = await self._client.consumer(self.group, [self.topic], self._config.await_seconds)

    async def start(self) -> None:
        await self.open()
        await super().start()

    async def stopped(self) -> None:
        if self._consumer is not None:
            await self._client.blocking(self._consumer.shutdown)

    async def run(self) -> None:
        while self.running:
            try:
                await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - a consume loop must survive; logged, backs off
                log.warning("rocketmq consumer %s: %s", self.group, error)
                await asyncio.sleep(self._config.retry_backoff_seconds)

    async def poll(self) -> int:
        assert self._consumer is not None
        future = await self._client.blocking(
            self._consumer.receive_async, self._config.batch_size, self._config.invisible_seconds
        )
        received = await asyncio.wrap_future(future)
        if not received:
            return 0
        batch = [
            Message(
                id=str(r.message_id),
                stream=str(r.topic),
                type=str(r.tag or r.properties.get("event_type", "")),
                order_id=str(r.properties.get("order_id", "")),
                payload=bytes(r.body),
                attempt=int(r.delivery_attempt or 1),
            )
            for r in received
        ]
        links = [link for r in received if (link := span_link(r.properties)) is not None]
        with self._tracer.start_as_current_span(
            f"consume {self.topic}",
            kind=trace.SpanKind.CONSUMER,
            links=links,
            attributes={"messaging.system": "rocketmq", "messaging.batch.message_count": len(batch)},
        ):
            outcome = await self._handler(batch)
        for rocket, message in zip(received, batch, strict=True):
            if message.id in outcome.failed or message.id in outcome.deferred:
                # Not acknowledged: visible again after a backoff (the proxy's minimum
                # is 10 s); RocketMQ counts the attempt and dead-letters at the maximum.
                await self._client.blocking(
                    self._consumer.change_invisible_duration, rocket, max(10, self._config.retry_backoff_seconds)
                )
            else:
                # The blocking ack in the executor: the client's ack_async returns no future.
                await self._client.blocking(self._consumer.ack, rocket)
        return len(batch)
