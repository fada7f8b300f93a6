"""The breaker around a real payment server: opens, fails fast, closes again."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from mesh.breaker import Breaker
from mesh.clients import make_channel
from mesh.errors import Unavailable
from mesh.local.procs import free_port
from mesh.metrics import BreakerMetrics
from mesh.server import Server
from ordermesh.payment.v1 import payment_pb2, payment_pb2_grpc
from payment.bootstrap import bootstrap
from payment.settings import PaymentSettings
from tests.support import eventually


async def test_breaker_opens_fails_fast_and_closes(tmp_path: Path) -> None:
    port = free_port()
    settings = PaymentSettings(
        grpc_host="127.0.0.1",
        grpc_port=port,
        metrics_port=0,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'payment.db'}",
    )
    registry = CollectorRegistry()
    breaker = Breaker("payment", fail_max=3, reset_timeout=1.0, metrics=BreakerMetrics(registry))
    tracer = TracerProvider().get_tracer("test")
    channel = make_channel(f"127.0.0.1:{port}", tracer=tracer, default_timeout=2.0)
    stub = payment_pb2_grpc.PaymentServiceStub(channel)
    request = payment_pb2.GetPaymentRequest(order_id="o-any")

    def state() -> float | None:
        return registry.get_sample_value("ordermesh_breaker_state", {"breaker": "payment"})

    async def get_payment() -> None:
        with breaker.calling():
            await stub.GetPayment(request, timeout=1.0)

    # Payment is down: every call fails with UNAVAILABLE until the breaker opens.
    for _ in range(2):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await get_payment()
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(Unavailable):
        await get_payment()  # the third failure trips it
    assert breaker.state == "open" and state() == 2

    started = time.perf_counter()
    with pytest.raises(Unavailable, match="circuit open"):
        await get_payment()
    assert time.perf_counter() - started < 0.05, "an open breaker must not wait for the dependency"

    server = Server(await bootstrap(settings))
    await server.start()
    try:
        # After the reset timeout one trial call goes through; NOT_FOUND is a
        # healthy answer (a business error), so the breaker closes.
        async def closed() -> bool:
            try:
                await get_payment()
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.NOT_FOUND
            except Unavailable:
                return False
            return breaker.state == "closed"

        await eventually(closed, within=15, what="the breaker to close")
        assert state() == 0
    finally:
        await channel.close(grace=None)
        await server.stop()
