"""SQL tables of the payment context (SQLAlchemy Core)."""

from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, MetaData, String, Table

metadata = MetaData()

payments = Table(
    "payments",
    metadata,
    # The idempotency key: one payment per order, enforced by the database.
    Column("order_id", String(64), primary_key=True),
    Column("transaction_id", String(40), nullable=False, unique=True),
    Column("status", String(16), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("units", BigInteger, nullable=False),
    Column("nanos", Integer, nullable=False),
    Column("decline_reason", String(200), nullable=False, default=""),
    # Only the last four digits: full card numbers are never stored.
    Column("card_last4", String(4), nullable=False),
    Column("refund_reason", String(200), nullable=False, default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # ListPayments walks payments in this order (the money sweep, by status).
    Index("ix_payments_status_created", "status", "created_at", "order_id"),
)
