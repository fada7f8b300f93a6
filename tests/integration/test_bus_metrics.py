"""The bus metrics on the embedded transport (real Redis), built the way a
process builds them (EventTransport with the process's registry): dead letters
by source and reason class, batch sizes and consumer lag by group."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
import redis.asyncio as redis
from opentelemetry.trace import NoOpTracer
from prometheus_client import CollectorRegistry

from mesh.bus import BatchOutcome, Message, encode_fields
from mesh.bus.memory import MemoryDeadLetters
from mesh.bus.redis_streams import ConsumerConfig, StreamConsumer
from mesh.bus.transport import ConsumerLag, EventTransport, Route
from mesh.local.procs import RedisServer
from mesh.settings import ServiceSettings
from ordermesh.events.v1 import events_pb2

POISON = b"\xff\xfe\xfd not an envelope"


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_server.url)
    yield connection
    await connection.aclose()


def envelope(order_id: str) -> dict[str, str | bytes]:
    return encode_fields(
        events_pb2.Envelope(
            event_id=uuid.uuid4().hex, order_id=order_id, order_cancelled=events_pb2.OrderCancelled(reason="test")
        )
    )


async def handler(batch: list[Message]) -> BatchOutcome:
    """Fails what it cannot read and order "bad" (always); defers order "later"."""
    outcome = BatchOutcome()
    for message in batch:
        try:
            message.envelope()
        except Exception:  # noqa: BLE001 - any parse failure
            outcome.fail(message, "undecodable envelope")
            continue
        if message.order_id == "bad":
            outcome.fail(message, "the handler refuses it")
        elif message.order_id == "later":
            outcome.defer(message, "its order is not there yet")
    return outcome


async def test_dead_letters_batch_sizes_and_lag_are_counted_by_bounded_labels(client: redis.Redis) -> None:
    stream, group = f"t{uuid.uuid4().hex[:8]}:events", "workers"
    registry = CollectorRegistry()
    config = ConsumerConfig(max_attempts=2, max_defer_seconds=30)
    transport = EventTransport(ServiceSettings(), client, MemoryDeadLetters(), NoOpTracer(), consumer_config=config,
                               registry=registry)  # fmt: skip
    consumer, lag = await transport.consumers([Route(stream, group, handler)])
    assert isinstance(consumer, StreamConsumer) and isinstance(lag, ConsumerLag)
    await consumer.ensure_group()

    # Entries a minute old (ids are times): the lag is their age, and "later"
    # has waited past the longest deferral (30 s) as soon as it is deferred.
    minute_ago = int(time.time() * 1000) - 60_000
    fields: list[dict[str, Any]] = [
        envelope("good"),
        {"type": "OrderCancelled", "order_id": "poison", "event": POISON},
        envelope("bad"),
        envelope("later"),
        envelope("good-too"),
    ]
    for seq, entry in enumerate(fields):
        await client.xadd(stream, cast(Any, entry), id=f"{minute_ago}-{seq}")

    def sample(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    await lag.measure()
    assert 59 < sample("ordermesh_consumer_lag_seconds", group=group) < 90

    assert await consumer.run_until_idle() > 0
    # The first batch had all five; the second the two failed ones again, which then ran out of attempts.
    assert sample("ordermesh_consumer_batch_size_count", group=group) == 2
    assert sample("ordermesh_consumer_batch_size_sum", group=group) == 7
    assert sample("ordermesh_dead_letters_total", source=stream, reason="decode") == 1
    assert sample("ordermesh_dead_letters_total", source=stream, reason="retries_exhausted") == 1
    assert sample("ordermesh_dead_letters_total", source=stream, reason="deferred_too_long") == 1
    dead: Any = await client.xrange(f"{stream}:dead")
    assert len(dead) == 3

    await lag.measure()
    assert sample("ordermesh_consumer_lag_seconds", group=group) == 0.0, "caught up: everything acknowledged"
    exposed = {m.name for m in registry.collect()}
    assert {"ordermesh_consumer_lag_seconds", "ordermesh_consumer_batch_size", "ordermesh_dead_letters"} <= exposed


async def test_lag_is_the_oldest_unacknowledged_entry_over_the_groups_streams(client: redis.Redis) -> None:
    first, second, group = f"t{uuid.uuid4().hex[:8]}:a", f"t{uuid.uuid4().hex[:8]}:b", "g"
    registry = CollectorRegistry()
    transport = EventTransport(ServiceSettings(), client, MemoryDeadLetters(), NoOpTracer(), registry=registry)
    workers = await transport.consumers([Route(first, group, handler), Route(second, group, handler)])
    lag = workers[-1]
    assert isinstance(lag, ConsumerLag)
    for worker in workers[:-1]:
        assert isinstance(worker, StreamConsumer)
        await worker.ensure_group()
    now_ms = int(time.time() * 1000)
    await client.xadd(first, cast(Any, envelope("good")), id=f"{now_ms - 10_000}-0")
    await client.xadd(second, cast(Any, envelope("good")), id=f"{now_ms - 120_000}-0")
    await lag.measure()
    assert 119 < (registry.get_sample_value("ordermesh_consumer_lag_seconds", {"group": group}) or 0) < 150
