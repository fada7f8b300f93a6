"""Outgoing gRPC channels: default deadline, CLIENT spans with the trace context
in the metadata, keepalive, retries for idempotent calls."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, cast

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.descriptor_pb2 import MethodOptions
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from mesh.metrics import split_method
from mesh.telemetry import inject_context

# Transient codes worth a transparent retry of an *idempotent* method.
RETRYABLE_CODES = ("UNAVAILABLE", "RESOURCE_EXHAUSTED")


def service_config(service: str, idempotent_methods: Sequence[str], health_check: str = "") -> str:
    """A gRPC service config: retries of the named methods with backoff, and
    client-side health checking when ``health_check`` names a health service.

    Only methods that are safe to repeat are listed (reads, and writes keyed by
    an idempotency key such as order_id): a retry of anything else could apply
    twice.

    With a health check, round_robin sends calls only to addresses whose health
    service answers SERVING (it watches each one). In Kubernetes the headless
    Services publish pods before they are ready, so clients learn a new pod's
    address as soon as it has one, and this keeps calls off it until it is
    ready, and off a pod that is shutting down.

    It matters with a single address too: a server turns NOT_SERVING when it
    starts shutting down (mesh.server), and from then on the channel fails its
    calls at once with UNAVAILABLE, which the retry policy and the caller retry,
    instead of sending them to a server about to answer CANCELLED. (A call made
    with ``wait_for_ready=True`` waits for an address SERVING again instead,
    within its deadline.) A server without the health service (UNIMPLEMENTED)
    is called as if it were SERVING; one without the named service is not called.
    """
    config: dict[str, object] = {}
    if service and idempotent_methods:
        config["methodConfig"] = [
            {
                "name": [{"service": service, "method": m} for m in idempotent_methods],
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "0.5s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": list(RETRYABLE_CODES),
                },
            }
        ]
    if health_check:
        config["healthCheckConfig"] = {"serviceName": health_check}
    return json.dumps(config)


def make_channel(
    target: str,
    *,
    tracer: trace.Tracer,
    default_timeout: float,
    service: str = "",
    idempotent_methods: Sequence[str] = (),
    max_message_bytes: int = 4 * 1024 * 1024,
    credentials: grpc.ChannelCredentials | None = None,
    health_check: str = "",
) -> grpc.aio.Channel:
    """An aio channel: plaintext, or mutual TLS with ``credentials`` (mesh.tls);
    ``health_check``: see :func:`service_config`."""
    options: list[tuple[str, object]] = [
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        # Spread calls over every address a headless Service resolves to.
        ("grpc.lb_policy_name", "round_robin"),
        # Resolve again soon after a peer goes away (a pod replaced in a rollout),
        # not only after the default 30 s.
        ("grpc.dns_min_time_between_resolutions_ms", 1_000),
        ("grpc.enable_retries", 1),
        # Reconnect quickly after a peer restarts (the default backoff grows to 2 minutes).
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 5_000),
    ]
    if (service and idempotent_methods) or health_check:
        options.append(("grpc.service_config", service_config(service, idempotent_methods, health_check)))
    raw = (
        grpc.aio.insecure_channel(target, options=options)
        if credentials is None
        else grpc.aio.secure_channel(target, credentials, options=options)
    )
    channel = TracedChannel(raw, tracer, default_timeout)
    return cast(grpc.aio.Channel, channel)  # it stands in for one wherever a stub takes a channel


class TracedChannel:
    """A channel whose unary calls get a default deadline, a CLIENT span, and the
    trace context in their metadata.

    Not a grpc.aio client interceptor: those run as an extra task and call object
    per call, about a quarter of a bare call's cost here. The generated stubs ask
    the channel for one callable per method, and this wraps that callable once.
    Everything else is the wrapped channel's.
    """

    def __init__(self, channel: grpc.aio.Channel, tracer: trace.Tracer, default_timeout: float) -> None:
        self._channel = channel
        self._tracer = tracer
        self._default_timeout = default_timeout

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> _TracedUnaryUnary:
        inner = self._channel.unary_unary(method, *args, **kwargs)
        return _TracedUnaryUnary(inner, method, self._tracer, self._default_timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._channel, name)

    async def __aenter__(self) -> TracedChannel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._channel.close(None)


class _TracedUnaryUnary:
    def __init__(
        self,
        inner: grpc.aio.UnaryUnaryMultiCallable[Any, Any],
        method: str,
        tracer: trace.Tracer,
        default_timeout: float,
    ) -> None:
        service, name = split_method(method)
        self._inner = inner
        self._span_name = f"{service}/{name}"
        self._attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}
        self._tracer = tracer
        self._default_timeout = default_timeout

    async def __call__(
        self,
        request: Any,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the generated stub's signature
        metadata: Sequence[tuple[str, str]] = (),
        **kwargs: Any,
    ) -> Any:
        with self._tracer.start_as_current_span(
            self._span_name,
            kind=SpanKind.CLIENT,
            attributes=self._attributes,
            record_exception=False,  # a failed call is its status code, set below
            set_status_on_exception=False,
        ) as span:
            headers = (*tuple(metadata or ()), *inject_context().items())
            try:
                return await self._inner(
                    request,
                    timeout=self._default_timeout if timeout is None else timeout,
                    metadata=headers,
                    **kwargs,
                )
            except grpc.aio.AioRpcError as error:
                if span.is_recording():
                    span.set_attribute("rpc.grpc.status_code", error.code().value[0])
                    span.set_status(Status(StatusCode.ERROR, error.code().name))
                raise


def retry_safe_methods(service: ServiceDescriptor) -> list[str]:
    """The methods the service's proto marks safe to repeat
    (``option idempotency_level``): reads, and writes keyed by an idempotency
    key. The callee's contract says so, once, for every caller."""
    safe = (MethodOptions.NO_SIDE_EFFECTS, MethodOptions.IDEMPOTENT)
    return [m.name for m in service.methods if m.GetOptions().idempotency_level in safe]


def dependency_channels(
    addresses: Mapping[ServiceDescriptor, str],
    *,
    tracer: trace.Tracer,
    default_timeout: float,
    credentials: grpc.ChannelCredentials | None = None,
    health_check: str = "",
) -> dict[str, grpc.aio.Channel]:
    """One channel per dependency, keyed by its full service name, each with
    retries for the methods its proto marks safe to repeat."""
    return {
        service.full_name: make_channel(
            address,
            tracer=tracer,
            default_timeout=default_timeout,
            service=service.full_name,
            idempotent_methods=retry_safe_methods(service),
            credentials=credentials,
            health_check=health_check,
        )
        for service, address in addresses.items()
    }
