"""Checkout's view of catalog, shipping and payment: each call behind a breaker.

Expected errors of a dependency are relayed to the caller unchanged; a
dependency that is down or behind an open breaker is UNAVAILABLE.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from checkout.quotes import RecentQuotes
from mesh.breaker import Breaker, Gateway
from mesh.errors import Unavailable
from mesh.money import Money
from ordermesh.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from ordermesh.common.v1 import common_pb2
from ordermesh.payment.v1 import payment_pb2, payment_pb2_grpc
from ordermesh.shipping.v1 import shipping_pb2, shipping_pb2_grpc

T = TypeVar("T")


class ChargeOutcome(StrEnum):
    CAPTURED = "captured"
    DECLINED = "declined"
    UNKNOWN = "unknown"  # deadline, payment down, breaker open: reconciled later


@dataclass(frozen=True)
class Charge:
    outcome: ChargeOutcome
    transaction_id: str = ""
    decline_reason: str = ""


class Remote(Gateway):
    def __init__(
        self,
        catalog: catalog_pb2_grpc.CatalogServiceAsyncStub,
        shipping: shipping_pb2_grpc.ShippingServiceAsyncStub,
        payment: payment_pb2_grpc.PaymentServiceAsyncStub,
        breakers: dict[str, Breaker],
        payment_deadline: float,
        quotes: RecentQuotes | None = None,
    ) -> None:
        super().__init__(breakers)
        self._catalog = catalog
        self._shipping = shipping
        self._payment = payment
        self._payment_deadline = payment_deadline
        self._quotes = quotes or RecentQuotes(max_age=0)

    async def quote(self, address: common_pb2.Address, items: list[common_pb2.LineItem]) -> Money:
        """Shipping's quote, or its recent quote of the same request while it is down."""
        request = shipping_pb2.GetQuoteRequest(address=address, items=items)
        try:
            reply = await self._call("shipping", lambda: self._shipping.GetQuote(request))
        except Unavailable:
            if (recent := self._quotes.recall(request)) is not None:
                return recent
            raise
        cost = Money.from_proto(reply.cost)
        self._quotes.remember(request, cost)
        return cost

    async def reserve(
        self, order_id: str, items: list[common_pb2.LineItem], draft: common_pb2.OrderDraft
    ) -> catalog_pb2.Reservation:
        request = catalog_pb2.ReserveStockRequest(order_id=order_id, items=items, draft=draft)
        return await self._call("catalog", lambda: self._catalog.ReserveStock(request))

    async def release(self, order_id: str) -> None:
        request = catalog_pb2.ReleaseStockRequest(order_id=order_id)
        await self._call("catalog", lambda: self._catalog.ReleaseStock(request))

    async def charge(self, order_id: str, amount: Money, card: common_pb2.CreditCard) -> Charge:
        request = payment_pb2.ChargeRequest(order_id=order_id, amount=amount.to_proto(), credit_card=card)
        try:
            payment = await self._call("payment", lambda: self._payment.Charge(request, timeout=self._payment_deadline))
        except Unavailable:
            return Charge(ChargeOutcome.UNKNOWN)
        if payment.status == payment_pb2.CAPTURED:
            return Charge(ChargeOutcome.CAPTURED, payment.transaction_id)
        return Charge(ChargeOutcome.DECLINED, payment.transaction_id, payment.decline_reason or "payment declined")
