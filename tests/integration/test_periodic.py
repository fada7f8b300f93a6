"""Periodic jobs under a lease in a real Redis: a tick slower than the lease
runs on one replica only, and a replica that loses the lease stops its tick."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime

import pytest
import redis.asyncio as redis
from prometheus_client import CollectorRegistry

from mesh.clock import utc_now
from mesh.lease import Lease
from mesh.local.procs import RedisServer
from mesh.periodic import OUTCOMES, JobMetrics, LeaseLost, PeriodicJob
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


class Flaky:
    """A job that raises when told to."""

    def __init__(self) -> None:
        self.fail = False

    async def __call__(self, now: datetime) -> int:
        if self.fail:
            raise RuntimeError("payment is having a bad day")
        return 2


async def test_ticks_are_counted_by_outcome_and_a_success_is_stamped(client: redis.Redis) -> None:
    name = f"counted-{uuid.uuid4().hex[:8]}"
    registry = CollectorRegistry()
    metrics = JobMetrics(registry)

    def runs(outcome: str) -> float | None:
        return registry.get_sample_value("ordermesh_job_runs_total", {"job": "sweep", "outcome": outcome})

    def last_success() -> float | None:
        return registry.get_sample_value("ordermesh_job_last_success_timestamp_seconds", {"job": "sweep"})

    flaky = Flaky()
    leader = PeriodicJob("sweep", flaky, interval=0.05, lease=Lease(client, name, 5000), clock=utc_now, metrics=metrics)
    assert [runs(o) for o in OUTCOMES] == [0, 0, 0, 0] and last_success() == 0, "every series from the start"
    before = time.time()
    assert await leader.run_once() == 2
    stamped = last_success()
    assert stamped is not None and before <= stamped <= time.time()
    flaky.fail = True
    with pytest.raises(RuntimeError):
        await leader.run_once()
    assert last_success() == stamped, "a failed tick stamps nothing"
    # Another replica, same job: the lease is the leader's.
    other = PeriodicJob("sweep", flaky, interval=0.05, lease=Lease(client, name, 5000), clock=utc_now, metrics=metrics)
    assert await other.run_once() == 0
    assert {o: runs(o) for o in OUTCOMES} == {"ok": 1, "failed": 1, "not_leader": 1, "lease_lost": 0}

    slow = SlowJob(2.0)
    lost = PeriodicJob(
        "sweep", slow, interval=0.05, lease=Lease(client, f"{name}-2", 300), clock=utc_now, metrics=metrics
    )
    tick = asyncio.create_task(lost.run_once())
    await eventually(lambda: slow.started == 1, 5, "the slow tick to start under its lease")
    await client.set(f"lease:{name}-2", "somebody-else", px=5000)
    with pytest.raises(LeaseLost):
        await asyncio.wait_for(tick, 2)
    assert runs("lease_lost") == 1 and runs("ok") == 1


async def test_a_job_waiting_for_its_next_tick_stops_at_once(client: redis.Redis) -> None:
    """A job run once a minute (prune-applied) is stopped between ticks: its
    process's shutdown must not wait out the interval, nor the grace period."""
    job = SlowJob(0.0)
    lease = Lease(client, f"minutely-{uuid.uuid4().hex[:8]}", 300)
    periodic = PeriodicJob("minutely", job, interval=60.0, lease=lease, clock=utc_now)
    await periodic.start()
    await eventually(lambda: job.finished == 1, 5, "the first tick, at once")
    began = time.monotonic()
    await periodic.stop(grace=10.0)
    assert time.monotonic() - began < 1.0
    assert job.finished == 1
