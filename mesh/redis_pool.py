"""A Redis client whose pool waits for a free connection instead of failing.

redis-py's default pool raises ``MaxConnectionsError`` (a ``ConnectionError``)
once every connection is in use: under load alone that reads as "Redis is
down". The blocking pool queues callers instead; a caller that waits longer
than ``pool_timeout`` gets ``PoolExhausted``, which is UNAVAILABLE to a gRPC
caller and is never taken for a Redis outage.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError

from mesh.errors import Unavailable
from mesh.redis_pipe import RedisPipe, pipe_for
from mesh.settings import RedisServiceSettings


class PoolExhausted(Unavailable):
    """Every pooled Redis connection stayed busy for the whole pool timeout."""


class WaitingPool(redis.BlockingConnectionPool):
    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        except RedisConnectionError as error:
            # The blocking pool reports its own timeout as a ConnectionError
            # caused by asyncio.TimeoutError; a real connect failure is not.
            if isinstance(error.__cause__, asyncio.TimeoutError):
                raise PoolExhausted(f"no free Redis connection within {self.timeout}s; retry") from error
            raise


def connect(url: str, *, timeout: float, max_connections: int, pool_timeout: float) -> redis.Redis:
    pool = WaitingPool.from_url(
        url,
        max_connections=max_connections,
        timeout=pool_timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )
    return redis.Redis.from_pool(pool)


def connect_for(settings: RedisServiceSettings) -> redis.Redis:
    """The process's Redis client from its settings (URL, timeout, pool)."""
    return connect(
        settings.redis_url,
        timeout=settings.redis_timeout_seconds,
        max_connections=settings.redis_pool_size,
        pool_timeout=settings.redis_pool_timeout_seconds,
    )


def pipe_for_settings(client: redis.Redis, settings: RedisServiceSettings) -> RedisPipe | None:
    """The process's pipelined connection (REDIS_PIPE), to the server ``client`` talks to."""
    return pipe_for(client, settings.redis_timeout_seconds) if settings.redis_pipe else None
