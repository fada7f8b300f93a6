"""The record of applied events is pruned past its retention, and only past it
(a row still within it is what makes a redelivery a no-op), on SQLite and
MariaDB, for the order and the analytics tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Column, DateTime, MetaData, String, Table, func, insert, inspect, select
from sqlalchemy.ext.asyncio import AsyncEngine

from analytics import models as analytics_models
from mesh.db import create_engine, create_schema, reading
from mesh.retention import Pruner
from order import models as order_models

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
RETENTION = timedelta(hours=168)


def _row(table: Table, n: int, at: datetime) -> dict[str, Any]:
    row = {"event_id": f"ev-{n:05d}", "order_id": f"o-{n}", "at": at}
    if "outcome" in table.c:
        row |= {"outcome": "applied", "detail": ""}
    return row


async def _ids(engine: AsyncEngine, table: Table) -> set[str]:
    async with reading(engine) as connection:
        return set((await connection.execute(select(table.c.event_id))).scalars())


@pytest.mark.parametrize("models", [order_models, analytics_models], ids=["order", "analytics"])
async def test_rows_past_the_retention_go_oldest_first_and_the_rest_stay(database_url: str, models: Any) -> None:
    table: Table = models.applied_events
    engine = create_engine(database_url)
    try:
        await create_schema(engine, models.metadata)
        old = [_row(table, n, NOW - RETENTION - timedelta(minutes=250 - n)) for n in range(250)]
        # Just inside the retention, and newer: what a redelivery could still need.
        kept = [_row(table, 1000 + n, NOW - RETENTION + timedelta(seconds=1 + n * 600)) for n in range(40)]
        async with engine.begin() as connection:
            await connection.execute(insert(table), old + kept)

        prune = Pruner([engine], table, RETENTION, batch=40, max_batches=3)
        # A run deletes at most batch x max_batches rows, the oldest first: a
        # backlog goes over several runs, never in one long transaction.
        assert await prune(NOW) == 120
        left = await _ids(engine, table)
        assert {r["event_id"] for r in old[:120]}.isdisjoint(left)
        assert {r["event_id"] for r in old[120:] + kept} == left
        assert await prune(NOW) == 120
        assert await prune(NOW) == 10
        assert await prune(NOW) == 0
        assert await _ids(engine, table) == {r["event_id"] for r in kept}
        # An hour later, the rows that have aged past the retention meanwhile.
        assert await prune(NOW + timedelta(hours=1)) == 6
    finally:
        await engine.dispose()


async def test_an_existing_table_gets_the_index_the_models_added(database_url: str) -> None:
    """A database made before ``at`` was indexed: create_schema adds the index
    (the prune's scan by age), and doing so again changes nothing."""
    before = MetaData()
    Table(
        "applied_events",
        before,
        Column("event_id", String(64), primary_key=True),
        Column("order_id", String(64), nullable=False),
        Column("outcome", String(16), nullable=False),
        Column("detail", String(500), nullable=False),
        Column("at", DateTime(timezone=True), nullable=False),
    )
    engine = create_engine(database_url)
    try:
        await create_schema(engine, before)
        async with engine.begin() as connection:
            await connection.execute(insert(order_models.applied_events), [_row(order_models.applied_events, 1, NOW)])

        async def indexed_columns() -> list[list[str | None]]:
            async with reading(engine) as connection:
                indexes = await connection.run_sync(lambda sync: inspect(sync).get_indexes("applied_events"))
            return [index["column_names"] for index in indexes]

        assert ["at"] not in await indexed_columns()
        await create_schema(engine, order_models.metadata)
        await create_schema(engine, order_models.metadata)
        assert ["at"] in await indexed_columns()
        async with reading(engine) as connection:
            count = await connection.execute(select(func.count()).select_from(order_models.applied_events))
            assert count.scalar_one() == 1  # the rows are untouched
    finally:
        await engine.dispose()
