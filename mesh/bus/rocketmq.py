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
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import grpc
from opentelemetry import trace
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
from rocketmq.grpc_protocol import (
    AckMessageEntry,
    AckMessageRequest,
    Address,
    AddressScheme,
    Encoding,
    Endpoints,
    MessageType,
    MessagingServiceStub,
    QueryRouteRequest,
    Resource,
    SendMessageRequest,
)
from rocketmq.grpc_protocol.definition_pb2 import Code
from rocketmq.v5.client.balancer import QueueSelector
from rocketmq.v5.client.connection import RpcClient
from rocketmq.v5.exception import (
    BadRequestException,
    ForbiddenException,
    IllegalArgumentException,
    NotFoundException,
    PayloadEmptyException,
    PayloadTooLargeException,
)
from rocketmq.v5.util import MessageIdCodec, MessagingResultChecker, Misc

from mesh.breaker import Breaker
from mesh.bus.messages import BatchOutcome, Handler, Message, decode_envelope
from mesh.errors import StartupError
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


class MissingTopic(StartupError):
    """A topic the process needs does not exist: refuse to start, naming it."""


class RocketClient:
    """Shared configuration and the executor for the client's blocking calls."""

    def __init__(self, endpoint: str, request_timeout: int = 10) -> None:
        # An int: given a float, the client fails deep inside ("cannot be interpreted as an integer").
        self.config = ClientConfiguration(endpoint, Credentials(), request_timeout=request_timeout)
        self.endpoint = endpoint
        self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="rocketmq")

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


class Forwarder:
    """Handler for a StreamConsumer on an outbox stream: relay each message to ``topic``.

    A batch's SendMessage calls start together on the client's own I/O loop:
    one thread hop in and one out per batch. Through ``send_async`` each
    message took three (our executor, the client's I/O loop, its callback
    pool), and the GIL hand-offs between them held one forwarder near 1,000
    events/s on 2 cores (``make bench-forwarder``). A call carries one message:
    the 5.3.3 proxy takes several per SendMessage, but stores all of them with
    the first one's message id and properties (apache/rocketmq#9416). What
    fails is sent again alone through ``send_async``, with the client's retries.
    """

    def __init__(
        self,
        client: RocketClient,
        producer: Producer,
        topic: str,
        breaker: Breaker | None = None,
    ) -> None:
        self._client = client
        self._producer = producer
        self._topic = topic
        self._breaker = breaker

    async def _send(self, message: Message) -> str:
        future = await self._client.blocking(self._producer.send_async, to_rocket(self._topic, message))
        receipt = await asyncio.wrap_future(future)
        return str(receipt.message_id)

    async def __call__(self, batch: list[Message]) -> BatchOutcome:
        if self._breaker is None:
            return await self._relay(batch)
        # Open: Unavailable at once, and the stream consumer backs off
        # (doubling to its maximum) instead of spinning on a dead broker.
        with self._breaker.calling():
            return await self._relay(batch)

    async def _relay(self, batch: list[Message]) -> BatchOutcome:
        outcome = BatchOutcome()
        # Route lookups may block (a cache miss asks the proxy): built in the executor.
        endpoints, calls = await self._client.blocking(self._calls, batch)
        sending = asyncio.run_coroutine_threadsafe(self._send_all(endpoints, calls), RpcClient.get_channel_io_loop())
        results = await asyncio.wrap_future(sending)
        for message, result in zip(batch, results, strict=True):
            if result is None:
                continue
            try:  # the batch failed for this one: alone, once more
                await self._send(message)
            except PERMANENT as error:
                outcome.fail(message, f"rejected by RocketMQ: {error}")
            # Anything else (timeout, unavailable, throttled) propagates: nothing
            # of this batch is acknowledged, and it is retried after a backoff.
        return outcome

    def _calls(self, batch: list[Message]) -> tuple[Any, list[tuple[Any, Any] | Exception]]:
        """The endpoints to send to, and per message its request and signed metadata
        (or why it could not be built: it fails again, alone, with the same error)."""
        route = self._producer.route_manager.retrieve_topic_route_data(self._topic)
        endpoints = QueueSelector.producer_queue_selector(route).select_next_queue().endpoints
        calls: list[tuple[Any, Any] | Exception] = []
        for message in batch:
            try:
                calls.append((self._request(to_rocket(self._topic, message)), self._producer.sign()))
            except Exception as error:  # noqa: BLE001 - kept as this message's result
                calls.append(error)
        return endpoints, calls

    def _request(self, rocket: RocketMessage) -> Any:
        """What ``Producer.send_async`` puts on the wire for a normal message (its builder is private)."""
        request = SendMessageRequest()
        wire = request.messages.add()
        wire.topic.name = rocket.topic
        wire.topic.resource_namespace = self._producer.client_configuration.namespace
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

    async def _send_all(self, endpoints: Any, calls: list[tuple[Any, Any] | Exception]) -> list[BaseException | None]:
        """On the client's I/O loop, where its channels live: every call at once;
        per message None once the proxy stored it, else the error."""
        stub = self._producer.rpc_client.retrieve_or_create_channel(endpoints).async_stub
        timeout = self._producer.client_configuration.request_timeout

        async def send(call: tuple[Any, Any] | Exception) -> None:
            if isinstance(call, Exception):
                raise call
            request, metadata = call
            reply = await stub.SendMessage(request, metadata=metadata, timeout=timeout)
            MessagingResultChecker.check(reply.status)  # raises the client's exception for the code

        return await asyncio.gather(*(send(call) for call in calls), return_exceptions=True)


@dataclass(frozen=True)
class RocketConsumerConfig:
    batch_size: int = 32
    invisible_seconds: int = 30
    # Long polling; the proxy wants the call's remaining deadline above its
    # minimum polling time, so the request timeout (10 s) is added to this.
    await_seconds: int = 5
    # A failed message is visible again after this, doubled per attempt up to
    # the maximum (the proxy's minimum is its minInvisibleTimeMillsForRecv).
    retry_backoff_seconds: int = 1
    retry_backoff_max_seconds: int = 300
    # A deferred message is held in hand and retried for this long; then it
    # counts as failed (like the embedded transport's max_defer_seconds).
    max_hold_seconds: float = 3600.0
    # A held message is tried again after this, doubling up to 5 s.
    hold_retry_seconds: float = 0.2


class FailureReasons(Protocol):
    """Where a consumer notes why a message failed, for the dead-letter consumer:
    RocketMQ moves a message to ``%DLQ%`` with its properties, not our reason."""

    async def note(self, group: str, message_id: str, reason: str) -> None: ...
    async def forget(self, group: str, message_ids: list[str]) -> None: ...
    async def take(self, group: str, message_id: str) -> str | None: ...


class RocketConsumer(LoopWorker):
    """SimpleConsumer batches into bus handlers (one per subscribed topic);
    each message is acknowledged only after its handler made it durable."""

    def __init__(
        self,
        client: RocketClient,
        group: str,
        handlers: Mapping[str, Handler],
        config: RocketConsumerConfig,
        tracer: trace.Tracer,
        reasons: FailureReasons | None = None,
    ) -> None:
        super().__init__(f"rocketmq:{group}")
        self._tracer = tracer
        self._client = client
        self.group = group
        self._handlers = dict(handlers)
        self._config = config
        self._reasons = reasons
        self._consumer: SimpleConsumer | None = None
        self._held: dict[str, _Held] = {}

    async def open(self) -> None:
        """Connect the SimpleConsumer (``start`` also runs the loop; tests poll instead)."""
        if self._consumer is None:
            self._consumer = await self._client.consumer(self.group, list(self._handlers), self._config.await_seconds)

    async def start(self) -> None:
        await self.open()
        await super().start()

    async def stopped(self) -> None:
        if self._consumer is not None:
            await self._client.blocking(self._consumer.shutdown)

    async def run(self) -> None:
        backoff, failures = 1.0, 0
        while self.running:
            try:
                await self.open()
                await self.poll()
                backoff, failures = 1.0, 0
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - a consume loop must survive; logged, backs off
                log.warning("rocketmq consumer %s: %s; retrying in %.0fs", self.group, error, backoff)
                self._held.clear()  # their receipts may be stale: they come back by redelivery
                failures += 1
                if failures % 3 == 0:
                    # A restarted proxy has forgotten this client's settings ("settings is
                    # null") and the client never sends them again: start a fresh one.
                    await self._discard_consumer()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _discard_consumer(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                await self._client.blocking(consumer.shutdown)
            except Exception as error:  # noqa: BLE001 - it is being replaced; nothing to save
                log.info("rocketmq consumer %s: shutdown of the old client: %s", self.group, error)

    async def poll(self) -> int:
        """Receive one batch, hand it (with the held messages now due) to the
        handlers, settle every message. Returns how many were handled."""
        assert self._consumer is not None
        await self._renew([h.rocket for h in self._held.values() if h.renew_at <= self._now()])
        future = await self._client.blocking(
            self._consumer.receive_async, self._config.batch_size, self._config.invisible_seconds
        )
        received: list[RocketMessage] = await asyncio.wrap_future(future)
        now = self._now()
        due = [h for h in self._held.values() if h.due <= now]
        if not received and not due:
            return 0
        by_topic: dict[str, list[tuple[RocketMessage, Message]]] = {}
        for rocket in received:
            by_topic.setdefault(str(rocket.topic), []).append((rocket, _from_rocket(rocket)))
        # Held ones are older than anything received: first in their topic's batch, in
        # their own order; their topic after the received ones (an OrderPlaced just
        # received is inserted before the status events that waited for it).
        held_by_topic: dict[str, list[tuple[RocketMessage, Message]]] = {}
        for held in sorted(due, key=lambda h: h.since):
            held_by_topic.setdefault(held.message.stream, []).append((held.rocket, held.message))
        for topic, pairs in held_by_topic.items():
            by_topic[topic] = pairs + by_topic.get(topic, [])
        settled: list[tuple[RocketMessage, Message, BatchOutcome]] = []
        for topic, pairs in by_topic.items():
            outcome = await self._handle(topic, [message for _, message in pairs], [r for r, _ in pairs])
            settled += [(rocket, message, outcome) for rocket, message in pairs]
        await self._settle(settled)
        return len(settled)

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def _handle(self, topic: str, batch: list[Message], received: list[RocketMessage]) -> BatchOutcome:
        handler = self._handlers.get(topic)
        if handler is None:  # the proxy delivered a topic nobody here handles: leave it to expire
            raise RuntimeError(f"no handler for topic {topic!r} in group {self.group!r}")
        links = [link for r in received if (link := span_link(r.properties)) is not None]
        with self._tracer.start_as_current_span(
            f"consume {topic}",
            kind=trace.SpanKind.CONSUMER,
            links=links,
            attributes={"messaging.system": "rocketmq", "messaging.batch.message_count": len(batch)},
        ):
            return await self._handle_until_done(handler, batch, received)

    async def _handle_until_done(
        self, handler: Handler, batch: list[Message], received: list[RocketMessage]
    ) -> BatchOutcome:
        """A handler that raises hit an outage (SQL down), not a bad message: hold
        the batch and retry, keeping it invisible, so the outage spends no
        delivery attempts. On stop, the batch goes back to the broker."""
        backoff = 1.0
        while True:
            try:
                return await handler(batch)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if not self.running:
                    raise
                log.warning("rocketmq %s: handler failed (%s); holding %d messages", self.group, error, len(batch))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                await self._renew(received)

    async def _renew(self, received: list[RocketMessage]) -> None:
        assert self._consumer is not None
        if not received:
            return
        consumer, seconds = self._consumer, self._config.invisible_seconds
        renewed = {str(r.message_id) for r in received}
        for held in self._held.values():
            if held.message.id in renewed:
                held.renew_at = self._now() + seconds / 2
        await asyncio.gather(*(self._client.blocking(consumer.change_invisible_duration, r, seconds) for r in received))

    async def _settle(self, settled: list[tuple[RocketMessage, Message, BatchOutcome]]) -> None:
        assert self._consumer is not None
        consumer, group, now = self._consumer, self.group, self._now()
        acks: list[RocketMessage] = []
        retries: list[tuple[RocketMessage, int]] = []
        recovered: list[str] = []
        for rocket, message, outcome in settled:
            held = self._held.pop(message.id, None)
            reason = outcome.failed.get(message.id)
            waiting = outcome.deferred.get(message.id)
            if waiting is not None:
                since = held.since if held else now
                if now - since < self._config.max_hold_seconds:
                    # Not handled *yet* (a status event before its order): held here and
                    # retried soon, invisible meanwhile, so waiting spends no delivery attempts.
                    tries = held.tries + 1 if held else 0
                    renew_at = held.renew_at if held else now + self._config.invisible_seconds / 2
                    due = now + min(self._config.hold_retry_seconds * 2**tries, 5.0)
                    self._held[message.id] = _Held(rocket, message, since, due, renew_at, tries)
                    continue
                reason = f"deferred too long: {waiting}"
            if reason is None:
                acks.append(rocket)
                if message.attempt > 1:
                    recovered.append(message.id)
                continue
            # Not acknowledged: visible again after a backoff; RocketMQ counts the
            # delivery and moves the message to %DLQ% after the group's maximum.
            if self._reasons is not None:
                await self._reasons.note(group, message.id, reason)
            log.warning("rocketmq %s: %s failed (attempt %d): %s", group, message.id, message.attempt, reason)
            backoff = self._config.retry_backoff_seconds * 2 ** (message.attempt - 1)
            retries.append((rocket, max(1, min(backoff, self._config.retry_backoff_max_seconds))))

        # Invisibility changes are the client's blocking call, a few at a time in the
        # executor (its change_invisible_duration_async returns nothing to wait on).
        await asyncio.gather(
            self._ack_all(acks),
            *(self._client.blocking(consumer.change_invisible_duration, r, sec) for r, sec in retries),
        )
        if recovered and self._reasons is not None:
            await self._reasons.forget(group, recovered)

    async def _ack_all(self, received: list[RocketMessage]) -> None:
        """One AckMessage call per topic and proxy for the whole batch. The client
        acks one message per call (its ack_async returns nothing to wait on, and its
        private variant needs an asyncio loop in the calling thread); the protocol
        takes many entries per call, each answered on its own."""
        assert self._consumer is not None
        consumer = self._consumer
        requests: dict[tuple[str, int], tuple[Any, AckMessageRequest]] = {}
        for rocket in received:
            key = (str(rocket.topic), id(rocket.endpoints))
            if key not in requests:
                request = AckMessageRequest()
                request.group.name = self.group
                request.topic.name = str(rocket.topic)
                requests[key] = (rocket.endpoints, request)
            requests[key][1].entries.append(
                AckMessageEntry(message_id=rocket.message_id, receipt_handle=rocket.receipt_handle)
            )

        def submit() -> list[Future[Any]]:
            timeout = consumer.client_configuration.request_timeout
            return [
                consumer.rpc_client.ack_message_async(endpoints, request, metadata=consumer.sign(), timeout=timeout)
                for endpoints, request in requests.values()
            ]

        for reply in await asyncio.gather(*(asyncio.wrap_future(f) for f in await self._client.blocking(submit))):
            MessagingResultChecker.check(reply.status)
            # A message whose ack failed comes back after its invisible time; the
            # handlers are idempotent, so it is only a repeat.
            for entry in reply.entries:
                if entry.status.code != Code.OK:
                    log.warning("rocketmq %s: ack of %s failed: %s", self.group, entry.message_id, entry.status.message)


@dataclass
class _Held:
    """A deferred message kept in hand (invisible to others) until it can be handled."""

    rocket: RocketMessage
    message: Message
    since: float  # loop time of the first deferral
    due: float  # loop time of the next try
    renew_at: float  # loop time to extend its invisibility again
    tries: int


def _from_rocket(rocket: RocketMessage) -> Message:
    return Message(
        id=str(rocket.message_id),
        stream=str(rocket.topic),
        type=str(rocket.tag or rocket.properties.get("event_type", "")),
        order_id=str(rocket.properties.get("order_id", "")),
        payload=bytes(rocket.body),
        attempt=int(rocket.delivery_attempt or 1),
        headers={str(k): str(v) for k, v in rocket.properties.items()},
    )
