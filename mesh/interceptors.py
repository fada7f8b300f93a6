"""Server and client interceptors: tracing, RED metrics, error mapping, decoding.

Only unary-unary methods are wrapped (the whole public API is unary); health's
Watch and reflection streams pass through untouched.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias, cast

import grpc
from google.protobuf.message import DecodeError, Message
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from mesh.errors import DomainError, InvalidArgument, internal_status, to_status, unavailable_cause
from mesh.metrics import ServerMetrics, split_method
from mesh.telemetry import current_trace_id, extract_context, inject_context
from mesh.wire import check_wire_types

log = logging.getLogger(__name__)

Behavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]
# Only the stubs make these generic; the runtime classes are not subscriptable.
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[Handler]]

# Infrastructure services: not traced (they would drown the real traces).
_UNTRACED_PREFIXES = ("/grpc.health.", "/grpc.reflection.")


def _rewrap(handler: Handler, behavior: Behavior, deserializer: Any = None) -> Handler:
    return grpc.unary_unary_rpc_method_handler(
        behavior,
        request_deserializer=deserializer if deserializer is not None else handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class _UnaryInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Base: wraps the behavior of unary-unary handlers with :meth:`wrap`."""

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler:
        handler = await continuation(handler_call_details)
        # None when the method does not exist (grpc answers UNIMPLEMENTED).
        if handler is None or handler.unary_unary is None:
            return handler
        behavior = cast(Behavior, handler.unary_unary)  # an aio server's behaviors are coroutines
        return self.wrap(handler, behavior, handler_call_details)

    def wrap(self, handler: Handler, behavior: Behavior, details: grpc.HandlerCallDetails) -> Handler:
        raise NotImplementedError


class TracingInterceptor(_UnaryInterceptor):
    """A SERVER span per call, child of the caller's span from the metadata."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    def wrap(self, handler: Handler, behavior: Behavior, details: grpc.HandlerCallDetails) -> Handler:
        method = details.method
        if method.startswith(_UNTRACED_PREFIXES):
            return handler
        service, name = split_method(method)
        tracer = self._tracer

        async def traced(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            carrier = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
            with tracer.start_as_current_span(
                f"{service}/{name}",
                context=extract_context(carrier),
                kind=SpanKind.SERVER,
                attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                try:
                    return await behavior(request, context)
                finally:
                    code = context.code() or grpc.StatusCode.OK
                    span.set_attribute("rpc.grpc.status_code", code.value[0])
                    if code not in (grpc.StatusCode.OK,):
                        span.set_status(Status(StatusCode.ERROR, code.name))

        return _rewrap(handler, traced)


class MetricsInterceptor(_UnaryInterceptor):
    """RED metrics: started, handled by code, latency histogram."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self._metrics = metrics

    def wrap(self, handler: Handler, behavior: Behavior, details: grpc.HandlerCallDetails) -> Handler:
        service, name = split_method(details.method)
        metrics = self._metrics
        started_count = metrics.started.labels(service, name)
        latency = metrics.latency.labels(service, name)

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
                metrics.handled.labels(service, name, code.name).inc()
                latency.observe(time.perf_counter() - start)

        return _rewrap(handler, measured)


class ErrorInterceptor(_UnaryInterceptor):
    """Domain errors become their status; anything else is logged once and is INTERNAL."""

    def wrap(self, handler: Handler, behavior: Behavior, details: grpc.HandlerCallDetails) -> Handler:
        method = details.method

        async def mapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                return await behavior(request, context)
            except DomainError as error:
                status = to_status(error)
            except (asyncio.CancelledError, grpc.aio.AbortError):
                raise
            except NotImplementedError:
                # The generated servicer base raises this for methods not written yet.
                await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented yet")
            except Exception as error:
                trace_id = current_trace_id()
                cause = unavailable_cause(error)
                if cause is not None:
                    log.warning("%s in %s: %s", cause, method, error, extra={"trace_id": trace_id})
                    await context.abort(grpc.StatusCode.UNAVAILABLE, f"{cause} unavailable, retry (trace {trace_id})")
                log.exception("unexpected error in %s", method, extra={"grpc_method": method, "trace_id": trace_id})
                status = internal_status(trace_id)
            await context.abort(status.code, status.details, status.trailing_metadata)

        return _rewrap(handler, mapped)


class DecodingInterceptor(_UnaryInterceptor):
    """Parse requests inside the handler so malformed input is INVALID_ARGUMENT.

    grpc's own deserializer failure surfaces as INTERNAL; here the bytes reach
    the handler raw, and a parse error or a known field sent with the wrong wire
    type (proto3 would silently keep it as an unknown field) is rejected naming
    the field.
    """

    def wrap(self, handler: Handler, behavior: Behavior, details: grpc.HandlerCallDetails) -> Handler:
        parse = handler.request_deserializer
        if parse is None:
            return handler

        async def decoded(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                request = parse(raw)
            except (DecodeError, RuntimeError, ValueError) as exc:
                raise InvalidArgument.one("request", f"malformed protobuf: {exc}") from None
            if isinstance(request, Message):
                check_wire_types(request)
            return await behavior(request, context)

        return _rewrap(handler, decoded, deserializer=_identity)


def _identity(raw: bytes) -> bytes:
    return raw


class ClientInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """Default deadline, CLIENT span, and trace context into the metadata."""

    def __init__(self, tracer: trace.Tracer, default_timeout: float) -> None:
        self._tracer = tracer
        self._default_timeout = default_timeout

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        method = client_call_details.method
        method_name = method.decode() if isinstance(method, bytes) else str(method)
        service, name = split_method(method_name)
        with self._tracer.start_as_current_span(
            f"{service}/{name}",
            kind=SpanKind.CLIENT,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
        ) as span:
            metadata = grpc.aio.Metadata(*(client_call_details.metadata or ()))
            for key, value in inject_context().items():
                metadata[key] = value
            timeout = client_call_details.timeout
            details = grpc.aio.ClientCallDetails(
                method=client_call_details.method,
                timeout=self._default_timeout if timeout is None else timeout,
                metadata=metadata,
                credentials=client_call_details.credentials,
                wait_for_ready=client_call_details.wait_for_ready,
            )
            call = await continuation(details, request)
            try:
                await call
            except grpc.aio.AioRpcError as error:
                span.set_attribute("rpc.grpc.status_code", error.code().value[0])
                span.set_status(Status(StatusCode.ERROR, error.code().name))
            return call
