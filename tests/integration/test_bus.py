"""The embedded event bus on a real Redis, dead letters in real SQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import MetaData

from mesh.bus import BatchOutcome, Message, encode_fields
from mesh.bus.dead_letters import SqlDeadLetters, dead_letters_table, replay
from mesh.bus.redis_streams import ConsumerConfig, RedisPublisher, StreamConsumer, trim_acknowledged
from mesh.clock import Clock, utc_now
from mesh.db import create_engine, create_schema
from mesh.local.procs import RedisServer
from mesh.telemetry import inject_context
from ordermesh.events.v1 import events_pb2
from tests.support import eventually

FAST = ConsumerConfig(batch_size=10, block_ms=20, max_attempts=3, retry_backoff_seconds=0.01, claim_idle_ms=50)


@dataclass
class Recorder:
    """A handler that remembers what it saw and fails what it is told to."""

    seen: list[str] = field(default_factory=list)
    poison: set[str] = field(default_factory=set)
    delay: float = 0.0

    async def __call__(self, batch: list[Message]) -> BatchOutcome:
        outcome = BatchOutcome()
        if self.delay:
            await asyncio.sleep(self.delay)
        for message in batch:
            if message.order_id in self.poison:
                outcome.fail(message, f"cannot handle {message.order_id}")
            else:
                self.seen.append(message.order_id)
        return outcome


@dataclass
class Bus:
    client: redis.Redis
    stream: str
    publisher: RedisPublisher
    dead: SqlDeadLetters
    provider: TracerProvider
    exporter: InMemorySpanExporter

    def consumer(
        self,
        handler: Any,
        name: str = "c1",
        group: str = "g",
        config: ConsumerConfig = FAST,
        clock: Clock = utc_now,
    ) -> StreamConsumer:
        return StreamConsumer(
            self.client, self.stream, group, handler, self.dead,
            tracer=self.provider.get_tracer("test"), config=config, consumer=name, clock=clock,
        )  # fmt: skip

    async def publish(self, order_id: str) -> str:
        with self.provider.get_tracer("test").start_as_current_span(f"produce {order_id}"):
            envelope = events_pb2.Envelope(
                event_id=uuid.uuid4().hex,
                order_id=order_id,
                trace_context=inject_context(),
                payment_declined=events_pb2.PaymentDeclined(reason="x"),
            )
        return await self.publisher.publish(self.stream, encode_fields(envelope))


@pytest.fixture
async def bus(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[Bus]:
    client = redis.Redis.from_url(redis_server.url)
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'dead.db'}")
    metadata = MetaData()
    table = dead_letters_table(metadata)
    await create_schema(engine, metadata)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield Bus(
        client,
        f"test:{uuid.uuid4().hex[:8]}",
        RedisPublisher(client),
        SqlDeadLetters(engine, table),
        provider,
        exporter,
    )
    await client.aclose()
    await engine.dispose()


async def pending_count(bus: Bus, group: str = "g") -> int:
    summary: Any = await bus.client.xpending(bus.stream, group)
    return int(summary["pending"])


async def test_batches_are_handled_and_acknowledged(bus: Bus) -> None:
    for n in range(25):
        await bus.publish(f"o-{n}")
    recorder = Recorder()
    assert await bus.consumer(recorder).run_until_idle() == 25
    assert recorder.seen == [f"o-{n}" for n in range(25)]
    assert await pending_count(bus) == 0


async def test_poison_message_is_retried_then_dead_lettered_and_replayed(bus: Bus) -> None:
    for order_id in ["a", "poison", "b"]:
        await bus.publish(order_id)
    recorder = Recorder(poison={"poison"})
    consumer = bus.consumer(recorder)
    await consumer.run_until_idle()
    assert recorder.seen == ["a", "b"], "the others keep flowing"
    assert await pending_count(bus) == 0
    [letter] = await bus.dead.pending()
    assert (letter.order_id, letter.type, letter.attempts) == ("poison", "PaymentDeclined", FAST.max_attempts)
    assert letter.reason == "cannot handle poison"
    dead_stream: Any = await bus.client.xrange(f"{bus.stream}:dead")
    assert len(dead_stream) == 1

    recorder.poison.clear()  # the cause is fixed
    assert await replay(bus.dead, bus.publisher, utc_now()) == 1
    await consumer.run_until_idle()
    assert recorder.seen == ["a", "b", "poison"]
    assert await bus.dead.pending() == []


async def test_a_failing_dependency_is_retried_without_spending_attempts(bus: Bus) -> None:
    await bus.publish("o-1")
    calls = 0

    async def flaky(batch: list[Message]) -> BatchOutcome:
        nonlocal calls
        calls += 1
        if calls <= FAST.max_attempts + 2:
            raise ConnectionError("database is down")
        return BatchOutcome()

    consumer = bus.consumer(flaky)
    await consumer.ensure_group()
    await consumer.start()
    try:

        async def handled() -> bool:
            return calls > FAST.max_attempts + 2 and await pending_count(bus) == 0

        await eventually(handled, within=10, what="the batch to succeed once the dependency is back")
    finally:
        await consumer.stop()
    assert calls == FAST.max_attempts + 3
    assert await bus.dead.pending() == [], "an outage must not dead-letter messages"


async def test_messages_of_a_dead_consumer_are_claimed(bus: Bus) -> None:
    for n in range(3):
        await bus.publish(f"o-{n}")
    dead = bus.consumer(Recorder(), name="dead")
    await dead.ensure_group()
    await bus.client.xreadgroup("g", "dead", {bus.stream: ">"}, count=10)  # read, then "crash"
    await asyncio.sleep(0.1)  # past claim_idle_ms
    recorder = Recorder()
    survivor = bus.consumer(recorder, name="survivor")
    assert await survivor.claim_stale() == 3
    await survivor.run_until_idle()
    assert recorder.seen == ["o-0", "o-1", "o-2"]
    assert await pending_count(bus) == 0


async def test_stop_finishes_the_batch_in_hand(bus: Bus) -> None:
    await bus.publish("slow")
    recorder = Recorder(delay=0.3)
    consumer = bus.consumer(recorder)
    await consumer.ensure_group()
    await consumer.start()

    async def in_hand() -> bool:
        return await pending_count(bus) == 1

    await eventually(in_hand, within=5, what="the consumer to take the message")
    await consumer.stop(grace=5)
    assert recorder.seen == ["slow"]
    assert await pending_count(bus) == 0


async def test_trim_keeps_what_a_lagging_group_still_needs(bus: Bus) -> None:
    for n in range(5):
        await bus.publish(f"o-{n}")
    fast, slow = bus.consumer(Recorder(), group="fast"), bus.consumer(Recorder(), group="slow")
    await fast.run_until_idle()
    await slow.ensure_group()
    await trim_acknowledged(bus.client, bus.stream)
    assert await bus.client.xlen(bus.stream) == 5, "the slow group has read nothing yet"
    await slow.run_until_idle()
    await trim_acknowledged(bus.client, bus.stream)
    assert await bus.client.xlen(bus.stream) == 0


async def test_batch_span_links_to_every_producer_span(bus: Bus) -> None:
    for n in range(3):
        await bus.publish(f"o-{n}")
    await bus.consumer(Recorder()).run_until_idle()
    spans = bus.exporter.get_finished_spans()
    producers = {s.context.span_id for s in spans if s.name.startswith("produce")}
    [batch] = [s for s in spans if s.kind == SpanKind.CONSUMER and s.name.startswith("consume")]
    assert {link.context.span_id for link in batch.links} == producers
    # And each message is processed in its producer's own trace, linked back to the batch.
    processed = [s for s in spans if s.name.startswith("process")]
    assert {s.parent.span_id for s in processed if s.parent} == producers
    assert all([link.context.span_id for link in s.links] == [batch.context.span_id] for s in processed)


@dataclass
class Waiting:
    """A handler that defers messages of orders that do not exist yet (as the
    order context does with a status event before its OrderPlaced)."""

    ready: set[str] = field(default_factory=set)
    seen: list[str] = field(default_factory=list)

    async def __call__(self, batch: list[Message]) -> BatchOutcome:
        outcome = BatchOutcome()
        for message in batch:
            if message.order_id in self.ready:
                self.seen.append(message.order_id)
            else:
                outcome.defer(message, f"order {message.order_id} not there yet")
        return outcome


async def test_a_head_of_waiting_messages_does_not_hide_the_pending_ones_behind_it(bus: Bus) -> None:
    """300 deferred messages pending at once (30 batches): the first 10 wait for
    ever; the other 290 become ready and are all handled, no attempt spent."""
    handler = Waiting()
    consumer = bus.consumer(handler)
    ids = [f"d-{n:03d}" for n in range(300)]
    for order_id in ids:
        await bus.publish(order_id)
    await consumer.ensure_group()
    for _ in range(30):  # every message delivered once and deferred: all 300 pending
        await consumer.poll(block_ms=None)
    pending: Any = await bus.client.xpending(bus.stream, "g")
    assert pending["pending"] == 300 and handler.seen == []
    handler.ready = set(ids[10:])
    await consumer.run_until_idle()
    assert sorted(handler.seen) == ids[10:]
    pending = await bus.client.xpending(bus.stream, "g")
    assert pending["pending"] == 10, "the ten still waiting stay pending, not dead-lettered"
    assert await bus.client.hlen(f"bus:attempts:{bus.stream}:g") == 0, "waiting spends no attempt"


async def test_a_consumer_remakes_its_group_when_redis_lost_its_data(bus: Bus) -> None:
    """Redis restarted empty (here: the stream and its group deleted under a running
    consumer): the consumer answers NOGROUP, makes the group again and consumes
    what is published from then on, without a restart."""
    recorder = Recorder()
    consumer = bus.consumer(recorder)
    await consumer.start()
    try:
        await bus.publish("before")

        async def seen(order_id: str) -> bool:
            return order_id in recorder.seen

        await eventually(lambda: seen("before"), within=5, what="the first message")
        await bus.client.delete(bus.stream)  # the data is gone, group and all
        await bus.publish("after")
        await eventually(lambda: seen("after"), within=10, what="a message published after the loss")
    finally:
        await consumer.stop(grace=2)


@dataclass
class DependencyDown:
    """A handler whose dependency is down: it defers everything, ``patient`` or not."""

    patient: bool

    async def __call__(self, batch: list[Message]) -> BatchOutcome:
        outcome = BatchOutcome()
        for message in batch:
            outcome.defer(message, "payment is unavailable", until_it_can=self.patient)
        return outcome


@pytest.mark.parametrize("patient", [True, False], ids=["outage", "not-yet"])
async def test_a_message_waiting_for_a_dependency_is_never_dead_lettered_for_the_wait(bus: Bus, patient: bool) -> None:
    """A deferral for data (an event before its order) ends in the dead letters
    after ``max_defer_seconds``; one for an outage waits as long as it lasts."""
    await bus.publish("o-wait")
    config = ConsumerConfig(batch_size=10, block_ms=20, max_attempts=3, max_defer_seconds=0.05)
    later = utc_now() + timedelta(seconds=1)  # longer than max_defer_seconds after the publish
    waiting = bus.consumer(DependencyDown(patient), config=config)
    await waiting.run_until_idle()
    await bus.consumer(DependencyDown(patient), config=config, clock=lambda: later).run_until_idle()
    letters = await bus.dead.pending()
    if patient:
        assert letters == [] and await pending_count(bus) == 1, "still waiting"
        assert await bus.client.hlen(f"bus:attempts:{bus.stream}:g") == 0, "no attempt spent"
    else:
        assert [letter.order_id for letter in letters] == ["o-wait"] and "deferred too long" in letters[0].reason


@dataclass
class Batches(Recorder):
    sizes: list[int] = field(default_factory=list)

    async def __call__(self, batch: list[Message]) -> BatchOutcome:
        self.sizes.append(len(batch))
        return await super().__call__(batch)


@pytest.mark.parametrize("linger_ms", [0, 300])
async def test_a_lingering_consumer_gathers_a_trickle_into_fuller_batches(bus: Bus, linger_ms: int) -> None:
    """A trickle (one message every 20 ms) is one batch per message without
    linger; with 300 ms of linger after a short batch, the ones that arrived
    meanwhile come together: fewer, fuller batches, every message once."""
    recorder = Batches()
    consumer = bus.consumer(recorder, config=replace(FAST, batch_size=100, linger_ms=linger_ms))
    await consumer.ensure_group()
    await consumer.start()
    try:
        for n in range(30):
            await bus.publish(f"t-{n}")
            await asyncio.sleep(0.02)

        async def all_seen() -> bool:
            return len(recorder.seen) == 30

        await eventually(all_seen, within=10, what="every message handled")
    finally:
        await consumer.stop(grace=5)
    assert recorder.seen == [f"t-{n}" for n in range(30)]
    assert await pending_count(bus) == 0
    if linger_ms:
        assert len(recorder.sizes) <= 8, recorder.sizes  # 600 ms of trickle or more: a batch per 300 ms
    else:
        assert len(recorder.sizes) >= 12, recorder.sizes  # the reads keep up: mostly one message each
