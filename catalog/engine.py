"""The stock engine: reserve, release and set stock on whichever path this
replica can use.

Normally every reservation is one Lua call on Redis, selling only what SQL
allocated to it (see quota.py). When Redis fails (a connection that fails or
times out, twice: a pooled connection broken by a restart fails once), this
replica sells unallocated stock on the SQL path (sql_path.py) until a probe
finds Redis answering again; then it goes straight back. Nothing is fenced,
rebuilt or copied: the two paths never sell the same unit. Other failures
(a Redis that refuses writes, no free connection, SQL down) are UNAVAILABLE to
the caller and do not move the replica off Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from opentelemetry import trace

from catalog.cache import ProductCache
from catalog.events import order_placed
from catalog.ledger import Ledger
from catalog.metrics import StockMetrics
from catalog.products import Product
from catalog.quota import Quota
from catalog.redis_stock import RedisStock
from catalog.sql_path import RELEASED, RESERVED, SqlPath
from catalog.stock import Earlier, EpochChanged, InsufficientStock, Line, RedisDown, merge
from mesh.bus.tracing import OPERATION, OPERATION_TYPE, ORDER_ID, REDIS, publish_attributes, publishing
from mesh.clock import Clock
from mesh.errors import FieldViolation, InvalidArgument, NotFound, Unavailable
from mesh.money import Money
from ordermesh.common.v1 import common_pb2

log = logging.getLogger(__name__)
T = TypeVar("T")


class Path(StrEnum):
    REDIS = "redis"
    SQL = "sql"


@dataclass(frozen=True)
class Reserved:
    order_id: str
    lines: list[Line]
    priced: list[common_pb2.OrderItem]
    total: Money
    already_reserved: bool
    released: bool  # reserved before and released since: the order is over
    initial_status: common_pb2.OrderStatus.ValueType = common_pb2.PENDING


class StockEngine:
    def __init__(
        self,
        redis_stock: RedisStock,
        sql_path: SqlPath,
        ledger: Ledger,
        quota: Quota,
        cache: ProductCache,
        *,
        clock: Clock,
        probe_interval: float = 0.5,
        sql_only: bool = False,
        metrics: StockMetrics | None = None,
        tracer: trace.Tracer | None = None,
        events_stream: str = "",
    ) -> None:
        self._redis = redis_stock
        self._sql = sql_path
        self._ledger = ledger
        self._quota = quota
        self._cache = cache
        self._clock = clock
        self._probe_interval = probe_interval
        self._sql_only = sql_only
        self._metrics = metrics
        # The PRODUCER span of each reservation's OrderPlaced, appended to ``events_stream``.
        self._tracer = tracer or trace.NoOpTracer()
        self._events_stream = events_stream
        self._publish_attributes = publish_attributes(REDIS, events_stream)  # built once: per reservation
        self.path = Path.SQL if sql_only else Path.REDIS
        self._probe: asyncio.Task[None] | None = None

    # -- public operations ----------------------------------------------------------

    async def reserve(self, order_id: str, lines: list[Line], draft: common_pb2.OrderDraft) -> Reserved:
        lines = merge(lines)
        products = await self._products([line.product_id for line in lines])
        total = _total(lines, products, draft.shipping_cost)
        draft = _with_initial_status(draft, total)
        priced = [
            common_pb2.OrderItem(
                product_id=line.product_id,
                quantity=line.quantity,
                unit_price=products[line.product_id].price.to_proto(),
            )
            for line in lines
        ]
        # The PRODUCER span of OrderPlaced: the event carries its context (built in
        # it), and on the Redis path the Lua call that appends the event runs in it.
        # On the SQL path the event goes to the outbox and the relay appends it later.
        with publishing(self._tracer, REDIS, self._events_stream, attributes=self._publish_attributes) as span:
            event = order_placed(order_id, draft, priced, total, self._clock()).SerializeToString()

            async def on_sql() -> Earlier | None:
                earlier = await self._sql.reserve(order_id, lines, event, self._clock())
                await self._look_again([line.product_id for line in lines])
                return earlier

            earlier, path = await self._either(lambda: self._reserve_on_redis(order_id, lines, event), on_sql)
            if span.is_recording():
                span.set_attribute(ORDER_ID, order_id)
                if path == Path.SQL:
                    # Written to the outbox, not appended yet: the relay's span publishes it.
                    span.set_attributes({OPERATION: "create", OPERATION_TYPE: "create"})
                if earlier is not None:
                    span.set_attribute("ordermesh.already_reserved", True)  # nothing was published
        if earlier is None:
            if self._metrics is not None:
                self._metrics.reservations.labels(path).inc()
            return Reserved(
                order_id,
                lines,
                priced,
                total,
                already_reserved=False,
                released=False,
                initial_status=draft.initial_status,
            )
        released = earlier.released
        if released is None:  # taken on the SQL path: its record there says
            released = await self._sql.state(order_id) == RELEASED
        return Reserved(
            order_id, earlier.lines, priced, total, already_reserved=True, released=released,
            initial_status=draft.initial_status,
        )  # fmt: skip

    async def release(self, order_id: str) -> bool:
        """Give back what the order reserved, where it was taken, once."""

        async def on_redis() -> bool:
            outcome = await self._redis.release(order_id)
            if outcome in ("SQL", "NONE"):
                # Taken on the SQL path (relayed or not yet): released in SQL.
                return bool(await self._release_in_sql(order_id))
            return outcome == "OK"

        async def on_sql() -> bool:
            released = await self._release_in_sql(order_id)
            if released is None:
                # Not a SQL-path reservation: it may be in Redis, which is down.
                raise Unavailable(f"the reservation of {order_id} cannot be checked while Redis is down; retry")
            return released

        return (await self._either(on_redis, on_sql))[0]

    async def _release_in_sql(self, order_id: str) -> bool | None:
        reservation = await self._sql.release(order_id, self._clock())
        if reservation is None:
            return None
        await self._look_again([line.product_id for line in reservation.lines])
        return reservation.state == RESERVED

    async def _look_again(self, product_ids: list[str]) -> None:
        """SQL stock changed here: the refiller's view of it too (what stock levels show)."""
        self._quota.update(await self._ledger.levels(product_ids))

    async def set_stock(self, product_id: str, stock: int) -> Product:
        """Make `stock` units sellable: Redis keeps at most that many, SQL the rest."""
        product = (await self._products([product_id]))[product_id]
        try:
            kept = await self._with_epoch(lambda e: self._redis.take(e, product_id, stock))
        except RedisDown:
            level = (await self._ledger.levels([product_id]))[product_id]
            if level.allocated - level.stranded > 0:
                raise Unavailable(f"Redis holds part of the stock of {product_id} and does not answer; retry") from None
            kept = 0
        self._quota.update({product_id: await self._ledger.set_unallocated(product_id, stock - kept)})
        return Product(product.id, product.name, product.description, product.price, stock, product.categories)

    async def stock_levels(self, product_ids: list[str]) -> dict[str, int]:
        """Sellable units: the Redis counter plus unallocated SQL stock (from the
        refiller's view on the Redis path, from SQL on the SQL path)."""

        async def from_redis() -> dict[str, int]:
            counters = await self._with_epoch(lambda e: self._redis.counters(e, product_ids))
            levels = self._quota.levels
            return {pid: counters[pid] + (levels[pid].unallocated if pid in levels else 0) for pid in product_ids}

        async def from_sql() -> dict[str, int]:
            return {pid: level.unallocated for pid, level in (await self._ledger.levels(product_ids)).items()}

        return (await self._either(from_redis, from_sql))[0]

    async def start(self) -> None:
        """Agree on the epoch, load SQL levels and give every product a first
        allocation before serving (Redis may be down: then later)."""
        await self._quota.refresh()
        if not self._sql_only:
            with contextlib.suppress(RedisDown, Unavailable):
                await self._quota.sync()
                await self._quota.warm(sorted(self._quota.levels))

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)

    @property
    def on_sql(self) -> bool:
        return self.path is Path.SQL

    # -- the Redis path -------------------------------------------------------------

    async def _reserve_on_redis(self, order_id: str, lines: list[Line], event: bytes) -> Earlier | None:
        deadline = time.monotonic() + self._quota.policy.inline_wait_seconds
        while True:
            try:
                earlier = await self._with_epoch(lambda e: self._redis.reserve(e, order_id, lines, event))
            except InsufficientStock as short:
                # Refill inline while SQL has unallocated units; give up when it
                # has none (really sold out) or the wait is over.
                if time.monotonic() > deadline:
                    raise
                try:
                    if not await self._quota.refill_for(short.shortages):
                        raise
                except EpochChanged:  # another replica started an epoch meanwhile
                    await self._quota.sync()
                continue
            if earlier is None:
                for line in lines:
                    self._quota.sold(line.product_id, line.quantity)
            return earlier

    async def _with_epoch(self, operation: Callable[[str], Awaitable[T]]) -> T:
        """Run ``operation`` in the current epoch; once more after a sync if it changed."""
        try:
            return await operation(await self._quota.current_epoch())
        except EpochChanged:
            return await operation(await self._quota.sync())

    # -- path selection -------------------------------------------------------------

    async def _either(self, on_redis: Callable[[], Awaitable[T]], on_sql: Callable[[], Awaitable[T]]) -> tuple[T, str]:
        if self.path is Path.REDIS:
            try:
                return await on_redis(), Path.REDIS
            except RedisDown:
                pass
            # A pooled connection broken by a Redis restart fails once and then
            # reconnects. Every Redis operation here is idempotent (markers).
            try:
                return await on_redis(), Path.REDIS
            except RedisDown as error:
                self._leave_redis(str(error))
        return await on_sql(), Path.SQL

    def _leave_redis(self, reason: str) -> None:
        if self.path is Path.SQL:
            return
        log.warning("stock: Redis unavailable (%s); selling unallocated stock from SQL", reason)
        self.path = Path.SQL
        self._probe = asyncio.create_task(self._wait_for_redis(), name="stock-redis-probe")

    async def _wait_for_redis(self) -> None:
        while True:
            await asyncio.sleep(self._probe_interval)
            try:
                if await self._redis.ping():
                    await self._quota.current_epoch()
                    break
            except Exception as error:  # noqa: BLE001 - the probe must outlive any failure; logged
                log.warning("stock: Redis probe: %s", error)
        self.path = Path.REDIS
        log.warning("stock: Redis answers again; reservations are back on Redis")

    async def _products(self, product_ids: list[str]) -> dict[str, Product]:
        products = await self._cache.get_many(product_ids)
        for product_id in product_ids:
            if product_id not in products:
                raise NotFound("product", product_id)
        return products


def _total(lines: list[Line], products: dict[str, Product], shipping: common_pb2.Money) -> Money:
    """The order's total; every amount must be in one currency (INVALID_ARGUMENT naming the field)."""
    currency = products[lines[0].product_id].price.currency
    violations = [
        FieldViolation(
            "items",
            f"product {line.product_id} is priced in {products[line.product_id].price.currency}, not {currency}",
        )
        for line in lines
        if products[line.product_id].price.currency != currency
    ]
    if shipping.currency_code and shipping.currency_code != currency:
        violations.append(
            FieldViolation("draft.shipping_cost.currency_code", f"must be {currency}, the currency of the items")
        )
    if violations:
        raise InvalidArgument(violations)
    total = Money.from_proto(shipping) if shipping.currency_code else Money(currency, 0)
    for line in lines:
        total = total + products[line.product_id].price.times(line.quantity)
    return total


def _with_initial_status(draft: common_pb2.OrderDraft, total: Money) -> common_pb2.OrderDraft:
    """The draft with the status the order starts in: AWAITING_REVIEW when its
    total reaches ``review_at``, else PENDING; without ``review_at``, the draft's
    own (UNSPECIFIED meaning PENDING). The catalog prices the order here anyway,
    so the caller (checkout) asks no prices of its own to decide."""
    decided = common_pb2.OrderDraft()
    decided.CopyFrom(draft)
    if draft.HasField("review_at"):
        if draft.review_at.currency_code != total.currency:
            raise InvalidArgument.one(
                "draft.review_at.currency_code", f"must be {total.currency}, the order's currency"
            )
        review = total.nanos_total >= Money.from_proto(draft.review_at).nanos_total
        decided.initial_status = common_pb2.AWAITING_REVIEW if review else common_pb2.PENDING
    elif not draft.initial_status:
        decided.initial_status = common_pb2.PENDING
    return decided
