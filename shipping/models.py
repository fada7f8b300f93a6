"""SQL tables of the shipping context (SQLAlchemy Core)."""

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table

metadata = MetaData()

shipments = Table(
    "shipments",
    metadata,
    # The idempotency key: one shipment per order, enforced by the database.
    Column("order_id", String(64), primary_key=True),
    Column("tracking_id", String(40), nullable=False, unique=True),
    Column("status", String(16), nullable=False),
    Column("country", String(100), nullable=False),  # as long as the order keeps (checkout checks it)
    Column("zip_code", String(16), nullable=False),
    Column("units", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
