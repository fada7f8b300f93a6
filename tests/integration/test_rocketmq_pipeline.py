"""The order pipeline on EVENT_TRANSPORT=rocketmq, against a real broker, with faults.

Wired the way the processes wire it (mesh.bus.transport.EventTransport): a
forwarder relays the order-placed stream to its topic; the order context's
PlacedOrders handler consumes the topic into SQLite; the dead-letter group
moves ``%DLQ%`` messages into ``dead_letters``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as redis
from opentelemetry.trace import NoOpTracer
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from mesh.bus import BatchOutcome, Message, encode_fields
from mesh.bus.redis_streams import ConsumerConfig, RedisPublisher
from mesh.bus.topology import Topology
from mesh.bus.transport import EventTransport, Route, forwarder_breaker, rocket_client
from mesh.clock import utc_now
from mesh.db import reading
from mesh.local.procs import RedisServer
from mesh.local.rocketmq import RocketMQServer
from mesh.worker import Worker
from order.bootstrap import Components, bootstrap, components
from order.handlers import PlacedOrders
from order.models import dead_letters, orders
from order.settings import OrderSettings
from tests.integration.test_order_pipeline import order_placed
from tests.support import eventually

pytestmark = [pytest.mark.rocketmq, pytest.mark.timeout(600)]
MAX_ATTEMPTS = 2
ROOT = Path(__file__).resolve().parents[2]


def settings_for(broker: RocketMQServer, redis_url: str, db: Path, stream: str) -> OrderSettings:
    return OrderSettings(
        event_transport="rocketmq",
        rocketmq_endpoint=broker.grpc_endpoint,
        redis_url=redis_url,
        database_urls=f"sqlite+aiosqlite:///{db}",
        order_placed_stream=stream,
        consumer_max_attempts=MAX_ATTEMPTS,
        breaker_reset_seconds=2,
    )


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RocketMQServer]:
    topology = Topology.of(OrderSettings().subscriptions(), MAX_ATTEMPTS)
    server = RocketMQServer(tmp_path_factory.mktemp("rocketmq"), topology.topics, topology.groups)
    try:
        server.start()
        yield server
    finally:
        server.stop()


class Counted:
    """PlacedOrders, counting deliveries (a redelivered or re-sent event counts again)."""

    def __init__(self, inner: PlacedOrders) -> None:
        self.inner = inner
        self.delivered = 0

    async def __call__(self, batch: list[Message]) -> BatchOutcome:
        self.delivered += len(batch)
        return await self.inner(batch)


@dataclass
class Pipeline:
    settings: OrderSettings
    parts: Components
    client: redis.Redis
    transport: EventTransport
    registry: CollectorRegistry
    handler: Counted
    workers: list[Worker]

    async def place(self, count: int) -> list[str]:
        ids = []
        for _ in range(count):
            order_id = f"o0-{uuid.uuid4().hex[:20]}"
            await RedisPublisher(self.client).publish(
                self.settings.order_placed_stream, encode_fields(order_placed(order_id, "ada"))
            )
            ids.append(order_id)
        return ids

    async def rows(self) -> list[str]:
        async with reading(self.parts.engines[0]) as connection:
            return list((await connection.execute(select(orders.c.order_id))).scalars())

    async def dead(self) -> list[tuple[str, str, str]]:
        async with reading(self.parts.engines[0]) as connection:
            t = dead_letters
            return [tuple(r) for r in (await connection.execute(select(t.c.stream, t.c.order_id, t.c.reason))).all()]

    def lag(self) -> float:
        value = self.registry.get_sample_value(
            "ordermesh_forwarder_lag_seconds", {"stream": self.settings.order_placed_stream}
        )
        return float(value or 0.0)

    async def unacknowledged(self) -> int:
        """Stream entries the forwarder has not acknowledged (pending or not yet read)."""
        stream = self.settings.order_placed_stream
        groups = await self.client.xinfo_groups(stream)
        forwarder = next(g for g in groups if g["name"] in (b"forwarder", "forwarder"))
        return int(forwarder["pending"]) + int(forwarder.get("lag") or 0)


@pytest.fixture
async def pipeline(broker: RocketMQServer, redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[Pipeline]:
    # A fresh stream per test, forwarded to the mesh's real order-placed topic.
    stream = f"test-{uuid.uuid4().hex[:6]}:order-placed"
    settings = settings_for(broker, redis_server.url, tmp_path / "order.db", stream)
    tracer = NoOpTracer()
    parts = components(await bootstrap(settings, workers=False))
    registry = CollectorRegistry()
    transport = EventTransport(
        settings,
        parts.client,
        parts.dead_letters(),
        tracer,
        rocket=rocket_client(settings),
        breaker=forwarder_breaker(settings, None),
        consumer_config=ConsumerConfig(max_attempts=MAX_ATTEMPTS, claim_idle_ms=1000, claim_every_seconds=0.5),
        registry=registry,
    )
    handler = Counted(PlacedOrders(parts.shards, utc_now))
    workers = await transport.forwarders([stream])
    workers += await transport.consumers([Route(stream, settings.consumer_group, handler)])
    for worker in workers:
        await worker.start()
    yield Pipeline(settings, parts, parts.client, transport, registry, handler, workers)
    for worker in workers:
        await worker.stop()
    await transport.close()
    await parts.close()


async def test_a_poison_message_reaches_the_dlq_with_its_reason_and_the_flow_goes_on(pipeline: Pipeline) -> None:
    poison_order = f"o0-poison{uuid.uuid4().hex[:8]}"
    await RedisPublisher(pipeline.client).publish(
        pipeline.settings.order_placed_stream,
        {"type": "OrderPlaced", "order_id": poison_order, "event": b"\xff not an envelope"},
    )
    good = await pipeline.place(5)

    async def all_good_rows() -> bool:
        return set(good) <= set(await pipeline.rows())

    await eventually(all_good_rows, within=60, what="the good orders to be inserted")

    async def dead_lettered() -> bool:
        return any(order_id == poison_order for _, order_id, _ in await pipeline.dead())

    await eventually(dead_lettered, within=120, what="the poison message to reach dead_letters via %DLQ%")
    [(topic, _, reason)] = [d for d in await pipeline.dead() if d[1] == poison_order]
    assert topic == "ordermesh-order-placed"  # the original topic, so a replay goes back there
    assert "%DLQ%ordermesh-order" in reason
    assert "envelope" in reason.lower() or "malformed" in reason.lower() or "parse" in reason.lower(), reason
    assert poison_order not in await pipeline.rows()

    # Replay puts it back on its original topic: it fails again, and is dead-lettered again.
    code, out = await order_command(pipeline, "replay")
    assert code == 0 and "replayed 1 dead letters" in out, out

    async def dead_lettered_twice() -> bool:
        return sum(order_id == poison_order for _, order_id, _ in await pipeline.dead()) == 2

    await eventually(dead_lettered_twice, within=120, what="the replayed poison message to come back to dead_letters")


async def python(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run this Python with ``args`` in the repository, off the event loop."""
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )


async def order_command(pipeline: Pipeline, *args: str) -> tuple[int, str]:
    settings = pipeline.settings
    env = {
        **os.environ,
        "EVENT_TRANSPORT": "rocketmq",
        "ROCKETMQ_ENDPOINT": settings.rocketmq_endpoint,
        "REDIS_URL": settings.redis_url,
        "DATABASE_URLS": settings.database_urls,
        "ORDER_PLACED_STREAM": settings.order_placed_stream,
    }
    done = await python(["-m", "order", *args], env)
    return done.returncode, done.stdout + done.stderr


async def test_a_process_whose_topic_is_missing_refuses_to_start_naming_it(
    broker: RocketMQServer, redis_server: RedisServer
) -> None:
    env = {
        **os.environ,
        "EVENT_TRANSPORT": "rocketmq",
        "ROCKETMQ_ENDPOINT": broker.grpc_endpoint,
        "REDIS_URL": redis_server.url,
        "ORDER_UPDATES_STREAM": "events:no-such-updates",
        "GRPC_PORT": "0",
        "METRICS_PORT": "0",
    }
    done = await python(["-m", "checkout"], env)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "cannot start" in done.stderr and "'ordermesh-no-such-updates'" in done.stderr, done.stderr[-2000:]


async def test_broker_down_30s_under_load_then_back_loses_nothing(pipeline: Pipeline, broker: RocketMQServer) -> None:
    placed: list[str] = []
    loading = True

    async def steady_load() -> None:
        while loading:
            placed.extend(await pipeline.place(5))
            await asyncio.sleep(0.25)  # 20 orders/s

    load = asyncio.create_task(steady_load())
    try:
        await asyncio.sleep(5)
        await asyncio.to_thread(broker.stop)
        stopped_at = time.monotonic()
        backlog_at_stop = await pipeline.unacknowledged()
        await asyncio.sleep(max(0.0, 30 - (time.monotonic() - stopped_at)))
        # The forwarder acknowledged nothing while the broker was away: the backlog
        # grew by what was placed meanwhile, and its lag grew with it.
        assert await pipeline.unacknowledged() >= backlog_at_stop + 200
        assert pipeline.lag() > 10, pipeline.lag()
        await asyncio.to_thread(broker.restart)
        await asyncio.sleep(5)
    finally:
        loading = False
        await load
    expected = set(placed)

    async def all_rows() -> bool:
        return set(await pipeline.rows()) >= expected

    await eventually(all_rows, within=240, what=f"all {len(expected)} orders after the broker came back")
    rows = await pipeline.rows()
    assert len(rows) == len(set(rows)) == len(expected), "every order exactly once"
    assert pipeline.handler.delivered >= len(expected)  # every event arrived (repeats allowed)

    async def caught_up() -> bool:
        return pipeline.lag() < 3

    await eventually(caught_up, within=30, what="forwarder lag back near zero")
    assert await pipeline.unacknowledged() == 0


async def test_forwarder_killed_between_send_and_ack_repeats_are_absorbed(
    pipeline: Pipeline, broker: RocketMQServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    # The pipeline's own forwarder stops first: the doomed one must take the batch.
    forwarder, *_ = pipeline.workers
    await forwarder.stop()
    ids = await pipeline.place(50)
    env = {
        **os.environ,
        "EVENT_TRANSPORT": "rocketmq",
        "ROCKETMQ_ENDPOINT": broker.grpc_endpoint,
        "REDIS_URL": redis_server.url,
        "STREAM": pipeline.settings.order_placed_stream,
    }
    doomed = await python([str(Path(__file__).with_name("forward_then_die.py"))], env)
    assert doomed.returncode == -signal.SIGKILL, doomed.stderr[-2000:]
    assert "sent 50" in doomed.stdout
    # Sent, never acknowledged: all 50 are still pending in the forwarder group.
    assert await pipeline.unacknowledged() == 50

    await forwarder.start()  # reclaims the dead forwarder's entries and sends them again

    async def all_rows_and_repeats() -> bool:
        return set(await pipeline.rows()) >= set(ids) and pipeline.handler.delivered >= 100

    await eventually(all_rows_and_repeats, within=120, what="every order, and each event delivered twice")
    rows = await pipeline.rows()
    assert sorted(rows) == sorted(ids), "the repeats made no duplicate rows"
    assert await pipeline.unacknowledged() == 0
