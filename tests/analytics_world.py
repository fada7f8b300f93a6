"""The analytics context served in-process, with real Redis and real SQL, and a
known data set with its exact answers: shared by the integration tests of the
embedded transport, RocketMQ and the backfill."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from analytics.bootstrap import Components, bootstrap, build_consumers, components
from analytics.models import applied_events
from analytics.settings import AnalyticsSettings
from mesh.bus import encode_fields
from mesh.bus.redis_streams import RedisPublisher, StreamConsumer
from mesh.db import reading
from ordermesh.analytics.v1 import analytics_pb2, analytics_pb2_grpc
from ordermesh.common.v1 import common_pb2
from ordermesh.events.v1 import events_pb2
from tests.analytics_support import money, order_placed, stamp, status_changed
from tests.support import eventually, serving

D1 = datetime(2030, 3, 4, tzinfo=UTC)
D2 = D1 + timedelta(days=1)
USD, EUR = "USD", "EUR"


def at(day: datetime, hour: int, minute: int, second: int = 0, micro: int = 0) -> datetime:
    return day.replace(hour=hour, minute=minute, second=second, microsecond=micro)


def settings_for(database_url: str, redis_url: str, **more: Any) -> AnalyticsSettings:
    """Streams of the test's own (a prefix per test), forwarded to the mesh's topic names."""
    prefix = uuid.uuid4().hex[:8]
    fields: dict[str, Any] = {
        "grpc_host": "127.0.0.1",
        "grpc_port": 0,
        "metrics_port": 0,
        "database_url": database_url,
        "redis_url": redis_url,
        "order_placed_stream": f"{prefix}:order-placed",
        "order_status_stream": f"{prefix}:order-status",
        "consumer_max_attempts": 2,
    }
    return AnalyticsSettings(**(fields | more))


@dataclass
class World:
    settings: AnalyticsSettings
    parts: Components
    stub: analytics_pb2_grpc.AnalyticsServiceAsyncStub
    # The test's own consumers (embedded transport, run until idle); none: the
    # process's own workers consume, on either transport.
    consumers: list[StreamConsumer] = field(default_factory=list)
    sent: set[str] = field(default_factory=set)  # the ids of the events sent

    async def send(self, *envelopes: events_pb2.Envelope) -> None:
        """Each event on its stream, as the catalog and the order outbox append them
        (on the rocketmq transport their forwarders relay the streams to the topics)."""
        publisher = RedisPublisher(self.parts.client)
        for envelope in envelopes:
            placed = envelope.WhichOneof("payload") == "order_placed"
            stream = self.settings.order_placed_stream if placed else self.settings.order_status_stream
            await publisher.publish(stream, encode_fields(envelope))
            self.sent.add(envelope.event_id)

    async def drain(self) -> None:
        """Until every event sent is taken into the read model."""
        for consumer in self.consumers:
            await consumer.run_until_idle()
        await eventually(self._took_all_sent, within=60, what="every event sent to be taken", every=0.2)

    async def _took_all_sent(self) -> bool:
        query = select(applied_events.c.event_id).where(applied_events.c.event_id.in_(self.sent))
        async with reading(self.parts.engine) as connection:
            return len((await connection.execute(query)).all()) == len(self.sent)

    async def top(self, day: str, limit: int = 0) -> list[tuple[str, int, str, str]]:
        reply = await self.stub.TopProducts(analytics_pb2.TopProductsRequest(day=day, limit=limit))
        return [(p.product_id, p.units, amount(p.revenue), p.revenue.currency_code) for p in reply.products]

    async def summary(self, since: datetime, until: datetime, bucket: int) -> list[tuple[object, ...]]:
        request = analytics_pb2.SalesSummaryRequest(to=stamp(until), bucket=bucket)  # type: ignore[arg-type]
        getattr(request, "from").CopyFrom(stamp(since))  # ``from`` is a Python keyword
        reply = await self.stub.SalesSummary(request)
        return [
            (
                b.start.ToDatetime(tzinfo=UTC),
                b.revenue.currency_code,
                b.orders,
                amount(b.revenue),
                [(common_pb2.OrderStatus.Name(s.status), s.orders, amount(s.revenue)) for s in b.by_status],
            )
            for b in reply.buckets
        ]

    async def search(self, **fields: object) -> list[str]:
        """Every page, following the tokens: the order ids in the order given."""
        found: list[str] = []
        token = ""
        while True:
            request = analytics_pb2.SearchOrdersRequest(page_token=token, **fields)  # type: ignore[arg-type]
            reply = await self.stub.SearchOrders(request)
            found += [o.order_id for o in reply.orders]
            token = reply.next_page_token
            if not token:
                return found


async def analytics_command(settings: AnalyticsSettings, *args: str) -> tuple[int, str]:
    """``python -m analytics ARGS`` in a process of its own, configured like ``settings``:
    its exit status, and what it printed (stdout, then stderr)."""
    names = ("database_url", "redis_url", "order_placed_stream", "order_status_stream", "order_database_urls",
             "backfill_page_size", "event_transport", "rocketmq_endpoint")  # fmt: skip
    env = os.environ | {name.upper(): str(getattr(settings, name)) for name in names}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "analytics",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    return int(process.returncode or 0), (out + err).decode()


def amount(value: common_pb2.Money) -> str:
    return f"{value.units}.{value.nanos // 10_000_000:02d}"


@asynccontextmanager
async def world_for(settings: AnalyticsSettings, *, own_workers: bool = False) -> AsyncIterator[World]:
    """The process as ``python -m analytics`` builds it, serving gRPC; its consumers
    are the test's to drive unless ``own_workers`` (then its workers run)."""
    app = await bootstrap(settings, workers=own_workers)
    parts = components(app)
    async with serving(app) as (_server, channel):
        stub = analytics_pb2_grpc.AnalyticsServiceStub(channel)
        consumers = [] if own_workers else build_consumers(parts, settings, app.tracer)
        yield World(settings, parts, stub, consumers)


# The known data set: six orders on two shards (o0-, o1-), two days, two currencies.
A, B, C, D, E, F = "o0-000000a1", "o1-000000b2", "o0-000000c3", "o1-000000d4", "o0-000000e5", "o1-000000f6"
G = "o0-000000a7"  # only a status change of it ever arrives
SKU1, SKU2, SKU3 = "sku-1", "sku-2", "sku-3"
D_CREATED = at(D1, 11, 59, 59, 999_999)  # the last microsecond of an hour
PLACED = {
    # 29.00: 2 x 10.50 + 3.00 + 5.00 shipping; ends SHIPPED
    A: order_placed(A, at(D1, 10, 5), [(SKU1, 2, money(10, 500_000_000)), (SKU2, 1, money(3))], shipping=money(5),
                    user_id="ada", email="Ada@Example.com"),
    # 15.50; declined: CANCELLED (its statuses arrive before it, and in reverse)
    B: order_placed(B, at(D1, 10, 40), [(SKU1, 1, money(10, 500_000_000))], shipping=money(5),
                    user_id="grace", email="grace@example.com"),
    # 9.00: 4 x 2.25; PAID (an older PENDING arrives late)
    C: order_placed(C, at(D1, 11, 20), [(SKU3, 4, money(2, 250_000_000))], user_id="ada", email="ada@example.com"),
    # 10.00: 3 x 3.00 + 1.00; waits for review
    D: order_placed(D, D_CREATED, [(SKU2, 3, money(3))], shipping=money(1),
                    user_id="linus", email="linus@example.com", initial=common_pb2.AWAITING_REVIEW),
    # 52.50, the next day; PAID
    E: order_placed(E, at(D2, 9, 0), [(SKU1, 5, money(10, 500_000_000))], user_id="grace", email="grace@example.com"),
    # 9.00 EUR; PAID
    F: order_placed(F, at(D1, 10, 10), [(SKU1, 1, money(9, currency=EUR))], user_id="ada", email="ada@example.com"),
}  # fmt: skip


def changes() -> list[events_pb2.Envelope]:
    """The order outbox's OrderStatusChanged events, as two shards' relays interleave them."""
    s = common_pb2
    return [
        status_changed(A, s.PENDING, at(D1, 10, 5, 1)),
        status_changed(F, s.PENDING, at(D1, 10, 10, 1)),
        status_changed(A, s.PAID, at(D1, 10, 5, 2)),
        status_changed(F, s.PAID, at(D1, 10, 10, 2)),
        status_changed(A, s.SHIPPING, at(D1, 10, 6)),
        status_changed(C, s.PAID, at(D1, 11, 21)),
        status_changed(C, s.PENDING, at(D1, 11, 20, 1)),  # older, late
        status_changed(D, s.AWAITING_REVIEW, at(D2, 0, 0, 0, 1)),
        status_changed(A, s.SHIPPED, at(D1, 10, 30)),
        status_changed(E, s.PENDING, at(D2, 9, 0, 1)),
        status_changed(E, s.PAID, at(D2, 9, 0, 1, 500)),  # half a millisecond later: microseconds count
        status_changed(G, s.PAID, at(D1, 10, 0)),
    ]


def b_changes() -> list[events_pb2.Envelope]:
    """B's changes: sent before its OrderPlaced, newest first."""
    return [
        status_changed(B, common_pb2.CANCELLED, at(D1, 10, 50)),
        status_changed(B, common_pb2.PENDING, at(D1, 10, 40, 1)),
    ]


async def load(world: World) -> list[events_pb2.Envelope]:
    """The data set, out of order and with duplicates; returns every event sent."""
    early = b_changes()
    await world.send(*early, *early)  # before B's OrderPlaced, twice
    await world.drain()
    events = [*changes(), *PLACED.values()]
    await world.send(*events[::2], *events, *events[1::2])  # every event at least twice
    await world.drain()
    return early + events


async def assert_answers(world: World, d_created: datetime = D_CREATED) -> None:
    """The exact answers to the data set. ``d_created``: D's creation time as the
    read model has it (to the second where it came from a MariaDB order shard)."""
    # B is cancelled: not a sale. sku-2 and sku-3 tie on units: by product id.
    assert await world.top("2030-03-04") == [
        (SKU2, 4, "12.00", USD),
        (SKU3, 4, "9.00", USD),
        (SKU1, 2, "21.00", USD),
        (SKU1, 1, "9.00", EUR),
    ]
    assert await world.top("2030-03-04", limit=2) == [(SKU2, 4, "12.00", USD), (SKU3, 4, "9.00", USD)]
    assert await world.top("2030-03-05") == [(SKU1, 5, "52.50", USD)]
    assert await world.top("2030-03-06") == []

    hourly = await world.summary(at(D1, 10, 30), at(D1, 11, 30), analytics_pb2.HOUR)
    assert hourly == [
        (at(D1, 10, 0), EUR, 1, "9.00", [("PAID", 1, "9.00")]),
        (at(D1, 10, 0), USD, 2, "29.00", [("SHIPPED", 1, "29.00"), ("CANCELLED", 1, "15.50")]),
        (at(D1, 11, 0), USD, 2, "19.00", [("AWAITING_REVIEW", 1, "10.00"), ("PAID", 1, "9.00")]),
    ]
    daily = await world.summary(D1, at(D2, 12, 0), analytics_pb2.DAY)
    assert daily == [
        (D1, EUR, 1, "9.00", [("PAID", 1, "9.00")]),
        (D1, USD, 4, "48.00",
         [("AWAITING_REVIEW", 1, "10.00"), ("PAID", 1, "9.00"), ("SHIPPED", 1, "29.00"), ("CANCELLED", 1, "15.50")]),
        (D2, USD, 1, "52.50", [("PAID", 1, "52.50")]),
    ]  # fmt: skip

    # Across both shards, newest first, page after page.
    assert await world.search() == [E, D, C, B, F, A]  # G never arrived: in no answer
    assert await world.search(page_size=2) == [E, D, C, B, F, A]
    assert await world.search(email="ADA@example.COM", page_size=2) == [C, F, A]
    assert await world.search(user_id="grace") == [E, B]
    assert await world.search(status=common_pb2.CANCELLED) == [B]
    assert await world.search(status=common_pb2.PAID) == [E, C, F]
    window = {"from": stamp(at(D1, 10, 10)), "to": stamp(d_created)}
    assert await world.search(**window) == [C, B, F]  # from inclusive, to exclusive
    reply = await world.stub.SearchOrders(analytics_pb2.SearchOrdersRequest(user_id="linus"))
    [d] = reply.orders
    assert (d.order_id, d.user_id, d.email, d.status) == (D, "linus", "linus@example.com", common_pb2.AWAITING_REVIEW)
    assert (amount(d.total), d.total.currency_code) == ("10.00", USD)
    assert d.created_at.ToDatetime(tzinfo=UTC) == d_created
