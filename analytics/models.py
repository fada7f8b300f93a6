"""SQL tables of the analytics context (SQLAlchemy Core): the read model.

Everything here is derived from the order events, so it can be rebuilt by
replaying them into an empty database (a new consumer group from the start of
the streams), or caught up from the order shards (``python -m analytics
backfill``), which takes the same rules.
"""

from typing import Any

from sqlalchemy import BigInteger, Column, Date, DateTime, Index, Integer, MetaData, String, Table
from sqlalchemy.dialects import mysql

from mesh.bus.dead_letters import dead_letters_table

metadata = MetaData()

# Microseconds on MariaDB too (its DATETIME keeps whole seconds by default):
# status changes of one order are often less than a second apart, and the
# newest must win; page tokens carry microseconds as well.
Instant = DateTime(timezone=True).with_variant(mysql.DATETIME(timezone=True, fsp=6), "mysql", "mariadb")

# Byte-wise comparison on MariaDB, as on SQLite: 'SKU-1' and 'sku-1' are two
# products, and the answers are the same on both backends. Full Unicode for
# emails.
EXACT: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}

# Every order of every shard: what SearchOrders reads, and each order's status
# with the stamp of the change that set it (analytics.facts.Stamp).
order_index = Table(
    "order_index",
    metadata,
    Column("order_id", String(64), primary_key=True),
    Column("status", String(16), nullable=False),
    # The change that set ``status``; NULL: the initial status of the OrderPlaced.
    Column("status_at", Instant, nullable=True),
    Column("status_event", String(64), nullable=False),
    # NULL until the order's OrderPlaced has arrived (only a status change was
    # seen yet): such a row is in no answer. The other columns are empty then.
    Column("created_at", Instant, nullable=True),
    Column("user_id", String(128), nullable=False),
    Column("email", String(200), nullable=False),
    # The email in lower case: SearchOrders matches emails without regard to case.
    Column("email_key", String(200), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("total_units", BigInteger, nullable=False),
    Column("total_nanos", Integer, nullable=False),
    Column("updated_at", Instant, nullable=False),
    # One per filter, each in the order SearchOrders pages (newest first).
    Index("ix_order_index_created", "created_at", "order_id"),
    Index("ix_order_index_user", "user_id", "created_at", "order_id"),
    Index("ix_order_index_email", "email_key", "created_at", "order_id"),
    Index("ix_order_index_status", "status", "created_at", "order_id"),
    **EXACT,
)

# The lines of each placed order: what a cancellation takes back from the sales.
order_lines = Table(
    "order_lines",
    metadata,
    Column("order_id", String(64), primary_key=True),
    Column("line", Integer, primary_key=True),
    Column("product_id", String(64), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("unit_units", BigInteger, nullable=False),
    Column("unit_nanos", Integer, nullable=False),
    **EXACT,
)

# Sums kept as units plus nanos, each added to separately: a total of nanos
# would overflow a BIGINT past 9.2 billion units, and SQLite's SUM of it raise.
# The nanos column may leave 0..999,999,999 (and go negative when a
# cancellation is taken back): the amount is units * 10^9 + nanos, exactly.

# Orders and their totals per creation hour, current status and currency.
sales_by_hour = Table(
    "sales_by_hour",
    metadata,
    Column("hour", Instant, primary_key=True),
    Column("status", String(16), primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("day", Date, nullable=False),  # of the hour: DAY buckets group by it
    Column("orders", BigInteger, nullable=False),
    Column("revenue_units", BigInteger, nullable=False),
    Column("revenue_nanos", BigInteger, nullable=False),
    **EXACT,
)

# Units and line revenue per creation day, product and currency, of orders not cancelled.
sales_by_product = Table(
    "sales_by_product",
    metadata,
    Column("day", Date, primary_key=True),
    Column("product_id", String(64), primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("units", BigInteger, nullable=False),
    Column("revenue_units", BigInteger, nullable=False),
    Column("revenue_nanos", BigInteger, nullable=False),
    **EXACT,
)

# One row per event taken, written in the same transaction as its effect: a
# redelivered or replayed event finds its id here and changes nothing.
applied_events = Table(
    "applied_events",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("order_id", String(64), nullable=False),
    Column("at", Instant, nullable=False, index=True),  # pruned by age: mesh/retention.py
    **EXACT,
)

dead_letters = dead_letters_table(metadata)
