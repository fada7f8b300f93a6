"""``python -m analytics dead-letters`` and ``python -m analytics replay [ID ...]``
as an operator runs them, against the analytics database (SQLite and MariaDB)
and real Redis streams (the embedded transport; the RocketMQ topics are
test_analytics_rocketmq's)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from analytics.settings import AnalyticsSettings
from mesh.bus.dead_letters import DeadLetter
from mesh.local.procs import RedisServer
from tests.analytics_world import PLACED, A, B, World, analytics_command, settings_for, world_for


@pytest.fixture
async def world(database_url: str, redis_server: RedisServer) -> AsyncIterator[World]:
    async with world_for(settings_for(database_url, redis_server.url)) as world:
        yield world


async def test_a_dead_letter_is_listed_and_replayed_to_its_stream_where_it_fails_again(world: World) -> None:
    stream = world.settings.order_status_stream
    await world.parts.client.xadd(stream, {"type": "OrderStatusChanged", "order_id": A, "event": b"\xff garbage"})
    await world.drain()
    dead = world.parts.dead_letters()
    [letter] = await dead.pending()

    code, listing = await analytics_command(world.settings, "dead-letters")
    assert code == 0, listing
    [line] = listing.splitlines()
    assert line.startswith(f"{letter.id}\t{stream}\tOrderStatusChanged\t{A}\t2\t")
    assert "undecodable envelope" in line

    code, replayed = await analytics_command(world.settings, "replay", str(letter.id))
    assert (code, replayed.strip()) == (0, "replayed 1 dead letters"), replayed
    await world.drain()  # the cause is not fixed: dead-lettered again, and listed again
    [again] = await dead.pending()
    assert (again.id != letter.id, again.payload) == (True, letter.payload)


async def test_replay_after_the_cause_is_fixed_takes_the_event_into_the_read_model(world: World) -> None:
    """A letter an older version refused (say, a status it did not know yet): the
    payload is good now, and a replay is all it takes."""
    letter = DeadLetter(0, world.settings.order_placed_stream, "1-0", "OrderPlaced", B, "unknown order status", 5,
                        PLACED[B].SerializeToString())  # fmt: skip
    await world.parts.dead_letters().store(letter, datetime.now(UTC))
    code, replayed = await analytics_command(world.settings, "replay")
    assert (code, replayed.strip()) == (0, "replayed 1 dead letters"), replayed
    await world.drain()
    assert await world.search() == [B]
    assert await world.parts.dead_letters().pending() == []
    code, listing = await analytics_command(world.settings, "dead-letters")
    assert (code, listing) == (0, "")


@pytest.mark.parametrize("args", [["nonsense"], ["replay", "twelve"], ["backfill", "now"]])
async def test_a_command_it_does_not_know_prints_the_usage(args: list[str]) -> None:
    code, output = await analytics_command(AnalyticsSettings(), *args)
    assert code == 2
    assert output.startswith("usage: python -m analytics [serve | dead-letters | replay [ID ...] | backfill]")


async def test_a_backfill_from_a_database_without_orders_stops_saying_why(tmp_path: Path) -> None:
    settings = AnalyticsSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'analytics.db'}",
        order_database_urls=f"sqlite+aiosqlite:///{tmp_path / 'not-an-order-shard.db'}",
    )
    code, output = await analytics_command(settings, "backfill")
    assert (code, output.strip()) == (1, "ordermesh-analytics: backfill stopped: no such table: orders")
