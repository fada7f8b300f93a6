"""SQL tables of the catalog context (SQLAlchemy Core)."""

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, Text

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
    Column("stock", BigInteger, nullable=False),
    # A JSON list; categories are only ever read with their product.
    Column("categories", Text, nullable=False),
)
