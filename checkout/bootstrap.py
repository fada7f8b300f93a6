"""Wiring for the checkout process: the one place that connects to anything."""

from __future__ import annotations

import redis.asyncio as redis

from checkout.service import CheckoutService
from checkout.settings import CheckoutSettings
from mesh.process import new_app
from mesh.server import App, Registration
from ordermesh.checkout.v1 import checkout_pb2, checkout_pb2_grpc


async def bootstrap(settings: CheckoutSettings) -> App:
    app = new_app("checkout", settings)
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)

    async def redis_ready() -> bool:
        return bool(await client.ping())

    app.services.append(
        Registration(
            checkout_pb2_grpc.add_CheckoutServiceServicer_to_server,
            CheckoutService(),
            checkout_pb2.DESCRIPTOR.services_by_name["CheckoutService"].full_name,
        )
    )
    app.readiness["redis"] = redis_ready
    app.closers.append(client.aclose)
    return app
