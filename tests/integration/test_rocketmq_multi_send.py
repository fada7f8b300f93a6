"""Multi-message SendMessage calls against a real RocketMQ 5.5 broker: the forwarder
puts several events in one call, the proxy answers one receipt for all of them
(apache/rocketmq#11049), and each event still arrives once, as its own message
(its own id, key, tag and trace context: apache/rocketmq#9416 is fixed in 5.5.0).
A call the broker refuses whole falls back to one message per call.

The broker's maxMessageSize is lowered to 64 KiB, which bounds a call of several
messages as a whole: small events go in calls of 32, 9 KiB ones cannot.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry
from sqlalchemy import MetaData

from mesh.bus import decode_envelope, encode_fields
from mesh.bus.dead_letters import SqlDeadLetters, dead_letters_table
from mesh.bus.metrics import BusMetrics
from mesh.bus.redis_streams import ConsumerConfig, RedisPublisher, StreamConsumer
from mesh.bus.rocketmq import Forwarder, RocketClient
from mesh.db import create_engine, create_schema
from mesh.local.procs import RedisServer
from mesh.local.rocketmq import RocketMQServer
from mesh.telemetry import inject_context
from ordermesh.events.v1 import events_pb2

pytestmark = [pytest.mark.rocketmq, pytest.mark.timeout(300)]
SMALL, LARGE = "ordermesh-test-multi", "ordermesh-test-fallback"
GROUPS = {f"{topic}-readers": topic for topic in (SMALL, LARGE)}
EVENTS, PER_CALL = 200, 32
MAX_MESSAGE_BYTES = 64 * 1024
PAD = "x" * 9000  # one such event fits under MAX_MESSAGE_BYTES, 8 together do not


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RocketMQServer]:
    server = RocketMQServer(
        tmp_path_factory.mktemp("rocketmq"),
        {SMALL: "NORMAL", LARGE: "NORMAL"},
        dict.fromkeys(GROUPS, 3),
        broker_settings={"maxMessageSize": MAX_MESSAGE_BYTES},
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()


@dataclass(frozen=True)
class Sent:
    order_id: str
    type: str
    traceparent: str


@dataclass
class Relay:
    rocket: RocketClient
    client: redis.Redis
    dead: SqlDeadLetters
    registry: CollectorRegistry

    async def forward(self, topic: str, pad: str = "") -> dict[str, Sent]:
        """EVENTS events (each ``pad`` larger) through a Redis stream and one Forwarder
        (PER_CALL per call) to ``topic``; what was sent, by event id."""
        tracer = TracerProvider().get_tracer("test")
        stream = f"outbox:{uuid.uuid4().hex[:8]}"
        sent: dict[str, Sent] = {}
        for n in range(EVENTS):
            order_id = f"o-{n}-{uuid.uuid4().hex[:6]}"
            with tracer.start_as_current_span(f"produce {order_id}"):
                context = inject_context()
            envelope = events_pb2.Envelope(event_id=uuid.uuid4().hex, order_id=order_id, trace_context=context)
            if n % 2:  # two event types, so two tags
                envelope.payment_captured.transaction_id = f"tx-{n}{pad}"
            else:
                envelope.payment_declined.reason = f"declined{pad}"
            fields = encode_fields(envelope)
            await RedisPublisher(self.client).publish(stream, fields)
            sent[envelope.event_id] = Sent(order_id, str(fields["type"]), envelope.trace_context["traceparent"])
        producer = await self.rocket.producer([topic])
        metrics = BusMetrics.of(self.registry)
        forwarder = Forwarder(
            self.rocket,
            producer,
            topic,
            per_call=PER_CALL,
            relayed=metrics.relayed.labels(topic),
            calls=metrics.send_calls.labels(topic),
            fallbacks=metrics.fallbacks.labels(topic),
        )
        consumer = StreamConsumer(
            self.client, stream, "forwarder", forwarder, self.dead, tracer=tracer,
            config=ConsumerConfig(batch_size=EVENTS, block_ms=10),
        )  # fmt: skip
        try:
            assert await consumer.run_until_idle() == EVENTS
        finally:
            await self.rocket.blocking(producer.shutdown)
        return sent

    def counted(self, name: str, topic: str) -> float:
        return self.registry.get_sample_value(f"ordermesh_forwarder_{name}_total", {"stream": topic}) or 0.0

    async def receive_all(self, topic: str, expected: int) -> list[Any]:
        """Every message on ``topic`` as the SDK receives it (acknowledged), until
        ``expected`` arrived and one more receive finds nothing new."""
        group = next(g for g, t in GROUPS.items() if t == topic)
        consumer = await self.rocket.consumer(group, [topic], 2)
        received: list[Any] = []
        try:
            for _ in range(60):
                future = await self.rocket.blocking(consumer.receive_async, 32, 30)
                batch = await asyncio.wrap_future(future)
                await asyncio.gather(*(self.rocket.blocking(consumer.ack, message) for message in batch))
                received += batch
                if len(received) >= expected and not batch:
                    break  # everything arrived, and a receive after it found no repeat
        finally:
            await self.rocket.blocking(consumer.shutdown)
        return received


@pytest.fixture
async def relay(broker: RocketMQServer, redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[Relay]:
    rocket = RocketClient(broker.grpc_endpoint)
    client = redis.Redis.from_url(redis_server.url)
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'dead.db'}")
    metadata = MetaData()
    dead = SqlDeadLetters(engine, dead_letters_table(metadata))
    await create_schema(engine, metadata)
    yield Relay(rocket, client, dead, CollectorRegistry())
    await rocket.close()
    await client.aclose()
    await engine.dispose()


def assert_each_arrived_once_as_sent(received: list[Any], sent: dict[str, Sent]) -> None:
    by_event = {decode_envelope(bytes(message.body)).event_id: message for message in received}
    counts = Counter(decode_envelope(bytes(message.body)).event_id for message in received)
    assert counts == Counter(sent.keys()), "every event exactly once"
    assert len({str(m.message_id) for m in received}) == EVENTS, "each message its own id"
    for event_id, expected in sent.items():
        message = by_event[event_id]
        got = (set(message.keys), message.tag, message.properties.get("traceparent"), message.properties["order_id"])
        assert got == ({expected.order_id}, expected.type, expected.traceparent, expected.order_id), event_id
    assert len({s.traceparent for s in sent.values()}) == EVENTS  # so the comparison above tells them apart


async def test_several_events_per_call_arrive_once_each_with_their_own_id_key_tag_and_trace_context(
    relay: Relay,
) -> None:
    sent = await relay.forward(SMALL)
    # One read of 200 entries in calls of 32: 7 calls, each answered by the proxy with one receipt.
    assert relay.counted("send_calls", SMALL) == -(-EVENTS // PER_CALL) < EVENTS
    assert relay.counted("fallback_events", SMALL) == 0
    assert relay.counted("relayed_events", SMALL) == EVENTS
    assert_each_arrived_once_as_sent(await relay.receive_all(SMALL, EVENTS), sent)


async def test_calls_the_broker_refuses_whole_fall_back_to_one_per_call_and_deliver_all(relay: Relay) -> None:
    sent = await relay.forward(LARGE, pad=PAD)
    # Every call of several was refused ("message body size exceeded"): each event again, alone.
    assert relay.counted("fallback_events", LARGE) == EVENTS
    assert relay.counted("send_calls", LARGE) == -(-EVENTS // PER_CALL) + EVENTS
    assert relay.counted("relayed_events", LARGE) == EVENTS
    assert_each_arrived_once_as_sent(await relay.receive_all(LARGE, EVENTS), sent)
