"""ShippingService's bad input: INVALID_ARGUMENT naming the field, before anything is stored.

Moved from tests/integration/test_shipping.py, where each case served shipping on
SQLite and MariaDB; that file keeps one ShipOrder case proving a real database
gets no row. Here the store is a fake that records every call.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mesh.errors import InvalidArgument
from ordermesh.common.v1 import common_pb2
from ordermesh.shipping.v1 import shipping_pb2
from shipping.service import ShippingService
from shipping.shipments import Shipment, Shipping
from tests.unit.rpc import NO_CONTEXT

HOME = common_pb2.Address(street_address="1 Main St", city="Springfield", state="IL", country="US", zip_code="62701")
ITEMS = [common_pb2.LineItem(product_id="sku-1", quantity=2), common_pb2.LineItem(product_id="sku-2", quantity=1)]


class RecordingStore:
    """shipping.shipments.ShipmentStore in memory; every call is kept."""

    def __init__(self) -> None:
        self.shipments: dict[str, Shipment] = {}
        self.calls: list[str] = []

    async def insert_or_get(self, shipment: Shipment, now: datetime) -> Shipment:
        self.calls.append(f"insert {shipment.order_id}")
        return self.shipments.setdefault(shipment.order_id, shipment)

    async def get(self, order_id: str) -> Shipment | None:
        self.calls.append(f"get {order_id}")
        return self.shipments.get(order_id)


def service(store: RecordingStore) -> ShippingService:
    return ShippingService(Shipping(store, clock=lambda: datetime(2030, 1, 2, tzinfo=UTC)))


BAD_SHIPMENTS = {
    "order_id": shipping_pb2.ShipOrderRequest(order_id="", address=HOME, items=ITEMS),
    "address.country": shipping_pb2.ShipOrderRequest(
        order_id="o-bad", address=common_pb2.Address(zip_code="1"), items=ITEMS
    ),
    "items": shipping_pb2.ShipOrderRequest(order_id="o-bad", address=HOME),
    "items[0].quantity": shipping_pb2.ShipOrderRequest(
        order_id="o-bad", address=HOME, items=[common_pb2.LineItem(product_id="sku-1", quantity=-1)]
    ),
}


@pytest.mark.parametrize("field", sorted(BAD_SHIPMENTS))
async def test_bad_ship_order_names_the_field_and_stores_nothing(field: str) -> None:
    store = RecordingStore()
    with pytest.raises(InvalidArgument) as caught:
        await service(store).ShipOrder(BAD_SHIPMENTS[field], NO_CONTEXT)
    # The interceptor sends the message as the status details: "field: description".
    assert f"{field}:" in caught.value.message
    assert field in [v.field for v in caught.value.violations]
    assert store.calls == []


async def test_a_good_shipment_is_stored_once() -> None:
    store = RecordingStore()
    request = shipping_pb2.ShipOrderRequest(order_id="o-good", address=HOME, items=ITEMS)
    shipped = await service(store).ShipOrder(request, NO_CONTEXT)
    assert shipped.tracking_id.startswith("TRK-") and store.shipments["o-good"].units == 3
    assert store.calls == ["insert o-good"]
