"""The in-memory transport's settlement, on a fake clock: no server, no sleeping."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from mesh.bus import BatchOutcome, Message, encode_fields
from mesh.bus.memory import MemoryBus, MemoryConsumer, MemoryDeadLetters, MemoryPublisher
from mesh.bus.messages import Handler
from mesh.bus.redis_streams import ConsumerConfig
from ordermesh.events.v1 import events_pb2
from tests.support import eventually

STREAM, GROUP = "events:test", "g"
CONFIG = ConsumerConfig(batch_size=10, block_ms=20, max_attempts=3, retry_backoff_seconds=1.0)


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2025, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Recorder:
    """Remembers each batch and what it acknowledged; fails the orders in ``poison``,
    defers those not in ``ready`` (when given), raises while ``outage`` > 0 (one less a call)."""

    poison: set[str] = field(default_factory=set)
    ready: set[str] | None = None
    outage: int = 0
    batches: list[list[Message]] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)  # acknowledged, in the order handled

    def attempts(self, order_id: str) -> list[int]:
        return [m.attempt for batch in self.batches for m in batch if m.order_id == order_id]

    async def __call__(self, batch: list[Message]) -> BatchOutcome:
        await asyncio.sleep(0)  # a real handler awaits its database: other consumers get a turn
        if self.outage:
            self.outage -= 1
            raise ConnectionError("database is down")
        self.batches.append(batch)
        outcome = BatchOutcome()
        for message in batch:
            if message.order_id in self.poison:
                outcome.fail(message, f"cannot handle {message.order_id}")
            elif self.ready is not None and message.order_id not in self.ready:
                outcome.defer(message, f"order {message.order_id} not there yet")
            else:
                self.seen.append(message.order_id)
        return outcome


@dataclass
class World:
    clock: FakeClock = field(default_factory=FakeClock)
    dead: MemoryDeadLetters = field(default_factory=MemoryDeadLetters)

    def __post_init__(self) -> None:
        self.bus = MemoryBus(self.clock)
        self.publisher = MemoryPublisher(self.bus)

    def consumer(
        self, handler: Handler, group: str = GROUP, config: ConsumerConfig = CONFIG, stream: str = STREAM
    ) -> MemoryConsumer:
        return MemoryConsumer(self.bus, stream, group, handler, self.dead, config=config)

    async def publish(self, *order_ids: str, stream: str = STREAM) -> None:
        for order_id in order_ids:
            await self.publisher.publish(stream, fields(order_id))

    def unsettled(self, group: str = GROUP) -> int:
        return self.bus.unsettled(STREAM, group)


def envelope(order_id: str) -> events_pb2.Envelope:
    return events_pb2.Envelope(
        event_id=uuid.uuid4().hex, order_id=order_id, payment_declined=events_pb2.PaymentDeclined(reason="x")
    )


def fields(order_id: str) -> dict[str, str | bytes]:
    return encode_fields(envelope(order_id))


@pytest.fixture
def world() -> World:
    return World()


async def test_acknowledged_messages_are_handled_once_in_stream_order_then_gone(world: World) -> None:
    ids = [f"o-{n}" for n in range(25)]
    await world.publish(*ids)
    recorder = Recorder()
    consumer = world.consumer(recorder)
    assert await consumer.run_until_idle() == 25
    assert recorder.seen == ids
    assert world.unsettled() == 0
    assert await consumer.run_until_idle() == 0
    assert recorder.seen == ids, "an acknowledged message is never delivered again"
    message = recorder.batches[0][0]
    assert (message.stream, message.type, message.attempt) == (STREAM, "PaymentDeclined", 1)
    assert message.envelope().order_id == "o-0"


async def test_batches_hold_at_most_batch_size_messages(world: World) -> None:
    await world.publish(*(f"o-{n}" for n in range(10)))
    recorder = Recorder()
    consumer = world.consumer(recorder, config=ConsumerConfig(batch_size=4))
    assert [await consumer.poll() for _ in range(4)] == [4, 4, 2, 0]
    assert [len(batch) for batch in recorder.batches] == [4, 4, 2]


async def test_each_stream_keeps_its_order(world: World) -> None:
    for n in range(12):
        await world.publish(f"a-{n}", stream="events:a")
        await world.publish(f"b-{n}", stream="events:b")
    a, b = Recorder(), Recorder()
    await world.consumer(a, stream="events:a", config=ConsumerConfig(batch_size=5)).run_until_idle()
    await world.consumer(b, stream="events:b", config=ConsumerConfig(batch_size=5)).run_until_idle()
    assert a.seen == [f"a-{n}" for n in range(12)]
    assert b.seen == [f"b-{n}" for n in range(12)]


async def test_a_failing_message_spends_its_attempts_then_is_dead_lettered_with_its_reason(world: World) -> None:
    await world.publish("a", "poison", "b")
    recorder = Recorder(poison={"poison"})
    consumer = world.consumer(recorder)
    await consumer.run_until_idle()
    assert recorder.seen == ["a", "b"], "the others keep flowing"
    assert recorder.attempts("poison") == [1, 2, 3]
    assert world.unsettled() == 0
    [(letter, stored_at)] = world.dead.stored
    assert (letter.stream, letter.type, letter.order_id) == (STREAM, "PaymentDeclined", "poison")
    assert (letter.reason, letter.attempts, stored_at) == ("cannot handle poison", 3, world.clock.now)
    assert events_pb2.Envelope.FromString(letter.payload).order_id == "poison"

    recorder.poison.clear()  # the cause is fixed: a replay puts it back
    await world.publisher.republish(letter.stream, letter.type, letter.order_id, letter.payload)
    await consumer.run_until_idle()
    assert recorder.seen == ["a", "b", "poison"]


async def test_a_failed_message_waits_its_backoff_doubling_per_attempt(world: World) -> None:
    await world.publish("poison")
    recorder = Recorder(poison={"poison"})
    consumer = world.consumer(recorder)
    assert await consumer.poll() == 1  # attempt 1 failed: due again after 1 s
    world.clock.advance(0.9)
    assert await consumer.poll() == 0
    world.clock.advance(0.1)
    assert await consumer.poll() == 1  # attempt 2 failed: due again after 2 s
    world.clock.advance(1.9)
    assert await consumer.poll() == 0
    world.clock.advance(0.1)
    assert await consumer.poll() == 1  # attempt 3: dead-lettered
    assert recorder.attempts("poison") == [1, 2, 3]
    assert len(world.dead.stored) == 1 and world.unsettled() == 0


async def test_a_deferred_message_is_retried_without_spending_attempts_then_applied(world: World) -> None:
    await world.publish("waits", "flows")
    recorder = Recorder(ready={"flows"})
    consumer = world.consumer(recorder)
    for _ in range(2 * CONFIG.max_attempts):  # deferred more often than any failure may happen
        await consumer.poll()
        world.clock.advance(CONFIG.retry_backoff_seconds)
    assert recorder.seen == ["flows"], "the others keep flowing"
    assert recorder.attempts("waits") == [1] * (2 * CONFIG.max_attempts)
    assert world.unsettled() == 1

    recorder.ready = {"flows", "waits"}
    assert await consumer.poll() == 1
    assert recorder.seen == ["flows", "waits"] and recorder.attempts("waits")[-1] == 1
    assert world.dead.stored == [] and world.unsettled() == 0


async def test_a_message_deferred_longer_than_max_defer_is_dead_lettered(world: World) -> None:
    await world.publish("never")
    recorder = Recorder(ready=set())
    consumer = world.consumer(recorder, config=ConsumerConfig(max_defer_seconds=60))
    assert await consumer.run_until_idle() == 0
    world.clock.advance(60)
    assert await consumer.run_until_idle() == 0, "not longer than max_defer yet"
    world.clock.advance(1)
    assert await consumer.run_until_idle() == 1
    [(letter, _)] = world.dead.stored
    assert (letter.order_id, letter.reason, letter.attempts) == (
        "never",
        "deferred too long: order never not there yet",
        1,
    )
    assert world.unsettled() == 0


async def test_a_message_waiting_out_an_outage_is_never_dead_lettered_for_it(world: World) -> None:
    await world.publish("o-1")

    async def payment_down(batch: list[Message]) -> BatchOutcome:
        outcome = BatchOutcome()
        for message in batch:
            outcome.defer(message, "payment is unavailable", until_it_can=True)
        return outcome

    consumer = world.consumer(payment_down, config=ConsumerConfig(max_defer_seconds=60))
    for _ in range(5):
        await consumer.run_until_idle()
        world.clock.advance(3600)
    assert world.dead.stored == [] and world.unsettled() == 1


async def test_a_raising_handler_gets_the_whole_batch_again_without_spending_attempts(world: World) -> None:
    await world.publish("a", "b")
    recorder = Recorder(outage=2 * CONFIG.max_attempts)
    consumer = world.consumer(recorder)
    for _ in range(2 * CONFIG.max_attempts):
        with pytest.raises(ConnectionError):
            await consumer.run_until_idle()
    await consumer.run_until_idle()
    assert [[(m.order_id, m.attempt) for m in batch] for batch in recorder.batches] == [[("a", 1), ("b", 1)]]
    assert world.dead.stored == [] and world.unsettled() == 0


async def test_after_a_raise_the_consumer_waits_a_backoff_and_newer_messages_do_not_overtake(world: World) -> None:
    await world.publish("a")
    recorder = Recorder(outage=1)
    consumer = world.consumer(recorder)
    with pytest.raises(ConnectionError):
        await consumer.poll()
    await world.publish("b")
    assert await consumer.poll() == 0, "paused for the backoff"
    world.clock.advance(CONFIG.retry_backoff_seconds)
    assert await consumer.poll() == 1
    assert await consumer.poll() == 1
    assert recorder.seen == ["a", "b"]


async def test_the_running_consumer_retries_after_raises(world: World) -> None:
    await world.publish("a")
    recorder = Recorder(outage=2 * CONFIG.max_attempts)
    consumer = world.consumer(recorder, config=ConsumerConfig(block_ms=5, retry_backoff_seconds=0))
    await consumer.start()
    try:

        async def handled() -> bool:
            return world.unsettled() == 0

        await eventually(handled, within=5, what="the batch to be handled once the outage ends")
    finally:
        await consumer.stop()
    assert recorder.attempts("a") == [1]
    assert world.dead.stored == []


async def test_stop_finishes_the_batch_in_hand_and_takes_no_new_one(world: World) -> None:
    await world.publish("slow")
    taken, release = asyncio.Event(), asyncio.Event()
    seen: list[str] = []

    async def slow(batch: list[Message]) -> BatchOutcome:
        taken.set()
        await release.wait()
        seen.extend(m.order_id for m in batch)
        return BatchOutcome()

    consumer = MemoryConsumer(world.bus, STREAM, GROUP, slow, world.dead, config=CONFIG)
    await consumer.start()
    await asyncio.wait_for(taken.wait(), 5)
    stopping = asyncio.create_task(consumer.stop(grace=5))
    await world.publish("later")
    release.set()
    await stopping
    assert seen == ["slow"]
    assert world.unsettled() == 1, "'later' waits for the next consumer"


async def test_a_consumer_stopped_past_its_grace_hands_its_batch_back(world: World) -> None:
    await world.publish("stuck")
    taken = asyncio.Event()

    async def hangs(batch: list[Message]) -> BatchOutcome:
        taken.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    first = MemoryConsumer(world.bus, STREAM, GROUP, hangs, world.dead, config=CONFIG)
    await first.start()
    await asyncio.wait_for(taken.wait(), 5)
    await first.stop(grace=0.01)  # cancelled mid-batch: nothing acknowledged
    recorder = Recorder()
    assert await world.consumer(recorder).poll() == 1, "the group's next consumer takes it at once"
    assert recorder.attempts("stuck") == [1], "a redelivery is not a failure"


async def test_every_group_sees_every_message_and_a_groups_consumers_share_them(world: World) -> None:
    ids = [f"o-{n}" for n in range(40)]
    await world.publish(*ids)
    other = Recorder()
    await world.consumer(other, group="other").run_until_idle()
    assert other.seen == ids

    first, second = Recorder(), Recorder()
    config = ConsumerConfig(batch_size=3, block_ms=5)
    consumers = [world.consumer(first, config=config), world.consumer(second, config=config)]
    for consumer in consumers:
        await consumer.start()
    try:

        async def shared() -> bool:
            return len(first.seen) + len(second.seen) >= len(ids)

        await eventually(shared, within=5, what="the group to handle every message")
    finally:
        for consumer in consumers:
            await consumer.stop()
    assert sorted(first.seen + second.seen) == sorted(ids), "each message once in the group"
    assert first.seen and second.seen


async def test_the_publisher_speaks_redis_publishers_interface(world: World) -> None:
    await world.publisher.publish_many(STREAM, [fields("a"), fields("b")])
    entry_id = await world.publisher.republish(STREAM, "OrderPlaced", "c", b"raw")
    recorder = Recorder()
    await world.consumer(recorder).run_until_idle()
    [batch] = recorder.batches
    assert [(m.order_id, m.type) for m in batch] == [
        ("a", "PaymentDeclined"),
        ("b", "PaymentDeclined"),
        ("c", "OrderPlaced"),
    ]
    assert batch[-1].payload == b"raw" and batch[-1].id == entry_id
    assert [m.id for m in batch] == sorted({m.id for m in batch}, key=lambda i: int(i.split("-")[0]))
