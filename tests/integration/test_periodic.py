"""Periodic jobs under a lease in a real Redis: a tick slower than the lease
runs on one replica only, and a replica that loses the lease stops its tick."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime

import pytest
import redis.asyncio as redis

from mesh.clock import utc_now
from mesh.lease import Lease
from mesh.local.procs import RedisServer
from mesh.periodic import LeaseLost, PeriodicJob
from tests.support import eventually


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


class SlowJob:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = 0
        self.finished = 0

    async def __call__(self, now: datetime) -> int:
        self.started += 1
        await asyncio.sleep(self.seconds)
        self.finished += 1
        return 1


def replica(client: redis.Redis, name: str, job: SlowJob) -> PeriodicJob:
    return PeriodicJob("slow", job, interval=0.05, lease=Lease(client, name, 300), clock=utc_now)


async def test_a_tick_slower_than_its_lease_runs_on_one_replica_only(client: redis.Redis) -> None:
    name = f"slow-{uuid.uuid4().hex[:8]}"
    job = SlowJob(1.0)  # more than three times the lease's 300 ms
    first, second = replica(client, name, job), replica(client, name, job)
    tick = asyncio.create_task(first.run_once())
    await eventually(lambda: job.started == 1, 5, "the first replica to take the lease and start")
    others = []
    while not tick.done():  # the other replica keeps trying, as its loop would
        others.append(await second.run_once())
        await asyncio.sleep(0.05)
    assert await tick == 1
    assert len(others) > 10 and set(others) == {0}
    assert (job.started, job.finished) == (1, 1)


async def test_a_replica_that_lost_its_lease_stops_its_tick(client: redis.Redis) -> None:
    name = f"lost-{uuid.uuid4().hex[:8]}"
    job = SlowJob(2.0)
    first = replica(client, name, job)
    tick = asyncio.create_task(first.run_once())
    await eventually(lambda: job.started == 1, 5, "the tick to start under its lease")
    await client.set(f"lease:{name}", "somebody-else", px=5000)  # as after a pause: another replica took it
    with pytest.raises(LeaseLost):
        await asyncio.wait_for(tick, 2)
    assert (job.started, job.finished) == (1, 0), "stopped, not finished twice"
