"""PaymentService's bad input: INVALID_ARGUMENT naming the field, before anything is stored.

Moved from tests/integration/test_payment.py, where each case served payment on
SQLite and MariaDB; that file keeps one Charge case proving a real database gets
no row. Here the store is a fake that records every call.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from mesh.errors import InvalidArgument
from mesh.money import Money
from ordermesh.common.v1 import common_pb2
from ordermesh.payment.v1 import payment_pb2
from payment.charges import Payment, Payments, Status
from payment.service import PaymentService
from tests.unit.rpc import NO_CONTEXT

NOW = datetime(2030, 1, 2, tzinfo=UTC)
GOOD_CARD = common_pb2.CreditCard(number="4432801561520454", cvv=672, expiration_year=2039, expiration_month=1)


def usd(units: int, nanos: int = 0) -> common_pb2.Money:
    return common_pb2.Money(currency_code="USD", units=units, nanos=nanos)


class RecordingStore:
    """payment.charges.PaymentStore in memory; every call is kept."""

    def __init__(self) -> None:
        self.payments: dict[str, Payment] = {}
        self.calls: list[str] = []

    async def insert_or_get(self, payment: Payment, now: datetime) -> Payment:
        self.calls.append(f"insert {payment.order_id}")
        return self.payments.setdefault(payment.order_id, replace(payment, created_at=now))

    async def get(self, order_id: str) -> Payment | None:
        self.calls.append(f"get {order_id}")
        return self.payments.get(order_id)

    async def refund(self, order_id: str, reason: str, now: datetime) -> Payment | None:
        self.calls.append(f"refund {order_id}")
        return None

    async def page(
        self, status: Status | None, created_before: datetime | None, after: tuple[datetime, str] | None, limit: int
    ) -> list[Payment]:
        self.calls.append("page")
        return sorted(self.payments.values(), key=lambda p: p.order_id)[:limit]


def service(store: RecordingStore) -> PaymentService:
    return PaymentService(Payments(store, clock=lambda: NOW), lambda: date(2030, 1, 2))


BAD_CHARGES = {
    "order_id": payment_pb2.ChargeRequest(order_id="", amount=usd(1), credit_card=GOOD_CARD),
    "credit_card.number": payment_pb2.ChargeRequest(
        order_id="o-bad",
        amount=usd(1),
        credit_card=common_pb2.CreditCard(number="4432801561520455", cvv=672, expiration_year=2039, expiration_month=1),
    ),
    "credit_card.expiration_year": payment_pb2.ChargeRequest(
        order_id="o-bad",
        amount=usd(1),
        credit_card=common_pb2.CreditCard(number="4432801561520454", cvv=672, expiration_year=2001, expiration_month=1),
    ),
    "amount.units": payment_pb2.ChargeRequest(order_id="o-bad", amount=usd(-5), credit_card=GOOD_CARD),
}


@pytest.mark.parametrize("field", sorted(BAD_CHARGES))
async def test_bad_charge_is_invalid_argument_naming_the_field_and_stores_nothing(field: str) -> None:
    store = RecordingStore()
    with pytest.raises(InvalidArgument) as caught:
        await service(store).Charge(BAD_CHARGES[field], NO_CONTEXT)
    assert field in [v.field for v in caught.value.violations]
    assert f"{field}:" in caught.value.message
    assert store.calls == []


async def test_a_good_charge_is_stored_once() -> None:
    # The bad cases fail for their field: the same request with it fixed goes through.
    store = RecordingStore()
    request = payment_pb2.ChargeRequest(order_id="o-good", amount=usd(42, 500_000_000), credit_card=GOOD_CARD)
    charged = await service(store).Charge(request, NO_CONTEXT)
    assert charged.status == payment_pb2.CAPTURED and charged.card_last4 == "0454"
    assert store.payments["o-good"].amount == Money.of("USD", 42, 500_000_000)
    assert store.calls == ["insert o-good"]


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (payment_pb2.ListPaymentsRequest(page_size=501), "page_size"),
        (payment_pb2.ListPaymentsRequest(page_size=-1), "page_size"),
        (payment_pb2.ListPaymentsRequest(page_token="not a token!"), "page_token"),
        (payment_pb2.ListPaymentsRequest(status=9), "status"),  # type: ignore[arg-type]
        # Found by the fuzzer (tests/e2e/test_fuzz.py): these were INTERNAL.
        (payment_pb2.ListPaymentsRequest(created_before=Timestamp(nanos=-(2**31))), "created_before.nanos"),
        (payment_pb2.ListPaymentsRequest(created_before=Timestamp(seconds=2**62)), "created_before.seconds"),
    ],
)
async def test_bad_list_payments_is_invalid_argument_naming_the_field(
    request_: payment_pb2.ListPaymentsRequest, field: str
) -> None:
    store = RecordingStore()
    with pytest.raises(InvalidArgument) as caught:
        await service(store).ListPayments(request_, NO_CONTEXT)
    assert [v.field for v in caught.value.violations] == [field]
    assert f"{field}:" in caught.value.message
    assert store.calls == [], "refused before any page is read"
