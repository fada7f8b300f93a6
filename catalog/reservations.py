"""Reserving stock: the Redis path, the SQL fallback, and the switch between them.

Normally every reservation is one Lua call on Redis. When Redis fails, this
process switches to the SQL path at once (the failing call included) and a
recovery task waits for Redis. Switching back is not a breaker's half-open
trial: a trial reservation on a counter that SQL-path sales made stale could
oversell. Redis is trusted again only after (1) the journal has drained into
SQL, (2) every product changed on the SQL path has its counter rebuilt from
SQL, (3) SQL-path reservation markers are copied to Redis, and (4) their
OrderPlaced events are relayed to the order stream. New calls wait the few
milliseconds this takes. An order reserved on both paths (a Lua call that ran
but whose reply was lost when Redis died, then retried on SQL) keeps its Redis
reservation; the SQL copy is undone first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from sqlalchemy.exc import SQLAlchemyError

from catalog.cache import ProductCache
from catalog.events import order_placed
from catalog.products import Product
from catalog.redis_stock import RedisStock
from catalog.sql_stock import SqlStock
from catalog.stock import CounterMissing, Line, RedisDown, merge
from mesh.clock import Clock
from mesh.errors import NotFound, Unavailable
from mesh.money import Money
from ordermesh.common.v1 import common_pb2

log = logging.getLogger(__name__)
T = TypeVar("T")


class Path(StrEnum):
    REDIS = "redis"
    SQL = "sql"
    SWITCHING = "switching"


@dataclass(frozen=True)
class Reserved:
    order_id: str
    lines: list[Line]
    priced: list[common_pb2.OrderItem]
    total: Money
    already_reserved: bool


class StockEngine:
    def __init__(
        self,
        redis_stock: RedisStock,
        sql_stock: SqlStock,
        cache: ProductCache,
        *,
        clock: Clock,
        recovery_interval: float = 0.5,
        sql_only: bool = False,
    ) -> None:
        self._redis = redis_stock
        self._sql = sql_stock
        self._cache = cache
        self._clock = clock
        self._recovery_interval = recovery_interval
        self._sql_only = sql_only
        self.path = Path.SQL if sql_only else Path.REDIS
        self._open = asyncio.Event()
        self._open.set()
        # Calls in progress on either path: the switch back to Redis waits for
        # all of them, or a late Lua call could land between reading SQL stock
        # and overwriting the counter with it.
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._load_lock = asyncio.Lock()
        self._recovery: asyncio.Task[None] | None = None

    # -- public operations ----------------------------------------------------------

    async def reserve(self, order_id: str, lines: list[Line], draft: common_pb2.OrderDraft) -> Reserved:
        lines = merge(lines)
        products = await self._products([line.product_id for line in lines])
        priced = [
            common_pb2.OrderItem(
                product_id=line.product_id,
                quantity=line.quantity,
                unit_price=products[line.product_id].price.to_proto(),
            )
            for line in lines
        ]
        total = _total(lines, products, draft.shipping_cost)
        event = order_placed(order_id, draft, priced, total, self._clock()).SerializeToString()
        earlier = await self._either(
            lambda: self._with_counters(lambda: self._redis.reserve(order_id, lines, event)),
            lambda: self._sql.reserve(order_id, lines, event, self._clock()),
        )
        return Reserved(order_id, earlier or lines, priced, total, already_reserved=earlier is not None)

    async def release(self, order_id: str) -> bool:
        async def on_sql() -> bool:
            released = await self._sql.release(order_id)
            if released is None:
                # Not a SQL-path reservation: it may be in Redis, which is down.
                raise Unavailable(f"the reservation of {order_id} cannot be checked while Redis is down; retry")
            return released

        return await self._either(lambda: self._redis.release(order_id), on_sql)

    async def set_stock(self, product_id: str, stock: int) -> Product:
        product = (await self._products([product_id]))[product_id]
        await self._either(
            lambda: self._with_counters(lambda: self._redis.set_stock(product_id, stock)),
            lambda: self._sql.set_stock(product_id, stock),
        )
        return Product(product.id, product.name, product.description, product.price, stock, product.categories)

    async def stock_levels(self, product_ids: list[str]) -> dict[str, int]:
        async def from_redis() -> dict[str, int]:
            counters = await self._redis.counters(product_ids)
            if any(v is None for v in counters.values()):
                await self._load_counters([p for p, v in counters.items() if v is None])
                counters = await self._redis.counters(product_ids)
            return {p: v for p, v in counters.items() if v is not None}

        return await self._either(from_redis, lambda: self._sql.stock(product_ids))

    async def warm(self, product_ids: list[str]) -> None:
        """Load missing counters at start-up, so the first orders do not pay for it."""
        if self._sql_only:
            return
        try:
            await self._load_counters(product_ids)
        except RedisDown:
            self._enter_sql("Redis unavailable at start-up")

    async def close(self) -> None:
        if self._recovery is not None:
            self._recovery.cancel()
            await asyncio.gather(self._recovery, return_exceptions=True)

    # -- path selection -------------------------------------------------------------

    async def _either(self, on_redis: Callable[[], Awaitable[T]], on_sql: Callable[[], Awaitable[T]]) -> T:
        await self._open.wait()
        self._in_flight += 1
        self._idle.clear()
        try:
            if self.path is Path.REDIS:
                try:
                    return await on_redis()
                except RedisDown as error:
                    failure = error
                # A pooled connection broken by a Redis restart fails once and
                # then reconnects: confirm before leaving Redis. Every Redis
                # operation here is idempotent (markers), so trying again is safe.
                if await self._redis.ping():
                    try:
                        return await on_redis()
                    except RedisDown as error:
                        failure = error
                self._enter_sql(str(failure))
            return await on_sql()
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    def _enter_sql(self, reason: str) -> None:
        if self.path is not Path.REDIS or self._sql_only:
            return
        log.warning("stock: Redis unavailable (%s); reservations take the SQL path", reason)
        self.path = Path.SQL
        self._recovery = asyncio.create_task(self._recover(), name="stock-recovery")

    async def _recover(self) -> None:
        while True:
            await asyncio.sleep(self._recovery_interval)
            if not await self._redis.ping():
                continue
            try:
                if await self._redis.journal_length():
                    continue  # the flusher is still writing Redis-path changes to SQL
                self.path = Path.SWITCHING
                self._open.clear()
                await self._idle.wait()
                if await self._redis.journal_length():
                    self.path = Path.SQL  # late Redis-path calls journaled more: let it drain
                    continue
                await self._rebuild()
            except (RedisDown, SQLAlchemyError, OSError) as error:
                log.warning("stock: recovery attempt failed (%s); staying on SQL", error)
                self.path = Path.SQL
                continue
            finally:
                self._open.set()
            self.path = Path.REDIS
            log.warning("stock: Redis counters rebuilt; reservations are back on Redis")
            return

    async def _rebuild(self) -> None:
        # A Lua call whose reply was lost as Redis went down did reserve; the
        # retry on SQL then reserved the same order again. Redis's copy stands
        # (its OrderPlaced is already published); the SQL copy is undone.
        released_meanwhile = []
        for reservation in await self._sql.reservations():
            if await self._redis.reserved_by_lua(reservation.order_id):
                log.warning("stock: %s was reserved on both paths; undoing the SQL copy", reservation.order_id)
                await self._sql.forget_duplicate(reservation.order_id)
                if reservation.released:
                    released_meanwhile.append(reservation.order_id)
        while True:
            dirty = await self._sql.dirty_stock()
            for product_id, stock in dirty.items():
                await self._redis.put_counter(product_id, stock, overwrite=True)
            if await self._sql.clear_dirty(dirty):
                break
        for reservation in await self._sql.reservations():
            await self._redis.put_markers(reservation.order_id, reservation.lines, reservation.released)
        while events := await self._sql.outbox():
            for event in events:
                await self._redis.publish_order_placed(event.order_id, event.event)
            await self._sql.delete_outbox([e.id for e in events])
        for order_id in released_meanwhile:  # released on SQL: release Redis's copy too
            await self._redis.release(order_id)

    # -- counters -------------------------------------------------------------------

    async def _with_counters(self, operation: Callable[[], Awaitable[T]]) -> T:
        try:
            return await operation()
        except CounterMissing as missing:
            await self._load_counters(missing.product_ids)
        return await operation()

    async def _load_counters(self, product_ids: list[str]) -> None:
        """Load absent counters from SQL — never while the journal holds changes to them.

        Single flight per process (the lock) and across replicas (SET NX: a
        later loader cannot overwrite a counter that is already live).
        """
        async with self._load_lock:
            counters = await self._redis.counters(product_ids)
            missing = [pid for pid, value in counters.items() if value is None]
            if not missing:
                return
            pending = set(await self._redis.journal_totals()) & set(missing)
            if pending:
                raise Unavailable(f"stock of {', '.join(sorted(pending))} is being written to SQL; retry")
            for product_id, stock in (await self._sql.stock(missing)).items():
                await self._redis.put_counter(product_id, stock, overwrite=False)

    async def _products(self, product_ids: list[str]) -> dict[str, Product]:
        products = await self._cache.get_many(product_ids)
        for product_id in product_ids:
            if product_id not in products:
                raise NotFound("product", product_id)
        return products


def _total(lines: list[Line], products: dict[str, Product], shipping: common_pb2.Money) -> Money:
    currency = next(iter(products.values())).price.currency
    total = Money.from_proto(shipping) if shipping.currency_code else Money(currency, 0)
    for line in lines:
        total = total + products[line.product_id].price.times(line.quantity)
    return total
