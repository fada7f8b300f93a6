"""What the shipping domain needs from the outside, as Protocols: adapters
(``store.py``: SQL) implement them, tests pass fakes."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from shipping.shipments import Shipment


class ShipmentStore(Protocol):
    async def insert_or_get(self, shipment: Shipment, now: datetime) -> Shipment:
        """Store ``shipment`` unless the order has one; return the stored one."""

    async def get(self, order_id: str) -> Shipment | None: ...
