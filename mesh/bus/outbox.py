"""The transactional outbox table: events written in the same transaction as
the change they announce, relayed to the bus afterwards."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Integer, LargeBinary, MetaData, String, Table


def outbox_table(name: str, metadata: MetaData) -> Table:
    return Table(
        name,
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("order_id", String(64), nullable=False),
        Column("event", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
    )
