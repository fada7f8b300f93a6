"""The analytics context on EVENT_TRANSPORT=rocketmq, against a real RocketMQ 5 broker.

Wired as the mesh runs it: the streams are forwarded to their topics (what the
catalog's and the order context's forwarders do), and the analytics process
(bootstrap with its own workers) reads both topics as its own group,
``ordermesh-analytics``, and its DLQ as ``ordermesh-analytics-dead-letters``.
Another group on the same topics gets every event too. The data set arrives
out of order and more than once, behind a poison message that is retried,
dead-lettered and replayed without holding anything back; the three queries
give their exact answers.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from opentelemetry.trace import NoOpTracer

from analytics.settings import AnalyticsSettings
from mesh.bus import BatchOutcome, Message
from mesh.bus.dead_letters import DeadLetter, KeptOnStream
from mesh.bus.messages import decode_envelope
from mesh.bus.rocketmq import RocketClient, RocketConsumer, RocketConsumerConfig
from mesh.bus.topology import Topology, group_for, topic_for
from mesh.bus.transport import EventTransport, rocket_client
from mesh.local.procs import RedisServer
from mesh.local.rocketmq import RocketMQServer
from mesh.worker import Worker
from tests.analytics_world import World, analytics_command, assert_answers, load, settings_for, world_for
from tests.support import eventually

pytestmark = [pytest.mark.rocketmq, pytest.mark.timeout(240)]
MAX_ATTEMPTS = 2
OTHER_GROUP = "order"  # as if the order context's: a group of its own on the same topics


def subscriptions(group: str) -> list[tuple[str, str]]:
    return [(stream, group) for stream, _ in AnalyticsSettings().subscriptions()]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RocketMQServer]:
    settings = AnalyticsSettings()
    topology = Topology.of(settings.subscriptions(), MAX_ATTEMPTS, settings.dead_letter_group) | Topology.of(
        subscriptions(OTHER_GROUP), MAX_ATTEMPTS
    )
    with RocketMQServer(tmp_path_factory.mktemp("rocketmq"), topology.topics, topology.groups) as server:
        yield server


class Delivered:
    """The other group's handler: takes every message, and remembers what it got."""

    def __init__(self) -> None:
        self.event_ids: set[str] = set()
        self.undecodable = 0

    async def __call__(self, batch: list[Message]) -> BatchOutcome:
        for message in batch:
            try:
                self.event_ids.add(decode_envelope(message.payload).event_id)
            except Exception:  # noqa: BLE001 - the poison: counted, and acknowledged like the rest
                self.undecodable += 1
        return BatchOutcome()


async def started(workers: list[Worker]) -> list[Worker]:
    for worker in workers:
        await worker.start()
    return workers


@pytest.fixture
async def world(broker: RocketMQServer, redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[World]:
    settings = settings_for(
        f"sqlite+aiosqlite:///{tmp_path / 'analytics.db'}",
        redis_server.url,
        event_transport="rocketmq",
        rocketmq_endpoint=broker.grpc_endpoint,
        consumer_max_attempts=MAX_ATTEMPTS,
    )
    async with world_for(settings, own_workers=True) as world:
        yield world


@pytest.fixture
async def forwarded(world: World) -> AsyncIterator[None]:
    """The streams relayed to their topics, as the catalog and the order context relay them."""
    transport = EventTransport(
        world.settings, world.parts.client, KeptOnStream(), NoOpTracer(), rocket=rocket_client(world.settings)
    )
    streams = [stream for stream, _ in world.settings.subscriptions()]
    workers = await started(await transport.forwarders(streams))
    yield
    for worker in workers:
        await worker.stop()
    await transport.close()


@pytest.fixture
async def other_group(world: World) -> AsyncIterator[Delivered]:
    handler = Delivered()
    client = RocketClient(world.settings.rocketmq_endpoint)
    topics = {topic_for(stream): handler for stream, _ in world.settings.subscriptions()}
    consumer = RocketConsumer(client, group_for(OTHER_GROUP), topics, RocketConsumerConfig(), NoOpTracer())
    await started([consumer])
    yield handler
    await consumer.stop()
    await client.close()


async def test_events_over_rocketmq_reach_the_read_model_in_its_own_group_past_a_poison_message(
    world: World, forwarded: None, other_group: Delivered
) -> None:
    poison = f"o0-{uuid.uuid4().hex[:12]}"
    await world.parts.client.xadd(
        world.settings.order_status_stream,
        {"type": "OrderStatusChanged", "order_id": poison, "event": b"\xff not an envelope"},
    )
    await load(world)  # every event at least twice, out of order: drained when each is taken
    await assert_answers(world)

    letter = await dead_letter_of(world, poison)
    assert letter.stream == "ordermesh-order-status"  # the topic: a replay goes back there
    assert "%DLQ%ordermesh-analytics" in letter.reason and "undecodable envelope" in letter.reason
    # The other group got every event and the poison as well: neither group holds the other back.
    await eventually(lambda: other_group.event_ids >= world.sent, within=30, what="the other group's deliveries")
    assert other_group.undecodable >= 1

    code, listing = await analytics_command(world.settings, "dead-letters")
    assert code == 0 and listing.startswith(f"{letter.id}\tordermesh-order-status\tOrderStatusChanged\t{poison}\t")
    seen_by_the_other = other_group.undecodable
    code, replayed = await analytics_command(world.settings, "replay")
    assert (code, replayed.strip()) == (0, "replayed 1 dead letters"), replayed
    assert [d.id for d in await world.parts.dead_letters().pending()] == []
    # Back on its topic, so every group reading it gets it again (and this one
    # fails it again: test_analytics_commands follows that on the streams).
    await eventually(
        lambda: other_group.undecodable > seen_by_the_other, within=30, what="the replayed poison on its topic"
    )
    await assert_answers(world)


async def dead_letter_of(world: World, order_id: str) -> DeadLetter:
    """The one dead letter of ``order_id`` not replayed yet, once the DLQ intake has stored it."""
    found: list[DeadLetter] = []

    async def stored() -> bool:
        nonlocal found
        found = [d for d in await world.parts.dead_letters().pending() if d.order_id == order_id]
        return bool(found)

    await eventually(stored, within=60, what=f"a dead letter of {order_id}", every=0.5)
    [letter] = found
    return letter
