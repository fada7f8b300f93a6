"""Wiring for the shipping process: the one place that connects to anything."""

from __future__ import annotations

from mesh.clock import utc_now
from mesh.db import create_engine, create_schema, ping
from mesh.faults import FaultInjection
from mesh.process import new_app
from mesh.server import App, Registration
from mesh.storage_spans import trace_storage
from ordermesh.shipping.v1 import shipping_pb2, shipping_pb2_grpc
from shipping.models import metadata
from shipping.service import ShippingService
from shipping.settings import ShippingSettings
from shipping.shipments import Shipping
from shipping.store import SqlShipmentStore


async def bootstrap(settings: ShippingSettings) -> App:
    app = new_app("shipping", settings)
    engine = create_engine(settings.database_url)
    await create_schema(engine, metadata)
    trace_storage(app, engines=[engine])
    shipping = Shipping(
        SqlShipmentStore(engine),
        clock=utc_now,
        faults=FaultInjection(settings.shipping_latency_seconds, settings.shipping_failure_rate),
    )
    app.services.append(
        Registration(
            shipping_pb2_grpc.add_ShippingServiceServicer_to_server,
            ShippingService(shipping),
            shipping_pb2.DESCRIPTOR.services_by_name["ShippingService"].full_name,
        )
    )
    app.readiness["database"] = lambda: ping(engine)
    app.closers.append(engine.dispose)
    return app
