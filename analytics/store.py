"""SQL adapter of the read model: a batch of events in one transaction (the
effect and the ids of the events taken, together), and the reads."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from sqlalchemy import Insert, Table, bindparam, func, insert, select, update
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.exc import DataError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from analytics.facts import Backfilled, Entry, Event, Fact, Line, Order, Stamp, Status
from analytics.models import applied_events, order_index, order_lines, sales_by_hour, sales_by_product
from analytics.projection import Projection, project
from analytics.reports import OrderFilter, OrderSummary, ProductSales, SalesRow
from mesh.db import as_utc, reading, run_transaction
from mesh.money import NANOS_PER_UNIT, Money
from mesh.paging import before_position

T = TypeVar("T")


class SqlAnalyticsStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._hourly = _increment(engine.dialect.name, sales_by_hour, ["orders", "revenue_units", "revenue_nanos"])
        self._sales = _increment(engine.dialect.name, sales_by_product, ["units", "revenue_units", "revenue_nanos"])

    # -- events in ----------------------------------------------------------------

    async def apply(self, events: Sequence[Event], now: datetime) -> dict[str, str]:
        """The batch in one transaction. Data a column cannot hold (DataError) is
        the same on every try: then one event per transaction, so only the
        events at fault are refused and the others are stored."""
        if not events:
            return {}
        try:
            await self._transaction(lambda c: self._apply_in(c, events, now))
            return {}
        except DataError as error:
            if len(events) == 1:
                return {events[0].event_id: f"cannot be stored: {error.orig}"}
        refused: dict[str, str] = {}
        for event in events:
            refused |= await self.apply([event], now)
        return refused

    async def backfill(self, orders: Sequence[Backfilled], now: datetime) -> int:
        """Orders read from an order shard, in one transaction, by the same rules
        as the events; returns how many entries they changed (none when the read
        model already knew each order as it stands, or newer)."""
        if not orders:
            return 0
        projection = await self._transaction(lambda c: self._apply_in(c, orders, now))
        return len(projection.entries)

    async def _transaction(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Unlike the order store, a unique-key violation is worth running again:
        every unique key here is one a concurrent batch just took (the same
        event redelivered to another consumer, or the first events of an order
        arriving on both streams at once), and the next run reads what that
        batch committed and takes only what is left."""
        return await run_transaction(self.engine, work, retry_unique=True)

    async def _apply_in(self, connection: AsyncConnection, facts: Sequence[Fact], now: datetime) -> Projection:
        """A fixed number of statements whatever the batch's size. Rows are locked
        and written in key order, so two batches never wait for each other in a circle."""
        ids = {fact.event_id for fact in facts if not isinstance(fact, Backfilled)}
        seen: set[str] = set()
        if ids:
            query = select(applied_events.c.event_id).where(applied_events.c.event_id.in_(ids))
            seen = set((await connection.execute(query)).scalars())
        current = await self._entries(connection, sorted({fact.order_id for fact in facts}))
        projection = project(facts, seen, current)
        new = [entry for oid, entry in sorted(projection.entries.items()) if oid not in current]
        changed = [entry for oid, entry in sorted(projection.entries.items()) if oid in current]
        if new:
            await connection.execute(insert(order_index), [_index_row(entry, now) for entry in new])
        if changed:
            rows = [{"key": entry.order_id, **_index_row(entry, now)} for entry in changed]
            for row in rows:
                del row["order_id"]  # the SET clause comes from the parameters' keys
            await connection.execute(update(order_index).where(order_index.c.order_id == bindparam("key")), rows)
        lines = [
            _line_row(order.order_id, n, line) for order in projection.placed for n, line in enumerate(order.lines)
        ]
        if lines:
            await connection.execute(insert(order_lines), lines)
        if projection.hourly:
            await connection.execute(
                self._hourly,
                [
                    {"hour": hour, "status": status.value, "currency": currency, "day": hour.date(), "orders": count}
                    | _amount(nanos)
                    for (hour, status, currency), (count, nanos) in sorted(projection.hourly.items())
                ],
            )
        if projection.sales:
            await connection.execute(
                self._sales,
                [
                    {"day": day, "product_id": product, "currency": currency, "units": units} | _amount(nanos)
                    for (day, product, currency), (units, nanos) in sorted(projection.sales.items())
                ],
            )
        if projection.applied:
            await connection.execute(
                insert(applied_events),
                [{"event_id": event_id, "order_id": oid, "at": now} for event_id, oid in projection.applied],
            )
        return projection

    @staticmethod
    async def _entries(connection: AsyncConnection, order_ids: list[str]) -> dict[str, Entry]:
        """The entries of ``order_ids`` that exist, locked until the transaction ends."""
        rows = (
            await connection.execute(
                select(order_index)
                .where(order_index.c.order_id.in_(order_ids))
                .order_by(order_index.c.order_id)
                .with_for_update()
            )
        ).all()
        placed = [row.order_id for row in rows if row.created_at is not None]
        lines: dict[str, list[Any]] = {}
        if placed:
            query = select(order_lines).where(order_lines.c.order_id.in_(placed)).order_by(order_lines.c.line)
            for line in (await connection.execute(query)).all():
                lines.setdefault(line.order_id, []).append(line)
        return {row.order_id: _entry(row, lines.get(row.order_id, [])) for row in rows}

    # -- reads ----------------------------------------------------------------------

    async def top_products(self, day: date, limit: int) -> list[ProductSales]:
        t = sales_by_product
        query = (
            select(t)
            .where(t.c.day == day, t.c.units > 0)
            .order_by(t.c.units.desc(), t.c.product_id, t.c.currency)
            .limit(limit)
        )
        async with reading(self.engine) as connection:
            rows = (await connection.execute(query)).all()
        return [
            ProductSales(r.product_id, int(r.units), _money(r.currency, r.revenue_units, r.revenue_nanos)) for r in rows
        ]

    async def sales(self, start: datetime, end: datetime, by_day: bool) -> list[SalesRow]:
        t = sales_by_hour
        period = t.c.day if by_day else t.c.hour
        orders = func.sum(t.c.orders)
        query = (
            select(period.label("start"), t.c.status, t.c.currency, orders.label("orders"),
                   func.sum(t.c.revenue_units).label("units"), func.sum(t.c.revenue_nanos).label("nanos"))
            .where(t.c.hour >= start, t.c.hour < end)
            .group_by(period, t.c.status, t.c.currency)
            .having(orders > 0)
        )  # fmt: skip
        async with reading(self.engine) as connection:
            rows = (await connection.execute(query)).all()
        return [
            SalesRow(_start(r.start), Status(r.status), int(r.orders), _money(r.currency, r.units, r.nanos))
            for r in rows
        ]

    async def search(self, where: OrderFilter, before: tuple[datetime, str] | None, limit: int) -> list[OrderSummary]:
        t = order_index
        query = select(t).where(t.c.created_at.is_not(None))
        if where.email:
            query = query.where(t.c.email_key == where.email.lower())
        if where.user_id:
            query = query.where(t.c.user_id == where.user_id)
        if where.status is not None:
            query = query.where(t.c.status == where.status.value)
        if where.since is not None:
            query = query.where(t.c.created_at >= where.since)
        if where.until is not None:
            query = query.where(t.c.created_at < where.until)
        if before is not None:
            query = query.where(before_position(t.c.created_at, t.c.order_id, before))
        query = query.order_by(t.c.created_at.desc(), t.c.order_id.desc()).limit(limit)
        async with reading(self.engine) as connection:
            rows = (await connection.execute(query)).all()
        return [
            OrderSummary(
                r.order_id, r.user_id, r.email, Status(r.status),
                Money.of(r.currency, r.total_units, r.total_nanos), as_utc(r.created_at),
            )
            for r in rows
        ]  # fmt: skip


def _increment(dialect: str, table: Table, amounts: list[str]) -> Insert:
    """INSERT a row, or add its amounts to the row with its key: one statement
    (and one executemany for a batch) with no read before it and no race
    between two batches creating the same row. Each backend spells it its way."""
    if dialect == "sqlite":
        statement = sqlite.insert(table)
        keys = [column.name for column in table.primary_key.columns]
        return statement.on_conflict_do_update(
            index_elements=keys, set_={name: table.c[name] + statement.excluded[name] for name in amounts}
        )
    upsert = mysql.insert(table)
    return upsert.on_duplicate_key_update({name: table.c[name] + upsert.inserted[name] for name in amounts})


def _amount(nanos: int) -> dict[str, int]:
    units, rest = divmod(nanos, NANOS_PER_UNIT)  # floor: rest in 0..999,999,999, units carry the sign
    return {"revenue_units": units, "revenue_nanos": rest}


def _money(currency: str, units: Any, nanos: Any) -> Money:
    # Sums come back as Decimal from MariaDB, int from SQLite.
    return Money.of(currency, int(units), int(nanos))


def _start(value: datetime | date) -> datetime:
    if isinstance(value, datetime):
        return as_utc(value)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def _index_row(entry: Entry, now: datetime) -> dict[str, Any]:
    order, stamp = entry.order, entry.stamp
    units, nanos = divmod(order.total.nanos_total, NANOS_PER_UNIT) if order is not None else (0, 0)
    return {
        "order_id": entry.order_id,
        "status": entry.status.value,
        "status_at": stamp.at if stamp is not None else None,
        "status_event": stamp.event_id if stamp is not None else "",
        "created_at": order.created_at if order is not None else None,
        "user_id": order.user_id if order is not None else "",
        "email": order.email if order is not None else "",
        "email_key": order.email.lower() if order is not None else "",
        "currency": order.total.currency if order is not None else "",
        "total_units": units,
        "total_nanos": nanos,
        "updated_at": now,
    }


def _line_row(order_id: str, number: int, line: Line) -> dict[str, Any]:
    units, nanos = divmod(line.unit_price.nanos_total, NANOS_PER_UNIT)
    return {
        "order_id": order_id,
        "line": number,
        "product_id": line.product_id,
        "quantity": line.quantity,
        "unit_units": units,
        "unit_nanos": nanos,
    }


def _entry(row: Any, lines: list[Any]) -> Entry:
    status = Status(row.status)
    stamp = Stamp.of(status, as_utc(row.status_at), row.status_event) if row.status_at is not None else None
    order = None
    if row.created_at is not None:
        order = Order(
            row.order_id,
            row.user_id,
            row.email,
            Money.of(row.currency, row.total_units, row.total_nanos),
            as_utc(row.created_at),
            tuple(Line(r.product_id, r.quantity, Money.of(row.currency, r.unit_units, r.unit_nanos)) for r in lines),
        )
    return Entry(row.order_id, status, stamp, order)
