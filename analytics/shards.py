"""The order context's shard databases, read-only, for the backfill: each order
with its lines, and the time of the change that set its status.

The one place the analytics context reads another context's tables. It reads
them through the order context's own table definitions (``order.models``), so
a change to that schema breaks the backfill's tests instead of quietly
breaking the read model.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from analytics.facts import Backfilled, Line, Order, Status
from mesh.db import as_utc, reading
from mesh.money import Money
from order.models import order_history, order_items, orders


class SqlOrderShard:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def orders_after(self, after: str, limit: int) -> list[Backfilled]:
        o, i, h = orders, order_items, order_history
        query = (
            select(o.c.order_id, o.c.user_id, o.c.email, o.c.status, o.c.currency, o.c.total_units,
                   o.c.total_nanos, o.c.created_at, o.c.updated_at)
            .where(o.c.order_id > after)
            .order_by(o.c.order_id)
            .limit(limit)
        )  # fmt: skip
        async with reading(self.engine) as connection:
            rows = (await connection.execute(query)).all()
            ids = [row.order_id for row in rows]
            if not ids:
                return []
            items = (
                await connection.execute(select(i).where(i.c.order_id.in_(ids)).order_by(i.c.order_id, i.c.line))
            ).all()
            # Read after the orders: every change a row shows is in the history by now.
            history = (
                await connection.execute(
                    select(h.c.order_id, h.c.status, h.c.at).where(h.c.order_id.in_(ids)).order_by(h.c.id)
                )
            ).all()
        lines: dict[str, list[Any]] = {}
        for item in items:
            lines.setdefault(item.order_id, []).append(item)
        # By id, so the newest row of each (order, status) is the one kept.
        newest = {(change.order_id, change.status): change.at for change in history}
        return [_backfilled(row, lines.get(row.order_id, []), newest) for row in rows]

    async def close(self) -> None:
        await self.engine.dispose()


def _backfilled(row: Any, items: list[Any], newest: dict[tuple[str, str], datetime]) -> Backfilled:
    """The order as stored, and its status since the order context made the change
    to it: the newest history row of that status (the history may have moved on
    since the row was read), or ``updated_at``, which every change sets too, for
    an order without one."""
    currency = row.currency
    order = Order(
        row.order_id,
        row.user_id,
        row.email,
        Money.of(currency, row.total_units, row.total_nanos),
        as_utc(row.created_at),
        tuple(Line(i.product_id, i.quantity, Money.of(currency, i.unit_units, i.unit_nanos)) for i in items),
    )
    since = newest.get((row.order_id, row.status), row.updated_at)
    return Backfilled(order, Status(row.status), as_utc(since))
