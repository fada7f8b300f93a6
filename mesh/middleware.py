"""Server middleware: tracing, RED metrics, error mapping, decoding (the client
side is :class:`mesh.clients.TracedChannel`).

These are not grpc.aio interceptors: an aio interceptor chain runs per call (a
coroutine per interceptor and a new handler each time), which costs more than
the handlers it wraps. The same layers are composed once per method, when a
service is registered, by :class:`WrappingServer`. Only unary-unary methods are wrapped (the whole public
API is unary); health's Watch and reflection streams pass through untouched.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeAlias, cast

import grpc
from google.protobuf.message import DecodeError, Message
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from mesh.errors import DomainError, InvalidArgument, internal_status, plain_status, to_status, unavailable_cause
from mesh.metrics import ServerMetrics, split_method
from mesh.telemetry import current_trace_id, extract_context
from mesh.wire import check_wire_types

log = logging.getLogger(__name__)

Behavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]
# Only the stubs make these generic; the runtime classes are not subscriptable.
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
GenericHandler: TypeAlias = "grpc.GenericRpcHandler[Any, Any]"

# Infrastructure services: not traced (they would drown the real traces).
_UNTRACED_PREFIXES = ("/grpc.health.", "/grpc.reflection.")


class Middleware:
    """Wraps one method's behavior, outermost first: trace, measure, map errors, decode."""

    def __init__(self, tracer: trace.Tracer, metrics: ServerMetrics) -> None:
        self._tracer = tracer
        self._metrics = metrics

    def wrap(self, method: str, handler: Handler) -> Handler:
        if handler.unary_unary is None:
            return handler
        behavior = cast(Behavior, handler.unary_unary)  # an aio server's behaviors are coroutines
        parse = handler.request_deserializer
        if parse is not None:
            behavior = _decoding(behavior, parse)
        behavior = _mapping_errors(method, behavior)
        behavior = _measuring(self._metrics, method, behavior)
        if not method.startswith(_UNTRACED_PREFIXES):
            behavior = _tracing(self._tracer, method, behavior)
        return grpc.unary_unary_rpc_method_handler(
            behavior,
            request_deserializer=_identity if parse is not None else None,
            response_serializer=handler.response_serializer,
        )


class WrappingServer:
    """What a generated ``add_XServicer_to_server`` is given instead of the server:
    it registers the service's handlers with the middleware around them."""

    def __init__(self, server: grpc.aio.Server, middleware: Middleware) -> None:
        self._server = server
        self._middleware = middleware

    def add_generic_rpc_handlers(self, handlers: Sequence[GenericHandler]) -> None:
        self._server.add_generic_rpc_handlers(tuple(_WrappedGeneric(h, self._middleware) for h in handlers))

    def add_registered_method_handlers(self, service: str, handlers: Mapping[str, Handler]) -> None:
        wrapped = {name: self._middleware.wrap(f"/{service}/{name}", h) for name, h in handlers.items()}
        # Missing from the grpc stubs, present on grpcio's aio server since 1.62.
        self._server.add_registered_method_handlers(service, wrapped)  # type: ignore[attr-defined]


class _WrappedGeneric(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    """A generic handler whose answers are wrapped, once per method."""

    def __init__(self, inner: GenericHandler, middleware: Middleware) -> None:
        self._inner = inner
        self._middleware = middleware
        self._cache: dict[str, Handler] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Handler | None:
        method = handler_call_details.method
        cached = self._cache.get(method)
        if cached is not None:
            return cached
        handler = self._inner.service(handler_call_details)
        if handler is None:  # unknown method: not cached, callers choose the names
            return None
        self._cache[method] = wrapped = self._middleware.wrap(method, handler)
        return wrapped


def _tracing(tracer: trace.Tracer, method: str, behavior: Behavior) -> Behavior:
    """A SERVER span per call, child of the caller's span from the metadata."""
    service, name = split_method(method)
    attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}
    span_name = f"{service}/{name}"

    async def traced(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        carrier = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        with tracer.start_as_current_span(
            span_name,
            context=extract_context(carrier),
            kind=SpanKind.SERVER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                return await behavior(request, context)
            finally:
                if span.is_recording():
                    code = context.code() or grpc.StatusCode.OK
                    span.set_attribute("rpc.grpc.status_code", code.value[0])
                    if code is not grpc.StatusCode.OK:
                        span.set_status(Status(StatusCode.ERROR, code.name))

    return traced


def _measuring(metrics: ServerMetrics, method: str, behavior: Behavior) -> Behavior:
    """RED metrics: started, handled by code, latency histogram."""
    service, name = split_method(method)
    started_count = metrics.started.labels(service, name)
    latency = metrics.latency.labels(service, name)
    handled: dict[grpc.StatusCode, Any] = {}  # the labelled child per code, looked up once

    async def measured(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        started_count.inc()
        start = time.perf_counter()
        code = grpc.StatusCode.UNKNOWN
        try:
            response = await behavior(request, context)
            code = context.code() or grpc.StatusCode.OK
            return response
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except BaseException:
            code = context.code() or grpc.StatusCode.UNKNOWN
            raise
        finally:
            counter = handled.get(code)
            if counter is None:
                handled[code] = counter = metrics.handled.labels(service, name, code.name)
            counter.inc()
            latency.observe(time.perf_counter() - start)

    return measured


def _mapping_errors(method: str, behavior: Behavior) -> Behavior:
    """Domain errors become their status; anything else is logged once and is INTERNAL.

    The status is set on the context and the handler returns no message, rather
    than ``context.abort()``: grpc.aio keeps the AbortError on the call's state,
    and its traceback holds the servicer context that holds the state, a cycle
    per refused call that only a full garbage collection frees, C-core call and
    all (about 3.6 KB each). A hot-product storm refuses hundreds a second, and
    the heap grew by what waited for that collection.
    """

    async def mapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await behavior(request, context)
        except DomainError as error:
            status = to_status(error)
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except NotImplementedError:
            # The generated servicer base raises this for methods not written yet.
            status = plain_status(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented yet")
        except Exception as error:
            trace_id = current_trace_id()
            cause = unavailable_cause(error)
            if cause is not None:
                log.warning("%s in %s: %s", cause, method, error, extra={"trace_id": trace_id})
                status = plain_status(grpc.StatusCode.UNAVAILABLE, f"{cause} unavailable, retry (trace {trace_id})")
            else:
                log.exception("unexpected error in %s", method, extra={"grpc_method": method, "trace_id": trace_id})
                status = internal_status(trace_id)
        context.set_code(status.code)
        context.set_details(status.details)
        context.set_trailing_metadata(status.trailing_metadata)
        return None  # grpc.aio sends no message with a status that is not OK

    return mapped


def _decoding(behavior: Behavior, parse: Callable[[bytes], Any]) -> Behavior:
    """Parse requests inside the handler so malformed input is INVALID_ARGUMENT.

    grpc's own deserializer failure surfaces as INTERNAL; here the bytes reach
    the handler raw, and a parse error or a known field sent with the wrong wire
    type (proto3 would silently keep it as an unknown field) is rejected naming
    the field.
    """

    async def decoded(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            request = parse(raw)
        except (DecodeError, RuntimeError, ValueError) as exc:
            raise InvalidArgument.one("request", f"malformed protobuf: {exc}") from None
        if isinstance(request, Message):
            check_wire_types(request)
        return await behavior(request, context)

    return decoded


def _identity(raw: bytes) -> bytes:
    return raw
