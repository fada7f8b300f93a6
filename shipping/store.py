"""SQL adapter for shipments. Idempotency is the primary key, not check-then-write."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from mesh.db import UnitOfWork, is_unique_violation, reading
from shipping.models import shipments
from shipping.shipments import Shipment

_INSERT = shipments.insert()


class SqlShipmentStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def insert_or_get(self, shipment: Shipment, now: datetime) -> Shipment:
        try:
            async with UnitOfWork(self._engine) as uow:
                # One statement object for every call: compiled once.
                await uow.connection.execute(
                    _INSERT,
                    {
                        "order_id": shipment.order_id,
                        "tracking_id": shipment.tracking_id,
                        "status": "SHIPPED",
                        "country": shipment.country,
                        "zip_code": shipment.zip_code,
                        "units": shipment.units,
                        "created_at": now,
                    },
                )
                await uow.commit()
            return shipment
        except Exception as error:
            if not is_unique_violation(error):
                raise
        existing = await self.get(shipment.order_id)
        if existing is None:
            raise RuntimeError(f"shipment {shipment.order_id} vanished after a duplicate-key error")
        return existing

    async def get(self, order_id: str) -> Shipment | None:
        async with reading(self._engine) as connection:
            row = (await connection.execute(select(shipments).where(shipments.c.order_id == order_id))).first()
        return _shipment(row._mapping) if row is not None else None


def _shipment(row: Any) -> Shipment:
    return Shipment(row["order_id"], row["tracking_id"], row["country"], row["zip_code"], row["units"])
