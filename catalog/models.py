"""SQL tables of the catalog context (SQLAlchemy Core)."""

from sqlalchemy import BigInteger, Boolean, Column, DateTime, Integer, MetaData, String, Table, Text

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
    # The durable stock. Redis holds the live counter; the flusher brings this
    # up to date from the journal (write-behind).
    Column("stock", BigInteger, nullable=False),
    # A JSON list; categories are only ever read with their product.
    Column("categories", Text, nullable=False),
)

# One row per journal entry applied to products.stock, written in the same
# transaction as the update: a redelivered entry is recognised and skipped.
journal_applied = Table(
    "journal_applied",
    metadata,
    Column("entry_id", String(32), primary_key=True),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)

# Reservations taken on the SQL path while Redis was unavailable.
sql_reservations = Table(
    "sql_reservations",
    metadata,
    Column("order_id", String(64), primary_key=True),
    Column("lines", Text, nullable=False),  # "pid=qty,pid=qty", as in the Redis marker
    Column("released", Boolean, nullable=False, default=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Products whose stock changed on the SQL path: their Redis counters are
# rebuilt from SQL (after the journal drains) before Redis is used again.
stock_dirty = Table(
    "stock_dirty",
    metadata,
    Column("product_id", String(64), primary_key=True),
)

# OrderPlaced events of SQL-path reservations, relayed to the order stream
# once Redis is back (transactional outbox).
stock_outbox = outbox_table("stock_outbox", metadata)

# Journal entries that could not be applied (malformed), kept for a person:
# the same table every context uses for its dead letters.
dead_letters = dead_letters_table(metadata)
