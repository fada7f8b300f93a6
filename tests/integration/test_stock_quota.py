"""Quota allocation under the faults that break "no oversell": a replica
partitioned from Redis while another sells, Redis restarted empty, the SQL
path across a restart, releases on the other path, Redis refusing writes."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis
from sqlalchemy import select

from catalog.models import stock_epochs, stock_outbox, stock_releases
from catalog.settings import CatalogSettings
from catalog.stock import Line
from mesh.db import reading
from mesh.local.procs import RedisServer, free_port
from mesh.redis_pool import PoolExhausted, connect
from ordermesh.catalog.v1 import catalog_pb2
from tests.integration.catalog_support import CatalogUnderTest, catalog_settings, running_catalog
from tests.proxy import Proxy
from tests.support import eventually

TYPEWRITER, CAMERA, PLENTY = "sku-1001", "sku-1002", "sku-1004"


def shared(**overrides: object) -> dict[str, object]:
    """Settings for several catalog replicas of one deployment: one key prefix and stream."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    return {"catalog_key_prefix": prefix, "order_stream": f"{prefix}:orders", **overrides}


@pytest.fixture
async def proxy(redis_server: RedisServer) -> AsyncIterator[Proxy]:
    proxy = await Proxy(redis_server.port).start()
    yield proxy
    await proxy.stop()


def behind(proxy: Proxy, database_url: str) -> CatalogSettings:
    """A catalog that reaches Redis through ``proxy``, quick to notice a cut, and
    refilling in small steps: most of the stock stays in SQL, for the SQL path to sell."""
    return catalog_settings(
        database_url,
        proxy.url,
        redis_timeout_seconds=0.2,
        stock_probe_interval_seconds=0.1,
        stock_min_refill=5,
        stock_max_refill=5,
    )


async def on_path(catalog: CatalogUnderTest, path: int) -> None:
    async def there() -> bool:
        return catalog.metric("ordermesh_stock_path") == path

    await eventually(there, within=15, what=f"stock path {path}")


async def published(catalog: CatalogUnderTest) -> None:
    async def done() -> bool:
        return (await catalog.audit()).unpublished == 0

    await eventually(done, within=15, what="the SQL path's orders published")


async def test_two_replicas_one_partitioned_from_redis_never_oversell(
    database_url: str, redis_server: RedisServer, proxy: Proxy
) -> None:
    common = shared(
        redis_timeout_seconds=0.3,
        stock_probe_interval_seconds=0.2,
        stock_min_refill=10,
        stock_max_refill=30,
        max_concurrent_rpcs=4000,
    )
    initial = 2000
    sold: dict[str, list[str]] = {"a": [], "b": []}
    refused: list[str] = []
    stop = asyncio.Event()
    replica_b = catalog_settings(database_url, redis_server.url, flusher_enabled=True, **common)
    replica_a = catalog_settings(database_url, proxy.url, **common)  # reaches Redis through the proxy
    async with running_catalog(replica_b) as b, running_catalog(replica_a) as a:
        await b.set_stock(TYPEWRITER, initial)

        async def buyer(replica: CatalogUnderTest, name: str, n: int) -> None:
            i = 0
            while not stop.is_set():
                order_id = f"{name}{n}-{i}"
                i += 1
                try:
                    await replica.reserve(order_id, (TYPEWRITER, 1))
                    sold[name].append(order_id)
                except grpc.aio.AioRpcError as error:
                    if error.code() != grpc.StatusCode.FAILED_PRECONDITION:
                        refused.append(f"{order_id}: {error.code().name} {error.details()}")
                await asyncio.sleep(0.005)

        buyers = [asyncio.create_task(buyer(r, name, n)) for r, name in ((a, "a"), (b, "b")) for n in range(3)]
        try:
            await asyncio.sleep(0.3)
            proxy.cut()  # replica a loses Redis; b keeps selling from it
            await on_path(a, 1)
            before = len(sold["a"])

            async def sells_from_sql() -> bool:  # the partitioned replica, from unallocated SQL stock
                return len(sold["a"]) > before + 20

            await eventually(sells_from_sql, within=10, what="sales on the partitioned replica")
            proxy.heal()
            await on_path(a, 0)

            async def sold_out() -> bool:
                return (await b.stock(TYPEWRITER)) == 0

            await eventually(sold_out, within=30, what="the product sold out")
        finally:
            stop.set()
            await asyncio.gather(*buyers, return_exceptions=True)

        await published(a)
        await b.assert_clean()
        assert refused == []
        assert (a.metric("ordermesh_stock_reservations_total", {"path": "sql"}) or 0) > 0
        every = sold["a"] + sold["b"]
        assert len(every) == len(set(every)) <= initial
        level = await b.level(TYPEWRITER)
        assert initial - level.stock == len(every), "units sold in SQL's record = orders answered"
        streamed = await b.placed_order_ids()
        assert sorted(streamed) == sorted(every), "every sale has exactly one OrderPlaced"


async def test_redis_restarted_empty_strands_its_allocation_until_reclaimed(database_url: str, tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis", free_port()).start()  # no persistence: a restart comes back empty
    settings = catalog_settings(
        database_url,
        redis.url,
        redis_timeout_seconds=0.3,
        stock_probe_interval_seconds=0.1,
        stock_min_refill=20,
        stock_max_refill=20,
        stock_refill_interval_seconds=3600,  # inline refills only: the test knows every allocation
    )
    try:
        async with running_catalog(settings) as catalog:
            await catalog.set_stock(TYPEWRITER, 100)
            for i in range(15):
                await catalog.reserve(f"old-{i}", (TYPEWRITER, 1))
            await catalog.flusher.run_until_idle()
            for i in range(5):  # sold, never flushed: lost with Redis's data
                await catalog.reserve(f"lost-{i}", (TYPEWRITER, 1))
            before = await catalog.level(TYPEWRITER)
            assert before.stock == 85 and before.allocated == 20 - 15
            held = before.allocated
            await asyncio.to_thread(redis.kill)
            await asyncio.to_thread(redis.start)

            # A new epoch starts; only units SQL never allocated are sold now.
            sold_after = 0
            for i in range(200):
                try:
                    await catalog.reserve(f"new-{i}", (TYPEWRITER, 1))
                    sold_after += 1
                except grpc.aio.AioRpcError as error:
                    if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                        break
                    assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()
                    await asyncio.sleep(0.1)  # the connection broken by the restart, once
            assert sold_after == before.unallocated == 80
            await catalog.flush()
            after = await catalog.level(TYPEWRITER)
            assert (after.stock, after.allocated, after.stranded) == (5, held, held)
            # Every product's allocation to the lost Redis is stranded (each had a first one at start-up).
            stranded = {pid: level.stranded for pid, level in (await catalog.parts.ledger.levels()).items()}
            assert stranded[TYPEWRITER] == held and all(units > 0 for units in stranded.values())
            assert catalog.metric("ordermesh_stock_stranded_units") == sum(stranded.values())
            result = await catalog.audit()
            assert not result.clean
            assert [r.verdict for r in result.rows if r.product_id == TYPEWRITER] == ["STRANDED"]

            code, output = await catalog.command("reclaim")
            assert code == 1 and f"{TYPEWRITER:<20} {held:>8} stranded" in output
            code, output = await catalog.command("reclaim", "--yes")
            assert code == 0 and f"{TYPEWRITER:<20} {held:>8} returned" in output
            assert await catalog.level(TYPEWRITER) == type(after)(stock=5, allocated=0, stranded=0)
            await catalog.assert_clean()

            async def sells_again() -> bool:
                try:
                    await catalog.reserve(f"again-{uuid.uuid4().hex[:6]}", (TYPEWRITER, 1))
                except grpc.aio.AioRpcError:
                    return False
                return True

            await eventually(sells_again, within=5, what="reclaimed units on sale")
            await catalog.assert_clean()
    finally:
        redis.stop()


async def test_orders_sold_on_the_sql_path_reach_the_stream_after_a_restart(
    database_url: str, redis_server: RedisServer
) -> None:
    common = shared(stock_path="sql", redis_timeout_seconds=0.2)
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    async with running_catalog(catalog_settings(database_url, unreachable, **common)) as first:
        for i in range(20):
            await first.reserve(f"s-{i}", (CAMERA, 1))
        assert first.metric("ordermesh_stock_reservations_total", {"path": "sql"}) == 20
        assert await first.count(stock_outbox) == 20, "no Redis: nothing could be published yet"
    # Restarted (still on the SQL path), now with Redis: the relay publishes them.
    async with running_catalog(catalog_settings(database_url, redis_server.url, **common)) as second:
        expected = [f"s-{i}" for i in range(20)]

        async def all_streamed() -> bool:
            return sorted(await second.placed_order_ids()) == sorted(expected)

        await eventually(all_streamed, within=5, what="the first process's orders on the stream")
        for i in range(20, 25):
            await second.reserve(f"s-{i}", (CAMERA, 1))
        expected += [f"s-{i}" for i in range(20, 25)]
        await eventually(all_streamed, within=5, what="new SQL-path orders on the stream")
        assert await second.stock(CAMERA) == 40 - 25
        await second.assert_clean()


async def test_release_goes_back_where_the_reservation_was_taken(database_url: str, proxy: Proxy) -> None:
    async with running_catalog(behind(proxy, database_url)) as catalog:

        async def release(order_id: str) -> bool:
            reply = await catalog.stub.ReleaseStock(catalog_pb2.ReleaseStockRequest(order_id=order_id))
            return bool(reply.released)

        await catalog.reserve("on-redis", (CAMERA, 2))
        proxy.cut()
        await catalog.reserve("on-sql", (CAMERA, 3))
        await catalog.reserve("on-sql-2", (CAMERA, 4))
        assert catalog.metric("ordermesh_stock_reservations_total", {"path": "sql"}) == 2
        with pytest.raises(grpc.aio.AioRpcError) as caught:  # its marker is in the unreachable Redis
            await release("on-redis")
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert await release("on-sql-2") is True  # on the SQL path, where it was taken
        proxy.heal()
        await on_path(catalog, 0)
        assert [await release("on-sql") for _ in range(2)] == [True, False]  # on Redis, given back to SQL
        assert await release("on-sql-2") is False, "released on the SQL path already"
        assert [await release("on-redis") for _ in range(2)] == [True, False]
        assert await release("never-reserved") is False
        assert await catalog.stock(CAMERA) == 40
        await published(catalog)
        # A retry of a released order is told so, on either path's record: nothing to charge.
        for order_id, quantity in (("on-sql", 3), ("on-redis", 2)):
            again = await catalog.reserve(order_id, (CAMERA, quantity))
            assert again.already_reserved and again.released, order_id
        await catalog.assert_clean()
        assert await catalog.count(stock_releases) == 3
        assert (await catalog.level(CAMERA)).stock == 40


Fault = tuple[Callable[[], Awaitable[object]], Callable[[], Awaitable[object]]]


async def test_redis_refusing_writes_is_unavailable_and_the_replica_stays_on_redis(
    database_url: str, tmp_path: Path
) -> None:
    redis = RedisServer(
        tmp_path / "redis",
        free_port(),
        extra_args=["--enable-protected-configs", "yes", "--enable-debug-command", "yes"],
    ).start()
    admin = aioredis.Redis.from_url(redis.url)
    faults: dict[str, Fault] = {
        # maxmemory far below what is used: every write is refused (OOM)
        "OOM": (lambda: admin.config_set("maxmemory", "1"), lambda: admin.config_set("maxmemory", "0")),
        # a replica of a master that is not there (as after a failover): READONLY
        "READONLY": (lambda: admin.replicaof("127.0.0.1", str(free_port())), lambda: admin.replicaof("NO", "ONE")),
        # a snapshot that cannot be written, with stop-writes-on-bgsave-error: MISCONF
        "MISCONF": (lambda: failed_snapshot(admin), lambda: admin.config_set("stop-writes-on-bgsave-error", "no")),
    }
    try:
        async with running_catalog(catalog_settings(database_url, redis.url)) as catalog:
            await catalog.reserve("before", (CAMERA, 1))
            for name, (inject, repair) in faults.items():
                await inject()
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await catalog.reserve(f"during-{name}", (CAMERA, 1))
                assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, (name, caught.value.details())
                assert "refused" in (caught.value.details() or ""), caught.value.details()
                await catalog.stub.GetProduct(catalog_pb2.GetProductRequest(id=CAMERA))  # reads still answer
                assert catalog.metric("ordermesh_stock_path") == 0, f"{name} is not an outage"
                await repair()
                await catalog.reserve(f"after-{name}", (CAMERA, 1))
            assert catalog.metric("ordermesh_stock_reservations_total", {"path": "sql"}) == 0
            assert catalog.metric("ordermesh_stock_reservations_total", {"path": "redis"}) == 4
            # Refills lived through it: selling past the first allocation still works.
            for i in range(30):
                await catalog.reserve(f"more-{i}", (CAMERA, 1))
            assert await catalog.stock(CAMERA) == 40 - 34
            await catalog.assert_clean()
    finally:
        await admin.aclose()
        redis.stop()


async def failed_snapshot(admin: aioredis.Redis) -> None:
    await admin.config_set("save", "3600 1")
    await admin.config_set("stop-writes-on-bgsave-error", "yes")
    directory = str((await admin.config_get("dir"))["dir"])
    await admin.config_set("dir", "/proc")  # nobody, root included, can create a file here
    await admin.bgsave()

    async def failed() -> bool:
        info = await admin.info("persistence")
        return bool(info["rdb_bgsave_in_progress"] == 0 and info["rdb_last_bgsave_status"] == "err")

    await eventually(failed, within=10, what="the snapshot to fail")
    await admin.config_set("dir", directory)


async def test_an_order_reserved_on_both_paths_keeps_only_its_redis_reservation(
    database_url: str, proxy: Proxy
) -> None:
    async with running_catalog(behind(proxy, database_url)) as catalog:
        epoch = await catalog.parts.ledger.current_epoch() or ""
        await catalog.reserve("first", (CAMERA, 1))  # a first refill
        # reserve.lua ran for these two orders, but their replies were lost as Redis failed...
        for order_id in ("lost-reply", "lost-then-cancelled"):
            await catalog.parts.redis_stock.reserve(epoch, order_id, [Line(CAMERA, 1)], b"")
        proxy.cut()
        # ...so the callers retried, and this replica took them again from SQL.
        await catalog.reserve("lost-reply", (CAMERA, 1))
        await catalog.reserve("lost-then-cancelled", (CAMERA, 1))
        reply = await catalog.stub.ReleaseStock(catalog_pb2.ReleaseStockRequest(order_id="lost-then-cancelled"))
        assert reply.released
        proxy.heal()
        await on_path(catalog, 0)
        await published(catalog)
        # Redis's reservations stand (their OrderPlaced went out with them); the
        # SQL copies are undone, and the cancelled order is released on Redis too.
        assert catalog.metric("ordermesh_stock_superseded_reservations_total") == 2
        assert sorted(await catalog.placed_order_ids()) == ["first", "lost-reply", "lost-then-cancelled"]
        await catalog.assert_clean()
        assert (await catalog.level(CAMERA)).stock == 40 - 2

        async def shown() -> bool:  # stock levels show SQL's part as of the refiller's last look
            return await catalog.stock(CAMERA) == 40 - 2

        await eventually(shown, within=5, what="GetProduct to show the returned unit")


async def test_a_caller_waits_for_a_pooled_connection_then_is_told_to_retry(redis_server: RedisServer) -> None:
    client = connect(redis_server.url, timeout=5, max_connections=1, pool_timeout=0.3)
    try:

        async def hold() -> None:  # BLPOP holds the only connection while it waits
            await client.blpop(["nothing-comes"], timeout=2)

        busy = asyncio.create_task(hold())
        await asyncio.sleep(0.1)
        with pytest.raises(PoolExhausted):
            await client.get("anything")
        await busy
        assert await client.get("anything") is None, "the connection is free again"
    finally:
        await client.aclose()


async def test_replicas_agree_on_one_new_epoch_after_redis_comes_back_empty(database_url: str, tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis", free_port()).start()  # no persistence
    common = shared(redis_timeout_seconds=0.3, stock_probe_interval_seconds=0.1)
    try:
        async with (
            running_catalog(catalog_settings(database_url, redis.url, **common)) as a,
            running_catalog(catalog_settings(database_url, redis.url, **common)) as b,
        ):
            await a.reserve("x-1", (CAMERA, 1))
            await b.reserve("x-2", (CAMERA, 1))
            await asyncio.to_thread(redis.kill)
            await asyncio.to_thread(redis.start)

            async def sells(replica: CatalogUnderTest, order_id: str) -> bool:
                try:
                    await replica.reserve(order_id, (PLENTY, 1))
                except grpc.aio.AioRpcError as error:
                    assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()
                    return False
                return True

            # Both at once, each with the old epoch in hand: one new epoch, both sell in it.
            for n in range(3):
                await asyncio.gather(
                    eventually(functools.partial(sells, a, f"a-{n}"), within=10, what="a sells"),
                    eventually(functools.partial(sells, b, f"b-{n}"), within=10, what="b sells"),
                )
            async with reading(a.parts.engine) as connection:
                epochs = (await connection.execute(select(stock_epochs.c.epoch, stock_epochs.c.ended_at))).all()
            assert len(epochs) == 2 and sum(row.ended_at is None for row in epochs) == 1
            assert await a.parts.redis_stock.epoch() == await a.parts.ledger.current_epoch()
            await a.flush()
            assert (await a.level(PLENTY)).stock == 300 - 6
    finally:
        redis.stop()
