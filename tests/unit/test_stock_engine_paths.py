"""The stock engine's choice of path (catalog/engine.py) with fake Redis stock, SQL path and quota.

Redis that does not answer twice moves the replica to the SQL path until a probe
finds it answering; a Redis that answers but refuses is UNAVAILABLE to the caller
and never a reason to leave it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from catalog.engine import Path
from catalog.stock import Line, RedisDown
from mesh.errors import Unavailable
from mesh.money import Money
from ordermesh.common.v1 import common_pb2
from tests.support import eventually
from tests.unit.stock_fakes import Stock, product, stock_engine

PEN = "sku-pen"
DRAFT = common_pb2.OrderDraft(user_id="u1")


@pytest.fixture
async def stock() -> AsyncIterator[Stock]:
    under_test = stock_engine([product(PEN, Money.of("USD", 2))], counters={PEN: 10}, unallocated={PEN: 50})
    yield under_test
    await under_test.engine.close()  # stops a probe a test left running


async def test_one_failure_is_retried_on_redis(stock: Stock) -> None:
    # A pooled connection broken by a Redis restart fails once, then reconnects.
    stock.redis.failures = [RedisDown("connection reset")]
    reserved = await stock.engine.reserve("o-1", [Line(PEN, 2)], DRAFT)
    assert not reserved.already_reserved
    assert stock.engine.path is Path.REDIS
    assert stock.redis.calls == ["reserve o-1", "reserve o-1"] and stock.sql.calls == []
    assert stock.redis.counters_[PEN] == 8 and stock.quota.sales == [(PEN, 2)]


async def test_two_failures_move_the_replica_to_the_sql_path(stock: Stock) -> None:
    stock.redis.failures = [RedisDown("refused"), RedisDown("refused")]
    stock.redis.answers = False  # the probe finds it still down
    reserved = await stock.engine.reserve("o-1", [Line(PEN, 3)], DRAFT)
    assert not reserved.already_reserved and reserved.total == Money.of("USD", 6)
    assert stock.engine.path is Path.SQL and stock.engine.on_sql
    assert stock.sql.calls == ["reserve o-1"] and stock.sql.levels[PEN].unallocated == 47
    assert stock.redis.counters_[PEN] == 10, "the two paths never sell the same unit"
    # While on SQL, reservations go straight there: no more waiting for a dead Redis.
    await stock.engine.reserve("o-2", [Line(PEN, 1)], DRAFT)
    assert stock.redis.calls == ["reserve o-1", "reserve o-1"]
    assert stock.sql.calls == ["reserve o-1", "reserve o-2"]


async def test_the_probe_brings_the_replica_back_to_redis(stock: Stock) -> None:
    stock.redis.failures = [RedisDown("timeout"), RedisDown("timeout")]
    stock.redis.answers = False
    await stock.engine.reserve("o-1", [Line(PEN, 1)], DRAFT)
    await eventually(lambda: stock.redis.pings >= 3, within=5, what="the probe to ping a down Redis", every=0.001)
    assert stock.engine.path is Path.SQL, "a Redis that does not answer the probe is not trusted yet"
    stock.redis.answers = True
    await eventually(
        lambda: stock.engine.path is Path.REDIS, within=5, what="the probe to find Redis answering", every=0.001
    )
    await stock.engine.reserve("o-2", [Line(PEN, 1)], DRAFT)
    assert stock.redis.calls[-1] == "reserve o-2" and stock.sql.calls == ["reserve o-1"]


async def test_a_probe_that_fails_keeps_probing(stock: Stock) -> None:
    stock.redis.failures = [RedisDown("down"), RedisDown("down"), RuntimeError("probe blew up")]
    await stock.engine.reserve("o-1", [Line(PEN, 1)], DRAFT)
    await eventually(
        lambda: stock.engine.path is Path.REDIS, within=5, what="the probe to outlive its own failure", every=0.001
    )
    assert stock.redis.pings >= 2


async def reserve(stock: Stock) -> object:
    return await stock.engine.reserve("o-1", [Line(PEN, 1)], DRAFT)


async def release(stock: Stock) -> object:
    return await stock.engine.release("o-1")


async def levels(stock: Stock) -> object:
    return await stock.engine.stock_levels([PEN])


@pytest.mark.parametrize("operation", [reserve, release, levels], ids=["reserve", "release", "stock_levels"])
async def test_a_refusing_redis_is_unavailable_and_never_switches_paths(
    stock: Stock, operation: Callable[[Stock], Awaitable[object]]
) -> None:
    # READONLY after a failover, MISCONF, OOM, a pool with no free connection.
    stock.redis.failures = [Unavailable("Redis refused the call (READONLY); retry"), Unavailable("again")]
    with pytest.raises(Unavailable, match="READONLY"):
        await operation(stock)
    assert stock.engine.path is Path.REDIS
    assert len(stock.redis.calls) == 1, "a refusal is not retried as if the connection broke"
    assert stock.sql.calls == []
    assert stock.redis.pings == 0, "no probe: the replica never left Redis"


async def test_a_release_on_the_sql_path_of_a_redis_reservation_is_unavailable(stock: Stock) -> None:
    await stock.engine.reserve("o-redis", [Line(PEN, 1)], DRAFT)
    stock.redis.failures = [RedisDown("down"), RedisDown("down")]
    stock.redis.answers = False
    with pytest.raises(Unavailable, match="o-redis cannot be checked while Redis is down"):
        await stock.engine.release("o-redis")
    assert stock.engine.path is Path.SQL
    assert stock.redis.marked["o-redis"][1] is False, "still reserved: nothing was given back twice"


async def test_a_repeat_after_release_says_released(stock: Stock) -> None:
    await stock.engine.reserve("o-1", [Line(PEN, 2)], DRAFT)
    assert await stock.engine.release("o-1") is True
    assert await stock.engine.release("o-1") is False
    again = await stock.engine.reserve("o-1", [Line(PEN, 2)], DRAFT)
    assert again.already_reserved and again.released
    assert stock.redis.counters_[PEN] == 10
