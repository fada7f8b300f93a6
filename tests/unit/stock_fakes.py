"""The stock engine's ports as in-process fakes: Redis stock, the SQL path, the ledger, the quota.

Each fake subclasses the real adapter (so the engine gets the type it asks for)
and overrides only what StockEngine calls; none opens a connection. The Redis
fake fails on demand with the errors the real RedisStock raises after
classifying a redis-py failure: RedisDown (no answer) or Unavailable (refused).
The product cache is the real one, loading from a list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from catalog.cache import ProductCache
from catalog.engine import StockEngine
from catalog.ledger import Ledger, Level
from catalog.products import Product
from catalog.quota import Quota, QuotaPolicy
from catalog.redis_stock import RedisStock
from catalog.sql_path import RELEASED, RESERVED, SqlPath, SqlReservation
from catalog.stock import Earlier, InsufficientStock, Line, Shortage
from mesh.money import Money

NOW = datetime(2030, 1, 2, tzinfo=UTC)
EPOCH = "epoch-1"


class FakeRedisStock(RedisStock):
    """Counters and reservation markers in dicts; ``failures`` are raised by the next calls, in order."""

    def __init__(self, counters: dict[str, int]) -> None:
        self.counters_ = counters
        self.marked: dict[str, tuple[list[Line], bool]] = {}  # order id -> (lines, released)
        self.failures: list[BaseException] = []
        self.calls: list[str] = []
        self.answers = True  # what a probe's PING finds
        self.pings = 0

    def _next(self, call: str) -> None:
        self.calls.append(call)
        if self.failures:
            raise self.failures.pop(0)

    async def reserve(self, epoch: str, order_id: str, lines: list[Line], envelope: bytes) -> Earlier | None:
        self._next(f"reserve {order_id}")
        if order_id in self.marked:
            earlier, released = self.marked[order_id]
            return Earlier(earlier, released)
        short = [Shortage(x.product_id, x.quantity, self.counters_.get(x.product_id, 0)) for x in lines]
        short = [s for s in short if s.available < s.requested]
        if short:
            raise InsufficientStock(short)
        for line in lines:
            self.counters_[line.product_id] -= line.quantity
        self.marked[order_id] = (lines, False)
        return None

    async def release(self, order_id: str) -> str:
        self._next(f"release {order_id}")
        if order_id not in self.marked:
            return "NONE"
        lines, released = self.marked[order_id]
        if released:
            return "DONE"
        for line in lines:
            self.counters_[line.product_id] += line.quantity
        self.marked[order_id] = (lines, True)
        return "OK"

    async def counters(self, epoch: str, product_ids: list[str]) -> dict[str, int]:
        self._next("counters")
        return {pid: self.counters_.get(pid, 0) for pid in product_ids}

    async def ping(self) -> bool:
        self.pings += 1
        if self.failures:
            raise self.failures.pop(0)
        return self.answers


class FakeSqlPath(SqlPath):
    """Unallocated stock (shared with the fake ledger) sold by order id, once."""

    def __init__(self, levels: dict[str, Level]) -> None:
        self.levels = levels
        self.taken: dict[str, SqlReservation] = {}
        self.calls: list[str] = []

    async def reserve(self, order_id: str, lines: list[Line], event: bytes, now: datetime) -> Earlier | None:
        self.calls.append(f"reserve {order_id}")
        earlier = self.taken.get(order_id)
        if earlier is not None:
            return Earlier(earlier.lines, released=earlier.state == RELEASED)
        short = [Shortage(x.product_id, x.quantity, self.levels[x.product_id].unallocated) for x in lines]
        short = [s for s in short if s.available < s.requested]
        if short:
            raise InsufficientStock(short)
        for line in lines:
            level = self.levels[line.product_id]
            self.levels[line.product_id] = Level(level.stock - line.quantity, level.allocated, level.stranded)
        self.taken[order_id] = SqlReservation(order_id, lines, RESERVED)
        return None

    async def state(self, order_id: str) -> str | None:
        reservation = self.taken.get(order_id)
        return reservation.state if reservation is not None else None

    async def release(self, order_id: str, now: datetime) -> SqlReservation | None:
        self.calls.append(f"release {order_id}")
        reservation = self.taken.get(order_id)
        if reservation is None or reservation.state != RESERVED:
            return reservation
        for line in reservation.lines:
            level = self.levels[line.product_id]
            self.levels[line.product_id] = Level(level.stock + line.quantity, level.allocated, level.stranded)
        self.taken[order_id] = SqlReservation(order_id, reservation.lines, RELEASED)
        return reservation


class FakeLedger(Ledger):
    def __init__(self, levels: dict[str, Level]) -> None:
        self.levels_ = levels

    async def levels(self, product_ids: list[str] | None = None) -> dict[str, Level]:
        wanted = self.levels_ if product_ids is None else product_ids
        return {pid: self.levels_[pid] for pid in wanted if pid in self.levels_}

    async def current_epoch(self) -> str | None:
        return EPOCH


class FakeQuota(Quota):
    """One settled epoch; no inline refills (a short counter stays short)."""

    def __init__(self) -> None:
        self.policy = QuotaPolicy(inline_wait_seconds=0.0)
        self.epoch = EPOCH
        self.levels = {}
        self.sales: list[tuple[str, int]] = []

    async def current_epoch(self) -> str:
        return EPOCH

    async def sync(self) -> str:
        return EPOCH

    def sold(self, product_id: str, units: int) -> None:
        self.sales.append((product_id, units))

    async def refill_for(self, shortages: list[Shortage]) -> bool:
        return False


def product(product_id: str, price: Money) -> Product:
    return Product(product_id, f"name of {product_id}", "", price, 0, ())


@dataclass
class Stock:
    redis: FakeRedisStock
    sql: FakeSqlPath
    quota: FakeQuota
    engine: StockEngine
    products: list[Product] = field(default_factory=list)


def stock_engine(products: list[Product], counters: dict[str, int], unallocated: dict[str, int]) -> Stock:
    levels = {pid: Level(stock=units, allocated=0, stranded=0) for pid, units in unallocated.items()}
    redis_stock, sql, quota = FakeRedisStock(counters), FakeSqlPath(levels), FakeQuota()

    async def load() -> list[Product]:
        return products

    engine = StockEngine(
        redis_stock,
        sql,
        FakeLedger(levels),
        quota,
        ProductCache(load, ttl_seconds=3600),
        clock=lambda: NOW,
        # The probe's pause between PINGs: short, so a test sees it come back at once.
        probe_interval=0.001,
    )
    return Stock(redis_stock, sql, quota, engine, products)
