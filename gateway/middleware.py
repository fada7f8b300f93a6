"""ASGI middleware: a SERVER span and RED metrics per request.

The span is the current one while the handler runs, so the gRPC calls it
makes (``mesh.clients.TracedChannel``) are its children and carry its trace
context into the mesh; a ``traceparent`` header from the client is its
parent. Spans and metrics name the route template, never the path with its
ids; nothing from the query string or the body is recorded (a card number,
an email).
"""

from __future__ import annotations

import time

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.metrics import GatewayMetrics
from mesh.telemetry import extract_context

# Probes: counted, not traced (they would drown the real traces).
UNTRACED = ("/healthz", "/readyz")
UNMATCHED = "unmatched"
PROPAGATED = (b"traceparent", b"tracestate")


def route_template(scope: Scope) -> str:
    """The matched route's path (``/api/orders/{id}``), or ``unmatched``."""
    route = scope.get("route")
    if isinstance(route, Mount):  # the console's assets
        return route.path + "/{path}"
    return route.path if isinstance(route, Route) else UNMATCHED


class Observed:
    def __init__(self, app: ASGIApp, tracer: trace.Tracer, metrics: GatewayMetrics) -> None:
        self._app = app
        self._tracer = tracer
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        method: str = scope["method"]
        answered = {"status": 500, "streaming": False}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                answered["status"] = message["status"]
                content_type = dict(message.get("headers", ())).get(b"content-type", b"")
                answered["streaming"] = content_type.startswith(b"text/event-stream")
            await send(message)

        if scope["path"] in UNTRACED:
            try:
                await self._app(scope, receive, sending)
            finally:
                self._count(scope, method, answered, started)
            return
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k in PROPAGATED}
        with self._tracer.start_as_current_span(
            method,
            context=extract_context(carrier),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": scope["path"]},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                await self._app(scope, receive, sending)
            finally:
                route = self._count(scope, method, answered, started)
                if span.is_recording():
                    status = int(answered["status"])
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR, str(status)))

    def _count(self, scope: Scope, method: str, answered: dict[str, int | bool], started: float) -> str:
        route = route_template(scope)
        self._metrics.requests.labels(method, route, str(answered["status"])).inc()
        if not answered["streaming"]:
            self._metrics.latency.labels(method, route).observe(time.perf_counter() - started)
        return route
