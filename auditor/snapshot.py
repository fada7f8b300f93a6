"""What the auditor reads: each context's records, read-only, one after the other.

The reads are not one snapshot across databases: on a busy mesh something
moves between them. The auditor is meant for a quiet mesh, and looks again
before it reports (see ``auditor.audit``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from auditor.settings import AuditSettings
from catalog import models as catalog_models
from catalog.audit import Audit as StockAudit
from catalog.audit import audit as audit_stock
from catalog.keys import Keys
from catalog.ledger import Ledger
from catalog.redis_stock import RedisStock
from catalog.sql_path import RELEASED, RESERVED, SqlPath
from catalog.stock import SQL_SOURCE, Line, decode_lines
from mesh.db import as_utc, create_engine, reading
from mesh.redis_pool import connect
from order import models as order_models
from payment import models as payment_models
from shipping import models as shipping_models

Amount = tuple[str, int, int]  # currency, units, nanos


@dataclass(frozen=True)
class OrderRow:
    order_id: str
    shard: int
    status: str
    amount: Amount
    tracking_id: str
    created_at: datetime
    lines: dict[str, int]


@dataclass(frozen=True)
class Reservation:
    order_id: str
    lines: dict[str, int]
    released: bool
    path: str  # "redis" or "sql"


@dataclass(frozen=True)
class PaymentRow:
    order_id: str
    transaction_id: str
    status: str
    amount: Amount


@dataclass(frozen=True)
class ShipmentRow:
    order_id: str
    tracking_id: str


@dataclass
class Snapshot:
    stock: StockAudit
    orders: list[OrderRow] = field(default_factory=list)
    reservations: dict[str, Reservation] = field(default_factory=dict)
    payments: list[PaymentRow] = field(default_factory=list)
    shipments: list[ShipmentRow] = field(default_factory=list)
    # Orders with a dead letter nobody replayed yet, in any order shard.
    dead_lettered: set[str] = field(default_factory=set)


@dataclass
class Sources:
    """Read-only handles on every context's records."""

    catalog: AsyncEngine
    orders: list[AsyncEngine]
    payment: AsyncEngine
    shipping: AsyncEngine
    redis_stock: RedisStock


@asynccontextmanager
async def open_sources(settings: AuditSettings) -> AsyncIterator[Sources]:
    async with AsyncExitStack() as stack:
        engines = []
        for url in [
            settings.catalog_database_url,
            settings.payment_database_url,
            settings.shipping_database_url,
            *settings.order_urls,
        ]:
            engine = create_engine(url, pool_size=2)
            stack.push_async_callback(engine.dispose)
            engines.append(engine)
        client = connect(settings.redis_url, timeout=5.0, max_connections=4, pool_timeout=5.0)
        stack.push_async_callback(client.aclose)
        # The marker TTL matters only to writes; the auditor never writes.
        redis_stock = RedisStock(client, Keys(settings.catalog_key_prefix), marker_ttl_seconds=3600)
        yield Sources(engines[0], engines[3:], engines[1], engines[2], redis_stock)


async def read(sources: Sources) -> Snapshot:
    catalog = sources.catalog
    # One look: the auditor's own settle loop looks again at everything.
    snapshot = Snapshot(await audit_stock(sources.redis_stock, Ledger(catalog), SqlPath(catalog), looks=1))
    snapshot.reservations = await _reservations(sources.redis_stock, catalog)
    for shard, engine in enumerate(sources.orders):
        snapshot.orders += await _orders(engine, shard)
        snapshot.dead_lettered |= await _dead_lettered(engine)
    snapshot.payments = await _payments(sources.payment)
    snapshot.shipments = await _shipments(sources.shipping)
    return snapshot


async def _reservations(redis_stock: RedisStock, catalog: AsyncEngine) -> dict[str, Reservation]:
    """Each order's reservation: a Redis marker (released if its release marker is
    there), or an SQL-path row. An SQL-path order's marker (written when its
    OrderPlaced was relayed) only points at the row, which holds the state."""
    markers = {o: m for o, m in (await redis_stock.all_markers()).items() if m.source != SQL_SOURCE}
    released = await redis_stock.released(list(markers))
    found = {
        order_id: Reservation(order_id, _lines(m.lines), order_id in released, "redis")
        for order_id, m in markers.items()
    }
    t = catalog_models.sql_reservations
    async with reading(catalog) as connection:
        rows = (await connection.execute(select(t.c.order_id, t.c.lines, t.c.state))).all()
    for row in rows:
        if row.state in (RESERVED, RELEASED) and row.order_id not in found:
            lines = _lines(decode_lines(row.lines))
            found[row.order_id] = Reservation(row.order_id, lines, row.state == RELEASED, "sql")
    return found


def _lines(lines: list[Line]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for line in lines:
        totals[line.product_id] = totals.get(line.product_id, 0) + line.quantity
    return totals


async def _orders(engine: AsyncEngine, shard: int) -> list[OrderRow]:
    o, i = order_models.orders, order_models.order_items
    async with reading(engine) as connection:
        rows = (
            await connection.execute(
                select(
                    o.c.order_id,
                    o.c.status,
                    o.c.currency,
                    o.c.total_units,
                    o.c.total_nanos,
                    o.c.tracking_id,
                    o.c.created_at,
                )
            )
        ).all()
        items = (await connection.execute(select(i.c.order_id, i.c.product_id, i.c.quantity))).all()
    lines: dict[str, dict[str, int]] = {}
    for item in items:
        per_order = lines.setdefault(item.order_id, {})
        per_order[item.product_id] = per_order.get(item.product_id, 0) + item.quantity
    return [
        OrderRow(
            r.order_id,
            shard,
            r.status,
            (r.currency, r.total_units, r.total_nanos),
            r.tracking_id,
            as_utc(r.created_at),
            lines.get(r.order_id, {}),
        )
        for r in rows
    ]


async def _dead_lettered(engine: AsyncEngine) -> set[str]:
    d = order_models.dead_letters
    async with reading(engine) as connection:
        rows = (await connection.execute(select(d.c.order_id).where(d.c.replayed_at.is_(None)))).all()
    return {r.order_id for r in rows if r.order_id}


async def _payments(engine: AsyncEngine) -> list[PaymentRow]:
    p = payment_models.payments
    async with reading(engine) as connection:
        rows = (
            await connection.execute(
                select(p.c.order_id, p.c.transaction_id, p.c.status, p.c.currency, p.c.units, p.c.nanos)
            )
        ).all()
    return [PaymentRow(r.order_id, r.transaction_id, r.status, (r.currency, r.units, r.nanos)) for r in rows]


async def _shipments(engine: AsyncEngine) -> list[ShipmentRow]:
    s = shipping_models.shipments
    async with reading(engine) as connection:
        rows = (await connection.execute(select(s.c.order_id, s.c.tracking_id))).all()
    return [ShipmentRow(r.order_id, r.tracking_id) for r in rows]
