"""SQL adapter for products."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.models import products
from catalog.products import Product
from mesh.db import UnitOfWork, is_unique_violation, reading
from mesh.money import Money


class SqlProductStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def page_after(self, last_id: str, limit: int) -> list[Product]:
        query = select(products).where(products.c.id > last_id).order_by(products.c.id).limit(limit)
        async with reading(self._engine) as connection:
            rows = (await connection.execute(query)).all()
        return [_product(row._mapping) for row in rows]

    async def all_products(self) -> list[Product]:
        async with reading(self._engine) as connection:
            rows = (await connection.execute(select(products).order_by(products.c.id))).all()
        return [_product(row._mapping) for row in rows]

    async def get(self, product_id: str) -> Product | None:
        async with reading(self._engine) as connection:
            row = (await connection.execute(select(products).where(products.c.id == product_id))).first()
        return _product(row._mapping) if row is not None else None

    async def seed_if_empty(self) -> int:
        """Load the bundled catalogue into an empty table; returns rows inserted.

        Two replicas starting together may both see an empty table: the loser's
        insert fails on the primary key and it keeps the winner's rows.
        """
        seed = json.loads(resources.files("catalog").joinpath("seed_products.json").read_text())
        try:
            async with UnitOfWork(self._engine) as uow:
                count = (await uow.connection.execute(select(func.count()).select_from(products))).scalar_one()
                if count:
                    return 0
                await uow.connection.execute(products.insert(), [_row(item) for item in seed])
                await uow.commit()
        except Exception as error:
            if is_unique_violation(error):
                return 0
            raise
        return len(seed)


def _row(item: dict[str, Any]) -> dict[str, Any]:
    price = item["price"]
    return {
        "id": item["id"],
        "name": item["name"],
        "description": item["description"],
        "currency": price["currency_code"],
        "price_units": price["units"],
        "price_nanos": price["nanos"],
        "stock": item["stock"],
        "categories": json.dumps(item["categories"]),
    }


def _product(row: Any) -> Product:
    return Product(
        id=row["id"],
        name=row["name"],
        description=row["description"],
        price=Money.of(row["currency"], row["price_units"], row["price_nanos"]),
        stock=row["stock"],
        categories=tuple(json.loads(row["categories"])),
    )
