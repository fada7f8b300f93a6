"""The analytics context on real Redis and real SQL (SQLite and MariaDB): order
events of two shards in through the real consumers, out of order and more
than once, and the three queries' exact answers through gRPC."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from analytics.bootstrap import Components, bootstrap, build_consumers, components
from analytics.events import parse
from analytics.facts import Placed
from analytics.settings import AnalyticsSettings
from mesh.bus import encode_fields
from mesh.bus.redis_streams import RedisPublisher, StreamConsumer
from mesh.local.procs import RedisServer
from ordermesh.analytics.v1 import analytics_pb2, analytics_pb2_grpc
from ordermesh.common.v1 import common_pb2
from ordermesh.events.v1 import events_pb2
from tests.analytics_support import money, order_placed, stamp, status_changed
from tests.integration.test_payment import violations
from tests.support import eventually, serving

D1 = datetime(2030, 3, 4, tzinfo=UTC)
D2 = D1 + timedelta(days=1)
USD, EUR = "USD", "EUR"


def at(day: datetime, hour: int, minute: int, second: int = 0, micro: int = 0) -> datetime:
    return day.replace(hour=hour, minute=minute, second=second, microsecond=micro)


def settings_for(database_url: str, redis_url: str) -> AnalyticsSettings:
    prefix = uuid.uuid4().hex[:8]
    return AnalyticsSettings(
        grpc_host="127.0.0.1",
        grpc_port=0,
        metrics_port=0,
        database_url=database_url,
        redis_url=redis_url,
        order_placed_stream=f"{prefix}:order-placed",
        order_status_stream=f"{prefix}:order-status",
        consumer_max_attempts=2,
    )


@dataclass
class World:
    settings: AnalyticsSettings
    parts: Components
    consumers: list[StreamConsumer]
    stub: analytics_pb2_grpc.AnalyticsServiceAsyncStub

    async def send(self, *envelopes: events_pb2.Envelope) -> None:
        """Each event on its stream, as the catalog and the order outbox append them."""
        publisher = RedisPublisher(self.parts.client)
        for envelope in envelopes:
            placed = envelope.WhichOneof("payload") == "order_placed"
            stream = self.settings.order_placed_stream if placed else self.settings.order_status_stream
            await publisher.publish(stream, encode_fields(envelope))

    async def drain(self) -> None:
        for consumer in self.consumers:
            await consumer.run_until_idle()

    async def top(self, day: str, limit: int = 0) -> list[tuple[str, int, str, str]]:
        reply = await self.stub.TopProducts(analytics_pb2.TopProductsRequest(day=day, limit=limit))
        return [(p.product_id, p.units, _amount(p.revenue), p.revenue.currency_code) for p in reply.products]

    async def summary(self, since: datetime, until: datetime, bucket: int) -> list[tuple[object, ...]]:
        request = analytics_pb2.SalesSummaryRequest(to=stamp(until), bucket=bucket)  # type: ignore[arg-type]
        getattr(request, "from").CopyFrom(stamp(since))  # ``from`` is a Python keyword
        reply = await self.stub.SalesSummary(request)
        return [
            (
                b.start.ToDatetime(tzinfo=UTC),
                b.revenue.currency_code,
                b.orders,
                _amount(b.revenue),
                [(common_pb2.OrderStatus.Name(s.status), s.orders, _amount(s.revenue)) for s in b.by_status],
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


def _amount(value: common_pb2.Money) -> str:
    return f"{value.units}.{value.nanos // 10_000_000:02d}"


@pytest.fixture
async def world(database_url: str, redis_server: RedisServer) -> AsyncIterator[World]:
    settings = settings_for(database_url, redis_server.url)
    app = await bootstrap(settings, workers=False)  # the test drives the consumers, deterministically
    parts = components(app)
    async with serving(app) as (_server, channel):
        yield World(
            settings,
            parts,
            build_consumers(parts, settings, app.tracer),
            analytics_pb2_grpc.AnalyticsServiceStub(channel),
        )


# The known data set: six orders on two shards (o0-, o1-), two days, two currencies.
A, B, C, D, E, F = "o0-000000a1", "o1-000000b2", "o0-000000c3", "o1-000000d4", "o0-000000e5", "o1-000000f6"
G = "o0-000000a7"  # only a status change of it ever arrives
SKU1, SKU2, SKU3 = "sku-1", "sku-2", "sku-3"
PLACED = {
    # 29.00: 2 x 10.50 + 3.00 + 5.00 shipping; ends SHIPPED
    A: order_placed(A, at(D1, 10, 5), [(SKU1, 2, money(10, 500_000_000)), (SKU2, 1, money(3))], shipping=money(5),
                    user_id="ada", email="Ada@Example.com"),
    # 15.50; declined: CANCELLED (its statuses arrive before it, and in reverse)
    B: order_placed(B, at(D1, 10, 40), [(SKU1, 1, money(10, 500_000_000))], shipping=money(5),
                    user_id="grace", email="grace@example.com"),
    # 9.00: 4 x 2.25; PAID (an older PENDING arrives late)
    C: order_placed(C, at(D1, 11, 20), [(SKU3, 4, money(2, 250_000_000))], user_id="ada", email="ada@example.com"),
    # 10.00: 3 x 3.00 + 1.00; waits for review, in the last microsecond of the hour
    D: order_placed(D, at(D1, 11, 59, 59, 999_999), [(SKU2, 3, money(3))], shipping=money(1),
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


async def load(world: World) -> list[events_pb2.Envelope]:
    """The data set, out of order and with duplicates; returns every event sent."""
    b_changes = [
        status_changed(B, common_pb2.CANCELLED, at(D1, 10, 50)),
        status_changed(B, common_pb2.PENDING, at(D1, 10, 40, 1)),
    ]
    await world.send(*b_changes, *b_changes)  # before B's OrderPlaced, newest first, twice
    await world.drain()
    events = [*changes(), *PLACED.values()]
    await world.send(*events[::2], *events, *events[1::2])  # every event at least twice
    await world.drain()
    return b_changes + events


async def test_the_three_queries_give_exact_answers_on_a_known_data_set(world: World) -> None:
    await load(world)
    await assert_answers(world)


async def test_replaying_every_event_changes_nothing(world: World) -> None:
    sent = await load(world)
    await world.send(*reversed(sent))
    await world.drain()
    await assert_answers(world)


async def assert_answers(world: World) -> None:
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
    window = {"from": stamp(at(D1, 10, 10)), "to": stamp(at(D1, 11, 59, 59, 999_999))}
    assert await world.search(**window) == [C, B, F]  # from inclusive, to exclusive
    reply = await world.stub.SearchOrders(analytics_pb2.SearchOrdersRequest(user_id="linus"))
    [d] = reply.orders
    assert (d.order_id, d.user_id, d.email, d.status) == (D, "linus", "linus@example.com", common_pb2.AWAITING_REVIEW)
    assert (_amount(d.total), d.total.currency_code) == ("10.00", USD)
    assert d.created_at.ToDatetime(tzinfo=UTC) == at(D1, 11, 59, 59, 999_999)


async def test_a_malformed_event_is_dead_lettered_and_the_others_flow(world: World) -> None:
    await world.parts.client.xadd(
        world.settings.order_status_stream, {"type": "OrderStatusChanged", "order_id": A, "event": b"\xff garbage"}
    )
    await world.send(PLACED[A])
    await world.drain()
    assert await world.search() == [A]
    [letter] = await world.parts.dead_letters().pending()
    assert (letter.stream, letter.order_id, letter.attempts) == (world.settings.order_status_stream, A, 2)
    assert "undecodable envelope" in letter.reason


async def test_an_event_a_column_cannot_hold_is_refused_alone(world: World) -> None:
    """What parsing lets through but the database refuses (DataError) fails only its own
    event. SQLite does not enforce column widths: there it is stored whole."""
    good = parse(PLACED[A].SerializeToString())
    too_wide = parse(order_placed(B, at(D1, 11, 0), [(SKU1, 1, money(1))]).SerializeToString())
    assert isinstance(too_wide, Placed)
    too_wide = replace(too_wide, order=replace(too_wide.order, user_id="u" * 129))
    refused = await world.parts.store.apply([too_wide, good], datetime.now(UTC))
    if world.parts.engine.dialect.name == "sqlite":
        assert (list(refused), sorted(await world.search())) == ([], sorted([A, B]))
    else:
        assert list(refused) == [too_wide.event_id]
        assert await world.search() == [A]


async def test_bad_input_is_invalid_argument_naming_the_field(world: World) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await world.stub.TopProducts(analytics_pb2.TopProductsRequest(day="2030-13-01"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(caught.value) == ["day"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await world.stub.SalesSummary(analytics_pb2.SalesSummaryRequest(to=stamp(D1), bucket=analytics_pb2.DAY))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(caught.value) == ["from"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await world.stub.SearchOrders(analytics_pb2.SearchOrdersRequest(page_token="garbage!"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(caught.value) == ["page_token"]


async def test_the_process_consumes_both_streams_with_its_own_workers(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """bootstrap as ``python -m analytics`` runs it (embedded transport): events in, answers out."""
    settings = settings_for(f"sqlite+aiosqlite:///{tmp_path / 'analytics.db'}", redis_server.url)
    app = await bootstrap(settings)
    async with serving(app) as (_server, channel):
        stub = analytics_pb2_grpc.AnalyticsServiceStub(channel)
        world = World(settings, components(app), [], stub)
        await world.send(status_changed(B, common_pb2.CANCELLED, at(D1, 10, 50)), PLACED[B], PLACED[C])

        async def found() -> bool:
            reply = await stub.SearchOrders(analytics_pb2.SearchOrdersRequest(status=common_pb2.CANCELLED))
            return [o.order_id for o in reply.orders] == [B]

        await eventually(found, within=20, what="B, cancelled before it was placed, found by status")
        assert await world.top("2030-03-04") == [(SKU3, 4, "9.00", USD)]
