"""The SQL record of truth for stock: per product `stock`, `allocated` to Redis
and `stranded` in a lost Redis; refills; epochs; the write-behind target.

Invariant kept by every method here: 0 <= stranded <= allocated <= stock.
Units move into `allocated` only by a refill, leave it only through the
journal (Redis sold them, or gave them back to SQL) or a reclaim.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy import case, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from catalog.journal import JournalEntry, totals
from catalog.models import journal_applied, products, stock_epochs, stock_refills, stock_releases
from catalog.stock import EpochChanged, Line, decode_lines, encode_lines
from mesh.db import UnitOfWork, reading, run_transaction
from mesh.errors import NotFound

T = TypeVar("T")


async def transaction(engine: AsyncEngine, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """Run ``work`` in one transaction, again on fresh state after a lost race
    (a concurrent twin took the unique key), a deadlock or a lock wait."""
    return await run_transaction(engine, work, attempts=8, retry_unique=True)


@dataclass(frozen=True)
class Level:
    stock: int
    allocated: int
    stranded: int

    @property
    def unallocated(self) -> int:
        """What the SQL path may sell, and refills may move to Redis."""
        return self.stock - self.allocated


@dataclass(frozen=True)
class Refill:
    refill_id: str
    epoch: str
    units: dict[str, int]


async def locked_levels(connection: AsyncConnection, product_ids: list[str]) -> dict[str, Level]:
    """Rows locked in product-id order: one global order, so no deadlocks."""
    rows = (
        await connection.execute(
            select(products.c.id, products.c.stock, products.c.allocated, products.c.stranded)
            .where(products.c.id.in_(sorted(product_ids)))
            .order_by(products.c.id)
            .with_for_update()
        )
    ).all()
    return {row.id: Level(int(row.stock), int(row.allocated), int(row.stranded)) for row in rows}


class Ledger:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def levels(self, product_ids: list[str] | None = None) -> dict[str, Level]:
        query = select(products.c.id, products.c.stock, products.c.allocated, products.c.stranded)
        if product_ids is not None:
            query = query.where(products.c.id.in_(product_ids))
        async with reading(self.engine) as connection:
            rows = (await connection.execute(query.order_by(products.c.id))).all()
        return {row.id: Level(int(row.stock), int(row.allocated), int(row.stranded)) for row in rows}

    # -- epochs -------------------------------------------------------------------

    async def current_epoch(self) -> str | None:
        async with reading(self.engine) as connection:
            query = select(stock_epochs.c.epoch).where(stock_epochs.c.ended_at.is_(None))
            return (await connection.execute(query)).scalar_one_or_none()

    async def start_epoch(self, epoch: str, expected: str | None, now: datetime) -> bool:
        """End ``expected`` (the current epoch, None if there is none) and start
        ``epoch``; all allocation of the old one is stranded, with its refills.

        False if the current epoch is not ``expected`` any more (look again)."""

        async def work(connection: AsyncConnection) -> bool:
            current = (
                await connection.execute(
                    select(stock_epochs.c.epoch).where(stock_epochs.c.ended_at.is_(None)).with_for_update()
                )
            ).scalar_one_or_none()
            if current != expected:
                return False
            if current is not None:
                await connection.execute(
                    update(stock_epochs).where(stock_epochs.c.epoch == current).values(ended_at=now)
                )
                # Rows locked in id order, like every other writer of products.
                await connection.execute(select(products.c.id).order_by(products.c.id).with_for_update())
                await connection.execute(update(products).values(stranded=products.c.allocated))
                await connection.execute(delete(stock_refills))
            await connection.execute(insert(stock_epochs).values(epoch=epoch, started_at=now, ended_at=None))
            return True

        return await transaction(self.engine, work)

    # -- refills ------------------------------------------------------------------

    async def allocate(
        self, epoch: str, wanted: dict[str, int], now: datetime
    ) -> tuple[Refill | None, dict[str, Level]]:
        """Move up to ``wanted`` units per product into `allocated`, under a new
        refill id; returns the refill (None if nothing could be moved) and the
        products' levels after it."""

        async def work(connection: AsyncConnection) -> tuple[Refill | None, dict[str, Level]]:
            await self._check_epoch(connection, epoch)
            levels = await locked_levels(connection, list(wanted))
            granted = {
                pid: min(units, levels[pid].unallocated)
                for pid, units in sorted(wanted.items())
                if pid in levels and min(units, levels[pid].unallocated) > 0
            }
            if not granted:
                return None, levels
            await connection.execute(
                update(products)
                .where(products.c.id.in_(list(granted)))
                .values(allocated=products.c.allocated + case(granted, value=products.c.id, else_=0))
            )
            refill = Refill(uuid.uuid4().hex, epoch, granted)
            await connection.execute(
                insert(stock_refills).values(
                    refill_id=refill.refill_id,
                    epoch=epoch,
                    lines=encode_lines(Line(p, u) for p, u in granted.items()),
                    created_at=now,
                )
            )
            after = {
                pid: Level(level.stock, level.allocated + granted.get(pid, 0), level.stranded)
                for pid, level in levels.items()
            }
            return refill, after

        return await transaction(self.engine, work)

    async def pending_refills(self, epoch: str | None = None, before: datetime | None = None) -> list[Refill]:
        query = select(stock_refills).order_by(stock_refills.c.created_at)
        if epoch is not None:
            query = query.where(stock_refills.c.epoch == epoch)
        if before is not None:
            query = query.where(stock_refills.c.created_at < before)
        async with reading(self.engine) as connection:
            rows = (await connection.execute(query)).all()
        return [
            Refill(row.refill_id, row.epoch, {line.product_id: line.quantity for line in decode_lines(row.lines)})
            for row in rows
        ]

    async def finish_refills(self, refill_ids: list[str]) -> None:
        async with UnitOfWork(self.engine) as uow:
            await uow.connection.execute(delete(stock_refills).where(stock_refills.c.refill_id.in_(refill_ids)))
            await uow.commit()

    async def _check_epoch(self, connection: AsyncConnection, epoch: str) -> None:
        # A shared lock: an epoch change (which strands allocation) waits for
        # this transaction, and this one sees the epoch it commits against.
        current = (
            await connection.execute(
                select(stock_epochs.c.epoch).where(stock_epochs.c.ended_at.is_(None)).with_for_update(read=True)
            )
        ).scalar_one_or_none()
        if current != epoch:
            raise EpochChanged(f"SQL is in epoch {current}, not {epoch}")

    # -- the write-behind target -------------------------------------------------

    async def apply_journal(self, entries: list[JournalEntry], epoch: str, now: datetime) -> int:
        """Apply entries of a journal read from a Redis in ``epoch``; returns how
        many were new. Every unit Redis sold or got back moves `stock` and
        `allocated` together. Entries of an ended epoch (a batch read just
        before its Redis was lost) also move `stranded`: those units were not
        lost after all. Entries of an epoch this database never had are not
        applied: they were sold from counters no refill of ours filled."""

        async def work(connection: AsyncConnection) -> int:
            rows = (
                await connection.execute(
                    select(stock_epochs.c.epoch, stock_epochs.c.ended_at)
                    .where(stock_epochs.c.epoch == epoch)
                    .with_for_update(read=True)
                )
            ).first()
            ids = [e.entry_id for e in entries]
            seen = set(
                (
                    await connection.execute(
                        select(journal_applied.c.entry_id).where(journal_applied.c.entry_id.in_(ids))
                    )
                )
                .scalars()
                .all()
            )
            fresh = [e for e in entries if e.entry_id not in seen]
            if not fresh:
                return 0
            if rows is not None:
                net = {pid: delta for pid, delta in totals(fresh).items() if delta}
                if net:
                    change = case(net, value=products.c.id, else_=0)
                    values = {"stock": products.c.stock + change, "allocated": products.c.allocated + change}
                    if rows.ended_at is not None:
                        values["stranded"] = products.c.stranded + change
                    await locked_levels(connection, list(net))
                    await connection.execute(update(products).where(products.c.id.in_(list(net))).values(**values))
                releases = [
                    {
                        "source": e.entry_id,
                        "order_id": e.order_id,
                        "product_id": e.product_id,
                        "released_at": now,
                    }
                    for e in fresh
                    if e.reason == "release"
                ]
                if releases:
                    await connection.execute(insert(stock_releases), releases)
            await connection.execute(
                insert(journal_applied), [{"entry_id": e.entry_id, "applied_at": now} for e in fresh]
            )
            return len(fresh) if rows is not None else 0

        return await transaction(self.engine, work)

    # -- operator actions ---------------------------------------------------------

    async def set_unallocated(self, product_id: str, units: int) -> Level:
        """SetStock's SQL half: leave ``units`` unallocated beside what Redis holds."""

        async def work(connection: AsyncConnection) -> Level:
            levels = await locked_levels(connection, [product_id])
            if product_id not in levels:
                raise NotFound("product", product_id)
            level = levels[product_id]
            await connection.execute(
                update(products).where(products.c.id == product_id).values(stock=level.allocated + units)
            )
            return Level(level.allocated + units, level.allocated, level.stranded)

        return await transaction(self.engine, work)

    async def reclaim(self, only: dict[str, int] | None = None) -> dict[str, int]:
        """Return stranded units to unallocated stock (all, or ``only``'s counts
        per product, each capped at what is stranded); returns what moved."""

        async def work(connection: AsyncConnection) -> dict[str, int]:
            stranded = (
                (await connection.execute(select(products.c.id).where(products.c.stranded > 0).order_by(products.c.id)))
                .scalars()
                .all()
            )
            levels = await locked_levels(connection, list(stranded))
            moved = {
                pid: min(level.stranded, level.stranded if only is None else only.get(pid, 0))
                for pid, level in levels.items()
            }
            moved = {pid: units for pid, units in moved.items() if units > 0}
            if moved:
                back = case(moved, value=products.c.id, else_=0)
                await connection.execute(
                    update(products)
                    .where(products.c.id.in_(list(moved)))
                    .values(allocated=products.c.allocated - back, stranded=products.c.stranded - back)
                )
            return moved

        return await transaction(self.engine, work)

    async def released_twice(self) -> list[str]:
        """Orders that gave one product's stock back more than once on one path (must
        be none; an order reserved on both paths, whose SQL copy was superseded,
        may have given back once on each)."""
        query = select(stock_releases.c.order_id, stock_releases.c.product_id, stock_releases.c.source)
        seen: set[tuple[str, str, bool]] = set()
        twice: set[str] = set()
        async with reading(self.engine) as connection:
            for row in (await connection.execute(query)).all():
                key = (row.order_id, row.product_id, row.source.startswith("sql:"))
                if key in seen:
                    twice.add(row.order_id)
                seen.add(key)
        return sorted(twice)
