"""PlaceOrder through the whole local mesh: catalog, checkout, payment, shipping, order."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis

from checkout.idempotency import Claims, fingerprint
from common.order_ids import mint
from launcher.mesh import DATABASES, LocalMesh
from mesh.local.jaeger import get_json
from order.trace import linked_spans
from ordermesh.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from ordermesh.checkout.v1 import checkout_pb2, checkout_pb2_grpc
from ordermesh.common.v1 import common_pb2
from ordermesh.order.v1 import order_pb2, order_pb2_grpc
from ordermesh.payment.v1 import payment_pb2, payment_pb2_grpc
from tests.e2e.audit import audit
from tests.support import eventually

CARD = common_pb2.CreditCard(number="4432801561520454", cvv=672, expiration_year=2039, expiration_month=1)
DECLINED = common_pb2.CreditCard(number="4000000000000002", cvv=123, expiration_year=2039, expiration_month=1)
HOME = common_pb2.Address(street_address="1 Main St", city="Springfield", state="IL", country="US", zip_code="62701")
# Per mesh (its var dir): the order ids PlaceOrder answered in this module.
ANSWERED: dict[str, list[str]] = {}


@dataclass
class Clients:
    catalog: catalog_pb2_grpc.CatalogServiceAsyncStub
    checkout: checkout_pb2_grpc.CheckoutServiceAsyncStub
    order: order_pb2_grpc.OrderServiceAsyncStub
    payment: payment_pb2_grpc.PaymentServiceAsyncStub
    # Every order id a PlaceOrder answered on this mesh: the global auditor checks each is stored.
    answered: list[str]

    async def stock(self, product_id: str) -> int:
        return int((await self.catalog.GetProduct(catalog_pb2.GetProductRequest(id=product_id))).stock)

    async def place(
        self,
        *lines: tuple[str, int],
        card: common_pb2.CreditCard = CARD,
        request_id: str | None = None,
        address: common_pb2.Address = HOME,
    ) -> checkout_pb2.PlaceOrderResponse:
        answer = await self.checkout.PlaceOrder(
            checkout_pb2.PlaceOrderRequest(
                request_id=request_id or uuid.uuid4().hex,
                user_id="ada",
                items=[common_pb2.LineItem(product_id=p, quantity=q) for p, q in lines],
                address=address,
                email="ada@example.com",
                credit_card=card,
            ),
            timeout=30,
        )
        self.answered.append(answer.order_id)
        return answer

    async def order_in(self, order_id: str, status: common_pb2.OrderStatus.ValueType) -> order_pb2.Order:
        found: list[order_pb2.Order] = []

        async def reached() -> bool:
            try:
                order = await self.order.GetOrder(order_pb2.GetOrderRequest(order_id=order_id))
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                return False
            found[:] = [order]
            return order.status == status

        await eventually(reached, within=20, what=f"order {order_id} to reach {common_pb2.OrderStatus.Name(status)}")
        return found[0]


@pytest.fixture
async def clients(local_mesh: LocalMesh) -> AsyncIterator[Clients]:
    channels = {
        c: grpc.aio.insecure_channel(local_mesh.address(c)) for c in ("catalog", "checkout", "order", "payment")
    }
    yield Clients(
        catalog_pb2_grpc.CatalogServiceStub(channels["catalog"]),
        checkout_pb2_grpc.CheckoutServiceStub(channels["checkout"]),
        order_pb2_grpc.OrderServiceStub(channels["order"]),
        payment_pb2_grpc.PaymentServiceStub(channels["payment"]),
        ANSWERED.setdefault(str(local_mesh.var_dir), []),
    )
    for channel in channels.values():
        await channel.close(grace=None)


def history(order: order_pb2.Order) -> list[str]:
    return [common_pb2.OrderStatus.Name(c.status) for c in order.history]


async def test_a_normal_order_is_paid_persisted_and_shipped(clients: Clients) -> None:
    before = await clients.stock("sku-1004")
    placed = await clients.place(("sku-1004", 2), ("sku-1008", 1))
    assert placed.status == common_pb2.PAID and placed.order_id.startswith("o0-")
    # 2 x 24.00 + 9.50 + shipping (5.99 for the first unit + 0.50 for each of the other two)
    assert (placed.total.units, placed.total.nanos) == (64, 490_000_000)
    order = await clients.order_in(placed.order_id, common_pb2.SHIPPED)
    assert history(order) == ["PENDING", "PAID", "SHIPPING", "SHIPPED"]
    assert order.tracking_id.startswith("TRK-")
    assert order.address.city == "Springfield" and order.email == "ada@example.com" and order.trace_id
    assert await clients.stock("sku-1004") == before - 2
    payment = await clients.payment.GetPayment(payment_pb2.GetPaymentRequest(order_id=placed.order_id))
    assert payment.status == payment_pb2.CAPTURED
    assert (payment.amount.units, payment.amount.nanos) == (placed.total.units, placed.total.nanos)


async def test_an_order_s_trace_is_in_jaeger_and_make_trace_prints_it(clients: Clients, local_mesh: LocalMesh) -> None:
    """`make run TRACING=1` as a user sees it: the order's trace by id in
    Jaeger's query API, the batch and job spans that link to it, and the tree
    `python -m order trace` prints."""
    jaeger = local_mesh.jaeger
    assert jaeger is not None
    placed = await clients.place(("sku-1004", 1))
    order = await clients.order_in(placed.order_id, common_pb2.SHIPPED)
    # All five: the order context's consumers add a `process` span to the trace of each event they handle.
    want = {f"ordermesh-{c}" for c in ("checkout", "catalog", "payment", "shipping", "order")}

    async def exported() -> bool:  # spans leave each process in batches
        traces = (await asyncio.to_thread(get_json, f"{jaeger.query_url}/api/traces/{order.trace_id}")).get("data")
        services = {p["serviceName"] for p in traces[0]["processes"].values()} if traces else set()
        return want <= services

    await eventually(exported, 30, "the order's spans from all five services in Jaeger")
    created_us = order.created_at.seconds * 1_000_000 + order.created_at.nanos // 1000

    async def linked() -> bool:
        spans = await asyncio.to_thread(linked_spans, jaeger.query_url, order.trace_id, created_us)
        return "ordermesh-order" in {s.service for s in spans}

    await eventually(linked, 30, "the order context's consumer span linking to the order's trace")
    printed = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "order", "trace", placed.order_id,
        "--order", local_mesh.address("order"), "--jaeger", jaeger.query_url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await printed.communicate()
    text = out.decode()
    assert printed.returncode == 0, err.decode()
    assert f"trace {order.trace_id}" in text and "linked" in text
    rows = text.splitlines()
    # Indented by depth: checkout's server span is the root, the calls it made
    # below it, the callee's server span below each call.
    assert any(re.match(r"checkout +ordermesh.checkout.v1.CheckoutService/PlaceOrder .* OK", r) for r in rows), text
    for callee in ("catalog", "payment", "shipping"):
        assert any(re.match(rf"    {callee} +ordermesh.{callee}.v1.", r) for r in rows), text
    assert any(
        re.match(r"  order +consume ", r)
        for r in rows[rows.index("linked (work done later, in batches and periodic jobs):") :]
    ), text


async def test_declined_card_cancels_and_restores_stock(clients: Clients) -> None:
    before = await clients.stock("sku-1005")
    placed = await clients.place(("sku-1005", 3), card=DECLINED)
    assert placed.status == common_pb2.CANCELLED and placed.failure_reason == "card declined"
    order = await clients.order_in(placed.order_id, common_pb2.CANCELLED)
    assert history(order) == ["PENDING", "CANCELLED"] and order.failure_reason == "card declined"
    assert await clients.stock("sku-1005") == before


async def test_twenty_concurrent_duplicates_make_one_order(clients: Clients) -> None:
    before = await clients.stock("sku-1007")
    request_id = uuid.uuid4().hex
    answers = await asyncio.gather(*(clients.place(("sku-1007", 1), request_id=request_id) for _ in range(20)))
    assert len({a.order_id for a in answers}) == 1
    assert all(a == answers[0] for a in answers) and answers[0].status == common_pb2.PAID
    assert await clients.stock("sku-1007") == before - 1
    order = await clients.order_in(answers[0].order_id, common_pb2.SHIPPED)
    assert history(order) == ["PENDING", "PAID", "SHIPPING", "SHIPPED"]
    listed = await clients.order.ListOrders(order_pb2.ListOrdersRequest(user_id="ada", page_size=100))
    assert [o.order_id for o in listed.orders].count(answers[0].order_id) == 1


async def test_high_value_orders_wait_for_review(clients: Clients) -> None:
    placed = await clients.place(("sku-1012", 1))
    assert placed.status == common_pb2.AWAITING_REVIEW
    order = await clients.order_in(placed.order_id, common_pb2.AWAITING_REVIEW)
    assert history(order) == ["AWAITING_REVIEW"]
    # Charged at checkout (the card is never kept); the review gates fulfilment.
    payment = await clients.payment.GetPayment(payment_pb2.GetPaymentRequest(order_id=placed.order_id))
    assert payment.status == payment_pb2.CAPTURED


async def test_short_stock_is_failed_precondition_naming_the_product(clients: Clients) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await clients.place(("sku-1011", 31))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "product sku-1011: requested 31, available 30" in (caught.value.details() or "")


async def test_bad_input_names_the_field_and_creates_nothing(clients: Clients) -> None:
    # One case through the whole mesh: an unknown product passes checkout's own checks
    # and is refused only after asking catalog. Every bad-input case runs in
    # tests/unit/test_checkout_validation.py.
    before = await clients.stock("sku-1001")
    request = checkout_pb2.PlaceOrderRequest(
        request_id=uuid.uuid4().hex,
        user_id="mallory",
        items=[common_pb2.LineItem(product_id="sku-nope", quantity=1)],
        address=HOME,
        email="m@example.com",
        credit_card=CARD,
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await clients.checkout.PlaceOrder(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "items[0].product_id:" in (caught.value.details() or "")
    assert await clients.stock("sku-1001") == before
    listed = await clients.order.ListOrders(order_pb2.ListOrdersRequest(user_id="mallory"))
    assert list(listed.orders) == []


async def test_review_approve_ships_and_reject_refunds_and_restores(clients: Clients) -> None:
    approved = await clients.place(("sku-1012", 1))
    await clients.order_in(approved.order_id, common_pb2.AWAITING_REVIEW)
    reply = await clients.order.ReviewOrder(
        order_pb2.ReviewOrderRequest(order_id=approved.order_id, approve=True, reviewer="bob")
    )
    assert reply.status in (common_pb2.PAID, common_pb2.SHIPPED)
    order = await clients.order_in(approved.order_id, common_pb2.SHIPPED)
    assert history(order) == ["AWAITING_REVIEW", "PENDING", "PAID", "SHIPPING", "SHIPPED"]

    before = await clients.stock("sku-1012")
    rejected = await clients.place(("sku-1012", 1))
    assert await clients.stock("sku-1012") == before - 1
    await clients.order_in(rejected.order_id, common_pb2.AWAITING_REVIEW)
    await clients.order.ReviewOrder(
        order_pb2.ReviewOrderRequest(order_id=rejected.order_id, approve=False, reviewer="eve", note="suspicious")
    )
    order = await clients.order_in(rejected.order_id, common_pb2.CANCELLED)
    assert order.failure_reason == "rejected by eve: suspicious"

    async def compensated() -> bool:
        payment = await clients.payment.GetPayment(payment_pb2.GetPaymentRequest(order_id=rejected.order_id))
        return payment.status == payment_pb2.REFUNDED and await clients.stock("sku-1012") == before

    await eventually(compensated, within=20, what="refund and stock release of the rejected order")


async def test_shipped_orders_cannot_be_cancelled_or_reviewed(clients: Clients) -> None:
    placed = await clients.place(("sku-1008", 1))
    await clients.order_in(placed.order_id, common_pb2.SHIPPED)
    with pytest.raises(grpc.aio.AioRpcError) as cancel:
        await clients.order.CancelOrder(order_pb2.CancelOrderRequest(order_id=placed.order_id, reason="too late"))
    assert cancel.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.aio.AioRpcError) as review:
        await clients.order.ReviewOrder(
            order_pb2.ReviewOrderRequest(order_id=placed.order_id, approve=True, reviewer="bob")
        )
    assert review.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_retry_after_the_order_was_cancelled_charges_nothing(local_mesh: LocalMesh, clients: Clients) -> None:
    """A PlaceOrder reserved, then died before it answered; the order was cancelled
    and its stock released; the client retries with the same request_id."""
    request = checkout_pb2.PlaceOrderRequest(
        request_id=uuid.uuid4().hex,
        user_id="ada",
        items=[common_pb2.LineItem(product_id="sku-1009", quantity=2)],
        address=HOME,
        email="ada@example.com",
        credit_card=CARD,
    )
    before = await clients.stock("sku-1009")
    client = aioredis.Redis.from_url(local_mesh.redis_url)
    try:  # the first attempt, as far as it got: its claim (abandoned) and its reservation
        claims = Claims(client, ttl_seconds=3600, wait_seconds=5, takeover_after=60)
        claim = await claims.claim(request.request_id, mint(request.user_id, 1), fingerprint(request))
        await claims.abandon(request.request_id)
    finally:
        await client.aclose()
    draft = common_pb2.OrderDraft(request_id=request.request_id, user_id="ada", address=HOME, email="ada@example.com")
    await clients.catalog.ReserveStock(
        catalog_pb2.ReserveStockRequest(order_id=claim.order_id, items=request.items, draft=draft)
    )
    await clients.order_in(claim.order_id, common_pb2.PENDING)
    await clients.order.CancelOrder(order_pb2.CancelOrderRequest(order_id=claim.order_id))

    async def released() -> bool:
        return await clients.stock("sku-1009") == before

    await eventually(released, within=20, what="the cancelled order's stock released")
    answer = await clients.checkout.PlaceOrder(request, timeout=30)
    assert answer.order_id == claim.order_id
    assert answer.status == common_pb2.CANCELLED and "cancelled before it was paid" in answer.failure_reason

    async def voided() -> bool:  # the cancel's refund found no charge: the order is voided
        try:
            payment = await clients.payment.GetPayment(payment_pb2.GetPaymentRequest(order_id=claim.order_id))
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.NOT_FOUND
            return False
        assert payment.status != payment_pb2.CAPTURED, "nothing may be charged"
        return payment.status == payment_pb2.DECLINED and "before it was charged" in payment.decline_reason

    await eventually(voided, within=20, what="the cancelled order voided at payment")
    assert await clients.stock("sku-1009") == before
    assert (await clients.order_in(claim.order_id, common_pb2.CANCELLED)).status == common_pb2.CANCELLED


async def test_a_request_id_reused_for_another_order_is_already_exists(clients: Clients) -> None:
    before = await clients.stock("sku-1007")
    request_id = uuid.uuid4().hex
    first = await clients.place(("sku-1007", 1), request_id=request_id)
    assert first.status == common_pb2.PAID
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await clients.place(("sku-1007", 2), request_id=request_id)
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert (caught.value.details() or "").startswith("request_id: ")
    assert await clients.place(("sku-1007", 1), request_id=request_id) == first, "the same request is still answered"
    assert await clients.stock("sku-1007") == before - 1


async def test_an_address_in_any_script_is_stored_intact(clients: Clients) -> None:
    address = common_pb2.Address(
        street_address="千代田1-1", city="Москва", state="Île-de-France", country="JP", zip_code="100-0001"
    )
    placed = await clients.place(("sku-1008", 1), address=address)
    assert placed.status == common_pb2.PAID
    order = await clients.order_in(placed.order_id, common_pb2.SHIPPED)
    assert order.address == address


async def test_stock_auditor_is_clean_after_the_orders(local_mesh: LocalMesh) -> None:
    """Last in this module: every order above sold, released or refunded; the
    catalog's auditor, run as an operator would (`python -m catalog audit`),
    finds its books balanced once the flusher has caught up."""
    variable, name = DATABASES["catalog"]
    env = {**os.environ, variable: local_mesh.database_url(name), "REDIS_URL": local_mesh.redis_url}
    output: list[str] = []

    async def clean() -> bool:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "catalog", "audit", env=env, stdout=asyncio.subprocess.PIPE
        )
        output[:] = [(await process.communicate())[0].decode()]
        return process.returncode == 0

    try:
        await eventually(clean, within=30, what="a clean stock audit")
    except AssertionError:
        raise AssertionError(output[0] if output else "no audit output") from None
    assert output[0].rstrip().endswith("\nclean")


async def test_global_auditor_is_clean_after_the_orders(local_mesh: LocalMesh, tmp_path: Path) -> None:
    """Last: the global auditor, run as an operator would (`python -m auditor`),
    finds every answered order stored once, every reservation, payment and
    shipment where the order's status says, and the stock books balanced."""
    answered = ANSWERED.get(str(local_mesh.var_dir), [])
    assert len(answered) >= 10, "the orders above were answered"
    output = await audit(local_mesh, answered, tmp_path)
    stored_once = next(line for line in output.splitlines() if line.startswith("orders: each stored once"))
    # It counts every stored order plus every line of the acknowledged file.
    assert int(stored_once.split()[-3]) >= len(set(answered)) + len(answered), "every answered id was looked up"
