"""The RocketMQ transport against a real broker: forward Redis -> RocketMQ, consume in batches."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as redis
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import MetaData

from mesh.bus import BatchOutcome, Message, encode_fields
from mesh.bus.dead_letters import SqlDeadLetters, dead_letters_table
from mesh.bus.redis_streams import ConsumerConfig, RedisPublisher, StreamConsumer
from mesh.bus.rocketmq import Forwarder, MissingTopic, RocketClient, RocketConsumer, RocketConsumerConfig
from mesh.db import create_engine, create_schema
from mesh.local.procs import RedisServer
from mesh.local.rocketmq import RocketMQServer
from mesh.telemetry import inject_context
from ordermesh.events.v1 import events_pb2
from tests.support import eventually

pytestmark = [pytest.mark.rocketmq, pytest.mark.timeout(300)]
TOPIC, GROUP = "ordermesh-test-events", "ordermesh-test-consumers"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RocketMQServer]:
    server = RocketMQServer(tmp_path_factory.mktemp("rocketmq"), {TOPIC: "NORMAL"}, {GROUP: 3})
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
async def rocket(broker: RocketMQServer) -> AsyncIterator[RocketClient]:
    client = RocketClient(broker.grpc_endpoint)
    yield client
    await client.close()


async def test_a_missing_topic_refuses_to_start_naming_it(rocket: RocketClient) -> None:
    with pytest.raises(MissingTopic, match="no-such-topic"):
        await rocket.producer(["no-such-topic"])


async def test_forwarded_events_arrive_once_each_with_trace_links(
    rocket: RocketClient, redis_server: RedisServer, tmp_path: Path
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    client = redis.Redis.from_url(redis_server.url)
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'dead.db'}")
    metadata = MetaData()
    dead = SqlDeadLetters(engine, dead_letters_table(metadata))
    await create_schema(engine, metadata)
    stream = f"outbox:{uuid.uuid4().hex[:8]}"
    order_ids = [f"o-{n}" for n in range(20)]
    for order_id in order_ids:
        with tracer.start_as_current_span(f"produce {order_id}"):
            envelope = events_pb2.Envelope(
                event_id=uuid.uuid4().hex,
                order_id=order_id,
                trace_context=inject_context(),
                payment_declined=events_pb2.PaymentDeclined(reason="x"),
            )
        await RedisPublisher(client).publish(stream, encode_fields(envelope))

    producer = await rocket.producer([TOPIC])
    forwarder = StreamConsumer(
        client, stream, "forwarder", Forwarder(rocket, producer, TOPIC), dead, tracer=tracer,
        config=ConsumerConfig(batch_size=8, block_ms=10),
    )  # fmt: skip
    assert await forwarder.run_until_idle() == 20

    seen: list[str] = []

    async def record(batch: list[Message]) -> BatchOutcome:
        seen.extend(m.order_id for m in batch if m.type == "PaymentDeclined")
        return BatchOutcome()

    consumer = RocketConsumer(
        rocket, GROUP, {TOPIC: record}, RocketConsumerConfig(batch_size=16, await_seconds=5), tracer
    )
    await consumer.open()
    try:

        async def all_arrived() -> bool:
            await consumer.poll()
            return len(seen) >= 20

        await eventually(all_arrived, within=60, what="every forwarded event to arrive")
    finally:
        await consumer.stopped()
        await rocket.blocking(producer.shutdown)
        await client.aclose()
        await engine.dispose()
    assert sorted(seen) == sorted(order_ids)
    producers = {s.context.span_id for s in exporter.get_finished_spans() if s.name.startswith("produce")}
    linked = {
        link.context.span_id
        for s in exporter.get_finished_spans()
        if s.kind == SpanKind.CONSUMER and s.name == f"consume {TOPIC}"
        for link in s.links
    }
    assert linked == producers, "each consumer batch span links to every producer span"
