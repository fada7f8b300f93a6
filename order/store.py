"""SQL adapter of one order shard: batch inserts, transitions with history and
outbox in one transaction, reads."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import Table, bindparam, func, insert, or_, select, update
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mesh.db import UnitOfWork, as_utc, reading, run_transaction
from mesh.money import Money
from mesh.paging import after_position, before_position
from order.decisions import Current, Decisions, StatusChange, decide
from order.models import (
    applied_events,
    order_history,
    order_items,
    order_outbox,
    order_traces,
    orders,
    reconcile_checks,
    sweep_marks,
)
from order.orders import Applied, Change, Item, Order, Transition
from order.rows import currency_of, item_row, order_from, order_row
from order.state import Status

T = TypeVar("T")
OutboxEvent = Callable[[str, Status | None, Status, str, str], bytes]


class StoreObserver(Protocol):
    """Told what a transaction stored once it committed (the metrics count it):
    never of an attempt rolled back and run again, nor of a duplicate."""

    def placed(self, orders: Sequence[Order]) -> None:
        """Orders stored for the first time."""

    def changed(self, changes: Sequence[StatusChange]) -> None:
        """Status changes applied."""


class OrderStore:
    def __init__(self, engine: AsyncEngine, status_event: OutboxEvent, observer: StoreObserver | None = None) -> None:
        self.engine = engine
        # Builds the OrderStatusChanged envelope (order id, from, to, reason, tracking id).
        # It runs inside the transaction, which may run again: it must not count anything.
        self._status_event = status_event
        self._observer = observer

    async def _transaction(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        # A unique key is an order id or an event id: the same data fails the same way.
        return await run_transaction(self.engine, work)

    # -- OrderPlaced -> rows ------------------------------------------------------

    async def insert(self, new: Sequence[Order], now: datetime) -> dict[str, str]:
        """All in one multi-row INSERT; if any already exists, or one row's data
        does not fit its column, row by row. A duplicate order id is success
        (at-least-once delivery); an order whose data does not fit is refused
        alone, the others land. Returns the refused order ids with the reason."""
        if not new:
            return {}
        try:
            await self._transaction(lambda c: self._insert(c, new, now))
            if self._observer is not None:
                self._observer.placed(new)
            return {}
        except (IntegrityError, DataError):
            pass
        refused: dict[str, str] = {}
        stored: list[Order] = []
        for order in new:
            try:
                await self._transaction(lambda c, o=order: self._insert(c, [o], now))  # type: ignore[misc]
                stored.append(order)
            except IntegrityError:
                continue  # already there
            except DataError as error:
                refused[order.order_id] = f"order {order.order_id} cannot be stored: {error.orig}"
        if stored and self._observer is not None:
            self._observer.placed(stored)
        return refused

    async def _insert(self, connection: AsyncConnection, new: Sequence[Order], now: datetime) -> None:
        await connection.execute(insert(orders), [order_row(o) for o in new])
        items = [item_row(o.order_id, n, item) for o in new for n, item in enumerate(o.items)]
        if items:
            await connection.execute(insert(order_items), items)
        traced = [{"order_id": o.order_id, "traceparent": o.trace_parent} for o in new if o.trace_parent]
        if traced:
            await connection.execute(insert(order_traces), traced)
        await connection.execute(
            insert(order_history),
            [{"order_id": o.order_id, "status": o.status.value, "at": o.created_at, "reason": "placed"} for o in new],
        )
        await connection.execute(
            insert(order_outbox),
            [
                {
                    "order_id": o.order_id,
                    "event": self._status_event(o.order_id, None, o.status, "placed", ""),
                    "created_at": now,
                }
                for o in new
            ],
        )

    # -- transitions --------------------------------------------------------------

    async def apply(self, transition: Transition, now: datetime) -> tuple[Applied, Status | None]:
        """Apply one transition exactly once; returns the outcome and the status before."""
        return (await self.apply_many([transition], now))[0]

    async def apply_many(self, transitions: Sequence[Transition], now: datetime) -> list[tuple[Applied, Status | None]]:
        """Apply a batch in order, in one transaction; returns each one's outcome and
        the status before it. If a concurrent twin of one of them won (a unique key
        on the event id), one by one, so the others still apply."""
        if not transitions:
            return []
        try:
            decisions = await self._transaction(lambda c: self._apply_in(c, transitions, now))
        except IntegrityError:
            if len(transitions) == 1:
                return [(Applied.DUPLICATE, None)]  # a concurrent twin of this event won
            return [await self.apply(t, now) for t in transitions]
        if decisions.changes and self._observer is not None:
            self._observer.changed(decisions.changes)
        return decisions.results

    async def _apply_in(
        self, connection: AsyncConnection, transitions: Sequence[Transition], now: datetime
    ) -> Decisions:
        """The whole batch in a fixed number of statements, whatever its size: every
        statement costs a round trip to the driver, and a batch is up to 100 events."""
        seen = set(
            (
                await connection.execute(
                    select(applied_events.c.event_id).where(
                        applied_events.c.event_id.in_({t.event_id for t in transitions})
                    )
                )
            ).scalars()
        )
        rows = {
            r.order_id: r
            for r in (
                await connection.execute(
                    select(orders.c.order_id, orders.c.status, orders.c.ship_attempts)
                    .where(orders.c.order_id.in_({t.order_id for t in transitions}))
                    .order_by(orders.c.order_id)  # lock rows in one order: no deadlock between batches
                    .with_for_update()
                )
            ).all()
        }
        decisions = decide(
            transitions, seen, {o: Current(Status(r.status), int(r.ship_attempts)) for o, r in rows.items()}
        )
        changed = {order_id: {**values, "updated_at": now} for order_id, values in decisions.rows.items()}
        history = [
            {"order_id": c.order_id, "status": c.after.value, "at": now, "reason": c.reason} for c in decisions.changes
        ]
        outbox = [
            {
                "order_id": c.order_id,
                "event": self._status_event(c.order_id, c.before, c.after, c.reason, c.tracking_id),
                "created_at": now,
            }
            for c in decisions.changes
        ]
        recorded = [
            {"event_id": event_id, "order_id": order_id, "outcome": outcome, "detail": detail, "at": now}
            for event_id, order_id, outcome, detail in decisions.judged
        ]
        await self._update_rows(connection, changed)
        for table, added in ((order_history, history), (order_outbox, outbox), (applied_events, recorded)):
            if added:
                await connection.execute(insert(table), added)
        return decisions

    @staticmethod
    async def _update_rows(connection: AsyncConnection, changed: dict[str, dict[str, Any]]) -> None:
        """One executemany per set of changed columns (PAID sets two, SHIPPED three)."""
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for order_id, values in changed.items():
            by_columns.setdefault(tuple(sorted(values)), []).append({"key": order_id, **values})
        for params in by_columns.values():
            # The SET clause comes from the parameters' keys (the same in every row here).
            await connection.execute(update(orders).where(orders.c.order_id == bindparam("key")), params)

    # -- reads --------------------------------------------------------------------

    async def get(self, order_id: str) -> Order | None:
        return (await self.get_many([order_id])).get(order_id)

    async def get_many(self, order_ids: Sequence[str]) -> dict[str, Order]:
        async with reading(self.engine, snapshot=True) as connection:
            rows = (await connection.execute(select(orders).where(orders.c.order_id.in_(order_ids)))).all()
            return {o.order_id: o for o in await self._complete(connection, rows)}

    async def by_user(self, user_id: str, limit: int, before: tuple[datetime, str] | None) -> list[Order]:
        query = select(orders).where(orders.c.user_id == user_id)
        if before is not None:
            query = query.where(before_position(orders.c.created_at, orders.c.order_id, before))
        query = query.order_by(orders.c.created_at.desc(), orders.c.order_id.desc()).limit(limit)
        async with reading(self.engine, snapshot=True) as connection:
            rows = (await connection.execute(query)).all()
            return await self._complete(connection, rows)

    async def cancelled_after(self, mark: tuple[datetime, str] | None, until: datetime, limit: int) -> list[Order]:
        """CANCELLED orders after ``mark`` (in (updated_at, order_id) order) and not after ``until``."""
        query = select(orders).where(orders.c.status == Status.CANCELLED.value, orders.c.updated_at <= until)
        if mark is not None:
            query = query.where(after_position(orders.c.updated_at, orders.c.order_id, mark))
        query = query.order_by(orders.c.updated_at, orders.c.order_id).limit(limit)
        async with reading(self.engine, snapshot=True) as connection:
            rows = (await connection.execute(query)).all()
            return await self._complete(connection, rows)

    async def mark(self, sweep: str) -> str:
        """Where ``sweep`` stopped ("" before its first run)."""
        async with reading(self.engine) as connection:
            query = select(sweep_marks.c.position).where(sweep_marks.c.sweep == sweep)
            row = (await connection.execute(query)).first()
        return str(row.position) if row is not None else ""

    async def set_mark(self, sweep: str, position: str) -> None:
        await self._transaction(
            lambda connection: _upsert(connection, sweep_marks, {"sweep": sweep}, {"position": position})
        )

    async def in_status(self, status: Status, updated_before: datetime, limit: int) -> list[Order]:
        query = (
            select(orders)
            .where(orders.c.status == status.value, orders.c.updated_at <= updated_before)
            .order_by(orders.c.updated_at)
            .limit(limit)
        )
        async with reading(self.engine, snapshot=True) as connection:
            rows = (await connection.execute(query)).all()
            return await self._complete(connection, rows)

    async def count_in(self, statuses: Sequence[Status]) -> dict[Status, int]:
        """How many orders are in each of ``statuses`` now: one GROUP BY that the
        (status, updated_at) index answers without reading the rows."""
        query = (
            select(orders.c.status, func.count())
            .where(orders.c.status.in_([s.value for s in statuses]))
            .group_by(orders.c.status)
        )
        async with reading(self.engine) as connection:
            rows = (await connection.execute(query)).all()
        counts = dict.fromkeys(statuses, 0)
        counts.update({Status(status): int(count) for status, count in rows})
        return counts

    async def reconcile_due(self, updated_before: datetime, now: datetime, limit: int) -> list[tuple[Order, int]]:
        """PENDING orders not changed since ``updated_before`` whose next check is
        due, with how many checks they had: the oldest first. Orders backing off
        are not read at all, so they never crowd the due ones out of a batch."""
        checks = reconcile_checks
        query = (
            select(orders, checks.c.checks)
            .select_from(orders.outerjoin(checks, checks.c.order_id == orders.c.order_id))
            .where(
                orders.c.status == Status.PENDING.value,
                orders.c.updated_at <= updated_before,
                or_(checks.c.next_at.is_(None), checks.c.next_at <= now),
            )
            .order_by(orders.c.updated_at)
            .limit(limit)
        )
        async with reading(self.engine, snapshot=True) as connection:
            rows = (await connection.execute(query)).all()
            found = await self._complete(connection, rows)
        return [(order, row.checks or 0) for order, row in zip(found, rows, strict=True)]

    async def postpone_check(self, order_id: str, checks: int, next_at: datetime) -> None:
        values = {"checks": checks, "next_at": next_at}
        await self._transaction(
            lambda connection: _upsert(connection, reconcile_checks, {"order_id": order_id}, values)
        )

    async def _complete(self, connection: AsyncConnection, rows: Sequence[Any]) -> list[Order]:
        ids = [r.order_id for r in rows]
        items: dict[str, list[Item]] = {i: [] for i in ids}
        history: dict[str, list[Change]] = {i: [] for i in ids}
        if ids:
            for r in (
                await connection.execute(
                    select(order_items).where(order_items.c.order_id.in_(ids)).order_by(order_items.c.line)
                )
            ).all():
                items[r.order_id].append(
                    Item(r.product_id, r.quantity, Money.of(currency_of(rows, r.order_id), r.unit_units, r.unit_nanos))
                )
            for r in (
                await connection.execute(
                    select(order_history).where(order_history.c.order_id.in_(ids)).order_by(order_history.c.id)
                )
            ).all():
                history[r.order_id].append(Change(Status(r.status), as_utc(r.at), r.reason))
        return [order_from(r, tuple(items[r.order_id]), tuple(history[r.order_id])) for r in rows]

    async def trace_parents(self, order_ids: Sequence[str]) -> dict[str, str]:
        """The traceparent each order's OrderPlaced carried, for those that have one."""
        if not order_ids:
            return {}
        query = select(order_traces).where(order_traces.c.order_id.in_(order_ids))
        async with reading(self.engine) as connection:
            rows = (await connection.execute(query)).all()
        return {r.order_id: r.traceparent for r in rows}

    # -- outbox relay ---------------------------------------------------------------

    async def outbox(self, limit: int) -> list[tuple[int, str, bytes]]:
        async with reading(self.engine) as connection:
            rows = (await connection.execute(select(order_outbox).order_by(order_outbox.c.id).limit(limit))).all()
        return [(r.id, r.order_id, bytes(r.event)) for r in rows]

    async def delete_outbox(self, ids: list[int]) -> None:
        async with UnitOfWork(self.engine) as uow:
            await uow.connection.execute(order_outbox.delete().where(order_outbox.c.id.in_(ids)))
            await uow.commit()


async def _upsert(connection: AsyncConnection, table: Table, key: dict[str, Any], values: dict[str, Any]) -> None:
    """Update the row with ``key``, or insert it (inside the caller's transaction)."""
    where = [table.c[column] == value for column, value in key.items()]
    if (await connection.execute(update(table).where(*where).values(**values))).rowcount == 0:
        await connection.execute(insert(table).values(**key, **values))
