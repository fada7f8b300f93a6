"""``python -m analytics backfill``: the read model caught up from two real order
shards (SQLite files, or two MariaDB databases), written by the order context's
own store, then the events on top of it, out of order and more than once: the
three queries' exact answers throughout, nothing counted twice."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from analytics.backfill import ShardBackfill, backfill
from analytics.bootstrap import order_shards
from analytics.facts import BACKFILL
from analytics.models import order_index
from common.order_ids import shard_of_order
from mesh.clock import utc_now
from mesh.db import create_engine, create_schema, reading
from mesh.local.procs import MariaDBServer, RedisServer
from order import models as order_models
from order.events import placed_order, status_changed
from order.orders import Transition
from order.state import Status
from order.store import OrderStore
from ordermesh.analytics.v1 import analytics_pb2
from ordermesh.common.v1 import common_pb2
from ordermesh.events.v1 import events_pb2
from tests.analytics_support import status_changed as status_event
from tests.analytics_world import (
    D1,
    D_CREATED,
    PLACED,
    SKU3,
    A,
    B,
    C,
    G,
    World,
    analytics_command,
    assert_answers,
    at,
    b_changes,
    changes,
    load,
    settings_for,
    world_for,
)

# The order context stamps a history row with the time it began the change, and
# the event it relays for it a moment later.
HISTORY_BEFORE_EVENT = timedelta(milliseconds=1)


@pytest.fixture
def new_database(database_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], str]:
    """Another fresh, empty database on the backend of ``database_url``."""
    if database_url.startswith("sqlite"):
        return lambda: f"sqlite+aiosqlite:///{tmp_path / uuid.uuid4().hex[:8]}.db"
    server: MariaDBServer = request.getfixturevalue("mariadb_server")

    def make() -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        server.create_database(name)
        return server.url(name)

    return make


@pytest.fixture
async def shards(new_database: Callable[[], str]) -> AsyncIterator[list[OrderStore]]:
    """Two order shards holding the data set's orders (o0- and o1-), as the order context stores them."""
    stores = []
    for _ in range(2):
        engine = create_engine(new_database())
        await create_schema(engine, order_models.metadata)
        stores.append(OrderStore(engine, status_changed))
    for envelope in PLACED.values():
        order = placed_order(envelope)
        await shard(stores, order.order_id).insert([order], order.created_at)
    for change in sorted(b_changes() + changes(), key=lambda e: e.occurred_at.ToDatetime()):
        await change_in_shard(stores, change)  # G's finds no order: in no shard
    yield stores
    for store in stores:
        await store.engine.dispose()


def shard(stores: list[OrderStore], order_id: str) -> OrderStore:
    number = shard_of_order(order_id, len(stores))
    assert number is not None
    return stores[number]


async def change_in_shard(stores: list[OrderStore], change: events_pb2.Envelope) -> None:
    """The change an OrderStatusChanged relays, made in its order's shard (a status
    the order has already is refused there as illegal, and changes nothing)."""
    status = Status(common_pb2.OrderStatus.Name(change.order_status_changed.to_status))
    made = change.occurred_at.ToDatetime(tzinfo=UTC) - HISTORY_BEFORE_EVENT
    await shard(stores, change.order_id).apply(Transition(change.order_id, change.event_id, status, "test"), made)


@pytest.fixture
async def world(database_url: str, redis_server: RedisServer, shards: list[OrderStore]) -> AsyncIterator[World]:
    urls = ",".join(store.engine.url.render_as_string(hide_password=False) for store in shards)
    settings = settings_for(database_url, redis_server.url, order_database_urls=urls, backfill_page_size=2)
    async with world_for(settings) as world:
        yield world


def created_d(world: World) -> datetime:
    """D's creation time as its order shard keeps it: MariaDB's DATETIME keeps whole
    seconds (truncated: never into the next hour), SQLite the microseconds."""
    whole_seconds = world.parts.engine.dialect.name != "sqlite"
    return D_CREATED.replace(microsecond=0) if whole_seconds else D_CREATED


async def run_backfill(world: World) -> list[ShardBackfill]:
    """The backfill in this process (the test counts what it did)."""
    sources = order_shards(world.settings)
    try:
        return await backfill(sources, world.parts.store, utc_now, world.settings.backfill_page_size)
    finally:
        for source in sources:
            await source.close()


async def test_a_fresh_read_model_backfilled_from_two_shards_gives_the_exact_answers(world: World) -> None:
    code, out = await analytics_command(world.settings, "backfill")
    assert code == 0, out
    # Three orders a shard, read two at a time; G is in no shard.
    assert out.splitlines() == [
        "shard 0: 3 orders read, 3 added or brought up to date",
        "shard 1: 3 orders read, 3 added or brought up to date",
    ]
    await assert_answers(world, created_d(world))
    async with reading(world.parts.engine) as connection:
        marks = (await connection.execute(select(order_index.c.status_event))).scalars().all()
    assert marks == [BACKFILL] * 6  # each status stamped as the backfill's

    # Again: the read model already knows every order as it stands.
    assert [r.changed for r in await run_backfill(world)] == [0, 0]
    await assert_answers(world, created_d(world))


async def test_every_event_after_a_backfill_counts_nothing_twice(world: World) -> None:
    await run_backfill(world)
    sent = await load(world)  # every event of the data set, out of order, at least twice
    await assert_answers(world, created_d(world))
    await world.send(*reversed(sent))
    await world.drain()
    await assert_answers(world, created_d(world))
    # Each status now stands on the event that set it: stamped after its history row.
    async with reading(world.parts.engine) as connection:
        marks = (await connection.execute(select(order_index.c.status_event))).scalars().all()
    assert BACKFILL not in marks


async def test_a_read_model_that_missed_events_is_completed_and_the_rest_still_counts_once(world: World) -> None:
    # Only some events arrived: B's changes without its order, A's order, G's change.
    g_paid = changes()[-1]
    assert g_paid.order_id == G
    await world.send(*b_changes(), PLACED[A], g_paid)
    await world.drain()
    assert await world.search() == [A]
    # Shard 0: A brought up to date (SHIPPED), C and E added. Shard 1: B's order
    # under the CANCELLED its event set, D and F added.
    assert [r.changed for r in await run_backfill(world)] == [3, 3]
    await assert_answers(world, created_d(world))
    await load(world)
    await assert_answers(world, created_d(world))


async def test_a_backfill_brings_a_status_up_to_date_and_its_event_then_changes_nothing(
    world: World, shards: list[OrderStore]
) -> None:
    await load(world)
    assert (await world.top("2030-03-04"))[1][0] == SKU3
    # C is cancelled while this read model misses the event: the next backfill takes it.
    cancelled = status_event(C, common_pb2.CANCELLED, at(D1, 12, 0))
    await change_in_shard(shards, cancelled)
    assert [r.changed for r in await run_backfill(world)] == [1, 0]
    assert await world.search(status=common_pb2.CANCELLED) == [C, B]
    assert SKU3 not in [product for product, *_ in await world.top("2030-03-04")]
    # Then its event arrives, stamped after the history row: the same status, nothing moves.
    before = await world.summary(D1, D1 + timedelta(days=2), analytics_pb2.DAY)
    await world.send(cancelled)
    await world.drain()
    assert await world.summary(D1, D1 + timedelta(days=2), analytics_pb2.DAY) == before
