"""The whole local mesh with mutual TLS between its processes (`make run TLS=1`):
an order placed through checkout is paid and shipped, every hop over TLS."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from launcher.mesh import LocalMesh, free_offset, is_serving
from mesh.local.procs import RedisServer
from ordermesh.checkout.v1 import checkout_pb2, checkout_pb2_grpc
from ordermesh.common.v1 import common_pb2
from ordermesh.order.v1 import order_pb2, order_pb2_grpc
from tests.support import eventually

CARD = common_pb2.CreditCard(number="4432801561520454", cvv=672, expiration_year=2039, expiration_month=1)
HOME = common_pb2.Address(street_address="1 Main St", city="Springfield", state="IL", country="US", zip_code="62701")


@pytest.fixture(scope="module")
def tls_mesh(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> Iterator[LocalMesh]:
    var_dir: Path = tmp_path_factory.mktemp("mesh-tls")
    redis_url = redis_server.url.rsplit("/", 1)[0] + "/7"
    mesh = LocalMesh(var_dir, offset=free_offset(), redis_url=redis_url, tls=True)
    try:
        mesh.start(timeout=120)
        yield mesh
    finally:
        mesh.stop()


async def test_an_order_is_paid_and_shipped_with_every_hop_over_mutual_tls(tls_mesh: LocalMesh) -> None:
    certificates = tls_mesh.certificates
    assert certificates is not None
    port = next(e.grpc_port for e in tls_mesh.endpoints if e.context == "checkout")
    assert not is_serving(port), "a plaintext health check is refused"
    credentials = certificates.credentials()
    async with (
        grpc.aio.secure_channel(f"localhost:{port}", credentials) as checkout_channel,
        grpc.aio.secure_channel(tls_mesh.address("order").replace("127.0.0.1", "localhost"), credentials) as order,
    ):
        placed = await checkout_pb2_grpc.CheckoutServiceStub(checkout_channel).PlaceOrder(
            checkout_pb2.PlaceOrderRequest(
                request_id=uuid.uuid4().hex,
                user_id="tls-user",
                items=[common_pb2.LineItem(product_id="sku-1002", quantity=1)],
                address=HOME,
                email="tls@example.com",
                credit_card=CARD,
            ),
            timeout=30,
        )
        assert placed.status == common_pb2.PAID, placed
        orders = order_pb2_grpc.OrderServiceStub(order)

        async def shipped() -> bool:
            try:
                found = await orders.GetOrder(order_pb2.GetOrderRequest(order_id=placed.order_id))
            except grpc.aio.AioRpcError:
                return False
            return found.status == common_pb2.SHIPPED

        await eventually(shipped, within=30, what="the order shipped (order -> shipping over TLS)")
