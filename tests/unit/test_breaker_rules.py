"""Which failures count against a breaker (pure logic, fake calls)."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from mesh.breaker import Breaker, guarded
from mesh.clients import retry_safe_methods
from mesh.errors import Unavailable
from ordermesh.catalog.v1 import catalog_pb2
from ordermesh.order.v1 import order_pb2
from ordermesh.payment.v1 import payment_pb2


def rpc_error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=code.name, debug_error_string=""
    )


async def call(breaker: Breaker, error: BaseException) -> None:
    with breaker.calling():
        await asyncio.sleep(0)
        raise error


async def test_business_errors_and_cancellation_do_not_open_it() -> None:
    breaker = Breaker("dep", fail_max=2, reset_timeout=60)
    for error in [rpc_error(grpc.StatusCode.NOT_FOUND), rpc_error(grpc.StatusCode.INVALID_ARGUMENT)] * 3:
        with pytest.raises(grpc.aio.AioRpcError):
            await call(breaker, error)
    for _ in range(3):
        with pytest.raises(asyncio.CancelledError):
            await call(breaker, asyncio.CancelledError())
    assert breaker.state == "closed"


async def test_unhealthy_errors_open_it() -> None:
    breaker = Breaker("dep", fail_max=2, reset_timeout=60)
    with pytest.raises(grpc.aio.AioRpcError):
        await call(breaker, rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED))
    with pytest.raises(Unavailable):
        await call(breaker, rpc_error(grpc.StatusCode.UNAVAILABLE))
    assert breaker.state == "open"


async def test_a_cancelled_answer_is_unavailable_to_our_caller() -> None:
    """A stopping dependency answers CANCELLED to calls it had not handled
    (grpc/grpc#41785): relayed as is, no client would retry the call."""
    breaker = Breaker("dep", fail_max=5, reset_timeout=60)

    async def cancelled_by_the_server() -> None:
        raise rpc_error(grpc.StatusCode.CANCELLED)

    with pytest.raises(Unavailable, match="dep is unavailable"):
        await guarded("dep", breaker, cancelled_by_the_server)


def test_retries_follow_the_idempotency_level_each_proto_declares() -> None:
    """Clients retry transparently only what the callee's proto marks safe to
    repeat: reads, and writes keyed by an idempotency key."""
    catalog = catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"]
    assert retry_safe_methods(catalog) == ["ListProducts", "GetProduct", "ReserveStock", "ReleaseStock", "SetStock"]
    payment = payment_pb2.DESCRIPTOR.services_by_name["PaymentService"]
    assert retry_safe_methods(payment) == ["Charge", "Refund", "GetPayment", "ListPayments"]
    order = order_pb2.DESCRIPTOR.services_by_name["OrderService"]
    assert retry_safe_methods(order) == ["GetOrder", "ListOrders"], "a cancel or review is never repeated blindly"
