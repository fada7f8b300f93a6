"""One contract for every transport: each test body runs on the memory bus, on Redis
Streams (a real redis-server) and on RocketMQ (a real broker, marked ``rocketmq``).

What differs per transport lives in the adapters below (how to publish, how to
build a consumer, how long an outcome may take); the bodies are the same.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis.asyncio as redis
from opentelemetry.trace import NoOpTracer

from mesh.bus import BatchOutcome, Handler, Message, encode_fields
from mesh.bus.memory import MemoryBus, MemoryConsumer, MemoryDeadLetters, MemoryPublisher
from mesh.bus.redis_streams import ConsumerConfig, RedisPublisher, StreamConsumer
from mesh.bus.rocketmq import RocketClient, RocketConsumer, RocketConsumerConfig
from mesh.bus.rocketmq.dead_letters import DeadLetterIntake, RedisReasons, TopicRepublisher
from mesh.bus.topology import dlq_topic
from mesh.clock import utc_now
from mesh.local.procs import RedisServer
from mesh.local.rocketmq import RocketMQServer
from mesh.worker import LoopWorker
from ordermesh.events.v1 import events_pb2
from tests.support import eventually

pytestmark = [pytest.mark.timeout(300)]

# Memory and Redis: fast retries, and a stopped consumer's messages claimed after 0.2 s.
FAST = ConsumerConfig(
    batch_size=10,
    block_ms=20,
    max_attempts=3,
    retry_backoff_seconds=0.05,
    retry_backoff_max_seconds=0.2,
    claim_idle_ms=200,
    claim_every_seconds=0.1,
)
# RocketMQ: a failed message is visible again after 1 s, doubling (plus ~3 s until the broker
# revives it); an unacknowledged one after 4 s, which must outlast the 1 + 2 s a handler that
# raises twice holds its batch. Two attempts, not three, keep this transport's tests near a minute.
ROCKET_ATTEMPTS = 2
ROCKET = RocketConsumerConfig(
    batch_size=16, invisible_seconds=4, await_seconds=1, retry_backoff_seconds=1, hold_retry_seconds=0.2
)
SLOTS = 8  # topic + group sets seeded in the broker: one per RocketMQ test


def envelope(order_id: str) -> events_pb2.Envelope:
    return events_pb2.Envelope(
        event_id=uuid.uuid4().hex, order_id=order_id, payment_declined=events_pb2.PaymentDeclined(reason="x")
    )


# -- the adapters ---------------------------------------------------------------------


class Transport:
    """What a test body may use; each transport fills in publish and consumer."""

    max_attempts = FAST.max_attempts  # a failing message's deliveries, the last one dead-lettered
    within = 10.0  # how long an eventual outcome may take
    redelivery_within = 0.5  # an unacknowledged message would be delivered again within this
    stream = ""  # where messages are published (a dead letter names it for replay)

    def __init__(self) -> None:
        self.dead = MemoryDeadLetters()  # every transport's dead letters end here
        self.workers: list[LoopWorker] = []

    async def publish(self, order_id: str) -> None:
        raise NotImplementedError

    def consumer(self, handler: Handler) -> LoopWorker:
        raise NotImplementedError

    def companions(self) -> list[LoopWorker]:
        """Workers the transport needs beside the consumer (RocketMQ's dead-letter intake)."""
        return []

    async def start(self, handler: Handler) -> LoopWorker:
        worker = self.consumer(handler)
        self.workers.append(worker)
        await worker.start()
        return worker

    @asynccontextmanager
    async def running(self, handler: Handler) -> AsyncIterator[None]:
        workers = [self.consumer(handler), *self.companions()]
        self.workers += workers
        for worker in workers:
            await worker.start()
        try:
            yield
        finally:
            await asyncio.gather(*(worker.stop() for worker in workers))

    async def until(self, check: Callable[[], bool], what: str) -> None:
        async def checked() -> bool:
            return check()

        await eventually(checked, within=self.within, what=what)

    async def close(self) -> None:
        for worker in self.workers:
            if worker.running:
                await worker.stop(grace=1)


class MemoryTransport(Transport):
    redelivery_within = 0.1

    def __init__(self) -> None:
        super().__init__()
        self.bus = MemoryBus(utc_now)
        self.stream = "contract:memory"

    async def publish(self, order_id: str) -> None:
        await MemoryPublisher(self.bus).publish(self.stream, encode_fields(envelope(order_id)))

    def consumer(self, handler: Handler) -> LoopWorker:
        return MemoryConsumer(self.bus, self.stream, "contract", handler, self.dead, config=FAST)


class RedisTransport(Transport):
    def __init__(self, client: redis.Redis) -> None:
        super().__init__()
        self.client = client
        self.stream = f"contract:{uuid.uuid4().hex[:8]}"
        self._names = itertools.count(1)

    async def publish(self, order_id: str) -> None:
        await RedisPublisher(self.client).publish(self.stream, encode_fields(envelope(order_id)))

    def consumer(self, handler: Handler) -> LoopWorker:
        return StreamConsumer(
            self.client, self.stream, "contract", handler, self.dead,
            tracer=NoOpTracer(), config=FAST, consumer=f"c{next(self._names)}",
        )  # fmt: skip

    async def close(self) -> None:
        await super().close()
        await self.client.aclose()


@dataclass(frozen=True)
class Slot:
    """A topic with its consumer group, and the group's dead-letter queue with its intake group."""

    n: int

    @property
    def topic(self) -> str:
        return f"contract-{self.n}"

    @property
    def group(self) -> str:
        return f"contract-{self.n}-consumers"

    @property
    def dlq(self) -> str:
        return dlq_topic(self.group)

    @property
    def intake(self) -> str:
        return f"contract-{self.n}-dead-letters"


class RocketTransport(Transport):
    max_attempts = ROCKET_ATTEMPTS  # the broker's retry maximum for the group, plus one
    within = 60.0
    redelivery_within = ROCKET.invisible_seconds + 1.0

    def __init__(self, rocket: RocketClient, producer: Any, client: redis.Redis, slot: Slot) -> None:
        super().__init__()
        self.rocket, self.producer, self.client, self.slot = rocket, producer, client, slot
        self.stream = slot.topic
        self.reasons = RedisReasons(client)

    async def publish(self, order_id: str) -> None:
        event = envelope(order_id)
        type_ = str(encode_fields(event)["type"])
        await TopicRepublisher(self.rocket, self.producer).republish(
            self.stream, type_, order_id, event.SerializeToString()
        )

    def consumer(self, handler: Handler) -> LoopWorker:
        return RocketConsumer(self.rocket, self.slot.group, {self.stream: handler}, ROCKET, NoOpTracer(), self.reasons)

    def companions(self) -> list[LoopWorker]:
        # RocketMQ moves a message to %DLQ%<group> after the group's retries; this group
        # reads it into the sink with the reason the consumer noted, as transport.py wires it.
        intake = DeadLetterIntake(self.dead, self.reasons, utc_now, self.max_attempts)
        return [RocketConsumer(self.rocket, self.slot.intake, {self.slot.dlq: intake}, ROCKET, NoOpTracer())]

    async def close(self) -> None:
        await super().close()
        await self.rocket.close(self.producer)
        await self.client.aclose()


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RocketMQServer]:
    """One broker for the module, every slot's topics and groups seeded before it starts."""
    topics: dict[str, str] = {}
    groups: dict[str, int] = {}
    for slot in map(Slot, range(SLOTS)):
        topics |= {slot.topic: "NORMAL", slot.dlq: "NORMAL"}
        # RocketMQ delivers a message 1 + retries times; the intake must allow more (see Topology).
        groups |= {slot.group: ROCKET_ATTEMPTS - 1, slot.intake: 2 * (ROCKET_ATTEMPTS - 1) + 16}
    # The proxy holds an empty receive at least 5 s by default, whatever the consumer asks:
    # 1 s here, so a held message's retry and a consumer's stop wait 1 s, not 5.
    server = RocketMQServer(
        tmp_path_factory.mktemp("rocketmq"),
        topics,
        groups,
        proxy_settings={"grpcClientConsumerMinLongPollingTimeoutMillis": 1000},
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()


_slots = itertools.count()


@pytest.fixture(params=["memory", "redis", pytest.param("rocketmq", marks=pytest.mark.rocketmq)])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Transport]:
    transport: Transport
    if request.param == "memory":
        transport = MemoryTransport()
    else:
        redis_server: RedisServer = request.getfixturevalue("redis_server")
        client = redis.Redis.from_url(redis_server.url)
        if request.param == "redis":
            transport = RedisTransport(client)
        else:
            broker: RocketMQServer = request.getfixturevalue("broker")
            slot = Slot(next(_slots))
            assert slot.n < SLOTS, "more RocketMQ tests than seeded slots: raise SLOTS"
            rocket = RocketClient(broker.grpc_endpoint)
            transport = RocketTransport(rocket, await rocket.producer([slot.topic]), client, slot)
    try:
        yield transport
    finally:
        await transport.close()


# -- handlers -------------------------------------------------------------------------


@dataclass
class Recorder:
    """Acknowledges what it can; fails the orders in ``poison``; defers the orders not in
    ``ready`` (when given); raises while ``outage`` > 0, one less a call."""

    poison: set[str] = field(default_factory=set)
    ready: set[str] | None = None
    outage: int = 0
    deliveries: list[tuple[str, int]] = field(default_factory=list)  # (order id, attempt)
    seen: list[str] = field(default_factory=list)  # acknowledged

    def attempts(self, order_id: str) -> list[int]:
        return [attempt for delivered, attempt in self.deliveries if delivered == order_id]

    async def __call__(self, batch: list[Message]) -> BatchOutcome:
        if self.outage:
            self.outage -= 1
            raise ConnectionError("database is down")
        outcome = BatchOutcome()
        for message in batch:
            self.deliveries.append((message.order_id, message.attempt))
            if message.order_id in self.poison:
                outcome.fail(message, f"cannot handle {message.order_id}")
            elif self.ready is not None and message.order_id not in self.ready:
                outcome.defer(message, f"order {message.order_id} not there yet")
            else:
                self.seen.append(message.order_id)
        return outcome


# -- the contract ---------------------------------------------------------------------


async def test_every_published_message_reaches_its_handler_once(bus: Transport) -> None:
    ids = [f"o-{n}" for n in range(20)]
    for order_id in ids:
        await bus.publish(order_id)
    recorder = Recorder()
    async with bus.running(recorder):
        await bus.until(lambda: set(recorder.seen) >= set(ids), "every message to arrive")
        await asyncio.sleep(bus.redelivery_within)  # an unacknowledged one would be back by now
    assert sorted(recorder.seen) == sorted(ids), "each once: acknowledged messages are not delivered again"
    assert bus.dead.stored == []


async def test_a_failing_message_is_dead_lettered_with_its_reason_after_max_attempts(bus: Transport) -> None:
    for order_id in ["a", "poison", "b"]:
        await bus.publish(order_id)
    recorder = Recorder(poison={"poison"})
    async with bus.running(recorder):
        await bus.until(lambda: len(bus.dead.stored) == 1, "the poison message to be dead-lettered")
    assert sorted(recorder.seen) == ["a", "b"], "the others keep flowing"
    assert recorder.attempts("poison") == list(range(1, bus.max_attempts + 1)), "each failure spends an attempt"
    [(letter, _)] = bus.dead.stored
    assert (letter.stream, letter.order_id, letter.type) == (bus.stream, "poison", "PaymentDeclined")
    assert letter.attempts == bus.max_attempts
    assert "cannot handle poison" in letter.reason
    assert events_pb2.Envelope.FromString(letter.payload).order_id == "poison"


async def test_a_deferred_message_is_retried_without_spending_attempts_and_applied_once_it_can_be(
    bus: Transport,
) -> None:
    await bus.publish("waits")
    await bus.publish("flows")
    recorder = Recorder(ready={"flows"})
    async with bus.running(recorder):
        # Deferred more often than a failing message may fail: still not dead-lettered.
        await bus.until(lambda: len(recorder.attempts("waits")) > bus.max_attempts, "repeated deferrals")
        assert recorder.seen == ["flows"], "the others keep flowing"
        recorder.ready = {"flows", "waits"}  # its order arrived
        await bus.until(lambda: "waits" in recorder.seen, "the deferred message to be applied")
    assert recorder.seen == ["flows", "waits"]
    assert set(recorder.attempts("waits")) == {1}, "waiting spends no attempt"
    assert bus.dead.stored == []


async def test_a_raising_handler_spends_no_attempts(bus: Transport) -> None:
    await bus.publish("o-1")
    recorder = Recorder(outage=bus.max_attempts)  # as many raises as attempts: counted, it would be dead
    async with bus.running(recorder):
        await bus.until(lambda: recorder.seen == ["o-1"], "the message to be handled once the outage ends")
    assert recorder.outage == 0
    assert recorder.attempts("o-1") == [1]
    assert bus.dead.stored == []


async def test_a_message_in_hand_of_a_stopped_consumer_is_redelivered(bus: Transport) -> None:
    await bus.publish("o-1")
    taken = asyncio.Event()

    async def hangs(batch: list[Message]) -> BatchOutcome:
        taken.set()
        await asyncio.Event().wait()  # until cancelled
        raise AssertionError("unreachable")

    first = await bus.start(hangs)
    await asyncio.wait_for(taken.wait(), bus.within)
    await first.stop(grace=0.1)  # past its grace: cancelled mid-batch, nothing acknowledged
    recorder = Recorder()
    async with bus.running(recorder):
        await bus.until(lambda: recorder.seen == ["o-1"], "the message to be delivered again")
    assert bus.dead.stored == []
