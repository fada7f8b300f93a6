"""Wiring for the order process: the one place that connects to anything."""

from __future__ import annotations

from mesh.process import new_app
from mesh.server import App, Registration
from order.service import OrderService
from order.settings import OrderSettings
from ordermesh.order.v1 import order_pb2, order_pb2_grpc


async def bootstrap(settings: OrderSettings) -> App:
    app = new_app("order", settings)
    app.services.append(
        Registration(
            order_pb2_grpc.add_OrderServiceServicer_to_server,
            OrderService(),
            order_pb2.DESCRIPTOR.services_by_name["OrderService"].full_name,
        )
    )
    return app
