"""Every context's Redis client waits for a free pooled connection under load
(mesh.redis_pool.connect_for) instead of failing the call as if Redis were down.

Load found it: at 200 orders/s checkout answered UNAVAILABLE "Too many
connections": redis-py 8's default pool holds 100 connections and raises once
they are all in use.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError

from catalog.settings import CatalogSettings
from checkout.settings import CheckoutSettings
from mesh.local.procs import RedisServer
from mesh.redis_pool import PoolExhausted, connect_for
from mesh.settings import RedisServiceSettings
from order.settings import OrderSettings

CONTEXTS = [CatalogSettings, CheckoutSettings, OrderSettings]


async def blocked_calls(client: redis.Redis, count: int, seconds: float) -> list[object]:
    """``count`` calls at once, each holding a connection for ``seconds``."""
    calls = (client.blpop([f"nothing-{n}"], timeout=seconds) for n in range(count))
    return list(await asyncio.gather(*calls, return_exceptions=True))


@pytest.mark.parametrize("settings_class", CONTEXTS, ids=lambda c: c.__name__)
async def test_more_calls_than_connections_wait_their_turn(
    redis_server: RedisServer, settings_class: type[RedisServiceSettings]
) -> None:
    settings = settings_class(redis_url=redis_server.url, redis_pool_size=20, redis_pool_timeout_seconds=10)
    client = connect_for(settings)
    try:
        results = await blocked_calls(client, 120, 0.1)  # six rounds of 20
        assert results == [None] * 120
    finally:
        await client.aclose()


async def test_the_default_pool_fails_the_same_load(redis_server: RedisServer) -> None:
    """The control: redis-py's own pool with the same size raises instead of waiting."""
    client = redis.Redis.from_url(redis_server.url, max_connections=20)
    try:
        results = await blocked_calls(client, 120, 0.1)
        assert any(isinstance(r, RedisConnectionError) and "Too many connections" in str(r) for r in results)
    finally:
        await client.aclose()


async def test_a_pool_busy_for_its_whole_timeout_is_unavailable_not_redis_down(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    try:
        client = connect_for(CheckoutSettings(redis_url=server.url, redis_pool_size=1, redis_pool_timeout_seconds=0.2))
        results = await blocked_calls(client, 2, 1.0)
        assert None in results
        assert any(isinstance(r, PoolExhausted) for r in results), results
        await client.aclose()
    finally:
        server.stop()
