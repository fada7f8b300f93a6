"""Liveness is the process; readiness follows its dependencies (checkout: Redis)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from catalog.bootstrap import bootstrap as catalog_bootstrap
from catalog.settings import CatalogSettings
from checkout.bootstrap import bootstrap
from checkout.settings import CheckoutSettings
from mesh.local.procs import MariaDBServer, RedisServer, free_port
from tests.support import eventually, serving

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def test_readiness_follows_redis_while_liveness_stays_up(tmp_path: Path) -> None:
    redis_port = free_port()
    settings = CheckoutSettings(
        grpc_host="127.0.0.1",
        grpc_port=0,
        metrics_port=0,
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        readiness_interval_seconds=0.2,
    )
    async with serving(await bootstrap(settings)) as (_server, channel):
        health = health_pb2_grpc.HealthStub(channel)

        async def status(service: str) -> int:
            return int((await health.Check(health_pb2.HealthCheckRequest(service=service))).status)

        assert await status("") == SERVING
        assert await status("readiness") == NOT_SERVING
        assert await status("ordermesh.checkout.v1.CheckoutService") == NOT_SERVING

        redis = RedisServer(tmp_path / "redis", redis_port).start()
        try:

            async def ready() -> bool:
                return bool(await status("readiness") == SERVING)

            await eventually(ready, within=10, what="readiness after Redis started")
            assert await status("ordermesh.checkout.v1.CheckoutService") == SERVING
        finally:
            redis.stop()

        async def not_ready() -> bool:
            return bool(await status("readiness") == NOT_SERVING)

        await eventually(not_ready, within=10, what="readiness to drop with Redis")
        assert await status("") == SERVING


async def test_the_probe_command_answers_a_compose_healthcheck(tmp_path: Path) -> None:
    """`python -m mesh.probe readiness` exits 0 only while readiness is SERVING;
    liveness ("") stays 0 while Redis is away."""
    redis_port = free_port()
    settings = CheckoutSettings(
        grpc_host="127.0.0.1", grpc_port=0, metrics_port=0, redis_url=f"redis://127.0.0.1:{redis_port}/0"
    )
    async with serving(await bootstrap(settings)) as (server, _channel):
        env = {**os.environ, "GRPC_PORT": str(server.port)}

        async def probe(service: str) -> int:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "mesh.probe", service, env=env, stdout=asyncio.subprocess.DEVNULL
            )
            return await process.wait()

        assert await probe("readiness") == 1, "Redis is down: not ready"
        assert await probe("") == 0, "but alive"
    env["GRPC_PORT"] = str(free_port())
    assert await probe("") == 1, "nothing answers"


@pytest.mark.mariadb
async def test_catalog_is_ready_while_it_can_reserve_by_either_path(tmp_path: Path) -> None:
    """Reservations take Redis, or SQL while Redis is down: the catalog is ready
    with either, and not with neither (the chaos scenario mariadb-stopped found
    health-checking clients leaving a catalog that was selling from Redis)."""
    mariadb = MariaDBServer(tmp_path / "mariadb", free_port()).start()
    mariadb.create_database("catalog")
    redis = RedisServer(tmp_path / "redis").start()
    settings = CatalogSettings(
        grpc_host="127.0.0.1", grpc_port=0, metrics_port=0, database_url=mariadb.url("catalog"),
        redis_url=redis.url, readiness_interval_seconds=0.2,
    )  # fmt: skip
    try:
        async with serving(await catalog_bootstrap(settings)) as (_server, channel):
            health = health_pb2_grpc.HealthStub(channel)

            def readiness_is(wanted: int) -> Callable[[], Awaitable[bool]]:
                async def check() -> bool:
                    answer = await health.Check(health_pb2.HealthCheckRequest(service="readiness"))
                    return bool(answer.status == wanted)

                return check

            await eventually(readiness_is(SERVING), within=10, what="ready with both")
            mariadb.stop()
            await asyncio.sleep(1.0)  # five readiness rounds without SQL
            assert await readiness_is(SERVING)(), "Redis alone can reserve"
            redis.stop()
            await eventually(readiness_is(NOT_SERVING), within=10, what="not ready with neither")
            redis.start()
            await eventually(readiness_is(SERVING), within=10, what="ready again with Redis")
    finally:
        redis.stop()
        mariadb.stop()
