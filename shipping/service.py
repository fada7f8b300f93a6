"""ShippingService servicer: validate, call the domain, map to the wire."""

from __future__ import annotations

from typing import Any

import grpc

from common.checks import Checks
from ordermesh.shipping.v1 import shipping_pb2, shipping_pb2_grpc
from shipping.quotes import check_address, quote
from shipping.shipments import Shipment, Shipping

Context = grpc.aio.ServicerContext[Any, Any]


class ShippingService(shipping_pb2_grpc.ShippingServiceServicer):
    def __init__(self, shipping: Shipping) -> None:
        self._shipping = shipping

    async def GetQuote(self, request: shipping_pb2.GetQuoteRequest, context: Context) -> shipping_pb2.GetQuoteResponse:
        check = Checks()
        check_address(check, request.address)
        check.line_items(request.items)
        check.raise_if_any()
        cost = quote(request.address.country, (i.quantity for i in request.items))
        return shipping_pb2.GetQuoteResponse(cost=cost.to_proto())

    async def ShipOrder(self, request: shipping_pb2.ShipOrderRequest, context: Context) -> shipping_pb2.Shipment:
        check = Checks()
        check.order_id(request.order_id)
        check_address(check, request.address)
        check.line_items(request.items)
        check.raise_if_any()
        shipment = await self._shipping.ship(
            request.order_id,
            request.address.country,
            request.address.zip_code,
            sum(i.quantity for i in request.items),
        )
        return to_proto(shipment)

    async def GetShipment(self, request: shipping_pb2.GetShipmentRequest, context: Context) -> shipping_pb2.Shipment:
        check = Checks()
        check.order_id(request.order_id)
        check.raise_if_any()
        return to_proto(await self._shipping.get(request.order_id))


def to_proto(shipment: Shipment) -> shipping_pb2.Shipment:
    return shipping_pb2.Shipment(
        order_id=shipment.order_id, tracking_id=shipment.tracking_id, status=shipping_pb2.SHIPPED
    )
