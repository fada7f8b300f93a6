"""Pruning the consumers' record of applied events.

Each consumer (order, analytics) writes one row per event it applied, in the
same transaction as the effect, so a redelivered or replayed event finds its
id and changes nothing. An event comes again only while the bus still holds
it: a Redis stream until every group has acknowledged it and the stream is
trimmed past it, RocketMQ for its retention (72 hours by default). A row older
than that guards against nothing and only grows the table, by three or four
rows per order, for ever. ``APPLIED_EVENTS_RETENTION_HOURS`` (7 days) keeps
every row the bus could still need.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import Column, Table, select
from sqlalchemy.ext.asyncio import AsyncEngine

from mesh.db import UnitOfWork, reading

PRUNE_INTERVAL_SECONDS = 60.0
BATCH = 1000
# A tick deletes at most BATCH * MAX_BATCHES rows per database: a backlog (a
# first run on an old table) is worked off over several ticks, never in one
# long transaction.
MAX_BATCHES = 20


class Pruner:
    """A periodic job: the rows of ``table`` whose ``at`` is older than
    ``retention``, in every database of ``engines``, oldest first."""

    def __init__(
        self,
        engines: Sequence[AsyncEngine],
        table: Table,
        retention: timedelta,
        *,
        batch: int = BATCH,
        max_batches: int = MAX_BATCHES,
    ) -> None:
        self._engines = engines
        self._table = table
        self._key: Column[str] = table.c.event_id
        self._at: Column[datetime] = table.c.at
        self._retention = retention
        self._batch = batch
        self._max_batches = max_batches

    async def __call__(self, now: datetime) -> int:
        before = now - self._retention
        return sum([await self._prune(engine, before) for engine in self._engines])

    async def _prune(self, engine: AsyncEngine, before: datetime) -> int:
        pruned = 0
        for _ in range(self._max_batches):
            # The keys first, then a delete by key: MariaDB takes no LIMIT in an
            # IN subquery, and SQLite's DELETE ... LIMIT is a compile-time option.
            query = select(self._key).where(self._at < before).order_by(self._at).limit(self._batch)
            async with reading(engine) as connection:
                keys = list((await connection.execute(query)).scalars())
            if not keys:
                break
            async with UnitOfWork(engine) as uow:
                await uow.connection.execute(self._table.delete().where(self._key.in_(keys)))
                await uow.commit()
            pruned += len(keys)
            if len(keys) < self._batch:
                break
        return pruned
