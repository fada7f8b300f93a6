"""Quota: moving units from SQL's record to Redis's counters, and epochs.

A refill is one SQL transaction that moves `k` units into `allocated` under a
new refill id, then one Lua call that adds `k` to the counter, exactly once
per refill id. A refill whose Lua step failed stays in ``stock_refills`` and
is finished later by the refiller. Refills run off the hot path: the refiller
keeps every product that is selling above a low-water mark sized from its
recent sales; a reservation that finds a counter short while SQL still has
unallocated units refills inline (one refill per product in flight per
process; callers wait for it, within a bound).

Epochs: counters are named with the epoch SQL started them in. A Redis found
in another epoch (restarted empty, or another database's) is never trusted: a
new epoch starts, everything allocated to the old one is stranded until an
operator reclaims it, and refills start afresh. One replica at a time changes
epochs (a lock in Redis).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from catalog.ledger import Ledger, Level
from catalog.metrics import StockMetrics
from catalog.redis_stock import RedisStock
from catalog.stock import EpochChanged, Shortage
from mesh.clock import Clock
from mesh.errors import Unavailable
from mesh.lease import Lease
from mesh.worker import LoopWorker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QuotaPolicy:
    # Keep this many seconds of recent sales on each selling product's counter.
    low_water_seconds: float = 2.0
    min_refill: int = 20
    max_refill: int = 1000
    interval_seconds: float = 0.1
    # How often the view of SQL levels is reloaded and stuck refills are finished.
    refresh_seconds: float = 1.0
    # How long a reservation may wait for an inline refill before UNAVAILABLE.
    inline_wait_seconds: float = 2.0
    rate_window_seconds: float = 5.0


class SalesRate:
    """Units sold per second per product, over a sliding window of one-second buckets."""

    def __init__(self, window_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._window = window_seconds
        self._clock = clock
        self._buckets: dict[str, deque[list[int]]] = {}

    def record(self, product_id: str, units: int) -> None:
        second = int(self._clock())
        buckets = self._buckets.setdefault(product_id, deque())
        if buckets and buckets[-1][0] == second:
            buckets[-1][1] += units
        else:
            buckets.append([second, units])

    def rate(self, product_id: str) -> float:
        buckets = self._buckets.get(product_id)
        if not buckets:
            return 0.0
        horizon = self._clock() - self._window
        while buckets and buckets[0][0] < horizon:
            buckets.popleft()
        return sum(units for _, units in buckets) / self._window

    def selling(self) -> list[str]:
        """Products with sales in the window (the others are forgotten)."""
        active = []
        for pid in list(self._buckets):
            if self.rate(pid) > 0:
                active.append(pid)
            else:
                del self._buckets[pid]
        return active


class Quota:
    def __init__(
        self,
        redis_stock: RedisStock,
        ledger: Ledger,
        policy: QuotaPolicy,
        *,
        clock: Clock,
        epoch_lease: Lease,
        metrics: StockMetrics | None = None,
    ) -> None:
        self._redis = redis_stock
        self._ledger = ledger
        self.policy = policy
        self._clock = clock
        self._metrics = metrics
        # One replica at a time changes the epoch.
        self._epoch_lease = epoch_lease
        self.epoch: str | None = None
        self.levels: dict[str, Level] = {}
        self.rate = SalesRate(policy.rate_window_seconds)
        self._flights: dict[str, asyncio.Future[int]] = {}
        # Products whose refill here failed between its SQL and Lua steps:
        # their units are allocated but not on the counter until it is finished.
        self._stuck: set[str] = set()
        self._sync_lock = asyncio.Lock()
        self._refreshed = -math.inf

    # -- epochs -------------------------------------------------------------------

    async def current_epoch(self) -> str:
        return self.epoch if self.epoch is not None else await self.sync()

    async def sync(self) -> str:
        """Agree with SQL and Redis on the epoch, starting a new one if they differ."""
        async with self._sync_lock:
            for _ in range(100):
                sql_epoch, redis_epoch = await self._ledger.current_epoch(), await self._redis.epoch()
                if sql_epoch is not None and sql_epoch == redis_epoch:
                    self.epoch = sql_epoch
                    return sql_epoch
                if not await self._redis.call(self._epoch_lease.acquire):  # another replica is changing it
                    await asyncio.sleep(0.05)
                    continue
                try:
                    if started := await self._start_epoch():
                        return started
                finally:
                    await self._redis.call(self._epoch_lease.release)
            raise Unavailable("the stock epoch did not settle; retry")

    async def _start_epoch(self) -> str | None:
        sql_epoch, redis_epoch = await self._ledger.current_epoch(), await self._redis.epoch()
        if sql_epoch is not None and sql_epoch == redis_epoch:
            self.epoch = sql_epoch
            return sql_epoch
        new = uuid.uuid4().hex
        if sql_epoch is not None:
            log.error(
                "stock: Redis is in epoch %s, SQL in %s (Redis restarted without its data?); "
                "its allocation is stranded until `python -m catalog reclaim`",
                redis_epoch,
                sql_epoch,
            )
        if not await self._ledger.start_epoch(new, sql_epoch, self._clock()):
            return None
        await self._redis.start_epoch(new, redis_epoch)
        self.epoch = new
        await self.refresh()
        return new

    # -- the view of SQL levels -----------------------------------------------------

    async def refresh(self) -> None:
        self.levels = await self._ledger.levels()
        self._refreshed = time.monotonic()

    def update(self, levels: dict[str, Level]) -> None:
        self.levels.update(levels)

    def unallocated(self, product_id: str) -> int:
        level = self.levels.get(product_id)
        return level.unallocated if level is not None else 1  # unknown: worth a look

    # -- refills --------------------------------------------------------------------

    def sold(self, product_id: str, units: int) -> None:
        self.rate.record(product_id, units)

    def low_water(self, product_id: str) -> int:
        return max(self.policy.min_refill, math.ceil(self.rate.rate(product_id) * self.policy.low_water_seconds))

    async def refill_for(self, shortages: list[Shortage]) -> bool:
        """A reservation found these counters short: refill them inline (or wait
        for the refill already in flight). False if SQL has nothing to add."""
        epoch = await self.current_epoch()
        if time.monotonic() - self._refreshed >= self.policy.refresh_seconds and any(
            self.unallocated(s.product_id) <= 0 for s in shortages
        ):
            await self.refresh()  # sold out as far as this process knows: look again, once a second at most
        flights: list[asyncio.Future[int]] = []
        wanted: dict[str, int] = {}
        for shortage in shortages:
            pid = shortage.product_id
            if pid in self._flights:
                flights.append(self._flights[pid])
            elif self.unallocated(pid) > 0:
                needed = shortage.requested - shortage.available
                wanted[pid] = min(max(needed, 2 * self.low_water(pid)), max(needed, self.policy.max_refill))
        if wanted:
            flight = asyncio.ensure_future(self._refill(epoch, wanted, "inline"))
            for pid in wanted:
                self._flights[pid] = flight
            flight.add_done_callback(lambda done: self._landed(done, list(wanted)))
            flights.append(flight)
        if not flights and self._stuck & {s.product_id for s in shortages}:
            return await self.finish_stuck(epoch, older_than=None) > 0
        if not flights:
            return False
        try:
            await asyncio.wait_for(
                asyncio.gather(*(asyncio.shield(f) for f in set(flights))), self.policy.inline_wait_seconds
            )
        except TimeoutError:
            raise Unavailable("stock is being moved to Redis; retry") from None
        return True

    def _landed(self, flight: asyncio.Future[int], product_ids: list[str]) -> None:
        for pid in product_ids:
            if self._flights.get(pid) is flight:
                del self._flights[pid]
        if not flight.cancelled() and flight.exception() is not None:
            log.debug("stock: inline refill failed: %s", flight.exception())

    async def _refill(self, epoch: str, wanted: dict[str, int], trigger: str) -> int:
        try:
            refill, after = await self._ledger.allocate(epoch, wanted, self._clock())
        except EpochChanged:
            self.epoch = None  # SQL started another epoch: sync before the next refill
            raise
        self.update(after)
        if refill is None:
            return 0
        try:
            reply = await self._redis.refill(epoch, refill.refill_id, refill.units)
        except BaseException:
            self._stuck.update(refill.units)
            raise
        if reply == "EPOCH":
            self.epoch = None  # the refill stays pending: stranded when the new epoch starts
            raise EpochChanged(f"Redis left epoch {epoch}")
        await self._ledger.finish_refills([refill.refill_id])
        units = sum(refill.units.values())
        if self._metrics is not None:
            self._metrics.refills.labels(trigger).inc()
            self._metrics.refilled_units.inc(units)
        return units

    async def warm(self, product_ids: list[str]) -> int:
        """At start-up, give every product with stock a first allocation (one SQL
        transaction and one Lua call for all), so first sales do not refill inline."""
        epoch = await self.current_epoch()
        counters = await self._redis.counters(epoch, product_ids)
        wanted = {
            pid: self.policy.min_refill - counters[pid]
            for pid in product_ids
            if counters[pid] < self.policy.min_refill and self.unallocated(pid) > 0
        }
        return await self._refill(epoch, wanted, "background") if wanted else 0

    async def tick(self) -> int:
        """The refiller's round: finish stuck refills, top up selling products."""
        epoch = await self.current_epoch()
        if time.monotonic() - self._refreshed >= self.policy.refresh_seconds:
            await self.finish_stuck(epoch, older_than=self.policy.refresh_seconds)
            await self.refresh()
        selling = [pid for pid in self.rate.selling() if pid not in self._flights]
        if not selling:
            return 0
        counters = await self._redis.counters(epoch, selling)
        wanted = {}
        for pid in selling:
            low = self.low_water(pid)
            if counters[pid] < low and self.unallocated(pid) > 0:
                wanted[pid] = min(max(2 * low - counters[pid], self.policy.min_refill), self.policy.max_refill)
        return await self._refill(epoch, wanted, "background") if wanted else 0

    async def finish_stuck(self, epoch: str, older_than: float | None) -> int:
        """Finish refills whose Lua step never ran or never reported (Redis failed),
        of any replica; ``older_than`` seconds leaves ones still in progress alone
        (finishing one twice would be harmless anyway: exactly once by refill id)."""
        before = self._clock() - timedelta(seconds=older_than) if older_than is not None else None
        self._stuck.clear()
        finished: list[str] = []
        for refill in await self._ledger.pending_refills(epoch, before=before):
            reply = await self._redis.refill(epoch, refill.refill_id, refill.units)
            if reply == "EPOCH":
                self.epoch = None
                return len(finished)
            finished.append(refill.refill_id)
        if finished:
            await self._ledger.finish_refills(finished)
        return len(finished)


class Refiller(LoopWorker):
    """Runs ``Quota.tick`` every interval; a failure (Redis or SQL down) backs off
    and is logged once per outage, never ends the loop."""

    def __init__(self, quota: Quota) -> None:
        super().__init__("stock-refiller")
        self._quota = quota

    async def run(self) -> None:
        interval = self._quota.policy.interval_seconds
        delay, failing = interval, False
        while self.running:
            try:
                await self._quota.tick()
                if failing:
                    log.info("stock refiller: working again")
                delay, failing = interval, False
            except Exception as error:  # noqa: BLE001 - any failure: back off and retry; logged once
                if not failing:
                    log.warning("stock refiller: %s; retrying", error or type(error).__name__)
                delay, failing = min(delay * 2, 5.0), True
            await asyncio.sleep(delay)
