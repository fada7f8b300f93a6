"""The stock engine under faults: a killed flusher, SQL down, Redis killed."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from catalog.models import journal_applied, sql_reservations
from mesh.local.procs import MariaDBServer, RedisServer, free_port
from tests.integration.catalog_support import CatalogUnderTest, catalog_settings, running_catalog
from tests.support import eventually

PRODUCTS = ["sku-1004", "sku-1005", "sku-1007", "sku-1008", "sku-1009"]


async def reserve_many(catalog: CatalogUnderTest, count: int, prefix: str) -> None:
    for start in range(0, count, 50):
        await asyncio.gather(
            *(
                catalog.reserve(f"{prefix}-{i}", (PRODUCTS[i % len(PRODUCTS)], 1))
                for i in range(start, min(start + 50, count))
            )
        )


async def test_sigkilled_flusher_applies_every_entry_exactly_once(database_url: str, redis_server: RedisServer) -> None:
    settings = catalog_settings(database_url, redis_server.url, flusher_batch_size=7, flusher_claim_idle_ms=200)
    async with running_catalog(settings) as catalog:
        for product in PRODUCTS:
            await catalog.set_stock(product, 900)
        await catalog.flusher.run_until_idle()
        await reserve_many(catalog, 600, "k")
        assert await catalog.journal_length() == 600
        env = {
            **os.environ,
            "DATABASE_URL": settings.database_url,
            "REDIS_URL": settings.redis_url,
            "CATALOG_KEY_PREFIX": settings.catalog_key_prefix,
            "FLUSHER_BATCH_SIZE": "7",
            "GRPC_PORT": "0",  # it serves health and metrics like every process
            "METRICS_PORT": "0",
            "FLUSHER_CLAIM_IDLE_MS": "200",
            "LOG_LEVEL": "WARNING",
        }
        for round_ in range(4):
            before = await catalog.journal_length()
            flusher = await asyncio.create_subprocess_exec(sys.executable, "-m", "catalog", "flusher", env=env)

            async def progressed(before: int = before) -> bool:
                return await catalog.journal_length() <= before - 60

            await eventually(progressed, within=30, what=f"flusher progress in round {round_}")
            flusher.send_signal(signal.SIGKILL)  # mid-batch: no drain, no acknowledgement of the batch in hand
            await flusher.wait()
        # Entries the killed flushers left pending are claimed and re-read; the
        # dedup table absorbs the ones whose transaction had committed.
        await asyncio.sleep(0.3)  # let them pass the claim idle time
        await catalog.flusher.claim_stale()
        await catalog.flusher.run_until_idle()
        assert await catalog.journal_length() == 0
        assert await catalog.count(journal_applied) == 600
        for product in PRODUCTS:
            assert await catalog.sql_stock(product) == 900 - 120
        await catalog.assert_clean()


@pytest.fixture
def private_mariadb(tmp_path: Path) -> Iterator[MariaDBServer]:
    server = MariaDBServer(tmp_path / "mariadb", free_port()).start()
    server.create_database("catalog")
    yield server
    server.stop()


@pytest.mark.mariadb
async def test_sql_down_during_flush_acknowledges_nothing_until_it_returns(
    private_mariadb: MariaDBServer, redis_server: RedisServer
) -> None:
    # A first refill large enough for the whole test: selling needs no SQL then.
    settings = catalog_settings(private_mariadb.url("catalog"), redis_server.url, stock_min_refill=1000)
    async with running_catalog(settings) as catalog:
        initial = sum([await catalog.sql_stock(p) for p in PRODUCTS])
        await catalog.flusher.start()
        try:
            await reserve_many(catalog, 100, "a")

            async def drained() -> bool:
                return await catalog.journal_length() == 0

            await eventually(drained, within=20, what="the first flush")
            await asyncio.to_thread(private_mariadb.stop)
            await reserve_many(catalog, 150, "b")  # Redis path: no SQL needed to sell
            await asyncio.sleep(1.5)  # several flush attempts fail meanwhile
            assert await catalog.journal_length() == 150, "nothing may be acknowledged while SQL is down"
            await asyncio.to_thread(private_mariadb.start)
            await eventually(drained, within=60, what="the flusher to catch up after SQL returned")
        finally:
            await catalog.flusher.stop()
        await catalog.assert_clean()
        assert sum([await catalog.sql_stock(p) for p in PRODUCTS]) == initial - 250


async def test_redis_sigkilled_under_load_sells_from_sql_and_returns(database_url: str, tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis", free_port(), appendonly=True).start()
    settings = catalog_settings(
        database_url, redis.url, flusher_enabled=True, redis_timeout_seconds=0.3, stock_probe_interval_seconds=0.2
    )
    placed: list[str] = []
    failures: list[str] = []
    stop = asyncio.Event()
    try:
        async with running_catalog(settings) as catalog:
            for product in PRODUCTS:
                await catalog.set_stock(product, 5000)
            initial = {p: 5000 for p in PRODUCTS}

            async def buyer(n: int) -> None:
                i = 0
                while not stop.is_set():
                    order_id = f"w{n}-{i}"
                    try:
                        await catalog.reserve(order_id, (PRODUCTS[(n + i) % len(PRODUCTS)], 1))
                        placed.append(order_id)
                    except grpc.aio.AioRpcError as error:
                        failures.append(f"{order_id}: {error.code().name} {error.details()}")
                    i += 1
                    await asyncio.sleep(0.005)

            buyers = [asyncio.create_task(buyer(n)) for n in range(8)]
            await asyncio.sleep(0.7)
            await asyncio.to_thread(redis.kill)  # mid-burst: no shutdown, only the append-only file
            during = len(placed)
            await asyncio.sleep(1.5)
            assert len(placed) > during + 20, "orders must keep flowing through SQL while Redis is down"
            assert catalog.metric("ordermesh_stock_path") == 1
            assert await catalog.count(sql_reservations) > 0
            await asyncio.to_thread(redis.start)

            async def back_on_redis() -> bool:
                return catalog.metric("ordermesh_stock_path") == 0

            await eventually(back_on_redis, within=30, what="reservations back on Redis")
            on_redis = catalog.metric("ordermesh_stock_reservations_total", {"path": "redis"}) or 0
            await eventually(
                lambda: _more(catalog, on_redis + 20), within=10, what="more sales on Redis after it returned"
            )
            stop.set()
            await asyncio.gather(*buyers)

            async def published() -> bool:
                return (await catalog.audit()).unpublished == 0

            await eventually(published, within=10, what="the SQL path's orders published")
            assert failures == []
            await catalog.assert_clean()
            sold = sum([initial[p] - await catalog.sql_stock(p) for p in PRODUCTS])
            assert sold == len(placed) == len(set(placed))
            streamed = await catalog.placed_order_ids()
            assert sorted(streamed) == sorted(placed), "every order reaches the order stream, once"
    finally:
        redis.stop()


async def _more(catalog: CatalogUnderTest, than: float) -> bool:
    return (catalog.metric("ordermesh_stock_reservations_total", {"path": "redis"}) or 0) >= than
