"""The order context's calls to payment, catalog and shipping, each behind a breaker."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from mesh.breaker import Breaker, Gateway
from mesh.errors import Relayed
from order.orders import Order
from ordermesh.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from ordermesh.common.v1 import common_pb2
from ordermesh.payment.v1 import payment_pb2, payment_pb2_grpc
from ordermesh.shipping.v1 import shipping_pb2, shipping_pb2_grpc

T = TypeVar("T")


@dataclass(frozen=True)
class PaymentState:
    status: str  # "CAPTURED", "DECLINED", "REFUNDED", or "NONE" when never charged
    transaction_id: str = ""
    decline_reason: str = ""


class Remote(Gateway):
    def __init__(
        self,
        payment: payment_pb2_grpc.PaymentServiceAsyncStub,
        catalog: catalog_pb2_grpc.CatalogServiceAsyncStub,
        shipping: shipping_pb2_grpc.ShippingServiceAsyncStub,
        breakers: dict[str, Breaker],
    ) -> None:
        super().__init__(breakers)
        self._payment = payment
        self._catalog = catalog
        self._shipping = shipping

    async def payment(self, order_id: str) -> PaymentState:
        try:
            p = await self._call(
                "payment", lambda: self._payment.GetPayment(payment_pb2.GetPaymentRequest(order_id=order_id))
            )
        except Relayed as error:
            if error.code is grpc.StatusCode.NOT_FOUND:
                return PaymentState("NONE")
            raise
        return PaymentState(payment_pb2.PaymentStatus.Name(p.status), p.transaction_id, p.decline_reason)

    async def refund(self, order_id: str, reason: str) -> None:
        """Refund if anything was captured; a never-charged order needs none."""
        try:
            await self._call(
                "payment", lambda: self._payment.Refund(payment_pb2.RefundRequest(order_id=order_id, reason=reason))
            )
        except Relayed as error:
            if error.code not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
                raise

    async def captured(self, created_before: datetime, page_token: str, page_size: int) -> tuple[list[str], str]:
        """A page of captured payments created before ``created_before``, oldest
        first, after ``page_token``: their order ids, and the token after the
        last of them ("" for an empty page: go on from where it was)."""
        before = Timestamp()
        before.FromDatetime(created_before)
        request = payment_pb2.ListPaymentsRequest(
            status=payment_pb2.CAPTURED, created_before=before, page_size=page_size, page_token=page_token
        )
        page = await self._call("payment", lambda: self._payment.ListPayments(request))
        return [p.order_id for p in page.payments], str(page.resume_token)

    async def shipment(self, order_id: str) -> str | None:
        """The tracking id of the order's shipment, None if shipping has none."""
        try:
            shipment = await self._call(
                "shipping", lambda: self._shipping.GetShipment(shipping_pb2.GetShipmentRequest(order_id=order_id))
            )
        except Relayed as error:
            if error.code is grpc.StatusCode.NOT_FOUND:
                return None
            raise
        return str(shipment.tracking_id)

    async def release(self, order_id: str) -> None:
        await self._call(
            "catalog", lambda: self._catalog.ReleaseStock(catalog_pb2.ReleaseStockRequest(order_id=order_id))
        )

    async def ship(self, order: Order) -> str:
        a = order.address
        request = shipping_pb2.ShipOrderRequest(
            order_id=order.order_id,
            address=common_pb2.Address(
                street_address=a.street_address, city=a.city, state=a.state, country=a.country, zip_code=a.zip_code
            ),
            items=[common_pb2.LineItem(product_id=i.product_id, quantity=i.quantity) for i in order.items],
        )
        shipment = await self._call("shipping", lambda: self._shipping.ShipOrder(request))
        return str(shipment.tracking_id)
