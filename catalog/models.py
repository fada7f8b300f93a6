"""SQL tables of the catalog context (SQLAlchemy Core)."""

from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, String, Table, Text

from mesh.bus.dead_letters import dead_letters_table
from mesh.bus.outbox import outbox_table

metadata = MetaData()

products = Table(
    "products",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("price_units", BigInteger, nullable=False),
    Column("price_nanos", Integer, nullable=False),
    # The record of truth: units not yet sold. The flusher brings sales made
    # on Redis into it (write-behind); the SQL path sells from it directly.
    Column("stock", BigInteger, nullable=False),
    # Units of `stock` handed to Redis to sell (0 <= allocated <= stock). Only
    # a refill raises it; the SQL path never sells them.
    Column("allocated", BigInteger, nullable=False, default=0, server_default="0"),
    # Units of `allocated` that a Redis which lost its data held: nobody can
    # sell them until an operator reclaims them (`python -m catalog reclaim`).
    Column("stranded", BigInteger, nullable=False, default=0, server_default="0"),
    # A JSON list; categories are only ever read with their product.
    Column("categories", Text, nullable=False),
)

# Each life of Redis's counters. A refill is allocated in the current epoch and
# applied only to a Redis in that epoch; a Redis found in another (restarted
# empty, or another database's) gets a new epoch and the old allocation is
# stranded. `ended_at` is NULL for the current one.
stock_epochs = Table(
    "stock_epochs",
    metadata,
    Column("epoch", String(32), primary_key=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True), nullable=True),
)

# Refills allocated in SQL whose units may not be on their Redis counters yet;
# the row goes once refill.lua has added them (exactly once, by refill id).
stock_refills = Table(
    "stock_refills",
    metadata,
    Column("refill_id", String(32), primary_key=True),
    Column("epoch", String(32), nullable=False),
    Column("lines", Text, nullable=False),  # "pid=units,pid=units"
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# One row per journal entry applied to products, written in the same
# transaction as the update: a redelivered entry is recognised and skipped.
journal_applied = Table(
    "journal_applied",
    metadata,
    Column("entry_id", String(32), primary_key=True),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)

# Reservations taken on the SQL path (while Redis failed for this replica).
# state: reserved | released | superseded (reserve.lua reserved the same order:
# this copy was undone and its OrderPlaced never published).
sql_reservations = Table(
    "sql_reservations",
    metadata,
    Column("order_id", String(64), primary_key=True),
    Column("lines", Text, nullable=False),  # "pid=qty,pid=qty"
    Column("state", String(12), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Every release that gave stock back, whichever path: "sql:<order>" for the SQL
# path, the journal entry id for Redis's. The auditor checks no order has two.
stock_releases = Table(
    "stock_releases",
    metadata,
    Column("source", String(80), primary_key=True),
    Column("order_id", String(64), nullable=False, index=True),
    Column("product_id", String(64), nullable=False),
    Column("released_at", DateTime(timezone=True), nullable=False),
)

# OrderPlaced events of SQL-path reservations, in the same transaction as the
# deduction; the relay publishes them to the order stream (transactional outbox).
stock_outbox = outbox_table("stock_outbox", metadata)

# Journal entries that could not be applied (malformed), kept for a person:
# the same table every context uses for its dead letters.
dead_letters = dead_letters_table(metadata)
