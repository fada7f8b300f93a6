"""SIGTERM: health flips to NOT_SERVING and an in-flight call still completes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mesh.local.procs import free_port, port_open
from ordermesh.common.v1 import common_pb2
from ordermesh.payment.v1 import payment_pb2, payment_pb2_grpc
from tests.support import eventually

CARD = common_pb2.CreditCard(number="4432801561520454", cvv=672, expiration_year=2039, expiration_month=1)


async def test_sigterm_drains_in_flight_call_after_flipping_health(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "GRPC_HOST": "127.0.0.1",
        "GRPC_PORT": str(port),
        "METRICS_PORT": "0",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'payment.db'}",
        "PAYMENT_LATENCY_SECONDS": "2",
        "SHUTDOWN_GRACE_SECONDS": "10",
    }
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "payment", env=env)
    try:

        async def listening() -> bool:
            return port_open(port)

        await eventually(listening, 30, "payment to listen")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            watch = health.Watch(health_pb2.HealthCheckRequest(service=""))
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING

            charge = asyncio.ensure_future(
                payment_pb2_grpc.PaymentServiceStub(channel).Charge(
                    payment_pb2.ChargeRequest(
                        order_id="o-drain",
                        amount=common_pb2.Money(currency_code="USD", units=9),
                        credit_card=CARD,
                    ),
                    timeout=15,
                )
            )
            await asyncio.sleep(0.5)  # let the charge reach the server and start its 2 s of latency
            process.send_signal(signal.SIGTERM)

            assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
            assert not charge.done(), "the in-flight call should still be running after the flip"
            payment = await charge
            assert payment.status == payment_pb2.CAPTURED
        assert await asyncio.wait_for(process.wait(), 20) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
