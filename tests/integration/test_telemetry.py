"""Trace context crosses a real gRPC hop, and failures are INTERNAL with a trace id."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from mesh.clients import make_channel
from mesh.process import new_app
from mesh.server import Registration
from ordermesh.shipping.v1 import shipping_pb2, shipping_pb2_grpc
from shipping.bootstrap import bootstrap
from shipping.settings import ShippingSettings
from tests.support import serving


async def test_client_span_is_parent_of_server_span(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    settings = ShippingSettings(
        grpc_host="127.0.0.1", grpc_port=0, metrics_port=0, database_url=f"sqlite+aiosqlite:///{tmp_path / 's.db'}"
    )
    app = await bootstrap(settings)
    app.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    client_provider = TracerProvider()
    client_provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with serving(app) as (server, _channel):
        channel = make_channel(
            f"127.0.0.1:{server.port}", tracer=client_provider.get_tracer("test"), default_timeout=5.0
        )
        async with channel:
            with client_provider.get_tracer("test").start_as_current_span("caller") as caller:
                try:
                    await shipping_pb2_grpc.ShippingServiceStub(channel).GetShipment(
                        shipping_pb2.GetShipmentRequest(order_id="o-traced")
                    )
                except grpc.aio.AioRpcError as error:
                    assert error.code() == grpc.StatusCode.NOT_FOUND
    spans = exporter.get_finished_spans()
    client = next(s for s in spans if s.kind == SpanKind.CLIENT and (s.attributes or {}).get("rpc.system") == "grpc")
    server_span = next(s for s in spans if s.kind == SpanKind.SERVER)
    trace_id = caller.get_span_context().trace_id
    assert client.context.trace_id == server_span.context.trace_id == trace_id
    assert server_span.parent is not None and server_span.parent.span_id == client.context.span_id
    assert server_span.name == "ordermesh.shipping.v1.ShippingService/GetShipment"
    assert server_span.attributes is not None and server_span.attributes["rpc.grpc.status_code"] == 5
    # The shipment was looked up in SQL: a CLIENT span under the server span, its
    # statement with a placeholder where the order id went.
    sql = next(s for s in spans if (s.attributes or {}).get("db.system") == "sqlite")
    assert sql.parent is not None and sql.parent.span_id == server_span.context.span_id
    statement = str((sql.attributes or {}).get("db.statement"))
    assert statement.startswith("SELECT") and "?" in statement and "o-traced" not in statement


async def test_unexpected_error_is_internal_with_trace_id_and_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    settings = ShippingSettings(grpc_host="127.0.0.1", grpc_port=0, metrics_port=0)
    app = new_app("broken", settings)

    class Broken(shipping_pb2_grpc.ShippingServiceServicer):  # only GetShipment is called
        async def GetShipment(self, request: object, context: object) -> shipping_pb2.Shipment:
            raise RuntimeError("secret internals: /etc/passwd")

    app.services.append(
        Registration(
            shipping_pb2_grpc.add_ShippingServiceServicer_to_server,
            Broken(),  # type: ignore[abstract]
            "ordermesh.shipping.v1.ShippingService",
        )
    )
    async with serving(app) as (_server, channel):
        try:
            await shipping_pb2_grpc.ShippingServiceStub(channel).GetShipment(
                shipping_pb2.GetShipmentRequest(order_id="x")
            )
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.INTERNAL
            details = error.details() or ""
            assert details.startswith("internal error (trace ")
            assert "secret" not in details and "Traceback" not in details
            trace_id = details.removeprefix("internal error (trace ").rstrip(")")
        else:
            raise AssertionError("expected INTERNAL")
    logged = [r for r in caplog.records if r.levelname == "ERROR" and "unexpected error" in r.getMessage()]
    assert len(logged) == 1, "an unexpected error is logged exactly once"
    assert getattr(logged[0], "trace_id", None) == trace_id
