"""The analytics context on real Redis and real SQL (SQLite and MariaDB): order
events of two shards in through the real consumers, out of order and more
than once, and the three queries' exact answers through gRPC."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from analytics.events import parse
from analytics.facts import Placed
from mesh.local.procs import RedisServer
from ordermesh.analytics.v1 import analytics_pb2
from ordermesh.common.v1 import common_pb2
from tests.analytics_support import money, order_placed, stamp, status_changed
from tests.analytics_world import (
    D1,
    PLACED,
    SKU1,
    SKU3,
    USD,
    A,
    B,
    C,
    World,
    assert_answers,
    at,
    load,
    settings_for,
    world_for,
)
from tests.integration.test_payment import violations


@pytest.fixture
async def world(database_url: str, redis_server: RedisServer) -> AsyncIterator[World]:
    async with world_for(settings_for(database_url, redis_server.url)) as world:  # the test drives the consumers
        yield world


async def test_the_three_queries_give_exact_answers_on_a_known_data_set(world: World) -> None:
    await load(world)
    await assert_answers(world)


async def test_replaying_every_event_changes_nothing(world: World) -> None:
    sent = await load(world)
    await world.send(*reversed(sent))
    await world.drain()
    await assert_answers(world)


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
    async with world_for(settings, own_workers=True) as world:
        await world.send(status_changed(B, common_pb2.CANCELLED, at(D1, 10, 50)), PLACED[B], PLACED[C])
        await world.drain()
        assert await world.search(status=common_pb2.CANCELLED) == [B]  # cancelled before it was placed
        assert await world.top("2030-03-04") == [(SKU3, 4, "9.00", USD)]
