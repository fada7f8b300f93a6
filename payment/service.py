"""PaymentService servicer: validate, call the domain, map to the wire."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from common.checks import Checks
from mesh.money import Money
from ordermesh.payment.v1 import payment_pb2, payment_pb2_grpc
from payment.charges import MAX_PAGE, Payment, Payments, Status

Context = grpc.aio.ServicerContext[Any, Any]


class PaymentService(payment_pb2_grpc.PaymentServiceServicer):
    def __init__(self, payments: Payments, today: Callable[[], date]) -> None:
        self._payments = payments
        self._today = today

    async def Charge(self, request: payment_pb2.ChargeRequest, context: Context) -> payment_pb2.Payment:
        check = Checks()
        check.order_id(request.order_id)
        if check.require(request.HasField("amount"), "amount", "is required"):
            check.money(request.amount, "amount")
        if check.require(request.HasField("credit_card"), "credit_card", "is required"):
            check.card(request.credit_card, self._today())
        check.raise_if_any()
        payment = await self._payments.charge(
            request.order_id, Money.from_proto(request.amount), request.credit_card.number
        )
        return to_proto(payment)

    async def Refund(self, request: payment_pb2.RefundRequest, context: Context) -> payment_pb2.Payment:
        check = Checks()
        check.order_id(request.order_id)
        check.require(len(request.reason) <= 200, "reason", "must be at most 200 characters")
        check.raise_if_any()
        return to_proto(await self._payments.refund(request.order_id, request.reason))

    async def GetPayment(self, request: payment_pb2.GetPaymentRequest, context: Context) -> payment_pb2.Payment:
        check = Checks()
        check.order_id(request.order_id)
        check.raise_if_any()
        return to_proto(await self._payments.get(request.order_id))

    async def ListPayments(
        self, request: payment_pb2.ListPaymentsRequest, context: Context
    ) -> payment_pb2.ListPaymentsResponse:
        check = Checks()
        check.require(request.status in STATUSES, "status", "is not a payment status")
        check.require(request.page_size <= MAX_PAGE, "page_size", f"must be at most {MAX_PAGE}")
        if request.HasField("created_before"):
            check.timestamp(request.created_before, "created_before")
        check.raise_if_any()
        status = STATUSES[request.status]
        before = request.created_before.ToDatetime(tzinfo=UTC) if request.HasField("created_before") else None
        page = await self._payments.list(status, before, request.page_size, request.page_token)
        return payment_pb2.ListPaymentsResponse(
            payments=[to_proto(p) for p in page.payments],
            next_page_token=page.next_page_token,
            resume_token=page.resume_token,
        )


# The wire's statuses; UNSPECIFIED asks for every status.
STATUSES: dict[int, Status | None] = {payment_pb2.PAYMENT_STATUS_UNSPECIFIED: None} | {
    payment_pb2.PaymentStatus.Value(s.value): s for s in Status
}


def to_proto(payment: Payment) -> payment_pb2.Payment:
    return payment_pb2.Payment(
        order_id=payment.order_id,
        transaction_id=payment.transaction_id,
        status=payment_pb2.PaymentStatus.Value(payment.status.value),
        amount=payment.amount.to_proto(),
        decline_reason=payment.decline_reason,
        card_last4=payment.card_last4,
        created_at=_timestamp(payment.created_at) if payment.created_at else None,
    )


def _timestamp(at: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(at)
    return stamp
