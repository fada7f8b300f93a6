"""Payment against real SQL (SQLite and MariaDB): idempotency, restarts, bad input."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlalchemy import func, select

from mesh.db import create_engine
from ordermesh.common.v1 import common_pb2
from ordermesh.payment.v1 import payment_pb2, payment_pb2_grpc
from payment.bootstrap import bootstrap
from payment.models import payments
from payment.settings import PaymentSettings
from tests.support import serving

GOOD_CARD = common_pb2.CreditCard(number="4432801561520454", cvv=672, expiration_year=2039, expiration_month=1)
DECLINED_CARD = common_pb2.CreditCard(number="4000000000000002", cvv=123, expiration_year=2039, expiration_month=1)


def usd(units: int, nanos: int = 0) -> common_pb2.Money:
    return common_pb2.Money(currency_code="USD", units=units, nanos=nanos)


def settings_for(database_url: str) -> PaymentSettings:
    return PaymentSettings(grpc_host="127.0.0.1", grpc_port=0, metrics_port=0, database_url=database_url)


@pytest.fixture
async def stub(database_url: str) -> AsyncIterator[payment_pb2_grpc.PaymentServiceAsyncStub]:
    async with serving(await bootstrap(settings_for(database_url))) as (_server, channel):
        yield payment_pb2_grpc.PaymentServiceStub(channel)


async def count_rows(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            return int((await connection.execute(select(func.count()).select_from(payments))).scalar_one())
    finally:
        await engine.dispose()


def violations(error: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "expected google.rpc.Status details"
    fields = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            fields += [v.field for v in bad.field_violations]
    return fields


async def test_fifty_concurrent_identical_charges_make_one_payment(
    stub: payment_pb2_grpc.PaymentServiceAsyncStub, database_url: str
) -> None:
    request = payment_pb2.ChargeRequest(order_id="o-concurrent", amount=usd(42, 500_000_000), credit_card=GOOD_CARD)
    replies = await asyncio.gather(*(stub.Charge(request) for _ in range(50)))
    assert {r.transaction_id for r in replies} == {replies[0].transaction_id}
    assert all(r.status == payment_pb2.CAPTURED for r in replies)
    assert replies[0].card_last4 == "0454"
    assert await count_rows(database_url) == 1


async def test_declined_card_is_stored_and_repeats(stub: payment_pb2_grpc.PaymentServiceAsyncStub) -> None:
    request = payment_pb2.ChargeRequest(order_id="o-declined", amount=usd(10), credit_card=DECLINED_CARD)
    first = await stub.Charge(request)
    again = await stub.Charge(request)
    assert first.status == payment_pb2.DECLINED
    assert first.decline_reason == "card declined"
    assert again.transaction_id == first.transaction_id
    fetched = await stub.GetPayment(payment_pb2.GetPaymentRequest(order_id="o-declined"))
    assert fetched.status == payment_pb2.DECLINED


async def test_different_amount_for_same_order_is_failed_precondition(
    stub: payment_pb2_grpc.PaymentServiceAsyncStub,
) -> None:
    await stub.Charge(payment_pb2.ChargeRequest(order_id="o-amount", amount=usd(10), credit_card=GOOD_CARD))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Charge(payment_pb2.ChargeRequest(order_id="o-amount", amount=usd(11), credit_card=GOOD_CARD))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_refund_that_overtakes_its_charge_voids_the_order(
    stub: payment_pb2_grpc.PaymentServiceAsyncStub,
) -> None:
    # The order was cancelled while its charge was still on the way: nothing to refund yet...
    for _ in range(2):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Refund(payment_pb2.RefundRequest(order_id="o-late", reason="order cancelled"))
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "cancelled before it was charged" in (caught.value.details() or "")
    # ...and when the charge lands, it takes nothing.
    late = await stub.Charge(payment_pb2.ChargeRequest(order_id="o-late", amount=usd(7), credit_card=GOOD_CARD))
    assert (
        late.status == payment_pb2.DECLINED and late.decline_reason == "the order was cancelled before it was charged"
    )
    stored = await stub.GetPayment(payment_pb2.GetPaymentRequest(order_id="o-late"))
    assert stored.status == payment_pb2.DECLINED


async def test_refund_is_idempotent(stub: payment_pb2_grpc.PaymentServiceAsyncStub) -> None:
    charged = await stub.Charge(payment_pb2.ChargeRequest(order_id="o-refund", amount=usd(7), credit_card=GOOD_CARD))
    first, second = await asyncio.gather(
        *(stub.Refund(payment_pb2.RefundRequest(order_id="o-refund", reason="customer asked")) for _ in range(2))
    )
    assert first.status == second.status == payment_pb2.REFUNDED
    assert first.transaction_id == second.transaction_id == charged.transaction_id


async def test_restart_keeps_charges(database_url: str) -> None:
    request = payment_pb2.ChargeRequest(order_id="o-restart", amount=usd(3), credit_card=GOOD_CARD)
    async with serving(await bootstrap(settings_for(database_url))) as (_server, channel):
        charged = await payment_pb2_grpc.PaymentServiceStub(channel).Charge(request)
    async with serving(await bootstrap(settings_for(database_url))) as (_server, channel):
        stub = payment_pb2_grpc.PaymentServiceStub(channel)
        fetched = await stub.GetPayment(payment_pb2.GetPaymentRequest(order_id="o-restart"))
        repeated = await stub.Charge(request)
    assert fetched.transaction_id == repeated.transaction_id == charged.transaction_id


async def test_bad_charge_is_invalid_argument_naming_the_field_and_writes_nothing(
    stub: payment_pb2_grpc.PaymentServiceAsyncStub, database_url: str
) -> None:
    # One case on real databases; every bad-input case runs in tests/unit/test_payment_validation.py.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Charge(payment_pb2.ChargeRequest(order_id="o-bad", amount=usd(-5), credit_card=GOOD_CARD))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "amount.units" in violations(caught.value)
    assert "amount.units" in (caught.value.details() or "")
    assert await count_rows(database_url) == 0


async def test_field_of_wrong_wire_type_is_invalid_argument(database_url: str) -> None:
    async with serving(await bootstrap(settings_for(database_url))) as (_server, channel):
        raw_charge = channel.unary_unary(
            "/ordermesh.payment.v1.PaymentService/Charge", request_serializer=None, response_deserializer=None
        )
        # order_id "abc", then field 2 (amount, a Money message) sent as a varint.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await raw_charge(b"\x0a\x03abc\x10\x05")
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "amount" in violations(caught.value)
        with pytest.raises(grpc.aio.AioRpcError) as garbage:
            await raw_charge(b"\xff\xff\xff")
        assert garbage.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await count_rows(database_url) == 0


async def test_card_number_is_never_stored(stub: payment_pb2_grpc.PaymentServiceAsyncStub, database_url: str) -> None:
    await stub.Charge(payment_pb2.ChargeRequest(order_id="o-pan", amount=usd(1), credit_card=GOOD_CARD))
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(select(payments))).all()
    finally:
        await engine.dispose()
    assert rows and all(GOOD_CARD.number not in " ".join(map(str, row)) for row in rows)


async def test_list_payments_pages_oldest_first_by_status_and_age(
    stub: payment_pb2_grpc.PaymentServiceAsyncStub,
) -> None:
    for n in range(7):
        card = DECLINED_CARD if n == 3 else GOOD_CARD
        await stub.Charge(payment_pb2.ChargeRequest(order_id=f"list-{n}", amount=usd(10 + n), credit_card=card))
    await stub.Refund(payment_pb2.RefundRequest(order_id="list-5", reason="test"))
    seen: list[str] = []
    token = ""
    while True:
        page = await stub.ListPayments(
            payment_pb2.ListPaymentsRequest(status=payment_pb2.CAPTURED, page_size=2, page_token=token)
        )
        assert len(page.payments) <= 2
        seen += [p.order_id for p in page.payments]
        assert all(p.status == payment_pb2.CAPTURED and p.HasField("created_at") for p in page.payments)
        token = page.next_page_token
        if not token:
            break
    assert seen == ["list-0", "list-1", "list-2", "list-4", "list-6"]
    everything = await stub.ListPayments(payment_pb2.ListPaymentsRequest())
    assert [p.order_id for p in everything.payments] == [f"list-{n}" for n in range(7)]
    assert everything.next_page_token == ""
    # The last page still says where to go on from: a later walk sees only what is new.
    await stub.Charge(payment_pb2.ChargeRequest(order_id="list-7", amount=usd(17), credit_card=GOOD_CARD))
    later = await stub.ListPayments(payment_pb2.ListPaymentsRequest(page_token=everything.resume_token))
    assert [p.order_id for p in later.payments] == ["list-7"] and later.resume_token
    empty = await stub.ListPayments(payment_pb2.ListPaymentsRequest(page_token=later.resume_token))
    assert list(empty.payments) == [] and empty.resume_token == ""
    # created_before is exclusive (MariaDB keeps whole seconds: compare across seconds).
    first, last = everything.payments[0].created_at, later.payments[-1].created_at
    before, after = Timestamp(seconds=first.seconds - 1), Timestamp(seconds=last.seconds + 1)
    assert (await stub.ListPayments(payment_pb2.ListPaymentsRequest(created_before=before))).payments == []
    at_first = await stub.ListPayments(payment_pb2.ListPaymentsRequest(created_before=first))
    assert "list-0" not in [p.order_id for p in at_first.payments], "created_before is exclusive"
    assert len((await stub.ListPayments(payment_pb2.ListPaymentsRequest(created_before=after))).payments) == 8
