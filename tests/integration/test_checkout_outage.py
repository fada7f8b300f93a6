"""A dependency that is down is UNAVAILABLE (retryable), never INTERNAL."""

from __future__ import annotations

import grpc
import pytest

from checkout.bootstrap import bootstrap
from checkout.settings import CheckoutSettings
from mesh.local.procs import free_port
from ordermesh.checkout.v1 import checkout_pb2, checkout_pb2_grpc
from ordermesh.common.v1 import common_pb2
from tests.support import serving


async def test_place_order_with_redis_down_is_unavailable() -> None:
    settings = CheckoutSettings(
        grpc_host="127.0.0.1", grpc_port=0, metrics_port=0, redis_url=f"redis://127.0.0.1:{free_port()}/0"
    )
    async with serving(await bootstrap(settings)) as (_server, channel):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await checkout_pb2_grpc.CheckoutServiceStub(channel).PlaceOrder(
                checkout_pb2.PlaceOrderRequest(
                    request_id="r-1",
                    user_id="ada",
                    items=[common_pb2.LineItem(product_id="sku-1001", quantity=1)],
                    address=common_pb2.Address(country="US", zip_code="62701"),
                    email="ada@example.com",
                    credit_card=common_pb2.CreditCard(
                        number="4432801561520454", cvv=672, expiration_year=2039, expiration_month=1
                    ),
                )
            )
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert (caught.value.details() or "").startswith("redis unavailable")
