"""SQL tables of the order context; every shard database has all of them."""

from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, MetaData, String, Table

from mesh.bus.dead_letters import dead_letters_table
from mesh.bus.outbox import outbox_table

metadata = MetaData()

# The order's own tables hold addresses, names and emails in any script: full
# Unicode on MariaDB (whose server default is Latin-1). Ignored elsewhere.

orders = Table(
    "orders",
    metadata,
    Column("order_id", String(64), primary_key=True),  # OrderPlaced -> row is idempotent by this key
    Column("user_id", String(128), nullable=False),
    Column("request_id", String(128), nullable=False),
    Column("status", String(16), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("total_units", BigInteger, nullable=False),
    Column("total_nanos", Integer, nullable=False),
    Column("shipping_units", BigInteger, nullable=False),
    Column("shipping_nanos", Integer, nullable=False),
    Column("street_address", String(200), nullable=False),
    Column("city", String(100), nullable=False),
    Column("state", String(100), nullable=False),
    Column("country", String(100), nullable=False),
    Column("zip_code", String(16), nullable=False),
    Column("email", String(200), nullable=False),
    Column("tracking_id", String(40), nullable=False),
    Column("failure_reason", String(500), nullable=False),
    Column("trace_id", String(32), nullable=False),
    Column("ship_attempts", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_orders_user_created", "user_id", "created_at"),
    Index("ix_orders_status_updated", "status", "updated_at"),
    mysql_charset="utf8mb4",
    mysql_collate="utf8mb4_unicode_ci",
)

order_items = Table(
    "order_items",
    metadata,
    Column("order_id", String(64), primary_key=True),
    Column("line", Integer, primary_key=True),
    Column("product_id", String(64), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("unit_units", BigInteger, nullable=False),
    Column("unit_nanos", Integer, nullable=False),
    mysql_charset="utf8mb4",
    mysql_collate="utf8mb4_unicode_ci",
)

order_history = Table(
    "order_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("order_id", String(64), nullable=False, index=True),
    Column("status", String(16), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("reason", String(500), nullable=False),
    mysql_charset="utf8mb4",
    mysql_collate="utf8mb4_unicode_ci",
)

# One row per status event applied (or recognised as illegal): redelivery of
# the same event is a no-op.
applied_events = Table(
    "applied_events",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("order_id", String(64), nullable=False),
    Column("outcome", String(16), nullable=False),  # "applied" or "illegal"
    Column("detail", String(500), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, index=True),  # pruned by age: mesh/retention.py
    mysql_charset="utf8mb4",
    mysql_collate="utf8mb4_unicode_ci",
)

# Where each money sweep's walk stands, one row per sweep: an opaque position
# to go on from (the last CANCELLED order settled, on every shard; the
# ListPayments token after the last capture looked at, on the first shard).
sweep_marks = Table(
    "sweep_marks",
    metadata,
    Column("sweep", String(32), primary_key=True),
    Column("position", String(400), nullable=False),
)

# Reconcile's backoff per PENDING order: how often payment was asked without an
# answer that settles it, and when to ask again (capped exponential), so many
# unpaid orders cost little. A row outlives its order's PENDING state harmlessly.
reconcile_checks = Table(
    "reconcile_checks",
    metadata,
    Column("order_id", String(64), primary_key=True),
    Column("checks", Integer, nullable=False),
    Column("next_at", DateTime(timezone=True), nullable=False),
)

# The W3C traceparent of the span that produced each order's OrderPlaced (the
# catalog's PRODUCER span in the PlaceOrder trace): periodic jobs and the
# dispatcher link their spans to it. A table of its own because
# ``orders.trace_id`` holds only the trace id (32 characters) and create_all
# adds tables but never columns; an order stored before it has no row, and
# its spans no link.
order_traces = Table(
    "order_traces",
    metadata,
    Column("order_id", String(64), primary_key=True),
    Column("traceparent", String(55), nullable=False),
)

# OrderStatusChanged events, written in the same transaction as the change and
# relayed to the bus (transactional outbox).
order_outbox = outbox_table("order_outbox", metadata)

dead_letters = dead_letters_table(metadata)
