"""The faults: each breaks one thing under load and puts it back.

Every scenario runs on the embedded profile (Redis Streams, SQLite) with its
own mesh; the ones that need RocketMQ or MariaDB are still to come.
"""

from __future__ import annotations

import asyncio
import signal

import redis.asyncio as redis

from chaos.run import Chaos, Scenario
from launcher.mesh import is_serving

# Restarted after each SIGTERM: the order a deploy would roll them in.
ROLL = ["catalog", "payment", "shipping", "order", "checkout"]
STREAMS = ["events:order-placed", "events:order-updates", "events:order-status", "catalog:journal"]


async def _serving(chaos: Chaos, context: str, limit: float = 60) -> None:
    port = int(chaos.mesh.address(context).rsplit(":", 1)[1])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not await asyncio.to_thread(is_serving, port):
        if loop.time() > deadline:
            raise TimeoutError(f"{context} did not come back")
        await asyncio.sleep(0.1)


async def order_killed_twice(chaos: Chaos) -> None:
    """SIGKILL the order process, start it, and again: whatever it had read and
    not acknowledged is read again; what it committed is not applied twice."""
    for _ in range(2):
        chaos.kill("order", signal.SIGKILL)
        await asyncio.sleep(1.0)
        chaos.restart("order")
        await _serving(chaos, "order")
        await asyncio.sleep(1.0)


async def each_service_terminated(chaos: Chaos) -> None:
    """SIGTERM each service in turn and start it again (a rolling deploy): calls
    in flight finish within the grace period; new ones are retried by the client."""
    for context in ROLL:
        chaos.kill(context, signal.SIGTERM)
        chaos.restart(context)
        await _serving(chaos, context)


async def redis_killed(chaos: Chaos) -> None:
    """SIGKILL Redis and start it again from its append-only file: the catalog
    sells from SQL meanwhile, checkout answers UNAVAILABLE and is retried."""
    chaos.redis.kill()
    await asyncio.sleep(2.0)
    chaos.redis.start()


async def poison_in_every_stream(chaos: Chaos) -> None:
    """Entries no consumer can read, in every stream: each is dead-lettered
    after its attempts, and everything behind it flows. Done when every group
    of every stream has acknowledged everything (the poison included)."""
    client = redis.Redis.from_url(chaos.redis.url)
    try:
        for stream in STREAMS:
            await client.xadd(stream, {"type": "OrderPlaced", "order_id": "poison", "event": b"\xff\x00not protobuf"})
            await client.xadd(stream, {"garbage": "no type, no event"})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 90
        while await _behind(client):
            if loop.time() > deadline:
                raise TimeoutError("a consumer group is stuck behind the poison")
            await asyncio.sleep(0.5)
    finally:
        await client.aclose()


async def _behind(client: redis.Redis) -> list[str]:
    """The stream groups with entries unread or unacknowledged."""
    behind = []
    for stream in STREAMS:
        for group in await client.xinfo_groups(stream):
            if group["pending"] or group.get("lag"):
                behind.append(f"{stream}/{group['name']!r}")
    return behind


SCENARIOS = {
    "order-killed-twice": Scenario("order-killed-twice", "SIGKILL the order process, twice", order_killed_twice),
    "rolling-sigterm": Scenario("rolling-sigterm", "SIGTERM each service in turn", each_service_terminated),
    "redis-killed": Scenario("redis-killed", "SIGKILL Redis, restart from AOF", redis_killed),
    "poison": Scenario("poison", "undecodable entries in every stream", poison_in_every_stream),
}
