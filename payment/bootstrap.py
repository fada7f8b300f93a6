"""Wiring for the payment process: the one place that connects to anything."""

from __future__ import annotations

from mesh.clock import utc_now
from mesh.db import create_engine, create_schema, ping
from mesh.faults import FaultInjection
from mesh.process import new_app
from mesh.server import App, Registration
from mesh.storage_spans import trace_storage
from ordermesh.payment.v1 import payment_pb2, payment_pb2_grpc
from payment.charges import Payments
from payment.models import metadata
from payment.service import PaymentService
from payment.settings import PaymentSettings
from payment.store import SqlPaymentStore


async def bootstrap(settings: PaymentSettings) -> App:
    app = new_app("payment", settings)
    engine = create_engine(settings.database_url)
    await create_schema(engine, metadata)
    trace_storage(app, engines=[engine])
    payments = Payments(
        SqlPaymentStore(engine),
        clock=utc_now,
        faults=FaultInjection(settings.payment_latency_seconds, settings.payment_failure_rate),
    )
    app.services.append(
        Registration(
            payment_pb2_grpc.add_PaymentServiceServicer_to_server,
            PaymentService(payments, today=lambda: utc_now().date()),
            payment_pb2.DESCRIPTOR.services_by_name["PaymentService"].full_name,
        )
    )
    app.readiness["database"] = lambda: ping(engine)
    app.closers.append(engine.dispose)
    return app
