"""The event transport of a process, chosen by ``EVENT_TRANSPORT``.

Producers always append to their Redis stream (the outbox, written in the
same step as the effect). What changes with the transport:

- ``embedded``: consumers read the streams with consumer groups.
- ``rocketmq``: each producing process runs a forwarder per outbox stream
  (stream -> topic), and consumers read the topics with SimpleConsumers, one
  RocketMQ group per bus group; the order context also runs the dead-letter
  consumer that moves ``%DLQ%<group>`` messages into ``dead_letters``.

Handlers are the same on both; only this module knows which one is in use.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

import redis.asyncio as redis
from opentelemetry import trace
from prometheus_client import CollectorRegistry, Gauge
from redis.exceptions import ResponseError
from rocketmq import Producer

from mesh.breaker import Breaker
from mesh.bus.dead_letters import DeadLetterSink, Republisher
from mesh.bus.messages import Handler
from mesh.bus.metrics import BusMetrics
from mesh.bus.redis_streams import ConsumerConfig, RedisPublisher, StreamConsumer, oldest_unacknowledged_ms
from mesh.bus.rocketmq import PERMANENT, Forwarder, RocketClient, RocketConsumer, RocketConsumerConfig
from mesh.bus.rocketmq.dead_letters import DeadLetterIntake, RedisReasons, TopicRepublisher
from mesh.bus.topology import dlq_topic, group_for, topic_for
from mesh.clock import utc_now
from mesh.metrics import BreakerMetrics
from mesh.settings import ConsumerServiceSettings, ServiceSettings
from mesh.worker import LoopWorker, Worker

FORWARDER_GROUP = "forwarder"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Route:
    """Deliver ``stream`` to ``handler`` as consumer group ``group``."""

    stream: str
    group: str
    handler: Handler


def consumer_config(settings: ConsumerServiceSettings) -> ConsumerConfig:
    return ConsumerConfig(
        batch_size=settings.consumer_batch_size,
        linger_ms=settings.consumer_linger_ms,
        max_attempts=settings.consumer_max_attempts,
        claim_idle_ms=settings.consumer_claim_idle_ms,
    )


def stream_consumers(
    client: redis.Redis, routes: list[Route], dead_letters: DeadLetterSink, tracer: trace.Tracer, config: ConsumerConfig
) -> list[StreamConsumer]:
    """The embedded transport's consumers of ``routes`` on their own, for tests
    that drive them (``run_until_idle``) instead of running them as workers."""
    return [
        StreamConsumer(client, r.stream, r.group, r.handler, dead_letters, tracer=tracer, config=config) for r in routes
    ]


def rocket_client(settings: ServiceSettings) -> RocketClient | None:
    """The RocketMQ client a process needs on the rocketmq transport; None on the embedded one."""
    return RocketClient(settings.rocketmq_endpoint) if settings.event_transport == "rocketmq" else None


def forwarder_breaker(settings: ServiceSettings, metrics: BreakerMetrics | None) -> Breaker:
    """The breaker in front of the broker for a process's forwarders: a rejected
    message (PERMANENT) is that message's fault, not the broker's."""
    return Breaker(
        "rocketmq",
        fail_max=settings.breaker_fail_max,
        reset_timeout=settings.breaker_reset_seconds,
        metrics=metrics,
        exclude=PERMANENT,
    )


class EventTransport:
    """Builds a process's consumers and forwarders for the selected transport,
    from what its bootstrap gives it (the clients, the sink, the breaker)."""

    def __init__(
        self,
        settings: ServiceSettings,
        client: redis.Redis,
        dead_letters: DeadLetterSink,
        tracer: trace.Tracer,
        *,
        rocket: RocketClient | None = None,
        breaker: Breaker | None = None,
        consumer_config: ConsumerConfig | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.kind = settings.event_transport
        if self.kind == "rocketmq" and rocket is None:
            raise ValueError("the rocketmq transport needs a RocketClient (rocket_client(settings))")
        self._settings = settings
        self._client = client
        self._dead_letters = dead_letters
        self._tracer = tracer
        self._rocket = rocket
        self._breaker = breaker
        self._config = consumer_config or ConsumerConfig()
        self._registry = registry
        self._metrics = BusMetrics.of(registry) if registry is not None else None
        self._closeables: list[object] = []

    @property
    def rocket(self) -> RocketClient:
        assert self._rocket is not None, "only the rocketmq transport talks to RocketMQ"
        return self._rocket

    async def consumers(self, routes: list[Route], dead_letter_group: str = "dead-letters") -> list[Worker]:
        """The routes' consumers; on RocketMQ also the intake of their groups' DLQs,
        in ``dead_letter_group`` (one per context: see mesh.bus.topology)."""
        if self.kind == "embedded":
            consumers: list[Worker] = [self._stream_consumer(r.stream, r.group, r.handler) for r in routes]
            if self._metrics is not None:
                consumers.append(ConsumerLag(self._client, [(r.stream, r.group) for r in routes], self._metrics))
            return consumers
        by_group: dict[str, dict[str, Handler]] = {}
        for route in routes:
            by_group.setdefault(group_for(route.group), {})[topic_for(route.stream)] = route.handler
        config = RocketConsumerConfig(
            batch_size=self._settings.rocketmq_batch_size,
            invisible_seconds=self._settings.rocketmq_invisible_seconds,
        )
        reasons = RedisReasons(self._client)
        workers: list[Worker] = [
            RocketConsumer(self.rocket, group, handlers, config, self._tracer, reasons, self._metrics)
            for group, handlers in by_group.items()
        ]
        if self._metrics is not None:
            for route in routes:
                self._metrics.source(topic_for(route.stream))  # the intake counts by original topic
        intake = DeadLetterIntake(
            self._dead_letters, reasons, utc_now, self._config.max_attempts, metrics=self._metrics
        )
        dead_letter_topics = {dlq_topic(group): intake for group in by_group}
        workers.append(
            RocketConsumer(
                self.rocket,
                group_for(dead_letter_group),
                dead_letter_topics,
                config,
                self._tracer,
                None,
                self._metrics,
            )
        )
        return workers

    async def forwarders(self, streams: list[str]) -> list[Worker]:
        """One forwarder per outbox stream (none on the embedded transport).

        Raises MissingTopic, naming it, when a topic does not exist."""
        if self.kind == "embedded" or not streams:
            return []
        topics = {stream: topic_for(stream) for stream in streams}
        producer = await self.rocket.producer(list(topics.values()))
        self._closeables.append(producer)
        config = replace(self._config, batch_size=self._settings.forwarder_batch_size)
        return [
            self._stream_consumer(stream, FORWARDER_GROUP, self._forwarder(producer, stream, topic), config)
            for stream, topic in topics.items()
        ] + [ForwarderLag(self._client, list(topics), self._registry)]

    def _forwarder(self, producer: Producer, stream: str, topic: str) -> Forwarder:
        metrics = self._metrics
        return Forwarder(
            self.rocket,
            producer,
            topic,
            breaker=self._breaker,
            per_call=self._settings.forwarder_send_batch,
            tracer=self._tracer,
            relayed=metrics.relayed.labels(stream) if metrics is not None else None,
            calls=metrics.send_calls.labels(stream) if metrics is not None else None,
            fallbacks=metrics.fallbacks.labels(stream) if metrics is not None else None,
        )

    async def republisher(self, streams: RedisPublisher, topics: list[str]) -> Republisher:
        """Where ``replay`` puts dead letters back: a dead letter from a RocketMQ
        consumer names its topic (one of ``topics``), one from a stream consumer its stream."""
        if self.kind == "embedded":
            return streams
        producer = await self.rocket.producer(topics)
        self._closeables.append(producer)
        return StreamOrTopic(streams, TopicRepublisher(self.rocket, producer))

    def _stream_consumer(
        self, stream: str, group: str, handler: Handler, config: ConsumerConfig | None = None
    ) -> StreamConsumer:
        return StreamConsumer(
            self._client,
            stream,
            group,
            handler,
            self._dead_letters,
            tracer=self._tracer,
            config=config or self._config,
            metrics=self._metrics,
        )

    async def close(self) -> None:
        if self._rocket is not None:
            await self._rocket.close(*self._closeables)


class StreamOrTopic:
    """Replays a dead letter to where it came from: a Redis stream, or a RocketMQ topic."""

    def __init__(self, streams: Republisher, topics: Republisher) -> None:
        self._streams = streams
        self._topics = topics

    async def republish(self, stream: str, type_: str, order_id: str, payload: bytes) -> str:
        # Stream names have a ':' (events:order-placed); RocketMQ topic names cannot.
        target = self._streams if ":" in stream else self._topics
        return await target.republish(stream, type_, order_id, payload)


class ForwarderLag(LoopWorker):
    """``ordermesh_forwarder_lag_seconds{stream}``: now minus the entry time of the
    oldest entry the forwarders have not acknowledged; 0 when caught up. It
    grows while the broker is away and falls back once the backlog is sent."""

    def __init__(
        self, client: redis.Redis, streams: list[str], registry: CollectorRegistry | None, interval: float = 1.0
    ) -> None:
        super().__init__("forwarder-lag")
        self._client = client
        self._streams = streams
        self._interval = interval
        self.gauge = Gauge(
            "ordermesh_forwarder_lag_seconds",
            "Age of the oldest stream entry the forwarder has not relayed yet (0 when caught up).",
            ["stream"],
            registry=registry,
        )

    async def run(self) -> None:
        while self.running:
            try:
                await self.measure()
            except Exception as error:  # noqa: BLE001 - a metric must not stop the process; logged
                log.debug("forwarder lag: %s", error)
            await self.pause(self._interval)

    async def measure(self) -> None:
        now_ms = time.time() * 1000
        for stream in self._streams:
            oldest = await oldest_unacknowledged_ms(self._client, stream, FORWARDER_GROUP)
            self.gauge.labels(stream).set(0.0 if oldest is None else max(0.0, (now_ms - oldest) / 1000))


class ConsumerLag(LoopWorker):
    """``ordermesh_consumer_lag_seconds{group}`` on the embedded transport: now minus
    the entry time of the oldest entry the group has not acknowledged (pending
    with some consumer, or not read yet), the oldest over the streams the group
    reads; 0 when it is caught up. Group-wide (every replica reports the same
    value), and it keeps growing while the group's consumers are stuck or gone."""

    def __init__(
        self, client: redis.Redis, subscriptions: list[tuple[str, str]], metrics: BusMetrics, interval: float = 1.0
    ) -> None:
        super().__init__("consumer-lag")
        self._client = client
        self._subscriptions = subscriptions
        self._gauge = metrics.lag
        self._interval = interval
        for _, group in subscriptions:
            self._gauge.labels(group)  # at 0 from the first scrape

    async def run(self) -> None:
        while self.running:
            try:
                await self.measure()
            except Exception as error:  # noqa: BLE001 - a metric must not stop the process; logged
                log.debug("consumer lag: %s", error)
            await self.pause(self._interval)

    async def measure(self) -> None:
        now_ms = time.time() * 1000
        oldest: dict[str, float] = {}
        for stream, group in self._subscriptions:
            try:
                entry_ms = await oldest_unacknowledged_ms(self._client, stream, group)
            except ResponseError:  # the stream is not made yet (its consumer makes it): nothing to measure
                continue
            age = 0.0 if entry_ms is None else max(0.0, (now_ms - entry_ms) / 1000)
            oldest[group] = max(oldest.get(group, 0.0), age)
        for group, age in oldest.items():
            self._gauge.labels(group).set(age)
