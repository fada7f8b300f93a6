"""Shipments: one per order, idempotent."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from mesh.clock import Clock
from mesh.errors import NotFound, Unavailable
from mesh.faults import FaultInjection
from shipping.ports import ShipmentStore


@dataclass(frozen=True)
class Shipment:
    order_id: str
    tracking_id: str
    country: str
    zip_code: str
    units: int


class Shipping:
    def __init__(
        self,
        store: ShipmentStore,
        *,
        clock: Clock,
        faults: FaultInjection | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._faults = faults or FaultInjection()

    async def ship(self, order_id: str, country: str, zip_code: str, units: int) -> Shipment:
        if self._faults.should_fail():
            raise Unavailable("carrier unavailable (injected failure)")
        candidate = Shipment(order_id, f"TRK-{uuid.uuid4().hex[:16].upper()}", country, zip_code, units)
        stored = await self._store.insert_or_get(candidate, self._clock())
        await self._faults.delay()
        return stored

    async def get(self, order_id: str) -> Shipment:
        shipment = await self._store.get(order_id)
        if shipment is None:
            raise NotFound("shipment for order", order_id)
        return shipment
